//! Seeded random tensors, generated on the tensor's device. The same seed gives the same values on
//! every device (uniform: bit for bit; normal: up to the device's `log`/`cos` rounding).

use crate::tensor::Backend;
use crate::{DType, Device, Error, RawTensor, Result, Shape, cpu, gpu};

/// Which distribution.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Distribution {
    Uniform,
    Normal,
}

impl RawTensor {
    fn random(
        shape: Shape,
        distribution: Distribution,
        (a, b): (f32, f32),
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let n = shape.numel();
        if n.checked_mul(2)
            .is_none_or(|draws| u32::try_from(draws).is_err())
        {
            return Err(Error::invalid(
                "random",
                format!("shape {shape} has too many elements for the generator"),
            ));
        }
        let probe = RawTensor::zeros([0], DType::F32, device)?;
        Ok(match probe.backend() {
            Backend::Cpu(cpu) => {
                cpu::check_alloc::<f32>("random", n)?;
                let values = match distribution {
                    Distribution::Uniform => cpu::random::uniform(n, seed, a, b),
                    Distribution::Normal => cpu::random::normal(n, seed, a, b),
                };
                RawTensor::from_host_f32(values, shape, cpu)
            }
            Backend::Gpu(ctx) => RawTensor::from_gpu(
                gpu::random::generate(ctx, distribution, n, seed, (a, b))?,
                shape,
                DType::F32,
                &probe,
            ),
        })
    }

    /// f32 values uniform in `[low, high)` from `seed`.
    pub fn rand_uniform(
        shape: impl Into<Shape>,
        low: f32,
        high: f32,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        RawTensor::random(
            shape.into(),
            Distribution::Uniform,
            (low, high),
            seed,
            device,
        )
    }

    /// f32 values normal with `mean` and standard deviation `std` from `seed`.
    pub fn rand_normal(
        shape: impl Into<Shape>,
        mean: f32,
        std: f32,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        RawTensor::random(
            shape.into(),
            Distribution::Normal,
            (mean, std),
            seed,
            device,
        )
    }
}
