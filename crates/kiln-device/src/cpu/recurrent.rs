//! One step of an LSTM or GRU cell on the host: the twin of `shaders/recurrent.wgsl` (read it for the
//! layouts), forward and backward.

use crate::ops::CellKind;

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The inputs of one step, contiguous: gate pre-activations `[N, G·H]` from the input and from the
/// hidden state, the previous state, and a keep-mask per sample.
pub(crate) struct Step<'a> {
    pub(crate) units: usize,
    pub(crate) x_gates: &'a [f32],
    pub(crate) h_gates: &'a [f32],
    pub(crate) state: &'a [f32],
    pub(crate) mask: Option<&'a [f32]>,
}

impl Step<'_> {
    fn keep(&self, n: usize) -> f32 {
        self.mask.map_or(1.0, |m| m[n])
    }

    fn rows(&self, kind: CellKind) -> usize {
        self.state.len() / kind.state_width(self.units).max(1)
    }
}

/// The new state `[N, S]` and the values saved for the backward `[N, 4H]`.
pub(crate) fn forward(kind: CellKind, step: &Step<'_>) -> (Vec<f32>, Vec<f32>) {
    let h = step.units;
    let rows = step.rows(kind);
    let g = kind.gates() * h;
    let width = kind.state_width(h);
    let (mut state, mut saved) = (vec![0.0; rows * width], vec![0.0; rows * 4 * h]);
    for n in 0..rows {
        let (xg, hg) = (&step.x_gates[n * g..][..g], &step.h_gates[n * g..][..g]);
        let prev = &step.state[n * width..][..width];
        let m = step.keep(n);
        for j in 0..h {
            let s = n * 4 * h + j;
            match kind {
                CellKind::Lstm => {
                    let i = sigmoid(xg[j] + hg[j]);
                    let f = sigmoid(xg[h + j] + hg[h + j]);
                    let gg = (xg[2 * h + j] + hg[2 * h + j]).tanh();
                    let o = sigmoid(xg[3 * h + j] + hg[3 * h + j]);
                    let c = f * prev[h + j] + i * gg;
                    let new_h = o * c.tanh();
                    state[n * width + j] = prev[j] + m * (new_h - prev[j]);
                    state[n * width + h + j] = prev[h + j] + m * (c - prev[h + j]);
                    [saved[s], saved[s + h], saved[s + 2 * h], saved[s + 3 * h]] = [i, f, gg, o];
                }
                CellKind::Gru => {
                    let r = sigmoid(xg[j] + hg[j]);
                    let z = sigmoid(xg[h + j] + hg[h + j]);
                    let hn = hg[2 * h + j];
                    let candidate = (xg[2 * h + j] + r * hn).tanh();
                    let new_h = candidate + z * (prev[j] - candidate);
                    state[n * width + j] = prev[j] + m * (new_h - prev[j]);
                    [saved[s], saved[s + h], saved[s + 2 * h], saved[s + 3 * h]] =
                        [r, z, candidate, hn];
                }
            }
        }
    }
    (state, saved)
}

/// The gradients reaching a new state: from outside, carried from the step after, and through the
/// next step's hidden GEMM (`[N, H]`, hidden part only).
pub(crate) struct Incoming<'a> {
    pub(crate) d_state: &'a [f32],
    pub(crate) carry: Option<&'a [f32]>,
    pub(crate) hidden: Option<&'a [f32]>,
}

/// Gradients of one step: `(d x_gates, d h_gates, d state_prev)` from the gradients of the new
/// state. `step.x_gates` and `step.h_gates` are unused (the saved values replace them).
pub(crate) fn backward(
    kind: CellKind,
    step: &Step<'_>,
    incoming: &Incoming<'_>,
    saved: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let h = step.units;
    let rows = step.rows(kind);
    let g = kind.gates() * h;
    let width = kind.state_width(h);
    let mut d_state = incoming.d_state[..rows * width].to_vec();
    if let Some(carry) = incoming.carry {
        d_state.iter_mut().zip(carry).for_each(|(d, c)| *d += c);
    }
    if let Some(hidden) = incoming.hidden {
        for n in 0..rows {
            for j in 0..h {
                d_state[n * width + j] += hidden[n * h + j];
            }
        }
    }
    let mut d_x = vec![0.0; rows * g];
    let mut d_h = vec![0.0; rows * g];
    let mut d_prev = vec![0.0; rows * width];
    for n in 0..rows {
        let prev = &step.state[n * width..][..width];
        let m = step.keep(n);
        for j in 0..h {
            let s = n * 4 * h + j;
            let (a, b, c, d) = (saved[s], saved[s + h], saved[s + 2 * h], saved[s + 3 * h]);
            let dh = d_state[n * width + j];
            let dh_new = m * dh;
            match kind {
                CellKind::Lstm => {
                    let (i, f, gg, o) = (a, b, c, d);
                    let c_prev = prev[h + j];
                    let tanh_c = (f * c_prev + i * gg).tanh();
                    let dc_in = d_state[n * width + h + j];
                    let dc = m * dc_in + dh_new * o * (1.0 - tanh_c * tanh_c);
                    let gates = [
                        dc * gg * i * (1.0 - i),
                        dc * c_prev * f * (1.0 - f),
                        dc * i * (1.0 - gg * gg),
                        dh_new * tanh_c * o * (1.0 - o),
                    ];
                    for (k, v) in gates.into_iter().enumerate() {
                        d_x[n * g + k * h + j] = v;
                        d_h[n * g + k * h + j] = v;
                    }
                    d_prev[n * width + j] = (1.0 - m) * dh;
                    d_prev[n * width + h + j] = dc * f + (1.0 - m) * dc_in;
                }
                CellKind::Gru => {
                    let (r, z, candidate, hn) = (a, b, c, d);
                    let d_pre_n = dh_new * (1.0 - z) * (1.0 - candidate * candidate);
                    let d_pre_r = d_pre_n * hn * r * (1.0 - r);
                    let d_pre_z = dh_new * (prev[j] - candidate) * z * (1.0 - z);
                    let base = n * g + j;
                    [d_x[base], d_x[base + h], d_x[base + 2 * h]] = [d_pre_r, d_pre_z, d_pre_n];
                    [d_h[base], d_h[base + h], d_h[base + 2 * h]] = [d_pre_r, d_pre_z, d_pre_n * r];
                    d_prev[n * width + j] = dh_new * z + (1.0 - m) * dh;
                }
            }
        }
    }
    (d_x, d_h, d_prev)
}
