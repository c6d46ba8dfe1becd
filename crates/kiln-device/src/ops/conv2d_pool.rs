//! `max_pool2d(relu(conv2d(x)))` as one op — a convolution layer with ReLU followed by max pooling,
//! the block of the reference CNN — and its backward. On the CPU each image's convolution output is
//! pooled while it is in cache and never written whole; the backward scatters the pooled gradient
//! to each window's maximum per image, inside the convolution's one-pass backward. Other devices
//! run the same arithmetic as the separate ops (fused conv + ReLU, then pooling).

use crate::ops::conv2d::{ConvGeometry, check_grad};
use crate::ops::pool::{PoolGeometry, check_plane_indices};
use crate::tensor::Backend;
use crate::{
    BinaryOp, Conv2dGrads, Conv2dParams, Conv2dWanted, DType, Error, Pool2dParams, RawTensor,
    Result, Shape, cpu,
};

/// The convolution's and the pooling's geometry, both checked.
fn geometry(
    op: &'static str,
    input: &Shape,
    weight: &Shape,
    conv: Conv2dParams,
    pool: Pool2dParams,
) -> Result<(ConvGeometry, PoolGeometry, Shape)> {
    let g = ConvGeometry::new(op, input, weight, conv)?;
    let (p, pooled_shape) = PoolGeometry::new(op, &g.output_shape(), pool)?;
    Ok((g, p, pooled_shape))
}

impl RawTensor {
    /// `max_pool2d(relu(conv2d(self, weight, bias)))` in one op: the pooled `[N, Cout, PH, PW]`
    /// values and the u32 argmax of every window within its convolution-output plane (as
    /// [`RawTensor::max_pool2d`] returns them). f32 only, as max pooling is.
    pub fn conv2d_relu_max_pool2d(
        &self,
        weight: &RawTensor,
        bias: Option<&RawTensor>,
        conv: Conv2dParams,
        pool: Pool2dParams,
    ) -> Result<(RawTensor, RawTensor)> {
        let op = "conv2d_relu_max_pool2d";
        let (g, p, pooled_shape) = geometry(op, self.shape(), weight.shape(), conv, pool)?;
        g.check_bias(op, bias)?;
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        RawTensor::check_same_device(op, &inputs)?;
        let t: Vec<RawTensor> = (inputs.iter())
            .map(|t| {
                t.expect_dtype(op, DType::F32, "cast to f32 first")?;
                t.contiguous()
            })
            .collect::<Result<_>>()?;
        let Backend::Cpu(cpu) = t[0].backend() else {
            let y = t[0].conv2d_relu(&t[1], t.get(2), conv)?;
            return y.max_pool2d(pool);
        };
        let bias = t.get(2).map(RawTensor::host_f32);
        let (values, indices) =
            cpu::conv2d::forward_max_pool(t[0].host_f32(), t[1].host_f32(), bias, &g, &p);
        Ok((
            RawTensor::from_host_f32(values, pooled_shape.clone(), cpu),
            RawTensor::from_host_u32(indices, pooled_shape, cpu),
        ))
    }

    /// The gradients that `wanted` names of [`RawTensor::conv2d_relu_max_pool2d`], from the pooled
    /// output's gradient, the pooled values and indices it returned, the input and the weights.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_relu_max_pool2d_backward(
        grad_pooled: &RawTensor,
        pooled: &RawTensor,
        indices: &RawTensor,
        input: &RawTensor,
        weight: &RawTensor,
        conv: Conv2dParams,
        pool: Pool2dParams,
        wanted: Conv2dWanted,
    ) -> Result<Conv2dGrads> {
        let op = "conv2d_relu_max_pool2d_backward";
        let (g, p, pooled_shape) = geometry(op, input.shape(), weight.shape(), conv, pool)?;
        for (what, t) in [
            ("gradient", grad_pooled),
            ("values", pooled),
            ("indices", indices),
        ] {
            if t.shape() != &pooled_shape {
                return Err(Error::invalid(
                    op,
                    format!(
                        "pooled {what} {} do not match the pooled output {pooled_shape}",
                        t.shape()
                    ),
                ));
            }
        }
        indices.expect_dtype(op, DType::U32, "pass the indices the forward returned")?;
        RawTensor::check_same_device(op, &[grad_pooled, pooled, indices, input, weight])?;
        let Backend::Cpu(cpu) = grad_pooled.backend() else {
            // The separate ops' backward: ReLU mask on the pooled values, unpooling, convolution.
            let masked = grad_pooled.binary(BinaryOp::ReluBackward, pooled)?;
            let conv_shape = g.output_shape();
            let dy = RawTensor::max_pool2d_backward(&masked, indices, conv_shape, pool)?;
            check_grad(op, &dy, &g)?;
            return RawTensor::conv2d_backward(&dy, None, input, weight, conv, wanted);
        };
        let t: Vec<RawTensor> = [grad_pooled, pooled, indices, input, weight]
            .into_iter()
            .map(RawTensor::contiguous)
            .collect::<Result<_>>()?;
        for t in [&t[0], &t[1], &t[3], &t[4]] {
            t.expect_dtype(op, DType::F32, "cast to f32 first")?;
        }
        check_plane_indices(op, t[2].host_u32(), (g.oh, g.ow))?;
        let grads = cpu::conv2d::backward(
            cpu::conv2d::OutputGrad::MaxPooled {
                dy: t[0].host_f32(),
                values: t[1].host_f32(),
                indices: t[2].host_u32(),
                pooled: p.oh * p.ow,
            },
            t[3].host_f32(),
            t[4].host_f32(),
            &g,
            (wanted.input, wanted.weight, wanted.bias),
        );
        let [input, weight, bias] = grads.into_tensors(&g, cpu);
        Ok(Conv2dGrads {
            input,
            weight,
            bias,
        })
    }
}
