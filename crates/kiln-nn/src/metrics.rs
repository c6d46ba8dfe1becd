//! Metrics computed on the device: each batch adds its counts to running device tensors, which are
//! read back once per epoch (not per batch).

use kiln_autograd::Tensor;
use kiln_device::{BinaryOp, DType, Error, RawTensor, Result};

/// What to report besides the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Fraction of samples whose predicted class (or 0/1 decision) is right.
    Accuracy,
    /// Binary precision: true positives / predicted positives.
    Precision,
    /// Binary recall: true positives / actual positives.
    Recall,
}

impl Metric {
    /// The Keras name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Precision => "precision",
            Metric::Recall => "recall",
        }
    }
}

/// Predicted and true classes of a batch as f32 tensors: argmax for several outputs, a threshold for one.
fn decisions(scores: &Tensor, targets: &Tensor, threshold: f32) -> Result<(RawTensor, RawTensor)> {
    let s = scores.raw();
    let outputs = s.shape().dims().last().copied().unwrap_or(1);
    let predicted = if outputs == 1 {
        s.scalar(BinaryOp::Greater, threshold)?
            .reshape([s.shape().dims()[0]])?
    } else {
        s.argmax(Some(-1), false)?.cast(DType::F32)?
    };
    let t = targets.raw();
    let actual = match (t.dtype(), t.shape().rank()) {
        (DType::U32, _) => t.cast(DType::F32)?,
        (_, 2) if t.shape().dims()[1] > 1 => t.argmax(Some(-1), false)?.cast(DType::F32)?,
        _ => t.reshape([t.shape().dims()[0]])?,
    };
    Ok((predicted, actual))
}

/// Running device-side counts for a list of metrics.
pub(crate) struct MetricTotals {
    metrics: Vec<Metric>,
    /// correct, true positives, predicted positives, actual positives (scalars on the device).
    counts: Option<[RawTensor; 4]>,
    samples: usize,
}

impl MetricTotals {
    pub(crate) fn new(metrics: &[Metric]) -> Self {
        MetricTotals {
            metrics: metrics.to_vec(),
            counts: None,
            samples: 0,
        }
    }

    /// Adds a batch; `threshold` is where a single score turns into class 1.
    pub(crate) fn add(&mut self, scores: &Tensor, targets: &Tensor, threshold: f32) -> Result<()> {
        if self.metrics.is_empty() {
            return Ok(());
        }
        let (predicted, actual) = decisions(scores, targets, threshold)?;
        let sum = |t: RawTensor| t.sum(None, false);
        let batch = [
            sum(predicted.binary(BinaryOp::Equal, &actual)?)?,
            sum(predicted.binary(BinaryOp::Mul, &actual)?)?,
            sum(predicted.clone())?,
            sum(actual)?,
        ];
        self.counts = Some(match self.counts.take() {
            None => batch,
            Some(old) => {
                let [a, b, c, d] = old;
                let [e, f, g, h] = batch;
                [
                    a.binary(BinaryOp::Add, &e)?,
                    b.binary(BinaryOp::Add, &f)?,
                    c.binary(BinaryOp::Add, &g)?,
                    d.binary(BinaryOp::Add, &h)?,
                ]
            }
        });
        self.samples += scores.dims()[0];
        Ok(())
    }

    /// Reads the counts back (once) and returns each metric's value.
    pub(crate) fn finish(&self) -> Result<Vec<(Metric, f32)>> {
        let Some(counts) = &self.counts else {
            return Ok(self.metrics.iter().map(|&m| (m, f32::NAN)).collect());
        };
        let all = RawTensor::stack(&counts.iter().collect::<Vec<_>>(), 0)?.to_vec::<f32>()?;
        let ratio = |a: f32, b: f32| if b > 0.0 { a / b } else { 0.0 };
        Ok(self
            .metrics
            .iter()
            .map(|&m| {
                let value = match m {
                    Metric::Accuracy => ratio(all[0], self.samples as f32),
                    Metric::Precision => ratio(all[1], all[2]),
                    Metric::Recall => ratio(all[1], all[3]),
                };
                (m, value)
            })
            .collect())
    }
}

/// `Err` when a metric cannot describe a model with `outputs` outputs.
pub(crate) fn check(metrics: &[Metric], outputs: usize) -> Result<()> {
    if outputs > 1
        && let Some(m) = metrics
            .iter()
            .find(|m| matches!(m, Metric::Precision | Metric::Recall))
    {
        return Err(Error::invalid(
            "compile",
            format!(
                "{} is computed for binary models (one output); this model has {outputs} outputs",
                m.name()
            ),
        ));
    }
    Ok(())
}
