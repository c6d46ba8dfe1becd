//! `RawTensor`: an n-dimensional array on a device, without autograd. Views share storage; every op
//! checks its operands and returns an error naming the op and the shapes.

use std::sync::Arc;

use half::f16;

use crate::cpu::{self, CpuData, CpuDevice};
use crate::gpu::{self, GpuBuffer};
use crate::{DType, Device, Element, Error, Layout, Result, Shape, Storage};

/// Where an op's kernels run.
pub(crate) enum Backend<'a> {
    /// The CPU backend.
    Cpu(&'a CpuDevice),
    /// A GPU runtime.
    Gpu(&'a Arc<gpu::GpuContext>),
}

/// An n-dimensional array of one dtype on one device.
#[derive(Clone)]
pub struct RawTensor {
    storage: Arc<Storage>,
    layout: Layout,
    dtype: DType,
    device: Device,
}

impl std::fmt::Debug for RawTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RawTensor({} {} on {})",
            self.dtype,
            self.layout.shape(),
            self.device
        )
    }
}

impl RawTensor {
    pub(crate) fn new(storage: Storage, shape: Shape, dtype: DType, device: &Device) -> Self {
        RawTensor {
            storage: Arc::new(storage),
            layout: Layout::contiguous(shape),
            dtype,
            device: device.clone(),
        }
    }

    fn view(&self, layout: Layout) -> Self {
        RawTensor {
            storage: self.storage.clone(),
            layout,
            dtype: self.dtype,
            device: self.device.clone(),
        }
    }

    pub(crate) fn from_cpu_data(data: CpuData, shape: Shape, device: &Device) -> Result<Self> {
        let dtype = data.dtype();
        let storage = match device {
            Device::Cpu(cpu) => Storage::Cpu(cpu.store(data)),
            Device::Gpu(gpu) => {
                let bytes: &[u8] = match &data {
                    CpuData::F32(v) => bytemuck::cast_slice(v),
                    CpuData::F16(v) => bytemuck::cast_slice(v),
                    CpuData::U32(v) => bytemuck::cast_slice(v),
                };
                let buffer = gpu.ctx.upload("from_slice", bytes)?;
                cpu::host_pool::give_back_data(data);
                Storage::Gpu(buffer)
            }
        };
        Ok(RawTensor::new(storage, shape, dtype, device))
    }

    /// A tensor of `shape` holding `data` (row-major), on `device`.
    pub fn from_slice<T: Element>(
        data: &[T],
        shape: impl Into<Shape>,
        device: &Device,
    ) -> Result<Self> {
        let shape = shape.into();
        if data.len() != shape.numel() {
            return Err(Error::invalid(
                "from_slice",
                format!(
                    "{} values cannot fill shape {shape} ({} elements)",
                    data.len(),
                    shape.numel()
                ),
            ));
        }
        if let Device::Gpu(gpu) = device {
            // Straight from the caller's slice: no host copy.
            let buffer = gpu.ctx.upload("from_slice", bytemuck::cast_slice(data))?;
            return Ok(RawTensor::new(
                Storage::Gpu(buffer),
                shape,
                T::DTYPE,
                device,
            ));
        }
        let data = match T::DTYPE {
            DType::F32 => CpuData::F32(cpu::host_pool::copied(bytemuck::cast_slice(data))),
            DType::F16 => CpuData::F16(bytemuck::cast_slice(data).to_vec()),
            DType::U32 => CpuData::U32(cpu::host_pool::copied(bytemuck::cast_slice(data))),
        };
        RawTensor::from_cpu_data(data, shape, device)
    }

    /// A tensor of `shape` with every element equal to `value`.
    pub fn full(
        shape: impl Into<Shape>,
        value: f64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let shape = shape.into();
        let n = shape.numel();
        match device {
            Device::Cpu(_) => {
                let op = "full";
                let data = match dtype {
                    DType::F32 => CpuData::F32(cpu::host_pool::try_filled(op, n, value as f32)?),
                    DType::F16 => CpuData::F16(cpu::filled(op, n, f16::from_f64(value))?),
                    DType::U32 => CpuData::U32(cpu::host_pool::try_filled(op, n, value as u32)?),
                };
                RawTensor::from_cpu_data(data, shape, device)
            }
            Device::Gpu(gpu) => {
                let buffer = gpu::copy::fill(&gpu.ctx, n, dtype, value)?;
                Ok(RawTensor::new(Storage::Gpu(buffer), shape, dtype, device))
            }
        }
    }

    /// A tensor of zeros.
    pub fn zeros(shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Self> {
        RawTensor::full(shape, 0.0, dtype, device)
    }

    /// A tensor of ones.
    pub fn ones(shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Self> {
        RawTensor::full(shape, 1.0, dtype, device)
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        self.layout.shape()
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device the elements live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Shape, strides and offset into the storage.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape().numel()
    }

    /// The elements in row-major order, copied to the host. `T` must match the dtype.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        if T::DTYPE != self.dtype {
            return Err(Error::UnsupportedDType {
                op: "to_vec",
                dtype: self.dtype,
                hint: "read it as its own dtype, or .cast(..) it first",
            });
        }
        let data = self.host_data()?;
        let values: Vec<T> = match &data {
            CpuData::F32(v) => bytemuck::cast_slice(v).to_vec(),
            CpuData::F16(v) => bytemuck::cast_slice(v).to_vec(),
            CpuData::U32(v) => bytemuck::cast_slice(v).to_vec(),
        };
        // The caller gets its own copy; the gathered buffer goes back to the host pool.
        cpu::host_pool::give_back_data(data);
        Ok(values)
    }

    /// The elements converted to f32, copied to the host.
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        self.cast(DType::F32)?.to_vec::<f32>()
    }

    /// The elements as contiguous host data.
    fn host_data(&self) -> Result<CpuData> {
        match &*self.storage {
            Storage::Cpu(buffer) => Ok(cpu::copy::gather_data(buffer.data(), &self.layout)),
            Storage::Gpu(buffer) => {
                let elem = self.dtype.size_in_bytes();
                let offset_bytes = self.layout.offset() * elem;
                let len = self.numel() * elem;
                let readable = self.layout.is_contiguous()
                    && offset_bytes.is_multiple_of(4)
                    && (offset_bytes + len).next_multiple_of(4) as u64 <= buffer.len_bytes();
                let gpu = self.gpu_context();
                let bytes = if readable {
                    gpu.read("to_vec", buffer, offset_bytes as u64, len)?
                } else {
                    let packed = self.contiguous()?;
                    let Storage::Gpu(packed_buffer) = &*packed.storage else {
                        unreachable!("a GPU tensor's copy stays on the GPU")
                    };
                    gpu.read("to_vec", packed_buffer, 0, len)?
                };
                Ok(match self.dtype {
                    DType::F32 => CpuData::F32(bytemuck::pod_collect_to_vec(&bytes)),
                    DType::F16 => CpuData::F16(bytemuck::pod_collect_to_vec(&bytes)),
                    DType::U32 => CpuData::U32(bytemuck::pod_collect_to_vec(&bytes)),
                })
            }
        }
    }

    fn gpu_context(&self) -> &Arc<gpu::GpuContext> {
        match &self.device {
            Device::Gpu(gpu) => &gpu.ctx,
            Device::Cpu(_) => unreachable!("GPU storage belongs to a GPU device"),
        }
    }

    /// Where this tensor's kernels run, with what they need to run there.
    pub(crate) fn backend(&self) -> Backend<'_> {
        match (&*self.storage, &self.device) {
            (Storage::Cpu(_), Device::Cpu(cpu)) => Backend::Cpu(cpu),
            (Storage::Gpu(_), Device::Gpu(gpu)) => Backend::Gpu(&gpu.ctx),
            _ => unreachable!("storage always matches its device"),
        }
    }

    /// The f32 elements of a contiguous CPU tensor (kernel input).
    pub(crate) fn host_f32(&self) -> &[f32] {
        match &*self.storage {
            Storage::Cpu(buffer) => match buffer.data() {
                CpuData::F32(v) => &v[self.layout.offset()..self.layout.offset() + self.numel()],
                _ => unreachable!("callers check the dtype"),
            },
            Storage::Gpu(_) => unreachable!("callers check the device"),
        }
    }

    /// The elements of a CPU tensor, gathered in row-major order.
    pub(crate) fn host_data_contiguous(&self) -> CpuData {
        match &*self.storage {
            Storage::Cpu(buffer) => cpu::copy::gather_data(buffer.data(), &self.layout),
            Storage::Gpu(_) => unreachable!("callers check the device"),
        }
    }

    /// The whole f32 storage of a CPU tensor, for kernels that walk `layout()` themselves.
    pub(crate) fn host_storage_f32(&self) -> &[f32] {
        match &*self.storage {
            Storage::Cpu(buffer) => match buffer.data() {
                CpuData::F32(v) => v,
                _ => unreachable!("callers check the dtype"),
            },
            Storage::Gpu(_) => unreachable!("callers check the device"),
        }
    }

    /// The u32 elements of a contiguous CPU tensor (kernel input).
    pub(crate) fn host_u32(&self) -> &[u32] {
        match &*self.storage {
            Storage::Cpu(buffer) => match buffer.data() {
                CpuData::U32(v) => &v[self.layout.offset()..self.layout.offset() + self.numel()],
                _ => unreachable!("callers check the dtype"),
            },
            Storage::Gpu(_) => unreachable!("callers check the device"),
        }
    }

    /// The buffer of a GPU tensor (kernel input; contiguous tensors start at offset 0).
    pub(crate) fn buffer(&self) -> &GpuBuffer {
        match &*self.storage {
            Storage::Gpu(buffer) => buffer,
            Storage::Cpu(_) => unreachable!("callers check the device"),
        }
    }

    /// A contiguous f32 CPU tensor holding `values` (kernel output).
    pub(crate) fn from_host_f32(
        values: Vec<f32>,
        shape: impl Into<Shape>,
        cpu: &CpuDevice,
    ) -> Self {
        let device = Device::Cpu(cpu.clone());
        RawTensor::new(
            Storage::Cpu(cpu.store(CpuData::F32(values))),
            shape.into(),
            DType::F32,
            &device,
        )
    }

    /// A contiguous u32 CPU tensor holding `values` (kernel output).
    pub(crate) fn from_host_u32(
        values: Vec<u32>,
        shape: impl Into<Shape>,
        cpu: &CpuDevice,
    ) -> Self {
        let device = Device::Cpu(cpu.clone());
        RawTensor::new(
            Storage::Cpu(cpu.store(CpuData::U32(values))),
            shape.into(),
            DType::U32,
            &device,
        )
    }

    /// A contiguous GPU tensor over `buffer` (kernel output).
    pub(crate) fn from_gpu(
        buffer: GpuBuffer,
        shape: impl Into<Shape>,
        dtype: DType,
        like: &RawTensor,
    ) -> Self {
        RawTensor::new(Storage::Gpu(buffer), shape.into(), dtype, &like.device)
    }

    /// `Err` unless every tensor lives on the device of the first.
    pub(crate) fn check_same_device(op: &'static str, tensors: &[&RawTensor]) -> Result<()> {
        for other in &tensors[1..] {
            if !other.device.same_device(&tensors[0].device) {
                return Err(Error::DeviceMismatch {
                    op,
                    lhs: tensors[0].device.to_string(),
                    rhs: other.device.to_string(),
                });
            }
        }
        Ok(())
    }

    /// `Err` naming `op` (with `hint`, the fix) unless the tensor holds `dtype`.
    pub fn expect_dtype(&self, op: &'static str, dtype: DType, hint: &'static str) -> Result<()> {
        if self.dtype == dtype {
            Ok(())
        } else {
            Err(Error::UnsupportedDType {
                op,
                dtype: self.dtype,
                hint,
            })
        }
    }

    /// A copy of this tensor on `device`.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        if self.device.same_device(device) {
            return Ok(self.clone());
        }
        RawTensor::from_cpu_data(self.host_data()?, self.shape().clone(), device)
    }

    /// The same elements with a new shape (a view when the layout allows, else a copy).
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        match self.layout.reshape("reshape", shape.clone())? {
            Some(layout) => Ok(self.view(layout)),
            None => {
                let packed = self.contiguous()?;
                let layout = packed.layout.reshape("reshape", shape)?;
                Ok(packed.view(layout.expect("contiguous layouts reshape as views")))
            }
        }
    }

    /// Dimensions reordered (a view): output dimension `i` is input dimension `order[i]`.
    pub fn permute(&self, order: &[usize]) -> Result<Self> {
        Ok(self.view(self.layout.permute(order)?))
    }

    /// Two dimensions swapped (a view).
    pub fn transpose(&self, dim0: usize, dim1: usize) -> Result<Self> {
        Ok(self.view(self.layout.transpose(dim0, dim1)?))
    }

    /// Broadcast to `shape` (a view with zero strides).
    pub fn broadcast_to(&self, shape: impl Into<Shape>) -> Result<Self> {
        Ok(self.view(self.layout.broadcast_to("broadcast_to", &shape.into())?))
    }

    /// Elements `start .. start + len` of dimension `dim` (a view).
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Self> {
        Ok(self.view(self.layout.narrow(dim, start, len)?))
    }

    /// Dimension `dim` (of size 1) removed (a view).
    pub fn squeeze(&self, dim: usize) -> Result<Self> {
        Ok(self.view(self.layout.squeeze(dim)?))
    }

    /// A dimension of size 1 inserted at `dim` (a view).
    pub fn unsqueeze(&self, dim: usize) -> Result<Self> {
        Ok(self.view(self.layout.unsqueeze(dim)?))
    }

    /// Whether the elements are stored row-major without gaps.
    pub fn is_contiguous(&self) -> bool {
        self.layout.is_contiguous()
    }

    /// A row-major copy when this is a strided view; `self` when it already is contiguous.
    pub fn contiguous(&self) -> Result<Self> {
        if self.is_contiguous() && self.layout.offset() == 0 {
            return Ok(self.clone());
        }
        self.convert(self.dtype)
    }

    /// The elements converted to `dtype` (f32↔f16 round to nearest; f32→u32 truncates, negatives → 0).
    pub fn cast(&self, dtype: DType) -> Result<Self> {
        if dtype == self.dtype {
            return Ok(self.clone());
        }
        self.convert(dtype)
    }

    /// A contiguous copy converted to `dtype`.
    fn convert(&self, dtype: DType) -> Result<Self> {
        let shape = self.shape().clone();
        match &*self.storage {
            Storage::Cpu(buffer) => RawTensor::from_cpu_data(
                cpu::copy::cast(buffer.data(), &self.layout, dtype),
                shape,
                &self.device,
            ),
            Storage::Gpu(buffer) => {
                let out = gpu::copy::gather(
                    self.gpu_context(),
                    "cast",
                    buffer,
                    &self.layout,
                    self.dtype,
                    dtype,
                )?;
                Ok(RawTensor::new(
                    Storage::Gpu(out),
                    shape,
                    dtype,
                    &self.device,
                ))
            }
        }
    }

    /// Runs an f32 computation on `inputs`: f16 inputs are computed in f32 and the result cast back,
    /// u32 inputs are refused.
    pub(crate) fn float_op(
        op: &'static str,
        inputs: &[&RawTensor],
        compute: impl FnOnce(&[RawTensor]) -> Result<RawTensor>,
    ) -> Result<RawTensor> {
        let mut outputs = RawTensor::float_op_outputs(op, inputs, |t| Ok(vec![Some(compute(t)?)]))?;
        Ok(outputs
            .pop()
            .flatten()
            .expect("the computation returned its one output"))
    }

    /// [`RawTensor::float_op`] for a computation with several outputs (`None` where one is not
    /// produced); each output is cast back to the inputs' dtype.
    pub(crate) fn float_op_outputs(
        op: &'static str,
        inputs: &[&RawTensor],
        compute: impl FnOnce(&[RawTensor]) -> Result<Vec<Option<RawTensor>>>,
    ) -> Result<Vec<Option<RawTensor>>> {
        let dtype = inputs[0].dtype;
        for other in &inputs[1..] {
            if other.dtype != dtype {
                return Err(Error::DTypeMismatch {
                    op,
                    lhs: dtype,
                    rhs: other.dtype,
                });
            }
        }
        RawTensor::check_same_device(op, inputs)?;
        match dtype {
            DType::F32 => compute(&inputs.iter().map(|t| (*t).clone()).collect::<Vec<_>>()),
            DType::F16 => {
                let widened = inputs
                    .iter()
                    .map(|t| t.cast(DType::F32))
                    .collect::<Result<Vec<_>>>()?;
                compute(&widened)?
                    .into_iter()
                    .map(|t| t.map(|t| t.cast(DType::F16)).transpose())
                    .collect()
            }
            DType::U32 => Err(Error::UnsupportedDType {
                op,
                dtype,
                hint: "cast to f32 first with .cast(DType::F32)",
            }),
        }
    }

    /// The GPU buffer behind this tensor, if it lives on a GPU.
    pub fn gpu_buffer(&self) -> Option<&GpuBuffer> {
        match &*self.storage {
            Storage::Gpu(buffer) => Some(buffer),
            Storage::Cpu(_) => None,
        }
    }
}
