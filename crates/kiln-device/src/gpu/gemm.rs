//! Plans and launches the GEMM of `shaders/gemm.wgsl` (matmul and the three convolution GEMMs).
//!
//! The plan fits the kernel to the shape, by a rule:
//! 1. **Thin outputs** (M or N ≤ 4: inference on a few samples) take `gemv_main`: each long-axis row
//!    is a set of dot products whose K is split over `lanes` threads, so nothing is padded to a tile.
//! 2. Otherwise `gemm_main` with the **largest register tile** — square ones from 128×128 (8×8 outputs
//!    per thread) to 32×32, and skinny 64×N / 32×N ones (or their transposes) when a side is at most
//!    16 (a dense layer's 10 classes, a convolution's 3×3 weight gradient) — whose padding wastes at
//!    most [`MAX_WASTE`] of the work and that still launches enough workgroups to fill the device
//!    ([`GemmDevice::fill`]); when no tile reaches that many, the one that launches the most. K-steps
//!    are `BK` = K itself for K ≤ 16 (a 3×3 single-channel convolution runs 9, not 16), else the step
//!    with the least K padding.
//! 3. **Split-K** when the plan still launches too few workgroups to fill the device and the
//!    product is big enough to pay for a second pass: slices of K write partial sums that
//!    `gemm_reduce` adds in slice order (deterministic: no float atomics).
//!
//! Larger tiles load less per multiply-add (an 8×8 thread tile does four per value loaded from
//! workgroup memory, a 4×4 one two), so they win whenever the device is still full with them.

use std::sync::Arc;

use super::context::{Bindable, WholeBuffer, or_placeholder};
use super::params::Params;
use super::pipelines::{Kernel, Variant};
use super::profiler::Annotation;
use super::{GpuBuffer, GpuContext, groups_for};
use crate::shaders::Shader;
use crate::{DType, Result};

/// What the plan needs to know about the device.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GemmDevice {
    /// Workgroup memory per workgroup, in bytes.
    pub(crate) workgroup_memory: u64,
    /// Workgroups that keep every compute unit busy ([`GpuContext::fill_workgroups`]).
    pub(crate) fill: usize,
    /// A software adapter: invocations are SIMD lanes of CPU threads ([`SOFTWARE_TILES`]).
    pub(crate) software: bool,
}

impl GemmDevice {
    /// What `ctx`'s device offers.
    pub(crate) fn of(ctx: &GpuContext) -> Self {
        GemmDevice {
            workgroup_memory: u64::from(ctx.limits.max_compute_workgroup_storage_size),
            fill: ctx.fill_workgroups(),
            software: ctx.info.is_software,
        }
    }
}

/// Padding a tile may add to the useful work (executed / useful FLOPs).
const MAX_WASTE: f64 = 1.25;
/// Below this many multiply-adds one pass beats the extra dispatch of split-K.
const MIN_SPLIT_MACS: usize = 1 << 21;
/// K-elements each split-K slice reduces at least.
const MIN_SLICE_K: usize = 256;
/// Outputs this thin (batch ≤ 4 inference) take the GEMV (`GEMV_SMALL` in the shader: one vec4 of
/// sums per thread); up to [`SKINNY_MAX`], a skinny tile.
const GEMV_MAX: usize = 4;
/// The longest short side a skinny tile covers.
const SKINNY_MAX: usize = 16;
/// Threads of a `gemv_main` workgroup.
const GEMV_THREADS: usize = 256;
/// K-indices a `gemv_main` workgroup stages per step (`GEMV_CHUNK`): the most lanes a row can use.
const GEMV_CHUNK: usize = GEMV_THREADS;
/// Kernel taps a workgroup tabulates (`TAP_MAX`): two words each of workgroup memory.
const TAP_TABLE_BYTES: u64 = 512 * 8;

/// Flag bits of parameter word 28 (see the shader).
pub(crate) const A_K_MAJOR: u32 = 1;
pub(crate) const B_K_MAJOR: u32 = 2;
pub(crate) const HAS_BIAS: u32 = 4;
pub(crate) const BIAS_COLUMN: u32 = 8;
const SWAPPED: u32 = 16;
const PARTIALS: u32 = 32;
const ROWS_FAST: u32 = 64;
pub(crate) const RELU: u32 = 128;
pub(crate) const RELU_MASK: u32 = 256;
/// MODE 0: A (B) may be read as vec4 along its contiguous axis (see `matmul.rs`); `run_plan` keeps
/// the flag only where the tile's K-step allows it.
pub(crate) const A_VEC4: u32 = 512;
pub(crate) const B_VEC4: u32 = 1024;

/// A register-tile configuration of `gemm_main`: a BM×BN tile of C per workgroup in K-steps of BK,
/// TM×TN outputs per thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TileShape {
    pub(crate) bm: u16,
    pub(crate) bn: u16,
    pub(crate) bk: u16,
    pub(crate) tm: u16,
    pub(crate) tn: u16,
}

impl TileShape {
    const fn new(bm: u16, bn: u16, bk: u16, tm: u16, tn: u16) -> Self {
        TileShape { bm, bn, bk, tm, tn }
    }

    /// Threads of one workgroup.
    #[cfg(test)]
    pub(crate) fn threads(self) -> usize {
        usize::from(self.bm / self.tm) * usize::from(self.bn / self.tn)
    }

    /// Workgroup memory `gemm_main` uses with this tile: both operand tiles and the tap table.
    fn workgroup_bytes(self) -> u64 {
        let (bm, bn, bk) = (u64::from(self.bm), u64::from(self.bn), u64::from(self.bk));
        (bk * (bm / 4 + 1) + bk * (bn / 4 + 1)) * 16 + TAP_TABLE_BYTES
    }

    /// The WGSL the shader is compiled with: the tile constants, the thread's accumulators and the
    /// unrolled `tile_fma` / `tile_store` of this tile (straight-line code keeps the TM×TN sums in
    /// registers on every driver; a loop over a private array can end up in memory).
    pub(crate) fn header(self) -> String {
        use std::fmt::Write;
        let (tm, groups_n) = (usize::from(self.tm), usize::from(self.tn / 4));
        let mut w = format!(
            "const BM: u32 = {}u;\nconst BN: u32 = {}u;\nconst BK: u32 = {}u;\nconst TM: u32 = {}u;\nconst TN: u32 = {}u;\n",
            self.bm, self.bn, self.bk, self.tm, self.tn
        );
        for i in 0..tm {
            for h in 0..groups_n {
                writeln!(w, "var<private> acc_{i}_{h}: vec4<f32>;").unwrap();
            }
        }
        w += "fn tile_fma(kk: u32, tx: u32, ty: u32) {\n";
        for g in 0..tm / 4 {
            writeln!(
                w,
                "    let a{g} = a_tile[kk * A_STRIDE + {g}u * THREADS_M + ty];"
            )
            .unwrap();
        }
        for h in 0..groups_n {
            writeln!(
                w,
                "    let b{h} = b_tile[kk * B_STRIDE + {h}u * THREADS_N + tx];"
            )
            .unwrap();
        }
        for i in 0..tm {
            let (g, lane) = (i / 4, ["x", "y", "z", "w"][i % 4]);
            for h in 0..groups_n {
                writeln!(
                    w,
                    "    acc_{i}_{h} = fma(vec4<f32>(a{g}.{lane}), b{h}, acc_{i}_{h});"
                )
                .unwrap();
            }
        }
        // The store runs once: a loop over the sums copied into an array keeps the code small (each
        // store_four inlines the output addressing), which is most of the driver's compile time.
        writeln!(
            w,
            "}}\nfn tile_store(batch: u32, slice: u32, m0: u32, n0: u32, tx: u32, ty: u32) {{\n    var sums = array<vec4<f32>, {}>(",
            tm * groups_n
        )
        .unwrap();
        for i in 0..tm {
            for h in 0..groups_n {
                writeln!(w, "        acc_{i}_{h},").unwrap();
            }
        }
        w += "    );\n    for (var i = 0u; i < TM; i = i + 1u) {\n        for (var h = 0u; h < TN / 4u; h = h + 1u) {\n";
        w += "            let m = m0 + ((i / 4u) * THREADS_M + ty) * 4u + i % 4u;\n";
        w += "            store_four(batch, slice, m, n0 + (h * THREADS_N + tx) * 4u, sums[i * (TN / 4u) + h]);\n";
        w += "        }\n    }\n";
        w += "}\n";
        w
    }
}

/// The tile configurations, largest first, with the longest K-step each may take (workgroup memory).
const TILES: [TileShape; 6] = [
    TileShape::new(128, 128, 8, 8, 8),
    TileShape::new(128, 64, 16, 8, 4),
    TileShape::new(64, 64, 16, 4, 4),
    TileShape::new(128, 32, 16, 8, 4),
    TileShape::new(64, 32, 16, 4, 4),
    TileShape::new(32, 32, 16, 4, 4),
];

/// Tiles only software adapters (lavapipe, SwiftShader, WARP) take, before [`TILES`]: there an
/// invocation is a SIMD lane of a CPU thread, its accumulators live in memory whatever their number,
/// and each workgroup-memory read is a per-lane gather; so fewer, fatter invocations (64 per
/// workgroup, 16×16 or 16×8 outputs each: 8 or 6 vec4 reads per 256 or 128 multiply-adds) and long
/// K-steps (fewer barriers, each a coroutine switch) do best — measured on lavapipe, matmul 1024²:
/// 9.7 GFLOP/s with 128×128 (8×8), 13.5 with 128×64×32 (16×8), 15.9 with 128×128×16 (16×16).
/// A GPU keeps ≤ 8×8 per thread: 256 accumulators would not fit its register file.
const SOFTWARE_TILES: [TileShape; 2] = [
    TileShape::new(128, 128, 16, 16, 16),
    TileShape::new(128, 64, 32, 16, 8),
];

/// Skinny tiles for an output with N ≤ 16 columns (64 or 32 rows × N rounded up to 4) or M ≤ 16 rows
/// (the transpose): the short side is covered by one tile, so padding stays under a group of four.
fn skinny_tiles(m: usize, n: usize) -> Vec<TileShape> {
    let short = |len: usize| (len <= SKINNY_MAX).then(|| len.next_multiple_of(4) as u16);
    let mut tiles = Vec::new();
    for long in [64, 32] {
        if let Some(bn) = short(n) {
            tiles.push(TileShape::new(long, bn, 16, 4, 4));
        }
        if let Some(bm) = short(m) {
            tiles.push(TileShape::new(bm, long, 16, 4, 4));
        }
    }
    tiles
}

/// The tile the `gemv_main` and `gemm_reduce` pipelines are compiled with (they use none of it; one
/// module serves both).
pub(crate) const AUX_TILE: TileShape = TILES[2];

/// Every configuration `plan` can pick, with its longest K-step (for tests of each variant): the
/// square tiles and the skinny ones with a short side of 4 and 12.
#[cfg(test)]
pub(crate) fn tile_configurations() -> Vec<TileShape> {
    let mut tiles = SOFTWARE_TILES.to_vec();
    tiles.extend(TILES);
    tiles.extend(skinny_tiles(3, 3));
    tiles.extend(skinny_tiles(12, 12));
    tiles
}

/// How one GEMM runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GemmPlan {
    /// `gemm_main` with `tile`, K split into `slices` of `k_per_slice`.
    Tiled {
        tile: TileShape,
        slices: usize,
        k_per_slice: usize,
    },
    /// `gemv_main`: `lanes` threads per long-axis row.
    Gemv {
        lanes: usize,
        swapped: bool,
        rows_fast: bool,
        slices: usize,
        k_per_slice: usize,
    },
}

/// The sizes and operand layouts a plan depends on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GemmShape {
    pub(crate) m: usize,
    pub(crate) n: usize,
    pub(crate) k: usize,
    pub(crate) batch: usize,
    /// A's contiguous axis is K (else M).
    pub(crate) a_k_major: bool,
    /// B's contiguous axis is K (else N).
    pub(crate) b_k_major: bool,
}

impl GemmShape {
    fn macs(&self) -> usize {
        self.batch * self.m * self.n * self.k
    }
}

/// Workgroups of `tile` along M and along N.
fn tile_grid(s: &GemmShape, tile: TileShape) -> (usize, usize) {
    (
        s.m.div_ceil(usize::from(tile.bm)),
        s.n.div_ceil(usize::from(tile.bn)),
    )
}

/// Workgroups of `gemv_main` along the long output axis (N when `swapped`, else M).
fn gemv_row_groups(s: &GemmShape, lanes: usize, swapped: bool) -> usize {
    let rows = if swapped { s.n } else { s.m };
    rows.div_ceil(GEMV_THREADS / lanes)
}

/// Slices of K (at least [`MIN_SLICE_K`] each, `step`-aligned) that bring `workgroups` up to twice
/// the device's fill, or one slice.
fn split_k(s: &GemmShape, workgroups: usize, step: usize, fill: usize) -> (usize, usize) {
    if workgroups >= fill || s.macs() < MIN_SPLIT_MACS {
        return (1, s.k);
    }
    let wanted = (2 * fill).div_ceil(workgroups.max(1));
    let slices = wanted.min(s.k / MIN_SLICE_K).max(1);
    if slices == 1 {
        return (1, s.k);
    }
    let k_per_slice = s.k.div_ceil(slices).next_multiple_of(step);
    (s.k.div_ceil(k_per_slice), k_per_slice)
}

/// The K-step for `tile`: K itself when it fits, else the step in {max, 8, 4} padding K least.
fn k_step(k: usize, max: u16) -> u16 {
    if k <= usize::from(max) {
        return k.max(1) as u16;
    }
    let mut best = max;
    for step in [max, 8, 4] {
        if k.next_multiple_of(usize::from(step)) < k.next_multiple_of(usize::from(best)) {
            best = step;
        }
    }
    best
}

/// Picks the kernel, tile and split for `s` on `device`.
pub(crate) fn plan(s: &GemmShape, device: GemmDevice) -> GemmPlan {
    if s.m.min(s.n) <= GEMV_MAX {
        // Each lane walks about eight K-steps; at most a staged chunk per row.
        let lanes = (1usize << (s.k / 8).max(1).ilog2()).min(GEMV_CHUNK);
        let gemv = |swapped: bool| {
            let row_groups = gemv_row_groups(s, lanes, swapped);
            let (slices, k_per_slice) = split_k(s, row_groups * s.batch, GEMV_CHUNK, device.fill);
            let rows_fast = if swapped { !s.b_k_major } else { !s.a_k_major };
            GemmPlan::Gemv {
                lanes,
                swapped,
                rows_fast,
                slices,
                k_per_slice,
            }
        };
        // The long axis is the other one; when both are short, the orientation that pads less.
        return match (s.m <= GEMV_MAX, s.n <= GEMV_MAX) {
            (true, true) => {
                let (plain, swapped) = (gemv(false), gemv(true));
                if swapped.executed_macs(s) < plain.executed_macs(s) {
                    swapped
                } else {
                    plain
                }
            }
            (m_short, _) => gemv(m_short),
        };
    }
    let useful = (s.m * s.n * s.k) as f64;
    let software: &[TileShape] = if device.software {
        &SOFTWARE_TILES
    } else {
        &[]
    };
    let mut tiles: Vec<TileShape> = software
        .iter()
        .chain(&TILES)
        .copied()
        .chain(skinny_tiles(s.m, s.n))
        .collect();
    // Largest first; a software tile before the general one of the same size (the sort is stable).
    tiles.sort_by_key(|t| std::cmp::Reverse(u32::from(t.bm) * u32::from(t.bn)));
    // A tile's plan (with split-K where it would launch too few workgroups), its executed / useful
    // ratio and the workgroups it launches.
    let tiled = |tile: TileShape| {
        let (bm, bn, bk) = (
            usize::from(tile.bm),
            usize::from(tile.bn),
            usize::from(tile.bk),
        );
        let executed =
            (s.m.next_multiple_of(bm) * s.n.next_multiple_of(bn)) * s.k.next_multiple_of(bk);
        let (tiles_m, tiles_n) = tile_grid(s, tile);
        let tiles = tiles_m * tiles_n * s.batch;
        let (slices, k_per_slice) = split_k(s, tiles, bk, device.fill);
        let plan = GemmPlan::Tiled {
            tile,
            slices,
            k_per_slice,
        };
        (plan, executed as f64 / useful, tiles * slices)
    };
    let candidates: Vec<(GemmPlan, f64, usize)> = tiles
        .into_iter()
        .map(|t| TileShape {
            bk: k_step(s.k, t.bk),
            ..t
        })
        .filter(|t| t.workgroup_bytes() <= device.workgroup_memory)
        .map(tiled)
        .collect();
    // The largest tile that pads little and fills the device (with split-K where K allows); else the
    // little-padding tile launching the most workgroups; else the one padding least.
    let fitting: Vec<_> = candidates.iter().filter(|c| c.1 <= MAX_WASTE).collect();
    fitting
        .iter()
        .find(|c| c.2 >= device.fill)
        .or_else(|| fitting.iter().max_by_key(|c| c.2))
        .map(|c| c.0)
        .or_else(|| {
            candidates
                .iter()
                .min_by(|x, y| x.1.total_cmp(&y.1))
                .map(|c| c.0)
        })
        .unwrap_or_else(|| tiled(TILES[TILES.len() - 1]).0)
}

impl GemmPlan {
    /// Multiply-adds the plan executes, padding included (the profiler's executed/useful ratio).
    pub(crate) fn executed_macs(&self, s: &GemmShape) -> usize {
        match *self {
            GemmPlan::Tiled {
                tile,
                slices,
                k_per_slice,
            } => {
                let (bm, bn, bk) = (
                    usize::from(tile.bm),
                    usize::from(tile.bn),
                    usize::from(tile.bk),
                );
                let k = if slices > 1 {
                    slices * k_per_slice
                } else {
                    s.k.next_multiple_of(bk)
                };
                s.batch * s.m.next_multiple_of(bm) * s.n.next_multiple_of(bn) * k
            }
            GemmPlan::Gemv {
                lanes,
                swapped,
                slices,
                k_per_slice,
                ..
            } => {
                // Rows pad to the workgroup's row count, the small axis to groups of four.
                let (rows, small) = if swapped { (s.n, s.m) } else { (s.m, s.n) };
                let per_group = GEMV_THREADS / lanes;
                let k = if slices > 1 {
                    slices * k_per_slice
                } else {
                    s.k
                };
                s.batch * rows.next_multiple_of(per_group) * small.next_multiple_of(4) * k
            }
        }
    }

    /// A short description for the profiler: `tile 128x128x8 (8x8)`, `gemv 64 lanes`, `+ split-K 4`.
    pub(crate) fn describe(&self) -> String {
        let (base, slices) = match *self {
            GemmPlan::Tiled { tile, slices, .. } => (
                format!(
                    "tile {}x{}x{} ({}x{})",
                    tile.bm, tile.bn, tile.bk, tile.tm, tile.tn
                ),
                slices,
            ),
            GemmPlan::Gemv { lanes, slices, .. } => (format!("gemv {lanes} lanes"), slices),
        };
        if slices > 1 {
            format!("{base} + split-K {slices}")
        } else {
            base
        }
    }
}

/// One GEMM to run: the shape, the mode's parameter words (8..28) and flags, and the buffers.
pub(crate) struct GemmCall<'a> {
    pub(crate) op: &'static str,
    pub(crate) mode: u32,
    pub(crate) shape: GemmShape,
    /// Parameter block with the mode's words (8..28) filled in.
    pub(crate) params: Params,
    /// HAS_BIAS, BIAS_COLUMN, RELU and RELU_MASK as needed (the layout flags come from `shape`).
    pub(crate) flags: u32,
    pub(crate) a: &'a GpuBuffer,
    pub(crate) b: &'a GpuBuffer,
    /// The bias (HAS_BIAS) or the ReLU output masking A (RELU_MASK).
    pub(crate) bias: Option<&'a GpuBuffer>,
    pub(crate) out: &'a GpuBuffer,
    /// The bias gradient (MODE 3 with BIAS_COLUMN).
    pub(crate) out2: Option<&'a GpuBuffer>,
}

/// Plans and records `call`: one dispatch, or two with split-K.
pub(crate) fn run(ctx: &Arc<GpuContext>, call: GemmCall<'_>) -> Result<()> {
    let chosen = plan(&call.shape, GemmDevice::of(ctx));
    run_plan(ctx, call, chosen)
}

/// Records `call` with the given plan.
fn run_plan(ctx: &Arc<GpuContext>, call: GemmCall<'_>, plan: GemmPlan) -> Result<()> {
    let s = call.shape;
    let op = call.op;
    let mut flags = call.flags;
    if s.a_k_major {
        flags |= A_K_MAJOR;
    }
    if s.b_k_major {
        flags |= B_K_MAJOR;
    }
    let (kernel, groups, slices, k_per_slice, lanes) = match plan {
        GemmPlan::Tiled {
            tile,
            slices,
            k_per_slice,
        } => {
            // K-major quads need whole quads of K in every K-step.
            let bk_quads = tile.bk.is_multiple_of(4);
            if s.a_k_major && !bk_quads {
                flags &= !A_VEC4;
            }
            if s.b_k_major && !bk_quads {
                flags &= !B_VEC4;
            }
            (
                Kernel::gemm(tile, "gemm_main", call.mode),
                tile_grid(&s, tile),
                slices,
                k_per_slice,
                0,
            )
        }
        GemmPlan::Gemv {
            lanes,
            swapped,
            rows_fast,
            slices,
            k_per_slice,
        } => {
            if swapped {
                flags |= SWAPPED;
            }
            if rows_fast {
                flags |= ROWS_FAST;
            }
            flags &= !(A_VEC4 | B_VEC4);
            (
                Kernel::gemm(AUX_TILE, "gemv_main", call.mode),
                (gemv_row_groups(&s, lanes, swapped), 1),
                slices,
                k_per_slice,
                lanes,
            )
        }
    };
    let split = slices > 1;
    let params = call
        .params
        .with_words(
            op,
            0,
            &[
                s.m,
                s.n,
                s.k,
                s.batch,
                groups.0,
                groups.1,
                k_per_slice,
                slices,
            ],
        )?
        .set(28, if split { flags | PARTIALS } else { flags })
        .with_words(op, 29, &[lanes])?;
    let placeholder = ctx.placeholder();
    let bias = call.bias.unwrap_or(call.a);
    let out2 = or_placeholder(call.out2, &placeholder);
    let partials = if split {
        Some(ctx.alloc(op, (s.batch * slices * s.m * s.n * 4) as u64)?)
    } else {
        None
    };
    let target = partials.as_ref().unwrap_or(call.out);
    ctx.annotate(|| Annotation {
        detail: plan.describe(),
        shape: format!(
            "{}x{}x{}{}",
            s.m,
            s.n,
            s.k,
            if s.batch > 1 {
                format!(" x{}", s.batch)
            } else {
                String::new()
            }
        ),
        useful_flops: 2 * s.macs() as u64,
        executed_flops: 2 * plan.executed_macs(&s) as u64,
    });
    let (a4, b4) = (WholeBuffer(call.a), WholeBuffer(call.b));
    let bindings: [(u32, &dyn Bindable); 7] = [
        (1, call.a),
        (2, call.b),
        (3, bias),
        (4, target),
        (5, out2),
        (6, &a4),
        (7, &b4),
    ];
    // Only `gemm_main` has the vec4 views of the operands (bindings 6 and 7).
    let bound = if matches!(plan, GemmPlan::Tiled { .. }) {
        7
    } else {
        5
    };
    ctx.dispatch(
        op,
        &kernel,
        &params,
        &bindings[..bound],
        (s.batch * slices * groups.0 * groups.1) as u64,
    )?;
    if split {
        let reduce = Kernel::gemm(AUX_TILE, "gemm_reduce", call.mode);
        ctx.dispatch(
            op,
            &reduce,
            &params.set(28, flags),
            &[(1, target), (3, bias), (4, call.out), (5, out2)],
            groups_for(s.batch * s.m * s.n),
        )?;
    }
    Ok(())
}

impl Kernel {
    /// An entry point of `shaders/gemm.wgsl` compiled with `tile`, in `mode`.
    pub(crate) fn gemm(tile: TileShape, entry: &'static str, mode: u32) -> Self {
        let mut kernel = Kernel::new(Shader::Gemm, entry, DType::F32).with("MODE", mode);
        kernel.variant = Some(Variant::Tile(tile));
        kernel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(m: usize, n: usize, k: usize) -> GemmShape {
        GemmShape {
            m,
            n,
            k,
            batch: 1,
            a_k_major: true,
            b_k_major: false,
        }
    }

    const GPU: GemmDevice = GemmDevice {
        workgroup_memory: 32 << 10,
        fill: 128,
        software: false,
    };

    fn waste(s: &GemmShape) -> f64 {
        plan(s, GPU).executed_macs(s) as f64 / s.macs() as f64
    }

    /// The GEMMs of one reference-CNN training step (batch 64) and a large square waste at most 1.5x
    /// of their work in padding.
    #[test]
    fn reference_cnn_gemms_waste_little() {
        let gemms = [
            ("conv forward", shape(43_264, 32, 9)),
            ("conv weight-grad + bias", shape(32, 10, 43_264)),
            ("dense forward", shape(64, 10, 5_408)),
            ("dense weight-grad", shape(10, 5_408, 64)),
            ("dense input-grad", shape(64, 5_408, 10)),
            ("matmul 1024", shape(1024, 1024, 1024)),
        ];
        for (name, s) in gemms {
            let w = waste(&s);
            assert!(
                w <= 1.5,
                "{name}: executed/useful {w:.2} with {:?}",
                plan(&s, GPU)
            );
        }
    }

    #[test]
    fn big_squares_take_the_big_tile_thin_shapes_skinny_tiles_or_gemv() {
        let biggest = |p| matches!(p, GemmPlan::Tiled { tile, slices: 1, .. } if tile.bm == 128 && tile.bn == 128);
        assert!(biggest(plan(&shape(4096, 4096, 4096), GPU)));
        // 1024² gives 64 such tiles: too few for a big GPU (128x64 then), plenty for 4 CPU threads.
        assert!(!biggest(plan(&shape(1024, 1024, 1024), GPU)));
        let cpu = GemmDevice { fill: 8, ..GPU };
        assert!(biggest(plan(&shape(1024, 1024, 1024), cpu)));
        // A software adapter takes its fat-invocation tile; a GPU never does.
        let software = GemmDevice {
            software: true,
            ..cpu
        };
        assert!(matches!(
            plan(&shape(1024, 1024, 1024), software),
            GemmPlan::Tiled { tile, .. } if tile == SOFTWARE_TILES[0]
        ));
        for s in [
            shape(4096, 4096, 4096),
            shape(1024, 1024, 1024),
            shape(256, 256, 256),
        ] {
            if let GemmPlan::Tiled { tile, .. } = plan(&s, GPU) {
                assert!(tile.tm * tile.tn <= 64, "{tile:?}");
            }
        }
        let skinny = |p| matches!(p, GemmPlan::Tiled { tile, .. } if tile.bm.min(tile.bn) == 12);
        assert!(skinny(plan(&shape(64, 10, 5408), GPU)));
        assert!(skinny(plan(&shape(10, 5408, 64), GPU)));
        assert!(matches!(
            plan(&shape(1, 10, 5408), GPU),
            GemmPlan::Gemv { .. }
        ));
        assert!(matches!(
            plan(&shape(5408, 3, 64), GPU),
            GemmPlan::Gemv { swapped: false, .. }
        ));
    }

    #[test]
    fn long_k_with_few_tiles_is_split() {
        let p = plan(&shape(64, 64, 65_536), GPU);
        match p {
            GemmPlan::Tiled {
                slices,
                k_per_slice,
                ..
            } => {
                assert!(slices > 1);
                assert!(slices * k_per_slice >= 65_536);
            }
            other => panic!("{other:?}"),
        }
    }

    fn values(n: usize, seed: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32 * 12.9898 + seed).sin() * 43758.547).fract())
            .collect()
    }

    /// Every plan the planner can produce — each tile with its longest, a short, an odd and a sub-quad K-step,
    /// split or not; GEMV with 1, 16 and 256 lanes, either orientation and thread order, split or not
    /// — computes the same products as a plain loop, on A stored plainly and transposed.
    #[test]
    fn every_plan_variant_matches_a_plain_loop() {
        let Some(device) = crate::testing::gpu_for_tests() else {
            return;
        };
        let crate::Device::Gpu(gpu) = &device else {
            unreachable!("gpu_for_tests returns a GPU")
        };
        let ctx = &gpu.ctx;
        let mut plans = Vec::new();
        for tile in tile_configurations() {
            for bk in [tile.bk, 4, 9, 3] {
                for slices in [1, 3] {
                    plans.push(GemmPlan::Tiled {
                        tile: TileShape { bk, ..tile },
                        slices,
                        k_per_slice: 0,
                    });
                }
            }
        }
        for lanes in [1, 16, 256] {
            for swapped in [false, true] {
                for rows_fast in [false, true] {
                    for slices in [1, 2] {
                        plans.push(GemmPlan::Gemv {
                            lanes,
                            swapped,
                            rows_fast,
                            slices,
                            k_per_slice: 0,
                        });
                    }
                }
            }
        }
        for (m, n, k) in [
            (1, 1, 1),
            (3, 17, 5),
            (63, 65, 129),
            (16, 3, 1000),
            (130, 9, 33),
            (68, 36, 44),
        ] {
            let (a, b) = (values(m * k, 1.0), values(k * n, 2.0));
            let a_t: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
            let want: Vec<f32> = (0..m * n)
                .map(|i| (0..k).map(|p| a[i / n * k + p] * b[p * n + i % n]).sum())
                .collect();
            let tb = crate::RawTensor::from_slice(&b, [k, n], &device).unwrap();
            for a_k_major in [true, false] {
                let stored = if a_k_major { &a } else { &a_t };
                let ta = crate::RawTensor::from_slice(stored, [m * k], &device).unwrap();
                let (a_rs, a_cs) = if a_k_major { (k, 1) } else { (1, m) };
                // Quads (A_VEC4, B_VEC4) wherever every axis is whole quads; scalars as well.
                let aligned = m % 4 == 0 && n % 4 == 0 && k % 4 == 0;
                let vec4_choices: &[u32] = if aligned { &[0, A_VEC4 | B_VEC4] } else { &[0] };
                for (&plan, &flags) in plans
                    .iter()
                    .flat_map(|p| vec4_choices.iter().map(move |f| (p, f)))
                {
                    let plan = match plan {
                        GemmPlan::Tiled { tile, slices, .. } => GemmPlan::Tiled {
                            tile,
                            slices: slices.min(k.div_ceil(usize::from(tile.bk))),
                            k_per_slice: k.div_ceil(slices).next_multiple_of(usize::from(tile.bk)),
                        },
                        GemmPlan::Gemv {
                            lanes,
                            swapped,
                            rows_fast,
                            slices,
                            ..
                        } => {
                            let k_per_slice = k.div_ceil(slices).next_multiple_of(lanes);
                            GemmPlan::Gemv {
                                lanes,
                                swapped,
                                rows_fast,
                                slices: k.div_ceil(k_per_slice),
                                k_per_slice,
                            }
                        }
                    };
                    if matches!(plan, GemmPlan::Gemv { swapped, .. } if (if swapped { m } else { n }) > GEMV_MAX)
                    {
                        continue;
                    }
                    let out = ctx.alloc("test", (m * n * 4) as u64).unwrap();
                    let params = Params::new()
                        .with_words("test", 8, &[0, a_rs, a_cs, 0, n, 1, 0])
                        .unwrap();
                    let call = GemmCall {
                        op: "test",
                        mode: 0,
                        shape: GemmShape {
                            m,
                            n,
                            k,
                            batch: 1,
                            a_k_major,
                            b_k_major: false,
                        },
                        params,
                        flags,
                        a: ta.buffer(),
                        b: tb.buffer(),
                        bias: None,
                        out: &out,
                        out2: None,
                    };
                    run_plan(ctx, call, plan).unwrap();
                    let got = crate::RawTensor::from_gpu(out, [m, n], crate::DType::F32, &ta)
                        .to_vec::<f32>()
                        .unwrap();
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                            "{m}x{n}x{k} A k-major {a_k_major} flags {flags} {plan:?}: element {i} is {g}, want {w}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn tiles_fit_the_default_workgroup_memory_or_are_skipped() {
        for t in TILES.iter().chain(&SOFTWARE_TILES) {
            assert_eq!(t.threads() % 64, 0, "{t:?}");
        }
        let p = plan(
            &shape(1024, 1024, 1024),
            GemmDevice {
                workgroup_memory: 16 << 10,
                ..GPU
            },
        );
        if let GemmPlan::Tiled { tile, .. } = p {
            assert!(tile.workgroup_bytes() <= 16 << 10);
        }
    }
}
