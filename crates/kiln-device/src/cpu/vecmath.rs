//! Vectorised math for the CPU kernels: softmax rows built on an `exp` polynomial the compiler turns
//! into SIMD code (about 2 ulp from `f32::exp`). Each entry point runs an AVX-512
//! or AVX2 build of the same code when the CPU has it (chosen at run time).

use std::mem::MaybeUninit;

/// e^x for x ≤ 0 (softmax's shifted inputs) without libm: 2^n · p(r) with x = n·ln2 + r,
/// |r| ≤ ln2/2, p a degree-6 polynomial. Inputs below -87.34 give e^-87.34 (the smallest normal
/// float's neighbourhood); NaN stays NaN. Positive inputs are outside its domain (softmax's `x -
/// max` never is positive).
#[inline(always)]
fn exp_nonpositive<const FMA: bool>(x: f32) -> f32 {
    let mul_add = |a: f32, b: f32, c: f32| if FMA { a.mul_add(b, c) } else { a * b + c };
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // One compare-and-select that keeps NaN (`NaN < LOW` is false).
    const LOW: f32 = -87.336_54;
    let x = if x < LOW { LOW } else { x };
    // Round to nearest with the 1.5·2^23 trick, which also leaves n in the low mantissa bits: no
    // float-to-int conversion, so the loop vectorises.
    const MAGIC: f32 = 12_582_912.0;
    // With FMA each step is one fused instruction (`mul_add`); without it `mul_add` would be a libm
    // call, so the baseline build multiplies and adds (two instructions, never contracted).
    let t = mul_add(x, LOG2E, MAGIC);
    let n = t - MAGIC;
    let n_int = t.to_bits() as i32 - MAGIC.to_bits() as i32;
    let r = mul_add(-n, LN2_LO, mul_add(-n, LN2_HI, x));
    let p = [0.008_333_334, 0.041_666_668, 0.166_666_67, 0.5, 1.0, 1.0]
        .into_iter()
        .fold(0.001_388_889f32, |acc, c| mul_add(acc, r, c));
    // n is in [-126, 0], so 2^n is one normal float built from its exponent bits.
    p * f32::from_bits(((n_int + 127) as u32) << 23)
}

/// Lanes kept apart in reductions so they vectorise: four AVX-512 registers (eight AVX2 ones), so
/// that consecutive vector operations do not wait on one another's results.
const LANES: usize = 16;

/// Softmax (or log-softmax) of one contiguous row into `y`, which need not be initialised (the
/// output is not zeroed first: that would be one more pass over memory). Two passes over `x`: the
/// maximum, then the exponentials written and summed together; then `y` scaled (or shifted). A NaN
/// anywhere makes the row NaN, through the sum.
#[inline(always)]
fn softmax_row_generic<const FMA: bool>(x: &[f32], y: &mut [MaybeUninit<f32>], log: bool) {
    assert_eq!(x.len(), y.len(), "softmax_row: one output per input");
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            if v > *m {
                *m = v;
            }
        }
    }
    let max = lanes
        .iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    for (out, &v) in y.iter_mut().zip(x) {
        out.write(exp_nonpositive::<FMA>(v - max));
    }
    // SAFETY: the loop above wrote every element of `y` (same length as `x`).
    let y: &mut [f32] = unsafe { &mut *(y as *mut [MaybeUninit<f32>] as *mut [f32]) };
    let mut sums = [0.0f32; LANES];
    let chunks = y.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (s, &v) in sums.iter_mut().zip(chunk) {
            *s += v;
        }
    }
    let sum = sums.iter().sum::<f32>() + tail;
    if log {
        let shift = max + sum.ln();
        for (out, &v) in y.iter_mut().zip(x) {
            *out = v - shift;
        }
    } else {
        let scale = 1.0 / sum;
        y.iter_mut().for_each(|v| *v *= scale);
    }
}

multiversion! {
    /// Writes the softmax (or log-softmax when `log`) of the contiguous row `x` into `y` (which may
    /// be uninitialised).
    fn softmax_row(x: &[f32], y: &mut [MaybeUninit<f32>], log: bool) => softmax_row_generic::<FMA>
}

#[cfg(test)]
mod tests {
    use std::mem::MaybeUninit;

    use super::{exp_nonpositive, softmax_row};

    #[test]
    fn exp_is_within_a_few_ulp_of_libm() {
        let xs = (-1970..=0)
            .map(|i| i as f32 * 0.0443)
            .chain([0.0, -0.0, -87.3]);
        for x in xs {
            let (got, want) = (exp_nonpositive::<true>(x), x.exp());
            let plain = exp_nonpositive::<false>(x);
            assert!(
                (plain - want).abs() <= 4.0 * f32::EPSILON * want.abs(),
                "exp({x}) without FMA: {plain}"
            );
            assert!(
                (got - want).abs() <= 4.0 * f32::EPSILON * want.abs(),
                "exp({x}): {got} vs {want}"
            );
        }
        assert_eq!(
            exp_nonpositive::<true>(-103.0),
            (-87.336_54f32).exp(),
            "inputs below the range clamp"
        );
        assert!(exp_nonpositive::<true>(f32::NAN).is_nan());
        assert!(exp_nonpositive::<false>(f32::NAN).is_nan());
    }

    #[test]
    fn softmax_rows_sum_to_one_and_propagate_nan() {
        let x: Vec<f32> = (0..37).map(|i| (i as f32 * 0.7).sin() * 30.0).collect();
        let row = |x: &[f32], log: bool| {
            let mut y = vec![MaybeUninit::uninit(); x.len()];
            softmax_row(x, &mut y, log);
            // SAFETY: softmax_row wrote every element.
            y.into_iter()
                .map(|v| unsafe { v.assume_init() })
                .collect::<Vec<f32>>()
        };
        let y = row(&x, false);
        assert!((y.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let logs = row(&x, true);
        assert!(logs.iter().zip(&y).all(|(l, p)| (l.exp() - p).abs() < 1e-6));
        let mut with_nan = x.clone();
        with_nan[3] = f32::NAN;
        assert!(row(&with_nan, false).iter().all(|v| v.is_nan()));
    }
}
