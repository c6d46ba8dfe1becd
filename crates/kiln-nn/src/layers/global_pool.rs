//! Global pooling: the mean or maximum over a sequence's steps (`[steps, channels]` → `[channels]`,
//! padded steps left out when a mask comes in) or over an image (`[channels, h, w]` → `[channels]`).

use kiln_autograd::Tensor;
use kiln_device::{Device, Error, Result};

use super::Layer;

/// Added to padded steps before a maximum: `-1e9` never wins against a real value.
const PADDED: f32 = -1e9;

/// Which global pooling a layer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pool {
    Average1D,
    Max1D,
    Average2D,
}

impl Pool {
    fn kind(self) -> &'static str {
        match self {
            Pool::Average1D => "global_average_pooling1d",
            Pool::Max1D => "global_max_pooling1d",
            Pool::Average2D => "global_average_pooling2d",
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            Pool::Average1D => "GlobalAveragePooling1D",
            Pool::Max1D => "GlobalMaxPooling1D",
            Pool::Average2D => "GlobalAveragePooling2D",
        }
    }
}

/// Global pooling layers share one implementation over [`Pool`].
macro_rules! global_pooling {
    ($(#[$doc:meta])* $name:ident => $pool:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name;

        impl $name {
            /// The layer (it has no parameters).
            pub fn new() -> Self {
                $name
            }
        }

        impl Layer for $name {
            fn config(&self) -> serde_json::Value {
                serde_json::json!({ "kind": self.kind() })
            }

            fn kind(&self) -> &'static str {
                $pool.kind()
            }

            fn build(
                &mut self,
                name: &str,
                input: &[usize],
                _device: &Device,
                _seed: u64,
            ) -> Result<Vec<usize>> {
                $pool.output_shape(name, input)
            }

            fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
                $pool.apply(x, None)
            }

            fn forward_masked(&self, x: &Tensor, mask: Option<&Tensor>, _training: bool) -> Result<Tensor> {
                $pool.apply(x, mask)
            }
        }
    };
}

global_pooling!(
    /// The mean over the steps of `[steps, channels]` (masked steps excluded).
    GlobalAveragePooling1D => Pool::Average1D
);
global_pooling!(
    /// The maximum over the steps of `[steps, channels]` (masked steps excluded).
    GlobalMaxPooling1D => Pool::Max1D
);
global_pooling!(
    /// The mean over the height and width of `[channels, height, width]`.
    GlobalAveragePooling2D => Pool::Average2D
);

impl Pool {
    fn output_shape(self, name: &str, input: &[usize]) -> Result<Vec<usize>> {
        match (self, input) {
            (Pool::Average1D | Pool::Max1D, &[_, channels]) => Ok(vec![channels]),
            (Pool::Average2D, &[channels, _, _]) => Ok(vec![channels]),
            _ => Err(Error::invalid(
                "build",
                format!(
                    "layer {name} ({}) expects {} per sample, got {input:?}",
                    self.type_name(),
                    if self == Pool::Average2D {
                        "[channels, height, width]"
                    } else {
                        "[steps, channels]"
                    }
                ),
            )),
        }
    }

    fn apply(self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let steps_mask = |m: &Tensor| m.unsqueeze(2);
        match (self, mask) {
            (Pool::Average2D, _) => x.mean(3, false)?.mean(2, false),
            (Pool::Average1D, None) => x.mean(1, false),
            (Pool::Max1D, None) => x.max(Some(1), false),
            (Pool::Average1D, Some(m)) => {
                let m = steps_mask(m)?;
                let counts = m.sum(1, false)?.maximum_scalar(1.0)?;
                x.mul(&m)?.sum(1, false)?.div(&counts)
            }
            (Pool::Max1D, Some(m)) => {
                // (m - 1) · 1e9: 0 on real steps, -1e9 on padding
                let penalty = steps_mask(m)?.sub_scalar(1.0)?.mul_scalar(-PADDED)?;
                x.add(&penalty)?.max(Some(1), false)
            }
        }
    }
}
