//! Per-channel sums and affine maps of `[N, C, L]` tensors on the host: the twin of
//! `shaders/norm.wgsl` (read it for the formulas). Channels run in parallel; sums are kept in f64.

use rayon::prelude::*;

/// Each channel's `[N, L]` elements of `[N, C, L]` data, as `N` runs of `L`.
fn runs(data: &[f32], [n, c, l]: [usize; 3], channel: usize) -> impl Iterator<Item = &[f32]> {
    (0..n).map(move |i| &data[(i * c + channel) * l..][..l])
}

/// `[mean.., var..]` (biased) per channel when `q` is `None`; else `[Σ p.., Σ p·(q - center).. ]`.
pub(crate) fn channel_sums(p: &[f32], q: Option<(&[f32], &[f32])>, dims: [usize; 3]) -> Vec<f32> {
    let [n, channels, l] = dims;
    let count = (n * l) as f64;
    let per_channel: Vec<(f32, f32)> = (0..channels)
        .into_par_iter()
        .map(|c| match q {
            None => {
                let shift = f64::from(p[c * l]);
                let (mut a, mut b) = (0.0f64, 0.0f64);
                for run in runs(p, dims, c) {
                    for &x in run {
                        let d = f64::from(x) - shift;
                        a += d;
                        b += d * d;
                    }
                }
                let mean = a / count;
                (
                    (shift + mean) as f32,
                    (b / count - mean * mean).max(0.0) as f32,
                )
            }
            Some((q, center)) => {
                let center = f64::from(center[c]);
                let (mut a, mut b) = (0.0f64, 0.0f64);
                for (pr, qr) in runs(p, dims, c).zip(runs(q, dims, c)) {
                    for (&x, &y) in pr.iter().zip(qr) {
                        a += f64::from(x);
                        b += f64::from(x) * (f64::from(y) - center);
                    }
                }
                (a as f32, b as f32)
            }
        })
        .collect();
    per_channel
        .iter()
        .map(|(a, _)| *a)
        .chain(per_channel.iter().map(|(_, b)| *b))
        .collect()
}

/// `α[c]·p + β[c]·(q - μ[c]) + γ[c]` for `coef` = `[α.., β.., μ.., γ..]`.
pub(crate) fn channel_affine(
    p: &[f32],
    q: Option<&[f32]>,
    coef: &[f32],
    [n, channels, l]: [usize; 3],
) -> Vec<f32> {
    let mut out = vec![0.0f32; n * channels * l];
    out.par_chunks_mut(l.max(1))
        .enumerate()
        .for_each(|(row, out)| {
            let c = row % channels;
            let (alpha, beta, mu, gamma) = (
                coef[c],
                coef[channels + c],
                coef[2 * channels + c],
                coef[3 * channels + c],
            );
            let pr = &p[row * l..][..l];
            match q {
                None => out
                    .iter_mut()
                    .zip(pr)
                    .for_each(|(o, &x)| *o = alpha * x + gamma),
                Some(q) => {
                    let qr = &q[row * l..][..l];
                    for ((o, &x), &y) in out.iter_mut().zip(pr).zip(qr) {
                        *o = alpha * x + beta * (y - mu) + gamma;
                    }
                }
            }
        });
    out
}
