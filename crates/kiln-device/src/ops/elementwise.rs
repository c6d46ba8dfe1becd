//! Elementwise ops: the unary and binary op vocabulary shared by both backends, and the `RawTensor`
//! methods running them. The numeric codes are the `OP` override constant of
//! `shaders/elementwise.wgsl`; keep the two in sync (a test checks every code on both devices).

use crate::tensor::Backend;
use crate::{DType, RawTensor, Result, Shape, cpu, gpu};

/// A function applied to each element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `max(x, 0)`
    Relu,
    /// `1 / (1 + exp(-x))`
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// `e^x`
    Exp,
    /// Natural logarithm (`-inf` at 0, NaN below, as in PyTorch).
    Log,
    /// Square root.
    Sqrt,
    /// `-x`
    Neg,
    /// `|x|`
    Abs,
    /// -1, 0 or 1 (NaN stays NaN)
    Sign,
}

impl UnaryOp {
    /// Every unary op, for tests and docs.
    pub const ALL: [UnaryOp; 9] = [
        UnaryOp::Relu,
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Sign,
    ];

    /// The op's name as errors and fixtures spell it.
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Relu => "relu",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Neg => "neg",
            UnaryOp::Abs => "abs",
            UnaryOp::Sign => "sign",
        }
    }

    /// The `OP` code of `shaders/elementwise.wgsl`.
    pub(crate) fn shader_code(self) -> u32 {
        self as u32
    }

    /// The CPU reference of the op.
    #[inline(always)]
    pub(crate) fn apply(self, x: f32) -> f32 {
        match self {
            UnaryOp::Relu => x.max(0.0),
            UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Neg => -x,
            UnaryOp::Abs => x.abs(),
            UnaryOp::Sign if x == 0.0 || x.is_nan() => x,
            UnaryOp::Sign => x.signum(),
        }
    }
}

/// A function of two elements, applied with numpy broadcasting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b`
    Div,
    /// `max(a, b)` (NaN if either is NaN, as in PyTorch)
    Maximum,
    /// 1 where `a > b`, else 0
    Greater,
    /// 1 where `a == b`, else 0
    Equal,
    /// `a * (b > 0)`: ReLU's backward, the gradient `a` passed where the input `b` was positive
    ReluBackward,
}

impl BinaryOp {
    /// Every binary op, for tests and docs.
    pub const ALL: [BinaryOp; 8] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Maximum,
        BinaryOp::Greater,
        BinaryOp::Equal,
        BinaryOp::ReluBackward,
    ];

    /// The op's name as errors and fixtures spell it.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Greater => "greater",
            BinaryOp::Equal => "equal",
            BinaryOp::ReluBackward => "relu_backward",
        }
    }

    /// The op's name for its tensor-scalar form.
    pub fn scalar_name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add_scalar",
            BinaryOp::Sub => "sub_scalar",
            BinaryOp::Mul => "mul_scalar",
            BinaryOp::Div => "div_scalar",
            BinaryOp::Maximum => "maximum_scalar",
            BinaryOp::Greater => "greater_scalar",
            BinaryOp::Equal => "equal_scalar",
            BinaryOp::ReluBackward => "relu_backward_scalar",
        }
    }

    /// The `OP` code of `shaders/elementwise.wgsl`.
    pub(crate) fn shader_code(self) -> u32 {
        self as u32
    }

    /// The CPU reference of the op.
    #[inline(always)]
    pub(crate) fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Maximum => {
                if a.is_nan() || b.is_nan() {
                    f32::NAN
                } else {
                    a.max(b)
                }
            }
            BinaryOp::Greater => f32::from(u8::from(a > b)),
            BinaryOp::Equal => f32::from(u8::from(a == b)),
            BinaryOp::ReluBackward => a * f32::from(u8::from(b > 0.0)),
        }
    }
}

impl RawTensor {
    /// `op` applied to every element.
    pub fn unary(&self, op: UnaryOp) -> Result<Self> {
        RawTensor::float_op(op.name(), &[self], |t| {
            let x = &t[0];
            Ok(match x.backend() {
                Backend::Cpu(cpu) => {
                    let values = cpu::elementwise::unary(op, x.host_storage_f32(), x.layout());
                    RawTensor::from_host_f32(values, x.shape().clone(), cpu)
                }
                Backend::Gpu(ctx) => {
                    let out = gpu::elementwise::unary(ctx, op, x.buffer(), x.layout())?;
                    RawTensor::from_gpu(out, x.shape().clone(), DType::F32, x)
                }
            })
        })
    }

    /// `op(self, scalar)` for every element.
    pub fn scalar(&self, op: BinaryOp, scalar: f32) -> Result<Self> {
        RawTensor::float_op(op.scalar_name(), &[self], |t| {
            let x = &t[0];
            Ok(match x.backend() {
                Backend::Cpu(cpu) => {
                    let values =
                        cpu::elementwise::scalar(op, x.host_storage_f32(), x.layout(), scalar);
                    RawTensor::from_host_f32(values, x.shape().clone(), cpu)
                }
                Backend::Gpu(ctx) => {
                    let out = gpu::elementwise::scalar(ctx, op, x.buffer(), x.layout(), scalar)?;
                    RawTensor::from_gpu(out, x.shape().clone(), DType::F32, x)
                }
            })
        })
    }

    /// `op(self, other)` with numpy broadcasting.
    pub fn binary(&self, op: BinaryOp, other: &RawTensor) -> Result<Self> {
        let name = op.name();
        let shape = Shape::broadcast(name, self.shape(), other.shape())?;
        RawTensor::float_op(name, &[self, other], |t| {
            let la = t[0].layout().broadcast_to(name, &shape)?;
            let lb = t[1].layout().broadcast_to(name, &shape)?;
            Ok(match t[0].backend() {
                Backend::Cpu(cpu) => {
                    let (a, b) = (t[0].host_storage_f32(), t[1].host_storage_f32());
                    let values = cpu::elementwise::binary(op, a, &la, b, &lb, &shape);
                    RawTensor::from_host_f32(values, shape.clone(), cpu)
                }
                Backend::Gpu(ctx) => {
                    let out = gpu::elementwise::binary(
                        ctx,
                        op,
                        (t[0].buffer(), &la),
                        (t[1].buffer(), &lb),
                    )?;
                    RawTensor::from_gpu(out, shape.clone(), DType::F32, &t[0])
                }
            })
        })
    }
}
