//! Host-side layout and dtype conversion: gathering strided views and casting.

use half::f16;

use super::CpuData;
use crate::{DType, Layout};

/// The elements of `layout` over `data`, in row-major order.
pub(crate) fn gather<T: Copy + Send + Sync>(data: &[T], layout: &Layout) -> Vec<T> {
    if layout.is_contiguous() {
        let start = layout.offset();
        return data[start..start + layout.shape().numel()].to_vec();
    }
    layout.indices().map(|i| data[i]).collect()
}

/// The elements of `layout` over `data` as a contiguous buffer of the same dtype.
pub(crate) fn gather_data(data: &CpuData, layout: &Layout) -> CpuData {
    match data {
        CpuData::F32(v) => CpuData::F32(gather(v, layout)),
        CpuData::F16(v) => CpuData::F16(gather(v, layout)),
        CpuData::U32(v) => CpuData::U32(gather(v, layout)),
    }
}

/// The elements of `layout` over `data`, converted to f32.
pub(crate) fn gather_f32(data: &CpuData, layout: &Layout) -> Vec<f32> {
    match data {
        CpuData::F32(v) => gather(v, layout),
        CpuData::F16(v) => layout.indices().map(|i| v[i].to_f32()).collect(),
        CpuData::U32(v) => layout.indices().map(|i| v[i] as f32).collect(),
    }
}

/// Contiguous f32 values converted to `dtype` (u32 truncates toward zero; negatives and NaN become 0).
pub(crate) fn from_f32(values: Vec<f32>, dtype: DType) -> CpuData {
    match dtype {
        DType::F32 => CpuData::F32(values),
        DType::F16 => CpuData::F16(values.into_iter().map(f16::from_f32).collect()),
        DType::U32 => CpuData::U32(
            values
                .into_iter()
                .map(|x| if x > 0.0 { x as u32 } else { 0 })
                .collect(),
        ),
    }
}

/// The elements of `layout` over `data`, converted to `dtype`.
pub(crate) fn cast(data: &CpuData, layout: &Layout, dtype: DType) -> CpuData {
    if data.dtype() == dtype {
        gather_data(data, layout)
    } else if let (CpuData::U32(v), DType::F32) = (data, dtype) {
        CpuData::F32(layout.indices().map(|i| v[i] as f32).collect())
    } else {
        from_f32(gather_f32(data, layout), dtype)
    }
}
