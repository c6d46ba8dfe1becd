//! Text tools: the word tokenizer (normalisation, vocabulary order, out-of-vocabulary and padding
//! ids, bigrams, JSON round trip) and CSV columns by header name; a bag-of-words classifier on texts
//! made here trains on every device.

use kiln::device::device_test;
use kiln::nn::data::text::{OUT_OF_VOCABULARY, PAD, Tokenizer, read_csv_columns};
use kiln::prelude::*;

#[test]
fn the_tokenizer_normalises_ranks_pads_and_round_trips() {
    assert_eq!(
        Tokenizer::words("Great taste!<br /><br />I DON'T like 'quotes', 100%"),
        ["great", "taste", "i", "don't", "like", "quotes", "100"]
    );
    let mut tokenizer = Tokenizer::new(5, 6).min_frequency(1);
    tokenizer.fit(&["b a a", "c b a", "d"]);
    // a (3), b (2), then c (1) by alphabet; d is cut by max_tokens (5 ids: pad, oov, a, b, c)
    assert_eq!(tokenizer.vocabulary_size(), 5);
    assert_eq!(
        tokenizer.encode("a b c d"),
        [2, 3, 4, OUT_OF_VOCABULARY, PAD, PAD]
    );
    assert_eq!(
        tokenizer.encode("a a a a a a a a").len(),
        6,
        "truncated to the length"
    );
    let mut frequent = Tokenizer::new(100, 4).min_frequency(2);
    frequent.fit(&["x y", "x z"]);
    assert_eq!(frequent.vocabulary_size(), 3, "only x is seen twice");
    let mut pairs = Tokenizer::new(100, 8).bigrams(true);
    pairs.fit(&["not good", "not good at all"]);
    let ids = pairs.encode("not good");
    assert!(ids[2] >= 2, "the pair \"not good\" has an id: {ids:?}");
    let restored = Tokenizer::from_json(&pairs.to_json()).unwrap();
    assert_eq!(restored, pairs);
    assert!(Tokenizer::from_json(&serde_json::json!({"words": 3})).is_err());
}

#[test]
fn csv_columns_are_read_by_header_name() {
    let path = std::env::temp_dir().join(format!("kiln-text-{}.csv", std::process::id()));
    std::fs::write(
        &path,
        "id,review,score\n1,\"good, really\",great\n2,\"meh\nok\",other\n",
    )
    .unwrap();
    let columns = read_csv_columns(&path, &["score", "review"]).unwrap();
    assert_eq!(columns[0], ["great", "other"]);
    assert_eq!(columns[1], ["good, really", "meh\nok"]);
    let err = read_csv_columns(&path, &["text"]).unwrap_err().to_string();
    assert!(
        err.contains("no column \"text\"") && err.contains("review"),
        "{err}"
    );
}

device_test!(a_bag_of_words_classifier_learns_sentiment_words, |device| {
    let good = ["tasty", "great", "love", "fresh", "delicious"];
    let bad = ["stale", "awful", "bland", "broken", "refund"];
    let filler = ["the", "box", "came", "today", "and", "it", "was", "quite"];
    let (mut texts, mut labels) = (Vec::new(), Vec::new());
    for i in 0..200usize {
        let positive = i % 2 == 0;
        let word = if positive { good[i % 5] } else { bad[i % 5] };
        let mut text: Vec<&str> = filler.iter().cycle().skip(i % 8).take(5).copied().collect();
        text.insert(i % 5, word);
        texts.push(text.join(" "));
        labels.push(u32::from(positive));
    }
    let mut tokenizer = Tokenizer::new(100, 8);
    tokenizer.fit(&texts);
    let data = Dataset::from_columns(
        vec![Column::ids(tokenizer.encode_all(&texts), [8])],
        Targets::Classes { labels, classes: 2 },
    )
    .unwrap();
    let mut model = Sequential::new([8])
        .on(&device)
        .seed(1)
        .add(Embedding::new(tokenizer.vocabulary_size(), 8).mask_zero(true))
        .unwrap()
        .add(GlobalAveragePooling1D::new())
        .unwrap()
        .add(Dense::new(2).activation(Activation::Softmax))
        .unwrap();
    model
        .compile(
            Adam::new(0.05),
            Loss::SparseCategoricalCrossentropy,
            &[Metric::Accuracy],
        )
        .unwrap();
    let config = FitConfig {
        epochs: 15,
        batch_size: 20,
        verbose: false,
        ..Default::default()
    };
    model.fit(&data, &config).unwrap();
    let accuracy = model
        .evaluate(&data, 200)
        .unwrap()
        .metric(Metric::Accuracy)
        .unwrap();
    assert!(accuracy >= 0.95, "accuracy {accuracy}");
});
