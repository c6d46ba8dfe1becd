//! Launchers for `shaders/copy.wgsl`: contiguous copies of strided views, dtype casts and fills.

use std::sync::Arc;

use super::params::Params;
use super::pipelines::Kernel;
use super::{GpuBuffer, GpuContext, groups_for};
use crate::layout::coalesce_dims;
use crate::shaders::Shader;
use crate::{DType, Layout, Result};

/// A contiguous copy of the view `layout` over `src` (elements of `from`), converted to `to`.
pub(crate) fn gather(
    ctx: &Arc<GpuContext>,
    op: &'static str,
    src: &GpuBuffer,
    layout: &Layout,
    from: DType,
    to: DType,
) -> Result<GpuBuffer> {
    let (entry, pairs_per_thread) = match (from, to) {
        (DType::F32, DType::F32) | (DType::U32, DType::U32) => ("copy_words", false),
        (DType::F16, DType::F16) => ("copy_halves", true),
        (DType::F32, DType::F16) => ("f32_to_f16", true),
        (DType::F16, DType::F32) => ("f16_to_f32", false),
        (DType::U32, DType::F32) => ("u32_to_f32", false),
        (DType::F32, DType::U32) => ("f32_to_u32", false),
        // f16 <-> u32 goes through f32.
        (DType::F16, DType::U32) | (DType::U32, DType::F16) => {
            let f32s = gather(ctx, op, src, layout, from, DType::F32)?;
            let flat = Layout::contiguous(layout.shape().clone());
            return gather(ctx, op, &f32s, &flat, DType::F32, to);
        }
    };
    let numel = layout.shape().numel();
    let (dims, strides) = coalesce_dims(layout.shape().dims(), &[layout.strides()]);
    let params = Params::new()
        .with_shape(op, numel, &dims)?
        .with_words(op, 2, &[layout.offset()])?
        .with_words(op, 16, &strides[0])?;
    let out = ctx.alloc(op, numel.saturating_mul(to.size_in_bytes()) as u64)?;
    let threads = if pairs_per_thread {
        numel.div_ceil(2)
    } else {
        numel
    };
    ctx.dispatch(
        op,
        &Kernel::new(Shader::Copy, entry, to),
        &params,
        &[(1, src), (2, &out)],
        groups_for(threads),
    )?;
    Ok(out)
}

/// Copies the 32-bit elements of the view `src_layout` over `src` into the view `dst_layout` over
/// `dst` (same shape).
pub(crate) fn scatter(
    ctx: &Arc<GpuContext>,
    (src, src_layout): (&GpuBuffer, &Layout),
    (dst, dst_layout): (&GpuBuffer, &Layout),
) -> Result<()> {
    let op = "concat";
    let numel = src_layout.shape().numel();
    let (dims, strides) = coalesce_dims(
        src_layout.shape().dims(),
        &[src_layout.strides(), dst_layout.strides()],
    );
    let params = Params::new()
        .with_shape(op, numel, &dims)?
        .with_words(op, 2, &[src_layout.offset(), dst_layout.offset()])?
        .with_words(op, 16, &strides[0])?
        .with_words(op, 24, &strides[1])?;
    let kernel = Kernel::new(Shader::Copy, "scatter_words", DType::F32);
    ctx.dispatch(
        op,
        &kernel,
        &params,
        &[(1, src), (2, dst)],
        groups_for(numel),
    )
}

/// A buffer of `numel` elements of `dtype`, all equal to `value`.
pub(crate) fn fill(
    ctx: &Arc<GpuContext>,
    numel: usize,
    dtype: DType,
    value: f64,
) -> Result<GpuBuffer> {
    let op = "fill";
    let word = match dtype {
        DType::F32 => (value as f32).to_bits(),
        DType::U32 => value as u32,
        DType::F16 => {
            let half = u32::from(half::f16::from_f64(value).to_bits());
            half | (half << 16)
        }
    };
    let words = numel.saturating_mul(dtype.size_in_bytes()).div_ceil(4);
    let out = ctx.alloc(op, numel.saturating_mul(dtype.size_in_bytes()) as u64)?;
    let params = Params::new().with_words(op, 0, &[words])?.set(4, word);
    ctx.dispatch(
        op,
        &Kernel::new(Shader::Copy, "fill_words", dtype),
        &params,
        &[(2, &out)],
        groups_for(words),
    )?;
    Ok(out)
}
