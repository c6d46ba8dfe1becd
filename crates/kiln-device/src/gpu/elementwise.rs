//! Launchers for `shaders/elementwise.wgsl`: unary, broadcast binary and tensor-scalar ops on f32.

use std::sync::Arc;

use super::params::Params;
use super::pipelines::Kernel;
use super::{GpuBuffer, GpuContext, groups_for};
use crate::layout::coalesce_dims;
use crate::ops::{BinaryOp, UnaryOp};
use crate::shaders::Shader;
use crate::{DType, Layout, Result};

fn kernel(entry: &'static str, code: u32, contiguous: bool) -> Kernel {
    Kernel::new(Shader::Elementwise, entry, DType::F32)
        .with("OP", code)
        .with("CONTIGUOUS", u32::from(contiguous))
}

/// Parameters of a one-input kernel: shape, offset (word 2) and strides (words 16..).
fn one_input_params(op: &'static str, layout: &Layout) -> Result<Params> {
    let (dims, strides) = coalesce_dims(layout.shape().dims(), &[layout.strides()]);
    Params::new()
        .with_shape(op, layout.shape().numel(), &dims)?
        .with_words(op, 2, &[layout.offset()])?
        .with_words(op, 16, &strides[0])
}

/// `op` of every element of the view `layout` over `src`.
pub(crate) fn unary(
    ctx: &Arc<GpuContext>,
    op: UnaryOp,
    src: &GpuBuffer,
    layout: &Layout,
) -> Result<GpuBuffer> {
    let name = op.name();
    let numel = layout.shape().numel();
    let out = ctx.alloc(name, numel as u64 * 4)?;
    let kernel = kernel("unary_main", op.shader_code(), layout.is_contiguous());
    let params = one_input_params(name, layout)?;
    ctx.dispatch(
        name,
        &kernel,
        &params,
        &[(1, src), (3, &out)],
        groups_for(numel),
    )?;
    Ok(out)
}

/// `op(x, scalar)` of every element.
pub(crate) fn scalar(
    ctx: &Arc<GpuContext>,
    op: BinaryOp,
    src: &GpuBuffer,
    layout: &Layout,
    scalar: f32,
) -> Result<GpuBuffer> {
    let name = op.scalar_name();
    let numel = layout.shape().numel();
    let out = ctx.alloc(name, numel as u64 * 4)?;
    let kernel = kernel("scalar_main", op.shader_code(), layout.is_contiguous());
    let params = one_input_params(name, layout)?.set(4, scalar.to_bits());
    ctx.dispatch(
        name,
        &kernel,
        &params,
        &[(1, src), (3, &out)],
        groups_for(numel),
    )?;
    Ok(out)
}

/// `op(a, b)` where both layouts are already broadcast to the same shape.
pub(crate) fn binary(
    ctx: &Arc<GpuContext>,
    op: BinaryOp,
    (a, la): (&GpuBuffer, &Layout),
    (b, lb): (&GpuBuffer, &Layout),
) -> Result<GpuBuffer> {
    let name = op.name();
    let shape = la.shape();
    let numel = shape.numel();
    let (dims, strides) = coalesce_dims(shape.dims(), &[la.strides(), lb.strides()]);
    let params = Params::new()
        .with_shape(name, numel, &dims)?
        .with_words(name, 2, &[la.offset(), lb.offset()])?
        .with_words(name, 16, &strides[0])?
        .with_words(name, 24, &strides[1])?;
    let out = ctx.alloc(name, numel as u64 * 4)?;
    let contiguous = la.is_contiguous() && lb.is_contiguous();
    let kernel = kernel("binary_main", op.shader_code(), contiguous);
    ctx.dispatch(
        name,
        &kernel,
        &params,
        &[(1, a), (2, b), (3, &out)],
        numel as u64,
    )?;
    Ok(out)
}
