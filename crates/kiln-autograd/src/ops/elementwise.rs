//! Elementwise ops, their gradients, and `+ - * /` on tensor references.

use kiln_device::{BinaryOp, RawTensor, Result, UnaryOp};

use super::sum_to;
use crate::Tensor;

/// `1` where `x > threshold`, else `0`.
fn step(x: &RawTensor, threshold: f32) -> Result<RawTensor> {
    x.scalar(BinaryOp::Greater, threshold)
}

impl Tensor {
    fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        let y = self.raw().unary(op)?;
        let (x, out) = (self.raw().clone(), y.clone());
        Ok(Tensor::from_op(op.name(), y, &[self], move |g| {
            let mul = |t: &RawTensor| g.binary(BinaryOp::Mul, t);
            let dx = match op {
                UnaryOp::Relu => g.binary(BinaryOp::ReluBackward, &x)?,
                // σ' = y (1 - y)
                UnaryOp::Sigmoid => mul(&out.binary(
                    BinaryOp::Mul,
                    &out.scalar(BinaryOp::Mul, -1.0)?
                        .scalar(BinaryOp::Add, 1.0)?,
                )?)?,
                // tanh' = 1 - y²
                UnaryOp::Tanh => mul(&out
                    .binary(BinaryOp::Mul, &out)?
                    .scalar(BinaryOp::Mul, -1.0)?
                    .scalar(BinaryOp::Add, 1.0)?)?,
                UnaryOp::Exp => mul(&out)?,
                UnaryOp::Log => g.binary(BinaryOp::Div, &x)?,
                UnaryOp::Sqrt => g.binary(BinaryOp::Div, &out.scalar(BinaryOp::Mul, 2.0)?)?,
                UnaryOp::Neg => g.scalar(BinaryOp::Mul, -1.0)?,
                UnaryOp::Abs => mul(&x.unary(UnaryOp::Sign)?)?,
                UnaryOp::Sign => g.scalar(BinaryOp::Mul, 0.0)?,
                UnaryOp::Gelu => mul(&x.unary(UnaryOp::GeluGrad)?)?,
                UnaryOp::GeluTanh => mul(&x.unary(UnaryOp::GeluTanhGrad)?)?,
                UnaryOp::Softplus => mul(&x.unary(UnaryOp::Sigmoid)?)?,
                UnaryOp::Silu => mul(&x.unary(UnaryOp::SiluGrad)?)?,
                // Derivative kernels are not differentiated again.
                UnaryOp::GeluGrad | UnaryOp::GeluTanhGrad | UnaryOp::SiluGrad => {
                    return Ok(vec![None]);
                }
            };
            Ok(vec![Some(dx)])
        }))
    }

    /// `max(x, 0)`
    pub fn relu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Relu)
    }

    /// `1 / (1 + e^-x)`
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sigmoid)
    }

    /// Hyperbolic tangent.
    pub fn tanh(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Tanh)
    }

    /// `e^x`
    pub fn exp(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Exp)
    }

    /// Natural logarithm.
    pub fn log(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Log)
    }

    /// Square root.
    pub fn sqrt(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sqrt)
    }

    /// `-x`
    pub fn neg(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Neg)
    }

    /// `|x|`
    pub fn abs(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Abs)
    }

    /// GELU, exact (`x Φ(x)`, PyTorch's default).
    pub fn gelu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Gelu)
    }

    /// GELU's tanh approximation (Keras's `approximate=True`).
    pub fn gelu_tanh(&self) -> Result<Tensor> {
        self.unary(UnaryOp::GeluTanh)
    }

    /// `ln(1 + e^x)`
    pub fn softplus(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Softplus)
    }

    /// SiLU (swish): `x σ(x)`.
    pub fn silu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Silu)
    }

    /// Leaky ReLU: `x` where positive, else `negative_slope · x`.
    pub fn leaky_relu(&self, negative_slope: f32) -> Result<Tensor> {
        self.scalar(BinaryOp::LeakyRelu, negative_slope)
    }

    /// ELU: `x` where positive, else `alpha (e^x - 1)`.
    pub fn elu(&self, alpha: f32) -> Result<Tensor> {
        self.scalar(BinaryOp::Elu, alpha)
    }

    fn binary(&self, op: BinaryOp, other: &Tensor) -> Result<Tensor> {
        let y = self.raw().binary(op, other.raw())?;
        let (a, b) = (self.raw().clone(), other.raw().clone());
        Ok(Tensor::from_op(op.name(), y, &[self, other], move |g| {
            let (da, db) = match op {
                BinaryOp::Add => (g.clone(), g.clone()),
                BinaryOp::Sub => (g.clone(), g.scalar(BinaryOp::Mul, -1.0)?),
                BinaryOp::Mul => (g.binary(BinaryOp::Mul, &b)?, g.binary(BinaryOp::Mul, &a)?),
                BinaryOp::Div => {
                    let da = g.binary(BinaryOp::Div, &b)?;
                    // d(a/b)/db = -a/b² = -(a/b)/b
                    let db = da
                        .binary(BinaryOp::Mul, &a)?
                        .binary(BinaryOp::Div, &b)?
                        .scalar(BinaryOp::Mul, -1.0)?;
                    (da, db)
                }
                BinaryOp::Maximum => {
                    // Ties split the gradient evenly, as PyTorch does.
                    let half_ties = a.binary(BinaryOp::Equal, &b)?.scalar(BinaryOp::Mul, 0.5)?;
                    let to_a = a
                        .binary(BinaryOp::Greater, &b)?
                        .binary(BinaryOp::Add, &half_ties)?;
                    let to_b = b
                        .binary(BinaryOp::Greater, &a)?
                        .binary(BinaryOp::Add, &half_ties)?;
                    (
                        g.binary(BinaryOp::Mul, &to_a)?,
                        g.binary(BinaryOp::Mul, &to_b)?,
                    )
                }
                BinaryOp::Greater
                | BinaryOp::Equal
                | BinaryOp::LeakyReluGrad
                | BinaryOp::EluGrad => return Ok(vec![None, None]),
                // The slope or scale `b` is a hyperparameter: no gradient for it.
                BinaryOp::LeakyRelu | BinaryOp::Elu => {
                    let grad_op = if op == BinaryOp::Elu {
                        BinaryOp::EluGrad
                    } else {
                        BinaryOp::LeakyReluGrad
                    };
                    let da = g.binary(BinaryOp::Mul, &a.binary(grad_op, &b)?)?;
                    return Ok(vec![Some(sum_to(da, a.shape())?), None]);
                }
                // Linear in a through the mask of b; the mask is flat in b.
                BinaryOp::ReluBackward => {
                    let da = g.binary(BinaryOp::ReluBackward, &b)?;
                    return Ok(vec![Some(sum_to(da, a.shape())?), None]);
                }
            };
            Ok(vec![
                Some(sum_to(da, a.shape())?),
                Some(sum_to(db, b.shape())?),
            ])
        }))
    }

    /// `self + other` with numpy broadcasting.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Add, other)
    }

    /// `self - other` with numpy broadcasting.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Sub, other)
    }

    /// `self * other` with numpy broadcasting.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Mul, other)
    }

    /// `self / other` with numpy broadcasting.
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Div, other)
    }

    /// Elementwise maximum with numpy broadcasting.
    pub fn maximum(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Maximum, other)
    }

    /// `1.0` where `self > other`, else `0.0` (no gradient).
    pub fn gt(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Greater, other)
    }

    /// `1.0` where `self == other`, else `0.0` (no gradient).
    pub fn eq(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Equal, other)
    }

    fn scalar(&self, op: BinaryOp, s: f32) -> Result<Tensor> {
        let y = self.raw().scalar(op, s)?;
        let x = self.raw().clone();
        Ok(Tensor::from_op(op.scalar_name(), y, &[self], move |g| {
            let dx = match op {
                BinaryOp::Add | BinaryOp::Sub => g.clone(),
                BinaryOp::Mul => g.scalar(BinaryOp::Mul, s)?,
                BinaryOp::Div => g.scalar(BinaryOp::Div, s)?,
                BinaryOp::Maximum => {
                    let ties = x.scalar(BinaryOp::Equal, s)?.scalar(BinaryOp::Mul, 0.5)?;
                    g.binary(BinaryOp::Mul, &step(&x, s)?.binary(BinaryOp::Add, &ties)?)?
                }
                BinaryOp::Greater
                | BinaryOp::Equal
                | BinaryOp::LeakyReluGrad
                | BinaryOp::EluGrad => return Ok(vec![None]),
                BinaryOp::ReluBackward => g.scalar(BinaryOp::ReluBackward, s)?,
                BinaryOp::LeakyRelu => {
                    g.binary(BinaryOp::Mul, &x.scalar(BinaryOp::LeakyReluGrad, s)?)?
                }
                BinaryOp::Elu => g.binary(BinaryOp::Mul, &x.scalar(BinaryOp::EluGrad, s)?)?,
            };
            Ok(vec![Some(dx)])
        }))
    }

    /// `self + s`
    pub fn add_scalar(&self, s: f32) -> Result<Tensor> {
        self.scalar(BinaryOp::Add, s)
    }

    /// `self - s`
    pub fn sub_scalar(&self, s: f32) -> Result<Tensor> {
        self.scalar(BinaryOp::Sub, s)
    }

    /// `self * s`
    pub fn mul_scalar(&self, s: f32) -> Result<Tensor> {
        self.scalar(BinaryOp::Mul, s)
    }

    /// `self / s`
    pub fn div_scalar(&self, s: f32) -> Result<Tensor> {
        self.scalar(BinaryOp::Div, s)
    }

    /// `max(self, s)`
    pub fn maximum_scalar(&self, s: f32) -> Result<Tensor> {
        self.scalar(BinaryOp::Maximum, s)
    }
}

macro_rules! operator {
    ($trait:ident, $method:ident, $op:ident) => {
        impl std::ops::$trait<&Tensor> for &Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: &Tensor) -> Result<Tensor> {
                Tensor::$op(self, rhs)
            }
        }
        impl std::ops::$trait<f32> for &Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: f32) -> Result<Tensor> {
                self.scalar(BinaryOp::$trait, rhs)
            }
        }
    };
}

operator!(Add, add, add);
operator!(Sub, sub, sub);
operator!(Mul, mul, mul);
operator!(Div, div, div);
