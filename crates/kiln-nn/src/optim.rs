//! Optimizers: each step updates every parameter with fused kernels (`RawTensor::adam_step_many`,
//! `sgd_step_many`: on a GPU one launch per four parameters).

use std::collections::HashMap;

use kiln_autograd::{Gradients, TensorId, Var};
use kiln_device::{AdamConfig, DType, RawTensor, Result, SgdConfig};

/// Updates parameters from their gradients.
pub trait Optimizer: Send {
    /// One update of every parameter that has a gradient.
    fn step(&mut self, params: &[Var], grads: &Gradients) -> Result<()>;
    /// The current learning rate.
    fn learning_rate(&self) -> f32;
    /// Changes the learning rate (schedules call this between epochs).
    fn set_learning_rate(&mut self, lr: f32);
    /// The Keras name.
    fn name(&self) -> &'static str;
    /// The state to save for resuming: steps taken and, per parameter, its state tensors.
    fn state(&self) -> (u32, HashMap<TensorId, Vec<RawTensor>>);
    /// Restores a saved state.
    fn load_state(&mut self, steps: u32, state: HashMap<TensorId, Vec<RawTensor>>) -> Result<()>;
}

/// Adam / AdamW with Keras's defaults (lr 0.001, β 0.9 / 0.999, eps 1e-7) and PyTorch's update.
pub struct Adam {
    config: AdamConfig,
    step: u32,
    moments: HashMap<TensorId, (RawTensor, RawTensor)>,
}

impl Adam {
    /// Adam with learning rate `lr`.
    pub fn new(lr: f32) -> Self {
        Adam {
            config: AdamConfig {
                lr,
                ..AdamConfig::default()
            },
            step: 0,
            moments: HashMap::new(),
        }
    }

    /// AdamW: decoupled weight decay `weight_decay`.
    pub fn adamw(lr: f32, weight_decay: f32) -> Self {
        Adam {
            config: AdamConfig {
                lr,
                weight_decay,
                decoupled: true,
                ..AdamConfig::default()
            },
            step: 0,
            moments: HashMap::new(),
        }
    }

    /// Sets epsilon.
    pub fn epsilon(mut self, eps: f32) -> Self {
        self.config.eps = eps;
        self
    }

    /// Sets the moment decays.
    pub fn betas(mut self, beta1: f32, beta2: f32) -> Self {
        (self.config.beta1, self.config.beta2) = (beta1, beta2);
        self
    }
}

impl Optimizer for Adam {
    fn step(&mut self, params: &[Var], grads: &Gradients) -> Result<()> {
        self.step += 1;
        // Every parameter with a gradient, updated together (one launch for up to four on a GPU).
        let mut updating = Vec::new();
        for p in params {
            let Some(g) = grads.get_raw(p.id()) else {
                continue;
            };
            let value = p.tensor().raw().clone();
            let (m, v) = match self.moments.remove(&p.id()) {
                Some(state) => state,
                None => {
                    let zeros =
                        || RawTensor::zeros(value.shape().clone(), DType::F32, value.device());
                    (zeros()?, zeros()?)
                }
            };
            updating.push((p, value, g, m, v));
        }
        let items: Vec<[&RawTensor; 4]> = updating
            .iter()
            .map(|(_, value, g, m, v)| [value, *g, m, v])
            .collect();
        let updated = RawTensor::adam_step_many(&items, &self.config, self.step)?;
        for ((p, ..), (p2, m2, v2)) in updating.iter().zip(updated) {
            p.set(p2)?;
            self.moments.insert(p.id(), (m2, v2));
        }
        Ok(())
    }

    fn learning_rate(&self) -> f32 {
        self.config.lr
    }

    fn set_learning_rate(&mut self, lr: f32) {
        self.config.lr = lr;
    }

    fn name(&self) -> &'static str {
        if self.config.decoupled {
            "adamw"
        } else {
            "adam"
        }
    }

    fn state(&self) -> (u32, HashMap<TensorId, Vec<RawTensor>>) {
        (
            self.step,
            self.moments
                .iter()
                .map(|(id, (m, v))| (*id, vec![m.clone(), v.clone()]))
                .collect(),
        )
    }

    fn load_state(&mut self, steps: u32, state: HashMap<TensorId, Vec<RawTensor>>) -> Result<()> {
        self.step = steps;
        self.moments.clear();
        for (id, tensors) in state {
            let [m, v]: [RawTensor; 2] = tensors.try_into().map_err(|_| {
                kiln_device::Error::invalid(
                    "load_state",
                    "Adam keeps two tensors per parameter".to_string(),
                )
            })?;
            self.moments.insert(id, (m, v));
        }
        Ok(())
    }
}

/// SGD with optional momentum and Nesterov momentum (PyTorch's formulation).
pub struct Sgd {
    config: SgdConfig,
    buffers: HashMap<TensorId, RawTensor>,
}

impl Sgd {
    /// Plain SGD with learning rate `lr`.
    pub fn new(lr: f32) -> Self {
        Sgd {
            config: SgdConfig {
                lr,
                ..SgdConfig::default()
            },
            buffers: HashMap::new(),
        }
    }

    /// Sets momentum (and Nesterov).
    pub fn momentum(mut self, momentum: f32, nesterov: bool) -> Self {
        (self.config.momentum, self.config.nesterov) = (momentum, nesterov);
        self
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, params: &[Var], grads: &Gradients) -> Result<()> {
        let mut updating = Vec::new();
        for p in params {
            let Some(g) = grads.get_raw(p.id()) else {
                continue;
            };
            let buffer = self.buffers.remove(&p.id());
            updating.push((p, p.tensor().raw().clone(), g, buffer));
        }
        let items: Vec<_> = updating
            .iter()
            .map(|(_, value, g, b)| (value, *g, b.as_ref()))
            .collect();
        let updated = RawTensor::sgd_step_many(&items, &self.config)?;
        for ((p, ..), (p2, b2)) in updating.iter().zip(updated) {
            p.set(p2)?;
            if self.config.momentum != 0.0 {
                self.buffers.insert(p.id(), b2);
            }
        }
        Ok(())
    }

    fn learning_rate(&self) -> f32 {
        self.config.lr
    }

    fn set_learning_rate(&mut self, lr: f32) {
        self.config.lr = lr;
    }

    fn name(&self) -> &'static str {
        "sgd"
    }

    fn state(&self) -> (u32, HashMap<TensorId, Vec<RawTensor>>) {
        (
            0,
            self.buffers
                .iter()
                .map(|(id, b)| (*id, vec![b.clone()]))
                .collect(),
        )
    }

    fn load_state(&mut self, _steps: u32, state: HashMap<TensorId, Vec<RawTensor>>) -> Result<()> {
        self.buffers = state
            .into_iter()
            .filter_map(|(id, mut t)| t.pop().map(|b| (id, b)))
            .collect();
        Ok(())
    }
}
