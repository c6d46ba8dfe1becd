//! Keras-style layers. Each layer is built once with the per-sample shape of its input (no batch
//! dimension), creates its parameters then, and checks that input — a wrong shape is an error naming
//! the layer.

mod activation;
mod attention;
mod config;
mod conv;
mod conv1d;
mod dense;
mod dropout;
mod embedding;
mod flatten;
mod global_pool;
mod init;
mod norm;
mod pool;
mod recurrent;
mod reshape;

pub use activation::{Activation, ActivationLayer};
pub use attention::{MultiHeadAttention, TransformerEncoder};
pub use config::from_config;
pub use conv::{Conv2D, Padding};
pub use conv1d::Conv1D;
pub use dense::Dense;
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use flatten::Flatten;
pub use global_pool::{GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalMaxPooling1D};
pub use init::Initializer;
pub use norm::{BatchNormalization, LayerNormalization};
pub use pool::{AveragePooling2D, MaxPooling2D, Pooling2D};
pub use recurrent::{GRU, LSTM, Recurrent};
pub use reshape::{Permute, Reshape};

use kiln_autograd::{Tensor, Var};
use kiln_device::{Device, Error, Pool2dParams, Result};

/// A building block of a [`crate::Sequential`] model.
pub trait Layer: Send {
    /// The Keras kind of the layer (`dense`, `conv2d`, ...), used for default names.
    fn kind(&self) -> &'static str;

    /// Creates the parameters for per-sample input shape `input` on `device` (initialised from
    /// `seed`) and returns the per-sample output shape.
    fn build(
        &mut self,
        name: &str,
        input: &[usize],
        device: &Device,
        seed: u64,
    ) -> Result<Vec<usize>>;

    /// Output for a batch `x` (`[batch, ..input]`); `training` switches dropout and the like.
    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor>;

    /// [`Layer::forward`] given the padding mask of `x` (`[batch, steps]`, 1 = a real step, 0 =
    /// padding) when an upstream layer produced one. Layers that use masks (recurrent layers, masked
    /// pooling, attention) override this; others ignore the mask.
    fn forward_masked(&self, x: &Tensor, mask: Option<&Tensor>, training: bool) -> Result<Tensor> {
        let _ = mask;
        self.forward(x, training)
    }

    /// The mask this layer's output carries, given its input `x` and the input's mask. By default the
    /// mask ends here (Keras drops masks at layers that do not support them).
    fn output_mask(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Option<Tensor>> {
        let _ = (x, mask);
        Ok(None)
    }

    /// Output before the layer's final activation (for losses fused with softmax or sigmoid).
    fn forward_before_activation(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        self.forward(x, training)
    }

    /// The activation applied last, if any.
    fn activation(&self) -> Activation {
        Activation::Linear
    }

    /// The max pooling this layer is, if it is one: the executor may then fuse it into the layer
    /// before it (see [`Layer::forward_max_pooled`]).
    fn max_pool_params(&self) -> Option<Pool2dParams> {
        None
    }

    /// This layer's output max-pooled by `pool` as one op, when the layer has a fused kernel for
    /// that (`Conv2D` with ReLU: each image is convolved and pooled while in cache). `None`: run
    /// the two layers one after the other.
    fn forward_max_pooled(
        &self,
        x: &Tensor,
        pool: Pool2dParams,
        training: bool,
    ) -> Option<Result<Tensor>> {
        let _ = (x, pool, training);
        None
    }

    /// The layer's hyperparameters as Keras-style JSON (`{"kind": "dense", "units": 10, ...}`), enough
    /// for [`from_config`] to rebuild it.
    fn config(&self) -> serde_json::Value;

    /// The trainable parameters with their PyTorch-style names (`weight`, `bias`).
    fn parameters(&self) -> Vec<(&'static str, Var)> {
        Vec::new()
    }

    /// How far a layer that draws random numbers while training (Dropout) is in its random sequence;
    /// checkpoints save it so a resumed run draws what an uninterrupted one would. `None`: the
    /// layer draws none.
    fn rng_position(&self) -> Option<u64> {
        None
    }

    /// Moves the layer's random sequence to `position` (from a checkpoint's [`Layer::rng_position`]).
    fn set_rng_position(&self, _position: u64) {}

    /// State that is saved and loaded with the weights but not trained by the optimizer (batch
    /// normalisation's moving statistics), with PyTorch-style names (`running_mean`).
    fn buffers(&self) -> Vec<(&'static str, Var)> {
        Vec::new()
    }
}

/// `Err` naming `layer` unless it was built.
pub(crate) fn built<'a, T>(layer: &str, value: &'a Option<T>) -> Result<&'a T> {
    value.as_ref().ok_or_else(|| {
        Error::usage(
            "forward",
            format!("layer {layer} is used before it was built"),
        )
    })
}

/// Zeros, Keras's default for biases.
pub(crate) fn zeros(shape: &[usize], device: &Device) -> Result<Var> {
    Ok(Var::new(Tensor::zeros(shape.to_vec(), device)?))
}
