//! Credit risk on tabular data: which applicants default. By default the credit-scoring data (target
//! `Status`, positive class `bad`); any CSV with `--csv FILE --target COLUMN --positive VALUE` (numeric
//! and categorical columns detected, missing values imputed). A stratified 20% test split; the
//! columns are fitted on the training part (median imputation with missing indicators, scaling,
//! one-hot categories); an MLP trained with balanced class weights and early stopping on validation
//! ROC-AUC. Prints ROC-AUC, PR-AUC, precision/recall/F1 of the positive class at `--threshold` and the
//! confusion matrix, and saves the model and the fitted columns (`ColumnTransformer::to_json`) to
//! `credit-model/`.
//!
//! ```text
//! cargo run --release --example credit_risk -- [--csv FILE --target COLUMN --positive VALUE]
//!     [--epochs 100] [--batch-size 64] [--lr 0.001] [--threshold 0.5] [--device auto|cpu|gpu]
//!     [--seed 0]
//! cargo run --release --example credit_risk -- --predict FILE
//! ```
//!
//! `--predict FILE` scores the rows of a CSV with the columns of the training data (the target column
//! may be absent) with the model and columns a run saved, one probability per row.

use std::path::PathBuf;

use kiln::nn::data::tabular::{
    ColumnTransformer, ColumnType, Table, balanced_class_weights, stratified_split,
};
use kiln::nn::metrics::confusion_matrix;
use kiln::nn::plot;
use kiln::prelude::*;

mod common;
use common::{arg, device, help, number};

/// Where a run saves the model and its fitted columns.
const SAVED: &str = "credit-model";

/// The probability of the positive class for every row of `csv`, from the saved model and columns.
fn score(csv: &std::path::Path, device: &Device) -> kiln::Result<()> {
    let saved = std::path::Path::new(SAVED);
    let text =
        std::fs::read_to_string(saved.join("columns.json")).map_err(|e| Error::InvalidData {
            op: "predict",
            message: format!("{SAVED}/columns.json: {e} (train first: the run saves it)"),
        })?;
    let value = serde_json::from_str(&text).map_err(|e| Error::InvalidData {
        op: "predict",
        message: format!("{SAVED}/columns.json: {e}"),
    })?;
    let columns = ColumnTransformer::from_json(&value)?;
    let model = Model::load_model(saved, device)?;
    let table = Table::read_csv(csv)?;
    let rows: Vec<usize> = (0..table.rows).collect();
    let x = Tensor::from_vec(
        columns.transform(&table, &rows)?,
        [rows.len(), columns.width()],
        device,
    )?;
    for (row, p) in model.predict(&x)?.to_vec::<f32>()?.iter().enumerate() {
        println!("row {}: {p:.3}", row + 2);
    }
    Ok(())
}

fn main() -> kiln::Result<()> {
    help(
        "cargo run --release --example credit_risk -- [--csv FILE --target COLUMN --positive VALUE]\n    [--numeric COL,COL] [--categorical COL,COL] [--epochs 100] [--batch-size 64] [--lr 0.001]\n    [--threshold 0.5] [--device auto|cpu|gpu] [--seed 0]\ncargo run --release --example credit_risk -- --predict FILE\n(column types are inferred; --numeric/--categorical declare them: a non-number in a declared\nnumeric column is an error naming row and column)",
    );
    let device = device()?;
    let predict = arg("--predict", "");
    if !predict.is_empty() {
        return score(std::path::Path::new(&predict), &device);
    }
    let default_csv =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/credit-scoring/credit_data.csv");
    let csv = PathBuf::from(arg("--csv", &default_csv.to_string_lossy()));
    let (target, positive) = (arg("--target", "Status"), arg("--positive", "bad"));
    let (epochs, batch_size, seed, threshold) = (
        number("--epochs", 100)?,
        number("--batch-size", 64)?,
        number("--seed", 0u64)?,
        number("--threshold", 0.5f32)?,
    );
    let (numeric, categorical) = (arg("--numeric", ""), arg("--categorical", ""));
    let declared: Vec<(&str, ColumnType)> = numeric
        .split(',')
        .filter(|c| !c.is_empty())
        .map(|c| (c, ColumnType::Numeric))
        .chain(
            categorical
                .split(',')
                .filter(|c| !c.is_empty())
                .map(|c| (c, ColumnType::Categorical)),
        )
        .collect();
    let table = Table::read_csv_typed(&csv, &declared)?;
    let labels = table.binary_labels(&target, &positive)?;
    let (train_rows, test_rows) = stratified_split(&labels, 0.2, seed);
    // Early stopping watches a stratified tenth of the training rows, never the test split.
    let train_labels: Vec<u32> = train_rows.iter().map(|&r| labels[r]).collect();
    let (fit_idx, watch_idx) = stratified_split(&train_labels, 0.1, seed);
    let (fit_rows, watch_rows): (Vec<usize>, Vec<usize>) = (
        fit_idx.iter().map(|&i| train_rows[i]).collect(),
        watch_idx.iter().map(|&i| train_rows[i]).collect(),
    );
    let columns = ColumnTransformer::fit(&table, &[&target], &fit_rows)?;
    let width = columns.width();
    let dataset = |rows: &[usize]| -> kiln::Result<Dataset> {
        Dataset::new(
            columns.transform(&table, rows)?,
            [width],
            Targets::Classes {
                labels: rows.iter().map(|&r| labels[r]).collect(),
                classes: 2,
            },
        )
    };
    let (fit_set, watch_set, test_set) = (
        dataset(&fit_rows)?,
        dataset(&watch_rows)?,
        dataset(&test_rows)?,
    );
    let positives = labels.iter().filter(|&&l| l == 1).count();
    println!(
        "device: {device}; {} rows ({positives} {target} = {positive}), {} features after the transform; \
         {} training, {} validation, {} test rows",
        table.rows,
        width,
        fit_rows.len(),
        watch_rows.len(),
        test_rows.len()
    );
    let mut model = Sequential::new([width])
        .on(&device)
        .seed(seed)
        .add(Dense::new(64).activation(Activation::Relu))?
        .add(Dropout::new(0.3))?
        .add(Dense::new(32).activation(Activation::Relu))?
        .add(Dropout::new(0.3))?
        .add(Dense::new(1).activation(Activation::Sigmoid))?;
    print!("{}", model.summary());
    let metrics = [
        Metric::Auc,
        Metric::PrAuc,
        Metric::PrecisionAt(threshold),
        Metric::RecallAt(threshold),
        Metric::F1At(threshold),
    ];
    model.compile(
        Adam::new(number("--lr", 1e-3)?),
        Loss::BinaryCrossentropy,
        &metrics,
    )?;
    let mut stop =
        EarlyStopping::new(Monitor::ValMetric(Metric::Auc), 10).restore_best_weights(true);
    let config = FitConfig {
        epochs,
        batch_size,
        shuffle: Some(seed),
        validation_data: Some(&watch_set),
        class_weight: Some(balanced_class_weights(
            &fit_rows.iter().map(|&r| labels[r]).collect::<Vec<_>>(),
            2,
        )),
        callbacks: Callbacks::new(vec![&mut stop]),
        ..Default::default()
    };
    let history = model.fit(&fit_set, &config)?;
    let result = model.evaluate(&test_set, 1024)?;
    let value = |name| result.get(name).unwrap_or(f32::NAN);
    println!(
        "test roc_auc: {:.4} - pr_auc: {:.4} - precision: {:.4} - recall: {:.4} - f1: {:.4}",
        value("auc"),
        value("pr_auc"),
        value("precision"),
        value("recall"),
        value("f1_score")
    );
    let scores = model.predict_dataset(&test_set, 1024)?;
    let predicted = Tensor::from_raw(
        scores
            .raw()
            .scalar(BinaryOp::Greater, threshold)?
            .cast(DType::U32)?
            .reshape([test_rows.len()])?,
    );
    let actual = Tensor::from_vec(
        test_rows.iter().map(|&r| labels[r]).collect::<Vec<_>>(),
        [test_rows.len()],
        &device,
    )?;
    println!(
        "confusion matrix at threshold {threshold} (rows: true not {positive}, {positive}; columns: predicted):"
    );
    for row in confusion_matrix(&predicted, &actual, 2)? {
        println!("  {row:?}");
    }
    let saved = std::path::Path::new(SAVED);
    model.save(saved)?;
    let test_scores = scores.to_vec::<f32>()?;
    let test_labels: Vec<u32> = test_rows.iter().map(|&r| labels[r]).collect();
    history.plot(&saved.join("history.png"))?;
    plot::roc_curve(&test_scores, &test_labels, &saved.join("roc.png"))?;
    plot::precision_recall_curve(
        &test_scores,
        &test_labels,
        &saved.join("precision_recall.png"),
    )?;
    println!("plots: {SAVED}/history.png, {SAVED}/roc.png, {SAVED}/precision_recall.png");
    std::fs::write(saved.join("columns.json"), columns.to_json().to_string()).map_err(|e| {
        Error::InvalidData {
            op: "save",
            message: format!("{}/columns.json: {e}", saved.display()),
        }
    })?;
    println!(
        "saved the model and the column transformer (columns.json) to {}/",
        saved.display()
    );
    Ok(())
}
