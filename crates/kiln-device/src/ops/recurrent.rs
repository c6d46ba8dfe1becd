//! One step of an LSTM or GRU cell after its GEMMs, fused into one kernel each way (see
//! `shaders/recurrent.wgsl` for the layouts).

use crate::cpu::recurrent::{Incoming, Step};
use crate::gpu::recurrent::{GpuIncoming, GpuStep};
use crate::tensor::Backend;
use crate::{DType, Error, RawTensor, Result, cpu, gpu};

/// Which recurrent cell a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellKind {
    /// LSTM: gates i, f, g, o; the state is `[N, 2H]` (h then c).
    Lstm,
    /// GRU (`reset_after`): gates r, z, n; the state is `[N, H]`.
    Gru,
}

impl CellKind {
    /// The op's name, as errors and layer kinds spell it (`lstm`, `gru`).
    pub fn name(self) -> &'static str {
        match self {
            CellKind::Lstm => "lstm",
            CellKind::Gru => "gru",
        }
    }

    /// Gates per unit.
    pub fn gates(self) -> usize {
        match self {
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }

    /// The state's width for `units` units.
    pub fn state_width(self, units: usize) -> usize {
        match self {
            CellKind::Lstm => 2 * units,
            CellKind::Gru => units,
        }
    }

    fn op(self, backward: bool) -> &'static str {
        match (self, backward) {
            (CellKind::Lstm, false) => "lstm_cell",
            (CellKind::Lstm, true) => "lstm_cell_backward",
            (CellKind::Gru, false) => "gru_cell",
            (CellKind::Gru, true) => "gru_cell_backward",
        }
    }

    /// `(rows, units)` after checking a step's shapes.
    fn check(
        self,
        op: &'static str,
        x_gates: &RawTensor,
        h_gates: &RawTensor,
        state: &RawTensor,
        mask: Option<&RawTensor>,
    ) -> Result<(usize, usize)> {
        let &[n, width] = state.shape().dims() else {
            return Err(Error::invalid(
                op,
                format!("state {} must be [batch, width]", state.shape()),
            ));
        };
        let units = match self {
            CellKind::Lstm if width % 2 == 0 => width / 2,
            CellKind::Lstm => {
                return Err(Error::invalid(
                    op,
                    format!("an LSTM state {} must be [batch, 2·units]", state.shape()),
                ));
            }
            CellKind::Gru => width,
        };
        let gates = [n, self.gates() * units];
        for (name, t) in [("input gates", x_gates), ("hidden gates", h_gates)] {
            if t.shape().dims() != gates {
                return Err(Error::invalid(
                    op,
                    format!(
                        "{name} {} must be {gates:?} for state {}",
                        t.shape(),
                        state.shape()
                    ),
                ));
            }
        }
        if let Some(m) = mask.filter(|m| m.numel() != n) {
            return Err(Error::invalid(
                op,
                format!("mask {} must hold one value per sample ({n})", m.shape()),
            ));
        }
        Ok((n, units))
    }
}

/// A tensor whose elements are in row-major order from its offset (a copy only when they are not).
fn packed(t: &RawTensor) -> Result<RawTensor> {
    if t.is_contiguous() {
        Ok(t.clone())
    } else {
        t.contiguous()
    }
}

impl RawTensor {
    /// One cell step: from the gate pre-activations of the input (`x_gates`, `[N, G·H]`) and of the
    /// previous hidden state (`h_gates`, same shape), and the previous `state`, the new state and the
    /// values its backward needs (`[N, 4H]`). `mask` (`[N]`, 1 = a real step) keeps the previous state
    /// where it is 0.
    pub fn recurrent_cell(
        kind: CellKind,
        x_gates: &RawTensor,
        h_gates: &RawTensor,
        state: &RawTensor,
        mask: Option<&RawTensor>,
    ) -> Result<(RawTensor, RawTensor)> {
        let op = kind.op(false);
        let (n, units) = kind.check(op, x_gates, h_gates, state, mask)?;
        let mut all = vec![x_gates, h_gates, state];
        all.extend(mask);
        for t in &all {
            t.expect_dtype(op, DType::F32, "recurrent cells compute in f32")?;
        }
        RawTensor::check_same_device(op, &all)?;
        let (xg, hg, st) = (packed(x_gates)?, packed(h_gates)?, packed(state)?);
        let mask = mask.map(packed).transpose()?;
        let state_shape = [n, kind.state_width(units)];
        Ok(match st.backend() {
            Backend::Cpu(cpu) => {
                let step = Step {
                    units,
                    x_gates: xg.host_f32(),
                    h_gates: hg.host_f32(),
                    state: st.host_f32(),
                    mask: mask.as_ref().map(RawTensor::host_f32),
                };
                let (new_state, saved) = cpu::recurrent::forward(kind, &step);
                (
                    RawTensor::from_host_f32(new_state, state_shape, cpu),
                    RawTensor::from_host_f32(saved, [n, 4 * units], cpu),
                )
            }
            Backend::Gpu(ctx) => {
                let step = gpu_step(n, units, &xg, &hg, &st, mask.as_ref());
                let (new_state, saved) = gpu::recurrent::forward(ctx, kind, &step)?;
                (
                    RawTensor::from_gpu(new_state, state_shape, DType::F32, &st),
                    RawTensor::from_gpu(saved, [n, 4 * units], DType::F32, &st),
                )
            }
        })
    }

    /// The gradients of one cell step from the gradients of its new state: `(d x_gates, d h_gates,
    /// d state)`. The new state's gradient is the sum of `d_state`, `carry` (same shape: what the
    /// step after passed back) and `d_hidden` (`[N, H]`, added to the hidden part: the gradient
    /// through the next step's hidden GEMM). The hidden half of the returned `d state` holds only
    /// what passes through padded steps; the caller adds the gradient through `h_gates`' GEMM.
    pub fn recurrent_cell_backward(
        kind: CellKind,
        d_state: &RawTensor,
        saved: &RawTensor,
        state: &RawTensor,
        mask: Option<&RawTensor>,
        carry: Option<&RawTensor>,
        d_hidden: Option<&RawTensor>,
    ) -> Result<(RawTensor, RawTensor, RawTensor)> {
        let op = kind.op(true);
        let &[n, width] = state.shape().dims() else {
            return Err(Error::invalid(
                op,
                format!("state {} must be [batch, width]", state.shape()),
            ));
        };
        if kind == CellKind::Lstm && width % 2 != 0 {
            return Err(Error::invalid(
                op,
                format!("an LSTM state {} must be [batch, 2·units]", state.shape()),
            ));
        }
        let units = if kind == CellKind::Lstm {
            width / 2
        } else {
            width
        };
        let fits = d_state.shape() == state.shape()
            && carry.is_none_or(|c| c.shape() == state.shape())
            && d_hidden.is_none_or(|d| d.shape().dims() == [n, units])
            && mask.is_none_or(|m| m.numel() == n)
            && saved.shape().dims() == [n, 4 * units];
        if !fits {
            return Err(Error::invalid(
                op,
                format!(
                    "gradients {}, {:?}, {:?}, mask {:?} and saved values {} do not fit state {}",
                    d_state.shape(),
                    carry.map(|c| c.shape().to_string()),
                    d_hidden.map(|d| d.shape().to_string()),
                    mask.map(|m| m.shape().to_string()),
                    saved.shape(),
                    state.shape()
                ),
            ));
        }
        let mut all = vec![d_state, saved, state];
        all.extend(mask);
        all.extend(carry);
        all.extend(d_hidden);
        for t in &all {
            t.expect_dtype(op, DType::F32, "recurrent cells compute in f32")?;
        }
        RawTensor::check_same_device(op, &all)?;
        // the kernel reads `saved` from its start: contiguous() guarantees offset 0
        let (ds, sv, st) = (packed(d_state)?, saved.contiguous()?, packed(state)?);
        let mask = mask.map(packed).transpose()?;
        let carry = carry.map(RawTensor::contiguous).transpose()?;
        let d_hidden = d_hidden.map(RawTensor::contiguous).transpose()?;
        let gates_shape = [n, kind.gates() * units];
        Ok(match st.backend() {
            Backend::Cpu(cpu) => {
                let step = Step {
                    units,
                    x_gates: &[],
                    h_gates: &[],
                    state: st.host_f32(),
                    mask: mask.as_ref().map(RawTensor::host_f32),
                };
                let incoming = Incoming {
                    d_state: ds.host_f32(),
                    carry: carry.as_ref().map(RawTensor::host_f32),
                    hidden: d_hidden.as_ref().map(RawTensor::host_f32),
                };
                let (d_x, d_h, d_prev) =
                    cpu::recurrent::backward(kind, &step, &incoming, sv.host_f32());
                (
                    RawTensor::from_host_f32(d_x, gates_shape, cpu),
                    RawTensor::from_host_f32(d_h, gates_shape, cpu),
                    RawTensor::from_host_f32(d_prev, [n, width], cpu),
                )
            }
            Backend::Gpu(ctx) => {
                let step = gpu_step(n, units, &st, &st, &st, mask.as_ref());
                let incoming = GpuIncoming {
                    d_state: (ds.buffer(), ds.layout().offset()),
                    carry: carry.as_ref().map(RawTensor::buffer),
                    hidden: d_hidden.as_ref().map(RawTensor::buffer),
                };
                let (d_x, d_h, d_prev) =
                    gpu::recurrent::backward(ctx, kind, &step, &incoming, sv.buffer())?;
                let d_x = RawTensor::from_gpu(d_x, gates_shape, DType::F32, &st);
                // an LSTM's two gate gradients are equal: one buffer serves both
                let d_h = match d_h {
                    Some(d_h) => RawTensor::from_gpu(d_h, gates_shape, DType::F32, &st),
                    None => d_x.clone(),
                };
                (
                    d_x,
                    d_h,
                    RawTensor::from_gpu(d_prev, [n, width], DType::F32, &st),
                )
            }
        })
    }
}

fn gpu_step<'a>(
    rows: usize,
    units: usize,
    x_gates: &'a RawTensor,
    h_gates: &'a RawTensor,
    state: &'a RawTensor,
    mask: Option<&'a RawTensor>,
) -> GpuStep<'a> {
    let at = |t: &'a RawTensor| (t.buffer(), t.layout().offset());
    GpuStep {
        rows,
        units,
        x_gates: at(x_gates),
        h_gates: at(h_gates),
        state: at(state),
        mask: mask.map(at),
    }
}
