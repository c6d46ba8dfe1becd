//! Fused optimizer steps: each reads a parameter, its gradient and its state once and returns the
//! updated parameter and state (PyTorch's update rules; `shaders/optimizer.wgsl` has the formulas).

use std::sync::Arc;

use crate::gpu::{GpuBuffer, GpuContext};
use crate::tensor::Backend;
use crate::{DType, Error, RawTensor, Result, cpu, gpu};

/// Hyper-parameters of Adam and AdamW.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first moment.
    pub beta1: f32,
    /// Decay of the second moment.
    pub beta2: f32,
    /// Added to the denominator.
    pub eps: f32,
    /// Weight decay: L2 added to the gradient (Adam) or decoupled (AdamW).
    pub weight_decay: f32,
    /// AdamW's decoupled weight decay (`p *= 1 - lr·wd` before the update).
    pub decoupled: bool,
}

impl Default for AdamConfig {
    /// Keras's defaults: lr 0.001, β 0.9 / 0.999, eps 1e-7, no weight decay.
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-7,
            weight_decay: 0.0,
            decoupled: false,
        }
    }
}

/// Hyper-parameters of SGD with momentum (PyTorch's formulation).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (0 for plain SGD).
    pub momentum: f32,
    /// Dampening of the momentum.
    pub dampening: f32,
    /// L2 weight decay added to the gradient.
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
}

/// Hyper-parameters of RMSprop (PyTorch's update; Keras's defaults: lr 0.001, ρ 0.9, eps 1e-7).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsPropConfig {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the running mean of squared gradients (Keras's `rho`, PyTorch's `alpha`).
    pub rho: f32,
    /// Added to the root of the running mean.
    pub eps: f32,
    /// Momentum factor (0: none).
    pub momentum: f32,
    /// Subtract the square of the running mean gradient (centred RMSprop).
    pub centered: bool,
    /// L2 weight decay added to the gradient.
    pub weight_decay: f32,
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        RmsPropConfig {
            lr: 0.001,
            rho: 0.9,
            eps: 1e-7,
            momentum: 0.0,
            centered: false,
            weight_decay: 0.0,
        }
    }
}

/// The state of one parameter under RMSprop: the running mean of squared gradients, and the
/// momentum buffer and the running mean gradient where the configuration uses them.
#[derive(Debug, Clone)]
pub struct RmsPropState {
    /// Running mean of squared gradients.
    pub square_avg: RawTensor,
    /// Momentum buffer (with momentum).
    pub momentum_buffer: Option<RawTensor>,
    /// Running mean gradient (centred).
    pub grad_avg: Option<RawTensor>,
}

fn check(op: &'static str, param: &RawTensor, others: &[&RawTensor]) -> Result<()> {
    for t in others {
        if t.shape() != param.shape() {
            return Err(Error::invalid(
                op,
                format!(
                    "parameter {} and its gradient/state {} differ in shape",
                    param.shape(),
                    t.shape()
                ),
            ));
        }
    }
    let mut all = vec![param];
    all.extend_from_slice(others);
    for t in &all {
        t.expect_dtype(op, DType::F32, "optimizer state is f32")?;
    }
    RawTensor::check_same_device(op, &all)
}

impl RawTensor {
    /// One RMSprop step with one fused kernel (two with momentum, so that each binds at most eight
    /// storage buffers on a GPU). `state` is `None` at the first step (all zeros).
    pub fn rmsprop_step(
        param: &RawTensor,
        grad: &RawTensor,
        state: Option<&RmsPropState>,
        config: &RmsPropConfig,
    ) -> Result<(RawTensor, RmsPropState)> {
        let op = "rmsprop_step";
        let zeros = || RawTensor::zeros(param.shape().clone(), DType::F32, param.device());
        let (with_momentum, centered) = (config.momentum > 0.0, config.centered);
        let square_avg = state.map_or_else(zeros, |s| Ok(s.square_avg.clone()))?;
        let pick = |used: bool, kept: Option<&RawTensor>| -> Result<Option<RawTensor>> {
            Ok(match (used, kept) {
                (false, _) => None,
                (true, Some(t)) => Some(t.clone()),
                (true, None) => Some(zeros()?),
            })
        };
        let buffer = pick(
            with_momentum,
            state.and_then(|s| s.momentum_buffer.as_ref()),
        )?;
        let grad_avg = pick(centered, state.and_then(|s| s.grad_avg.as_ref()))?;
        let mut others = vec![grad, &square_avg];
        others.extend(buffer.as_ref());
        others.extend(grad_avg.as_ref());
        check(op, param, &others)?;
        let (p, g, a) = (
            param.contiguous()?,
            grad.contiguous()?,
            square_avg.contiguous()?,
        );
        let buffer = buffer.map(|b| b.contiguous()).transpose()?;
        let grad_avg = grad_avg.map(|m| m.contiguous()).transpose()?;
        let shape = p.shape().clone();
        Ok(match p.backend() {
            Backend::Cpu(cpu) => {
                let out = cpu::optimizer::rmsprop(
                    [p.host_f32(), g.host_f32(), a.host_f32()],
                    (
                        buffer.as_ref().map(RawTensor::host_f32),
                        grad_avg.as_ref().map(RawTensor::host_f32),
                    ),
                    config,
                );
                let wrap = |values| RawTensor::from_host_f32(values, shape.clone(), cpu);
                (
                    wrap(out.param),
                    RmsPropState {
                        square_avg: wrap(out.square_avg),
                        momentum_buffer: out.buffer.map(wrap),
                        grad_avg: out.grad_avg.map(wrap),
                    },
                )
            }
            Backend::Gpu(ctx) => {
                let out = gpu::optimizer::rmsprop(
                    ctx,
                    [p.buffer(), g.buffer(), a.buffer()],
                    (
                        buffer.as_ref().map(RawTensor::buffer),
                        grad_avg.as_ref().map(RawTensor::buffer),
                    ),
                    p.numel(),
                    config,
                )?;
                let wrap = |buffer| RawTensor::from_gpu(buffer, shape.clone(), DType::F32, &p);
                (
                    wrap(out.param),
                    RmsPropState {
                        square_avg: wrap(out.square_avg),
                        momentum_buffer: out.buffer.map(wrap),
                        grad_avg: out.grad_avg.map(wrap),
                    },
                )
            }
        })
    }

    /// One Adagrad step with one fused kernel: returns `(param, accumulator)`.
    pub fn adagrad_step(
        param: &RawTensor,
        grad: &RawTensor,
        accumulator: &RawTensor,
        lr: f32,
        eps: f32,
    ) -> Result<(RawTensor, RawTensor)> {
        let op = "adagrad_step";
        check(op, param, &[grad, accumulator])?;
        let (p, g, s) = (
            param.contiguous()?,
            grad.contiguous()?,
            accumulator.contiguous()?,
        );
        let shape = p.shape().clone();
        Ok(match p.backend() {
            Backend::Cpu(cpu) => {
                let (p2, s2) =
                    cpu::optimizer::adagrad(p.host_f32(), g.host_f32(), s.host_f32(), lr, eps);
                let wrap = |values| RawTensor::from_host_f32(values, shape.clone(), cpu);
                (wrap(p2), wrap(s2))
            }
            Backend::Gpu(ctx) => {
                let (p2, s2) = gpu::optimizer::adagrad(
                    ctx,
                    [p.buffer(), g.buffer(), s.buffer()],
                    p.numel(),
                    (lr, eps),
                )?;
                let wrap = |buffer| RawTensor::from_gpu(buffer, shape.clone(), DType::F32, &p);
                (wrap(p2), wrap(s2))
            }
        })
    }

    /// One Adam/AdamW step at `step` (1-based): returns `(param, m, v)` after the update.
    pub fn adam_step(
        param: &RawTensor,
        grad: &RawTensor,
        m: &RawTensor,
        v: &RawTensor,
        config: &AdamConfig,
        step: u32,
    ) -> Result<(RawTensor, RawTensor, RawTensor)> {
        let op = "adam_step";
        check(op, param, &[grad, m, v])?;
        if step == 0 {
            return Err(Error::argument(op, "step counts from 1"));
        }
        let (p, g, m, v) = (
            param.contiguous()?,
            grad.contiguous()?,
            m.contiguous()?,
            v.contiguous()?,
        );
        let shape = p.shape().clone();
        Ok(match p.backend() {
            Backend::Cpu(cpu) => {
                let (p2, m2, v2) = cpu::optimizer::adam(
                    p.host_f32(),
                    g.host_f32(),
                    m.host_f32(),
                    v.host_f32(),
                    config,
                    step,
                );
                let wrap = |values| RawTensor::from_host_f32(values, shape.clone(), cpu);
                (wrap(p2), wrap(m2), wrap(v2))
            }
            Backend::Gpu(ctx) => {
                let [p2, m2, v2] = gpu::optimizer::adam(
                    ctx,
                    [p.buffer(), g.buffer(), m.buffer(), v.buffer()],
                    p.numel(),
                    config,
                    step,
                )?;
                let wrap = |buffer| RawTensor::from_gpu(buffer, shape.clone(), DType::F32, &p);
                (wrap(p2), wrap(m2), wrap(v2))
            }
        })
    }

    /// One SGD step; `momentum_buffer` is `None` on the first step. Returns `(param, momentum_buffer)`.
    pub fn sgd_step(
        param: &RawTensor,
        grad: &RawTensor,
        momentum_buffer: Option<&RawTensor>,
        config: &SgdConfig,
    ) -> Result<(RawTensor, RawTensor)> {
        let op = "sgd_step";
        let mut others = vec![grad];
        others.extend(momentum_buffer);
        check(op, param, &others)?;
        let (p, g) = (param.contiguous()?, grad.contiguous()?);
        let buf = momentum_buffer.map(RawTensor::contiguous).transpose()?;
        let shape = p.shape().clone();
        Ok(match p.backend() {
            Backend::Cpu(cpu) => {
                let (p2, b2) = cpu::optimizer::sgd(
                    p.host_f32(),
                    g.host_f32(),
                    buf.as_ref().map(RawTensor::host_f32),
                    config,
                );
                (
                    RawTensor::from_host_f32(p2, shape.clone(), cpu),
                    RawTensor::from_host_f32(b2, shape, cpu),
                )
            }
            Backend::Gpu(ctx) => {
                let (p2, b2) = gpu::optimizer::sgd(
                    ctx,
                    p.buffer(),
                    g.buffer(),
                    buf.as_ref().map(RawTensor::buffer),
                    p.numel(),
                    config,
                )?;
                (
                    RawTensor::from_gpu(p2, shape.clone(), DType::F32, &p),
                    RawTensor::from_gpu(b2, shape, DType::F32, &p),
                )
            }
        })
    }

    /// [`RawTensor::adam_step`] for several parameters (`items[k]` = param, grad, m, v) with one
    /// config: on a GPU up to four parameters per kernel launch, so a small model's whole update is
    /// one dispatch (parameters on different devices are updated where they live). Returns each
    /// one's `(param, m, v)`, in order.
    pub fn adam_step_many(
        items: &[[&RawTensor; 4]],
        config: &AdamConfig,
        step: u32,
    ) -> Result<Vec<(RawTensor, RawTensor, RawTensor)>> {
        let op = "adam_step";
        if step == 0 {
            return Err(Error::argument(op, "step counts from 1"));
        }
        let mut updated = Vec::with_capacity(items.len());
        for chunk in items.chunks(gpu::optimizer::MULTI) {
            let params: Vec<&RawTensor> = chunk.iter().map(|i| i[0]).collect();
            let Some(ctx) = one_multi_launch(&params) else {
                for [p, g, m, v] in chunk {
                    updated.push(RawTensor::adam_step(p, g, m, v, config, step)?);
                }
                continue;
            };
            let mut tensors = Vec::with_capacity(chunk.len());
            for [p, g, m, v] in chunk {
                check(op, p, &[g, m, v])?;
                tensors.push([
                    p.contiguous()?,
                    g.contiguous()?,
                    m.contiguous()?,
                    v.contiguous()?,
                ]);
            }
            let buffers: Vec<[&GpuBuffer; 4]> = tensors
                .iter()
                .map(|t| [t[0].buffer(), t[1].buffer(), t[2].buffer(), t[3].buffer()])
                .collect();
            let numels: Vec<usize> = tensors.iter().map(|t| t[0].numel()).collect();
            let outs = gpu::optimizer::adam_multi(ctx, &buffers, &numels, config, step)?;
            for (t, [p2, m2, v2]) in tensors.iter().zip(outs) {
                let p = &t[0];
                let wrap = |b| RawTensor::from_gpu(b, p.shape().clone(), DType::F32, p);
                updated.push((wrap(p2), wrap(m2), wrap(v2)));
            }
        }
        Ok(updated)
    }

    /// [`RawTensor::sgd_step`] for several parameters (`items[k]` = param, grad, momentum buffer)
    /// with one config: on a GPU up to four parameters per kernel launch (parameters on different
    /// devices are updated where they live). Returns each one's `(param, momentum_buffer)`, in order.
    pub fn sgd_step_many(
        items: &[(&RawTensor, &RawTensor, Option<&RawTensor>)],
        config: &SgdConfig,
    ) -> Result<Vec<(RawTensor, RawTensor)>> {
        let op = "sgd_step";
        let mut updated = Vec::with_capacity(items.len());
        for chunk in items.chunks(gpu::optimizer::MULTI) {
            let params: Vec<&RawTensor> = chunk.iter().map(|i| i.0).collect();
            // One launch updates parameters that all have a momentum buffer, or none.
            let uniform =
                chunk.iter().all(|i| i.2.is_some()) || chunk.iter().all(|i| i.2.is_none());
            let ctx = one_multi_launch(&params).filter(|_| uniform);
            let Some(ctx) = ctx else {
                for &(p, g, b) in chunk {
                    updated.push(RawTensor::sgd_step(p, g, b, config)?);
                }
                continue;
            };
            let mut tensors = Vec::with_capacity(chunk.len());
            for &(p, g, b) in chunk {
                let mut others = vec![g];
                others.extend(b);
                check(op, p, &others)?;
                tensors.push((
                    p.contiguous()?,
                    g.contiguous()?,
                    b.map(RawTensor::contiguous).transpose()?,
                ));
            }
            let buffers: Vec<_> = tensors
                .iter()
                .map(|(p, g, b)| (p.buffer(), g.buffer(), b.as_ref().map(RawTensor::buffer)))
                .collect();
            let numels: Vec<usize> = tensors.iter().map(|t| t.0.numel()).collect();
            let outs = gpu::optimizer::sgd_multi(ctx, &buffers, &numels, config)?;
            for ((p, _, _), (p2, b2)) in tensors.iter().zip(outs) {
                let wrap = |b| RawTensor::from_gpu(b, p.shape().clone(), DType::F32, p);
                updated.push((wrap(p2), wrap(b2)));
            }
        }
        Ok(updated)
    }
}

/// The GPU on which one multi-parameter launch can update `params`: they all live on it and its
/// adapter binds enough storage buffers. `None` sends them one by one through the single kernels.
fn one_multi_launch<'a>(params: &[&'a RawTensor]) -> Option<&'a Arc<GpuContext>> {
    let Backend::Gpu(ctx) = params[0].backend() else {
        return None;
    };
    let together = params
        .iter()
        .all(|p| p.device().same_device(params[0].device()));
    (together && gpu::optimizer::multi_supported(ctx)).then_some(ctx)
}
