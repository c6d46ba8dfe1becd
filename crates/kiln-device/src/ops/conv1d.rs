//! Channels-last 1-D convolution on the CPU device (`cpu/conv1d.rs`): `[N, L, C]` sequences with
//! `[O, C, K]` weights, as Conv1D layers on Embedding outputs use them. On a GPU the autograd op
//! keeps the channels-first convolution (the implicit GEMM reads either layout coalesced).

use crate::cpu::conv1d::{self, Conv1dShape};
use crate::tensor::Backend;
use crate::{BinaryOp, Conv2dGrads, Conv2dWanted, DType, Error, RawTensor, Result};

/// The shape of a channels-last convolution of `x` by `w`, checked.
fn geometry(
    op: &'static str,
    x: &RawTensor,
    w: &RawTensor,
    stride: usize,
    padding: usize,
) -> Result<Conv1dShape> {
    let (&[n, l, c], &[o, wc, k]) = (x.shape().dims(), w.shape().dims()) else {
        return Err(Error::invalid(
            op,
            format!(
                "expects input [batch, steps, channels] and weight [out, channels, kernel], got {} and {}",
                x.shape(),
                w.shape()
            ),
        ));
    };
    if wc != c || k == 0 || o == 0 || stride == 0 {
        return Err(Error::invalid(
            op,
            format!(
                "input {} has {c} channels, weight {} expects {wc} (kernel and outputs at least 1, \
                 stride {stride} at least 1)",
                x.shape(),
                w.shape()
            ),
        ));
    }
    padding
        .checked_mul(2)
        .and_then(|p| p.checked_add(l))
        .filter(|&p| p >= k)
        .ok_or_else(|| {
            Error::invalid(
                op,
                format!("kernel {k} does not fit {l} steps with padding {padding}"),
            )
        })?;
    Ok(Conv1dShape {
        n,
        l,
        c,
        o,
        k,
        stride,
        padding,
    })
}

/// `Err` unless every tensor is an f32 tensor on the CPU device.
fn on_cpu(op: &'static str, tensors: &[&RawTensor]) -> Result<()> {
    for t in tensors {
        if t.dtype() != DType::F32 || !matches!(t.backend(), Backend::Cpu(_)) {
            return Err(Error::argument(
                op,
                format!(
                    "runs on f32 tensors of the CPU device, got {:?} on {} (on a GPU, convolve \
                     [batch, channels, steps] with conv2d)",
                    t.dtype(),
                    t.device()
                ),
            ));
        }
    }
    Ok(())
}

impl RawTensor {
    /// Channels-last 1-D convolution on the CPU: `[N, L, C]` by `[O, C, K]` weights (PyTorch's
    /// layout) plus an optional `[O]` bias, zero padding and a stride; `[N, Lout, O]` out, through
    /// ReLU with `relu`. The patches are strided views of the input: no im2col, no transposes.
    pub fn conv1d_channels_last(
        &self,
        weight: &RawTensor,
        bias: Option<&RawTensor>,
        stride: usize,
        padding: usize,
        relu: bool,
    ) -> Result<RawTensor> {
        let op = "conv1d_channels_last";
        let s = geometry(op, self, weight, stride, padding)?;
        let mut all = vec![self, weight];
        all.extend(bias);
        on_cpu(op, &all)?;
        if let Some(b) = bias
            && b.shape().dims() != [s.o]
        {
            return Err(Error::invalid(
                op,
                format!("bias {} must be [{}] (one per output)", b.shape(), s.o),
            ));
        }
        let (x, w) = (self.contiguous()?, weight.contiguous()?);
        let b = bias.map(RawTensor::contiguous).transpose()?;
        let Backend::Cpu(cpu) = x.backend() else {
            unreachable!("checked above")
        };
        let y = conv1d::forward(
            x.host_f32(),
            w.host_f32(),
            b.as_ref().map(RawTensor::host_f32),
            &s,
            relu,
        );
        Ok(RawTensor::from_host_f32(y, [s.n, s.out_len(), s.o], cpu))
    }

    /// Gradients of [`RawTensor::conv1d_channels_last`] for `grad_out` `[N, Lout, O]`; with
    /// `relu_out` (the forward's ReLU output) ReLU's mask is applied first.
    pub fn conv1d_channels_last_backward(
        grad_out: &RawTensor,
        relu_out: Option<&RawTensor>,
        input: &RawTensor,
        weight: &RawTensor,
        (stride, padding): (usize, usize),
        wanted: Conv2dWanted,
    ) -> Result<Conv2dGrads> {
        let op = "conv1d_channels_last_backward";
        let s = geometry(op, input, weight, stride, padding)?;
        let mut all = vec![grad_out, input, weight];
        all.extend(relu_out);
        on_cpu(op, &all)?;
        let expected = [s.n, s.out_len(), s.o];
        if all
            .iter()
            .enumerate()
            .any(|(i, t)| (i == 0 || i == 3) && t.shape().dims() != expected)
        {
            return Err(Error::invalid(
                op,
                format!("gradient {} must be {expected:?}", grad_out.shape()),
            ));
        }
        let masked;
        let g = match relu_out {
            Some(y) => {
                masked = grad_out.binary(BinaryOp::ReluBackward, y)?;
                masked.contiguous()?
            }
            None => grad_out.contiguous()?,
        };
        let (x, w) = (input.contiguous()?, weight.contiguous()?);
        let Backend::Cpu(cpu) = x.backend() else {
            unreachable!("checked above")
        };
        let grads = conv1d::backward(
            g.host_f32(),
            x.host_f32(),
            w.host_f32(),
            &s,
            (wanted.input, wanted.weight, wanted.bias),
        );
        Ok(Conv2dGrads {
            input: grads
                .input
                .map(|v| RawTensor::from_host_f32(v, [s.n, s.l, s.c], cpu)),
            weight: grads
                .weight
                .map(|v| RawTensor::from_host_f32(v, [s.o, s.c, s.k], cpu)),
            bias: grads.bias.map(|v| RawTensor::from_host_f32(v, [s.o], cpu)),
        })
    }
}
