//! CPU reductions over `[outer, axis, inner]` views of contiguous data; rows in parallel.

use rayon::prelude::*;

use crate::ReduceOp;

/// Lanes the contiguous sum keeps apart so the compiler can vectorise it.
const LANES: usize = 16;
/// Below this many elements per task, rayon's overhead outweighs the work.
const PARALLEL_GRAIN: usize = 1 << 14;

fn combine(op: ReduceOp, a: f32, b: f32) -> f32 {
    match op {
        ReduceOp::Sum | ReduceOp::Mean => a + b,
        ReduceOp::Max if a.is_nan() || b.is_nan() => f32::NAN,
        ReduceOp::Min if a.is_nan() || b.is_nan() => f32::NAN,
        ReduceOp::Max => a.max(b),
        ReduceOp::Min => a.min(b),
    }
}

fn identity(op: ReduceOp) -> f32 {
    match op {
        ReduceOp::Sum | ReduceOp::Mean => 0.0,
        ReduceOp::Max => f32::NEG_INFINITY,
        ReduceOp::Min => f32::INFINITY,
    }
}

/// Reduces a contiguous run with `LANES` independent accumulators.
pub(crate) fn reduce_run(op: ReduceOp, run: &[f32]) -> f32 {
    let mut acc = [identity(op); LANES];
    let chunks = run.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a = combine(op, *a, x);
        }
    }
    let mut total = acc.into_iter().fold(identity(op), |a, b| combine(op, a, b));
    for &x in tail {
        total = combine(op, total, x);
    }
    total
}

/// The reduction of `x` viewed as `[outer, axis, inner]`, shaped `[outer, inner]`.
pub(crate) fn reduce(op: ReduceOp, x: &[f32], [outer, axis, inner]: [usize; 3]) -> Vec<f32> {
    let scale = if op == ReduceOp::Mean {
        1.0 / axis as f32
    } else {
        1.0
    };
    let finish = |v: f32| if op == ReduceOp::Mean { v * scale } else { v };
    if axis == 0 {
        return vec![finish(identity(op)); outer * inner];
    }
    if inner == 1 {
        if outer == 1 {
            let total = x
                .par_chunks(PARALLEL_GRAIN)
                .map(|run| reduce_run(op, run))
                .reduce(|| identity(op), |a, b| combine(op, a, b));
            return vec![finish(total)];
        }
        return x
            .par_chunks(axis)
            .with_min_len(PARALLEL_GRAIN / axis + 1)
            .map(|row| finish(reduce_run(op, row)))
            .collect();
    }
    let mut out = vec![identity(op); outer * inner];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(inner).enumerate().for_each(|(o, row)| {
        for j in 0..axis {
            let src = &x[(o * axis + j) * inner..][..inner];
            for (acc, &v) in row.iter_mut().zip(src) {
                *acc = combine(op, *acc, v);
            }
        }
        row.iter_mut().for_each(|v| *v = finish(*v));
    });
    out
}

/// Index of the largest element along the axis (first on ties, NaN counts as largest).
pub(crate) fn argmax(x: &[f32], [outer, axis, inner]: [usize; 3]) -> Vec<u32> {
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
        })
        .collect()
}
