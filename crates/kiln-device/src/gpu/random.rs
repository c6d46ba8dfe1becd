//! Launcher for `shaders/random.wgsl`.

use std::sync::Arc;

use super::params::Params;
use super::pipelines::Kernel;
use super::{GpuBuffer, GpuContext, groups_for};
use crate::ops::random::Distribution;
use crate::shaders::Shader;
use crate::{DType, Result};

/// `numel` random f32 values.
pub(crate) fn generate(
    ctx: &Arc<GpuContext>,
    distribution: Distribution,
    numel: usize,
    seed: u64,
    (a, b): (f32, f32),
) -> Result<GpuBuffer> {
    let op = "random";
    let out = ctx.alloc(op, (numel * 4) as u64)?;
    let params = Params::new()
        .with_words(op, 0, &[numel])?
        .set(2, seed as u32)
        .set(3, (seed >> 32) as u32)
        .set(4, a.to_bits())
        .set(5, b.to_bits());
    let entry = match distribution {
        Distribution::Uniform => "uniform_main",
        Distribution::Normal => "normal_main",
    };
    ctx.dispatch(
        op,
        &Kernel::new(Shader::Random, entry, DType::F32),
        &params,
        &[(1, &out)],
        groups_for(numel),
    )?;
    Ok(out)
}
