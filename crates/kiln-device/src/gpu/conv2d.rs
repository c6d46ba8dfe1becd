//! Launchers for conv2d on `shaders/gemm.wgsl`: forward (MODE 1, bias fused), input-grad (MODE 2) and
//! weight-grad (MODE 3, the bias gradient folded in as a column of ones). `gemm::plan` picks the tile,
//! GEMV or split-K for each shape. A ReLU after the convolution fuses in: applied in the forward's store,
//! and its backward (the output grad masked by the ReLU output's sign) applied as the backward GEMMs
//! load the output grad.

use std::sync::Arc;

use super::gemm::{self, BIAS_COLUMN, GemmCall, GemmShape, HAS_BIAS, RELU, RELU_MASK};
use super::params::Params;
use super::{GpuBuffer, GpuContext};
use crate::ops::conv2d::ConvGeometry;
use crate::{DType, Result};

fn conv_params(op: &'static str, g: &ConvGeometry) -> Result<Params> {
    Params::new().with_words(
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
        ],
    )
}

/// Forward: implicit GEMM with M = N·OH·OW, N = Cout, K = Cin·KH·KW, bias (and ReLU, with `relu`)
/// fused into the store.
pub(crate) fn forward(
    ctx: &Arc<GpuContext>,
    x: &GpuBuffer,
    w: &GpuBuffer,
    bias: Option<&GpuBuffer>,
    g: &ConvGeometry,
    relu: bool,
) -> Result<GpuBuffer> {
    let op = "conv2d";
    let (m, n, k) = (g.n * g.oh * g.ow, g.c_out, g.patch());
    let out = ctx.alloc(op, (m * n * 4) as u64)?;
    gemm::run(
        ctx,
        GemmCall {
            op,
            mode: 1,
            // Patches walk output positions (contiguous in NCHW); weights [Cout, K] walk K.
            shape: GemmShape {
                m,
                n,
                k,
                batch: 1,
                a_k_major: false,
                b_k_major: true,
            },
            params: conv_params(op, g)?,
            flags: if bias.is_some() { HAS_BIAS } else { 0 } | if relu { RELU } else { 0 },
            a: x,
            b: w,
            bias,
            out: &out,
            out2: None,
        },
    )?;
    Ok(out)
}

/// Input gradient: implicit GEMM with M = N·H·W, N = Cin, K = Cout·KH·KW over the output-grad taps
/// (masked by the sign of `relu_out` when given).
pub(crate) fn input_grad(
    ctx: &Arc<GpuContext>,
    dy: &GpuBuffer,
    w: &GpuBuffer,
    g: &ConvGeometry,
    relu_out: Option<&GpuBuffer>,
) -> Result<GpuBuffer> {
    let op = "conv2d_input_grad";
    let (m, n, k) = (g.n * g.h * g.w, g.c_in, g.c_out * g.kh * g.kw);
    let out = ctx.alloc(op, (m * n * 4) as u64)?;
    gemm::run(
        ctx,
        GemmCall {
            op,
            mode: 2,
            shape: GemmShape {
                m,
                n,
                k,
                batch: 1,
                a_k_major: false,
                b_k_major: true,
            },
            params: conv_params(op, g)?,
            flags: if relu_out.is_some() { RELU_MASK } else { 0 },
            a: dy,
            b: w,
            bias: relu_out,
            out: &out,
            out2: None,
        },
    )?;
    Ok(out)
}

/// Weight gradient (and, with `with_bias`, the bias gradient from the same pass): GEMM with
/// M = Cout, N = Cin·KH·KW (+ 1), K = N·OH·OW; the output grad masked by the sign of `relu_out` when
/// given.
pub(crate) fn weight_grad(
    ctx: &Arc<GpuContext>,
    dy: &GpuBuffer,
    x: &GpuBuffer,
    g: &ConvGeometry,
    with_bias: bool,
    relu_out: Option<&GpuBuffer>,
) -> Result<(GpuBuffer, Option<GpuBuffer>)> {
    let op = "conv2d_weight_grad";
    let (m, taps, k) = (g.c_out, g.patch(), g.n * g.oh * g.ow);
    if k == 0 {
        let dw = super::copy::fill(ctx, m * taps, DType::F32, 0.0)?;
        let db = with_bias
            .then(|| super::copy::fill(ctx, m, DType::F32, 0.0))
            .transpose()?;
        return Ok((dw, db));
    }
    let dw = ctx.alloc(op, (m * taps * 4) as u64)?;
    let db = with_bias
        .then(|| ctx.alloc(op, (m * 4) as u64))
        .transpose()?;
    gemm::run(
        ctx,
        GemmCall {
            op,
            mode: 3,
            // Both operands walk K = (image, position), contiguous in NCHW.
            shape: GemmShape {
                m,
                n: taps + usize::from(with_bias),
                k,
                batch: 1,
                a_k_major: true,
                b_k_major: true,
            },
            params: conv_params(op, g)?,
            flags: if with_bias { BIAS_COLUMN } else { 0 }
                | if relu_out.is_some() { RELU_MASK } else { 0 },
            a: dy,
            b: x,
            bias: relu_out,
            out: &dw,
            out2: db.as_ref(),
        },
    )?;
    Ok((dw, db))
}
