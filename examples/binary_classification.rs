//! The tutorial's binary classifier on the real Breast Cancer Wisconsin data (569 tumours, 30
//! features): min-max normalised features, one hidden ReLU layer, a sigmoid output, binary
//! cross-entropy, batch 32, learning rate 0.01; accuracy, precision and recall on a held-out 20%.
//!
//! `cargo run --release --example binary_classification`

use kiln::prelude::*;

fn main() -> kiln::Result<()> {
    let data = kiln::datasets::breast_cancer(None)?;
    // A fixed shuffle, then 80% to train and 20% held out.
    let order: Vec<usize> = (0..data.len()).map(|i| (i * 389) % data.len()).collect();
    let shuffled = data.select(&order)?;
    let (train, test) = shuffled.split_at(data.len() * 4 / 5);
    let range = train.feature_range();
    let (train, test) = (train.min_max_scaled(&range), test.min_max_scaled(&range));
    println!(
        "{} training and {} held-out tumours, {} features",
        train.len(),
        test.len(),
        train.sample_shape()[0]
    );

    let mut model = Sequential::new([30])
        .add(Dense::new(16).activation(Activation::Relu))?
        .add(Dense::new(1).activation(Activation::Sigmoid))?;
    print!("{}", model.summary());
    model.compile(
        Adam::new(0.01),
        Loss::BinaryCrossentropy,
        &[Metric::Accuracy, Metric::Precision, Metric::Recall],
    )?;
    model.fit(
        &train,
        &FitConfig {
            epochs: 30,
            batch_size: 32,
            verbose: false,
            ..Default::default()
        },
    )?;
    let result = model.evaluate(&test, 32)?;
    println!("held-out loss: {:.4}", result.loss);
    for (metric, value) in &result.metrics {
        println!("held-out {}: {value:.4}", metric.name());
    }
    Ok(())
}
