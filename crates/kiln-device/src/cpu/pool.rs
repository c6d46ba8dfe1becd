//! CPU pooling, planes in parallel (see `shaders/pool.wgsl` for the conventions).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::host_pool;
use crate::ops::pool::PoolGeometry;

/// Taps of output (oy, ox) inside the image: `(y range, x range)`.
fn window(
    g: &PoolGeometry,
    oy: usize,
    ox: usize,
) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
    let y0 = (oy * g.p.stride[0]) as isize - g.p.padding[0] as isize;
    let x0 = (ox * g.p.stride[1]) as isize - g.p.padding[1] as isize;
    let clamp = |v: isize, hi: usize| v.clamp(0, hi as isize) as usize;
    (
        clamp(y0, g.h)..clamp(y0 + g.p.kernel[0] as isize, g.h),
        clamp(x0, g.w)..clamp(x0 + g.p.kernel[1] as isize, g.w),
    )
}

/// Pooled values and their argmax indices (one plane's or one image's), not yet written.
pub(crate) type PlaneOut<'a> = (&'a mut [MaybeUninit<f32>], &'a mut [MaybeUninit<u32>]);

/// Inputs below this many elements are pooled on the calling thread: waking another costs more.
const SMALL: usize = 1 << 15;

/// Whether the pool is the common 2×2 window with stride 2 and no padding.
fn is_2x2(g: &PoolGeometry) -> bool {
    g.p.kernel == [2, 2] && g.p.stride == [2, 2] && g.p.padding == [0, 0]
}

pub(crate) fn max_forward(x: &[f32], g: &PoolGeometry) -> (Vec<f32>, Vec<u32>) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let len = g.planes * ohw;
    if ohw == 0 {
        return (host_pool::zeros(len), host_pool::zeros(len));
    }
    // Not zeroed first: every output and index is written below.
    let (mut values, mut indices) = (host_pool::take::<f32>(len), host_pool::take::<u32>(len));
    let plane = |(plane, (vals, idx)): (usize, PlaneOut<'_>)| {
        max_plane(&x[plane * hw..][..hw], g, vals, idx)
    };
    let (vals, idx) = (
        &mut values.spare_capacity_mut()[..len],
        &mut indices.spare_capacity_mut()[..len],
    );
    if g.planes * hw < SMALL {
        // Too little work to hand to other threads (batch-1 inference).
        vals.chunks_mut(ohw)
            .zip(idx.chunks_mut(ohw))
            .enumerate()
            .for_each(plane);
    } else {
        vals.par_chunks_mut(ohw)
            .zip(idx.par_chunks_mut(ohw))
            .enumerate()
            .for_each(plane);
    }
    // SAFETY: the planes cover the first `len` elements of both, and `max_plane` writes every
    // output position.
    unsafe {
        values.set_len(len);
        indices.set_len(len);
    }
    (values, indices)
}

/// Max pooling of one `h×w` plane `src`: every pooled value and its argmax (`y·w + x`) written.
pub(crate) fn max_plane(
    src: &[f32],
    g: &PoolGeometry,
    vals: &mut [MaybeUninit<f32>],
    idx: &mut [MaybeUninit<u32>],
) {
    if is_2x2(g) {
        return max_2x2(src, g, vals, idx);
    }
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            let (ys, xs) = window(g, oy, ox);
            let mut best = f32::NEG_INFINITY;
            let mut best_index = ys.start * g.w + xs.start;
            for y in ys {
                let row = &src[y * g.w..][xs.clone()];
                for (offset, &v) in row.iter().enumerate() {
                    // Branch-free select (maxima fall anywhere); the first NaN wins and stays.
                    let better = v > best || (v.is_nan() && !best.is_nan());
                    best = if better { v } else { best };
                    best_index = if better {
                        y * g.w + xs.start + offset
                    } else {
                        best_index
                    };
                }
            }
            vals[oy * g.ow + ox].write(best);
            idx[oy * g.ow + ox].write(best_index as u32);
        }
    }
}

multiversion! {
    /// `max_forward` of one plane for the common 2×2 window with stride 2 and no padding (see
    /// [`max_2x2_generic`]).
    fn max_2x2(
        src: &[f32],
        g: &PoolGeometry,
        vals: &mut [MaybeUninit<f32>],
        idx: &mut [MaybeUninit<u32>]
    ) => max_2x2_generic
}

/// `max_forward` of one plane for the common 2×2 window with stride 2 and no padding: the four taps
/// read directly, with the same first-maximum and NaN rules as the general loop, branch-free (`|` and
/// `&` rather than `||` and `&&`) and in 32-bit index arithmetic, so that the row loop compiles to
/// vector blends (built for AVX-512 or AVX2 where the CPU has them).
#[inline(always)]
fn max_2x2_generic(
    src: &[f32],
    g: &PoolGeometry,
    vals: &mut [MaybeUninit<f32>],
    idx: &mut [MaybeUninit<u32>],
) {
    let w = g.w as u32;
    for oy in 0..g.oh {
        let top = 2 * oy * g.w;
        let (upper, lower) = (&src[top..top + g.w], &src[top + g.w..top + 2 * g.w]);
        let out = oy * g.ow..(oy + 1) * g.ow;
        let pairs = upper.chunks_exact(2).zip(lower.chunks_exact(2));
        let top = top as u32;
        for (ox, ((v, i), (u, l))) in vals[out.clone()]
            .iter_mut()
            .zip(&mut idx[out])
            .zip(pairs)
            .enumerate()
        {
            let mut best = u[0];
            let mut best_tap = 0u32;
            for (tap, value) in [(1u32, u[1]), (2, l[0]), (3, l[1])] {
                let better = (value > best) | (value.is_nan() & !best.is_nan());
                best = if better { value } else { best };
                best_tap = if better { tap } else { best_tap };
            }
            v.write(best);
            // Tap t of the window sits at row t / 2, column t % 2.
            i.write(top + (best_tap >> 1) * w + 2 * ox as u32 + (best_tap & 1));
        }
    }
}

pub(crate) fn max_backward(dy: &[f32], indices: &[u32], g: &PoolGeometry) -> Vec<f32> {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let mut dx = host_pool::zeros(g.planes * hw);
    dx.par_chunks_mut(hw).enumerate().for_each(|(plane, d)| {
        for o in 0..ohw {
            d[indices[plane * ohw + o] as usize] += dy[plane * ohw + o];
        }
    });
    dx
}

pub(crate) fn avg_forward(x: &[f32], g: &PoolGeometry) -> Vec<f32> {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let mut out = host_pool::zeros(g.planes * ohw);
    out.par_chunks_mut(ohw).enumerate().for_each(|(plane, o)| {
        let src = &x[plane * hw..][..hw];
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let (ys, xs) = window(g, oy, ox);
                let taps = (ys.len() * xs.len()).max(1) as f32;
                let total: f32 = ys
                    .flat_map(|y| xs.clone().map(move |xx| src[y * g.w + xx]))
                    .sum();
                o[oy * g.ow + ox] = total / taps;
            }
        }
    });
    out
}

pub(crate) fn avg_backward(dy: &[f32], g: &PoolGeometry) -> Vec<f32> {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let mut dx = host_pool::zeros(g.planes * hw);
    dx.par_chunks_mut(hw).enumerate().for_each(|(plane, d)| {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let (ys, xs) = window(g, oy, ox);
                let share = dy[plane * ohw + oy * g.ow + ox] / (ys.len() * xs.len()).max(1) as f32;
                for y in ys {
                    for xx in xs.clone() {
                        d[y * g.w + xx] += share;
                    }
                }
            }
        }
    });
    dx
}
