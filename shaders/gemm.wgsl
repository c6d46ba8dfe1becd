// The GEMM behind matmul and convolution (implicit GEMM: no im2col is materialised).
// C[b](M x N) = A[b](M x K) · B[b](K x N), three entry points:
//   gemm_main    register-tiled: a workgroup computes a BM x BN tile of C in K-steps of BK staged through
//                workgroup memory; each thread accumulates TM x TN outputs (vec4 columns) in registers.
//   gemv_main    thin outputs (M or N <= 4): the small operand is staged in chunks of K through workgroup
//                memory; each long-axis row's dot products split K over `lanes` threads, summed by a
//                tree in workgroup memory (no tile padding, coalesced K walks).
//   gemm_reduce  split-K: sums the per-slice partials in slice order (deterministic) and stores.
// The tile shape is not fixed here: crates/kiln-device/src/gpu/gemm.rs prepends the constants BM, BN, BK,
// TM, TN of the configuration it picked for the shape (one pipeline per configuration), and the
// unrolled register code of that tile: `tile_fma(kk, tx, ty)` (one K-step of the thread's TM x TN
// accumulators, straight-line code so every driver keeps them in registers) and `tile_store(..)`.
//
// MODE selects how A and B are read and C is written:
//   0 matmul              A, B strided (transposed operands are just strides), numpy-broadcast batch dims;
//                         C [batch, M, N], + bias[n] when flagged
//   1 conv2d forward      M = N·OH·OW, N = Cout, K = Cin·KH·KW; A = input patches, B = weights; + bias
//   2 conv2d input-grad   M = N·H·W, N = Cin, K = Cout·KH·KW; A = output-grad taps (stride holes skipped)
//   3 conv2d weight-grad  M = Cout, N = Cin·KH·KW (+1 bias column of ones when flagged: its sums are the
//                         bias gradient, written to c2), K = N·OH·OW
//
// Params (see gpu/gemm.rs, matmul.rs and conv2d.rs):
//   0 M  1 N  2 K  3 batch  4 tiles (or row groups) along M  5 tiles along N  6 K per slice  7 slices
//   matmul: 8 A offset  9 A row stride  10 A col stride  11 B offset  12 B row stride  13 B col stride
//           14 batch rank  16..20 batch shape  20..24 A batch strides  24..28 B batch strides
//   conv:   8 Cin  9 H  10 W  11 Cout  12 KH  13 KW  14 OH  15 OW  16 stride h  17 stride w
//           18 pad h  19 pad w
//   28 flags (below)  29 GEMV lanes per row

override MODE: u32 = 0u;

const THREADS_M: u32 = BM / TM;
const THREADS_N: u32 = BN / TN;
const THREADS: u32 = THREADS_M * THREADS_N;
// vec4s per k-row of a tile: one vec4 of padding keeps k-major stores off a single bank.
const A_STRIDE: u32 = BM / 4u + 1u;
const B_STRIDE: u32 = BN / 4u + 1u;
const A_LOADS: u32 = (BM * BK + THREADS - 1u) / THREADS;
// Quads of K in a K-step (A_VEC4, B_VEC4 with K-major loads, which need BK % 4 = 0; never 0, so the
// divisions below also compile for shorter steps).
const BK_QUADS: u32 = max(BK / 4u, 1u);
const B_LOADS: u32 = (BN * BK + THREADS - 1u) / THREADS;
// Whether each thread loads the same A row (m-major loads) or the same k (k-major loads) at every step.
const A_ROW_FIXED: bool = THREADS % BM == 0u;
const K_FIXED: bool = THREADS % BK == 0u;
// Kernel taps whose (offset, kh, kw) a workgroup tabulates once instead of dividing per element.
const TAP_MAX: u32 = 512u;
const GEMV_THREADS: u32 = 256u;
// The short output axis of a GEMV (one vec4 of sums per thread).
const GEMV_SMALL: u32 = 4u;
// K-indices whose small-operand values a GEMV workgroup stages per step (one per thread).
const GEMV_CHUNK: u32 = GEMV_THREADS;

// Flag bits of word 28.
const A_K_MAJOR: u32 = 1u;   // load A walking k fastest (k is A's contiguous axis)
const B_K_MAJOR: u32 = 2u;   // load B walking k fastest
const HAS_BIAS: u32 = 4u;    // add bias[n] when storing
const BIAS_COLUMN: u32 = 8u; // MODE 3: column N - 1 of B is ones; its sums go to c2
const SWAPPED: u32 = 16u;    // GEMV: the long output axis is N (rows of the walk are columns of C)
const PARTIALS: u32 = 32u;   // write per-slice partial sums [batch, slice, M, N] for gemm_reduce
const ROWS_FAST: u32 = 64u;  // GEMV: neighbouring threads take neighbouring rows (else neighbouring k)
const RELU: u32 = 128u;      // max(C, 0) when storing (after the bias)
const RELU_MASK: u32 = 256u; // MODE 2, 3: the output grad A counts only where `mask` (binding 3, the
                             // forward's ReLU output, laid out like A) is positive: ReLU's backward
const A_VEC4: u32 = 512u;    // MODE 0: A is read as vec4 along its contiguous axis (stride 1, length,
                             // other strides and offset multiples of four; K-major only with BK % 4 = 0)
const B_VEC4: u32 = 1024u;   // MODE 0: the same for B

@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
// The bias (MODE 0, 1) or, in the backward modes, the ReLU output whose sign masks A (RELU_MASK).
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
@group(0) @binding(5) var<storage, read_write> c2: array<f32>;
// A and B again, as vec4 (A_VEC4, B_VEC4).
@group(0) @binding(6) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> b4: array<vec4<f32>>;

var<workgroup> a_tile: array<vec4<f32>, BK * A_STRIDE>;
var<workgroup> b_tile: array<vec4<f32>, BK * B_STRIDE>;
var<workgroup> tap_offset: array<u32, TAP_MAX>;
var<workgroup> tap_window: array<u32, TAP_MAX>;
var<workgroup> gemv_tile: array<vec4<f32>, GEMV_CHUNK>;
var<workgroup> gemv_sum: array<vec4<f32>, GEMV_THREADS>;

// Per-workgroup bases of this batch in A and B (MODE 0).
var<private> a_base: u32;
var<private> b_base: u32;

fn flag(bit: u32) -> bool {
    return (word(28u) & bit) != 0u;
}

// Offset of batch `batch` in an operand whose batch strides start at word `stride_base` (MODE 0).
fn batch_offset(batch: u32, stride_base: u32) -> u32 {
    var rest = batch;
    var offset = 0u;
    for (var d = word(14u); d > 0u; d = d - 1u) {
        let dim = word(15u + d);
        offset = offset + (rest % dim) * word(stride_base + d - 1u);
        rest = rest / dim;
    }
    return offset;
}

// Number of kernel taps the mode addresses through the tap table (A's K in MODE 1 and 2, B's taps in 3).
fn tap_count() -> u32 {
    if MODE == 3u {
        return word(1u) - select(0u, 1u, flag(BIAS_COLUMN));
    }
    return word(2u);
}

// Tap `t` of the kernel window as (offset, kh, kw). The offset is of (ci, kh, kw) in one image's input
// (MODE 1, 3) or of channel co's block in one image's output grad (MODE 2).
fn tap_compute(t: u32) -> vec3<u32> {
    let kk = word(12u) * word(13u);
    let ch = t / kk;
    let r = t - ch * kk;
    let kh = r / word(13u);
    let kw = r - kh * word(13u);
    if MODE == 2u {
        return vec3<u32>(ch * word(14u) * word(15u), kh, kw);
    }
    return vec3<u32>((ch * word(9u) + kh) * word(10u) + kw, kh, kw);
}

fn tap(t: u32) -> vec3<u32> {
    if tap_count() <= TAP_MAX {
        let w = tap_window[t];
        return vec3<u32>(tap_offset[t], w >> 16u, w & 0xffffu);
    }
    return tap_compute(t);
}

// Per-workgroup setup: batch bases (MODE 0) and the tap table (conv modes). Ends with a barrier.
fn setup(batch: u32, lid: u32, threads: u32) {
    if MODE == 0u {
        a_base = word(8u) + batch_offset(batch, 20u);
        b_base = word(11u) + batch_offset(batch, 24u);
    } else {
        let count = tap_count();
        if count <= TAP_MAX {
            for (var t = lid; t < count; t = t + threads) {
                let v = tap_compute(t);
                tap_offset[t] = v.x;
                tap_window[t] = (v.y << 16u) | v.z;
            }
        }
    }
    workgroupBarrier();
}

// Output position p = (image, oh, ow) of a convolution as (offset of its patch origin in the input, y0,
// x0); the origin may lie in the padding, so the offset is signed.
fn position_origin(p: u32) -> vec3<i32> {
    let ohw = word(14u) * word(15u);
    let image = p / ohw;
    let r = p - image * ohw;
    let oh = r / word(15u);
    let ow = r - oh * word(15u);
    let y0 = i32(oh * word(16u)) - i32(word(18u));
    let x0 = i32(ow * word(17u)) - i32(word(19u));
    return vec3<i32>(i32(image * word(8u) * word(9u) * word(10u)) + y0 * i32(word(10u)) + x0, y0, x0);
}

// Input pixel p = (image, ih, iw) of MODE 2 as (offset of the image's output grad, ih + pad h, iw + pad w).
fn pixel_origin(p: u32) -> vec3<i32> {
    let hw = word(9u) * word(10u);
    let image = p / hw;
    let r = p - image * hw;
    let ih = r / word(10u);
    let iw = r - ih * word(10u);
    return vec3<i32>(
        i32(image * word(11u) * word(14u) * word(15u)),
        i32(ih + word(18u)),
        i32(iw + word(19u)),
    );
}

// The input value that the patch with origin `o` (from position_origin) sees through tap `t`; zero in
// the padding. The input is operand A (forward) or B (weight-grad).
fn patch_value(src_is_a: bool, o: vec3<i32>, t: u32) -> f32 {
    let v = tap(t);
    let y = o.y + i32(v.y);
    let x = o.z + i32(v.z);
    if y < 0 || x < 0 || y >= i32(word(9u)) || x >= i32(word(10u)) {
        return 0.0;
    }
    let index = u32(o.x + i32(v.x));
    if src_is_a {
        return a[index];
    }
    return b[index];
}

// The output-grad value that input pixel `o` (from pixel_origin) received through tap t = (co, kh, kw).
fn output_grad_tap(o: vec3<i32>, t: u32) -> f32 {
    let v = tap(t);
    let ty = o.y - i32(v.y);
    let tx = o.z - i32(v.z);
    if ty < 0 || tx < 0 {
        return 0.0;
    }
    var oh = u32(ty);
    var ow = u32(tx);
    if word(16u) != 1u || word(17u) != 1u {
        if oh % word(16u) != 0u || ow % word(17u) != 0u {
            return 0.0;
        }
        oh = oh / word(16u);
        ow = ow / word(17u);
    }
    if oh >= word(14u) || ow >= word(15u) {
        return 0.0;
    }
    return output_grad(u32(o.x) + v.x + oh * word(15u) + ow);
}

// Element `index` of the output grad A, through ReLU's backward when RELU_MASK is set.
fn output_grad(index: u32) -> f32 {
    let g = a[index];
    if flag(RELU_MASK) {
        return g * select(0.0, 1.0, bias[index] > 0.0);
    }
    return g;
}

// A(m, k). `origin` is the row's hoisted origin (MODE 1, 2) when `has_origin`.
fn a_value(m: u32, k: u32, origin: vec3<i32>, has_origin: bool) -> f32 {
    switch MODE {
        case 0u: {
            return a[a_base + m * word(9u) + k * word(10u)];
        }
        case 1u: {
            var o = origin;
            if !has_origin {
                o = position_origin(m);
            }
            return patch_value(true, o, k);
        }
        case 2u: {
            var o = origin;
            if !has_origin {
                o = pixel_origin(m);
            }
            return output_grad_tap(o, k);
        }
        default: {
            // Output grad [N, Cout, OH·OW] as A[co, (image, position)].
            let ohw = word(14u) * word(15u);
            let image = k / ohw;
            return output_grad((image * word(11u) + m) * ohw + (k - image * ohw));
        }
    }
}

// B(k, n). `origin` is position_origin(k) (MODE 3) when `has_origin`.
fn b_value(k: u32, n: u32, origin: vec3<i32>, has_origin: bool) -> f32 {
    switch MODE {
        case 0u: {
            return b[b_base + k * word(12u) + n * word(13u)];
        }
        case 1u: {
            // Weights [Cout, Cin·KH·KW].
            return b[n * word(2u) + k];
        }
        case 2u: {
            // Weights [Cout, Cin, KH, KW] at (co, ci = n, kh, kw) with k = (co, kh, kw).
            let kk = word(12u) * word(13u);
            let co = k / kk;
            return b[(co * word(8u) + n) * kk + (k - co * kk)];
        }
        default: {
            if flag(BIAS_COLUMN) && n == word(1u) - 1u {
                return 1.0;
            }
            var o = origin;
            if !has_origin {
                o = position_origin(k);
            }
            return patch_value(false, o, n);
        }
    }
}

// Index of C(m, n) in the output: [batch, M, N] (MODE 0), NCHW (MODE 1, 2), [Cout, taps] (MODE 3).
fn c_index(batch: u32, m: u32, n: u32) -> u32 {
    switch MODE {
        case 1u: {
            let ohw = word(14u) * word(15u);
            let image = m / ohw;
            return (image * word(11u) + n) * ohw + (m - image * ohw);
        }
        case 2u: {
            let hw = word(9u) * word(10u);
            let image = m / hw;
            return (image * word(8u) + n) * hw + (m - image * hw);
        }
        case 3u: {
            return m * (word(1u) - select(0u, 1u, flag(BIAS_COLUMN))) + n;
        }
        default: {
            return (batch * word(0u) + m) * word(1u) + n;
        }
    }
}

// Distance in the output between C(m, n) and C(m, n + 1).
fn c_column_step() -> u32 {
    switch MODE {
        case 1u: {
            return word(14u) * word(15u);
        }
        case 2u: {
            return word(9u) * word(10u);
        }
        default: {
            return 1u;
        }
    }
}

// Writes C(m, n) = value (+ bias) at `index`; the bias column of MODE 3 goes to c2.
fn put(index: u32, m: u32, n: u32, value: f32) {
    var out = value;
    if flag(HAS_BIAS) {
        out = out + bias[n];
    }
    if flag(RELU) {
        out = max(out, 0.0);
    }
    if MODE == 3u && flag(BIAS_COLUMN) && n == word(1u) - 1u {
        c2[m] = out;
    } else {
        c[index] = out;
    }
}

fn store(batch: u32, m: u32, n: u32, value: f32) {
    put(c_index(batch, m, n), m, n, value);
}

// Where split-K slice `slice` keeps its partial sum of C(m, n): [batch, slice, M, N].
fn partial_index(batch: u32, slice: u32, m: u32, n: u32) -> u32 {
    return ((batch * word(7u) + slice) * word(0u) + m) * word(1u) + n;
}

// Stores a finished sum, or the slice's partial sum when the K walk is split.
fn finish(batch: u32, slice: u32, m: u32, n: u32, value: f32) {
    if flag(PARTIALS) {
        c[partial_index(batch, slice, m, n)] = value;
    } else {
        store(batch, m, n, value);
    }
}

// Loads A's tile as vec4s along its contiguous axis (MODE 0 with A_VEC4): quads lie wholly inside or
// wholly outside the matrix, so one bounds check serves four values.
fn load_a_quads(lid: u32, m0: u32, k0: u32, k_end: u32) {
    let k_major = flag(A_K_MAJOR);
    for (var i = 0u; i < (A_LOADS + 3u) / 4u; i = i + 1u) {
        let q = lid + i * THREADS;
        if q < BM * BK / 4u {
            if k_major {
                let r = q / BK_QUADS;
                let kk = (q % BK_QUADS) * 4u;
                var v = vec4<f32>(0.0);
                if m0 + r < word(0u) && k0 + kk < k_end {
                    v = a4[(a_base + (m0 + r) * word(9u) + k0 + kk) / 4u];
                }
                for (var j = 0u; j < 4u; j = j + 1u) {
                    a_tile[(kk + j) * A_STRIDE + r / 4u][r % 4u] = v[j];
                }
            } else {
                let r = (q % (BM / 4u)) * 4u;
                let kk = q / (BM / 4u);
                var v = vec4<f32>(0.0);
                if m0 + r < word(0u) && k0 + kk < k_end {
                    v = a4[(a_base + m0 + r + (k0 + kk) * word(10u)) / 4u];
                }
                a_tile[kk * A_STRIDE + r / 4u] = v;
            }
        }
    }
}

// B's tile as vec4s along its contiguous axis (MODE 0 with B_VEC4).
fn load_b_quads(lid: u32, n0: u32, k0: u32, k_end: u32) {
    let k_major = flag(B_K_MAJOR);
    for (var i = 0u; i < (B_LOADS + 3u) / 4u; i = i + 1u) {
        let q = lid + i * THREADS;
        if q < BN * BK / 4u {
            if k_major {
                let col = q / BK_QUADS;
                let kk = (q % BK_QUADS) * 4u;
                var v = vec4<f32>(0.0);
                if n0 + col < word(1u) && k0 + kk < k_end {
                    v = b4[(b_base + (k0 + kk) + (n0 + col) * word(13u)) / 4u];
                }
                for (var j = 0u; j < 4u; j = j + 1u) {
                    b_tile[(kk + j) * B_STRIDE + col / 4u][col % 4u] = v[j];
                }
            } else {
                let col = (q % (BN / 4u)) * 4u;
                let kk = q / (BN / 4u);
                var v = vec4<f32>(0.0);
                if n0 + col < word(1u) && k0 + kk < k_end {
                    v = b4[(b_base + (k0 + kk) * word(12u) + n0 + col) / 4u];
                }
                b_tile[kk * B_STRIDE + col / 4u] = v;
            }
        }
    }
}

fn load_a_tile(lid: u32, m0: u32, k0: u32, k_end: u32, origin: vec3<i32>, has_origin: bool) {
    if MODE == 0u && flag(A_VEC4) {
        load_a_quads(lid, m0, k0, k_end);
        return;
    }
    let k_major = flag(A_K_MAJOR);
    for (var i = 0u; i < A_LOADS; i = i + 1u) {
        let index = lid + i * THREADS;
        if index < BM * BK {
            var r = index % BM;
            var kk = index / BM;
            if k_major {
                kk = index % BK;
                r = index / BK;
            }
            var v = 0.0;
            if m0 + r < word(0u) && k0 + kk < k_end {
                v = a_value(m0 + r, k0 + kk, origin, has_origin && !k_major);
            }
            a_tile[kk * A_STRIDE + r / 4u][r % 4u] = v;
        }
    }
}

fn load_b_tile(lid: u32, n0: u32, k0: u32, k_end: u32) {
    if MODE == 0u && flag(B_VEC4) {
        load_b_quads(lid, n0, k0, k_end);
        return;
    }
    let k_major = flag(B_K_MAJOR);
    // MODE 3 with k-major loads and a fixed k per thread: one position origin per step, not per element.
    var origin = vec3<i32>(0);
    let hoist = MODE == 3u && k_major && K_FIXED && k0 + lid % BK < k_end;
    if hoist {
        origin = position_origin(k0 + lid % BK);
    }
    for (var i = 0u; i < B_LOADS; i = i + 1u) {
        let index = lid + i * THREADS;
        if index < BN * BK {
            var col = index % BN;
            var kk = index / BN;
            if k_major {
                kk = index % BK;
                col = index / BK;
            }
            var v = 0.0;
            if n0 + col < word(1u) && k0 + kk < k_end {
                v = b_value(k0 + kk, n0 + col, origin, hoist);
            }
            b_tile[kk * B_STRIDE + col / 4u][col % 4u] = v;
        }
    }
}

@compute @workgroup_size(THREADS)
fn gemm_main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let tiles_m = word(4u);
    let tiles_n = word(5u);
    let slices = word(7u);
    var tile = workgroup_index(wid, groups);
    if tile >= word(3u) * slices * tiles_m * tiles_n {
        return;
    }
    let n0 = (tile % tiles_n) * BN;
    tile = tile / tiles_n;
    let m0 = (tile % tiles_m) * BM;
    tile = tile / tiles_m;
    let slice = tile % slices;
    let batch = tile / slices;
    let k_begin = slice * word(6u);
    let k_end = min(word(2u), k_begin + word(6u));
    setup(batch, lid, THREADS);

    // With m-major A loads each thread always loads the same row: find its patch origin once.
    var origin = vec3<i32>(0);
    let hoist = A_ROW_FIXED && !flag(A_K_MAJOR) && m0 + lid % BM < word(0u);
    if hoist && MODE == 1u {
        origin = position_origin(m0 + lid % BM);
    }
    if hoist && MODE == 2u {
        origin = pixel_origin(m0 + lid % BM);
    }

    let tx = lid % THREADS_N;
    let ty = lid / THREADS_N;
    for (var k0 = k_begin; k0 < k_end; k0 = k0 + BK) {
        load_a_tile(lid, m0, k0, k_end, origin, hoist);
        load_b_tile(lid, n0, k0, k_end);
        workgroupBarrier();
        // Only the K-steps that exist (the last block may be short); the bound is not a constant, so
        // drivers keep this a loop: a fully unrolled one multiplies compile time (lavapipe: seconds).
        let steps = min(BK, k_end - k0);
        for (var kk = 0u; kk < steps; kk = kk + 1u) {
            tile_fma(kk, tx, ty);
        }
        workgroupBarrier();
    }
    // Thread rows: m = m0 + (g * THREADS_M + ty) * 4 + i; columns: n = n0 + (h * THREADS_N + tx) * 4 + j.
    tile_store(batch, slice, m0, n0, tx, ty);
}

// Four outputs of row m from column n (those inside C): the row's address is found once.
fn store_four(batch: u32, slice: u32, m: u32, n: u32, sums: vec4<f32>) {
    if m >= word(0u) {
        return;
    }
    if flag(PARTIALS) {
        let base = partial_index(batch, slice, m, n);
        for (var j = 0u; j < 4u; j = j + 1u) {
            if n + j < word(1u) {
                c[base + j] = sums[j];
            }
        }
        return;
    }
    let index = c_index(batch, m, n);
    let step = c_column_step();
    for (var j = 0u; j < 4u; j = j + 1u) {
        if n + j < word(1u) {
            put(index + j * step, m, n + j, sums[j]);
        }
    }
}

// The small operand of a GEMV (the one with <= 4 rows or columns) at K-index `k`: its `small` values.
fn gemv_small(k: u32, small: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    for (var s = 0u; s < GEMV_SMALL; s = s + 1u) {
        if s < small {
            if flag(SWAPPED) {
                v[s] = a_value(s, k, vec3<i32>(0), false);
            } else {
                v[s] = b_value(k, s, vec3<i32>(0), false);
            }
        }
    }
    return v;
}

// The long operand of a GEMV: row `row` of the long output axis at K-index `k`.
fn gemv_long(row: u32, k: u32) -> f32 {
    if flag(SWAPPED) {
        return b_value(k, row, vec3<i32>(0), false);
    }
    return a_value(row, k, vec3<i32>(0), false);
}

@compute @workgroup_size(GEMV_THREADS)
fn gemv_main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let swapped = flag(SWAPPED);
    let rows = select(word(0u), word(1u), swapped);
    let small = select(word(1u), word(0u), swapped);
    let lanes = word(29u);
    let rows_per_group = GEMV_THREADS / lanes;
    let row_groups = word(4u);
    let slices = word(7u);
    var tile = workgroup_index(wid, groups);
    if tile >= word(3u) * slices * row_groups {
        return;
    }
    let row_group = tile % row_groups;
    tile = tile / row_groups;
    let slice = tile % slices;
    let batch = tile / slices;
    let k_begin = slice * word(6u);
    let k_end = min(word(2u), k_begin + word(6u));
    setup(batch, lid, GEMV_THREADS);

    var lane = lid % lanes;
    var local_row = lid / lanes;
    var partner_step = 1u;
    if flag(ROWS_FAST) {
        lane = lid / rows_per_group;
        local_row = lid % rows_per_group;
        partner_step = rows_per_group;
    }
    let row = row_group * rows_per_group + local_row;

    var acc = vec4<f32>(0.0);
    if rows_per_group == 1u {
        // One row per workgroup: nothing to share, so each lane reads the small values itself.
        if row < rows {
            for (var k = k_begin + lane; k < k_end; k = k + lanes) {
                acc = fma(vec4<f32>(gemv_long(row, k)), gemv_small(k, small), acc);
            }
        }
    } else {
        for (var k0 = k_begin; k0 < k_end; k0 = k0 + GEMV_CHUNK) {
            // The chunk's small-operand values, computed once for every row of the workgroup.
            var v = vec4<f32>(0.0);
            if k0 + lid < k_end {
                v = gemv_small(k0 + lid, small);
            }
            gemv_tile[lid] = v;
            workgroupBarrier();
            if row < rows {
                let chunk = min(GEMV_CHUNK, k_end - k0);
                for (var kc = lane; kc < chunk; kc = kc + lanes) {
                    acc = fma(vec4<f32>(gemv_long(row, k0 + kc)), gemv_tile[kc], acc);
                }
            }
            workgroupBarrier();
        }
    }

    // Sum over the row's lanes (a tree in workgroup memory), then store.
    gemv_sum[lid] = acc;
    workgroupBarrier();
    for (var width = lanes / 2u; width > 0u; width = width / 2u) {
        if lane < width {
            gemv_sum[lid] = gemv_sum[lid] + gemv_sum[lid + width * partner_step];
        }
        workgroupBarrier();
    }
    if lane == 0u && row < rows {
        let sums = gemv_sum[lid];
        for (var s = 0u; s < small; s = s + 1u) {
            if swapped {
                finish(batch, slice, s, row, sums[s]);
            } else {
                finish(batch, slice, row, s, sums[s]);
            }
        }
    }
}

// Split-K: one thread per output sums the slices' partials (binding 1) in order, then stores.
@compute @workgroup_size(WORKGROUP)
fn gemm_reduce(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = thread_index(wid, groups, lid);
    let mn = word(0u) * word(1u);
    if i >= word(3u) * mn {
        return;
    }
    let batch = i / mn;
    let m = (i - batch * mn) / word(1u);
    let n = i % word(1u);
    var sum = 0.0;
    for (var s = 0u; s < word(7u); s = s + 1u) {
        sum = sum + a[partial_index(batch, s, m, n)];
    }
    store(batch, m, n, sum);
}

