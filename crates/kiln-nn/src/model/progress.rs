//! Reporting an epoch: its mean loss (read back once), Keras's progress bar and line.

use kiln_device::{Error, RawTensor, Result};

use super::fit_config::Evaluation;

/// The sample-weighted mean of an epoch's batch losses (read back in one transfer); with
/// `refuse_non_finite`, a NaN or infinite batch loss is an error naming the epoch and the batch.
pub(crate) fn epoch_loss(
    batch_losses: &[(RawTensor, usize)],
    epoch: usize,
    refuse_non_finite: bool,
) -> Result<f32> {
    if batch_losses.is_empty() {
        return Ok(f32::NAN);
    }
    let tensors: Vec<&RawTensor> = batch_losses.iter().map(|(t, _)| t).collect();
    let losses = RawTensor::concat(&tensors, 0)?.to_vec::<f32>()?;
    if let Some(batch) = losses
        .iter()
        .position(|l| refuse_non_finite && !l.is_finite())
    {
        return Err(Error::InvalidData {
            op: "fit",
            message: format!(
                "the loss became {} at epoch {}, batch {} (lower the learning rate, or check the data for \
                 NaN, infinities or unnormalised values)",
                losses[batch],
                epoch + 1,
                batch + 1
            ),
        });
    }
    let samples: usize = batch_losses.iter().map(|(_, n)| n).sum();
    Ok(losses
        .iter()
        .zip(batch_losses)
        .map(|(l, (_, n))| l * *n as f32)
        .sum::<f32>()
        / samples as f32)
}

/// A Keras-style bar of the epoch's steps, drawn only when stdout is a terminal (losses are not read
/// back per step, so the bar shows steps and time; the epoch line below gives the numbers).
pub(crate) fn progress_bar(
    verbose: bool,
    steps: usize,
    epoch: usize,
    epochs: usize,
) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !verbose || !std::io::stdout().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(steps as u64);
    let style = indicatif::ProgressStyle::with_template(&format!(
        "Epoch {}/{epochs} {{pos}}/{{len}} [{{bar:30}}] - {{elapsed}}",
        epoch + 1
    ))
    .expect("a valid template")
    .progress_chars("=>.");
    bar.set_style(style);
    bar
}

/// `938/938 [==============================] - 3s 3ms/step - loss: 0.2735 - accuracy: 0.9213`
pub(crate) fn progress_line(
    steps: usize,
    seconds: f64,
    train: &Evaluation,
    validation: Option<&Evaluation>,
) -> String {
    let mut line = format!(
        "{steps}/{steps} [{}] - {:.0}s {:.0}ms/step - loss: {:.4}",
        "=".repeat(30),
        seconds,
        seconds * 1000.0 / steps.max(1) as f64,
        train.loss
    );
    for (name, v) in train.values().iter().skip(1) {
        line += &format!(" - {name}: {v:.4}");
    }
    if let Some(val) = validation {
        for (name, v) in val.values() {
            line += &format!(" - val_{name}: {v:.4}");
        }
    }
    line
}
