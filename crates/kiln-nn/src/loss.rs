//! Loss functions. Cross-entropies are fused with a final softmax (and binary cross-entropy with a
//! final sigmoid), as Keras does, so the model's last activation is folded into a stable kernel.

use kiln_autograd::Tensor;
use kiln_device::{Error, Result};

use crate::layers::Activation;

/// What a model minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Integer class labels against class scores.
    SparseCategoricalCrossentropy,
    /// One-hot (or soft) label vectors against class scores.
    CategoricalCrossentropy,
    /// 0/1 targets against one score per output.
    BinaryCrossentropy,
    /// Mean squared error.
    MeanSquaredError,
}

impl Loss {
    /// The Keras name.
    pub fn name(self) -> &'static str {
        match self {
            Loss::SparseCategoricalCrossentropy => "sparse_categorical_crossentropy",
            Loss::CategoricalCrossentropy => "categorical_crossentropy",
            Loss::BinaryCrossentropy => "binary_crossentropy",
            Loss::MeanSquaredError => "mean_squared_error",
        }
    }

    /// The final activation this loss absorbs (the model then hands it the scores before it).
    pub(crate) fn fused_activation(self) -> Option<Activation> {
        match self {
            Loss::SparseCategoricalCrossentropy | Loss::CategoricalCrossentropy => {
                Some(Activation::Softmax)
            }
            Loss::BinaryCrossentropy => Some(Activation::Sigmoid),
            Loss::MeanSquaredError => None,
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
        }
        .map_err(|e| Error::invalid("loss", format!("{}: {e}", self.name())))
    }
}
