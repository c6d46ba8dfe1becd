//! Launchers for conv2d on `shaders/gemm.wgsl`: forward (MODE 1), input-grad (MODE 2) and weight-grad
//! (MODE 3, split-K into partial sums that `reduce.wgsl` adds up).

use std::sync::Arc;

use super::matmul::TILE;
use super::params::Params;
use super::pipelines::Kernel;
use super::{GpuBuffer, GpuContext, reduce};
use crate::ops::conv2d::ConvGeometry;
use crate::shaders::Shader;
use crate::{DType, ReduceOp, Result};

/// K-elements each weight-grad slice reduces at least.
const MIN_SLICE_K: usize = 1024;
/// Workgroups the weight-grad split aims to launch.
const TARGET_WORKGROUPS: usize = 256;

fn conv_params(
    op: &'static str,
    g: &ConvGeometry,
    (m, n, k): (usize, usize, usize),
    slices: usize,
    k_per_slice: usize,
    has_bias: bool,
) -> Result<Params> {
    Params::new()
        .with_words(
            op,
            0,
            &[
                m,
                n,
                k,
                slices,
                m.div_ceil(TILE),
                n.div_ceil(TILE),
                k_per_slice,
            ],
        )?
        .with_words(
            op,
            8,
            &[
                g.c_in,
                g.h,
                g.w,
                g.c_out,
                g.kh,
                g.kw,
                g.oh,
                g.ow,
                g.stride[0],
                g.stride[1],
                g.padding[0],
                g.padding[1],
                usize::from(has_bias),
            ],
        )
}

fn launch(
    ctx: &GpuContext,
    op: &'static str,
    mode: u32,
    params: &Params,
    (a, b, bias, out): (&GpuBuffer, &GpuBuffer, &GpuBuffer, &GpuBuffer),
    tiles: usize,
) -> Result<()> {
    let kernel = Kernel::new(Shader::Gemm, "gemm_main", DType::F32).with("MODE", mode);
    ctx.dispatch(
        op,
        &kernel,
        params,
        &[(1, a), (2, b), (3, bias), (4, out)],
        tiles as u64,
    )
}

/// Forward: implicit GEMM with M = N·OH·OW, N = Cout, K = Cin·KH·KW, bias fused into the store.
pub(crate) fn forward(
    ctx: &Arc<GpuContext>,
    x: &GpuBuffer,
    w: &GpuBuffer,
    bias: Option<&GpuBuffer>,
    g: &ConvGeometry,
) -> Result<GpuBuffer> {
    let op = "conv2d";
    let (m, n, k) = (g.n * g.oh * g.ow, g.c_out, g.patch());
    let out = ctx.alloc(op, (m * n * 4) as u64)?;
    let params = conv_params(op, g, (m, n, k), 1, k, bias.is_some())?;
    let tiles = m.div_ceil(TILE) * n.div_ceil(TILE);
    launch(ctx, op, 1, &params, (x, w, bias.unwrap_or(w), &out), tiles)?;
    Ok(out)
}

/// Input gradient: implicit GEMM with M = N·H·W, N = Cin, K = Cout·KH·KW over the output-grad taps.
pub(crate) fn input_grad(
    ctx: &Arc<GpuContext>,
    dy: &GpuBuffer,
    w: &GpuBuffer,
    g: &ConvGeometry,
) -> Result<GpuBuffer> {
    let op = "conv2d_input_grad";
    let (m, n, k) = (g.n * g.h * g.w, g.c_in, g.c_out * g.kh * g.kw);
    let out = ctx.alloc(op, (m * n * 4) as u64)?;
    let params = conv_params(op, g, (m, n, k), 1, k, false)?;
    let tiles = m.div_ceil(TILE) * n.div_ceil(TILE);
    launch(ctx, op, 2, &params, (dy, w, w, &out), tiles)?;
    Ok(out)
}

/// Weight gradient: GEMM with M = Cout, N = Cin·KH·KW and the long K = N·OH·OW split into slices
/// computed in parallel, then summed.
pub(crate) fn weight_grad(
    ctx: &Arc<GpuContext>,
    dy: &GpuBuffer,
    x: &GpuBuffer,
    g: &ConvGeometry,
) -> Result<GpuBuffer> {
    let op = "conv2d_weight_grad";
    let (m, n, k) = (g.c_out, g.patch(), g.n * g.oh * g.ow);
    if k == 0 {
        return super::copy::fill(ctx, m * n, DType::F32, 0.0);
    }
    let tiles = m.div_ceil(TILE) * n.div_ceil(TILE);
    let slices = (TARGET_WORKGROUPS / tiles).clamp(1, k.div_ceil(MIN_SLICE_K).max(1));
    let k_per_slice = k.div_ceil(slices).next_multiple_of(16);
    let slices = k.div_ceil(k_per_slice).max(1);
    let partials = ctx.alloc(op, (slices * m * n * 4) as u64)?;
    let params = conv_params(op, g, (m, n, k), slices, k_per_slice, false)?;
    launch(ctx, op, 3, &params, (dy, x, x, &partials), tiles * slices)?;
    if slices == 1 {
        return Ok(partials);
    }
    reduce::reduce(ctx, op, ReduceOp::Sum, &partials, [1, slices, m * n])
}
