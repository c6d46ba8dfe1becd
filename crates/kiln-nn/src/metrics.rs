//! Metrics computed on the device: each batch adds its counts to running device tensors, which are
//! read back once per epoch (not per batch).

use kiln_autograd::Tensor;
use kiln_device::{BinaryOp, DType, RawTensor, Result};

/// What to report besides the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Fraction of samples whose predicted class (or 0/1 decision) is right.
    Accuracy,
    /// Precision: true positives / predicted positives (binary), or its mean over classes (macro).
    Precision,
    /// Recall: true positives / actual positives (binary), or its mean over classes (macro).
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
        let correct = predicted
            .binary(BinaryOp::Equal, &actual)?
            .sum(None, false)?;
        let classes = scores.dims().last().copied().unwrap_or(1);
        // Binary: 0/1 decisions. Several classes: one-hot rows, so the sums below count per class.
        let (predicted, actual) = if classes == 1 {
            (predicted, actual)
        } else {
            let ids: Vec<f32> = (0..classes).map(|c| c as f32).collect();
            let ids = RawTensor::from_slice(&ids, [1, classes], predicted.device())?;
            let one_hot = |t: &RawTensor| t.reshape([t.numel(), 1])?.binary(BinaryOp::Equal, &ids);
            (one_hot(&predicted)?, one_hot(&actual)?)
        };
        let sum = |t: RawTensor| t.sum(Some(0), false);
        let batch = [
            correct,
            sum(predicted.binary(BinaryOp::Mul, &actual)?)?,
            sum(predicted)?,
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
        let flat: Vec<RawTensor> = counts
            .iter()
            .map(|c| c.reshape([c.numel()]))
            .collect::<Result<_>>()?;
        let all = RawTensor::concat(&flat.iter().collect::<Vec<_>>(), 0)?.to_vec::<f32>()?;
        let classes = (all.len() - 1) / 3;
        let (tp, predicted, actual) = (
            &all[1..1 + classes],
            &all[1 + classes..1 + 2 * classes],
            &all[1 + 2 * classes..],
        );
        let ratio = |a: f32, b: f32| if b > 0.0 { a / b } else { 0.0 };
        // Macro average over classes; with one output it is the binary value.
        let mean_ratio = |den: &[f32]| {
            tp.iter().zip(den).map(|(&a, &b)| ratio(a, b)).sum::<f32>() / classes as f32
        };
        Ok(self
            .metrics
            .iter()
            .map(|&m| {
                let value = match m {
                    Metric::Accuracy => ratio(all[0], self.samples as f32),
                    Metric::Precision => mean_ratio(predicted),
                    Metric::Recall => mean_ratio(actual),
                };
                (m, value)
            })
            .collect())
    }
}

/// Area under the ROC curve of `scores` for 0/1 `labels` (exact: the Mann–Whitney statistic, ties
/// counting one half). `None` when one class is missing (the curve is undefined).
pub fn roc_auc(scores: &[f32], labels: &[u32]) -> Option<f64> {
    let positives = labels.iter().filter(|&&l| l != 0).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 || scores.len() != labels.len() {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Sum of the (1-based, tie-averaged) ranks of the positives.
    let mut rank_sum = 0.0f64;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        let average_rank = (start + end + 1) as f64 / 2.0;
        let tied_positives = order[start..end]
            .iter()
            .filter(|&&i| labels[i] != 0)
            .count();
        rank_sum += average_rank * tied_positives as f64;
        start = end;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// Average precision of `scores` for 0/1 `labels` (scikit-learn's: `Σ (Rₙ - Rₙ₋₁) Pₙ` over the
/// distinct score thresholds, highest first), the area under the precision-recall curve. `None`
/// without positives.
pub fn average_precision(scores: &[f32], labels: &[u32]) -> Option<f64> {
    let positives = labels.iter().filter(|&&l| l != 0).count();
    if positives == 0 || scores.len() != labels.len() {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut true_pos, mut seen, mut last_recall, mut area) = (0usize, 0usize, 0.0f64, 0.0f64);
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        true_pos += order[start..end]
            .iter()
            .filter(|&&i| labels[i] != 0)
            .count();
        seen += end - start;
        let recall = true_pos as f64 / positives as f64;
        area += (recall - last_recall) * true_pos as f64 / seen as f64;
        last_recall = recall;
        start = end;
    }
    Some(area)
}

#[cfg(test)]
mod tests {
    use kiln_autograd::Tensor;
    use kiln_device::Device;

    use super::{Metric, MetricTotals};

    #[test]
    fn macro_precision_and_recall_average_over_classes() {
        let cpu = Device::cpu();
        // Predictions (argmax): 0, 1, 1, 2, 2; labels: 0, 1, 2, 2, 0.
        let scores = [
            9.0f32, 0., 0., 0., 9., 0., 0., 9., 0., 0., 0., 9., 0., 0., 9.,
        ];
        let scores = Tensor::from_slice(&scores, [5, 3], &cpu).unwrap();
        let labels = Tensor::from_slice(&[0u32, 1, 2, 2, 0], [5], &cpu).unwrap();
        let mut totals = MetricTotals::new(&[Metric::Accuracy, Metric::Precision, Metric::Recall]);
        totals.add(&scores, &labels, 0.0).unwrap();
        let values: Vec<f32> = totals
            .finish()
            .unwrap()
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        // Per class precision 1, 1/2, 1/2; recall 1/2, 1, 1/2.
        let want = [3.0 / 5.0, 2.0 / 3.0, 2.0 / 3.0];
        for (got, want) in values.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{values:?}");
        }
    }
}
