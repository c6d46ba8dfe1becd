//! Reductions along one axis or all of them: sum, mean, max, min, and argmax.

use crate::tensor::Backend;
use crate::{BinaryOp, DType, Error, RawTensor, Result, Shape, cpu, gpu};

/// How a reduction combines elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Sum (0 for an empty axis).
    Sum,
    /// Arithmetic mean (NaN for an empty axis, as in PyTorch).
    Mean,
    /// Largest element (NaN if any is NaN).
    Max,
    /// Smallest element (NaN if any is NaN).
    Min,
}

impl ReduceOp {
    /// The op's name in errors.
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
        }
    }
}

/// A reduction seen as `[outer, axis, inner]` and the shape of its result.
pub(crate) struct ReduceGeometry {
    pub outer: usize,
    pub axis: usize,
    pub inner: usize,
    pub out_shape: Shape,
}

impl ReduceGeometry {
    fn new(op: &'static str, shape: &Shape, axis: Option<isize>, keepdim: bool) -> Result<Self> {
        let dims = shape.dims();
        match axis {
            None => Ok(ReduceGeometry {
                outer: 1,
                axis: shape.numel(),
                inner: 1,
                out_shape: if keepdim {
                    vec![1; dims.len()].into()
                } else {
                    Shape::from(())
                },
            }),
            Some(axis) => {
                let a = shape.axis(op, axis)?;
                let mut out: Vec<usize> = dims.to_vec();
                if keepdim {
                    out[a] = 1;
                } else {
                    out.remove(a);
                }
                Ok(ReduceGeometry {
                    outer: dims[..a].iter().product(),
                    axis: dims[a],
                    inner: dims[a + 1..].iter().product(),
                    out_shape: out.into(),
                })
            }
        }
    }

    pub(crate) fn as_array(&self) -> [usize; 3] {
        [self.outer, self.axis, self.inner]
    }
}

impl RawTensor {
    /// Reduces along `axis` (negative counts from the end; `None` reduces every element), keeping the
    /// reduced dimension as size 1 when `keepdim`.
    pub fn reduce(&self, op: ReduceOp, axis: Option<isize>, keepdim: bool) -> Result<RawTensor> {
        let name = op.name();
        let g = ReduceGeometry::new(name, self.shape(), axis, keepdim)?;
        if g.axis == 0 && matches!(op, ReduceOp::Max | ReduceOp::Min) && g.outer * g.inner > 0 {
            return Err(Error::invalid(
                name,
                format!(
                    "cannot take the {name} of an empty axis of {}",
                    self.shape()
                ),
            ));
        }
        RawTensor::float_op(name, &[self], |t| {
            let x = t[0].contiguous()?;
            Ok(match x.backend() {
                Backend::Cpu(cpu) => RawTensor::from_host_f32(
                    cpu::reduce::reduce(op, x.host_f32(), g.as_array()),
                    g.out_shape.clone(),
                    cpu,
                ),
                Backend::Gpu(ctx) => {
                    let out = gpu::reduce::reduce(ctx, name, op, x.buffer(), g.as_array())?;
                    RawTensor::from_gpu(out, g.out_shape.clone(), DType::F32, &x)
                }
            })
        })
    }

    /// The gradient of a max or min reduction of `self` along `axis`: `grad` (the upstream
    /// gradient, shaped like `extreme`, the reduction's result with or without the kept dimension)
    /// goes to the elements equal to the extreme, split evenly between ties, as PyTorch's
    /// `amax`/`amin` do (a NaN extreme gives NaN). On the CPU one pass per output row; on a GPU a
    /// composition of the elementwise kernels.
    pub fn extreme_backward(
        &self,
        extreme: &RawTensor,
        grad: &RawTensor,
        axis: Option<isize>,
    ) -> Result<RawTensor> {
        let op = "extreme_backward";
        let geometry = ReduceGeometry::new(op, self.shape(), axis, false)?;
        let per_output = geometry.outer * geometry.inner;
        if extreme.numel() != per_output || grad.numel() != per_output {
            return Err(Error::invalid(
                op,
                format!(
                    "extreme {} and gradient {} must have one value per output of reducing {}",
                    extreme.shape(),
                    grad.shape(),
                    self.shape()
                ),
            ));
        }
        RawTensor::float_op(op, &[self, extreme, grad], |t| {
            if let Backend::Cpu(cpu) = t[0].backend() {
                let (x, e, g) = (t[0].contiguous()?, t[1].contiguous()?, t[2].contiguous()?);
                let dx = cpu::reduce::extreme_backward(
                    x.host_f32(),
                    e.host_f32(),
                    g.host_f32(),
                    geometry.as_array(),
                );
                return Ok(RawTensor::from_host_f32(dx, t[0].shape().clone(), cpu));
            }
            // Both as [outer, 1, inner] against the input viewed as [outer, axis, inner].
            let [outer, _, inner] = geometry.as_array();
            let x = t[0].reshape(geometry.as_array().to_vec())?;
            let e = t[1].reshape(vec![outer, 1, inner])?;
            let g = t[2].reshape(vec![outer, 1, inner])?;
            let hits = x.binary(BinaryOp::Equal, &e)?;
            let count = hits.reduce(ReduceOp::Sum, Some(1), true)?;
            hits.binary(BinaryOp::Mul, &g.binary(BinaryOp::Div, &count)?)?
                .reshape(t[0].shape().clone())
        })
    }

    /// Sum along `axis` (or of everything).
    pub fn sum(&self, axis: Option<isize>, keepdim: bool) -> Result<RawTensor> {
        self.reduce(ReduceOp::Sum, axis, keepdim)
    }

    /// Mean along `axis` (or of everything).
    pub fn mean(&self, axis: Option<isize>, keepdim: bool) -> Result<RawTensor> {
        self.reduce(ReduceOp::Mean, axis, keepdim)
    }

    /// Maximum along `axis` (or of everything).
    pub fn max(&self, axis: Option<isize>, keepdim: bool) -> Result<RawTensor> {
        self.reduce(ReduceOp::Max, axis, keepdim)
    }

    /// Minimum along `axis` (or of everything).
    pub fn min(&self, axis: Option<isize>, keepdim: bool) -> Result<RawTensor> {
        self.reduce(ReduceOp::Min, axis, keepdim)
    }

    /// Index (u32) of the largest element along `axis` — the first one on ties; `None` gives the flat
    /// index into the whole tensor.
    pub fn argmax(&self, axis: Option<isize>, keepdim: bool) -> Result<RawTensor> {
        let op = "argmax";
        let g = ReduceGeometry::new(op, self.shape(), axis, keepdim)?;
        if g.axis == 0 {
            return Err(Error::invalid(
                op,
                format!(
                    "cannot take the argmax of an empty axis of {}",
                    self.shape()
                ),
            ));
        }
        if !self.dtype().is_float() {
            return Err(Error::UnsupportedDType {
                op,
                dtype: self.dtype(),
                hint: "cast to f32 first",
            });
        }
        let x = self.cast(DType::F32)?.contiguous()?;
        Ok(match x.backend() {
            Backend::Cpu(cpu) => RawTensor::from_host_u32(
                cpu::reduce::argmax(x.host_f32(), g.as_array()),
                g.out_shape,
                cpu,
            ),
            Backend::Gpu(ctx) => {
                let out = gpu::reduce::argmax(ctx, x.buffer(), g.as_array())?;
                RawTensor::from_gpu(out, g.out_shape, DType::U32, &x)
            }
        })
    }
}
