//! `Dense`: `activation(x · Wᵀ + b)`, with W stored `[units, inputs]` as PyTorch's `Linear`.

use kiln_autograd::{Tensor, Var};
use kiln_device::{Device, Error, Result};

use super::{Activation, Layer, built, glorot_uniform, zeros};

/// A fully connected layer.
pub struct Dense {
    units: usize,
    activation: Activation,
    params: Option<(Var, Var)>,
    name: String,
}

impl Dense {
    /// `units` outputs, no activation.
    pub fn new(units: usize) -> Self {
        Dense {
            units,
            activation: Activation::Linear,
            params: None,
            name: String::new(),
        }
    }

    /// Sets the activation.
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }
}

impl Layer for Dense {
    fn config(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind(),
            "units": self.units,
            "activation": self.activation.name(),
        })
    }

    fn kind(&self) -> &'static str {
        "dense"
    }

    fn build(
        &mut self,
        name: &str,
        input: &[usize],
        device: &Device,
        seed: u64,
    ) -> Result<Vec<usize>> {
        let &[inputs] = input else {
            return Err(Error::invalid(
                "build",
                format!(
                    "layer {name} (Dense) expects a 1-D input per sample, got {input:?}; add Flatten() before it"
                ),
            ));
        };
        self.name = name.to_string();
        let weight = glorot_uniform(&[self.units, inputs], inputs, self.units, seed, device)?;
        self.params = Some((weight, zeros(&[self.units], device)?));
        Ok(vec![self.units])
    }

    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        if self.activation == Activation::Relu {
            // One fused op: the ReLU is applied as the outputs are stored.
            let (w, b) = built(&self.name, &self.params)?;
            return x.linear_relu(&w.tensor(), Some(&b.tensor()));
        }
        self.activation
            .apply(&self.forward_before_activation(x, training)?)
    }

    fn forward_before_activation(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        let (w, b) = built(&self.name, &self.params)?;
        x.linear(&w.tensor(), Some(&b.tensor()))
    }

    fn activation(&self) -> Activation {
        self.activation
    }

    fn parameters(&self) -> Vec<(&'static str, Var)> {
        self.params
            .iter()
            .flat_map(|(w, b)| [("weight", w.clone()), ("bias", b.clone())])
            .collect()
    }
}
