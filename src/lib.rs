//! # kiln
//!
//! Train neural networks on whatever GPU a machine has — through wgpu on Vulkan, Metal, DX12 or GL —
//! or on the native CPU backend when there is none.
//!
//! This facade re-exports kiln's crates; `use kiln::prelude::*` brings in what a program needs.
//!
//! ```no_run
//! use kiln::prelude::*;
//! let device = Device::auto();
//! println!("running on {device}");
//! let x = RawTensor::from_slice(&[1.0f32, -2.0, 3.0], [3], &device)?;
//! println!("{:?}", x.unary(UnaryOp::Relu)?.to_vec::<f32>()?);
//! # Ok::<(), kiln::Error>(())
//! ```

pub use kiln_autograd as autograd;
pub use kiln_device as device;
pub use kiln_device::{Error, ErrorKind, Result};
pub use kiln_nn as nn;
pub use kiln_nn::data::datasets;

/// Everything a typical kiln program uses.
pub mod prelude {
    pub use kiln_autograd::{
        AttentionWeights, BatchNormStats, Gradients, RecurrentOutput, RecurrentWeights, Tensor,
        Var, check_gradients, no_grad,
    };
    pub use kiln_device::{
        AdamConfig, Backend, BinaryOp, Conv2dParams, DType, Device, DeviceInfo, Error, ErrorKind,
        GpuOptions, Pool2dParams, RawTensor, ReduceOp, Result, RmsPropConfig, SgdConfig, Shape,
        UnaryOp,
    };
    pub use kiln_nn::prelude::*;
}

/// The README's code blocks run as doctests, so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
