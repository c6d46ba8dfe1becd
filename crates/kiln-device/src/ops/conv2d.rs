//! `conv2d` over NCHW images with stride and zero padding, and its three backward kernels
//! (input-grad, weight-grad, bias-grad). Weights are `[out_channels, in_channels, kh, kw]` (PyTorch's
//! layout).

use crate::tensor::Backend;
use crate::{DType, Error, RawTensor, ReduceOp, Result, Shape, cpu, gpu};

/// Stride and zero padding of a 2-D convolution (dilation 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dParams {
    /// Step between windows, `[height, width]`.
    pub stride: [usize; 2],
    /// Zeros added on both sides, `[height, width]`.
    pub padding: [usize; 2],
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams {
            stride: [1, 1],
            padding: [0, 0],
        }
    }
}

/// Every size of one convolution.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvGeometry {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub oh: usize,
    pub ow: usize,
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl ConvGeometry {
    /// Checks an input shape and a weight shape against each other and the parameters.
    pub(crate) fn new(
        op: &'static str,
        input: &Shape,
        weight: &Shape,
        p: Conv2dParams,
    ) -> Result<Self> {
        let (x, k) = (input.dims(), weight.dims());
        if x.len() != 4 || k.len() != 4 {
            return Err(Error::invalid(
                op,
                format!(
                    "expects input [N, C, H, W] and weight [Cout, Cin, KH, KW], got {input} and {weight}"
                ),
            ));
        }
        if x[1] != k[1] {
            return Err(Error::invalid(
                op,
                format!(
                    "input {input} has {} channels but weight {weight} expects {}",
                    x[1], k[1]
                ),
            ));
        }
        if p.stride.contains(&0) {
            return Err(Error::invalid(
                op,
                format!("stride {:?} must be at least 1", p.stride),
            ));
        }
        let (ph, pw) = (x[2] + 2 * p.padding[0], x[3] + 2 * p.padding[1]);
        if k[2] > ph || k[3] > pw || k[2] == 0 || k[3] == 0 {
            return Err(Error::invalid(
                op,
                format!(
                    "kernel {}x{} does not fit the padded input {ph}x{pw} (input {input}, padding {:?}); \
                     use a smaller kernel or more padding",
                    k[2], k[3], p.padding
                ),
            ));
        }
        Ok(ConvGeometry {
            n: x[0],
            c_in: x[1],
            h: x[2],
            w: x[3],
            c_out: k[0],
            kh: k[2],
            kw: k[3],
            oh: (ph - k[2]) / p.stride[0] + 1,
            ow: (pw - k[3]) / p.stride[1] + 1,
            stride: p.stride,
            padding: p.padding,
        })
    }

    /// `[N, Cout, OH, OW]`.
    pub(crate) fn output_shape(&self) -> Shape {
        Shape::from([self.n, self.c_out, self.oh, self.ow])
    }

    /// `[N, Cin, H, W]`.
    pub(crate) fn input_shape(&self) -> Shape {
        Shape::from([self.n, self.c_in, self.h, self.w])
    }

    /// `[Cout, Cin, KH, KW]`.
    pub(crate) fn weight_shape(&self) -> Shape {
        Shape::from([self.c_out, self.c_in, self.kh, self.kw])
    }

    /// Elements of one patch: `Cin · KH · KW`.
    pub(crate) fn patch(&self) -> usize {
        self.c_in * self.kh * self.kw
    }
}

fn check_grad(op: &'static str, grad: &RawTensor, g: &ConvGeometry) -> Result<()> {
    if grad.shape() != &g.output_shape() {
        return Err(Error::invalid(
            op,
            format!(
                "output gradient {} does not match the convolution's output {}",
                grad.shape(),
                g.output_shape()
            ),
        ));
    }
    Ok(())
}

impl RawTensor {
    /// 2-D convolution (cross-correlation, as in PyTorch and Keras) of `[N, Cin, H, W]` images with
    /// `[Cout, Cin, KH, KW]` weights and an optional `[Cout]` bias; returns `[N, Cout, OH, OW]`.
    pub fn conv2d(
        &self,
        weight: &RawTensor,
        bias: Option<&RawTensor>,
        params: Conv2dParams,
    ) -> Result<RawTensor> {
        let op = "conv2d";
        let g = ConvGeometry::new(op, self.shape(), weight.shape(), params)?;
        if let Some(b) = bias
            && b.shape().dims() != [g.c_out]
        {
            return Err(Error::invalid(
                op,
                format!(
                    "bias {} must be [{}] (one per output channel)",
                    b.shape(),
                    g.c_out
                ),
            ));
        }
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        RawTensor::float_op(op, &inputs, |t| {
            let t: Vec<RawTensor> = t.iter().map(RawTensor::contiguous).collect::<Result<_>>()?;
            Ok(match t[0].backend() {
                Backend::Cpu(cpu) => {
                    let bias = t.get(2).map(RawTensor::host_f32);
                    let values = cpu::conv2d::forward(t[0].host_f32(), t[1].host_f32(), bias, &g);
                    RawTensor::from_host_f32(values, g.output_shape(), cpu)
                }
                Backend::Gpu(ctx) => {
                    let bias = t.get(2).map(RawTensor::buffer);
                    let out = gpu::conv2d::forward(ctx, t[0].buffer(), t[1].buffer(), bias, &g)?;
                    RawTensor::from_gpu(out, g.output_shape(), DType::F32, &t[0])
                }
            })
        })
    }

    /// Gradient of `conv2d` with respect to its input, given the output gradient and the weights.
    pub fn conv2d_input_grad(
        grad_out: &RawTensor,
        weight: &RawTensor,
        input_shape: impl Into<Shape>,
        params: Conv2dParams,
    ) -> Result<RawTensor> {
        let op = "conv2d_input_grad";
        let g = ConvGeometry::new(op, &input_shape.into(), weight.shape(), params)?;
        check_grad(op, grad_out, &g)?;
        RawTensor::float_op(op, &[grad_out, weight], |t| {
            let (dy, w) = (t[0].contiguous()?, t[1].contiguous()?);
            Ok(match dy.backend() {
                Backend::Cpu(cpu) => RawTensor::from_host_f32(
                    cpu::conv2d::input_grad(dy.host_f32(), w.host_f32(), &g),
                    g.input_shape(),
                    cpu,
                ),
                Backend::Gpu(ctx) => {
                    let out = gpu::conv2d::input_grad(ctx, dy.buffer(), w.buffer(), &g)?;
                    RawTensor::from_gpu(out, g.input_shape(), DType::F32, &dy)
                }
            })
        })
    }

    /// Gradient of `conv2d` with respect to its weights, given the output gradient and the input.
    pub fn conv2d_weight_grad(
        grad_out: &RawTensor,
        input: &RawTensor,
        weight_shape: impl Into<Shape>,
        params: Conv2dParams,
    ) -> Result<RawTensor> {
        let op = "conv2d_weight_grad";
        let g = ConvGeometry::new(op, input.shape(), &weight_shape.into(), params)?;
        check_grad(op, grad_out, &g)?;
        RawTensor::float_op(op, &[grad_out, input], |t| {
            let (dy, x) = (t[0].contiguous()?, t[1].contiguous()?);
            Ok(match dy.backend() {
                Backend::Cpu(cpu) => RawTensor::from_host_f32(
                    cpu::conv2d::weight_grad(dy.host_f32(), x.host_f32(), &g),
                    g.weight_shape(),
                    cpu,
                ),
                Backend::Gpu(ctx) => {
                    let (out, _) =
                        gpu::conv2d::weight_grad(ctx, dy.buffer(), x.buffer(), &g, false)?;
                    RawTensor::from_gpu(out, g.weight_shape(), DType::F32, &dy)
                }
            })
        })
    }

    /// The weight and bias gradients of `conv2d` together: on the GPU one pass over the output
    /// gradient computes both (the bias gradient is the GEMM's extra column of ones).
    pub fn conv2d_weight_bias_grad(
        grad_out: &RawTensor,
        input: &RawTensor,
        weight_shape: impl Into<Shape>,
        params: Conv2dParams,
    ) -> Result<(RawTensor, RawTensor)> {
        let op = "conv2d_weight_grad";
        let weight_shape = weight_shape.into();
        if matches!(grad_out.backend(), Backend::Cpu(_)) {
            return Ok((
                RawTensor::conv2d_weight_grad(grad_out, input, weight_shape, params)?,
                RawTensor::conv2d_bias_grad(grad_out)?,
            ));
        }
        let g = ConvGeometry::new(op, input.shape(), &weight_shape, params)?;
        check_grad(op, grad_out, &g)?;
        let mut bias_grad = None;
        let dw = RawTensor::float_op(op, &[grad_out, input], |t| {
            let (dy, x) = (t[0].contiguous()?, t[1].contiguous()?);
            let Backend::Gpu(ctx) = dy.backend() else {
                unreachable!("CPU tensors returned above")
            };
            let (dw, db) = gpu::conv2d::weight_grad(ctx, dy.buffer(), x.buffer(), &g, true)?;
            let db = db.expect("bias gradient requested");
            bias_grad = Some(RawTensor::from_gpu(db, [g.c_out], DType::F32, &dy));
            Ok(RawTensor::from_gpu(dw, g.weight_shape(), DType::F32, &dy))
        })?;
        let db = bias_grad
            .expect("float_op ran the kernel")
            .cast(grad_out.dtype())?;
        Ok((dw, db))
    }

    /// Gradient of `conv2d` with respect to its bias: the output gradient summed over N, OH and OW.
    pub fn conv2d_bias_grad(grad_out: &RawTensor) -> Result<RawTensor> {
        let d = grad_out.shape().dims();
        if d.len() != 4 {
            return Err(Error::invalid(
                "conv2d_bias_grad",
                format!(
                    "expects an output gradient [N, Cout, OH, OW], got {}",
                    grad_out.shape()
                ),
            ));
        }
        grad_out
            .reshape([d[0], d[1], d[2] * d[3]])?
            .reduce(ReduceOp::Sum, Some(2), false)?
            .reduce(ReduceOp::Sum, Some(0), false)
    }
}
