//! Reductions along one axis or all of them: sum, mean, max, min, and argmax.

use crate::tensor::Backend;
use crate::{DType, Error, RawTensor, Result, Shape, cpu, gpu};

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
