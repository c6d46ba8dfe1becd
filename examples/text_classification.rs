//! Review classification (the fine-foods reviews: `great` or `other`), or any CSV of texts and labels:
//! a word tokenizer fitted on the training texts, then an `Embedding` and one of
//! - `bag` (default): the average of the word and word-pair vectors (fastText-like; bigrams on),
//! - `cnn`: Conv1D → GlobalMaxPooling1D,
//! - `lstm`: an LSTM over the unpadded words (`mask_zero`),
//! - `transformer`: a Transformer encoder block → GlobalAveragePooling1D,
//!
//! then a softmax over the classes. Prints accuracy, macro-F1 and the confusion matrix on the test
//! file; `--predict "some text"` classifies a string with the model a run saved in `text-model/`.
//!
//! ```text
//! cargo run --release --example text_classification -- [--model bag|cnn|lstm|transformer]
//!     [--train FILE] [--test FILE] [--text-column review] [--label-column score] [--epochs 20]
//!     [--batch-size 32] [--lr 0.001] [--vocabulary 20000] [--length 400] [--bigrams yes|no]
//!     [--device auto|cpu|gpu] [--seed 0] [--predict "TEXT"]
//! ```

use std::path::{Path, PathBuf};

use kiln::nn::data::text::{Tokenizer, read_csv_columns};
use kiln::nn::metrics::confusion_matrix;
use kiln::prelude::*;

mod common;
use common::{arg, device, help, number};

const SAVED: &str = "text-model";

/// Texts and class labels of a CSV. With `learn`, new class names are added in order of appearance
/// (the training file); otherwise a label outside `classes` is an error.
fn read(
    path: &Path,
    classes: &mut Vec<String>,
    learn: bool,
) -> kiln::Result<(Vec<String>, Vec<u32>)> {
    let (text, label) = (
        arg("--text-column", "review"),
        arg("--label-column", "score"),
    );
    let mut columns = read_csv_columns(path, &[&text, &label])?.into_iter();
    let (texts, names) = (
        columns.next().unwrap_or_default(),
        columns.next().unwrap_or_default(),
    );
    let mut labels = Vec::with_capacity(names.len());
    for (row, name) in names.iter().enumerate() {
        let class = match classes.iter().position(|c| c == name) {
            Some(i) => i,
            None if learn && !name.is_empty() => {
                classes.push(name.clone());
                classes.len() - 1
            }
            None => {
                return Err(Error::InvalidData {
                    op: "text_classification",
                    message: format!(
                        "{}: row {}: label {name:?} is not one of the training classes ({})",
                        path.display(),
                        row + 2,
                        classes.join(", ")
                    ),
                });
            }
        };
        labels.push(class as u32);
    }
    Ok((texts, labels))
}

fn build(
    kind: &str,
    vocabulary: usize,
    length: usize,
    classes: usize,
    device: &Device,
) -> kiln::Result<Sequential> {
    let model = Sequential::new([length]).on(device);
    let model = match kind {
        "lstm" => model
            .add(Embedding::new(vocabulary, 64).mask_zero(true))?
            .add(LSTM::new(64))?,
        "transformer" => model
            .add(Embedding::new(vocabulary, 64).mask_zero(true))?
            .add(TransformerEncoder::new(4, 128))?
            .add(GlobalAveragePooling1D::new())?,
        "cnn" => model
            .add(Embedding::new(vocabulary, 64))?
            .add(Dropout::new(0.3))?
            .add(Conv1D::new(128, 5).activation(Activation::Relu))?
            .add(GlobalMaxPooling1D::new())?,
        _ => model
            .add(Embedding::new(vocabulary, 64).mask_zero(true))?
            .add(GlobalAveragePooling1D::new())?,
    };
    model
        .add(Dropout::new(0.5))?
        .add(Dense::new(classes).activation(Activation::Softmax))
}

fn main() -> kiln::Result<()> {
    help(
        "cargo run --release --example text_classification -- [--model bag|cnn|lstm|transformer]\n    [--train FILE] [--test FILE] [--text-column review] [--label-column score] [--epochs 20]\n    [--batch-size 32] [--lr 0.001] [--vocabulary 20000] [--length 400] [--bigrams yes|no]\n    [--device auto|cpu|gpu] [--seed 0] [--predict \"TEXT\"]",
    );
    let device = device()?;
    if let Some(i) = std::env::args().position(|a| a == "--predict") {
        let text = std::env::args().nth(i + 1).unwrap_or_default();
        let tokenizer = Tokenizer::load(&Path::new(SAVED).join("tokenizer.json"))?;
        let classes: Vec<String> = std::fs::read_to_string(Path::new(SAVED).join("classes.txt"))
            .map_err(|e| Error::InvalidData {
                op: "predict",
                message: format!("{SAVED}/classes.txt: {e}"),
            })?
            .lines()
            .map(str::to_string)
            .collect();
        let model = Model::load_model(Path::new(SAVED), &device)?;
        let ids = Tensor::from_vec(tokenizer.encode(&text), [1, tokenizer.length()], &device)?;
        let probabilities = model.predict(&ids)?.to_vec::<f32>()?;
        for (class, p) in classes.iter().zip(probabilities) {
            println!("{class}: {p:.3}");
        }
        return Ok(());
    }
    let data_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/fine-foods");
    let train_path = PathBuf::from(arg(
        "--train",
        &data_dir.join("train.csv").to_string_lossy(),
    ));
    let test_path = PathBuf::from(arg("--test", &data_dir.join("test.csv").to_string_lossy()));
    let (kind, epochs, batch_size, seed) = (
        arg("--model", "bag"),
        number("--epochs", 20)?,
        number("--batch-size", 32)?,
        number("--seed", 0u64)?,
    );
    // Word pairs suit the bag of vectors; sequence models see the words in order.
    let bigrams_default = if kind == "bag" { "yes" } else { "no" };
    let mut classes = Vec::new();
    let (train_texts, train_labels) = read(&train_path, &mut classes, true)?;
    let (test_texts, test_labels) = read(&test_path, &mut classes, false)?;
    let mut tokenizer = Tokenizer::new(number("--vocabulary", 20_000)?, number("--length", 400)?)
        .min_frequency(2)
        .bigrams(arg("--bigrams", bigrams_default) == "yes");
    tokenizer.fit(&train_texts);
    println!(
        "device: {device}; {} training and {} test texts, {} classes ({}), vocabulary {}",
        train_texts.len(),
        test_texts.len(),
        classes.len(),
        classes.join(", "),
        tokenizer.vocabulary_size()
    );
    let dataset = |texts: &[String], labels: Vec<u32>| {
        Dataset::from_columns(
            vec![Column::ids(
                tokenizer.encode_all(texts),
                [tokenizer.length()],
            )],
            Targets::Classes {
                labels,
                classes: classes.len(),
            },
        )
    };
    let (train, test) = (
        dataset(&train_texts, train_labels)?,
        dataset(&test_texts, test_labels.clone())?,
    );
    kiln::nn::functional::set_random_seed(seed);
    let mut model = build(
        &kind,
        tokenizer.vocabulary_size(),
        tokenizer.length(),
        classes.len(),
        &device,
    )?;
    print!("{}", model.summary());
    model.compile(
        Adam::new(number("--lr", 1e-3)?),
        Loss::SparseCategoricalCrossentropy,
        &[Metric::Accuracy, Metric::F1],
    )?;
    let mut stop = EarlyStopping::new(Monitor::ValLoss, 2).restore_best_weights(true);
    let config = FitConfig {
        epochs,
        batch_size,
        shuffle: Some(seed),
        validation_split: 0.1,
        callbacks: Callbacks::new(vec![&mut stop]),
        ..Default::default()
    };
    let history = model.fit(&train, &config)?;
    let result = model.evaluate(&test, 256)?;
    let predicted = Tensor::from_raw(
        model
            .predict_dataset(&test, 256)?
            .raw()
            .argmax(Some(-1), false)?,
    );
    let actual = Tensor::from_vec(test_labels, [test.len()], &device)?;
    println!(
        "test accuracy: {:.4} - macro_f1: {:.4}",
        result.get("accuracy").unwrap_or(f32::NAN),
        result.get("f1_score").unwrap_or(f32::NAN)
    );
    println!(
        "confusion matrix (rows: true {}; columns: predicted):",
        classes.join(", ")
    );
    for row in confusion_matrix(&predicted, &actual, classes.len())? {
        println!("  {row:?}");
    }
    model.save(Path::new(SAVED))?;
    tokenizer.save(&Path::new(SAVED).join("tokenizer.json"))?;
    std::fs::write(Path::new(SAVED).join("classes.txt"), classes.join("\n")).map_err(|e| {
        Error::InvalidData {
            op: "save",
            message: format!("{SAVED}/classes.txt: {e}"),
        }
    })?;
    history.plot(&Path::new(SAVED).join("history.png"))?;
    println!(
        "saved the model, tokenizer and classes to {SAVED}/ (classify with --predict \"TEXT\"); \
         plot: {SAVED}/history.png"
    );
    Ok(())
}
