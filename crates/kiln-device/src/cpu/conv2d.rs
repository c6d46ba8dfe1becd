//! CPU convolution: im2col per image, then a GEMM (`cpu/gemm.rs`); images run in parallel on rayon.

use rayon::prelude::*;

use std::mem::MaybeUninit;

use super::CpuDevice;
use super::gemm::{Matrix, sgemm, sgemm_uninit};
use super::host_pool;
use super::pool::{PlaneOut, max_plane};
use super::reduce::reduce_run;
use crate::RawTensor;
use crate::ReduceOp;
use crate::ops::conv2d::ConvGeometry;
use crate::ops::pool::PoolGeometry;

/// The output columns `ox` whose input column `ox·stride + kx - padding` lies inside `[0, w)`.
fn valid_columns(g: &ConvGeometry, kx: usize) -> std::ops::Range<usize> {
    let (stride, pad) = (g.stride[1], g.padding[1]);
    // first ox with ox·stride + kx >= pad, and one past the last with ox·stride + kx < w + pad
    let lo = pad.saturating_sub(kx).div_ceil(stride);
    let hi = (g.w + pad).saturating_sub(kx).div_ceil(stride).min(g.ow);
    lo.min(hi)..hi
}

/// Unrolls image `x` (`[Cin, H, W]`) into `col` (`[Cin·KH·KW, OH·OW]`), zeros for padding. Each
/// output row is a zero border around a run of the input row (a slice copy at stride 1).
fn im2col(x: &[f32], g: &ConvGeometry, col: &mut [f32]) {
    let ohw = g.oh * g.ow;
    for ci in 0..g.c_in {
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = &mut col[((ci * g.kh + ky) * g.kw + kx) * ohw..][..ohw];
                for oy in 0..g.oh {
                    let y = (oy * g.stride[0] + ky) as isize - g.padding[0] as isize;
                    let dst = &mut row[oy * g.ow..][..g.ow];
                    if y < 0 || y >= g.h as isize {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &x[(ci * g.h + y as usize) * g.w..][..g.w];
                    let valid = valid_columns(g, kx);
                    dst[..valid.start].fill(0.0);
                    dst[valid.end..].fill(0.0);
                    if valid.is_empty() {
                        continue;
                    }
                    let first = valid.start * g.stride[1] + kx - g.padding[1];
                    if g.stride[1] == 1 {
                        dst[valid.clone()].copy_from_slice(&src[first..first + valid.len()]);
                    } else {
                        for (d, s) in dst[valid]
                            .iter_mut()
                            .zip(src[first..].iter().step_by(g.stride[1]))
                        {
                            *d = *s;
                        }
                    }
                }
            }
        }
    }
}

/// Adds `col` (`[Cin·KH·KW, OH·OW]`) back into image `dx` (`[Cin, H, W]`): the transpose of im2col.
fn col2im(col: &[f32], g: &ConvGeometry, dx: &mut [f32]) {
    let ohw = g.oh * g.ow;
    for ci in 0..g.c_in {
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = &col[((ci * g.kh + ky) * g.kw + kx) * ohw..][..ohw];
                for oy in 0..g.oh {
                    let y = (oy * g.stride[0] + ky) as isize - g.padding[0] as isize;
                    if y < 0 || y >= g.h as isize {
                        continue;
                    }
                    let dst = &mut dx[(ci * g.h + y as usize) * g.w..][..g.w];
                    let valid = valid_columns(g, kx);
                    if valid.is_empty() {
                        continue;
                    }
                    let first = valid.start * g.stride[1] + kx - g.padding[1];
                    let src = &row[oy * g.ow..][valid];
                    for (d, s) in dst[first..].iter_mut().step_by(g.stride[1]).zip(src) {
                        *d += s;
                    }
                }
            }
        }
    }
}

/// `dst (m×n, row-major) = [dst +] lhs · rhs` with explicit (row, column) strides.
fn gemm_into(
    dst: &mut [f32],
    accumulate: bool,
    (m, n, k): (usize, usize, usize),
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    let a = Matrix {
        data: lhs,
        row_stride: lhs_rs,
        col_stride: lhs_cs,
    };
    let b = Matrix {
        data: rhs,
        row_stride: rhs_rs,
        col_stride: rhs_cs,
    };
    sgemm(m, n, k, a, b, dst, accumulate);
}

/// Whether to spread images over threads (else each product parallelises itself).
fn per_image_threads(g: &ConvGeometry) -> bool {
    g.n >= rayon::current_num_threads()
}

/// Image `n`'s `[Cout, OH, OW]` convolution into `y`, plus bias, then max(·, 0) with `relu`
/// (applied while the output is in cache, not as a pass of its own); `col` is scratch for its
/// patches.
#[allow(clippy::too_many_arguments)]
fn image_forward<'y>(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
    relu: bool,
    n: usize,
    col: &mut Vec<f32>,
    y: &'y mut [MaybeUninit<f32>],
) -> &'y mut [f32] {
    let (ohw, patch) = (g.oh * g.ow, g.patch());
    col.resize(patch * ohw, 0.0);
    let chw = g.c_in * g.h * g.w;
    im2col(&x[n * chw..][..chw], g, col);
    let weights = Matrix {
        data: w,
        row_stride: patch,
        col_stride: 1,
    };
    let patches = Matrix {
        data: col,
        row_stride: ohw,
        col_stride: 1,
    };
    let y = sgemm_uninit(g.c_out, ohw, patch, weights, patches, y);
    for (c, row) in y.chunks_mut(ohw).enumerate() {
        let b = bias.map_or(0.0, |b| b[c]);
        match (bias.is_some(), relu) {
            (true, true) => row.iter_mut().for_each(|v| *v = (*v + b).max(0.0)),
            (true, false) => row.iter_mut().for_each(|v| *v += b),
            (false, true) => row.iter_mut().for_each(|v| *v = v.max(0.0)),
            (false, false) => {}
        }
    }
    y
}

/// `[N, Cout, OH, OW]` output of input `x` and weights `w`, plus bias, then max(·, 0) with
/// `relu`.
pub(crate) fn forward(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
    relu: bool,
) -> Vec<f32> {
    let len = g.n * g.c_out * g.oh * g.ow;
    // Not zeroed first: the GEMM writes every output (one pass over memory less).
    let mut out: Vec<f32> = host_pool::take(len);
    let image = |col: &mut Vec<f32>, (n, y): (usize, &mut [MaybeUninit<f32>])| {
        image_forward(x, w, bias, g, relu, n, col, y);
    };
    let images = &mut out.spare_capacity_mut()[..len];
    let per_image = (g.c_out * g.oh * g.ow).max(1);
    if per_image_threads(g) {
        images
            .par_chunks_mut(per_image)
            .enumerate()
            .for_each_init(Vec::new, image);
    } else {
        let mut col = Vec::new();
        (images.chunks_mut(per_image).enumerate()).for_each(|item| image(&mut col, item));
    }
    // SAFETY: the chunks cover the first `len` elements and `sgemm_uninit` wrote every one.
    unsafe { out.set_len(len) };
    out
}

/// `max_pool(relu(conv2d(x) + bias))` per image while its convolution output is in cache: the
/// pooled `[N, Cout, PH, PW]` values and each window's argmax within its `OH×OW` plane (as
/// `cpu::pool::max_forward` returns them), without writing the whole convolution output.
pub(crate) fn forward_max_pool(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    g: &ConvGeometry,
    pool: &PoolGeometry,
) -> (Vec<f32>, Vec<u32>) {
    let (ohw, phw) = (g.oh * g.ow, pool.oh * pool.ow);
    let len = g.n * g.c_out * phw;
    // Not zeroed first: `max_plane` writes every pooled value and index.
    let (mut values, mut indices) = (host_pool::take::<f32>(len), host_pool::take::<u32>(len));
    let per_image = (g.c_out * phw).max(1);
    type Scratch = (Vec<f32>, Vec<MaybeUninit<f32>>);
    let image = |(col, conv): &mut Scratch, (n, (vals, idx)): (usize, PlaneOut<'_>)| {
        conv.resize(g.c_out * ohw, MaybeUninit::uninit());
        let conv = image_forward(x, w, bias, g, true, n, col, conv);
        for ((plane, vals), idx) in conv
            .chunks(ohw.max(1))
            .zip(vals.chunks_mut(phw.max(1)))
            .zip(idx.chunks_mut(phw.max(1)))
        {
            max_plane(plane, pool, vals, idx);
        }
    };
    let (vals, idx) = (
        &mut values.spare_capacity_mut()[..len],
        &mut indices.spare_capacity_mut()[..len],
    );
    if per_image_threads(g) {
        (vals
            .par_chunks_mut(per_image)
            .zip(idx.par_chunks_mut(per_image)))
        .enumerate()
        .for_each_init(|| (Vec::new(), Vec::new()), image);
    } else {
        let mut scratch = (Vec::new(), Vec::new());
        (vals.chunks_mut(per_image).zip(idx.chunks_mut(per_image)))
            .enumerate()
            .for_each(|item| image(&mut scratch, item));
    }
    // SAFETY: the images cover the first `len` elements of both, and `max_plane` wrote every one.
    unsafe {
        values.set_len(len);
        indices.set_len(len);
    }
    (values, indices)
}

/// `[N, Cin, H, W]` gradient of the input: per image `col = Wᵀ · dy`, then col2im.
pub(crate) fn input_grad(dy: &[f32], w: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let grads = backward(
        OutputGrad::Full { dy, relu_out: None },
        &[],
        w,
        g,
        (true, false, false),
    );
    grads.input.unwrap_or_default()
}

/// `[Cout, Cin, KH, KW]` gradient of the weights: the sum over images of `dy · colᵀ`.
pub(crate) fn weight_grad(dy: &[f32], x: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let grads = backward(
        OutputGrad::Full { dy, relu_out: None },
        x,
        &[],
        g,
        (false, true, false),
    );
    grads.weight.unwrap_or_default()
}

/// The gradients [`backward`] computes, each when wanted.
pub(crate) struct Grads {
    /// `[N, Cin, H, W]`
    pub input: Option<Vec<f32>>,
    /// `[Cout, Cin, KH, KW]`
    pub weight: Option<Vec<f32>>,
    /// `[Cout]`
    pub bias: Option<Vec<f32>>,
}

impl Grads {
    /// The input, weight and bias gradients as tensors of `cpu`, shaped by `g`.
    pub(crate) fn into_tensors(self, g: &ConvGeometry, cpu: &CpuDevice) -> [Option<RawTensor>; 3] {
        let tensor = |values, shape| RawTensor::from_host_f32(values, shape, cpu);
        [
            self.input.map(|v| tensor(v, g.input_shape())),
            self.weight.map(|v| tensor(v, g.weight_shape())),
            self.bias.map(|v| tensor(v, [g.c_out].into())),
        ]
    }
}

/// The gradient reaching a convolution's output, as [`backward`] takes it.
pub(crate) enum OutputGrad<'a> {
    /// `dy` of the whole `[N, Cout, OH, OW]` output, masked by the ReLU output `relu_out` when the
    /// forward had one.
    Full {
        dy: &'a [f32],
        relu_out: Option<&'a [f32]>,
    },
    /// The gradient of [`forward_max_pool`]'s pooled output: `dy`, the pooled values (their sign is
    /// the ReLU mask of each window's maximum) and the argmax `indices` of every window, `pooled`
    /// values per plane.
    MaxPooled {
        dy: &'a [f32],
        values: &'a [f32],
        indices: &'a [u32],
        pooled: usize,
    },
}

/// Every wanted gradient of [`forward`] or [`forward_max_pool`] in one pass over the images (`x`
/// is read only for the weight gradient, `w` only for the input gradient): each image's output
/// gradient is made once, while in cache — `dy` masked by the ReLU output, or the pooled gradient
/// scattered to its windows' maxima — then feeds the bias sums, the weight-gradient GEMM and the
/// input-gradient GEMM + col2im. (Apart, these were a masking or unpooling pass, a reduction and
/// two more passes over the whole output gradient.)
pub(crate) fn backward(
    grad: OutputGrad<'_>,
    x: &[f32],
    w: &[f32],
    g: &ConvGeometry,
    (want_input, want_weight, want_bias): (bool, bool, bool),
) -> Grads {
    let (ohw, patch, chw) = (g.oh * g.ow, g.patch(), g.c_in * g.h * g.w);
    let per_out = g.c_out * ohw;
    let (weight_len, bias_len) = (g.c_out * patch, g.c_out);
    let mut dx = want_input.then(|| host_pool::zeros(g.n * chw));
    if g.n == 0 || chw == 0 || per_out == 0 {
        // Nothing to sum: zero gradients of the right sizes.
        return Grads {
            input: dx,
            weight: want_weight.then(|| host_pool::zeros(weight_len)),
            bias: want_bias.then(|| host_pool::zeros(bias_len)),
        };
    }
    // Per worker: the weight and bias sums so far, and scratch for one image.
    struct Acc {
        weight: Vec<f32>,
        bias: Vec<f32>,
        masked: Vec<f32>,
        col: Vec<f32>,
    }
    let new_acc = || Acc {
        weight: host_pool::zeros(if want_weight { weight_len } else { 0 }),
        bias: host_pool::zeros(if want_bias { bias_len } else { 0 }),
        masked: host_pool::take(per_out),
        col: host_pool::zeros(if want_weight || want_input {
            patch * ohw
        } else {
            0
        }),
    };
    let image = |acc: &mut Acc, n: usize, dxn: Option<&mut [f32]>| {
        let dyn_: &[f32] = match grad {
            OutputGrad::Full { dy, relu_out: None } => &dy[n * per_out..][..per_out],
            OutputGrad::Full {
                dy,
                relu_out: Some(y),
            } => {
                let (dy, y) = (&dy[n * per_out..][..per_out], &y[n * per_out..][..per_out]);
                acc.masked.clear();
                acc.masked.extend(
                    dy.iter()
                        .zip(y)
                        .map(|(&d, &y)| d * f32::from(u8::from(y > 0.0))),
                );
                &acc.masked
            }
            OutputGrad::MaxPooled {
                dy,
                values,
                indices,
                pooled,
            } => {
                let image = n * g.c_out * pooled..(n + 1) * g.c_out * pooled;
                acc.masked.clear();
                acc.masked.resize(per_out, 0.0);
                let planes = acc.masked.chunks_mut(ohw);
                for (((plane, dy), values), indices) in planes
                    .zip(dy[image.clone()].chunks(pooled))
                    .zip(values[image.clone()].chunks(pooled))
                    .zip(indices[image].chunks(pooled))
                {
                    for ((&d, &v), &i) in dy.iter().zip(values).zip(indices) {
                        // The ReLU passed the window's maximum only where it was positive.
                        if v > 0.0 {
                            plane[i as usize] += d;
                        }
                    }
                }
                &acc.masked
            }
        };
        if want_bias {
            for (b, row) in acc.bias.iter_mut().zip(dyn_.chunks(ohw)) {
                // Lane-split sum: a plain one is a chain of dependent adds.
                *b += reduce_run(ReduceOp::Sum, row);
            }
        }
        if want_weight {
            im2col(&x[n * chw..][..chw], g, &mut acc.col);
            gemm_into(
                &mut acc.weight,
                true,
                (g.c_out, patch, ohw),
                dyn_,
                (ohw, 1),
                &acc.col,
                (1, ohw),
            );
        }
        if let Some(dxn) = dxn {
            gemm_into(
                &mut acc.col,
                false,
                (patch, ohw, g.c_out),
                w,
                (1, patch),
                dyn_,
                (ohw, 1),
            );
            col2im(&acc.col, g, dxn);
        }
    };
    // Images in fixed runs, one per worker, their sums added in order: the same result on every
    // run (rayon's adaptive fold would change the order of the float additions).
    let per_run = if per_image_threads(g) {
        g.n.div_ceil(rayon::current_num_threads()).max(1)
    } else {
        g.n.max(1)
    };
    let run = |first: usize, dx_run: Option<&mut [f32]>| {
        let mut acc = new_acc();
        let images = first..(first + per_run).min(g.n);
        match dx_run {
            Some(dx_run) => {
                for (n, dxn) in images.zip(dx_run.chunks_mut(chw)) {
                    image(&mut acc, n, Some(dxn));
                }
            }
            None => images.for_each(|n| image(&mut acc, n, None)),
        }
        acc
    };
    let runs: Vec<Acc> = match &mut dx {
        Some(dx) => dx
            .par_chunks_mut(per_run * chw)
            .enumerate()
            .map(|(r, dx_run)| run(r * per_run, Some(dx_run)))
            .collect(),
        None => (0..g.n.div_ceil(per_run))
            .into_par_iter()
            .map(|r| run(r * per_run, None))
            .collect(),
    };
    // The first run's sums become the totals; every other buffer goes back to the host pool.
    let mut runs = runs.into_iter();
    let mut total = runs.next().unwrap_or_else(new_acc);
    for acc in runs {
        for (sum, part) in [
            (&mut total.weight, &acc.weight),
            (&mut total.bias, &acc.bias),
        ] {
            sum.iter_mut().zip(part).for_each(|(x, y)| *x += y);
        }
        [acc.weight, acc.bias, acc.masked, acc.col]
            .into_iter()
            .for_each(host_pool::give_back);
    }
    host_pool::give_back(total.masked);
    host_pool::give_back(total.col);
    Grads {
        input: dx,
        weight: want_weight.then_some(total.weight),
        bias: want_bias.then_some(total.bias),
    }
}
