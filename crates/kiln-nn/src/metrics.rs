//! Metrics computed on the device: each batch adds its counts to running device tensors, which are
//! read back once per epoch (not per batch).

use kiln_autograd::Tensor;
use kiln_device::{BinaryOp, DType, RawTensor, Result, UnaryOp};

/// What to report besides the loss. Thresholded metrics take the probability at which a single
/// output means class 1 (0.5 for the plain variants).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// Fraction of samples whose predicted class (or 0/1 decision) is right.
    Accuracy,
    /// Precision: true positives / predicted positives (binary), or its mean over classes (macro).
    Precision,
    /// Recall: true positives / actual positives (binary), or its mean over classes (macro).
    Recall,
    /// F1, the harmonic mean of precision and recall (binary, or the macro mean over classes).
    F1,
    /// Precision with a single output deciding class 1 at this probability.
    PrecisionAt(f32),
    /// Recall with a single output deciding class 1 at this probability.
    RecallAt(f32),
    /// F1 with a single output deciding class 1 at this probability.
    F1At(f32),
    /// Area under the ROC curve of a single output (exact, from the epoch's scores).
    Auc,
    /// Area under the precision-recall curve (average precision) of a single output.
    PrAuc,
    /// Fraction of samples whose label is among the `k` highest scores.
    TopKAccuracy(usize),
    /// Mean absolute error of the outputs.
    MeanAbsoluteError,
    /// Root mean squared error of the outputs.
    RootMeanSquaredError,
}

/// Metrics compare equal by variant and parameter; a NaN threshold is a user error.
impl Eq for Metric {}

impl Metric {
    /// The Keras name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Precision | Metric::PrecisionAt(_) => "precision",
            Metric::Recall | Metric::RecallAt(_) => "recall",
            Metric::F1 | Metric::F1At(_) => "f1_score",
            Metric::Auc => "auc",
            Metric::PrAuc => "pr_auc",
            Metric::TopKAccuracy(_) => "top_k_categorical_accuracy",
            Metric::MeanAbsoluteError => "mae",
            Metric::RootMeanSquaredError => "rmse",
        }
    }

    /// Whether a larger value is better (every metric but the errors, MAE and RMSE).
    pub fn higher_is_better(self) -> bool {
        !matches!(
            self,
            Metric::MeanAbsoluteError | Metric::RootMeanSquaredError
        )
    }

    /// The probability threshold of a thresholded metric.
    fn threshold(self) -> Option<f32> {
        match self {
            Metric::Accuracy | Metric::Precision | Metric::Recall | Metric::F1 => Some(0.5),
            Metric::PrecisionAt(t) | Metric::RecallAt(t) | Metric::F1At(t) => Some(t),
            _ => None,
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
    Ok((predicted, labels(targets)?))
}

/// The true class of each sample as f32 `[N]`.
fn labels(targets: &Tensor) -> Result<RawTensor> {
    let t = targets.raw();
    match (t.dtype(), t.shape().rank()) {
        (DType::U32, _) => t.cast(DType::F32)?.reshape([t.shape().dims()[0]]),
        (_, 2) if t.shape().dims()[1] > 1 => t.argmax(Some(-1), false)?.cast(DType::F32),
        _ => t.reshape([t.shape().dims()[0]]),
    }
}

/// `a + b`, or `b` when nothing was summed yet.
fn accumulate(total: &mut Option<RawTensor>, batch: RawTensor) -> Result<()> {
    *total = Some(match total.take() {
        None => batch,
        Some(old) => old.binary(BinaryOp::Add, &batch)?,
    });
    Ok(())
}

/// Counts for the decision at one threshold: correct, true positives, predicted and actual
/// positives (per class when there are several).
struct DecisionCounts {
    /// The probability threshold.
    threshold: f32,
    counts: Option<[RawTensor; 4]>,
}

/// Running device-side sums for a list of metrics, read back once per epoch.
pub(crate) struct MetricTotals {
    metrics: Vec<Metric>,
    decisions: Vec<DecisionCounts>,
    /// The epoch's single-output scores and 0/1 labels, for the exact curve areas.
    ranked: Vec<(RawTensor, RawTensor)>,
    /// Samples whose label is among the top k, per k.
    top_k: Vec<(usize, Option<RawTensor>)>,
    /// Sums of absolute and of squared errors, and how many values they cover.
    errors: (Option<RawTensor>, Option<RawTensor>, usize),
    samples: usize,
}

impl MetricTotals {
    pub(crate) fn new(metrics: &[Metric]) -> Self {
        let mut decisions: Vec<DecisionCounts> = Vec::new();
        let mut top_k: Vec<(usize, Option<RawTensor>)> = Vec::new();
        for m in metrics {
            if let Some(t) = m
                .threshold()
                .filter(|t| !decisions.iter().any(|d| d.threshold == *t))
            {
                decisions.push(DecisionCounts {
                    threshold: t,
                    counts: None,
                });
            }
            match *m {
                Metric::TopKAccuracy(k) if !top_k.iter().any(|(kk, _)| *kk == k) => {
                    top_k.push((k, None));
                }
                _ => {}
            }
        }
        MetricTotals {
            metrics: metrics.to_vec(),
            decisions,
            ranked: Vec::new(),
            top_k,
            errors: (None, None, 0),
            samples: 0,
        }
    }

    /// Adds a batch. `threshold` is the score at which a single output means class 1: 0 when the
    /// scores are logits (before a fused sigmoid, or a linear output), 0.5 for probabilities.
    pub(crate) fn add(&mut self, scores: &Tensor, targets: &Tensor, threshold: f32) -> Result<()> {
        if self.metrics.is_empty() {
            return Ok(());
        }
        let logits = threshold == 0.0;
        for d in &mut self.decisions {
            // a probability threshold p is the logit ln(p / (1 - p)) on logits
            let at = if logits {
                (d.threshold / (1.0 - d.threshold)).ln()
            } else {
                d.threshold
            };
            d.add(scores, targets, at)?;
        }
        let outputs = scores.dims().last().copied().unwrap_or(1);
        if self
            .metrics
            .iter()
            .any(|m| matches!(m, Metric::Auc | Metric::PrAuc))
        {
            if outputs != 1 {
                return Err(kiln_device::Error::invalid(
                    "metrics",
                    format!(
                        "AUC needs a single output per sample (a binary classifier), got scores {}",
                        scores.shape()
                    ),
                ));
            }
            self.ranked
                .push((scores.raw().reshape([scores.dims()[0]])?, labels(targets)?));
        }
        for (k, total) in &mut self.top_k {
            let (_, indices) = scores.raw().topk((*k).min(outputs), true)?;
            let rows = scores.dims()[0];
            let hits = indices
                .cast(DType::F32)?
                .binary(BinaryOp::Equal, &labels(targets)?.reshape([rows, 1])?)?
                .sum(None, false)?;
            accumulate(total, hits)?;
        }
        if self
            .metrics
            .iter()
            .any(|m| matches!(m, Metric::MeanAbsoluteError | Metric::RootMeanSquaredError))
        {
            let diff = scores.raw().binary(
                BinaryOp::Sub,
                &targets
                    .raw()
                    .cast(DType::F32)?
                    .reshape(scores.shape().clone())?,
            )?;
            accumulate(
                &mut self.errors.0,
                diff.unary(UnaryOp::Abs)?.sum(None, false)?,
            )?;
            accumulate(
                &mut self.errors.1,
                diff.binary(BinaryOp::Mul, &diff)?.sum(None, false)?,
            )?;
            self.errors.2 += diff.numel();
        }
        self.samples += scores.dims()[0];
        Ok(())
    }

    /// Reads the sums back (once) and returns each metric's value.
    pub(crate) fn finish(&self) -> Result<Vec<(Metric, f32)>> {
        let mut decided = Vec::new();
        for d in &self.decisions {
            decided.push((d.threshold, d.read(self.samples)?));
        }
        let (scores, labels) = self.read_ranked()?;
        let read = |t: &Option<RawTensor>| -> Result<f32> {
            t.as_ref()
                .map_or(Ok(f32::NAN), |t| Ok(t.to_vec::<f32>()?[0]))
        };
        let values = self.metrics.iter().map(|&m| {
            let rates = m
                .threshold()
                .and_then(|t| decided.iter().find(|(dt, _)| *dt == t))
                .map(|(_, r)| *r);
            let value = match (m, rates) {
                (Metric::Accuracy, Some(r)) => Ok(r.accuracy),
                (Metric::Precision | Metric::PrecisionAt(_), Some(r)) => Ok(r.precision),
                (Metric::Recall | Metric::RecallAt(_), Some(r)) => Ok(r.recall),
                (Metric::F1 | Metric::F1At(_), Some(r)) => Ok(r.f1),
                (Metric::Auc, _) => Ok(roc_auc(&scores, &labels).map_or(f32::NAN, |v| v as f32)),
                (Metric::PrAuc, _) => {
                    Ok(average_precision(&scores, &labels).map_or(f32::NAN, |v| v as f32))
                }
                (Metric::TopKAccuracy(k), _) => {
                    let total = self
                        .top_k
                        .iter()
                        .find(|(kk, _)| *kk == k)
                        .and_then(|(_, t)| t.clone());
                    read(&total).map(|hits| hits / self.samples.max(1) as f32)
                }
                (Metric::MeanAbsoluteError, _) => {
                    read(&self.errors.0).map(|s| s / self.errors.2.max(1) as f32)
                }
                (Metric::RootMeanSquaredError, _) => {
                    read(&self.errors.1).map(|s| (s / self.errors.2.max(1) as f32).sqrt())
                }
                (_, None) => Ok(f32::NAN),
            };
            value.map(|v| (m, v))
        });
        values.collect()
    }

    /// The epoch's scores and labels for the curve areas, read back in one transfer each.
    fn read_ranked(&self) -> Result<(Vec<f32>, Vec<u32>)> {
        if self.ranked.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let join = |pick: fn(&(RawTensor, RawTensor)) -> &RawTensor| -> Result<Vec<f32>> {
            let parts: Vec<&RawTensor> = self.ranked.iter().map(pick).collect();
            RawTensor::concat(&parts, 0)?.to_vec::<f32>()
        };
        let scores = join(|(s, _)| s)?;
        let labels = join(|(_, l)| l)?
            .iter()
            .map(|&l| u32::from(l > 0.5))
            .collect();
        Ok((scores, labels))
    }
}

/// Accuracy, precision, recall and F1 at one threshold.
#[derive(Debug, Clone, Copy)]
struct Rates {
    accuracy: f32,
    precision: f32,
    recall: f32,
    f1: f32,
}

impl DecisionCounts {
    fn add(&mut self, scores: &Tensor, targets: &Tensor, threshold: f32) -> Result<()> {
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
                let mut summed = Vec::with_capacity(4);
                for (a, b) in old.iter().zip(&batch) {
                    summed.push(a.binary(BinaryOp::Add, b)?);
                }
                summed.try_into().expect("four counts")
            }
        });
        Ok(())
    }

    fn read(&self, samples: usize) -> Result<Rates> {
        let Some(counts) = &self.counts else {
            return Ok(Rates {
                accuracy: f32::NAN,
                precision: f32::NAN,
                recall: f32::NAN,
                f1: f32::NAN,
            });
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
        // Macro averages over classes; with one output they are the binary values.
        let per_class = |c: usize| {
            let (p, r) = (ratio(tp[c], predicted[c]), ratio(tp[c], actual[c]));
            (p, r, ratio(2.0 * p * r, p + r))
        };
        let mean = |f: fn((f32, f32, f32)) -> f32| {
            (0..classes).map(|c| f(per_class(c))).sum::<f32>() / classes as f32
        };
        Ok(Rates {
            accuracy: ratio(all[0], samples as f32),
            precision: mean(|(p, _, _)| p),
            recall: mean(|(_, r, _)| r),
            f1: mean(|(_, _, f)| f),
        })
    }
}

/// The confusion matrix of `predicted` and `actual` class indices (u32, `[N]`) over `classes`
/// classes: row = true class, column = predicted; computed on the device, read back once.
pub fn confusion_matrix(
    predicted: &Tensor,
    actual: &Tensor,
    classes: usize,
) -> Result<Vec<Vec<u64>>> {
    let (p, a) = (predicted.one_hot(classes)?, actual.one_hot(classes)?);
    let counts = a.t()?.matmul(&p)?.to_vec::<f32>()?;
    Ok(counts
        .chunks(classes.max(1))
        .map(|row| row.iter().map(|&c| c.round() as u64).collect())
        .collect())
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
    let mut last_recall = 0.0f64;
    let mut area = 0.0f64;
    for (true_pos, false_pos) in threshold_counts(scores, labels) {
        let recall = true_pos as f64 / positives as f64;
        area += (recall - last_recall) * true_pos as f64 / (true_pos + false_pos) as f64;
        last_recall = recall;
    }
    Some(area)
}

/// For each distinct score, highest first: how many positives and negatives score at least that
/// much (true and false positives at that threshold) — the points of the ROC and precision-recall
/// curves.
pub fn threshold_counts(scores: &[f32], labels: &[u32]) -> Vec<(usize, usize)> {
    let mut order: Vec<usize> = (0..scores.len().min(labels.len())).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut true_pos, mut false_pos) = (0usize, 0usize);
    let mut counts = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        let positives = order[start..end]
            .iter()
            .filter(|&&i| labels[i] != 0)
            .count();
        true_pos += positives;
        false_pos += end - start - positives;
        counts.push((true_pos, false_pos));
        start = end;
    }
    counts
}

#[cfg(test)]
mod tests {
    use kiln_autograd::Tensor;
    use kiln_device::Device;

    use super::{Metric, MetricTotals, confusion_matrix};

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

    #[test]
    fn binary_metrics_at_thresholds_auc_and_errors() {
        let cpu = Device::cpu();
        // probabilities and labels: at 0.5 predicted 1 for 0.9, 0.6, 0.7; at 0.65 for 0.9, 0.7
        let scores = Tensor::from_slice(&[0.9f32, 0.6, 0.2, 0.7, 0.4], [5, 1], &cpu).unwrap();
        let labels = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 1.0], [5, 1], &cpu).unwrap();
        let metrics = [
            Metric::Precision,
            Metric::Recall,
            Metric::F1,
            Metric::PrecisionAt(0.65),
            Metric::RecallAt(0.65),
            Metric::Auc,
            Metric::PrAuc,
            Metric::MeanAbsoluteError,
        ];
        let mut totals = MetricTotals::new(&metrics);
        // two batches, as fit adds them
        for rows in [(0, 2), (2, 3)] {
            let s = scores.narrow(0, rows.0, rows.1).unwrap();
            let l = labels.narrow(0, rows.0, rows.1).unwrap();
            totals.add(&s, &l, 0.5).unwrap();
        }
        let got: Vec<f32> = totals
            .finish()
            .unwrap()
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        // at 0.5: tp 2 of 3 predicted, 3 actual; F1 = 2/3. at 0.65: tp 2 of 2, recall 2/3.
        // AUC: positives 0.9, 0.7, 0.4 against negatives 0.6, 0.2: 5 of 6 pairs ordered.
        // AP: recall steps 1/3 at P=1, 2/3 at P=1, (0.6 negative), 1 at P=3/4.
        let mae = (0.1 + 0.6 + 0.2 + 0.3 + 0.6) / 5.0;
        let want = [
            2.0 / 3.0,
            2.0 / 3.0,
            2.0 / 3.0,
            1.0,
            2.0 / 3.0,
            5.0 / 6.0,
            (1.0 + 1.0 + 0.75) / 3.0,
            mae,
        ];
        for ((m, g), w) in metrics.iter().zip(&got).zip(want) {
            assert!((g - w).abs() < 1e-5, "{m:?}: {g} vs {w}");
        }
    }

    #[test]
    fn top_k_accuracy_and_confusion_matrix() {
        let cpu = Device::cpu();
        let scores = [0.1f32, 0.5, 0.4, 0.7, 0.2, 0.1, 0.3, 0.3, 0.4];
        let scores = Tensor::from_slice(&scores, [3, 3], &cpu).unwrap();
        let labels = Tensor::from_slice(&[2u32, 1, 0], [3], &cpu).unwrap();
        let mut totals = MetricTotals::new(&[Metric::TopKAccuracy(2), Metric::Accuracy]);
        totals.add(&scores, &labels, 0.0).unwrap();
        let got = totals.finish().unwrap();
        // top 2 of each row: {1, 2}, {0, 1}, {2, 0} (ties: lower index first): every label hits.
        assert!((got[0].1 - 1.0).abs() < 1e-6, "{got:?}");
        assert!((got[1].1 - 0.0).abs() < 1e-6, "{got:?}");
        let predicted = Tensor::from_slice(&[1u32, 0, 2, 2], [4], &cpu).unwrap();
        let actual = Tensor::from_slice(&[2u32, 0, 2, 1], [4], &cpu).unwrap();
        let matrix = confusion_matrix(&predicted, &actual, 3).unwrap();
        assert_eq!(matrix, vec![vec![1, 0, 0], vec![0, 0, 1], vec![0, 1, 1]]);
    }
}
