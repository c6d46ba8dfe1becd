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
    /// GELU with the exact Gaussian CDF: `x Φ(x)` (PyTorch's default, Keras's `approximate=False`)
    Gelu,
    /// GELU's tanh approximation: `x/2 (1 + tanh(√(2/π) (x + 0.044715 x³)))`
    GeluTanh,
    /// `ln(1 + e^x)`, computed without overflow
    Softplus,
    /// SiLU (swish): `x σ(x)`
    Silu,
    /// The derivative of [`UnaryOp::Gelu`], `Φ(x) + x φ(x)` (for its backward)
    GeluGrad,
    /// The derivative of [`UnaryOp::GeluTanh`] (for its backward)
    GeluTanhGrad,
    /// The derivative of [`UnaryOp::Silu`], `σ(x) (1 + x (1 - σ(x)))` (for its backward)
    SiluGrad,
}

impl UnaryOp {
    /// Every unary op, for tests and docs.
    pub const ALL: [UnaryOp; 16] = [
        UnaryOp::Relu,
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Sign,
        UnaryOp::Gelu,
        UnaryOp::GeluTanh,
        UnaryOp::Softplus,
        UnaryOp::Silu,
        UnaryOp::GeluGrad,
        UnaryOp::GeluTanhGrad,
        UnaryOp::SiluGrad,
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
            UnaryOp::Gelu => "gelu",
            UnaryOp::GeluTanh => "gelu_tanh",
            UnaryOp::Softplus => "softplus",
            UnaryOp::Silu => "silu",
            UnaryOp::GeluGrad => "gelu_grad",
            UnaryOp::GeluTanhGrad => "gelu_tanh_grad",
            UnaryOp::SiluGrad => "silu_grad",
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
            UnaryOp::Gelu => 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)),
            UnaryOp::GeluTanh => 0.5 * x * (1.0 + gelu_tanh_inner(x).tanh()),
            UnaryOp::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            UnaryOp::Silu => x / (1.0 + (-x).exp()),
            UnaryOp::GeluGrad => {
                let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
                cdf + x * (-0.5 * x * x).exp() * INV_SQRT_2PI
            }
            UnaryOp::GeluTanhGrad => {
                let t = gelu_tanh_inner(x).tanh();
                let inner_grad = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_CUBIC * x * x);
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * inner_grad
            }
            UnaryOp::SiluGrad => {
                let s = 1.0 / (1.0 + (-x).exp());
                s * (1.0 + x * (1.0 - s))
            }
        }
    }
}

/// `1 / √(2π)`
const INV_SQRT_2PI: f32 = 0.398_942_3;
/// `√(2/π)`
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
/// The cubic coefficient of GELU's tanh approximation.
const GELU_TANH_CUBIC: f32 = 0.044_715;

fn gelu_tanh_inner(x: f32) -> f32 {
    SQRT_2_OVER_PI * (x + GELU_TANH_CUBIC * x * x * x)
}

/// The error function (Abramowitz & Stegun 7.1.26, absolute error below 1.5e-7): the same formula as
/// `erf_approx` in `shaders/elementwise.wgsl`, so both backends agree.
pub(crate) fn erf(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_7 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let y = 1.0 - poly * (-x * x).exp();
    y.copysign(x)
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
    /// Leaky ReLU of `a` with negative slope `b`: `a` where `a > 0`, else `b a`
    LeakyRelu,
    /// Leaky ReLU's derivative at `a` with slope `b`: 1 where `a > 0`, else `b`
    LeakyReluGrad,
    /// ELU of `a` with scale `b`: `a` where `a > 0`, else `b (e^a - 1)`
    Elu,
    /// ELU's derivative at `a` with scale `b`: 1 where `a > 0`, else `b e^a`
    EluGrad,
}

impl BinaryOp {
    /// Every binary op, for tests and docs.
    pub const ALL: [BinaryOp; 12] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Maximum,
        BinaryOp::Greater,
        BinaryOp::Equal,
        BinaryOp::ReluBackward,
        BinaryOp::LeakyRelu,
        BinaryOp::LeakyReluGrad,
        BinaryOp::Elu,
        BinaryOp::EluGrad,
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
            BinaryOp::LeakyRelu => "leaky_relu",
            BinaryOp::LeakyReluGrad => "leaky_relu_grad",
            BinaryOp::Elu => "elu",
            BinaryOp::EluGrad => "elu_grad",
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
            BinaryOp::LeakyRelu => "leaky_relu_scalar",
            BinaryOp::LeakyReluGrad => "leaky_relu_grad_scalar",
            BinaryOp::Elu => "elu_scalar",
            BinaryOp::EluGrad => "elu_grad_scalar",
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
            BinaryOp::LeakyRelu if a > 0.0 => a,
            BinaryOp::LeakyRelu => b * a,
            BinaryOp::LeakyReluGrad if a > 0.0 => 1.0,
            BinaryOp::LeakyReluGrad => b,
            BinaryOp::Elu if a > 0.0 => a,
            BinaryOp::Elu => b * a.exp_m1(),
            BinaryOp::EluGrad if a > 0.0 => 1.0,
            BinaryOp::EluGrad => b * a.exp(),
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
