//! `Dense`: `activation(x · Wᵀ + b)`, with W stored `[units, inputs]` as PyTorch's `Linear`.

use kiln_autograd::{Tensor, Var};
use kiln_device::{Device, Error, Result};

use super::{Activation, Initializer, Layer, built, zeros};

/// A fully connected layer.
pub struct Dense {
    units: usize,
    activation: Activation,
    initializer: Initializer,
    params: Option<(Var, Var)>,
    name: String,
}

impl Dense {
    /// `units` outputs, no activation.
    pub fn new(units: usize) -> Self {
        Dense {
            units,
            activation: Activation::Linear,
            initializer: Initializer::GlorotUniform,
            params: None,
            name: String::new(),
        }
    }

    /// Sets the activation.
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Sets how the kernel starts (Glorot uniform by default).
    pub fn kernel_initializer(mut self, initializer: Initializer) -> Self {
        self.initializer = initializer;
        self
    }
}

/// `f` applied to `x` `[N, .., in]` as rows `[N·.., in]`, the leading axes restored after.
pub(crate) fn on_rows(x: &Tensor, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    if x.dims().len() == 2 {
        return f(x);
    }
    let dims = x.dims();
    let inputs = dims[dims.len() - 1];
    let y = f(&x.reshape([x.numel() / inputs.max(1), inputs])?)?;
    let mut shape = dims[..dims.len() - 1].to_vec();
    shape.push(y.dims()[1]);
    y.reshape(shape)
}

impl Layer for Dense {
    fn config(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind(),
            "units": self.units,
            "activation": self.activation.name(),
            "kernel_initializer": self.initializer.name(),
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
        // Like Keras, Dense acts on the last axis, so it takes [steps, features] sequences too; an
        // image ([channels, h, w]) wants Flatten first.
        let (&[inputs] | &[_, inputs]) = input else {
            return Err(Error::invalid(
                "build",
                format!(
                    "layer {name} (Dense) expects [features] or [steps, features] per sample, got {input:?}; add Flatten() before it"
                ),
            ));
        };
        if self.units == 0 {
            return Err(Error::argument(
                "build",
                format!("layer {name} (Dense) needs at least 1 unit, got 0"),
            ));
        }
        self.name = name.to_string();
        let weight =
            self.initializer
                .init(&[self.units, inputs], (inputs, self.units), seed, device)?;
        self.params = Some((weight, zeros(&[self.units], device)?));
        let mut output = input[..input.len() - 1].to_vec();
        output.push(self.units);
        Ok(output)
    }

    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        if self.activation == Activation::Relu {
            // One fused op: the ReLU is applied as the outputs are stored.
            let (w, b) = built(&self.name, &self.params)?;
            return on_rows(x, |rows| rows.linear_relu(&w.tensor(), Some(&b.tensor())));
        }
        self.activation
            .apply(&self.forward_before_activation(x, training)?)
    }

    fn forward_before_activation(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        let (w, b) = built(&self.name, &self.params)?;
        on_rows(x, |rows| rows.linear(&w.tensor(), Some(&b.tensor())))
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
