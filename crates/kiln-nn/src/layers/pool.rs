//! `MaxPooling2D` and `AveragePooling2D` over `[channels, height, width]` inputs.

use kiln_autograd::Tensor;
use kiln_device::{Device, Error, Pool2dParams, Result};

use super::Layer;

fn pooled_shape(name: &str, input: &[usize], p: &Pool2dParams) -> Result<Vec<usize>> {
    let &[c, h, w] = input else {
        return Err(Error::invalid(
            "build",
            format!("layer {name} expects [channels, height, width] per sample, got {input:?}"),
        ));
    };
    if p.kernel[0] > h || p.kernel[1] > w || p.kernel.contains(&0) || p.stride.contains(&0) {
        return Err(Error::invalid(
            "build",
            format!(
                "layer {name}: window {:?} does not fit the input {input:?}",
                p.kernel
            ),
        ));
    }
    Ok(vec![
        c,
        (h - p.kernel[0]) / p.stride[0] + 1,
        (w - p.kernel[1]) / p.stride[1] + 1,
    ])
}

fn params(pool: (usize, usize), strides: Option<(usize, usize)>) -> Pool2dParams {
    let s = strides.unwrap_or(pool);
    Pool2dParams {
        kernel: [pool.0, pool.1],
        stride: [s.0, s.1],
        padding: [0, 0],
    }
}

/// Which reduction a pooling layer applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reduction {
    Max,
    Average,
}

/// A 2-D pooling layer (valid padding).
pub struct Pooling2D {
    reduction: Reduction,
    params: Pool2dParams,
}

/// Max pooling (Keras's `MaxPooling2D(pool_size, strides=pool_size)`).
pub struct MaxPooling2D;

impl MaxPooling2D {
    /// A `pool.0 × pool.1` window with a stride of the window size.
    #[allow(
        clippy::new_ret_no_self,
        reason = "Keras's constructor name; both poolings share one layer type"
    )]
    pub fn new(pool: (usize, usize)) -> Pooling2D {
        Pooling2D {
            reduction: Reduction::Max,
            params: params(pool, None),
        }
    }

    /// A window with its own stride.
    pub fn with_strides(pool: (usize, usize), strides: (usize, usize)) -> Pooling2D {
        Pooling2D {
            reduction: Reduction::Max,
            params: params(pool, Some(strides)),
        }
    }
}

/// Average pooling (Keras's `AveragePooling2D(pool_size, strides=pool_size)`).
pub struct AveragePooling2D;

impl AveragePooling2D {
    /// A `pool.0 × pool.1` window with a stride of the window size.
    #[allow(
        clippy::new_ret_no_self,
        reason = "Keras's constructor name; both poolings share one layer type"
    )]
    pub fn new(pool: (usize, usize)) -> Pooling2D {
        Pooling2D {
            reduction: Reduction::Average,
            params: params(pool, None),
        }
    }

    /// A window with its own stride.
    pub fn with_strides(pool: (usize, usize), strides: (usize, usize)) -> Pooling2D {
        Pooling2D {
            reduction: Reduction::Average,
            params: params(pool, Some(strides)),
        }
    }
}

impl Layer for Pooling2D {
    fn config(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind(),
            "pool_size": self.params.kernel,
            "strides": self.params.stride,
        })
    }

    fn kind(&self) -> &'static str {
        match self.reduction {
            Reduction::Max => "max_pooling2d",
            Reduction::Average => "average_pooling2d",
        }
    }

    fn build(
        &mut self,
        name: &str,
        input: &[usize],
        _device: &Device,
        _seed: u64,
    ) -> Result<Vec<usize>> {
        pooled_shape(name, input, &self.params)
    }

    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        match self.reduction {
            Reduction::Max => x.max_pool2d(self.params),
            Reduction::Average => x.avg_pool2d(self.params),
        }
    }

    fn max_pool_params(&self) -> Option<Pool2dParams> {
        (self.reduction == Reduction::Max).then_some(self.params)
    }
}
