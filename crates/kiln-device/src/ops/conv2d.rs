//! `conv2d` over NCHW images with stride and zero padding (optionally fused with a following ReLU),
//! and its three backward kernels (input-grad, weight-grad, bias-grad). Weights are `[out_channels, in_channels, kh, kw]` (PyTorch's
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
        if x.contains(&0) || k[0] == 0 {
            return Err(Error::invalid(
                op,
                format!(
                    "input {input} and weight {weight} need at least one sample, channel, row, \
                     column and output channel"
                ),
            ));
        }
        let padded = |size: usize, pad: usize| pad.checked_mul(2).and_then(|p| p.checked_add(size));
        let (Some(ph), Some(pw)) = (padded(x[2], p.padding[0]), padded(x[3], p.padding[1])) else {
            return Err(Error::invalid(
                op,
                format!("padding {:?} is too large for input {input}", p.padding),
            ));
        };
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

    /// Refuses a bias that is not one value per output channel.
    pub(crate) fn check_bias(&self, op: &'static str, bias: Option<&RawTensor>) -> Result<()> {
        match bias {
            Some(b) if b.shape().dims() != [self.c_out] => Err(Error::invalid(
                op,
                format!(
                    "bias {} must be [{}] (one per output channel)",
                    b.shape(),
                    self.c_out
                ),
            )),
            _ => Ok(()),
        }
    }
}

pub(crate) fn check_grad(op: &'static str, grad: &RawTensor, g: &ConvGeometry) -> Result<()> {
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

/// Which gradients [`RawTensor::conv2d_backward`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Conv2dWanted {
    /// The input gradient.
    pub input: bool,
    /// The weight gradient.
    pub weight: bool,
    /// The bias gradient.
    pub bias: bool,
}

/// The gradients [`RawTensor::conv2d_backward`] returns (`None` where not wanted).
#[derive(Debug, Clone, Default)]
pub struct Conv2dGrads {
    /// `[N, Cin, H, W]`
    pub input: Option<RawTensor>,
    /// `[Cout, Cin, KH, KW]`
    pub weight: Option<RawTensor>,
    /// `[Cout]`
    pub bias: Option<RawTensor>,
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
        self.conv2d_then_relu(weight, bias, params, false)
    }

    /// `relu(conv2d(..))` in one pass on the GPU (the ReLU is applied as the outputs are stored); its
    /// gradients come from [`RawTensor::conv2d_backward`] with this output as `relu_out`.
    pub fn conv2d_relu(
        &self,
        weight: &RawTensor,
        bias: Option<&RawTensor>,
        params: Conv2dParams,
    ) -> Result<RawTensor> {
        self.conv2d_then_relu(weight, bias, params, true)
    }

    fn conv2d_then_relu(
        &self,
        weight: &RawTensor,
        bias: Option<&RawTensor>,
        params: Conv2dParams,
        relu: bool,
    ) -> Result<RawTensor> {
        let op = if relu { "conv2d_relu" } else { "conv2d" };
        let g = ConvGeometry::new(op, self.shape(), weight.shape(), params)?;
        g.check_bias(op, bias)?;
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        RawTensor::float_op(op, &inputs, |t| {
            let t: Vec<RawTensor> = t.iter().map(RawTensor::contiguous).collect::<Result<_>>()?;
            match t[0].backend() {
                Backend::Cpu(cpu) => {
                    let bias = t.get(2).map(RawTensor::host_f32);
                    let values =
                        cpu::conv2d::forward(t[0].host_f32(), t[1].host_f32(), bias, &g, relu);
                    Ok(RawTensor::from_host_f32(values, g.output_shape(), cpu))
                }
                Backend::Gpu(ctx) => {
                    let bias = t.get(2).map(RawTensor::buffer);
                    let out =
                        gpu::conv2d::forward(ctx, t[0].buffer(), t[1].buffer(), bias, &g, relu)?;
                    Ok(RawTensor::from_gpu(
                        out,
                        g.output_shape(),
                        DType::F32,
                        &t[0],
                    ))
                }
            }
        })
    }

    /// The gradients of `conv2d` (or of `conv2d_relu`, given its output as `relu_out`) that `wanted`
    /// names, from the output gradient, the input and the weights. On the GPU the weight and bias
    /// gradients come from one pass, and the ReLU's backward is applied as the output gradient is read;
    /// on the CPU every gradient comes from one pass over the images.
    pub fn conv2d_backward(
        grad_out: &RawTensor,
        relu_out: Option<&RawTensor>,
        input: &RawTensor,
        weight: &RawTensor,
        params: Conv2dParams,
        wanted: Conv2dWanted,
    ) -> Result<Conv2dGrads> {
        let op = "conv2d_backward";
        let g = ConvGeometry::new(op, input.shape(), weight.shape(), params)?;
        check_grad(op, grad_out, &g)?;
        if let Some(y) = relu_out {
            check_grad(op, y, &g)?;
        }
        let mut inputs = vec![grad_out, input, weight];
        inputs.extend(relu_out);
        let grads = RawTensor::float_op_outputs(op, &inputs, |t| {
            let t: Vec<RawTensor> = t.iter().map(RawTensor::contiguous).collect::<Result<_>>()?;
            let ctx = match t[0].backend() {
                // One pass over the images: ReLU mask, bias sums and both GEMMs per image.
                Backend::Cpu(cpu) => {
                    let grads = cpu::conv2d::backward(
                        cpu::conv2d::OutputGrad::Full {
                            dy: t[0].host_f32(),
                            relu_out: t.get(3).map(RawTensor::host_f32),
                        },
                        t[1].host_f32(),
                        t[2].host_f32(),
                        &g,
                        (wanted.input, wanted.weight, wanted.bias),
                    );
                    return Ok(grads.into_tensors(&g, cpu).into());
                }
                Backend::Gpu(ctx) => ctx,
            };
            let (dy, x, w) = (t[0].buffer(), t[1].buffer(), t[2].buffer());
            let mask = t.get(3).map(RawTensor::buffer);
            let tensor = |buffer, shape| RawTensor::from_gpu(buffer, shape, DType::F32, &t[0]);
            let mut grads = vec![None, None, None];
            if wanted.input {
                let dx = gpu::conv2d::input_grad(ctx, dy, w, &g, mask)?;
                grads[0] = Some(tensor(dx, g.input_shape()));
            }
            if wanted.weight || wanted.bias {
                let (dw, db) = gpu::conv2d::weight_grad(ctx, dy, x, &g, wanted.bias, mask)?;
                grads[1] = wanted.weight.then(|| tensor(dw, g.weight_shape()));
                grads[2] = db.map(|db| tensor(db, Shape::from([g.c_out])));
            }
            Ok(grads)
        })?;
        let mut grads = grads.into_iter();
        let mut next = || grads.next().flatten();
        Ok(Conv2dGrads {
            input: next(),
            weight: next(),
            bias: next(),
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
                    let out = gpu::conv2d::input_grad(ctx, dy.buffer(), w.buffer(), &g, None)?;
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
                        gpu::conv2d::weight_grad(ctx, dy.buffer(), x.buffer(), &g, false, None)?;
                    RawTensor::from_gpu(out, g.weight_shape(), DType::F32, &dy)
                }
            })
        })
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
