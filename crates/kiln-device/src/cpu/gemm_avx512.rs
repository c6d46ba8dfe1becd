//! An AVX-512 SGEMM for x86-64 CPUs that have it (checked at run time): BLIS-style blocking with
//! packed panels of A (12 rows) and B (32 columns) and a 12×32 register-tile micro-kernel of 24 zmm
//! accumulators. Row blocks of C run in parallel on rayon.

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::gemm::Matrix;

/// Rows of the micro-tile.
const MR: usize = 12;
/// Columns of the micro-tile (two zmm registers).
const NR: usize = 32;
/// Depth of a packed block (A and B panels stay in L1/L2 across it).
const KC: usize = 256;
/// Most rows of C one task computes (its packed A block, MC·KC floats, stays in L2).
const MC: usize = 144;
/// Columns of C per packed B block (fits in L2/L3 shared by the tasks).
const NC: usize = 1024;

/// Whether this CPU runs the AVX-512 kernel.
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx512f")
}

/// `c = a · b` (or `c += a · b`), `c` row-major `m×n`. Requires [`available`].
pub(crate) fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: &Matrix<'_>,
    b: &Matrix<'_>,
    c: &mut [f32],
    accumulate: bool,
) {
    assert!(
        available(),
        "AVX-512 kernel called on a CPU without AVX-512"
    );
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    let threads = rayon::current_num_threads();
    let parallel = m * n * k >= 1 << 22 && m >= 2 * MR && threads > 1;
    // Row blocks: a multiple of the thread count when parallel, each at most MC rows, MR-aligned.
    let blocks = if parallel {
        m.div_ceil(MC * threads) * threads
    } else {
        m.div_ceil(MC)
    };
    let mc_block = m.div_ceil(blocks).next_multiple_of(MR);
    let mut packed_b = vec![0.0f32; NC.min(n).div_ceil(NR) * NR * KC.min(k)];
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            pack_b(b, pc, kc, jc, nc, &mut packed_b, parallel);
            let add = accumulate || pc > 0;
            let packed_b = &packed_b;
            let block = |(block, rows): (usize, &mut [f32])| {
                let ic = block * mc_block;
                let mc = mc_block.min(m - ic);
                let mut packed_a = [0.0f32; (MC + MR) * KC];
                pack_a(a, ic, mc, pc, kc, &mut packed_a);
                // An A micro-panel stays in L1 while the B panels stream from L2.
                for ir in (0..mc).step_by(MR) {
                    let count = MR.min(mc - ir);
                    let ap = &packed_a[(ir / MR) * kc * MR..];
                    for jr in (0..nc).step_by(NR) {
                        let cols = NR.min(nc - jr);
                        let bp = &packed_b[(jr / NR) * kc * NR..];
                        let tile = &mut rows[ir * n + jc + jr..];
                        // SAFETY: `available()` holds; the packed panels hold kc·MR and kc·NR values; the
                        // tile's `count` rows of `cols` columns lie inside `rows` (row stride n).
                        unsafe {
                            micro_kernel(kc, ap.as_ptr(), bp.as_ptr(), tile, n, count, cols, add)
                        };
                    }
                }
            };
            let c = &mut c[..m * n];
            if parallel {
                c.par_chunks_mut(mc_block * n).enumerate().for_each(block);
            } else {
                c.chunks_mut(mc_block * n).enumerate().for_each(block);
            }
        }
    }
}

/// Packs rows `ic..ic+mc`, depth `pc..pc+kc` of A as micro-panels `[panel][k][MR]`, zero-padded.
fn pack_a(a: &Matrix<'_>, ic: usize, mc: usize, pc: usize, kc: usize, out: &mut [f32]) {
    for (panel, ir) in (0..mc).step_by(MR).enumerate() {
        let dst = &mut out[panel * kc * MR..][..kc * MR];
        let rows = MR.min(mc - ir);
        // Row by row, so a row-major A is read sequentially.
        for i in 0..MR {
            if i >= rows {
                dst.iter_mut().skip(i).step_by(MR).for_each(|v| *v = 0.0);
                continue;
            }
            let start = (ic + ir + i) * a.row_stride + pc * a.col_stride;
            if a.col_stride == 1 {
                for (p, &v) in a.data[start..start + kc].iter().enumerate() {
                    dst[p * MR + i] = v;
                }
            } else {
                for p in 0..kc {
                    dst[p * MR + i] = a.data[start + p * a.col_stride];
                }
            }
        }
    }
}

/// Packs depth `pc..pc+kc`, columns `jc..jc+nc` of B as panels `[panel][k][NR]`, zero-padded.
fn pack_b(
    b: &Matrix<'_>,
    pc: usize,
    kc: usize,
    jc: usize,
    nc: usize,
    out: &mut [f32],
    parallel: bool,
) {
    let panel = |(panel, dst): (usize, &mut [f32])| {
        let jr = panel * NR;
        let cols = NR.min(nc - jr);
        for p in 0..kc {
            let row = &mut dst[p * NR..][..NR];
            let base = (pc + p) * b.row_stride + (jc + jr) * b.col_stride;
            if b.col_stride == 1 {
                row[..cols].copy_from_slice(&b.data[base..base + cols]);
            } else {
                for (j, v) in row[..cols].iter_mut().enumerate() {
                    *v = b.data[base + j * b.col_stride];
                }
            }
            row[cols..].fill(0.0);
        }
    };
    let out = &mut out[..nc.div_ceil(NR) * kc * NR];
    if parallel {
        out.par_chunks_mut(kc * NR).enumerate().for_each(panel);
    } else {
        out.chunks_mut(kc * NR).enumerate().for_each(panel);
    }
}

/// `C[rows×cols] (+)= Ap · Bp` over depth `kc`; `c` starts at the tile, row stride `ldc`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_kernel(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: &mut [f32],
    ldc: usize,
    rows: usize,
    cols: usize,
    accumulate: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    for p in 0..kc {
        // SAFETY: the packed panels hold kc·NR and kc·MR values.
        let (b0, b1) = unsafe {
            (
                _mm512_loadu_ps(b.add(p * NR)),
                _mm512_loadu_ps(b.add(p * NR + 16)),
            )
        };
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = _mm512_set1_ps(unsafe { *a.add(p * MR + i) });
            row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
            row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
        }
    }
    let mask = |valid: usize| -> __mmask16 {
        if valid >= 16 {
            0xffff
        } else {
            ((1u32 << valid) - 1) as __mmask16
        }
    };
    let masks = [mask(cols), mask(cols.saturating_sub(16))];
    for (i, row) in acc.iter().enumerate().take(rows) {
        let out = &mut c[i * ldc..];
        for (half, (&m, &value)) in masks.iter().zip(row).enumerate() {
            if m == 0 {
                continue;
            }
            let ptr = out[half * 16..].as_mut_ptr();
            // SAFETY: the mask covers only the tile's `cols` columns, which lie inside `c`.
            unsafe {
                let value = if accumulate {
                    _mm512_add_ps(value, _mm512_maskz_loadu_ps(m, ptr))
                } else {
                    value
                };
                _mm512_mask_storeu_ps(ptr, m, value);
            }
        }
    }
}
