//! kiln's device layer: [`Device`] (the native CPU backend or a wgpu GPU), [`DType`], [`Shape`],
//! [`Layout`], [`Storage`], and [`RawTensor`], an n-dimensional array whose ops run as WGSL compute
//! shaders on the GPU or as native code on the CPU — with the same results on both.
//!
//! ```no_run
//! use kiln_device::{Device, RawTensor, UnaryOp, BinaryOp};
//! let device = Device::auto(); // KILN_DEVICE, else the best hardware GPU, else the CPU
//! let x = RawTensor::from_slice(&[-1.0f32, 2.0, -3.0, 4.0], [2, 2], &device)?;
//! let y = x.unary(UnaryOp::Relu)?.binary(BinaryOp::Add, &x)?;
//! assert_eq!(y.to_vec::<f32>()?, vec![-1.0, 4.0, -3.0, 8.0]);
//! # Ok::<(), kiln_device::Error>(())
//! ```

pub mod cpu;
mod device;
mod dtype;
mod error;
pub mod gpu;
mod layout;
mod ops;
mod shaders;
mod shape;
mod storage;
mod tensor;
pub mod testing;

pub use cpu::host_pool::{HostPoolStats, MAX_POOLED_BYTES, host_pool_stats, release_host_pool};
pub use cpu::{SimdLevel, simd_level};
pub use device::{Device, DeviceInfo};
pub use dtype::{DType, Element};
pub use error::{Error, ErrorKind, Result};
pub use gpu::{
    Backend, GpuOptions, MemoryStats, PowerPreference, Profile, ProfileRow, RuntimeStats,
};
pub use layout::{Layout, StridedIndices};
pub use ops::{
    AdamConfig, BinaryOp, CellKind, Conv2dGrads, Conv2dParams, Conv2dWanted, Pool2dParams,
    ReduceOp, RmsPropConfig, RmsPropState, SgdConfig, UnaryOp,
};
pub use shape::Shape;
pub use storage::Storage;
pub use tensor::RawTensor;
