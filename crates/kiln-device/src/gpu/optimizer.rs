//! Launchers for `shaders/optimizer.wgsl`: one parameter per launch, or up to [`MULTI`] (a model's
//! whole update) where the adapter binds enough storage buffers.

use std::sync::Arc;

use super::context::WORKGROUP_SIZE;
use super::context::{Bindable, StepGuard, or_placeholder};
use super::params::Params;
use super::pipelines::Kernel;
use super::{GpuBuffer, GpuContext, groups_for};
use crate::cpu::optimizer::RmsPropOut;
use crate::shaders::Shader;
use crate::{AdamConfig, DType, Result, RmsPropConfig, SgdConfig};

/// Parameters one launch of `adam_multi` / `sgd_multi` updates.
pub(crate) const MULTI: usize = 4;
/// Storage buffers `adam_multi` binds: seven per parameter and the step guard.
const MULTI_BINDINGS: u32 = 7 * MULTI as u32 + 1;
/// Where update kernels read the step guard, and where `guard_main` writes it.
const GUARD: u32 = 38;
const GUARD_OUT: u32 = 39;

const DECOUPLED: u32 = 1;
const NESTEROV: u32 = 2;
const FIRST_STEP: u32 = 4;

fn floats(params: Params, start: usize, values: &[f32]) -> Params {
    values
        .iter()
        .enumerate()
        .fold(params, |p, (i, v)| p.set(start + i, v.to_bits()))
}

/// The Adam/AdamW hyperparameters of a step (words 1..9).
fn adam_params(c: &AdamConfig, step: u32) -> Params {
    let c1 = 1.0 - c.beta1.powi(step as i32);
    let c2 = 1.0 - c.beta2.powi(step as i32);
    floats(
        Params::new(),
        1,
        &[c.lr, c.beta1, c.beta2, c.eps, c.weight_decay, c1, c2],
    )
    .set(8, if c.decoupled { DECOUPLED } else { 0 })
}

/// The SGD hyperparameters of a step (words 1..9); `first`: no momentum buffer exists yet.
fn sgd_params(c: &SgdConfig, first: bool) -> Params {
    let flags = if c.nesterov { NESTEROV } else { 0 } | if first { FIRST_STEP } else { 0 };
    floats(Params::new(), 1, &[c.lr, c.momentum, c.dampening])
        .set(5, c.weight_decay.to_bits())
        .set(8, flags)
}

/// Returns the updated `[param, m, v]`.
pub(crate) fn adam(
    ctx: &Arc<GpuContext>,
    [p, g, m, v]: [&GpuBuffer; 4],
    numel: usize,
    c: &AdamConfig,
    step: u32,
) -> Result<[GpuBuffer; 3]> {
    let op = "adam_step";
    let params = adam_params(c, step).with_words(op, 0, &[numel])?;
    let bytes = (numel * 4) as u64;
    let outs = [
        ctx.alloc(op, bytes)?,
        ctx.alloc(op, bytes)?,
        ctx.alloc(op, bytes)?,
    ];
    let kernel = Kernel::new(Shader::Optimizer, "adam_main", DType::F32);
    ctx.dispatch(
        op,
        &kernel,
        &params,
        &[
            (1, p),
            (2, g),
            (3, m),
            (4, v),
            (5, &outs[0]),
            (6, &outs[1]),
            (7, &outs[2]),
            (GUARD, &ctx.step_guard()),
        ],
        groups_for(numel),
    )?;
    Ok(outs)
}

/// Returns the updated `(param, momentum buffer)`.
pub(crate) fn sgd(
    ctx: &Arc<GpuContext>,
    p: &GpuBuffer,
    g: &GpuBuffer,
    buf: Option<&GpuBuffer>,
    numel: usize,
    c: &SgdConfig,
) -> Result<(GpuBuffer, GpuBuffer)> {
    let op = "sgd_step";
    let params = sgd_params(c, buf.is_none()).with_words(op, 0, &[numel])?;
    let bytes = (numel * 4) as u64;
    let (p2, b2) = (ctx.alloc(op, bytes)?, ctx.alloc(op, bytes)?);
    let kernel = Kernel::new(Shader::Optimizer, "sgd_main", DType::F32);
    // On the first step there is no buffer yet; the kernel does not read it, the gradient stands in.
    ctx.dispatch(
        op,
        &kernel,
        &params,
        &[
            (1, p),
            (2, g),
            (3, buf.unwrap_or(g)),
            (5, &p2),
            (6, &b2),
            (GUARD, &ctx.step_guard()),
        ],
        groups_for(numel),
    )?;
    Ok((p2, b2))
}

const CENTERED: u32 = 8;
const MOMENTUM: u32 = 16;

/// The updated parameter and state; the momentum buffer and mean gradient only when `c` uses them
/// (their inputs are read only then).
pub(crate) fn rmsprop(
    ctx: &Arc<GpuContext>,
    [p, g, square_avg]: [&GpuBuffer; 3],
    (buffer, grad_avg): (Option<&GpuBuffer>, Option<&GpuBuffer>),
    numel: usize,
    c: &RmsPropConfig,
) -> Result<RmsPropOut<GpuBuffer>> {
    let op = "rmsprop_step";
    // The momentum buffer comes with a momentum (zeros at the first step, from the caller).
    let momentum_buffer = buffer.filter(|_| c.momentum > 0.0);
    let flags = if c.centered { CENTERED } else { 0 }
        | if momentum_buffer.is_some() {
            MOMENTUM
        } else {
            0
        };
    let params = floats(
        Params::new(),
        1,
        &[c.lr, c.rho, c.momentum, c.eps, c.weight_decay],
    )
    .set(8, flags)
    .with_words(op, 0, &[numel])?;
    let bytes = (numel * 4) as u64;
    // With momentum, the first kernel's "parameter" is the step the second one applies.
    let (p2, a2) = (ctx.alloc(op, bytes)?, ctx.alloc(op, bytes)?);
    let m2 = c.centered.then(|| ctx.alloc(op, bytes)).transpose()?;
    // An unused mean gradient: its input stands in as the gradient (never read), its output a
    // scratch buffer (never written).
    let scratch = ctx.alloc(op, 4)?;
    ctx.dispatch(
        op,
        &Kernel::new(Shader::Optimizer, "rmsprop_main", DType::F32),
        &params,
        &[
            (1, p),
            (2, g),
            (3, square_avg),
            (36, grad_avg.unwrap_or(g)),
            (5, &p2),
            (6, &a2),
            (37, m2.as_ref().unwrap_or(&scratch)),
            (GUARD, &ctx.step_guard()),
        ],
        groups_for(numel),
    )?;
    let (param, buffer) = if let Some(buffer) = momentum_buffer {
        let (p3, b2) = (ctx.alloc(op, bytes)?, ctx.alloc(op, bytes)?);
        ctx.dispatch(
            op,
            &Kernel::new(Shader::Optimizer, "rmsprop_momentum", DType::F32),
            &params,
            &[
                (1, p),
                (2, &p2),
                (4, buffer),
                (5, &p3),
                (7, &b2),
                (GUARD, &ctx.step_guard()),
            ],
            groups_for(numel),
        )?;
        (p3, Some(b2))
    } else {
        (p2, None)
    };
    Ok(RmsPropOut {
        param,
        square_avg: a2,
        buffer,
        grad_avg: m2,
    })
}

/// Returns the updated `(param, accumulator)`.
pub(crate) fn adagrad(
    ctx: &Arc<GpuContext>,
    [p, g, sum]: [&GpuBuffer; 3],
    numel: usize,
    (lr, eps): (f32, f32),
) -> Result<(GpuBuffer, GpuBuffer)> {
    let op = "adagrad_step";
    let params = floats(Params::new(), 1, &[lr])
        .set(4, eps.to_bits())
        .with_words(op, 0, &[numel])?;
    let bytes = (numel * 4) as u64;
    let (p2, s2) = (ctx.alloc(op, bytes)?, ctx.alloc(op, bytes)?);
    ctx.dispatch(
        op,
        &Kernel::new(Shader::Optimizer, "adagrad_main", DType::F32),
        &params,
        &[
            (1, p),
            (2, g),
            (3, sum),
            (5, &p2),
            (6, &s2),
            (GUARD, &ctx.step_guard()),
        ],
        groups_for(numel),
    )?;
    Ok((p2, s2))
}

/// Whether the adapter binds enough storage buffers for the multi-parameter kernels.
pub(crate) fn multi_supported(ctx: &GpuContext) -> bool {
    ctx.limits.max_storage_buffers_per_shader_stage >= MULTI_BINDINGS
}

/// `params` with the parameter count, each one's first workgroup and element count (words 9..18);
/// returns them and the workgroups to launch.
fn segments(op: &'static str, params: Params, numels: &[usize]) -> Result<(Params, u64)> {
    let mut starts = Vec::with_capacity(numels.len());
    let mut groups = 0;
    for &n in numels {
        starts.push(groups);
        groups += n.div_ceil(WORKGROUP_SIZE as usize);
    }
    let params = params
        .with_words(op, 9, &[numels.len()])?
        .with_words(op, 10, &starts)?
        .with_words(op, 14, numels)?;
    Ok((params, groups as u64))
}

/// `count` output buffers for each parameter of `numels[k]` elements.
fn alloc_outputs(
    ctx: &Arc<GpuContext>,
    op: &'static str,
    numels: &[usize],
    count: usize,
) -> Result<Vec<Vec<GpuBuffer>>> {
    numels
        .iter()
        .map(|&n| (0..count).map(|_| ctx.alloc(op, (n * 4) as u64)).collect())
        .collect()
}

/// Records `entry` over up to [`MULTI`] parameters: `inputs[k]` are parameter k's input buffers
/// (param, grad, state 1, state 2 — as many as the entry reads), `outputs[k]` its output buffers.
fn launch_multi(
    ctx: &Arc<GpuContext>,
    op: &'static str,
    entry: &'static str,
    (params, workgroups): (&Params, u64),
    inputs: &[Vec<&GpuBuffer>],
    outputs: &[Vec<GpuBuffer>],
) -> Result<()> {
    let placeholder = ctx.placeholder();
    let mut bindings: Vec<(u32, &dyn Bindable)> = Vec::new();
    for slot in 0..inputs[0].len() {
        for k in 0..MULTI {
            // Unused parameter slots read parameter 0's buffers (never indexed) and write nowhere.
            let buffer = inputs.get(k).unwrap_or(&inputs[0])[slot];
            bindings.push((8 + (4 * slot + k) as u32, buffer));
        }
    }
    for slot in 0..outputs[0].len() {
        for k in 0..MULTI {
            let binding = 24 + (4 * slot + k) as u32;
            let out = outputs.get(k).map(|out| &out[slot]);
            bindings.push((binding, or_placeholder(out, &placeholder)));
        }
    }
    let guard = ctx.step_guard();
    bindings.push((GUARD, &guard));
    let kernel = Kernel::new(Shader::Optimizer, entry, DType::F32);
    ctx.dispatch(op, &kernel, params, &bindings, workgroups)
}

/// Records the step guard's check of `loss` (a scalar) for step `step` (0-based): the first
/// non-finite one is kept as `step + 1` in the guard word, which holds every later update.
pub(crate) fn guard_loss(ctx: &Arc<GpuContext>, loss: &GpuBuffer, step: u32) -> Result<()> {
    let op = "guard_loss";
    let Some(guard) = ctx.step_guard_buffer() else {
        return Ok(());
    };
    let params = Params::new().with_words(op, 0, &[step as usize + 1])?;
    ctx.dispatch(
        op,
        &Kernel::new(Shader::Optimizer, "guard_main", DType::F32),
        &params,
        &[(1, loss), (GUARD_OUT, &StepGuard(guard))],
        1,
    )
}

/// One Adam step of up to [`MULTI`] parameters in one launch: `items[k]` = (param, grad, m, v) of
/// `numels[k]` elements; returns each one's updated `[param, m, v]`.
pub(crate) fn adam_multi(
    ctx: &Arc<GpuContext>,
    items: &[[&GpuBuffer; 4]],
    numels: &[usize],
    c: &AdamConfig,
    step: u32,
) -> Result<Vec<[GpuBuffer; 3]>> {
    let op = "adam_step";
    let (params, workgroups) = segments(op, adam_params(c, step), numels)?;
    let outputs = alloc_outputs(ctx, op, numels, 3)?;
    let inputs: Vec<Vec<&GpuBuffer>> = items.iter().map(|b| b.to_vec()).collect();
    launch_multi(
        ctx,
        op,
        "adam_multi",
        (&params, workgroups),
        &inputs,
        &outputs,
    )?;
    Ok(outputs
        .into_iter()
        .map(|o| {
            let mut o = o.into_iter();
            let mut next = || o.next().expect("three outputs each");
            [next(), next(), next()]
        })
        .collect())
}

/// One SGD step of up to [`MULTI`] parameters in one launch: `items[k]` = (param, grad, momentum
/// buffer — all `None` on the first step); returns each one's `(param, momentum buffer)`.
pub(crate) fn sgd_multi(
    ctx: &Arc<GpuContext>,
    items: &[(&GpuBuffer, &GpuBuffer, Option<&GpuBuffer>)],
    numels: &[usize],
    c: &SgdConfig,
) -> Result<Vec<(GpuBuffer, GpuBuffer)>> {
    let op = "sgd_step";
    let first = items.iter().all(|i| i.2.is_none());
    let (params, workgroups) = segments(op, sgd_params(c, first), numels)?;
    let outputs = alloc_outputs(ctx, op, numels, 2)?;
    // On the first step there is no buffer yet; the kernel does not read it, the gradient stands in.
    let inputs: Vec<Vec<&GpuBuffer>> = items
        .iter()
        .map(|&(p, g, b)| vec![p, g, b.unwrap_or(g)])
        .collect();
    launch_multi(
        ctx,
        op,
        "sgd_multi",
        (&params, workgroups),
        &inputs,
        &outputs,
    )?;
    Ok(outputs
        .into_iter()
        .map(|o| {
            let mut o = o.into_iter();
            let mut next = || o.next().expect("two outputs each");
            (next(), next())
        })
        .collect())
}
