//! CPU reductions over `[outer, axis, inner]` views of contiguous data; rows in parallel.

use rayon::prelude::*;

use super::host_pool;
use crate::ReduceOp;

/// Lanes the contiguous sum keeps apart so the compiler can vectorise it.
const LANES: usize = 16;
/// Below this many elements per task, rayon's overhead outweighs the work.
const PARALLEL_GRAIN: usize = 1 << 14;

/// NaN-propagating max (as PyTorch's): a NaN on either side wins. Written as selects, so loops
/// of it vectorise.
#[inline(always)]
fn max_nan(a: f32, b: f32) -> f32 {
    if (b > a || b.is_nan()) && !a.is_nan() {
        b
    } else {
        a
    }
}

/// NaN-propagating min (see [`max_nan`]).
#[inline(always)]
fn min_nan(a: f32, b: f32) -> f32 {
    if (b < a || b.is_nan()) && !a.is_nan() {
        b
    } else {
        a
    }
}

/// Reduces a contiguous run with `LANES` independent accumulators.
pub(crate) fn reduce_run(op: ReduceOp, run: &[f32]) -> f32 {
    match op {
        ReduceOp::Sum | ReduceOp::Mean => run_with(run, 0.0, |a, b| a + b),
        ReduceOp::Max => run_with(run, f32::NEG_INFINITY, max_nan),
        ReduceOp::Min => run_with(run, f32::INFINITY, min_nan),
    }
}

#[inline(always)]
fn run_with(run: &[f32], identity: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [identity; LANES];
    let chunks = run.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a = f(*a, x);
        }
    }
    let mut total = acc.into_iter().fold(identity, &f);
    for &x in tail {
        total = f(total, x);
    }
    total
}

/// `acc[i] = f(acc[i], row[i])` over equal-length rows.
#[inline(always)]
fn combine_rows(acc: &mut [f32], row: &[f32], f: impl Fn(f32, f32) -> f32) {
    for (a, &v) in acc.iter_mut().zip(row) {
        *a = f(*a, v);
    }
}

/// The reduction of `x` viewed as `[outer, axis, inner]`, shaped `[outer, inner]`.
pub(crate) fn reduce(op: ReduceOp, x: &[f32], dims: [usize; 3]) -> Vec<f32> {
    let mut out = match op {
        ReduceOp::Sum | ReduceOp::Mean => reduce_with(x, dims, 0.0, |a, b| a + b),
        ReduceOp::Max => reduce_with(x, dims, f32::NEG_INFINITY, max_nan),
        ReduceOp::Min => reduce_with(x, dims, f32::INFINITY, min_nan),
    };
    if op == ReduceOp::Mean {
        let scale = 1.0 / dims[1] as f32;
        out.iter_mut().for_each(|v| *v *= scale);
    }
    out
}

/// [`reduce`] with the op as its identity and combining step (monomorphised, so the loops
/// vectorise).
fn reduce_with<F>(x: &[f32], [outer, axis, inner]: [usize; 3], identity: f32, f: F) -> Vec<f32>
where
    F: Fn(f32, f32) -> f32 + Copy + Send + Sync,
{
    if axis == 0 {
        return host_pool::filled(outer * inner, identity);
    }
    if inner > 1 {
        return strided(x, [outer, axis, inner], identity, f);
    }
    if outer == 1 {
        let total = x
            .par_chunks(PARALLEL_GRAIN)
            .map(|run| run_with(run, identity, f))
            .reduce(|| identity, f);
        return host_pool::filled(1, total);
    }
    host_pool::par_collect(
        x.par_chunks(axis)
            .with_min_len(PARALLEL_GRAIN / axis + 1)
            .map(|row| run_with(row, identity, f)),
    )
}

/// [`reduce_with`] with `inner > 1`: whole rows of `inner` values are combined at a time. With several
/// outputs rows per thread, each thread takes whole output rows; with few (a bias gradient summed
/// over `[N·L, C]` has one), the axis is cut into fixed chunks reduced in parallel, then combined
/// in order (the same sums on every run).
fn strided<F>(x: &[f32], [outer, axis, inner]: [usize; 3], identity: f32, f: F) -> Vec<f32>
where
    F: Fn(f32, f32) -> f32 + Copy + Send + Sync,
{
    let mut out = host_pool::filled(outer * inner, identity);
    if out.is_empty() {
        return out;
    }
    let per_output = axis * inner;
    if outer >= 2 * rayon::current_num_threads() || outer * per_output < PARALLEL_GRAIN {
        out.par_chunks_mut(inner)
            .enumerate()
            .with_min_len(PARALLEL_GRAIN / per_output + 1)
            .for_each(|(o, acc)| {
                for row in x[o * per_output..(o + 1) * per_output].chunks_exact(inner) {
                    combine_rows(acc, row, f);
                }
            });
        return out;
    }
    // Fixed chunks combined in order, so that sums come out the same on every run.
    let rows_per_task = (PARALLEL_GRAIN / inner).max(1);
    for (o, acc) in out.chunks_mut(inner).enumerate() {
        let block = &x[o * per_output..(o + 1) * per_output];
        let partials: Vec<Vec<f32>> = block
            .par_chunks(rows_per_task * inner)
            .map(|rows| {
                let mut part = vec![identity; inner];
                for row in rows.chunks_exact(inner) {
                    combine_rows(&mut part, row, f);
                }
                part
            })
            .collect();
        for part in partials {
            combine_rows(acc, &part, f);
        }
    }
    out
}

/// The gradient of a max or min over `[outer, axis, inner]`: `g[o, i]` split evenly between the
/// elements equal to `extreme[o, i]`, computed as the composed `hits · (g / count)` is (so a NaN
/// extreme, or a non-finite `g`, spreads NaN as there).
pub(crate) fn extreme_backward(
    x: &[f32],
    extreme: &[f32],
    g: &[f32],
    [outer, axis, inner]: [usize; 3],
) -> Vec<f32> {
    let mut dx = host_pool::zeros(outer * axis * inner);
    if dx.is_empty() {
        return dx;
    }
    let per_output = axis * inner;
    dx.par_chunks_mut(per_output)
        .zip(x.par_chunks(per_output))
        .enumerate()
        .with_min_len(PARALLEL_GRAIN / per_output + 1)
        .for_each(|(o, (dx, x))| {
            let (e, g) = (&extreme[o * inner..][..inner], &g[o * inner..][..inner]);
            let mut count = vec![0u32; inner];
            for row in x.chunks_exact(inner) {
                for ((c, &v), &e) in count.iter_mut().zip(row).zip(e) {
                    *c += u32::from(v == e);
                }
            }
            let share: Vec<f32> = (g.iter().zip(&count))
                .map(|(&g, &c)| g / c as f32)
                .collect();
            for (dx_row, row) in dx.chunks_exact_mut(inner).zip(x.chunks_exact(inner)) {
                for (((d, &v), &e), &s) in dx_row.iter_mut().zip(row).zip(e).zip(&share) {
                    *d = f32::from(u8::from(v == e)) * s;
                }
            }
        });
    dx
}

/// Index of the largest element along the axis (first on ties, NaN counts as largest).
pub(crate) fn argmax(x: &[f32], [outer, axis, inner]: [usize; 3]) -> Vec<u32> {
    host_pool::par_collect(
        (0..outer * inner)
            .into_par_iter()
            .with_min_len(64)
            .map(|out| {
                let (o, i) = (out / inner, out % inner);
                let mut best = 0;
                let mut best_value = x[o * axis * inner + i];
                for j in 1..axis {
                    let v = x[(o * axis + j) * inner + i];
                    if !best_value.is_nan() && (v > best_value || v.is_nan()) {
                        best = j;
                        best_value = v;
                    }
                }
                best as u32
            }),
    )
}

#[cfg(test)]
mod tests {
    use super::{PARALLEL_GRAIN, extreme_backward, reduce};
    use crate::ReduceOp;

    /// The reduction of `[outer, axis, inner]` by a plain loop.
    fn plain(op: ReduceOp, x: &[f32], [outer, axis, inner]: [usize; 3]) -> Vec<f32> {
        let mut out = Vec::new();
        for o in 0..outer {
            for i in 0..inner {
                let values = (0..axis).map(|j| x[(o * axis + j) * inner + i]);
                out.push(match op {
                    ReduceOp::Sum => values.sum(),
                    ReduceOp::Mean => values.sum::<f32>() / axis as f32,
                    ReduceOp::Max => values.fold(f32::NEG_INFINITY, |a, b| {
                        if a.is_nan() || b.is_nan() {
                            f32::NAN
                        } else {
                            a.max(b)
                        }
                    }),
                    ReduceOp::Min => values.fold(f32::INFINITY, |a, b| {
                        if a.is_nan() || b.is_nan() {
                            f32::NAN
                        } else {
                            a.min(b)
                        }
                    }),
                });
            }
        }
        out
    }

    /// Every op over both strided paths (whole output rows per thread, and one output row whose
    /// long axis is cut between threads), with NaN in some columns, against a plain loop.
    #[test]
    fn strided_reductions_match_a_plain_loop_and_propagate_nan() {
        let long_axis = 2 * PARALLEL_GRAIN / 8 + 3;
        for dims in [[6, 7, 5], [1, long_axis, 8], [3, long_axis, 8]] {
            let n: usize = dims.iter().product();
            let mut x: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32) - 50.0).collect();
            // Column 1 of the first output row holds a NaN, late in the axis.
            x[(dims[1] - 2) * dims[2] + 1] = f32::NAN;
            for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min] {
                let (got, want) = (reduce(op, &x, dims), plain(op, &x, dims));
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-3 * (1.0 + w.abs()),
                        "{op:?} {dims:?} output {i}: {g} vs {w}"
                    );
                }
                assert!(got[1].is_nan(), "{op:?} {dims:?} lost the NaN");
            }
        }
    }

    /// Ties share the gradient evenly; a column whose extreme is NaN gets NaN (as the composed
    /// `hits · g / count` and PyTorch's amax give); other elements get 0.
    #[test]
    fn extreme_backward_splits_ties_and_keeps_nan() {
        // [outer 1, axis 3, inner 3]: column 0 has a tie at 2.0, column 1 a NaN, column 2 one max.
        let x = [2.0, f32::NAN, 1.0, 0.5, 3.0, 4.0, 2.0, 1.0, -1.0];
        let extreme = reduce(crate::ReduceOp::Max, &x, [1, 3, 3]);
        assert!(extreme[1].is_nan());
        let dx = extreme_backward(&x, &extreme, &[1.0, 1.0, 6.0], [1, 3, 3]);
        assert_eq!([dx[0], dx[3], dx[6]], [0.5, 0.0, 0.5]);
        assert!(dx[1].is_nan() && dx[4].is_nan() && dx[7].is_nan());
        assert_eq!([dx[2], dx[5], dx[8]], [0.0, 6.0, 0.0]);
    }
}
