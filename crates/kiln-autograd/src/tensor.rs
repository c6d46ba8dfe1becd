//! `Tensor`: a [`RawTensor`] plus the history autograd needs. Cheap to clone (an `Arc`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kiln_device::{DType, Device, Element, RawTensor, Result, Shape};

use crate::graph::{self, BackwardFn, Gradients, Node};

/// Identifies a tensor (and its gradient in [`Gradients`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(u64);

impl TensorId {
    pub(crate) fn fresh() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        TensorId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

struct Inner {
    id: TensorId,
    value: RawTensor,
    requires_grad: bool,
    node: Option<Node>,
}

/// An n-dimensional array on a device that records the ops applied to it, so that
/// [`Tensor::backward`] can differentiate them. Every op returns a `Result` whose error names the op
/// and the shapes.
#[derive(Clone)]
pub struct Tensor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor({} {} on {}{})",
            self.dtype(),
            self.shape(),
            self.device(),
            if self.requires_grad() {
                ", requires grad"
            } else {
                ""
            }
        )
    }
}

impl Tensor {
    /// A tensor without history around `value`.
    pub fn from_raw(value: RawTensor) -> Tensor {
        Tensor::leaf(value, false, TensorId::fresh())
    }

    pub(crate) fn leaf(value: RawTensor, requires_grad: bool, id: TensorId) -> Tensor {
        Tensor {
            inner: Arc::new(Inner {
                id,
                value,
                requires_grad,
                node: None,
            }),
        }
    }

    /// The output of op `op` on `inputs`: recorded with `backward` when grad mode is on and an input
    /// requires grad, otherwise a plain tensor.
    pub(crate) fn from_op(
        op: &'static str,
        value: RawTensor,
        inputs: &[&Tensor],
        backward: impl FnOnce(&RawTensor) -> Result<Vec<Option<RawTensor>>> + Send + Sync + 'static,
    ) -> Tensor {
        if !graph::is_grad_enabled() || !inputs.iter().any(|t| t.requires_grad()) {
            return Tensor::from_raw(value);
        }
        let backward: BackwardFn = Box::new(backward);
        Tensor {
            inner: Arc::new(Inner {
                id: TensorId::fresh(),
                value,
                requires_grad: true,
                node: Some(Node::new(
                    op,
                    inputs.iter().map(|t| (*t).clone()).collect(),
                    backward,
                )),
            }),
        }
    }

    /// A tensor of `shape` holding `data` (row-major), on `device`.
    pub fn from_slice<T: Element>(
        data: &[T],
        shape: impl Into<Shape>,
        device: &Device,
    ) -> Result<Tensor> {
        RawTensor::from_slice(data, shape, device).map(Tensor::from_raw)
    }

    /// Like [`Tensor::from_slice`], taking ownership of the data.
    pub fn from_vec<T: Element>(
        data: Vec<T>,
        shape: impl Into<Shape>,
        device: &Device,
    ) -> Result<Tensor> {
        Tensor::from_slice(&data, shape, device)
    }

    /// A tensor of `shape` with every element `value`.
    pub fn full(
        shape: impl Into<Shape>,
        value: f64,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        RawTensor::full(shape, value, dtype, device).map(Tensor::from_raw)
    }

    /// f32 zeros.
    pub fn zeros(shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
        Tensor::full(shape, 0.0, DType::F32, device)
    }

    /// f32 ones.
    pub fn ones(shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
        Tensor::full(shape, 1.0, DType::F32, device)
    }

    /// The same values, marked as a leaf whose gradient [`Tensor::backward`] returns.
    pub fn requires_grad_(self) -> Tensor {
        Tensor::leaf(self.inner.value.clone(), true, self.id())
    }

    /// The same values without history: gradients do not flow through it.
    pub fn detach(&self) -> Tensor {
        Tensor::from_raw(self.inner.value.clone())
    }

    /// The identity of this tensor.
    pub fn id(&self) -> TensorId {
        self.inner.id
    }

    /// Whether gradients flow to or through this tensor.
    pub fn requires_grad(&self) -> bool {
        self.inner.requires_grad
    }

    pub(crate) fn node(&self) -> Option<&Node> {
        self.inner.node.as_ref()
    }

    /// The values, without history.
    pub fn raw(&self) -> &RawTensor {
        &self.inner.value
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        self.inner.value.shape()
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        self.shape().dims()
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.inner.value.dtype()
    }

    /// The device holding the values.
    pub fn device(&self) -> &Device {
        self.inner.value.device()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.inner.value.numel()
    }

    /// The elements in row-major order, copied to the host (`T` must match the dtype).
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        self.inner.value.to_vec()
    }

    /// The single element of a one-element f32 tensor (a loss, a metric).
    pub fn to_scalar(&self) -> Result<f32> {
        let values = self.inner.value.to_f32_vec()?;
        match values.as_slice() {
            [v] => Ok(*v),
            _ => Err(kiln_device::Error::invalid(
                "to_scalar",
                format!(
                    "tensor {} has {} elements, not one",
                    self.shape(),
                    values.len()
                ),
            )),
        }
    }

    /// A copy on `device`; gradients flow back to this tensor's device.
    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        let value = self.inner.value.to_device(device)?;
        let home = self.device().clone();
        Ok(Tensor::from_op("to_device", value, &[self], move |g| {
            Ok(vec![Some(g.to_device(&home)?)])
        }))
    }

    /// Gradients of this scalar with respect to every leaf that requires grad.
    pub fn backward(&self) -> Result<Gradients> {
        if self.numel() != 1 {
            return Err(kiln_device::Error::invalid(
                "backward",
                format!(
                    "called on a tensor of shape {} without a seed gradient; reduce it to a scalar \
                     (e.g. .mean_all()) or call backward_with(seed)",
                    self.shape()
                ),
            ));
        }
        graph::backward(self, graph::ones_like(self)?)
    }

    /// Gradients when this tensor's own gradient is `seed` (same shape).
    pub fn backward_with(&self, seed: &Tensor) -> Result<Gradients> {
        if seed.shape() != self.shape() {
            return Err(kiln_device::Error::invalid(
                "backward_with",
                format!(
                    "seed {} must have the tensor's shape {}",
                    seed.shape(),
                    self.shape()
                ),
            ));
        }
        graph::backward(self, seed.raw().clone())
    }
}

/// Creation of seeded random and evenly spaced tensors.
impl Tensor {
    /// f32 values uniform in `[0, 1)`, generated on `device` from `seed`.
    pub fn rand(shape: impl Into<Shape>, seed: u64, device: &Device) -> Result<Tensor> {
        Tensor::uniform(shape, 0.0, 1.0, seed, device)
    }

    /// f32 values uniform in `[low, high)`, generated on `device` from `seed`.
    pub fn uniform(
        shape: impl Into<Shape>,
        low: f32,
        high: f32,
        seed: u64,
        device: &Device,
    ) -> Result<Tensor> {
        RawTensor::rand_uniform(shape, low, high, seed, device).map(Tensor::from_raw)
    }

    /// Standard-normal f32 values, generated on `device` from `seed`.
    pub fn randn(shape: impl Into<Shape>, seed: u64, device: &Device) -> Result<Tensor> {
        RawTensor::rand_normal(shape, 0.0, 1.0, seed, device).map(Tensor::from_raw)
    }

    /// `[0, 1, .., n - 1]` as f32.
    pub fn arange(n: usize, device: &Device) -> Result<Tensor> {
        Tensor::from_vec((0..n).map(|i| i as f32).collect::<Vec<_>>(), [n], device)
    }
}
