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

/// Launches a one-input kernel (`unary_main` or `scalar_main`) over the view `layout` of `src`;
/// `scalar` goes to word 4.
fn one_input(
    ctx: &Arc<GpuContext>,
    (name, entry, code): (&'static str, &'static str, u32),
    src: &GpuBuffer,
    layout: &Layout,
    scalar: f32,
) -> Result<GpuBuffer> {
    let numel = layout.shape().numel();
    let (dims, strides) = coalesce_dims(layout.shape().dims(), &[layout.strides()]);
    let params = Params::new()
        .with_shape(name, numel, &dims)?
        .with_words(name, 2, &[layout.offset()])?
        .with_words(name, 16, &strides[0])?
        .set(4, scalar.to_bits());
    let out = ctx.alloc(name, numel as u64 * 4)?;
    let kernel = kernel(entry, code, layout.is_contiguous());
    ctx.dispatch(
        name,
        &kernel,
        &params,
        &[(1, src), (3, &out)],
        groups_for(numel),
    )?;
    Ok(out)
}

/// `op` of every element of the view `layout` over `src`.
pub(crate) fn unary(
    ctx: &Arc<GpuContext>,
    op: UnaryOp,
    src: &GpuBuffer,
    layout: &Layout,
) -> Result<GpuBuffer> {
    one_input(
        ctx,
        (op.name(), "unary_main", op.shader_code()),
        src,
        layout,
        0.0,
    )
}

/// `op(x, scalar)` of every element.
pub(crate) fn scalar(
    ctx: &Arc<GpuContext>,
    op: BinaryOp,
    src: &GpuBuffer,
    layout: &Layout,
    scalar: f32,
) -> Result<GpuBuffer> {
    one_input(
        ctx,
        (op.scalar_name(), "scalar_main", op.shader_code()),
        src,
        layout,
        scalar,
    )
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
        groups_for(numel),
    )?;
    Ok(out)
}
