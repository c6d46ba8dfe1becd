//! CPU optimizer steps (see `shaders/optimizer.wgsl` for the formulas).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::host_pool;
use crate::{AdamConfig, RmsPropConfig, SgdConfig};

/// Parameters per parallel chunk: below this one thread is faster than rayon's fork/join.
const CHUNK: usize = 1 << 14;

/// Output space not written yet.
type Uninit<'a> = &'a mut [MaybeUninit<f32>];

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
    let n = p.len();
    let (mut p2, mut m2, mut v2) = (
        host_pool::take::<f32>(n),
        host_pool::take::<f32>(n),
        host_pool::take::<f32>(n),
    );
    // Chunk `k` of the update into the outputs' uninitialised space (no zero fill first), the
    // slices zipped so that the loop vectorises.
    let update = |k: usize, (p2, (m2, v2)): (Uninit<'_>, (Uninit<'_>, Uninit<'_>))| {
        let range = k * CHUNK..k * CHUNK + p2.len();
        let inputs = p[range.clone()]
            .iter()
            .zip(&g[range.clone()])
            .zip(m[range.clone()].iter().zip(&v[range]));
        let outputs = p2.iter_mut().zip(m2.iter_mut()).zip(v2.iter_mut());
        for (((p2, m2), v2), ((&pi, &gi), (&mi, &vi))) in outputs.zip(inputs) {
            let (mut pi, mut gi) = (pi, gi);
            if c.decoupled {
                pi *= 1.0 - c.lr * c.weight_decay;
            } else {
                gi += c.weight_decay * pi;
            }
            let mi = c.beta1 * mi + (1.0 - c.beta1) * gi;
            let vi = c.beta2 * vi + (1.0 - c.beta2) * gi * gi;
            p2.write(pi - c.lr * (mi / c1) / ((vi / c2).sqrt() + c.eps));
            m2.write(mi);
            v2.write(vi);
        }
    };
    let (p_out, m_out, v_out) = (
        &mut p2.spare_capacity_mut()[..n],
        &mut m2.spare_capacity_mut()[..n],
        &mut v2.spare_capacity_mut()[..n],
    );
    if n <= CHUNK {
        // One chunk (a bias, a small layer) stays on the calling thread: a hand-off to rayon's
        // pool costs more than the update.
        update(0, (p_out, (m_out, v_out)));
    } else {
        p_out
            .par_chunks_mut(CHUNK)
            .zip(m_out.par_chunks_mut(CHUNK).zip(v_out.par_chunks_mut(CHUNK)))
            .enumerate()
            .for_each(|(k, chunk)| update(k, chunk));
    }
    // SAFETY: the chunks above cover 0..n of each output, and `update` writes every element of its
    // chunk (its loop runs over the whole chunk: the inputs are at least as long).
    unsafe {
        p2.set_len(n);
        m2.set_len(n);
        v2.set_len(n);
    }
    (p2, m2, v2)
}

pub(crate) fn sgd(
    p: &[f32],
    g: &[f32],
    buf: Option<&[f32]>,
    c: &SgdConfig,
) -> (Vec<f32>, Vec<f32>) {
    let mut p2 = host_pool::take(p.len());
    let mut b2 = host_pool::take(p.len());
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

/// RMSprop's updated parameter and state, the optional states only when used (see
/// `shaders/optimizer.wgsl`); `T` is a host vector or a device buffer.
pub(crate) struct RmsPropOut<T> {
    pub(crate) param: T,
    pub(crate) square_avg: T,
    pub(crate) buffer: Option<T>,
    pub(crate) grad_avg: Option<T>,
}

/// One RMSprop step on the host.
pub(crate) fn rmsprop(
    [p, g, square_avg]: [&[f32]; 3],
    (buffer, grad_avg): (Option<&[f32]>, Option<&[f32]>),
    c: &RmsPropConfig,
) -> RmsPropOut<Vec<f32>> {
    let n = p.len();
    let with_momentum = c.momentum > 0.0;
    let (mut p2, mut a2) = (host_pool::take(n), host_pool::take(n));
    let mut b2 = with_momentum.then(|| host_pool::take(n));
    let mut m2 = c.centered.then(|| host_pool::take(n));
    for i in 0..n {
        let gi = g[i] + c.weight_decay * p[i];
        let a = c.rho * square_avg[i] + (1.0 - c.rho) * gi * gi;
        a2.push(a);
        let mut variance = a;
        if let Some(m2) = m2.as_mut() {
            let mean = c.rho * grad_avg.map_or(0.0, |m| m[i]) + (1.0 - c.rho) * gi;
            m2.push(mean);
            variance -= mean * mean;
        }
        let mut step = gi / (variance.sqrt() + c.eps);
        if let Some(b2) = b2.as_mut() {
            step += c.momentum * buffer.map_or(0.0, |b| b[i]);
            b2.push(step);
        }
        p2.push(p[i] - c.lr * step);
    }
    RmsPropOut {
        param: p2,
        square_avg: a2,
        buffer: b2,
        grad_avg: m2,
    }
}

/// Adagrad: `(param, accumulator)`.
pub(crate) fn adagrad(
    p: &[f32],
    g: &[f32],
    sum: &[f32],
    lr: f32,
    eps: f32,
) -> (Vec<f32>, Vec<f32>) {
    let sums = host_pool::collect(sum.len(), sum.iter().zip(g).map(|(s, g)| s + g * g));
    let params = host_pool::collect(
        p.len(),
        (p.iter().zip(g).zip(&sums)).map(|((p, g), s)| p - lr * g / (s.sqrt() + eps)),
    );
    (params, sums)
}
