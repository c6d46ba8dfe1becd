//! The classic Keras MNIST tutorial, in kiln:
//!
//! ```text
//! cargo run --release --example mnist -- [--dataset mnist|fashion|sample] [--epochs 10]
//!                                        [--batch-size 64] [--device auto|cpu|gpu]
//! ```
//!
//! Data-parallel over MPI (built with `--features mpi`; `--batch-size` is then each rank's part):
//!
//! ```text
//! mpirun -np 4 target/release/examples/mnist --distributed
//! ```

use kiln::prelude::*;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

fn main() -> kiln::Result<()> {
    let job = if std::env::args().any(|a| a == "--distributed") {
        Some(Distributed::mpi()?)
    } else {
        None
    };
    // Rank 0 alone prints, evaluates and saves.
    let root = job.as_ref().is_none_or(Distributed::is_root);
    let device = match (arg("--device", "auto").as_str(), &job) {
        ("cpu", _) => Device::cpu(),
        ("gpu", _) => Device::gpu()?,
        (_, Some(job)) => job.device()?,
        _ => Device::auto(),
    };
    let data = match arg("--dataset", "mnist").as_str() {
        "fashion" => kiln::datasets::fashion_mnist(None)?,
        "sample" => kiln::datasets::sample()?,
        _ => kiln::datasets::mnist(None)?,
    };
    let epochs = arg("--epochs", "10").parse().unwrap_or(10);
    let batch_size = arg("--batch-size", "64").parse().unwrap_or(64);
    if root {
        match &job {
            Some(job) => println!("{} ranks; rank 0 on {device}", job.size()),
            None => println!("device: {device}"),
        }
        println!(
            "{} training and {} test images",
            data.train.len(),
            data.test.len()
        );
    }

    let mut model = Sequential::new([1, 28, 28])
        .on(&device)
        .add(Conv2D::new(32, (3, 3)).activation(Activation::Relu))?
        .add(MaxPooling2D::new((2, 2)))?
        .add(Flatten::new())?
        .add(Dense::new(10).activation(Activation::Softmax))?;
    if root {
        print!("{}", model.summary());
    }
    model.compile(
        Adam::new(0.001),
        Loss::SparseCategoricalCrossentropy,
        &[Metric::Accuracy],
    )?;
    let history = model.fit(
        &data.train,
        &FitConfig {
            epochs,
            batch_size,
            distributed: job.as_ref(),
            ..Default::default()
        },
    )?;
    if !root {
        return Ok(());
    }
    let result = model.evaluate(&data.test, batch_size)?;
    println!(
        "test loss: {:.4} - test accuracy: {:.4}",
        result.loss,
        result.metric(Metric::Accuracy).unwrap_or(f32::NAN)
    );
    let saved = std::path::Path::new("mnist-model");
    model.save(saved)?;
    history.plot(&saved.join("history.png"))?;
    println!(
        "saved weights, config and optimizer state to {0}/; plot: {0}/history.png",
        saved.display()
    );
    Ok(())
}
