//! `Reshape` and `Permute`: views of each sample (the batch axis stays first).

use kiln_autograd::Tensor;
use kiln_device::{Device, Error, Result};

use super::Layer;

/// Gives each sample a new shape with the same number of values.
pub struct Reshape {
    target: Vec<usize>,
}

impl Reshape {
    /// Samples reshaped to `target` (no batch axis).
    pub fn new(target: impl Into<Vec<usize>>) -> Self {
        Reshape {
            target: target.into(),
        }
    }
}

impl Layer for Reshape {
    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "kind": self.kind(), "target_shape": self.target })
    }

    fn kind(&self) -> &'static str {
        "reshape"
    }

    fn build(&mut self, name: &str, input: &[usize], _: &Device, _: u64) -> Result<Vec<usize>> {
        let (from, to) = (
            input.iter().product::<usize>(),
            self.target.iter().product::<usize>(),
        );
        if from != to {
            return Err(Error::invalid(
                "build",
                format!(
                    "layer {name} (Reshape) cannot reshape {input:?} ({from} values) into {:?} ({to} values)",
                    self.target
                ),
            ));
        }
        Ok(self.target.clone())
    }

    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        let mut shape = vec![x.dims()[0]];
        shape.extend(&self.target);
        x.reshape(shape)
    }
}

/// Reorders the axes of each sample (Keras's `Permute((2, 1))`: axes counted from 1).
pub struct Permute {
    order: Vec<usize>,
}

impl Permute {
    /// Sample axis `i` of the output is input axis `order[i]` (1-based, as in Keras).
    pub fn new(order: impl Into<Vec<usize>>) -> Self {
        Permute {
            order: order.into(),
        }
    }
}

impl Layer for Permute {
    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "kind": self.kind(), "dims": self.order })
    }

    fn kind(&self) -> &'static str {
        "permute"
    }

    fn build(&mut self, name: &str, input: &[usize], _: &Device, _: u64) -> Result<Vec<usize>> {
        let mut sorted = self.order.clone();
        sorted.sort_unstable();
        if sorted != (1..=input.len()).collect::<Vec<_>>() {
            return Err(Error::invalid(
                "build",
                format!(
                    "layer {name} (Permute) order {:?} must list each axis 1..={} of {input:?} once",
                    self.order,
                    input.len()
                ),
            ));
        }
        Ok(self.order.iter().map(|&a| input[a - 1]).collect())
    }

    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        let order: Vec<usize> = std::iter::once(0)
            .chain(self.order.iter().copied())
            .collect();
        x.permute(&order)
    }
}
