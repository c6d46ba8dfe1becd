//! LSTM and GRU over a whole sequence: the input projection of every step is one GEMM, then each
//! step is one `[N, H] × [H, G·H]` GEMM and one fused cell kernel (`RawTensor::recurrent_cell`),
//! recorded so that autograd differentiates through time with one cell kernel per step backward.

use kiln_device::{CellKind, Error, RawTensor, Result};

use crate::Tensor;

/// The weights of a recurrent layer in PyTorch's layout: `w_ih` `[G·H, F]`, `w_hh` `[G·H, H]` and
/// optional biases `[G·H]`, with G = 4 gates for LSTM (order i, f, g, o — Keras's i, f, c, o) and 3
/// for GRU (order r, z, n).
pub struct RecurrentWeights<'a> {
    /// Input-to-hidden weights.
    pub w_ih: &'a Tensor,
    /// Hidden-to-hidden weights.
    pub w_hh: &'a Tensor,
    /// Input bias.
    pub b_ih: Option<&'a Tensor>,
    /// Hidden bias (GRU applies it inside the reset gate, Keras's `reset_after=True`).
    pub b_hh: Option<&'a Tensor>,
}

/// What a recurrent layer returns for a batch.
pub struct RecurrentOutput {
    /// Every step's hidden state, `[N, T, H]` (a masked step repeats the state before it).
    pub sequence: Tensor,
    /// The last hidden state `[N, H]` (the state after the last unmasked step).
    pub last_h: Tensor,
    /// The last cell state `[N, H]` (LSTM only).
    pub last_c: Option<Tensor>,
}

impl RecurrentWeights<'_> {
    /// `(steps, batch, hidden)` after checking every shape for `x` `[N, T, F]` with `gates` gates.
    fn check(
        &self,
        op: &'static str,
        x: &Tensor,
        gates: usize,
        mask: Option<&Tensor>,
    ) -> Result<(usize, usize, usize)> {
        let [n, t, f] = x.dims() else {
            return Err(Error::invalid(
                op,
                format!("expects input [batch, steps, features], got {}", x.shape()),
            ));
        };
        let (n, t, f) = (*n, *t, *f);
        let gh = self.w_ih.dims().first().copied().unwrap_or(0);
        let h = gh / gates;
        let bad = |what: String| Err(Error::invalid(op, what));
        if h == 0 || gh % gates != 0 || self.w_ih.dims() != [gh, f] {
            return bad(format!(
                "w_ih {} must be [{gates}·hidden, {f}] for input {}",
                self.w_ih.shape(),
                x.shape()
            ));
        }
        if self.w_hh.dims() != [gh, h] {
            return bad(format!("w_hh {} must be [{gh}, {h}]", self.w_hh.shape()));
        }
        for b in [self.b_ih, self.b_hh].into_iter().flatten() {
            if b.dims() != [gh] {
                return bad(format!("bias {} must be [{gh}]", b.shape()));
            }
        }
        if let Some(m) = mask.filter(|m| m.dims() != [n, t]) {
            return bad(format!(
                "mask {} must be [batch, steps] = [{n}, {t}] for input {}",
                m.shape(),
                x.shape()
            ));
        }
        Ok((t, n, h))
    }

    /// `x W_ihᵀ + bias` for every step at once, as `[T, N, G·H]` (each step a contiguous block).
    fn project_inputs(
        &self,
        x: &Tensor,
        (t, n): (usize, usize),
        bias: Option<&Tensor>,
    ) -> Result<Tensor> {
        let rows = x
            .permute(&[1, 0, 2])?
            .reshape([t * n, x.numel() / (t * n).max(1)])?;
        let projected = rows.linear(self.w_ih, bias)?;
        let gh = projected.dims()[1];
        projected.reshape([t, n, gh])
    }
}

/// Step `t` of a `[T, N, G]` projection as `[N, G]` (a view).
fn step(projected: &Tensor, t: usize) -> Result<Tensor> {
    let dims = projected.dims();
    projected.narrow(0, t, 1)?.reshape([dims[1], dims[2]])
}

impl Tensor {
    /// One fused cell step (`RawTensor::recurrent_cell`) recorded for autograd: `self` is the step's
    /// input gates, `h_gates` the hidden state's, `state` the previous state.
    fn cell_step(
        &self,
        kind: CellKind,
        h_gates: &Tensor,
        state: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let mask = mask.map(|m| m.raw().clone());
        let (new_state, saved) =
            RawTensor::recurrent_cell(kind, self.raw(), h_gates.raw(), state.raw(), mask.as_ref())?;
        let previous = state.raw().clone();
        Ok(Tensor::from_op(
            kind_name(kind),
            new_state,
            &[self, h_gates, state],
            move |g| {
                let (d_x, d_h, d_state) =
                    RawTensor::recurrent_cell_backward(kind, g, &saved, &previous, mask.as_ref())?;
                Ok(vec![Some(d_x), Some(d_h), Some(d_state)])
            },
        ))
    }

    /// Runs `kind` over every step of `self` (`[N, T, F]`) from a zero state.
    fn recurrence(
        &self,
        kind: CellKind,
        weights: &RecurrentWeights<'_>,
        mask: Option<&Tensor>,
    ) -> Result<RecurrentOutput> {
        let op = kind_name(kind);
        let (steps, n, h) = weights.check(op, self, kind.gates(), mask)?;
        // An LSTM's two biases add up; a GRU keeps b_hh inside its reset gate.
        let lstm_bias = match (kind, weights.b_ih, weights.b_hh) {
            (CellKind::Lstm, Some(a), Some(b)) => Some(a.add(b)?),
            (CellKind::Lstm, a, b) => a.or(b).cloned(),
            (CellKind::Gru, ..) => None,
        };
        let input_bias = if kind == CellKind::Lstm {
            lstm_bias.as_ref()
        } else {
            weights.b_ih
        };
        let hidden_bias = if kind == CellKind::Gru {
            weights.b_hh
        } else {
            None
        };
        let projected = weights.project_inputs(self, (steps, n), input_bias)?;
        let mut state = Tensor::zeros([n, kind.state_width(h)], self.device())?;
        let mut outputs = Vec::with_capacity(steps);
        for t in 0..steps {
            let hidden = state.narrow(1, 0, h)?;
            let h_gates = hidden.linear(weights.w_hh, hidden_bias)?;
            let m = mask.map(|m| m.narrow(1, t, 1)).transpose()?;
            state = step(&projected, t)?.cell_step(kind, &h_gates, &state, m.as_ref())?;
            outputs.push(state.narrow(1, 0, h)?);
        }
        Ok(RecurrentOutput {
            sequence: Tensor::stack(&outputs.iter().collect::<Vec<_>>(), 1)?,
            last_h: state.narrow(1, 0, h)?,
            last_c: (kind == CellKind::Lstm)
                .then(|| state.narrow(1, h, h))
                .transpose()?,
        })
    }

    /// An LSTM over `[N, T, F]` from a zero state: PyTorch's and Keras's equations
    /// (`c = f c + i g`, `h = o tanh c`). `mask` (`[N, T]`, 1 = real step) keeps the state through
    /// padded steps. Each step is one GEMM and one fused cell kernel, each way.
    pub fn lstm(
        &self,
        weights: &RecurrentWeights<'_>,
        mask: Option<&Tensor>,
    ) -> Result<RecurrentOutput> {
        self.recurrence(CellKind::Lstm, weights, mask)
    }

    /// A GRU over `[N, T, F]` from a zero state, PyTorch's equations (Keras's `reset_after=True`):
    /// `n = tanh(W_in x + b_in + r (W_hn h + b_hn))`, `h = (1 - z) n + z h`. `mask` as for
    /// [`Tensor::lstm`].
    pub fn gru(
        &self,
        weights: &RecurrentWeights<'_>,
        mask: Option<&Tensor>,
    ) -> Result<RecurrentOutput> {
        self.recurrence(CellKind::Gru, weights, mask)
    }
}

fn kind_name(kind: CellKind) -> &'static str {
    match kind {
        CellKind::Lstm => "lstm",
        CellKind::Gru => "gru",
    }
}
