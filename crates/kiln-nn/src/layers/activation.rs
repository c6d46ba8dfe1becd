//! Activation functions and the layer that applies one.

use kiln_autograd::Tensor;
use kiln_device::{Device, Result};

use super::Layer;

/// An activation function (Keras's `activation=` argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// The identity.
    #[default]
    Linear,
    /// `max(x, 0)`
    Relu,
    /// `1 / (1 + e^-x)`
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// Softmax over the last axis.
    Softmax,
    /// GELU, exact (`x Φ(x)`).
    Gelu,
    /// Leaky ReLU with Keras's negative slope 0.2.
    LeakyRelu,
    /// ELU with alpha 1.
    Elu,
    /// `ln(1 + e^x)`
    Softplus,
    /// SiLU / swish: `x σ(x)`.
    Silu,
}

impl Activation {
    /// Applies the function.
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Linear => Ok(x.clone()),
            Activation::Relu => x.relu(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Tanh => x.tanh(),
            Activation::Softmax => x.softmax(-1),
            Activation::Gelu => x.gelu(),
            Activation::LeakyRelu => x.leaky_relu(0.2),
            Activation::Elu => x.elu(1.0),
            Activation::Softplus => x.softplus(),
            Activation::Silu => x.silu(),
        }
    }

    /// The activation with Keras name `name` (`"relu"`, ...), if there is one.
    pub fn from_name(name: &str) -> Option<Activation> {
        [
            Activation::Linear,
            Activation::Relu,
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::Softmax,
            Activation::Gelu,
            Activation::LeakyRelu,
            Activation::Elu,
            Activation::Softplus,
            Activation::Silu,
        ]
        .into_iter()
        .find(|a| a.name() == name || (name == "swish" && *a == Activation::Silu))
    }

    /// The Keras name.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Softmax => "softmax",
            Activation::Gelu => "gelu",
            Activation::LeakyRelu => "leaky_relu",
            Activation::Elu => "elu",
            Activation::Softplus => "softplus",
            Activation::Silu => "silu",
        }
    }
}

/// A layer that only applies an activation (Keras's `ReLU()`, `Softmax()`, `Activation('tanh')`).
#[derive(Debug, Clone, Copy)]
pub struct ActivationLayer(pub Activation);

impl Layer for ActivationLayer {
    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "kind": "activation", "activation": self.0.name() })
    }

    fn kind(&self) -> &'static str {
        self.0.name()
    }

    fn build(
        &mut self,
        _name: &str,
        input: &[usize],
        _device: &Device,
        _seed: u64,
    ) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }

    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        self.0.apply(x)
    }

    fn forward_before_activation(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        Ok(x.clone())
    }

    fn activation(&self) -> Activation {
        self.0
    }
}
