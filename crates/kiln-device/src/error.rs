//! The one error type of kiln's device layer. Every variant names the op that failed and what to do.

use crate::{DType, Shape};

/// Result alias used throughout kiln.
pub type Result<T> = std::result::Result<T, Error>;

/// What went wrong, with the op, the shapes or sizes involved, and a hint at the fix.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Two shapes cannot be broadcast together (numpy rules).
    #[error(
        "{op}: shapes {lhs} and {rhs} cannot be broadcast together (each dimension must match or be 1; \
         reshape or unsqueeze one operand)"
    )]
    Broadcast {
        /// The op that was called.
        op: &'static str,
        /// Left operand's shape.
        lhs: Shape,
        /// Right operand's shape.
        rhs: Shape,
    },

    /// Operands of one op have different dtypes.
    #[error("{op}: dtype mismatch, {lhs:?} vs {rhs:?} (cast one operand with .cast(..) first)")]
    DTypeMismatch {
        /// The op that was called.
        op: &'static str,
        /// Left operand's dtype.
        lhs: DType,
        /// Right operand's dtype.
        rhs: DType,
    },

    /// The op does not compute in this dtype.
    #[error("{op}: dtype {dtype:?} is not supported ({hint})")]
    UnsupportedDType {
        /// The op that was called.
        op: &'static str,
        /// The offending dtype.
        dtype: DType,
        /// What to do instead.
        hint: &'static str,
    },

    /// Operands live on different devices.
    #[error(
        "{op}: operands live on different devices ({lhs} and {rhs}); move one with .to_device(..)"
    )]
    DeviceMismatch {
        /// The op that was called.
        op: &'static str,
        /// Description of the first operand's device.
        lhs: String,
        /// Description of the second operand's device.
        rhs: String,
    },

    /// A shape argument is invalid for the op (element count, dimension, range).
    #[error("{op}: {message}")]
    InvalidShape {
        /// The op that was called.
        op: &'static str,
        /// The shapes involved and the fix.
        message: String,
    },

    /// An argument's value is outside what the op accepts (a rate, a size, a split, a name that does
    /// not exist): fix the call.
    #[error("{op}: {message}")]
    InvalidArgument {
        /// The op that was called.
        op: &'static str,
        /// The offending value and what is accepted.
        message: String,
    },

    /// The API was used in an order or state it does not allow (`fit` before `compile`, a layer
    /// used before it was built, `backward` twice through one graph).
    #[error("{op}: {message}")]
    Usage {
        /// The op that was called.
        op: &'static str,
        /// What is missing and what to call first.
        message: String,
    },

    /// A buffer would exceed the adapter's limits.
    #[error(
        "{op}: {what} of {bytes} bytes exceeds the GPU adapter's limit of {limit} bytes \
         (split the tensor, use a smaller batch, or run on the CPU device)"
    )]
    TooLarge {
        /// The op that was called.
        op: &'static str,
        /// Which limit (buffer size or storage binding size).
        what: &'static str,
        /// Requested size in bytes.
        bytes: u64,
        /// The adapter's limit in bytes.
        limit: u64,
    },

    /// The GPU ran out of memory, even after kiln gave its pooled buffers back to the driver.
    #[error(
        "{op}: the GPU is out of memory allocating {bytes} bytes ({message}); use smaller batches or \
         tensors, free tensors you no longer need, or run on the CPU device"
    )]
    DeviceOutOfMemory {
        /// The op that was called.
        op: &'static str,
        /// Requested size in bytes.
        bytes: u64,
        /// The driver's message.
        message: String,
    },

    /// The host could not allocate a tensor's memory.
    #[error("{op}: cannot allocate {bytes} bytes of host memory (use smaller tensors or batches)")]
    HostAlloc {
        /// The op that was called.
        op: &'static str,
        /// Requested size in bytes (saturated).
        bytes: u64,
    },

    /// The GPU device was lost (driver reset, device destroyed); nothing more can run on it.
    #[error("{op}: the GPU device is lost ({reason}); create a new Device and move the data again")]
    DeviceLost {
        /// The op that was called.
        op: &'static str,
        /// Why the device was lost, as the driver reported it.
        reason: String,
    },

    /// wgpu reported a validation or out-of-memory error while running the op.
    #[error("{op}: GPU error: {message}")]
    Gpu {
        /// The op (or batch of ops) that was running.
        op: String,
        /// wgpu's message.
        message: String,
    },

    /// Input data an op cannot accept (a label out of range, ...). On the GPU this is detected inside
    /// the kernel and reported at the next readback.
    #[error("{op}: {message}")]
    InvalidData {
        /// The op that detected it (on the GPU: the readback that reported it).
        op: &'static str,
        /// What was wrong and where.
        message: String,
    },

    /// No GPU adapter matched the request, or the device request failed.
    #[error("no usable GPU adapter: {reason}")]
    NoAdapter {
        /// Why each candidate was rejected.
        reason: String,
    },
}

/// What kind of mistake or fault an [`Error`] is, for callers that handle kinds differently
/// (retry on another device, ask the user for other data, fix the program).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Shapes that do not fit the op ([`Error::InvalidShape`], [`Error::Broadcast`]).
    Shape,
    /// A dtype the op does not take ([`Error::DTypeMismatch`], [`Error::UnsupportedDType`]).
    DType,
    /// Operands on different devices ([`Error::DeviceMismatch`]).
    Device,
    /// An argument's value out of range ([`Error::InvalidArgument`]).
    Argument,
    /// The API used in the wrong order or state ([`Error::Usage`]).
    Usage,
    /// Data or files with bad contents ([`Error::InvalidData`]).
    Data,
    /// Memory or adapter limits ([`Error::TooLarge`], [`Error::HostAlloc`],
    /// [`Error::DeviceOutOfMemory`]).
    Resource,
    /// The GPU device is gone ([`Error::DeviceLost`]).
    DeviceLost,
    /// A GPU error wgpu reported ([`Error::Gpu`]).
    Gpu,
    /// No GPU adapter ([`Error::NoAdapter`]).
    NoAdapter,
}

impl Error {
    /// This error's [`ErrorKind`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Broadcast { .. } | Error::InvalidShape { .. } => ErrorKind::Shape,
            Error::DTypeMismatch { .. } | Error::UnsupportedDType { .. } => ErrorKind::DType,
            Error::DeviceMismatch { .. } => ErrorKind::Device,
            Error::InvalidArgument { .. } => ErrorKind::Argument,
            Error::Usage { .. } => ErrorKind::Usage,
            Error::InvalidData { .. } => ErrorKind::Data,
            Error::TooLarge { .. } | Error::HostAlloc { .. } | Error::DeviceOutOfMemory { .. } => {
                ErrorKind::Resource
            }
            Error::DeviceLost { .. } => ErrorKind::DeviceLost,
            Error::Gpu { .. } => ErrorKind::Gpu,
            Error::NoAdapter { .. } => ErrorKind::NoAdapter,
        }
    }

    /// Shorthand for an [`Error::InvalidShape`].
    pub fn invalid(op: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidShape {
            op,
            message: message.into(),
        }
    }

    /// Shorthand for an [`Error::InvalidArgument`].
    pub fn argument(op: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            message: message.into(),
        }
    }

    /// Shorthand for an [`Error::Usage`].
    pub fn usage(op: &'static str, message: impl Into<String>) -> Self {
        Error::Usage {
            op,
            message: message.into(),
        }
    }

    /// Shorthand for an [`Error::InvalidData`].
    pub fn data(op: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidData {
            op,
            message: message.into(),
        }
    }

    /// The same kind of error reported by `op` with `what` in front of its message (a loss naming
    /// itself around the op that failed), for the kinds that carry a message (shape, argument,
    /// usage, data). The others — device faults (lost device, GPU errors, exhausted memory), dtype
    /// and device mismatches — pass through unchanged, so callers still see what happened.
    pub fn within(self, op: &'static str, what: &str) -> Self {
        let message = format!("{what}: {self}");
        match self {
            Error::InvalidShape { .. } | Error::Broadcast { .. } => Error::invalid(op, message),
            Error::InvalidArgument { .. } => Error::argument(op, message),
            Error::Usage { .. } => Error::usage(op, message),
            Error::InvalidData { .. } => Error::data(op, message),
            other => other,
        }
    }
}
