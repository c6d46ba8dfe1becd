//! `Flatten`: each sample to one dimension (in channels, height, width order).

use kiln_autograd::Tensor;
use kiln_device::{Device, Result};

use super::Layer;

/// Flattens each sample.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flatten;

impl Flatten {
    /// The layer.
    pub fn new() -> Self {
        Flatten
    }
}

impl Layer for Flatten {
    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "kind": self.kind() })
    }

    fn kind(&self) -> &'static str {
        "flatten"
    }

    fn build(
        &mut self,
        _name: &str,
        input: &[usize],
        _device: &Device,
        _seed: u64,
    ) -> Result<Vec<usize>> {
        Ok(vec![input.iter().product()])
    }

    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        x.flatten(1)
    }
}
