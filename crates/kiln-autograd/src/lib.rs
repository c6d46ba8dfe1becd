//! kiln's autograd: [`Tensor`], an n-dimensional array on a device that records the ops applied to it
//! and differentiates them in reverse. Gradients stay on the device.
//!
//! ```no_run
//! use kiln_autograd::{Tensor, Var};
//! use kiln_device::Device;
//! let device = Device::auto();
//! let w = Var::new(Tensor::from_slice(&[0.5f32, -1.0], [2, 1], &device)?);
//! let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0], [2, 2], &device)?;
//! let loss = x.matmul(&w.tensor())?.relu()?.sum_all()?;
//! let grads = loss.backward()?;
//! println!("{:?}", grads.get(&w.tensor()).unwrap().to_vec::<f32>()?);
//! # Ok::<(), kiln_device::Error>(())
//! ```

mod gradcheck;
mod graph;
mod ops;
mod tensor;
mod var;

pub use gradcheck::{GradCheck, check_gradients};
pub use graph::{Gradients, is_grad_enabled, no_grad};
pub use ops::{AttentionWeights, BatchNormStats, RecurrentOutput, RecurrentWeights};
pub use tensor::{Tensor, TensorId};
pub use var::Var;
