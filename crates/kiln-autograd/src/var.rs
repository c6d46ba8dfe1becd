//! `Var`: a trainable parameter — a leaf tensor that requires grad, whose value optimizers replace in
//! place while its identity (and so its key in [`crate::Gradients`]) stays the same.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use kiln_device::{Error, RawTensor, Result};

use crate::{Tensor, TensorId};

/// A trainable parameter. Clones share the parameter.
#[derive(Clone, Debug)]
pub struct Var {
    current: Arc<RwLock<Tensor>>,
    id: TensorId,
    /// Frozen parameters take no gradient and refuse optimizer steps.
    frozen: Arc<AtomicBool>,
}

impl Var {
    /// A parameter starting at `initial`'s values.
    pub fn new(initial: Tensor) -> Var {
        let id = TensorId::fresh();
        Var {
            current: Arc::new(RwLock::new(Tensor::leaf(initial.raw().clone(), true, id))),
            id,
            frozen: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Freezes the parameter (Keras's `trainable = False`): it no longer requires grad, so no
    /// gradient is computed for it, and optimizers refuse to step it. `false` unfreezes it.
    pub fn set_frozen(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::Relaxed);
        let mut current = self.current.write().unwrap();
        *current = Tensor::leaf(current.raw().clone(), !frozen, self.id);
    }

    /// Whether the parameter is frozen.
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::Relaxed)
    }

    /// The parameter as a tensor to compute with (a leaf that requires grad).
    pub fn tensor(&self) -> Tensor {
        self.current.read().unwrap().clone()
    }

    /// The identity under which [`crate::Gradients`] holds this parameter's gradient.
    pub fn id(&self) -> TensorId {
        self.id
    }

    /// Replaces the values (an optimizer step); the shape and dtype must stay the same.
    pub fn set(&self, value: RawTensor) -> Result<()> {
        let mut current = self.current.write().unwrap();
        if value.shape() != current.shape() || value.dtype() != current.dtype() {
            return Err(Error::invalid(
                "Var::set",
                format!(
                    "new value {} {} does not match the parameter's {} {}",
                    value.dtype(),
                    value.shape(),
                    current.dtype(),
                    current.shape()
                ),
            ));
        }
        *current = Tensor::leaf(value, !self.is_frozen(), self.id);
        Ok(())
    }
}
