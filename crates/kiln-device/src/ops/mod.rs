//! The ops of [`crate::RawTensor`], one module per kernel family. Each checks its operands (shapes,
//! dtypes, devices) and dispatches to the CPU twin in `cpu/` or the GPU launcher in `gpu/`.

pub(crate) mod concat;
pub(crate) mod conv1d;
pub(crate) mod conv2d;
pub(crate) mod conv2d_pool;
pub(crate) mod elementwise;
pub(crate) mod index;
pub(crate) mod loss;
pub(crate) mod matmul;
pub(crate) mod norm;
pub(crate) mod optimizer;
pub(crate) mod pool;
pub(crate) mod random;
pub(crate) mod recurrent;
pub(crate) mod reduce;
pub(crate) mod softmax;
pub(crate) mod topk;

pub use conv2d::{Conv2dGrads, Conv2dParams, Conv2dWanted};
pub use elementwise::{BinaryOp, UnaryOp};
pub use optimizer::{AdamConfig, RmsPropConfig, RmsPropState, SgdConfig};
pub use pool::Pool2dParams;
pub use recurrent::CellKind;
pub use reduce::ReduceOp;
