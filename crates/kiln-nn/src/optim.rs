//! Optimizers: each step updates every parameter with fused kernels (`RawTensor::adam_step_many`,
//! `sgd_step_many`: on a GPU one launch per four parameters).

use std::collections::HashMap;

use kiln_autograd::{Gradients, TensorId, Var};
use kiln_device::{
    AdamConfig, BinaryOp, DType, RawTensor, Result, RmsPropConfig, RmsPropState, SgdConfig, Shape,
    UnaryOp,
};

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

/// `Err` when a parameter is frozen: an optimizer is given what it may train.
fn check_trainable(optimizer: &str, params: &[Var]) -> Result<()> {
    match params.iter().position(Var::is_frozen) {
        None => Ok(()),
        Some(i) => Err(kiln_device::Error::usage(
            "optimizer step",
            format!(
                "{optimizer}: parameter {i} ({}) belongs to a frozen layer (trainable(false)); \
                 pass model.trainable_parameters(), or unfreeze the layer",
                params[i].tensor().shape()
            ),
        )),
    }
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

    /// Sets the weight decay: L2 added to the gradient for Adam, the decoupled decay for a model made
    /// with [`Adam::adamw`].
    pub fn weight_decay(mut self, weight_decay: f32) -> Self {
        self.config.weight_decay = weight_decay;
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
        check_trainable("Adam", params)?;
        let step = self.step + 1;
        // Every parameter with a gradient, updated together (one launch for up to four on a GPU).
        // The moments are handles (cloned, not taken): a step that fails leaves the state as it was.
        let mut updating = Vec::new();
        for p in params {
            let Some(g) = grads.get_raw(p.id()) else {
                continue;
            };
            let value = p.tensor().raw().clone();
            let (m, v) = match self.moments.get(&p.id()).cloned() {
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
        let updated = RawTensor::adam_step_many(&items, &self.config, step)?;
        self.step = step;
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
                kiln_device::Error::data(
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

    /// Sets L2 weight decay (added to the gradient, PyTorch's `weight_decay`).
    pub fn weight_decay(mut self, weight_decay: f32) -> Self {
        self.config.weight_decay = weight_decay;
        self
    }

    /// Sets momentum (and Nesterov).
    pub fn momentum(mut self, momentum: f32, nesterov: bool) -> Self {
        (self.config.momentum, self.config.nesterov) = (momentum, nesterov);
        self
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, params: &[Var], grads: &Gradients) -> Result<()> {
        check_trainable("SGD", params)?;
        let mut updating = Vec::new();
        for p in params {
            let Some(g) = grads.get_raw(p.id()) else {
                continue;
            };
            // Cloned handles, not taken: a step that fails leaves the buffers as they were.
            let buffer = self.buffers.get(&p.id()).cloned();
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

/// The per-parameter state tensors of an optimizer composed from elementwise kernels.
type StateMap = HashMap<TensorId, Vec<RawTensor>>;

/// Restores `state` after checking each parameter keeps `count` tensors.
fn load_states(name: &'static str, count: usize, state: StateMap) -> Result<StateMap> {
    if let Some(bad) = state.values().find(|t| t.len() != count) {
        return Err(kiln_device::Error::data(
            "load_state",
            format!(
                "{name} keeps {count} tensors per parameter, the checkpoint has {}",
                bad.len()
            ),
        ));
    }
    Ok(state)
}

/// RMSprop (PyTorch's update, Keras's defaults: lr 0.001, rho 0.9, eps 1e-7): a running mean of
/// squared gradients scales each step; optional momentum and centring. One fused kernel per
/// parameter and step.
pub struct RmsProp {
    /// The hyper-parameters.
    pub config: RmsPropConfig,
    state: HashMap<TensorId, RmsPropState>,
}

impl RmsProp {
    /// RMSprop with learning rate `lr` and Keras's defaults.
    pub fn new(lr: f32) -> Self {
        RmsProp {
            config: RmsPropConfig {
                lr,
                ..RmsPropConfig::default()
            },
            state: HashMap::new(),
        }
    }

    /// Sets the decay of the running mean of squared gradients (Keras's `rho`).
    pub fn rho(mut self, rho: f32) -> Self {
        self.config.rho = rho;
        self
    }

    /// Sets momentum.
    pub fn momentum(mut self, momentum: f32) -> Self {
        self.config.momentum = momentum;
        self
    }

    /// Centred RMSprop (normalised by the variance of the gradient instead of its second moment).
    pub fn centered(mut self, centered: bool) -> Self {
        self.config.centered = centered;
        self
    }

    /// Sets epsilon.
    pub fn epsilon(mut self, eps: f32) -> Self {
        self.config.eps = eps;
        self
    }

    /// Sets L2 weight decay (added to the gradient).
    pub fn weight_decay(mut self, weight_decay: f32) -> Self {
        self.config.weight_decay = weight_decay;
        self
    }
}

impl Optimizer for RmsProp {
    fn step(&mut self, params: &[Var], grads: &Gradients) -> Result<()> {
        check_trainable("RMSprop", params)?;
        for p in params {
            let Some(g) = grads.get_raw(p.id()) else {
                continue;
            };
            let previous = self.state.get(&p.id());
            let (value, state) =
                RawTensor::rmsprop_step(p.tensor().raw(), g, previous, &self.config)?;
            p.set(value)?;
            self.state.insert(p.id(), state);
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
        "rmsprop"
    }

    /// Per parameter always three tensors: the square average, the momentum buffer and the mean
    /// gradient (an empty tensor where the configuration does not use one), so a checkpoint cannot
    /// put one optional state in the other's place.
    fn state(&self) -> (u32, StateMap) {
        let slot = |t: &Option<RawTensor>, like: &RawTensor| match t {
            Some(t) => Ok(t.clone()),
            None => RawTensor::zeros([0], DType::F32, like.device()),
        };
        let state = self
            .state
            .iter()
            .filter_map(|(id, s)| {
                let buffer = slot(&s.momentum_buffer, &s.square_avg).ok()?;
                let mean = slot(&s.grad_avg, &s.square_avg).ok()?;
                Some((*id, vec![s.square_avg.clone(), buffer, mean]))
            })
            .collect();
        (0, state)
    }

    fn load_state(&mut self, _steps: u32, state: StateMap) -> Result<()> {
        let state = load_states("RMSprop", 3, state)?;
        let pick =
            |t: RawTensor, used: bool, like: &RawTensor| {
                match (used, t.numel() == like.numel()) {
            (false, _) => Ok(None),
            (true, true) => Ok(Some(t)),
            (true, false) => Err(kiln_device::Error::data(
                "load_state",
                "the RMSprop checkpoint was saved without the momentum or centring this optimizer \
                 uses; build it as it was saved"
                    .to_string(),
            )),
        }
            };
        let mut loaded = HashMap::new();
        for (id, tensors) in state {
            let Ok([square_avg, buffer, mean]) = <[RawTensor; 3]>::try_from(tensors) else {
                continue; // load_states checked that each holds three
            };
            let momentum_buffer = pick(buffer, self.config.momentum > 0.0, &square_avg)?;
            let grad_avg = pick(mean, self.config.centered, &square_avg)?;
            loaded.insert(
                id,
                RmsPropState {
                    square_avg,
                    momentum_buffer,
                    grad_avg,
                },
            );
        }
        self.state = loaded;
        Ok(())
    }
}

/// Adagrad (Keras's defaults: lr 0.001, initial accumulator 0.1, eps 1e-7): each parameter's step is
/// scaled by the root of its summed squared gradients. One fused kernel per parameter and step.
pub struct Adagrad {
    lr: f32,
    /// The accumulator's starting value.
    pub initial_accumulator: f32,
    /// Added to the root of the accumulator.
    pub eps: f32,
    accumulators: StateMap,
}

impl Adagrad {
    /// Adagrad with learning rate `lr` and Keras's defaults.
    pub fn new(lr: f32) -> Self {
        Adagrad {
            lr,
            initial_accumulator: 0.1,
            eps: 1e-7,
            accumulators: HashMap::new(),
        }
    }
}

impl Optimizer for Adagrad {
    fn step(&mut self, params: &[Var], grads: &Gradients) -> Result<()> {
        check_trainable("Adagrad", params)?;
        for p in params {
            let Some(g) = grads.get_raw(p.id()) else {
                continue;
            };
            let value = p.tensor().raw().clone();
            let sum = match self
                .accumulators
                .get(&p.id())
                .and_then(|s| s.first().cloned())
            {
                Some(sum) => sum,
                None => RawTensor::full(
                    value.shape().clone(),
                    f64::from(self.initial_accumulator),
                    DType::F32,
                    value.device(),
                )?,
            };
            let (value, sum) = RawTensor::adagrad_step(&value, g, &sum, self.lr, self.eps)?;
            p.set(value)?;
            self.accumulators.insert(p.id(), vec![sum]);
        }
        Ok(())
    }

    fn learning_rate(&self) -> f32 {
        self.lr
    }

    fn set_learning_rate(&mut self, lr: f32) {
        self.lr = lr;
    }

    fn name(&self) -> &'static str {
        "adagrad"
    }

    fn state(&self) -> (u32, StateMap) {
        (0, self.accumulators.clone())
    }

    fn load_state(&mut self, _steps: u32, state: StateMap) -> Result<()> {
        self.accumulators = load_states("Adagrad", 1, state)?;
        Ok(())
    }
}

/// Gradients scaled so that their global L2 norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`, Keras's `global_clipnorm`): each is multiplied by
/// `min(1, max_norm / (norm + 1e-6))`. Returns the clipped gradients and the norm before clipping,
/// both on the device (no synchronisation).
pub fn clip_by_global_norm(
    grads: &[&RawTensor],
    max_norm: f32,
) -> Result<(Vec<RawTensor>, RawTensor)> {
    let Some(first) = grads.first() else {
        return Err(kiln_device::Error::argument(
            "clip_by_global_norm",
            "no gradients given",
        ));
    };
    let mut total = RawTensor::zeros(Shape::new(Vec::new()), DType::F32, first.device())?;
    for g in grads {
        total = total.binary(
            BinaryOp::Add,
            &g.binary(BinaryOp::Mul, g)?.sum(None, false)?,
        )?;
    }
    let norm = total.unary(UnaryOp::Sqrt)?;
    // max_norm / max(norm + 1e-6, max_norm) = min(1, max_norm / (norm + 1e-6))
    let scale = norm
        .scalar(BinaryOp::Add, 1e-6)?
        .scalar(BinaryOp::Maximum, max_norm)?;
    let scale = RawTensor::full(
        Shape::new(Vec::new()),
        f64::from(max_norm),
        DType::F32,
        first.device(),
    )?
    .binary(BinaryOp::Div, &scale)?;
    let clipped = grads
        .iter()
        .map(|g| g.binary(BinaryOp::Mul, &scale))
        .collect::<Result<_>>()?;
    Ok((clipped, norm))
}

/// Each gradient element clamped to `[-limit, limit]` (Keras's `clipvalue`).
pub fn clip_by_value(grad: &RawTensor, limit: f32) -> Result<RawTensor> {
    grad.scalar(BinaryOp::Maximum, -limit)?
        .scalar(BinaryOp::Mul, -1.0)?
        .scalar(BinaryOp::Maximum, -limit)?
        .scalar(BinaryOp::Mul, -1.0)
}

/// A learning rate that changes with the optimizer's step (Keras's `LearningRateSchedule`): pass one
/// to [`OptimizerExt::with_schedule`] and the rate is updated before every batch.
pub trait LearningRateSchedule: Send {
    /// The rate for step `step` (0 for the first batch).
    fn rate(&self, step: u64) -> f32;
}

/// `initial · rate^(step / decay_steps)` (Keras's `ExponentialDecay`; with `staircase` the exponent is
/// rounded down, so the rate drops every `decay_steps` batches).
#[derive(Debug, Clone, Copy)]
pub struct ExponentialDecay {
    /// The rate at step 0.
    pub initial: f32,
    /// Steps over which the rate is multiplied by `decay_rate`.
    pub decay_steps: u64,
    /// The factor per `decay_steps`.
    pub decay_rate: f32,
    /// Decay in whole periods.
    pub staircase: bool,
}

impl LearningRateSchedule for ExponentialDecay {
    fn rate(&self, step: u64) -> f32 {
        let mut periods = step as f32 / self.decay_steps.max(1) as f32;
        if self.staircase {
            periods = periods.floor();
        }
        self.initial * self.decay_rate.powf(periods)
    }
}

/// Cosine decay (Keras's `CosineDecay`): an optional linear warm-up from `initial` to `peak` over
/// `warmup_steps`, then half a cosine from `peak` down to `alpha · peak` over `decay_steps`, flat after.
#[derive(Debug, Clone, Copy)]
pub struct CosineDecay {
    /// The rate at step 0.
    pub initial: f32,
    /// The rate the warm-up reaches (`initial` without a warm-up).
    pub peak: f32,
    /// Batches of linear warm-up.
    pub warmup_steps: u64,
    /// Batches of cosine decay after the warm-up.
    pub decay_steps: u64,
    /// The final rate as a fraction of `peak`.
    pub alpha: f32,
}

impl CosineDecay {
    /// From `initial` down to 0 over `decay_steps` batches.
    pub fn new(initial: f32, decay_steps: u64) -> Self {
        CosineDecay {
            initial,
            peak: initial,
            warmup_steps: 0,
            decay_steps,
            alpha: 0.0,
        }
    }

    /// A linear warm-up to `peak` over `steps` batches first.
    pub fn warmup(mut self, steps: u64, peak: f32) -> Self {
        (self.warmup_steps, self.peak) = (steps, peak);
        self
    }

    /// Ends at `alpha · peak` instead of 0.
    pub fn alpha(mut self, alpha: f32) -> Self {
        self.alpha = alpha;
        self
    }
}

impl LearningRateSchedule for CosineDecay {
    fn rate(&self, step: u64) -> f32 {
        if step < self.warmup_steps {
            let t = step as f32 / self.warmup_steps as f32;
            return self.initial + t * (self.peak - self.initial);
        }
        let t = ((step - self.warmup_steps) as f32 / self.decay_steps.max(1) as f32).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f32::consts::PI * t).cos());
        self.peak * ((1.0 - self.alpha) * cosine + self.alpha)
    }
}

/// An optimizer whose learning rate follows a schedule, stepped once per batch.
pub struct Scheduled<O> {
    inner: O,
    schedule: Box<dyn LearningRateSchedule>,
    steps: u64,
}

impl<O: Optimizer> Optimizer for Scheduled<O> {
    fn step(&mut self, params: &[Var], grads: &Gradients) -> Result<()> {
        self.inner.set_learning_rate(self.schedule.rate(self.steps));
        self.steps += 1;
        self.inner.step(params, grads)
    }

    fn learning_rate(&self) -> f32 {
        self.schedule.rate(self.steps)
    }

    /// The schedule decides the rate; setting one directly has no lasting effect.
    fn set_learning_rate(&mut self, lr: f32) {
        self.inner.set_learning_rate(lr);
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn state(&self) -> (u32, StateMap) {
        let (inner_steps, state) = self.inner.state();
        (inner_steps.max(self.steps as u32), state)
    }

    fn load_state(&mut self, steps: u32, state: StateMap) -> Result<()> {
        self.steps = u64::from(steps);
        self.inner.load_state(steps, state)
    }
}

/// How gradients are clipped before each step (Keras's `global_clipnorm`, `clipnorm`, `clipvalue`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Clip {
    /// All gradients scaled together so their global L2 norm is at most this.
    GlobalNorm(f32),
    /// Each gradient scaled so its own L2 norm is at most this.
    Norm(f32),
    /// Each element clamped to `[-limit, limit]`.
    Value(f32),
}

/// An optimizer that clips the gradients first.
pub struct Clipped<O> {
    inner: O,
    clip: Clip,
}

impl<O: Optimizer> Optimizer for Clipped<O> {
    fn step(&mut self, params: &[Var], grads: &Gradients) -> Result<()> {
        let present: Vec<(TensorId, &RawTensor)> = params
            .iter()
            .filter_map(|p| grads.get_raw(p.id()).map(|g| (p.id(), g)))
            .collect();
        let clipped: Vec<RawTensor> = match self.clip {
            Clip::GlobalNorm(max) if !present.is_empty() => {
                let raw: Vec<&RawTensor> = present.iter().map(|(_, g)| *g).collect();
                clip_by_global_norm(&raw, max)?.0
            }
            Clip::GlobalNorm(_) => Vec::new(),
            Clip::Norm(max) => present
                .iter()
                .map(|(_, g)| clip_by_global_norm(&[g], max).map(|(mut c, _)| c.remove(0)))
                .collect::<Result<_>>()?,
            Clip::Value(limit) => present
                .iter()
                .map(|(_, g)| clip_by_value(g, limit))
                .collect::<Result<_>>()?,
        };
        let mut transformed = Gradients::default();
        for ((id, _), g) in present.iter().zip(clipped) {
            transformed.insert(*id, g);
        }
        self.inner.step(params, &transformed)
    }

    fn learning_rate(&self) -> f32 {
        self.inner.learning_rate()
    }

    fn set_learning_rate(&mut self, lr: f32) {
        self.inner.set_learning_rate(lr);
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn state(&self) -> (u32, StateMap) {
        self.inner.state()
    }

    fn load_state(&mut self, steps: u32, state: StateMap) -> Result<()> {
        self.inner.load_state(steps, state)
    }
}

/// Schedules and clipping for any optimizer: `Adam::new(1e-3).clip(Clip::GlobalNorm(1.0))
/// .with_schedule(CosineDecay::new(1e-3, 1000))`.
pub trait OptimizerExt: Optimizer + Sized {
    /// Follows `schedule`, updated before every batch.
    fn with_schedule(self, schedule: impl LearningRateSchedule + 'static) -> Scheduled<Self> {
        Scheduled {
            inner: self,
            schedule: Box::new(schedule),
            steps: 0,
        }
    }

    /// Clips the gradients before each step.
    fn clip(self, clip: Clip) -> Clipped<Self> {
        Clipped { inner: self, clip }
    }
}

impl<O: Optimizer> OptimizerExt for O {}

#[cfg(test)]
mod tests {
    use kiln_autograd::{Tensor, Var};
    use kiln_device::{Device, RawTensor};

    use super::*;

    #[test]
    fn schedules_follow_keras() {
        let exp = ExponentialDecay {
            initial: 0.1,
            decay_steps: 10,
            decay_rate: 0.5,
            staircase: false,
        };
        assert!(
            (exp.rate(10) - 0.05).abs() < 1e-7 && (exp.rate(5) - 0.1 * 0.5f32.sqrt()).abs() < 1e-7
        );
        let stairs = ExponentialDecay {
            staircase: true,
            ..exp
        };
        assert_eq!(stairs.rate(19), 0.05);
        let cosine = CosineDecay::new(0.0, 100).warmup(10, 1.0).alpha(0.1);
        assert_eq!(cosine.rate(0), 0.0);
        assert!((cosine.rate(5) - 0.5).abs() < 1e-6);
        assert!((cosine.rate(10) - 1.0).abs() < 1e-6);
        assert!((cosine.rate(60) - 0.55).abs() < 1e-6);
        assert!((cosine.rate(500) - 0.1).abs() < 1e-6);
    }

    #[test]
    fn a_scheduled_clipped_optimizer_steps_with_the_scheduled_rate_and_clipped_gradient() {
        let cpu = Device::cpu();
        let p = Var::new(Tensor::from_slice(&[0.0f32, 0.0], [2], &cpu).unwrap());
        let mut grads = Gradients::default();
        grads.insert(
            p.id(),
            RawTensor::from_slice(&[30.0f32, 40.0], [2], &cpu).unwrap(),
        );
        let schedule = ExponentialDecay {
            initial: 1.0,
            decay_steps: 1,
            decay_rate: 0.5,
            staircase: true,
        };
        let mut sgd = Sgd::new(99.0)
            .clip(Clip::GlobalNorm(5.0))
            .with_schedule(schedule);
        sgd.step(std::slice::from_ref(&p), &grads).unwrap();
        sgd.step(std::slice::from_ref(&p), &grads).unwrap();
        // gradient clipped to norm 5: (3, 4); steps of rate 1 then 0.5: -1.5 · (3, 4)
        let got = p.tensor().to_vec::<f32>().unwrap();
        assert!(
            (got[0] + 4.5).abs() < 1e-4 && (got[1] + 6.0).abs() < 1e-4,
            "{got:?}"
        );
        assert_eq!(sgd.learning_rate(), 0.25);
    }

    #[test]
    fn rmsprop_state_round_trips_and_refuses_a_mismatched_configuration() {
        let cpu = Device::cpu();
        let p = Var::new(Tensor::from_slice(&[0.5f32, -0.5], [2], &cpu).unwrap());
        let mut grads = Gradients::default();
        grads.insert(
            p.id(),
            RawTensor::from_slice(&[0.1f32, 0.3], [2], &cpu).unwrap(),
        );
        let params = std::slice::from_ref(&p);
        let mut first = RmsProp::new(0.01).momentum(0.9);
        first.step(params, &grads).unwrap();
        let (steps, state) = first.state();
        let mut resumed = RmsProp::new(0.01).momentum(0.9);
        resumed.load_state(steps, state.clone()).unwrap();
        let before = p.tensor().raw().clone();
        first.step(params, &grads).unwrap();
        let after_first = p.tensor().to_vec::<f32>().unwrap();
        p.set(before).unwrap();
        resumed.step(params, &grads).unwrap();
        assert_eq!(p.tensor().to_vec::<f32>().unwrap(), after_first);
        let err = RmsProp::new(0.01).centered(true).load_state(steps, state);
        assert!(
            err.is_err(),
            "a centred optimizer cannot take a momentum checkpoint"
        );
    }
}
