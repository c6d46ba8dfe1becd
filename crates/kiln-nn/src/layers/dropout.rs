//! `Dropout`: zeroes a fraction of the inputs while training (scaling the rest), seeded.

use std::sync::atomic::{AtomicU64, Ordering};

use kiln_autograd::Tensor;
use kiln_device::{BinaryOp, Device, Error, Result};

use super::Layer;

/// Dropout with rate `rate`; each training call draws a new mask from the seed sequence.
pub struct Dropout {
    rate: f32,
    seed: u64,
    calls: AtomicU64,
}

impl Dropout {
    /// Drops each input with probability `rate` (in `[0, 1)`).
    pub fn new(rate: f32) -> Self {
        Dropout {
            rate,
            seed: 0,
            calls: AtomicU64::new(0),
        }
    }
}

impl Layer for Dropout {
    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "kind": self.kind(), "rate": self.rate })
    }

    fn kind(&self) -> &'static str {
        "dropout"
    }

    fn build(
        &mut self,
        name: &str,
        input: &[usize],
        _device: &Device,
        seed: u64,
    ) -> Result<Vec<usize>> {
        if !(0.0..1.0).contains(&self.rate) {
            return Err(Error::argument(
                "build",
                format!("layer {name}: rate {} must be in [0, 1)", self.rate),
            ));
        }
        self.seed = seed;
        Ok(input.to_vec())
    }

    fn rng_position(&self) -> Option<u64> {
        Some(self.calls.load(Ordering::Relaxed))
    }

    fn set_rng_position(&self, position: u64) {
        self.calls.store(position, Ordering::Relaxed);
    }

    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        if !training || self.rate == 0.0 {
            return Ok(x.clone());
        }
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let draw = Tensor::rand(
            x.shape().clone(),
            self.seed ^ call.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            x.device(),
        )?;
        let keep = draw
            .raw()
            .scalar(BinaryOp::Greater, self.rate)?
            .scalar(BinaryOp::Div, 1.0 - self.rate)?;
        x.mul(&Tensor::from_raw(keep))
    }
}
