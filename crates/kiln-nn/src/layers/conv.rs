//! `Conv2D` over `[channels, height, width]` inputs (channels first), weights `[filters, channels,
//! kh, kw]` as PyTorch stores them.

use kiln_autograd::{Tensor, Var};
use kiln_device::{Conv2dParams, DType, Device, Error, Pool2dParams, Result};

use super::{Activation, Initializer, Layer, built, zeros};

/// How a convolution treats the border.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// No padding: the output shrinks by `kernel - 1`.
    #[default]
    Valid,
    /// Zero padding so that the output is `ceil(input / stride)` (odd kernels).
    Same,
}

impl Padding {
    /// The Keras name (`"valid"`, `"same"`).
    pub fn name(self) -> &'static str {
        match self {
            Padding::Valid => "valid",
            Padding::Same => "same",
        }
    }

    /// The padding with Keras name `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Padding> {
        [Padding::Valid, Padding::Same]
            .into_iter()
            .find(|p| p.name() == name)
    }
}

/// A 2-D convolution layer.
pub struct Conv2D {
    filters: usize,
    kernel: [usize; 2],
    strides: [usize; 2],
    padding: Padding,
    activation: Activation,
    initializer: Initializer,
    params: Option<(Var, Var, Conv2dParams)>,
    name: String,
}

impl Conv2D {
    /// `filters` output channels with a `kernel.0 × kernel.1` window, stride 1, valid padding.
    pub fn new(filters: usize, kernel: (usize, usize)) -> Self {
        Conv2D {
            filters,
            kernel: [kernel.0, kernel.1],
            strides: [1, 1],
            padding: Padding::Valid,
            activation: Activation::Linear,
            initializer: Initializer::GlorotUniform,
            params: None,
            name: String::new(),
        }
    }

    /// Sets the stride.
    pub fn strides(mut self, strides: (usize, usize)) -> Self {
        self.strides = [strides.0, strides.1];
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

    /// Sets how the kernel starts (Glorot uniform by default).
    pub fn kernel_initializer(mut self, initializer: Initializer) -> Self {
        self.initializer = initializer;
        self
    }
}

impl Layer for Conv2D {
    fn config(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind(),
            "filters": self.filters,
            "kernel_size": self.kernel,
            "strides": self.strides,
            "padding": self.padding.name(),
            "activation": self.activation.name(),
            "kernel_initializer": self.initializer.name(),
        })
    }

    fn kind(&self) -> &'static str {
        "conv2d"
    }

    fn build(
        &mut self,
        name: &str,
        input: &[usize],
        device: &Device,
        seed: u64,
    ) -> Result<Vec<usize>> {
        let &[c, h, w] = input else {
            return Err(Error::invalid(
                "build",
                format!(
                    "layer {name} (Conv2D) expects [channels, height, width] per sample, got {input:?}"
                ),
            ));
        };
        if self.filters == 0 || self.kernel.contains(&0) || self.strides.contains(&0) {
            return Err(Error::argument(
                "build",
                format!(
                    "layer {name} (Conv2D): filters {}, kernel {:?} and strides {:?} must be positive",
                    self.filters, self.kernel, self.strides
                ),
            ));
        }
        let padding = match self.padding {
            Padding::Valid => [0, 0],
            Padding::Same if self.kernel.iter().all(|k| k % 2 == 1) => {
                [self.kernel[0] / 2, self.kernel[1] / 2]
            }
            Padding::Same => {
                return Err(Error::argument(
                    "build",
                    format!(
                        "layer {name} (Conv2D): 'same' padding needs an odd kernel, got {:?}",
                        self.kernel
                    ),
                ));
            }
        };
        let params = Conv2dParams {
            stride: self.strides,
            padding,
        };
        let (ph, pw) = (h + 2 * padding[0], w + 2 * padding[1]);
        if self.kernel[0] > ph || self.kernel[1] > pw || self.strides.contains(&0) {
            return Err(Error::invalid(
                "build",
                format!(
                    "layer {name} (Conv2D): kernel {:?} does not fit the input {input:?}",
                    self.kernel
                ),
            ));
        }
        let (oh, ow) = (
            (ph - self.kernel[0]) / self.strides[0] + 1,
            (pw - self.kernel[1]) / self.strides[1] + 1,
        );
        let area = self.kernel[0] * self.kernel[1];
        let shape = [self.filters, c, self.kernel[0], self.kernel[1]];
        let weight =
            self.initializer
                .init(&shape, (c * area, self.filters * area), seed, device)?;
        self.name = name.to_string();
        self.params = Some((weight, zeros(&[self.filters], device)?, params));
        Ok(vec![self.filters, oh, ow])
    }

    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        if self.activation == Activation::Relu {
            // One fused op: no separate ReLU pass forward or backward.
            let (w, b, params) = built(&self.name, &self.params)?;
            return x.conv2d_relu(&w.tensor(), Some(&b.tensor()), *params);
        }
        self.activation
            .apply(&self.forward_before_activation(x, training)?)
    }

    fn forward_before_activation(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        let (w, b, params) = built(&self.name, &self.params)?;
        x.conv2d(&w.tensor(), Some(&b.tensor()), *params)
    }

    fn forward_max_pooled(
        &self,
        x: &Tensor,
        pool: Pool2dParams,
        _training: bool,
    ) -> Option<Result<Tensor>> {
        (self.activation == Activation::Relu && x.dtype() == DType::F32).then(|| {
            let (w, b, params) = built(&self.name, &self.params)?;
            x.conv2d_relu_max_pool2d(&w.tensor(), Some(&b.tensor()), *params, pool)
        })
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
