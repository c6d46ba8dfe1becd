//! Seeded random values on the host, bit-for-bit the hash of `shaders/random.wgsl`.

/// lowbias32: a 32-bit integer hash.
fn mix(v: u32) -> u32 {
    let mut x = v;
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// 24 random bits for counter `i` as a float in [0, 1).
fn unit(seed: u64, i: u32) -> f32 {
    let key = mix(seed as u32) ^ mix((seed >> 32) as u32 ^ 0x9e37_79b9);
    (mix(i ^ key) >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// `numel` values uniform in `[a, b)`.
pub(crate) fn uniform(numel: usize, seed: u64, a: f32, b: f32) -> Vec<f32> {
    (0..numel as u32)
        .map(|i| a + (b - a) * unit(seed, i))
        .collect()
}

/// `numel` values normal with mean `a` and standard deviation `b` (Box-Muller).
pub(crate) fn normal(numel: usize, seed: u64, a: f32, b: f32) -> Vec<f32> {
    (0..numel as u32)
        .map(|i| {
            let u1 = 1.0 - unit(seed, 2 * i);
            let u2 = unit(seed, 2 * i + 1);
            a + b * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
        })
        .collect()
}
