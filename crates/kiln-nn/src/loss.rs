//! Loss functions. Cross-entropies are fused with a final softmax (and binary cross-entropy with a
//! final sigmoid), as Keras does, so the model's last activation is folded into a stable kernel.

use kiln_autograd::Tensor;
use kiln_device::{Error, Result};

use crate::layers::Activation;

/// What a model minimises.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    /// Integer class labels against class scores.
    SparseCategoricalCrossentropy,
    /// One-hot (or soft) label vectors against class scores.
    CategoricalCrossentropy,
    /// 0/1 targets against one score per output.
    BinaryCrossentropy,
    /// Mean squared error.
    MeanSquaredError,
    /// Mean absolute error.
    MeanAbsoluteError,
    /// Huber loss with this delta (Keras's default is 1): squared below it, linear above.
    Huber(f32),
    /// Binary cross-entropy with positive targets weighted by this factor (PyTorch's `pos_weight`,
    /// for imbalanced data: negatives / positives is the usual choice).
    BinaryCrossentropyPosWeight(f32),
    /// Sparse categorical cross-entropy against labels smoothed by this amount (Keras's
    /// `label_smoothing`).
    SparseCategoricalCrossentropySmoothed(f32),
}

/// The loss of each output of a model and its weight in the total that is minimised (Keras's
/// `compile(loss=[...], loss_weights=[...])`). A single [`Loss`] converts into it: for a one-output
/// model, or applied to every output of a multi-output one, as in Keras.
///
/// ```
/// use kiln_nn::{Loss, Losses};
/// let losses = Losses::per_output([Loss::MeanSquaredError, Loss::BinaryCrossentropy])
///     .weighted(&[1.0, 0.2]);
/// # let _ = losses;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Losses {
    losses: Vec<Loss>,
    weights: Option<Vec<f32>>,
}

impl Losses {
    /// One loss per output, in the model's output order; each counts once in the total.
    pub fn per_output(losses: impl Into<Vec<Loss>>) -> Losses {
        Losses {
            losses: losses.into(),
            weights: None,
        }
    }

    /// Each output's weight in the total loss (Keras's `loss_weights`), in output order.
    pub fn weighted(mut self, weights: &[f32]) -> Losses {
        self.weights = Some(weights.to_vec());
        self
    }

    /// Each of `outputs` outputs' loss and weight, or an error naming what does not fit.
    pub(crate) fn resolve(&self, outputs: usize) -> Result<Vec<(Loss, f32)>> {
        let losses = match self.losses.as_slice() {
            [one] => vec![*one; outputs],
            many if many.len() == outputs => many.to_vec(),
            many => {
                return Err(Error::argument(
                    "compile",
                    format!(
                        "{} losses for a model with {outputs} outputs; give one loss, or one per \
                         output",
                        many.len()
                    ),
                ));
            }
        };
        let weights = match &self.weights {
            None => vec![1.0; outputs],
            Some(w) if w.len() != outputs => {
                return Err(Error::argument(
                    "compile",
                    format!(
                        "{} loss weights for a model with {outputs} outputs; give one per output",
                        w.len()
                    ),
                ));
            }
            Some(w) => match w.iter().find(|w| !w.is_finite() || **w < 0.0) {
                Some(bad) => {
                    return Err(Error::argument(
                        "compile",
                        format!("loss weight {bad} must be finite and >= 0"),
                    ));
                }
                None => w.clone(),
            },
        };
        Ok(losses.into_iter().zip(weights).collect())
    }
}

impl From<Loss> for Losses {
    fn from(loss: Loss) -> Losses {
        Losses::per_output([loss])
    }
}

impl<const N: usize> From<[Loss; N]> for Losses {
    fn from(losses: [Loss; N]) -> Losses {
        Losses::per_output(losses)
    }
}

impl From<Vec<Loss>> for Losses {
    fn from(losses: Vec<Loss>) -> Losses {
        Losses::per_output(losses)
    }
}

/// Losses compare equal by variant and parameter; a NaN parameter is a user error.
impl Eq for Loss {}

impl Loss {
    /// The Keras name.
    pub fn name(self) -> &'static str {
        match self {
            Loss::SparseCategoricalCrossentropy => "sparse_categorical_crossentropy",
            Loss::CategoricalCrossentropy => "categorical_crossentropy",
            Loss::BinaryCrossentropy => "binary_crossentropy",
            Loss::MeanSquaredError => "mean_squared_error",
            Loss::MeanAbsoluteError => "mean_absolute_error",
            Loss::Huber(_) => "huber",
            Loss::BinaryCrossentropyPosWeight(_) => "binary_crossentropy",
            Loss::SparseCategoricalCrossentropySmoothed(_) => "sparse_categorical_crossentropy",
        }
    }

    /// The final activation this loss absorbs (the model then hands it the scores before it).
    pub(crate) fn fused_activation(self) -> Option<Activation> {
        match self {
            Loss::SparseCategoricalCrossentropy
            | Loss::CategoricalCrossentropy
            | Loss::SparseCategoricalCrossentropySmoothed(_) => Some(Activation::Softmax),
            Loss::BinaryCrossentropy | Loss::BinaryCrossentropyPosWeight(_) => {
                Some(Activation::Sigmoid)
            }
            Loss::MeanSquaredError | Loss::MeanAbsoluteError | Loss::Huber(_) => None,
        }
    }

    /// The mean loss of `scores` (before the fused activation; raw logits when the model has none)
    /// against `targets` (u32 labels for the sparse loss, f32 otherwise).
    pub(crate) fn compute(self, scores: &Tensor, targets: &Tensor) -> Result<Tensor> {
        match self {
            Loss::SparseCategoricalCrossentropy => scores.cross_entropy(targets),
            Loss::CategoricalCrossentropy => match targets.dtype() {
                kiln_device::DType::U32 => scores.cross_entropy(targets),
                _ => scores.cross_entropy_soft(targets),
            },
            Loss::BinaryCrossentropy => scores.bce_with_logits(targets),
            Loss::MeanSquaredError => scores.mse(targets),
            Loss::MeanAbsoluteError => scores.l1(targets),
            Loss::Huber(delta) => scores.huber(targets, delta),
            Loss::BinaryCrossentropyPosWeight(w) => {
                let w = Tensor::from_slice(&[w], [1], scores.device())?;
                scores.bce_with_logits_weighted(targets, &w)
            }
            Loss::SparseCategoricalCrossentropySmoothed(s) => {
                scores.cross_entropy_smoothed(targets, s)
            }
        }
        .map_err(|e| e.within("loss", self.name()))
    }

    /// The loss of each sample, `[N]` (for per-sample and class weights).
    fn per_sample(self, scores: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let n = scores.dims().first().copied().unwrap_or(0);
        let labels = targets.dtype() == kiln_device::DType::U32;
        let fits = if labels {
            targets.dims() == [n] && scores.dims().len() == 2
        } else {
            targets.shape() == scores.shape()
        };
        if !fits {
            return Err(Error::invalid(
                "loss",
                format!(
                    "{}: targets {} do not fit the model's outputs {}",
                    self.name(),
                    targets.shape(),
                    scores.shape()
                ),
            ));
        }
        let mean_over_sample = |t: Tensor| t.reshape([n, t.numel() / n.max(1)])?.mean(1, false);
        let sparse = |targets: &Tensor, smoothing: f32| -> Result<Tensor> {
            let classes = scores.dims().last().copied().unwrap_or(1);
            let log_p = scores.log_softmax(-1)?;
            let one_hot = targets.one_hot(classes)?;
            let wanted = one_hot
                .mul_scalar(1.0 - smoothing)?
                .add_scalar(smoothing / classes as f32)?;
            wanted.mul(&log_p)?.sum(-1, false)?.neg()
        };
        let bce = |pos_weight: f32| -> Result<Tensor> {
            let pos_weight = Tensor::from_slice(&[pos_weight], [1], scores.device())?;
            mean_over_sample(scores.bce_with_logits_weighted_per_element(targets, &pos_weight)?)
        };
        match self {
            Loss::SparseCategoricalCrossentropy => sparse(targets, 0.0),
            Loss::SparseCategoricalCrossentropySmoothed(s) => sparse(targets, s),
            Loss::CategoricalCrossentropy if targets.dtype() == kiln_device::DType::U32 => {
                sparse(targets, 0.0)
            }
            Loss::CategoricalCrossentropy => {
                targets.mul(&scores.log_softmax(-1)?)?.sum(-1, false)?.neg()
            }
            Loss::BinaryCrossentropy => bce(1.0),
            Loss::BinaryCrossentropyPosWeight(w) => bce(w),
            Loss::MeanSquaredError => {
                let d = scores.sub(targets)?;
                mean_over_sample(d.mul(&d)?)
            }
            Loss::MeanAbsoluteError => mean_over_sample(scores.sub(targets)?.abs()?),
            Loss::Huber(delta) => mean_over_sample(scores.huber_per_element(targets, delta)?),
        }
    }

    /// The loss with a weight per sample (`[N]`, Keras's `sample_weight`; class weights become one
    /// per sample): `Σ wᵢ lossᵢ / N`, Keras's reduction.
    pub(crate) fn compute_weighted(
        self,
        scores: &Tensor,
        targets: &Tensor,
        weights: &Tensor,
    ) -> Result<Tensor> {
        let n = scores.dims().first().copied().unwrap_or(0);
        if weights.dims() != [n] {
            return Err(Error::invalid(
                "loss",
                format!(
                    "{}: sample weights {} must be [{n}], one per sample",
                    self.name(),
                    weights.shape()
                ),
            ));
        }
        self.per_sample(scores, targets)?
            .mul(weights)?
            .mean_all()
            .map_err(|e| e.within("loss", self.name()))
    }
}

#[cfg(test)]
mod tests {
    use kiln_autograd::Tensor;
    use kiln_device::Device;

    use super::Loss;

    /// With every weight 1, the weighted loss is the plain mean loss, for every loss.
    #[test]
    fn unit_sample_weights_give_the_unweighted_loss() {
        let cpu = Device::cpu();
        let scores =
            Tensor::from_slice(&[0.3f32, -1.2, 2.0, 0.1, -0.4, 0.9], [3, 2], &cpu).unwrap();
        let values = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0], [3, 2], &cpu).unwrap();
        let labels = Tensor::from_slice(&[1u32, 0, 1], [3], &cpu).unwrap();
        let ones = Tensor::ones([3], &cpu).unwrap();
        let cases = [
            (Loss::SparseCategoricalCrossentropy, &labels),
            (Loss::SparseCategoricalCrossentropySmoothed(0.1), &labels),
            (Loss::CategoricalCrossentropy, &values),
            (Loss::BinaryCrossentropy, &values),
            (Loss::BinaryCrossentropyPosWeight(3.0), &values),
            (Loss::MeanSquaredError, &values),
            (Loss::MeanAbsoluteError, &values),
            (Loss::Huber(0.5), &values),
        ];
        for (loss, targets) in cases {
            let plain = loss.compute(&scores, targets).unwrap().to_scalar().unwrap();
            let weighted = loss
                .compute_weighted(&scores, targets, &ones)
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!(
                (plain - weighted).abs() < 1e-5,
                "{loss:?}: {plain} vs {weighted}"
            );
        }
    }
}
