//! Weight initialisers (Keras's `kernel_initializer=`): Glorot and He, uniform and normal, orthogonal
//! (Keras's default for recurrent kernels) and zeros.

use kiln_autograd::{Tensor, Var};
use kiln_device::{DType, Device, Error, RawTensor, Result};

/// How a layer's weights start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Initializer {
    /// Uniform in `±√(6 / (fan_in + fan_out))` (Keras's default for kernels).
    #[default]
    GlorotUniform,
    /// Normal with deviation `√(2 / (fan_in + fan_out))`.
    GlorotNormal,
    /// Uniform in `±√(6 / fan_in)` (for ReLU layers).
    HeUniform,
    /// Normal with deviation `√(2 / fan_in)`.
    HeNormal,
    /// A (semi-)orthogonal matrix (Keras's default for recurrent kernels).
    Orthogonal,
    /// All zeros.
    Zeros,
}

impl Initializer {
    /// Every initialiser, for lookups by name.
    const ALL: [Initializer; 6] = [
        Initializer::GlorotUniform,
        Initializer::GlorotNormal,
        Initializer::HeUniform,
        Initializer::HeNormal,
        Initializer::Orthogonal,
        Initializer::Zeros,
    ];

    /// The Keras name (`"glorot_uniform"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Initializer::GlorotUniform => "glorot_uniform",
            Initializer::GlorotNormal => "glorot_normal",
            Initializer::HeUniform => "he_uniform",
            Initializer::HeNormal => "he_normal",
            Initializer::Orthogonal => "orthogonal",
            Initializer::Zeros => "zeros",
        }
    }

    /// The initialiser with Keras name `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Initializer> {
        Initializer::ALL.into_iter().find(|i| i.name() == name)
    }

    /// A new parameter of `shape` with fans `fan_in` and `fan_out`, drawn from `seed`.
    pub fn init(
        self,
        shape: &[usize],
        (fan_in, fan_out): (usize, usize),
        seed: u64,
        device: &Device,
    ) -> Result<Var> {
        // Fans in f64: their sum cannot overflow whatever sizes a config asks for.
        let (fan_in, fan_out) = (fan_in as f64, fan_out as f64);
        let uniform =
            |limit: f64| Tensor::uniform(shape.to_vec(), -limit as f32, limit as f32, seed, device);
        let normal = |std: f64| {
            RawTensor::rand_normal(shape.to_vec(), 0.0, std as f32, seed, device)
                .map(Tensor::from_raw)
        };
        let tensor = match self {
            Initializer::GlorotUniform => uniform((6.0 / (fan_in + fan_out)).sqrt())?,
            Initializer::GlorotNormal => normal((2.0 / (fan_in + fan_out)).sqrt())?,
            Initializer::HeUniform => uniform((6.0 / fan_in).sqrt())?,
            Initializer::HeNormal => normal((2.0 / fan_in).sqrt())?,
            Initializer::Orthogonal => orthogonal(shape, seed, device)?,
            Initializer::Zeros => Tensor::zeros(shape.to_vec(), device)?,
        };
        Ok(Var::new(tensor))
    }
}

/// A `[rows, cols]` matrix with orthonormal columns (rows when there are fewer rows): Gram–Schmidt
/// on normal samples, computed on the host once at build time.
fn orthogonal(shape: &[usize], seed: u64, device: &Device) -> Result<Tensor> {
    let &[rows, cols] = shape else {
        return Err(Error::invalid(
            "orthogonal",
            format!("the orthogonal initialiser needs a matrix, got {shape:?}"),
        ));
    };
    let (long, short) = (rows.max(cols), rows.min(cols));
    // `short` vectors of length `long`, made orthonormal in turn.
    let mut v =
        RawTensor::rand_normal([short, long], 0.0, 1.0, seed, &Device::cpu())?.to_vec::<f32>()?;
    for i in 0..short {
        for j in 0..i {
            let dot: f32 = (0..long).map(|k| v[i * long + k] * v[j * long + k]).sum();
            for k in 0..long {
                v[i * long + k] -= dot * v[j * long + k];
            }
        }
        let norm = (0..long)
            .map(|k| v[i * long + k].powi(2))
            .sum::<f32>()
            .sqrt()
            .max(1e-12);
        v[i * long..(i + 1) * long]
            .iter_mut()
            .for_each(|x| *x /= norm);
    }
    let matrix = RawTensor::from_slice(&v, [short, long], device)?;
    let matrix = if rows >= cols {
        matrix.transpose(0, 1)?.contiguous()?
    } else {
        matrix
    };
    Ok(Tensor::from_raw(matrix.cast(DType::F32)?))
}
