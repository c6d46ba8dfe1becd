//! Neural-network ops — convolution, pooling, softmax, losses — with their backward kernels.

use kiln_device::{
    BinaryOp, Conv2dGrads, Conv2dParams, Conv2dWanted, Error, Pool2dParams, RawTensor, Result,
};

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
        self.record_conv2d("conv2d", y, weight, bias, params, false)
    }

    /// `relu(conv2d(..))` recorded as one op: one kernel forward (the ReLU applied as outputs are
    /// stored) and no separate ReLU pass backward (its mask is applied as the convolution's backward
    /// reads the gradient).
    pub fn conv2d_relu(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        params: Conv2dParams,
    ) -> Result<Tensor> {
        let y = self
            .raw()
            .conv2d_relu(weight.raw(), bias.map(Tensor::raw), params)?;
        self.record_conv2d("conv2d_relu", y, weight, bias, params, true)
    }

    fn record_conv2d(
        &self,
        name: &'static str,
        y: RawTensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        params: Conv2dParams,
        relu: bool,
    ) -> Result<Tensor> {
        self.record_conv(
            name,
            y,
            weight,
            bias,
            relu,
            move |g, relu_out, x, w, wanted| {
                RawTensor::conv2d_backward(g, relu_out, x, w, params, wanted)
            },
        )
    }

    /// Records a convolution (`y` from `self`, `weight` and `bias`, through ReLU with `relu`, or
    /// any op of these three operands) whose gradients `backward(grad, relu output, input, weight,
    /// wanted)` computes.
    fn record_conv(
        &self,
        name: &'static str,
        y: RawTensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        relu: bool,
        backward: impl FnOnce(
            &RawTensor,
            Option<&RawTensor>,
            &RawTensor,
            &RawTensor,
            Conv2dWanted,
        ) -> Result<Conv2dGrads>
        + Send
        + Sync
        + 'static,
    ) -> Result<Tensor> {
        let (x, w) = (self.raw().clone(), weight.raw().clone());
        let relu_out = relu.then(|| y.clone());
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        let has_bias = bias.is_some();
        // The input gradient is the costliest kernel; a first layer's input does not need it.
        let wanted = Conv2dWanted {
            input: self.requires_grad(),
            weight: weight.requires_grad(),
            bias: bias.is_some_and(Tensor::requires_grad),
        };
        Ok(Tensor::from_op(name, y, &inputs, move |g| {
            let grads = backward(g, relu_out.as_ref(), &x, &w, wanted)?;
            let mut out = vec![grads.input, grads.weight];
            if has_bias {
                out.push(grads.bias);
            }
            Ok(out)
        }))
    }

    /// 1-D convolution of `[N, C, L]` with `[O, C, K]` weights and an optional `[O]` bias, zero
    /// padding `padding` on both sides (PyTorch's `conv1d`): the 2-D GEMM kernels on a height of 1.
    pub fn conv1d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        padding: usize,
    ) -> Result<Tensor> {
        self.conv1d_with(weight, bias, (stride, padding), false)
    }

    /// Channels-last 1-D convolution: `[N, L, C]` sequences by `[O, C, K]` weights (+ an `[O]` bias)
    /// into `[N, Lout, O]`, through ReLU with `relu` — the layout of a Conv1D layer on an
    /// Embedding's output. On the CPU one op whose patches are strided views of the input (no
    /// transposes, no im2col, gradients alike); on a GPU the channels-first convolution between two
    /// transposes.
    pub fn conv1d_channels_last(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        (stride, padding): (usize, usize),
        relu: bool,
    ) -> Result<Tensor> {
        if self.device().is_gpu() {
            let x = self.permute(&[0, 2, 1])?;
            let y = x.conv1d_with(weight, bias, (stride, padding), relu)?;
            return y.permute(&[0, 2, 1]);
        }
        let y = self.raw().conv1d_channels_last(
            weight.raw(),
            bias.map(Tensor::raw),
            stride,
            padding,
            relu,
        )?;
        self.record_conv(
            "conv1d_channels_last",
            y,
            weight,
            bias,
            relu,
            move |g, relu_out, x, w, wanted| {
                RawTensor::conv1d_channels_last_backward(
                    g,
                    relu_out,
                    x,
                    w,
                    (stride, padding),
                    wanted,
                )
            },
        )
    }

    /// `relu(conv1d(..))` as one op, like [`Tensor::conv2d_relu`].
    pub fn conv1d_relu(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        padding: usize,
    ) -> Result<Tensor> {
        self.conv1d_with(weight, bias, (stride, padding), true)
    }

    fn conv1d_with(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        (stride, padding): (usize, usize),
        relu: bool,
    ) -> Result<Tensor> {
        let op = "conv1d";
        let (&[n, c, _], &[o, wc, _]) = (self.dims(), weight.dims()) else {
            return Err(Error::invalid(
                op,
                format!(
                    "expects input [batch, channels, length] and weight [out, channels, kernel], got {} and {}",
                    self.shape(),
                    weight.shape()
                ),
            ));
        };
        if c != wc {
            return Err(Error::invalid(
                op,
                format!(
                    "input {} has {c} channels, weight {} expects {wc}",
                    self.shape(),
                    weight.shape()
                ),
            ));
        }
        let params = Conv2dParams {
            stride: [1, stride],
            padding: [0, padding],
        };
        let (x, w) = (self.unsqueeze(2)?, weight.unsqueeze(2)?);
        let y = if relu {
            x.conv2d_relu(&w, bias, params)?
        } else {
            x.conv2d(&w, bias, params)?
        };
        let length = y.dims()[3];
        y.reshape([n, o, length])
    }

    /// `max_pool2d(relu(conv2d(..)))` recorded as one op (a convolution layer with ReLU followed by
    /// max pooling): on the CPU each image is convolved and pooled while in cache, and the
    /// convolution's output is never kept for backward — the pooled values and argmax are enough.
    pub fn conv2d_relu_max_pool2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        conv: Conv2dParams,
        pool: Pool2dParams,
    ) -> Result<Tensor> {
        let (y, indices) =
            self.raw()
                .conv2d_relu_max_pool2d(weight.raw(), bias.map(Tensor::raw), conv, pool)?;
        let pooled = y.clone();
        self.record_conv(
            "conv2d_relu_max_pool2d",
            y,
            weight,
            bias,
            false,
            move |g, _, x, w, wanted| {
                RawTensor::conv2d_relu_max_pool2d_backward(
                    g, &pooled, &indices, x, w, conv, pool, wanted,
                )
            },
        )
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
