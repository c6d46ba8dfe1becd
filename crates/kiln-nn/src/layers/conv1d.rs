//! `Conv1D` over `[steps, channels]` inputs (Keras's channels-last layout, so it takes an
//! `Embedding`'s output), weights `[filters, channels, kernel]` as PyTorch stores them.

use kiln_autograd::{Tensor, Var};
use kiln_device::{Device, Error, Result};

use super::{Activation, Initializer, Layer, Padding, built, zeros};

/// A 1-D convolution over the steps of a sequence.
pub struct Conv1D {
    filters: usize,
    kernel: usize,
    stride: usize,
    padding: Padding,
    activation: Activation,
    initializer: Initializer,
    params: Option<(Var, Var, usize)>,
    name: String,
}

impl Conv1D {
    /// `filters` output channels with a window of `kernel` steps, stride 1, valid padding.
    pub fn new(filters: usize, kernel: usize) -> Self {
        Conv1D {
            filters,
            kernel,
            stride: 1,
            padding: Padding::Valid,
            activation: Activation::Linear,
            initializer: Initializer::GlorotUniform,
            params: None,
            name: String::new(),
        }
    }

    /// Sets the stride.
    pub fn strides(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    /// Sets the padding.
    pub fn padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }

    /// Sets the activation.
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Sets how the kernel starts.
    pub fn kernel_initializer(mut self, initializer: Initializer) -> Self {
        self.initializer = initializer;
        self
    }
}

impl Layer for Conv1D {
    fn config(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind(),
            "filters": self.filters,
            "kernel_size": self.kernel,
            "strides": self.stride,
            "padding": self.padding.name(),
            "activation": self.activation.name(),
            "kernel_initializer": self.initializer.name(),
        })
    }

    fn kind(&self) -> &'static str {
        "conv1d"
    }

    fn build(
        &mut self,
        name: &str,
        input: &[usize],
        device: &Device,
        seed: u64,
    ) -> Result<Vec<usize>> {
        let &[steps, channels] = input else {
            return Err(Error::invalid(
                "build",
                format!(
                    "layer {name} (Conv1D) expects [steps, channels] per sample, got {input:?}"
                ),
            ));
        };
        if self.kernel == 0 || self.stride == 0 || self.filters == 0 {
            return Err(Error::argument(
                "build",
                format!("layer {name} (Conv1D): filters, kernel and stride must be positive"),
            ));
        }
        if self.padding == Padding::Same && self.kernel.is_multiple_of(2) {
            return Err(Error::argument(
                "build",
                format!(
                    "layer {name} (Conv1D): `same` padding needs an odd kernel, got {}",
                    self.kernel
                ),
            ));
        }
        let padding = match self.padding {
            Padding::Valid => 0,
            Padding::Same => (self.kernel - 1) / 2,
        };
        if steps + 2 * padding < self.kernel {
            return Err(Error::invalid(
                "build",
                format!(
                    "layer {name} (Conv1D): kernel {} does not fit {steps} steps; use padding(Padding::Same) or a shorter kernel",
                    self.kernel
                ),
            ));
        }
        let out_steps = (steps + 2 * padding - self.kernel) / self.stride + 1;
        self.name = name.to_string();
        let (fan_in, fan_out) = (channels * self.kernel, self.filters * self.kernel);
        let weight = self.initializer.init(
            &[self.filters, channels, self.kernel],
            (fan_in, fan_out),
            seed,
            device,
        )?;
        self.params = Some((weight, zeros(&[self.filters], device)?, padding));
        Ok(vec![out_steps, self.filters])
    }

    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        if self.activation == Activation::Relu {
            // One fused op: the ReLU is applied as the outputs are stored.
            let (w, b, padding) = built(&self.name, &self.params)?;
            return x.conv1d_channels_last(
                &w.tensor(),
                Some(&b.tensor()),
                (self.stride, *padding),
                true,
            );
        }
        self.activation
            .apply(&self.forward_before_activation(x, training)?)
    }

    fn forward_before_activation(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        let (w, b, padding) = built(&self.name, &self.params)?;
        x.conv1d_channels_last(
            &w.tensor(),
            Some(&b.tensor()),
            (self.stride, *padding),
            false,
        )
    }

    fn activation(&self) -> Activation {
        self.activation
    }

    fn parameters(&self) -> Vec<(&'static str, Var)> {
        self.params
            .iter()
            .flat_map(|(w, b, _)| [("weight", w.clone()), ("bias", b.clone())])
            .collect()
    }
}
