//! LSTM and GRU over a whole sequence: the input projection of every step is one GEMM, then each
//! step is one `[N, H] × [H, G·H]` GEMM and one fused cell kernel (`RawTensor::recurrent_cell`),
//! recorded so that autograd differentiates through time with one cell kernel per step backward.

use kiln_device::{CellKind, DType, Error, RawTensor, Result};

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
}

/// What the backward of a recurrence needs from its forward.
struct Tape {
    kind: CellKind,
    /// The state before each step (`[N, S]`, the first all zeros).
    states: Vec<RawTensor>,
    /// Each step's saved values.
    saved: Vec<RawTensor>,
    /// Each step's mask as `[N]`, when masked.
    masks: Vec<RawTensor>,
    /// The inputs as rows `[T·N, F]`, and the weights.
    x_rows: RawTensor,
    w_ih: RawTensor,
    w_hh: RawTensor,
    units: usize,
}

impl Tape {
    /// Back-propagation through time from `d_all`, the gradient of every step's new state
    /// (`[T, N, S]`): one cell kernel and one GEMM per step, then the weight and input gradients as
    /// one GEMM each over all steps. Returns `(d x_rows, d w_ih, d w_hh, d input bias rows,
    /// d hidden-gate rows)`: the last two are `[T·N, G·H]`, summed over rows by the caller as needed.
    fn backward(&self, d_all: &RawTensor) -> Result<[RawTensor; 5]> {
        let (steps, h) = (self.states.len(), self.units);
        let d_all = d_all.contiguous()?;
        let n = self.states[0].shape().dims()[0];
        let width = self.kind.state_width(h);
        let (mut carry, mut d_hidden): (Option<RawTensor>, Option<RawTensor>) = (None, None);
        let (mut d_x_gates, mut d_h_gates) = (Vec::with_capacity(steps), Vec::with_capacity(steps));
        for t in (0..steps).rev() {
            let d_state = d_all.narrow(0, t, 1)?.reshape([n, width])?;
            let (d_x, d_h, d_prev) = RawTensor::recurrent_cell_backward(
                self.kind,
                &d_state,
                &self.saved[t],
                &self.states[t],
                self.masks.get(t),
                carry.as_ref(),
                d_hidden.as_ref(),
            )?;
            if t > 0 {
                // through this step's hidden GEMM into the previous hidden state
                d_hidden = Some(d_h.matmul(&self.w_hh)?);
                carry = Some(d_prev);
            }
            d_x_gates.push(d_x);
            d_h_gates.push(d_h);
        }
        d_x_gates.reverse();
        d_h_gates.reverse();
        let rows = |parts: &[RawTensor]| RawTensor::concat(&parts.iter().collect::<Vec<_>>(), 0);
        let d_x_gates = rows(&d_x_gates)?;
        let d_h_gates = if self.kind == CellKind::Lstm {
            d_x_gates.clone()
        } else {
            rows(&d_h_gates)?
        };
        // the hidden state entering each step, as rows [T·N, H]
        let hidden_before = RawTensor::stack(&self.states.iter().collect::<Vec<_>>(), 0)?
            .narrow(2, 0, h)?
            .reshape([steps * n, h])?;
        let t = |m: &RawTensor| m.transpose(0, 1);
        Ok([
            d_x_gates.matmul(&self.w_ih)?,
            t(&d_x_gates)?.matmul(&self.x_rows)?,
            t(&d_h_gates)?.matmul(&hidden_before)?,
            d_x_gates,
            d_h_gates,
        ])
    }
}

impl Tensor {
    /// Runs `kind` over every step of `self` (`[N, T, F]`) from a zero state, recorded as one op:
    /// the input projection of all steps is one GEMM, each step one hidden GEMM and one fused cell
    /// kernel (`RawTensor::recurrent_cell`); the backward runs through time in one pass.
    fn recurrence(
        &self,
        kind: CellKind,
        weights: &RecurrentWeights<'_>,
        mask: Option<&Tensor>,
    ) -> Result<RecurrentOutput> {
        let op = kind.name();
        let (steps, n, h) = weights.check(op, self, kind.gates(), mask)?;
        if steps == 0 {
            return Err(Error::invalid(
                op,
                format!("needs at least one step, got {}", self.shape()),
            ));
        }
        // An LSTM's two biases add up; a GRU keeps b_hh inside its reset gate.
        let input_bias = match (kind, weights.b_ih, weights.b_hh) {
            (CellKind::Lstm, Some(a), Some(b)) => Some(a.add(b)?),
            (CellKind::Lstm, a, b) => a.or(b).cloned(),
            (CellKind::Gru, a, _) => a.cloned(),
        };
        let hidden_bias = if kind == CellKind::Gru {
            weights.b_hh
        } else {
            None
        };
        let x_rows = self
            .permute(&[1, 0, 2])?
            .reshape([steps * n, self.dims()[2]])?;
        let projected = x_rows.raw().linear(
            weights.w_ih.raw(),
            input_bias.as_ref().map(Tensor::raw),
            false,
        )?;
        let masks: Vec<RawTensor> = match mask {
            None => Vec::new(),
            Some(m) => {
                let by_step = m.raw().transpose(0, 1)?.contiguous()?;
                (0..steps)
                    .map(|t| by_step.narrow(0, t, 1)?.reshape([n]))
                    .collect::<Result<_>>()?
            }
        };
        let mut states = vec![RawTensor::zeros(
            [n, kind.state_width(h)],
            DType::F32,
            self.device(),
        )?];
        let mut saved = Vec::with_capacity(steps);
        for t in 0..steps {
            let hidden = states[t].narrow(1, 0, h)?;
            let h_gates = hidden.linear(weights.w_hh.raw(), hidden_bias.map(Tensor::raw), false)?;
            let (state, kept) = RawTensor::recurrent_cell(
                kind,
                &projected.narrow(0, t * n, n)?,
                &h_gates,
                &states[t],
                masks.get(t),
            )?;
            states.push(state);
            saved.push(kept);
        }
        let all = RawTensor::stack(&states[1..].iter().collect::<Vec<_>>(), 0)?;
        states.pop();
        let tape = Tape {
            kind,
            states,
            saved,
            masks,
            x_rows: x_rows.raw().clone(),
            w_ih: weights.w_ih.raw().clone(),
            w_hh: weights.w_hh.raw().clone(),
            units: h,
        };
        let mut inputs = vec![&x_rows, weights.w_ih, weights.w_hh];
        inputs.extend(input_bias.as_ref());
        inputs.extend(hidden_bias);
        let (has_input_bias, has_hidden_bias) = (input_bias.is_some(), hidden_bias.is_some());
        let all = Tensor::from_op(op, all, &inputs, move |g| {
            let [d_x, d_w_ih, d_w_hh, d_x_gates, d_h_gates] = tape.backward(g)?;
            let mut grads = vec![Some(d_x), Some(d_w_ih), Some(d_w_hh)];
            if has_input_bias {
                grads.push(Some(d_x_gates.sum(Some(0), false)?));
            }
            if has_hidden_bias {
                grads.push(Some(d_h_gates.sum(Some(0), false)?));
            }
            Ok(grads)
        });
        let last = all
            .narrow(0, steps - 1, 1)?
            .reshape([n, kind.state_width(h)])?;
        Ok(RecurrentOutput {
            sequence: all.narrow(2, 0, h)?.permute(&[1, 0, 2])?,
            last_h: last.narrow(1, 0, h)?,
            last_c: (kind == CellKind::Lstm)
                .then(|| last.narrow(1, h, h))
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
