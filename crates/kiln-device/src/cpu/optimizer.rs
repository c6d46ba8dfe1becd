//! CPU optimizer steps (see `shaders/optimizer.wgsl` for the formulas).

use rayon::prelude::*;

use crate::{AdamConfig, SgdConfig};

/// Parameters per parallel chunk: below this one thread is faster than rayon's fork/join.
const CHUNK: usize = 1 << 14;

pub(crate) fn adam(
    p: &[f32],
    g: &[f32],
    m: &[f32],
    v: &[f32],
    c: &AdamConfig,
    step: u32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let c1 = 1.0 - c.beta1.powi(step as i32);
    let c2 = 1.0 - c.beta2.powi(step as i32);
    let update = |((&pi, &gi), (&mi, &vi)): ((&f32, &f32), (&f32, &f32))| {
        let (mut pi, mut gi) = (pi, gi);
        if c.decoupled {
            pi *= 1.0 - c.lr * c.weight_decay;
        } else {
            gi += c.weight_decay * pi;
        }
        let mi = c.beta1 * mi + (1.0 - c.beta1) * gi;
        let vi = c.beta2 * vi + (1.0 - c.beta2) * gi * gi;
        (pi - c.lr * (mi / c1) / ((vi / c2).sqrt() + c.eps), (mi, vi))
    };
    // Chunks of the parameters in parallel, each output written once (no zero-fill first).
    let (p2, (m2, v2)) = p
        .par_iter()
        .zip(g)
        .zip(m.par_iter().zip(v))
        .with_min_len(CHUNK)
        .map(update)
        .unzip();
    (p2, m2, v2)
}

pub(crate) fn sgd(
    p: &[f32],
    g: &[f32],
    buf: Option<&[f32]>,
    c: &SgdConfig,
) -> (Vec<f32>, Vec<f32>) {
    let mut p2 = Vec::with_capacity(p.len());
    let mut b2 = Vec::with_capacity(p.len());
    for i in 0..p.len() {
        let gi = g[i] + c.weight_decay * p[i];
        let b = match buf {
            Some(buf) => c.momentum * buf[i] + (1.0 - c.dampening) * gi,
            None => gi,
        };
        let step = if c.nesterov { gi + c.momentum * b } else { b };
        p2.push(p[i] - c.lr * step);
        b2.push(b);
    }
    (p2, b2)
}
