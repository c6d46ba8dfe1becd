//! CPU optimizer steps (see `shaders/optimizer.wgsl` for the formulas).

use crate::{AdamConfig, SgdConfig};

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
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for i in 0..n {
        let (mut pi, mut gi) = (p[i], g[i]);
        if c.decoupled {
            pi *= 1.0 - c.lr * c.weight_decay;
        } else {
            gi += c.weight_decay * pi;
        }
        let mi = c.beta1 * m[i] + (1.0 - c.beta1) * gi;
        let vi = c.beta2 * v[i] + (1.0 - c.beta2) * gi * gi;
        p2.push(pi - c.lr * (mi / c1) / ((vi / c2).sqrt() + c.eps));
        m2.push(mi);
        v2.push(vi);
    }
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
