//! Softmax and log-softmax along any axis, and their backward passes. Numerically stable: the row
//! maximum is subtracted, so huge logits give no inf or NaN.

use crate::tensor::Backend;
use crate::{DType, Error, RawTensor, Result, cpu, gpu};

/// `[outer, axis, inner]` of `shape` around `axis`.
fn geometry(op: &'static str, t: &RawTensor, axis: isize) -> Result<[usize; 3]> {
    let a = t.shape().axis(op, axis)?;
    let d = t.shape().dims();
    Ok([d[..a].iter().product(), d[a], d[a + 1..].iter().product()])
}

impl RawTensor {
    fn softmax_impl(&self, axis: isize, log: bool) -> Result<RawTensor> {
        let op = if log { "log_softmax" } else { "softmax" };
        let g = geometry(op, self, axis)?;
        RawTensor::float_op(op, &[self], |t| {
            let x = t[0].contiguous()?;
            Ok(match x.backend() {
                Backend::Cpu(cpu) => RawTensor::from_host_f32(
                    cpu::softmax::forward(x.host_f32(), g, log),
                    x.shape().clone(),
                    cpu,
                ),
                Backend::Gpu(ctx) => {
                    let out = gpu::softmax::forward(ctx, x.buffer(), g, log)?;
                    RawTensor::from_gpu(out, x.shape().clone(), DType::F32, &x)
                }
            })
        })
    }

    fn softmax_backward_impl(
        output: &RawTensor,
        grad: &RawTensor,
        axis: isize,
        log: bool,
    ) -> Result<RawTensor> {
        let op = if log {
            "log_softmax_backward"
        } else {
            "softmax_backward"
        };
        if output.shape() != grad.shape() {
            return Err(Error::invalid(
                op,
                format!(
                    "gradient {} must have the output's shape {}",
                    grad.shape(),
                    output.shape()
                ),
            ));
        }
        let g = geometry(op, output, axis)?;
        RawTensor::float_op(op, &[output, grad], |t| {
            let (y, dy) = (t[0].contiguous()?, t[1].contiguous()?);
            Ok(match y.backend() {
                Backend::Cpu(cpu) => RawTensor::from_host_f32(
                    cpu::softmax::backward(y.host_f32(), dy.host_f32(), g, log),
                    y.shape().clone(),
                    cpu,
                ),
                Backend::Gpu(ctx) => {
                    let out = gpu::softmax::backward(ctx, y.buffer(), dy.buffer(), g, log)?;
                    RawTensor::from_gpu(out, y.shape().clone(), DType::F32, &y)
                }
            })
        })
    }

    /// `exp(x - max) / sum(exp(x - max))` along `axis` (negative counts from the end).
    pub fn softmax(&self, axis: isize) -> Result<RawTensor> {
        self.softmax_impl(axis, false)
    }

    /// `x - max - log(sum(exp(x - max)))` along `axis`.
    pub fn log_softmax(&self, axis: isize) -> Result<RawTensor> {
        self.softmax_impl(axis, true)
    }

    /// Gradient of softmax given its output `y` and the upstream gradient: `y · (dy - sum(dy · y))`.
    pub fn softmax_backward(
        output: &RawTensor,
        grad: &RawTensor,
        axis: isize,
    ) -> Result<RawTensor> {
        RawTensor::softmax_backward_impl(output, grad, axis, false)
    }

    /// Gradient of log-softmax given its output `y` and the upstream gradient: `dy - exp(y) · sum(dy)`.
    pub fn log_softmax_backward(
        output: &RawTensor,
        grad: &RawTensor,
        axis: isize,
    ) -> Result<RawTensor> {
        RawTensor::softmax_backward_impl(output, grad, axis, true)
    }
}
