//! 2-D max and average pooling over NCHW images with any kernel, stride and zero padding, and their
//! backward passes. Max pooling records the argmax of each window (a flat `y·W + x` index within the
//! plane, as PyTorch returns) so its backward needs no search.

use crate::tensor::Backend;
use crate::{DType, Error, RawTensor, Result, Shape, cpu, gpu};

/// Window size, stride and zero padding of a 2-D pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2dParams {
    /// Window `[height, width]`.
    pub kernel: [usize; 2],
    /// Step between windows `[height, width]`.
    pub stride: [usize; 2],
    /// Padding on both sides `[height, width]`; at most half the window.
    pub padding: [usize; 2],
}

impl Pool2dParams {
    /// A `k × k` window with stride `k` and no padding (Keras's `MaxPooling2D((k, k))`).
    pub fn square(k: usize) -> Self {
        Pool2dParams {
            kernel: [k, k],
            stride: [k, k],
            padding: [0, 0],
        }
    }
}

/// Every size of one pooling.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolGeometry {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
    pub p: Pool2dParams,
}

impl PoolGeometry {
    pub(crate) fn new(op: &'static str, input: &Shape, p: Pool2dParams) -> Result<(Self, Shape)> {
        let d = input.dims();
        if d.len() != 4 {
            return Err(Error::invalid(
                op,
                format!("expects input [N, C, H, W], got {input}"),
            ));
        }
        if p.kernel.contains(&0) || p.stride.contains(&0) {
            return Err(Error::invalid(
                op,
                format!(
                    "kernel {:?} and stride {:?} must be at least 1",
                    p.kernel, p.stride
                ),
            ));
        }
        if p.padding[0].saturating_mul(2) > p.kernel[0]
            || p.padding[1].saturating_mul(2) > p.kernel[1]
        {
            return Err(Error::invalid(
                op,
                format!(
                    "padding {:?} must be at most half the kernel {:?}",
                    p.padding, p.kernel
                ),
            ));
        }
        let (ph, pw) = (d[2] + 2 * p.padding[0], d[3] + 2 * p.padding[1]);
        if p.kernel[0] > ph || p.kernel[1] > pw {
            return Err(Error::invalid(
                op,
                format!(
                    "kernel {:?} is larger than the padded input {ph}x{pw} (input {input})",
                    p.kernel
                ),
            ));
        }
        let g = PoolGeometry {
            planes: d[0] * d[1],
            h: d[2],
            w: d[3],
            oh: (ph - p.kernel[0]) / p.stride[0] + 1,
            ow: (pw - p.kernel[1]) / p.stride[1] + 1,
            p,
        };
        Ok((g, Shape::from([d[0], d[1], g.oh, g.ow])))
    }
}

/// Refuses argmax indices (host ones) outside an `h×w` plane, naming the largest as the GPU
/// kernels do.
pub(crate) fn check_plane_indices(
    op: &'static str,
    indices: &[u32],
    (h, w): (usize, usize),
) -> Result<()> {
    match cpu::index_past(indices, h * w) {
        Some(bad) => Err(Error::InvalidData {
            op,
            message: format!(
                "index {bad} is outside the {} positions of a {h}x{w} plane",
                h * w
            ),
        }),
        None => Ok(()),
    }
}

fn check_grad(op: &'static str, grad: &RawTensor, out_shape: &Shape) -> Result<()> {
    if grad.shape() != out_shape {
        return Err(Error::invalid(
            op,
            format!(
                "output gradient {} does not match the pooling output {out_shape}",
                grad.shape()
            ),
        ));
    }
    Ok(())
}

impl RawTensor {
    /// Max pooling; returns the pooled `[N, C, OH, OW]` values and the u32 argmax of every window.
    pub fn max_pool2d(&self, params: Pool2dParams) -> Result<(RawTensor, RawTensor)> {
        let op = "max_pool2d";
        let (g, out_shape) = PoolGeometry::new(op, self.shape(), params)?;
        self.expect_dtype(op, DType::F32, "cast to f32 first")?;
        let x = self.contiguous()?;
        Ok(match x.backend() {
            Backend::Cpu(cpu) => {
                let (values, indices) = cpu::pool::max_forward(x.host_f32(), &g);
                (
                    RawTensor::from_host_f32(values, out_shape.clone(), cpu),
                    RawTensor::from_host_u32(indices, out_shape, cpu),
                )
            }
            Backend::Gpu(ctx) => {
                let (values, indices) = gpu::pool::max_forward(ctx, x.buffer(), &g)?;
                (
                    RawTensor::from_gpu(values, out_shape.clone(), DType::F32, &x),
                    RawTensor::from_gpu(indices, out_shape, DType::U32, &x),
                )
            }
        })
    }

    /// Gradient of max pooling: each window's gradient goes to its argmax.
    pub fn max_pool2d_backward(
        grad_out: &RawTensor,
        indices: &RawTensor,
        input_shape: impl Into<Shape>,
        params: Pool2dParams,
    ) -> Result<RawTensor> {
        let op = "max_pool2d_backward";
        let input_shape = input_shape.into();
        let (g, out_shape) = PoolGeometry::new(op, &input_shape, params)?;
        check_grad(op, grad_out, &out_shape)?;
        check_grad(op, indices, &out_shape)?;
        grad_out.expect_dtype(op, DType::F32, "cast to f32 first")?;
        indices.expect_dtype(op, DType::U32, "pass the indices max_pool2d returned")?;
        RawTensor::check_same_device(op, &[grad_out, indices])?;
        let (dy, idx) = (grad_out.contiguous()?, indices.contiguous()?);
        Ok(match dy.backend() {
            Backend::Cpu(cpu) => {
                check_plane_indices(op, idx.host_u32(), (g.h, g.w))?;
                RawTensor::from_host_f32(
                    cpu::pool::max_backward(dy.host_f32(), idx.host_u32(), &g),
                    input_shape,
                    cpu,
                )
            }
            Backend::Gpu(ctx) => {
                let out = gpu::pool::max_backward(ctx, dy.buffer(), idx.buffer(), &g)?;
                RawTensor::from_gpu(out, input_shape, DType::F32, &dy)
            }
        })
    }

    /// Average pooling (padded taps are not counted in the divisor).
    pub fn avg_pool2d(&self, params: Pool2dParams) -> Result<RawTensor> {
        let op = "avg_pool2d";
        let (g, out_shape) = PoolGeometry::new(op, self.shape(), params)?;
        RawTensor::float_op(op, &[self], |t| {
            let x = t[0].contiguous()?;
            Ok(match x.backend() {
                Backend::Cpu(cpu) => RawTensor::from_host_f32(
                    cpu::pool::avg_forward(x.host_f32(), &g),
                    out_shape.clone(),
                    cpu,
                ),
                Backend::Gpu(ctx) => {
                    let out = gpu::pool::avg(
                        ctx,
                        "avg_pool2d",
                        "avg_forward",
                        x.buffer(),
                        &g,
                        g.planes * g.oh * g.ow,
                    )?;
                    RawTensor::from_gpu(out, out_shape.clone(), DType::F32, &x)
                }
            })
        })
    }

    /// Gradient of average pooling.
    pub fn avg_pool2d_backward(
        grad_out: &RawTensor,
        input_shape: impl Into<Shape>,
        params: Pool2dParams,
    ) -> Result<RawTensor> {
        let op = "avg_pool2d_backward";
        let input_shape = input_shape.into();
        let (g, out_shape) = PoolGeometry::new(op, &input_shape, params)?;
        check_grad(op, grad_out, &out_shape)?;
        RawTensor::float_op(op, &[grad_out], |t| {
            let dy = t[0].contiguous()?;
            Ok(match dy.backend() {
                Backend::Cpu(cpu) => RawTensor::from_host_f32(
                    cpu::pool::avg_backward(dy.host_f32(), &g),
                    input_shape.clone(),
                    cpu,
                ),
                Backend::Gpu(ctx) => {
                    let out = gpu::pool::avg(
                        ctx,
                        op,
                        "avg_backward",
                        dy.buffer(),
                        &g,
                        g.planes * g.h * g.w,
                    )?;
                    RawTensor::from_gpu(out, input_shape.clone(), DType::F32, &dy)
                }
            })
        })
    }
}
