//! Elementwise ops on the host. Each op is dispatched once per call to a loop specialised for it
//! (so the compiler vectorises it); contiguous inputs run as slices, multi-threaded when large;
//! strided or broadcast inputs walk rows of their merged dimensions.

use rayon::prelude::*;

use super::host_pool;
use crate::layout::coalesce_dims;
use crate::ops::{BinaryOp, UnaryOp};
use crate::{Layout, Shape};

/// Below this many elements one thread is faster than rayon's fork/join.
const PARALLEL_THRESHOLD: usize = 1 << 15;

/// Runs `$body` with `$k` bound to `$op` as a constant of each variant, so `k.apply` inlines to that
/// variant's code alone.
macro_rules! specialise {
    ($op:expr, $enum:ident [$($variant:ident),*], |$k:ident| $body:expr) => {
        match $op {
            $($enum::$variant => {
                let $k = $enum::$variant;
                $body
            })*
        }
    };
}

macro_rules! each_unary {
    ($op:expr, |$k:ident| $body:expr) => {
        specialise!($op, UnaryOp [Relu, Sigmoid, Tanh, Exp, Log, Sqrt, Neg, Abs, Sign, Gelu, GeluTanh, Softplus, Silu, GeluGrad, GeluTanhGrad, SiluGrad], |$k| $body)
    };
}

macro_rules! each_binary {
    ($op:expr, |$k:ident| $body:expr) => {
        specialise!($op, BinaryOp [Add, Sub, Mul, Div, Maximum, Greater, Equal, ReluBackward, LeakyRelu, LeakyReluGrad, Elu, EluGrad], |$k| $body)
    };
}

fn map_slice(input: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    if input.len() >= PARALLEL_THRESHOLD {
        host_pool::par_collect(input.par_iter().map(|&x| f(x)))
    } else {
        host_pool::collect(input.len(), input.iter().map(|&x| f(x)))
    }
}

/// `f` of every element of the view `layout` over `data`.
fn map_view(data: &[f32], layout: &Layout, f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    if layout.is_contiguous() {
        let start = layout.offset();
        map_slice(&data[start..start + layout.shape().numel()], f)
    } else {
        host_pool::collect(layout.shape().numel(), layout.indices().map(|i| f(data[i])))
    }
}

/// `op` of every element of the view `layout` over `data`.
pub(crate) fn unary(op: UnaryOp, data: &[f32], layout: &Layout) -> Vec<f32> {
    each_unary!(op, |k| map_view(data, layout, move |x| k.apply(x)))
}

/// `op(x, scalar)` of every element.
pub(crate) fn scalar(op: BinaryOp, data: &[f32], layout: &Layout, scalar: f32) -> Vec<f32> {
    each_binary!(op, |k| map_view(data, layout, move |x| k.apply(x, scalar)))
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
    each_binary!(op, |k| binary_with(a, la, b, lb, out, move |x, y| k
        .apply(x, y)))
}

fn binary_with(
    a: &[f32],
    la: &Layout,
    b: &[f32],
    lb: &Layout,
    out: &Shape,
    f: impl Fn(f32, f32) -> f32 + Sync,
) -> Vec<f32> {
    let n = out.numel();
    if la.is_contiguous() && lb.is_contiguous() {
        let a = &a[la.offset()..la.offset() + n];
        let b = &b[lb.offset()..lb.offset() + n];
        if n >= PARALLEL_THRESHOLD {
            return host_pool::par_collect(a.par_iter().zip(b).map(|(&x, &y)| f(x, y)));
        }
        return host_pool::collect(n, a.iter().zip(b).map(|(&x, &y)| f(x, y)));
    }
    // Broadcast or strided: walk the merged dimensions, the innermost one as a tight loop.
    let (dims, strides) = coalesce_dims(out.dims(), &[la.strides(), lb.strides()]);
    let Some((&inner, outer_dims)) = dims.split_last() else {
        return vec![f(a[la.offset()], b[lb.offset()])];
    };
    let (sa, sb) = (strides[0][dims.len() - 1], strides[1][dims.len() - 1]);
    let mut result = host_pool::zeros(n);
    let row = |(r, dst): (usize, &mut [f32])| {
        let (mut ia, mut ib, mut rest) = (la.offset(), lb.offset(), r);
        for (d, &size) in outer_dims.iter().enumerate().rev() {
            ia += (rest % size) * strides[0][d];
            ib += (rest % size) * strides[1][d];
            rest /= size;
        }
        for (j, o) in dst.iter_mut().enumerate() {
            *o = f(a[ia + j * sa], b[ib + j * sb]);
        }
    };
    if n >= PARALLEL_THRESHOLD {
        result.par_chunks_mut(inner).enumerate().for_each(row);
    } else {
        result.chunks_mut(inner).enumerate().for_each(row);
    }
    result
}
