//! `LayerNormalization` (over the last axis) and `BatchNormalization` (per feature or channel, with
//! moving statistics used at inference and saved with the weights), Keras's defaults.

use kiln_autograd::{Tensor, Var};
use kiln_device::{Device, Error, Result};

use super::{Layer, built, zeros};

fn ones(shape: &[usize], device: &Device) -> Result<Var> {
    Ok(Var::new(Tensor::ones(shape.to_vec(), device)?))
}

/// Normalises each sample over its last axis, then scales and shifts (learned `weight`, `bias`).
pub struct LayerNormalization {
    epsilon: f32,
    params: Option<(Var, Var)>,
    name: String,
}

impl LayerNormalization {
    /// Keras's defaults (epsilon 1e-3).
    pub fn new() -> Self {
        LayerNormalization {
            epsilon: 1e-3,
            params: None,
            name: String::new(),
        }
    }

    /// Sets the epsilon added to the variance.
    pub fn epsilon(mut self, epsilon: f32) -> Self {
        self.epsilon = epsilon;
        self
    }
}

impl Default for LayerNormalization {
    fn default() -> Self {
        LayerNormalization::new()
    }
}

impl Layer for LayerNormalization {
    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "kind": self.kind(), "epsilon": self.epsilon })
    }

    fn kind(&self) -> &'static str {
        "layer_normalization"
    }

    fn build(
        &mut self,
        name: &str,
        input: &[usize],
        device: &Device,
        _seed: u64,
    ) -> Result<Vec<usize>> {
        let Some(&features) = input.last() else {
            return Err(Error::invalid(
                "build",
                format!("layer {name} (LayerNormalization) needs at least one axis per sample"),
            ));
        };
        self.name = name.to_string();
        self.params = Some((ones(&[features], device)?, zeros(&[features], device)?));
        Ok(input.to_vec())
    }

    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        let (w, b) = built(&self.name, &self.params)?;
        x.layer_norm(&w.tensor(), &b.tensor(), self.epsilon)
    }

    fn output_mask(&self, _x: &Tensor, mask: Option<&Tensor>) -> Result<Option<Tensor>> {
        Ok(mask.cloned())
    }

    fn parameters(&self) -> Vec<(&'static str, Var)> {
        self.params
            .iter()
            .flat_map(|(w, b)| [("weight", w.clone()), ("bias", b.clone())])
            .collect()
    }
}

/// Normalises each feature (`[features]` or `[steps, features]` samples: the last axis) or channel
/// (`[channels, h, w]` images: the first) by the batch's statistics while training and by moving
/// averages of them at inference. The moving variance is updated from the unbiased batch variance,
/// as PyTorch does (Keras uses the biased one).
pub struct BatchNormalization {
    momentum: f32,
    epsilon: f32,
    params: Option<BatchNormState>,
    name: String,
}

struct BatchNormState {
    weight: Var,
    bias: Var,
    moving_mean: Var,
    moving_var: Var,
    /// Samples are `[steps, features]`: the features move to axis 1 for the kernels.
    sequence: bool,
}

impl BatchNormalization {
    /// Keras's defaults: momentum 0.99 (the moving averages keep 99% of their value per batch),
    /// epsilon 1e-3.
    pub fn new() -> Self {
        BatchNormalization {
            momentum: 0.99,
            epsilon: 1e-3,
            params: None,
            name: String::new(),
        }
    }

    /// Sets Keras's momentum (the weight of the old moving average).
    pub fn momentum(mut self, momentum: f32) -> Self {
        self.momentum = momentum;
        self
    }

    /// Sets the epsilon added to the variance.
    pub fn epsilon(mut self, epsilon: f32) -> Self {
        self.epsilon = epsilon;
        self
    }
}

impl Default for BatchNormalization {
    fn default() -> Self {
        BatchNormalization::new()
    }
}

impl Layer for BatchNormalization {
    fn config(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind(),
            "momentum": self.momentum,
            "epsilon": self.epsilon,
        })
    }

    fn kind(&self) -> &'static str {
        "batch_normalization"
    }

    fn build(
        &mut self,
        name: &str,
        input: &[usize],
        device: &Device,
        _seed: u64,
    ) -> Result<Vec<usize>> {
        let (features, sequence) = match input {
            [features] => (*features, false),
            [_, features] => (*features, true),
            [channels, _, _] => (*channels, false),
            _ => {
                return Err(Error::invalid(
                    "build",
                    format!(
                        "layer {name} (BatchNormalization) expects [features], [steps, features] or \
                         [channels, height, width] per sample, got {input:?}"
                    ),
                ));
            }
        };
        self.name = name.to_string();
        let shape = [features];
        self.params = Some(BatchNormState {
            weight: ones(&shape, device)?,
            bias: zeros(&shape, device)?,
            moving_mean: zeros(&shape, device)?,
            moving_var: ones(&shape, device)?,
            sequence,
        });
        Ok(input.to_vec())
    }

    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let s = built(&self.name, &self.params)?;
        let x = if s.sequence {
            x.permute(&[0, 2, 1])?
        } else {
            x.clone()
        };
        let (w, b) = (s.weight.tensor(), s.bias.tensor());
        let (mean, var) = (s.moving_mean.tensor(), s.moving_var.tensor());
        let running = (mean.raw(), var.raw());
        let y = if training {
            let (y, stats) =
                x.batch_norm_train(&w, &b, running, 1.0 - self.momentum, self.epsilon)?;
            s.moving_mean.set(stats.running_mean)?;
            s.moving_var.set(stats.running_var)?;
            y
        } else {
            x.batch_norm_eval(&w, &b, running, self.epsilon)?
        };
        if s.sequence {
            y.permute(&[0, 2, 1])
        } else {
            Ok(y)
        }
    }

    fn output_mask(&self, _x: &Tensor, mask: Option<&Tensor>) -> Result<Option<Tensor>> {
        Ok(mask.cloned())
    }

    fn parameters(&self) -> Vec<(&'static str, Var)> {
        self.params
            .iter()
            .flat_map(|s| [("weight", s.weight.clone()), ("bias", s.bias.clone())])
            .collect()
    }

    fn buffers(&self) -> Vec<(&'static str, Var)> {
        self.params
            .iter()
            .flat_map(|s| {
                [
                    ("running_mean", s.moving_mean.clone()),
                    ("running_var", s.moving_var.clone()),
                ]
            })
            .collect()
    }
}
