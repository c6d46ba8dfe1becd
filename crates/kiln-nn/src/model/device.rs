//! Where a model runs. Layers are built on the CPU as they are applied; the model's whole state
//! (parameters, buffers, optimizer state) moves to its device — the one given with `on`, else
//! `Device::auto()` — at `compile` or first use, and again whenever `on`/`to_device` changes it.
//! A model is never split across devices.

use kiln_autograd::Tensor;
use kiln_device::{Device, Result};

use super::Model;

/// The device asked for and the one the state was last moved to.
#[derive(Default)]
pub(crate) struct Placement {
    target: Option<Device>,
    placed: Option<Device>,
}

impl Model {
    /// Runs the whole model on `device` (its state moves there at compile or first use).
    pub fn on(mut self, device: &Device) -> Model {
        self.placement_mut().target = Some(device.clone());
        self
    }

    /// Moves the whole model — parameters, buffers and optimizer state — to `device` now.
    pub fn to_device(&mut self, device: &Device) -> Result<()> {
        self.placement_mut().target = Some(device.clone());
        self.place()?;
        self.place_optimizer_state(device)
    }

    /// The device the model runs on (chosen by `on`, else `Device::auto()` at first use).
    pub fn device(&self) -> Device {
        let mut placement = self.placement();
        placement.target.get_or_insert_with(Device::auto).clone()
    }

    fn placement(&self) -> std::sync::MutexGuard<'_, Placement> {
        self.placement
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn placement_mut(&mut self) -> &mut Placement {
        self.placement
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Moves every parameter and buffer that is not on the model's device there; returns the
    /// device. Cheap once placed.
    pub(crate) fn place(&self) -> Result<Device> {
        let device = self.device();
        let mut placement = self.placement();
        if placement
            .placed
            .as_ref()
            .is_some_and(|p| p.same_device(&device))
        {
            return Ok(device);
        }
        for (_, var) in self.state() {
            let value = var.tensor();
            if !value.device().same_device(&device) {
                var.set(value.raw().to_device(&device)?)?;
            }
        }
        placement.placed = Some(device.clone());
        Ok(device)
    }

    /// Moves the optimizer's state to `device` when it lives elsewhere.
    pub(crate) fn place_optimizer_state(&mut self, device: &Device) -> Result<()> {
        let Some(compiled) = self.compiled.as_mut() else {
            return Ok(());
        };
        if compiled
            .state_device
            .as_ref()
            .is_some_and(|d| d.same_device(device))
        {
            return Ok(());
        }
        let (steps, state) = compiled.optimizer.state();
        if !state.is_empty() {
            let moved = state
                .into_iter()
                .map(|(id, tensors)| {
                    let tensors = tensors
                        .iter()
                        .map(|t| t.to_device(device))
                        .collect::<Result<Vec<_>>>()?;
                    Ok((id, tensors))
                })
                .collect::<Result<_>>()?;
            compiled.optimizer.load_state(steps, moved)?;
        }
        compiled.state_device = Some(device.clone());
        Ok(())
    }
}

/// `x` on `device` (a copy only when it lives elsewhere).
pub(crate) fn on_device(x: &Tensor, device: &Device) -> Result<Tensor> {
    if x.device().same_device(device) {
        Ok(x.clone())
    } else {
        x.to_device(device)
    }
}
