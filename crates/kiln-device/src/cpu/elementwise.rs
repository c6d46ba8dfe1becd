//! Elementwise ops on the host: contiguous inputs take a vectorisable, multi-threaded slice path;
//! strided or broadcast inputs walk their layouts.

use rayon::prelude::*;

use crate::ops::{BinaryOp, UnaryOp};
use crate::{Layout, Shape};

/// Below this many elements one thread is faster than rayon's fork/join.
const PARALLEL_THRESHOLD: usize = 1 << 15;

fn map_slice(input: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    if input.len() >= PARALLEL_THRESHOLD {
        input.par_iter().map(|&x| f(x)).collect()
    } else {
        input.iter().map(|&x| f(x)).collect()
    }
}

/// `op` of every element of the view `layout` over `data`.
pub(crate) fn unary(op: UnaryOp, data: &[f32], layout: &Layout) -> Vec<f32> {
    if layout.is_contiguous() {
        let start = layout.offset();
        map_slice(&data[start..start + layout.shape().numel()], |x| {
            op.apply(x)
        })
    } else {
        layout.indices().map(|i| op.apply(data[i])).collect()
    }
}

/// `op(x, scalar)` of every element.
pub(crate) fn scalar(op: BinaryOp, data: &[f32], layout: &Layout, scalar: f32) -> Vec<f32> {
    if layout.is_contiguous() {
        let start = layout.offset();
        map_slice(&data[start..start + layout.shape().numel()], |x| {
            op.apply(x, scalar)
        })
    } else {
        layout
            .indices()
            .map(|i| op.apply(data[i], scalar))
            .collect()
    }
}

/// `op(a, b)` over the broadcast shape `out`; both layouts are already broadcast to `out`.
pub(crate) fn binary(
    op: BinaryOp,
    a: &[f32],
    la: &Layout,
    b: &[f32],
    lb: &Layout,
    out: &Shape,
) -> Vec<f32> {
    let n = out.numel();
    if la.is_contiguous() && lb.is_contiguous() {
        let a = &a[la.offset()..la.offset() + n];
        let b = &b[lb.offset()..lb.offset() + n];
        if n >= PARALLEL_THRESHOLD {
            return a.par_iter().zip(b).map(|(&x, &y)| op.apply(x, y)).collect();
        }
        return a.iter().zip(b).map(|(&x, &y)| op.apply(x, y)).collect();
    }
    la.indices()
        .zip(lb.indices())
        .map(|(i, j)| op.apply(a[i], b[j]))
        .collect()
}
