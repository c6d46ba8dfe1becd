//! Launchers for `shaders/recurrent.wgsl`: one LSTM or GRU step, forward and backward.

use std::sync::Arc;

use super::context::{Bindable, or_placeholder};
use super::params::Params;
use super::pipelines::Kernel;
use super::{GpuBuffer, GpuContext, groups_for};
use crate::ops::CellKind;
use crate::shaders::Shader;
use crate::{DType, Result};

/// A step's inputs on the device: buffers with their element offsets, and the geometry.
pub(crate) struct GpuStep<'a> {
    pub(crate) rows: usize,
    pub(crate) units: usize,
    pub(crate) x_gates: (&'a GpuBuffer, usize),
    pub(crate) h_gates: (&'a GpuBuffer, usize),
    pub(crate) state: (&'a GpuBuffer, usize),
    pub(crate) mask: Option<(&'a GpuBuffer, usize)>,
}

/// The gradients reaching a new state on the device (see `shaders/recurrent.wgsl`): from outside at
/// an element offset, carried from the step after, through the next step's hidden GEMM.
pub(crate) struct GpuIncoming<'a> {
    pub(crate) d_state: (&'a GpuBuffer, usize),
    pub(crate) carry: Option<&'a GpuBuffer>,
    pub(crate) hidden: Option<&'a GpuBuffer>,
}

impl GpuStep<'_> {
    fn params(&self, op: &'static str, incoming: Option<&GpuIncoming<'_>>) -> Result<Params> {
        Params::new().with_words(
            op,
            0,
            &[
                self.rows,
                self.units,
                usize::from(self.mask.is_some()),
                self.x_gates.1,
                self.h_gates.1,
                self.state.1,
                self.mask.map_or(0, |m| m.1),
                usize::from(incoming.is_some_and(|i| i.carry.is_some())),
                usize::from(incoming.is_some_and(|i| i.hidden.is_some())),
                incoming.map_or(0, |i| i.d_state.1),
            ],
        )
    }
}

fn entry(kind: CellKind, backward: bool) -> &'static str {
    match (kind, backward) {
        (CellKind::Lstm, false) => "lstm_forward",
        (CellKind::Lstm, true) => "lstm_backward",
        (CellKind::Gru, false) => "gru_forward",
        (CellKind::Gru, true) => "gru_backward",
    }
}

/// The new state and the saved values of one step.
pub(crate) fn forward(
    ctx: &Arc<GpuContext>,
    kind: CellKind,
    step: &GpuStep<'_>,
) -> Result<(GpuBuffer, GpuBuffer)> {
    let op = "recurrent_cell";
    let (n, h) = (step.rows, step.units);
    let state = ctx.alloc(op, (n * kind.state_width(h) * 4) as u64)?;
    let saved = ctx.alloc(op, (n * 4 * h * 4) as u64)?;
    let placeholder = ctx.placeholder();
    let mask = or_placeholder(step.mask.map(|(m, _)| m), &placeholder);
    ctx.dispatch(
        op,
        &Kernel::new(Shader::Recurrent, entry(kind, false), DType::F32),
        &step.params(op, None)?,
        &[
            (1, step.x_gates.0),
            (2, step.h_gates.0),
            (3, step.state.0),
            (4, mask),
            (5, &state),
            (6, &saved),
        ],
        groups_for(n * h),
    )?;
    Ok((state, saved))
}

/// `(d x_gates, d h_gates (GRU only), d state_prev)` of one step.
pub(crate) fn backward(
    ctx: &Arc<GpuContext>,
    kind: CellKind,
    step: &GpuStep<'_>,
    incoming: &GpuIncoming<'_>,
    saved: &GpuBuffer,
) -> Result<(GpuBuffer, Option<GpuBuffer>, GpuBuffer)> {
    let op = "recurrent_cell_backward";
    let (n, h) = (step.rows, step.units);
    let gates = n * kind.gates() * h * 4;
    let d_x = ctx.alloc(op, gates as u64)?;
    let d_h = (kind == CellKind::Gru)
        .then(|| ctx.alloc(op, gates as u64))
        .transpose()?;
    let d_prev = ctx.alloc(op, (n * kind.state_width(h) * 4) as u64)?;
    let placeholder = ctx.placeholder();
    let mask = or_placeholder(step.mask.map(|(m, _)| m), &placeholder);
    let carry = or_placeholder(incoming.carry, &placeholder);
    let hidden = or_placeholder(incoming.hidden, &placeholder);
    let params = step.params(op, Some(incoming))?;
    let bindings: [(u32, &dyn Bindable); 8] = [
        (3, step.state.0),
        (4, mask),
        (7, incoming.d_state.0),
        (8, saved),
        (9, &d_x),
        (11, &d_prev),
        (12, carry),
        (13, hidden),
    ];
    ctx.dispatch(
        op,
        &Kernel::new(Shader::Recurrent, entry(kind, true), DType::F32),
        &params,
        &bindings,
        groups_for(n * h),
    )?;
    if let Some(d_h) = &d_h {
        ctx.dispatch(
            op,
            &Kernel::new(Shader::Recurrent, "gru_backward_hidden", DType::F32),
            &params,
            &[(8, saved), (9, &d_x), (10, d_h)],
            groups_for(n * h),
        )?;
    }
    Ok((d_x, d_h, d_prev))
}
