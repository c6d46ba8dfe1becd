//! Host-side layout and dtype conversion: gathering strided views and casting.

use half::f16;

use super::{CpuData, host_pool};
use crate::layout::coalesce_dims;
use crate::{DType, Layout};

/// The elements of `layout` over `data`, in row-major order, appended to the empty buffer `out`:
/// row by row of the innermost (merged) dimension, a slice copy where that dimension is contiguous,
/// a strided loop otherwise.
fn gather<T: Copy + Send + Sync>(data: &[T], layout: &Layout, mut out: Vec<T>) -> Vec<T> {
    let numel = layout.shape().numel();
    if layout.is_contiguous() {
        let start = layout.offset();
        out.extend_from_slice(&data[start..start + numel]);
        return out;
    }
    let (dims, strides) = coalesce_dims(layout.shape().dims(), &[layout.strides()]);
    let strides = &strides[0];
    let (Some(&inner), Some(&inner_stride)) = (dims.last(), strides.last()) else {
        // every dimension has size 1: one element
        out.resize(numel, data[layout.offset()]);
        return out;
    };
    let (outer_dims, outer_strides) = (&dims[..dims.len() - 1], &strides[..strides.len() - 1]);
    let mut position = vec![0usize; outer_dims.len()];
    let mut base = layout.offset();
    for _ in 0..numel / inner.max(1) {
        if inner_stride == 1 {
            out.extend_from_slice(&data[base..base + inner]);
        } else {
            out.extend((0..inner).map(|c| data[base + c * inner_stride]));
        }
        // the next row: an odometer over the outer dimensions
        for d in (0..outer_dims.len()).rev() {
            position[d] += 1;
            base += outer_strides[d];
            if position[d] < outer_dims[d] {
                break;
            }
            base -= outer_strides[d] * outer_dims[d];
            position[d] = 0;
        }
    }
    out
}

/// The elements of `layout` over `data` as a contiguous buffer of the same dtype (f32 and u32 in
/// pooled memory).
pub(crate) fn gather_data(data: &CpuData, layout: &Layout) -> CpuData {
    let numel = layout.shape().numel();
    match data {
        CpuData::F32(v) => CpuData::F32(gather(v, layout, host_pool::take(numel))),
        CpuData::F16(v) => CpuData::F16(gather(v, layout, Vec::with_capacity(numel))),
        CpuData::U32(v) => CpuData::U32(gather(v, layout, host_pool::take(numel))),
    }
}

/// The elements of `layout` over `data`, converted to f32.
pub(crate) fn gather_f32(data: &CpuData, layout: &Layout) -> Vec<f32> {
    match data {
        CpuData::F32(v) => gather(v, layout, host_pool::take(layout.shape().numel())),
        CpuData::F16(v) => host_pool::collect(
            layout.shape().numel(),
            layout.indices().map(|i| v[i].to_f32()),
        ),
        CpuData::U32(v) => host_pool::collect(
            layout.shape().numel(),
            layout.indices().map(|i| v[i] as f32),
        ),
    }
}

/// Contiguous f32 values converted to `dtype` (u32 truncates toward zero; negatives and NaN become 0).
pub(crate) fn from_f32(values: Vec<f32>, dtype: DType) -> CpuData {
    match dtype {
        DType::F32 => CpuData::F32(values),
        DType::F16 => {
            let halves = values.iter().map(|&x| f16::from_f32(x)).collect();
            host_pool::give_back(values);
            CpuData::F16(halves)
        }
        DType::U32 => {
            let ints = host_pool::collect(
                values.len(),
                values.iter().map(|&x| if x > 0.0 { x as u32 } else { 0 }),
            );
            host_pool::give_back(values);
            CpuData::U32(ints)
        }
    }
}

/// The elements of `layout` over `data`, converted to `dtype`.
pub(crate) fn cast(data: &CpuData, layout: &Layout, dtype: DType) -> CpuData {
    if data.dtype() == dtype {
        gather_data(data, layout)
    } else if let (CpuData::U32(v), DType::F32) = (data, dtype) {
        CpuData::F32(host_pool::collect(
            layout.shape().numel(),
            layout.indices().map(|i| v[i] as f32),
        ))
    } else {
        from_f32(gather_f32(data, layout), dtype)
    }
}

/// An output buffer that inputs are written into view by view (concat).
pub(crate) struct Scatter(CpuData);

impl Scatter {
    /// A zeroed buffer of `numel` elements.
    pub(crate) fn new(dtype: DType, numel: usize) -> Self {
        Scatter(match dtype {
            DType::F32 => CpuData::F32(host_pool::zeros(numel)),
            DType::F16 => CpuData::F16(vec![f16::ZERO; numel]),
            DType::U32 => CpuData::U32(host_pool::zeros(numel)),
        })
    }

    /// Writes the elements of `src` into the view `dst` of the buffer (same dtype and shape).
    pub(crate) fn write(&mut self, src: &crate::RawTensor, dst: &Layout) {
        let values = src.host_data_contiguous();
        match (&mut self.0, &values) {
            (CpuData::F32(out), CpuData::F32(v)) => {
                dst.indices().zip(v).for_each(|(i, &x)| out[i] = x)
            }
            (CpuData::F16(out), CpuData::F16(v)) => {
                dst.indices().zip(v).for_each(|(i, &x)| out[i] = x)
            }
            (CpuData::U32(out), CpuData::U32(v)) => {
                dst.indices().zip(v).for_each(|(i, &x)| out[i] = x)
            }
            _ => unreachable!("concat checks the dtypes"),
        }
        host_pool::give_back_data(values);
    }

    /// The filled buffer.
    pub(crate) fn finish(self) -> CpuData {
        self.0
    }
}
