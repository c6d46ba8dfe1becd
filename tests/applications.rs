//! The credit-risk and review-classification pipelines end to end on slices of their data (shipped
//! in `data/`), on every device: fit the transformer or tokenizer, train, save and load the model and
//! the preprocessing, and predict on raw rows or strings with the same results.

use std::path::PathBuf;

use kiln::device::device_test;
use kiln::nn::data::tabular::{ColumnTransformer, Table, balanced_class_weights, stratified_split};
use kiln::nn::data::text::{Tokenizer, read_csv_columns};
use kiln::prelude::*;

fn data(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(path)
}

fn scratch(name: &str, device: &Device) -> PathBuf {
    let tag = device
        .to_string()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    let dir = std::env::temp_dir().join(format!("kiln-app-{name}-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

device_test!(credit_risk_pipeline_round_trips, |device| {
    let table = Table::read_csv(&data("credit-scoring/credit_data.csv")).unwrap();
    let labels = table.binary_labels("Status", "bad").unwrap();
    // a slice: 1,200 rows, stratified 25% held out
    let slice: Vec<u32> = labels[..1200].to_vec();
    let (train, test) = stratified_split(&slice, 0.25, 0);
    let columns = ColumnTransformer::fit(&table, &["Status"], &train).unwrap();
    let width = columns.width();
    let set = |rows: &[usize], columns: &ColumnTransformer| {
        Dataset::new(
            columns.transform(&table, rows).unwrap(),
            [width],
            Targets::Classes {
                labels: rows.iter().map(|&r| labels[r]).collect(),
                classes: 2,
            },
        )
        .unwrap()
    };
    let mut model = Sequential::new([width])
        .on(&device)
        .seed(0)
        .add(Dense::new(32).activation(Activation::Relu))
        .unwrap()
        .add(Dense::new(1).activation(Activation::Sigmoid))
        .unwrap();
    model
        .compile(Adam::new(0.003), Loss::BinaryCrossentropy, &[Metric::Auc])
        .unwrap();
    let train_labels: Vec<u32> = train.iter().map(|&r| labels[r]).collect();
    let config = FitConfig {
        epochs: 8,
        batch_size: 64,
        verbose: false,
        class_weight: Some(balanced_class_weights(&train_labels, 2)),
        ..Default::default()
    };
    model.fit(&set(&train, &columns), &config).unwrap();
    let auc = model
        .evaluate(&set(&test, &columns), 512)
        .unwrap()
        .get("auc")
        .unwrap();
    assert!(auc > 0.75, "test ROC-AUC {auc}");
    // save the model and the transformer; load both; predict on the raw rows again
    let dir = scratch("credit", &device);
    model.save(&dir).unwrap();
    std::fs::write(dir.join("columns.json"), columns.to_json().to_string()).unwrap();
    let loaded = Model::load_model(&dir, &device).unwrap();
    let text = std::fs::read_to_string(dir.join("columns.json")).unwrap();
    let restored = ColumnTransformer::from_json(&serde_json::from_str(&text).unwrap()).unwrap();
    let rows = &test[..20];
    let before = model.predict(
        &Tensor::from_vec(
            columns.transform(&table, rows).unwrap(),
            [20, width],
            &device,
        )
        .unwrap(),
    );
    let after = loaded.predict(
        &Tensor::from_vec(
            restored.transform(&table, rows).unwrap(),
            [20, width],
            &device,
        )
        .unwrap(),
    );
    assert_eq!(
        before.unwrap().to_vec::<f32>().unwrap(),
        after.unwrap().to_vec::<f32>().unwrap()
    );
});

device_test!(review_classifier_pipeline_round_trips, |device| {
    let columns = read_csv_columns(&data("fine-foods/train.csv"), &["review", "score"]).unwrap();
    let (texts, scores) = (&columns[0][..800], &columns[1][..800]);
    let labels: Vec<u32> = scores.iter().map(|s| u32::from(s == "great")).collect();
    let mut tokenizer = Tokenizer::new(4000, 120).min_frequency(2).bigrams(true);
    tokenizer.fit(&texts[..600]);
    let set = |range: std::ops::Range<usize>| {
        Dataset::from_columns(
            vec![Column::ids(
                tokenizer.encode_all(&texts[range.clone()]),
                [120],
            )],
            Targets::Classes {
                labels: labels[range].to_vec(),
                classes: 2,
            },
        )
        .unwrap()
    };
    let mut model = Sequential::new([120])
        .on(&device)
        .seed(0)
        .add(Embedding::new(tokenizer.vocabulary_size(), 16).mask_zero(true))
        .unwrap()
        .add(GlobalAveragePooling1D::new())
        .unwrap()
        .add(Dense::new(2).activation(Activation::Softmax))
        .unwrap();
    model
        .compile(
            Adam::new(0.01),
            Loss::SparseCategoricalCrossentropy,
            &[Metric::Accuracy],
        )
        .unwrap();
    let config = FitConfig {
        epochs: 6,
        batch_size: 32,
        verbose: false,
        ..Default::default()
    };
    model.fit(&set(0..600), &config).unwrap();
    let accuracy = model
        .evaluate(&set(600..800), 200)
        .unwrap()
        .metric(Metric::Accuracy)
        .unwrap();
    // the majority class alone scores about 0.65
    assert!(accuracy > 0.7, "held-out accuracy {accuracy}");
    let dir = scratch("reviews", &device);
    model.save(&dir).unwrap();
    tokenizer.save(&dir.join("tokenizer.json")).unwrap();
    let loaded = Model::load_model(&dir, &device).unwrap();
    let restored = Tokenizer::load(&dir.join("tokenizer.json")).unwrap();
    let raw = [
        "Absolutely delicious, I will buy again!",
        "Stale and overpriced.<br />Never again.",
    ];
    let ids = |t: &Tokenizer| Tensor::from_vec(t.encode_all(&raw), [2, 120], &device).unwrap();
    let before = model
        .predict(&ids(&tokenizer))
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let after = loaded
        .predict(&ids(&restored))
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(before, after);
});
