//! CPU softmax / log-softmax over `[outer, axis, inner]` views, rows in parallel.

use rayon::prelude::*;

use super::host_pool;
use super::vecmath::softmax_row;

/// Runs `f(base)` for every row's first index; a row's element `j` is at `base + j·inner`.
fn rows(outer: usize, axis: usize, inner: usize) -> impl ParallelIterator<Item = usize> {
    (0..outer * inner)
        .into_par_iter()
        .with_min_len(16)
        .map(move |r| (r / inner) * axis * inner + r % inner)
}

/// A pointer that may be written from several threads because each writes disjoint indices.
#[derive(Clone, Copy)]
struct Disjoint(*mut f32);
// SAFETY: every row of the [outer, axis, inner] view owns disjoint indices.
unsafe impl Send for Disjoint {}
unsafe impl Sync for Disjoint {}

impl Disjoint {
    /// SAFETY: callers write each index from one thread only, within the buffer.
    unsafe fn write(self, i: usize, v: f32) {
        unsafe { *self.0.add(i) = v };
    }
}

/// Softmax of contiguous rows, vectorised (`vecmath::softmax_row`), into memory that is not zeroed
/// first.
fn forward_rows(x: &[f32], axis: usize, log: bool) -> Vec<f32> {
    let mut out: Vec<f32> = host_pool::take(x.len());
    let rows = &mut out.spare_capacity_mut()[..x.len()];
    if x.len() < 1 << 15 {
        // Too little work to hand to other threads (batch-1 inference).
        rows.chunks_mut(axis)
            .zip(x.chunks(axis))
            .for_each(|(y, x)| softmax_row(x, y, log));
    } else {
        rows.par_chunks_mut(axis)
            .zip(x.par_chunks(axis))
            .with_min_len(8)
            .for_each(|(y, x)| softmax_row(x, y, log));
    }
    // SAFETY: the rows cover the first x.len() elements (x.len() is a multiple of axis), and
    // softmax_row wrote every element of each.
    unsafe { out.set_len(x.len()) };
    out
}

pub(crate) fn forward(x: &[f32], [outer, axis, inner]: [usize; 3], log: bool) -> Vec<f32> {
    if inner == 1 && axis > 0 {
        return forward_rows(x, axis, log);
    }
    let mut out = host_pool::zeros(x.len());
    let dst = Disjoint(out.as_mut_ptr());
    rows(outer, axis, inner).for_each(|base| {
        let at = |j: usize| base + j * inner;
        let max = (0..axis).map(|j| x[at(j)]).fold(f32::NEG_INFINITY, |m, v| {
            if v > m || v.is_nan() { v } else { m }
        });
        let sum: f32 = (0..axis).map(|j| (x[at(j)] - max).exp()).sum();
        let log_sum = sum.ln();
        for j in 0..axis {
            let shifted = x[at(j)] - max;
            let v = if log {
                shifted - log_sum
            } else {
                (shifted - log_sum).exp()
            };
            // SAFETY: index at(j) belongs to this row only.
            unsafe { dst.write(at(j), v) };
        }
    });
    out
}

pub(crate) fn backward(
    y: &[f32],
    dy: &[f32],
    [outer, axis, inner]: [usize; 3],
    log: bool,
) -> Vec<f32> {
    let mut out = host_pool::zeros(y.len());
    let dst = Disjoint(out.as_mut_ptr());
    rows(outer, axis, inner).for_each(|base| {
        let at = |j: usize| base + j * inner;
        let total: f32 = (0..axis)
            .map(|j| if log { dy[at(j)] } else { dy[at(j)] * y[at(j)] })
            .sum();
        for j in 0..axis {
            let i = at(j);
            let v = if log {
                dy[i] - y[i].exp() * total
            } else {
                y[i] * (dy[i] - total)
            };
            // SAFETY: index i belongs to this row only.
            unsafe { dst.write(i, v) };
        }
    });
    out
}
