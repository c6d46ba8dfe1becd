//! Channels-last 1-D convolution on the CPU (`[N, L, C]` sequences, `[O, C, K]` weights), the layout
//! Embedding → Conv1D models produce. In a row-major `[L, C]` sequence the K taps of output position
//! t are one contiguous block of K·C values, so the patches are a strided view of the (padded) input:
//! the forward and weight-gradient GEMMs read the input in place (no im2col, no transposes), and the
//! input gradient is K accumulating GEMMs into shifted views of it (no col2im).

use rayon::prelude::*;

use super::gemm::{Matrix, sgemm, sgemm_strided};
use super::matmul::bias_relu_rows;

/// Sizes of one channels-last convolution.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conv1dShape {
    pub n: usize,
    pub l: usize,
    pub c: usize,
    pub o: usize,
    pub k: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Conv1dShape {
    /// Length of a padded sequence.
    pub(crate) fn padded(&self) -> usize {
        self.l + 2 * self.padding
    }

    /// Output positions per sequence.
    pub(crate) fn out_len(&self) -> usize {
        (self.padded() - self.k) / self.stride + 1
    }
}

/// The input with `padding` zero rows before and after each sequence (the input itself without).
fn padded<'a>(x: &'a [f32], s: &Conv1dShape) -> std::borrow::Cow<'a, [f32]> {
    if s.padding == 0 {
        return std::borrow::Cow::Borrowed(x);
    }
    let (lp, c) = (s.padded(), s.c);
    let mut out = vec![0.0; s.n * lp * c];
    for (dst, src) in out.chunks_mut(lp * c).zip(x.chunks(s.l * c)) {
        dst[s.padding * c..(s.padding + s.l) * c].copy_from_slice(src);
    }
    std::borrow::Cow::Owned(out)
}

/// The weights `[O, C, K]` as the `[K·C, O]` matrix the patches multiply: row k·C + c, column o.
fn taps_by_out(w: &[f32], s: &Conv1dShape) -> Vec<f32> {
    let (c, k, o) = (s.c, s.k, s.o);
    let mut out = vec![0.0; k * c * o];
    for oo in 0..o {
        for ci in 0..c {
            for kk in 0..k {
                out[(kk * c + ci) * o + oo] = w[(oo * c + ci) * k + kk];
            }
        }
    }
    out
}

/// `y [N, Lout, O]` = conv(x) + bias, then max(·, 0) with `relu`.
pub(crate) fn forward(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    s: &Conv1dShape,
    relu: bool,
) -> Vec<f32> {
    let (lp, lout, o, kc) = (s.padded(), s.out_len(), s.o, s.k * s.c);
    let xp = padded(x, s);
    let wt = taps_by_out(w, s);
    let mut y = vec![0.0; s.n * lout * o];
    y.par_chunks_mut(lout * o)
        .zip(xp.par_chunks(lp * s.c))
        .for_each(|(y, x)| {
            let patches = Matrix {
                data: x,
                row_stride: s.stride * s.c,
                col_stride: 1,
            };
            let weights = Matrix {
                data: &wt,
                row_stride: o,
                col_stride: 1,
            };
            sgemm(lout, o, kc, patches, weights, y, false);
            bias_relu_rows(y, o, bias, relu);
        });
    y
}

/// The gradients [`backward`] computes, each when wanted.
pub(crate) struct Grads {
    /// `[N, L, C]`
    pub input: Option<Vec<f32>>,
    /// `[O, C, K]`
    pub weight: Option<Vec<f32>>,
    /// `[O]`
    pub bias: Option<Vec<f32>>,
}

/// Gradients of [`forward`] for the upstream gradient `g [N, Lout, O]` (already through ReLU's
/// mask), each when wanted.
pub(crate) fn backward(
    g: &[f32],
    x: &[f32],
    w: &[f32],
    s: &Conv1dShape,
    (want_input, want_weight, want_bias): (bool, bool, bool),
) -> Grads {
    let (lp, lout, o, c, k) = (s.padded(), s.out_len(), s.o, s.c, s.k);
    let kc = k * c;
    let bias = want_bias.then(|| {
        let mut sums = vec![0.0f32; o];
        for row in g.chunks(o) {
            sums.iter_mut().zip(row).for_each(|(s, v)| *s += v);
        }
        sums
    });
    let weight = want_weight.then(|| {
        let xp = padded(x, s);
        // Σ over sequences of patchesᵀ (K·C × Lout) · g (Lout × O), summed per thread, then added.
        let wt = xp
            .par_chunks(lp * c)
            .zip(g.par_chunks(lout * o))
            .fold(
                || vec![0.0f32; kc * o],
                |mut acc: Vec<f32>, (x, g): (&[f32], &[f32])| {
                    let patches_t = Matrix {
                        data: x,
                        row_stride: 1,
                        col_stride: s.stride * c,
                    };
                    let grad = Matrix {
                        data: g,
                        row_stride: o,
                        col_stride: 1,
                    };
                    sgemm(kc, o, lout, patches_t, grad, &mut acc, true);
                    acc
                },
            )
            .reduce(
                || vec![0.0f32; kc * o],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                    a
                },
            );
        let mut dw = vec![0.0; o * c * k];
        for oo in 0..o {
            for ci in 0..c {
                for kk in 0..k {
                    dw[(oo * c + ci) * k + kk] = wt[(kk * c + ci) * o + oo];
                }
            }
        }
        dw
    });
    let input = want_input.then(|| {
        let wt = taps_by_out(w, s);
        let mut dxp = vec![0.0f32; s.n * lp * c];
        // Tap kk of output t lands on padded row t·stride + kk: rows kk, kk + stride, ... of dxp.
        dxp.par_chunks_mut(lp * c)
            .zip(g.par_chunks(lout * o))
            .for_each(|(dx, g)| {
                for kk in 0..k {
                    let grad = Matrix {
                        data: g,
                        row_stride: o,
                        col_stride: 1,
                    };
                    // W_kkᵀ (O × C): element (o, c) = wt[(kk·C + c)·O + o].
                    let tap = Matrix {
                        data: &wt[kk * c * o..],
                        row_stride: 1,
                        col_stride: o,
                    };
                    sgemm_strided(lout, c, o, grad, tap, &mut dx[kk * c..], s.stride * c, true);
                }
            });
        if s.padding == 0 {
            dxp
        } else {
            dxp.chunks(lp * c)
                .flat_map(|seq| &seq[s.padding * c..(s.padding + s.l) * c])
                .copied()
                .collect()
        }
    });
    Grads {
        input,
        weight,
        bias,
    }
}
