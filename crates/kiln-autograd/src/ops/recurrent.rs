//! LSTM and GRU over a whole sequence, composed from GEMMs and elementwise kernels: the input
//! projection of every step is one GEMM, then each step is one `[N, H] × [H, G·H]` GEMM plus the gate
//! arithmetic; autograd differentiates through time.

use kiln_device::{Error, Result};

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

    /// `x W_ihᵀ (+ b_ih) (+ extra)` for every step at once, as `[T, N, G·H]` (each step contiguous).
    fn project_inputs(&self, x: &Tensor, extra_bias: Option<&Tensor>) -> Result<Tensor> {
        let mut projected = x.permute(&[1, 0, 2])?.matmul(&self.w_ih.t()?)?;
        for b in [self.b_ih, extra_bias].into_iter().flatten() {
            projected = projected.add(b)?;
        }
        Ok(projected)
    }
}

/// Step `t` of a `[T, N, G]` projection as `[N, G]`.
fn step(projected: &Tensor, t: usize) -> Result<Tensor> {
    let dims = projected.dims();
    projected.narrow(0, t, 1)?.reshape([dims[1], dims[2]])
}

/// Gate `k` (`[N, H]`) of `[N, G·H]` pre-activations.
fn gate(all: &Tensor, k: usize, h: usize) -> Result<Tensor> {
    all.narrow(1, k * h, h)
}

/// `new` where the step is real, `old` where `mask` (`[N, 1]`) marks padding.
fn keep_masked(new: Tensor, old: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    match mask {
        None => Ok(new),
        Some(m) => old.add(&new.sub(old)?.mul(m)?),
    }
}

impl Tensor {
    /// An LSTM over `[N, T, F]` from a zero state: PyTorch's and Keras's equations
    /// (`c = f c + i g`, `h = o tanh c`). `mask` (`[N, T]`, 1 = real step) keeps the state through
    /// padded steps.
    pub fn lstm(
        &self,
        weights: &RecurrentWeights<'_>,
        mask: Option<&Tensor>,
    ) -> Result<RecurrentOutput> {
        let (steps, n, h) = weights.check("lstm", self, 4, mask)?;
        let projected = weights.project_inputs(self, weights.b_hh)?;
        let w_hh_t = weights.w_hh.t()?;
        let mut state_h = Tensor::zeros([n, h], self.device())?;
        let mut state_c = state_h.clone();
        let mut outputs = Vec::with_capacity(steps);
        for t in 0..steps {
            let pre = step(&projected, t)?.add(&state_h.matmul(&w_hh_t)?)?;
            let i = gate(&pre, 0, h)?.sigmoid()?;
            let f = gate(&pre, 1, h)?.sigmoid()?;
            let g = gate(&pre, 2, h)?.tanh()?;
            let o = gate(&pre, 3, h)?.sigmoid()?;
            let c = f.mul(&state_c)?.add(&i.mul(&g)?)?;
            let new_h = o.mul(&c.tanh()?)?;
            let m = mask.map(|m| m.narrow(1, t, 1)).transpose()?;
            state_c = keep_masked(c, &state_c, m.as_ref())?;
            state_h = keep_masked(new_h, &state_h, m.as_ref())?;
            outputs.push(state_h.clone());
        }
        Ok(RecurrentOutput {
            sequence: Tensor::stack(&outputs.iter().collect::<Vec<_>>(), 1)?,
            last_h: state_h,
            last_c: Some(state_c),
        })
    }

    /// A GRU over `[N, T, F]` from a zero state, PyTorch's equations (Keras's `reset_after=True`):
    /// `n = tanh(W_in x + b_in + r (W_hn h + b_hn))`, `h = (1 - z) n + z h`. `mask` as for
    /// [`Tensor::lstm`].
    pub fn gru(
        &self,
        weights: &RecurrentWeights<'_>,
        mask: Option<&Tensor>,
    ) -> Result<RecurrentOutput> {
        let (steps, n, h) = weights.check("gru", self, 3, mask)?;
        let projected = weights.project_inputs(self, None)?;
        let w_hh_t = weights.w_hh.t()?;
        let mut state_h = Tensor::zeros([n, h], self.device())?;
        let mut outputs = Vec::with_capacity(steps);
        for t in 0..steps {
            let x_part = step(&projected, t)?;
            let mut h_part = state_h.matmul(&w_hh_t)?;
            if let Some(b) = weights.b_hh {
                h_part = h_part.add(b)?;
            }
            let r = gate(&x_part, 0, h)?.add(&gate(&h_part, 0, h)?)?.sigmoid()?;
            let z = gate(&x_part, 1, h)?.add(&gate(&h_part, 1, h)?)?.sigmoid()?;
            let candidate = gate(&x_part, 2, h)?
                .add(&r.mul(&gate(&h_part, 2, h)?)?)?
                .tanh()?;
            // (1 - z) n + z h = n + z (h - n)
            let new_h = candidate.add(&z.mul(&state_h.sub(&candidate)?)?)?;
            let m = mask.map(|m| m.narrow(1, t, 1)).transpose()?;
            state_h = keep_masked(new_h, &state_h, m.as_ref())?;
            outputs.push(state_h.clone());
        }
        Ok(RecurrentOutput {
            sequence: Tensor::stack(&outputs.iter().collect::<Vec<_>>(), 1)?,
            last_h: state_h,
            last_c: None,
        })
    }
}
