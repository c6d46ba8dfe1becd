//! Neural-network ops — convolution, pooling, softmax, losses — with their backward kernels.

use kiln_device::{BinaryOp, Conv2dParams, Pool2dParams, RawTensor, Result};

use crate::Tensor;

impl Tensor {
    /// 2-D convolution of `[N, Cin, H, W]` with `[Cout, Cin, KH, KW]` weights and an optional bias.
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        params: Conv2dParams,
    ) -> Result<Tensor> {
        let y = self
            .raw()
            .conv2d(weight.raw(), bias.map(Tensor::raw), params)?;
        let (x, w) = (self.raw().clone(), weight.raw().clone());
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        let has_bias = bias.is_some();
        // The input gradient is the costliest kernel; a first layer's input does not need it.
        let (need_dx, need_dw) = (self.requires_grad(), weight.requires_grad());
        Ok(Tensor::from_op("conv2d", y, &inputs, move |g| {
            let dx = need_dx
                .then(|| RawTensor::conv2d_input_grad(g, &w, x.shape().clone(), params))
                .transpose()?;
            let mut grads = vec![dx];
            if need_dw && has_bias {
                let (dw, db) =
                    RawTensor::conv2d_weight_bias_grad(g, &x, w.shape().clone(), params)?;
                grads.extend([Some(dw), Some(db)]);
            } else {
                let dw = need_dw
                    .then(|| RawTensor::conv2d_weight_grad(g, &x, w.shape().clone(), params))
                    .transpose()?;
                grads.push(dw);
                if has_bias {
                    grads.push(Some(RawTensor::conv2d_bias_grad(g)?));
                }
            }
            Ok(grads)
        }))
    }

    /// 2-D max pooling.
    pub fn max_pool2d(&self, params: Pool2dParams) -> Result<Tensor> {
        let (y, indices) = self.raw().max_pool2d(params)?;
        let input = self.shape().clone();
        Ok(Tensor::from_op("max_pool2d", y, &[self], move |g| {
            Ok(vec![Some(RawTensor::max_pool2d_backward(
                g, &indices, input, params,
            )?)])
        }))
    }

    /// 2-D average pooling (padded taps not counted).
    pub fn avg_pool2d(&self, params: Pool2dParams) -> Result<Tensor> {
        let y = self.raw().avg_pool2d(params)?;
        let input = self.shape().clone();
        Ok(Tensor::from_op("avg_pool2d", y, &[self], move |g| {
            Ok(vec![Some(RawTensor::avg_pool2d_backward(
                g, input, params,
            )?)])
        }))
    }

    /// Softmax along `axis`.
    pub fn softmax(&self, axis: isize) -> Result<Tensor> {
        let y = self.raw().softmax(axis)?;
        let out = y.clone();
        Ok(Tensor::from_op("softmax", y, &[self], move |g| {
            Ok(vec![Some(RawTensor::softmax_backward(&out, g, axis)?)])
        }))
    }

    /// Log-softmax along `axis`.
    pub fn log_softmax(&self, axis: isize) -> Result<Tensor> {
        let y = self.raw().log_softmax(axis)?;
        let out = y.clone();
        Ok(Tensor::from_op("log_softmax", y, &[self], move |g| {
            Ok(vec![Some(RawTensor::log_softmax_backward(&out, g, axis)?)])
        }))
    }

    /// Records a fused loss: `(loss, d loss / d prediction)` from the kernel; the gradient is scaled
    /// by the loss's upstream gradient. Targets get no gradient.
    fn fused_loss(
        op: &'static str,
        prediction: &Tensor,
        targets: &Tensor,
        (loss, grad): (RawTensor, RawTensor),
    ) -> Tensor {
        Tensor::from_op(op, loss, &[prediction, targets], move |g| {
            Ok(vec![Some(grad.binary(BinaryOp::Mul, g)?), None])
        })
    }

    /// Softmax cross-entropy of `[N, C]` logits against `[N]` u32 class labels, averaged over N.
    pub fn cross_entropy(&self, labels: &Tensor) -> Result<Tensor> {
        let out = RawTensor::cross_entropy(self.raw(), labels.raw())?;
        Ok(Tensor::fused_loss("cross_entropy", self, labels, out))
    }

    /// Softmax cross-entropy of `[N, C]` logits against `[N, C]` probabilities, averaged over N.
    pub fn cross_entropy_soft(&self, targets: &Tensor) -> Result<Tensor> {
        let out = RawTensor::cross_entropy_soft(self.raw(), targets.raw())?;
        Ok(Tensor::fused_loss("cross_entropy_soft", self, targets, out))
    }

    /// Binary cross-entropy on logits, averaged over all elements.
    pub fn bce_with_logits(&self, targets: &Tensor) -> Result<Tensor> {
        let out = RawTensor::bce_with_logits(self.raw(), targets.raw())?;
        Ok(Tensor::fused_loss("bce_with_logits", self, targets, out))
    }

    /// Mean squared error.
    pub fn mse(&self, targets: &Tensor) -> Result<Tensor> {
        let out = RawTensor::mse(self.raw(), targets.raw())?;
        Ok(Tensor::fused_loss("mse", self, targets, out))
    }
}
