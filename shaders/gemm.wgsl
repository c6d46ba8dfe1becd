// Register-tiled GEMM serving matmul and convolution (implicit GEMM: no im2col is materialised).
// C[b](M x N) = A[b](M x K) · B[b](K x N). Each workgroup of 256 threads computes a 64x64 tile of C in
// K-steps of 16 staged through workgroup memory; each thread accumulates a 4x4 block in registers.
// MODE selects how A and B are read and C is written:
//   0 matmul              A, B strided (transposed operands are just strides), numpy-broadcast batch dims
//   1 conv2d forward      M = N·OH·OW, N = Cout, K = Cin·KH·KW; A = input patches, B = weights; + bias
//   2 conv2d input-grad   M = N·H·W, N = Cin, K = Cout·KH·KW; A = output-grad taps (stride holes skipped)
//   3 conv2d weight-grad  M = Cout, N = Cin·KH·KW, K = N·OH·OW split into `batch` slices (split-K);
//                         each slice writes its partial sum, summed afterwards by reduce.wgsl
//
// Params (see crates/kiln-device/src/gpu/matmul.rs and conv2d.rs):
//   0 M  1 N  2 K  3 batch (or split-K slices)  4 tiles along M  5 tiles along N  6 K per slice
//   matmul: 8 A offset  9 A row stride  10 A col stride  11 B offset  12 B row stride  13 B col stride
//           14 batch rank  16..20 batch shape  20..24 A batch strides  24..28 B batch strides
//   conv:   8 Cin  9 H  10 W  11 Cout  12 KH  13 KW  14 OH  15 OW  16 stride h  17 stride w
//           18 pad h  19 pad w  20 has bias

override MODE: u32 = 0u;

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;

@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

// A tile as [k][m / 4] of vec4 (four consecutive rows), B tile as [k][n / 4].
var<workgroup> a_tile: array<vec4<f32>, 256>;
var<workgroup> b_tile: array<vec4<f32>, 256>;

// The input value that output `position` = (image, oh, ow) sees through `tap` = (ci, kh, kw) of the
// kernel, from an NCHW input of shape [_, Cin, H, W] (zero padding outside the image). The input is
// operand A (forward) or B (weight-grad).
fn patch_value(src_is_a: bool, position: u32, tap: u32) -> f32 {
    let kk = word(12u) * word(13u);
    let ci = tap / kk;
    let kh = (tap % kk) / word(13u);
    let kw = tap % word(13u);
    let ohw = word(14u) * word(15u);
    let image = position / ohw;
    let oh = (position % ohw) / word(15u);
    let ow = position % word(15u);
    let y = i32(oh * word(16u) + kh) - i32(word(18u));
    let x = i32(ow * word(17u) + kw) - i32(word(19u));
    let h = i32(word(9u));
    let w = i32(word(10u));
    if y < 0 || x < 0 || y >= h || x >= w {
        return 0.0;
    }
    let index = ((image * word(8u) + ci) * u32(h) + u32(y)) * u32(w) + u32(x);
    if src_is_a {
        return a[index];
    }
    return b[index];
}

// Offset of batch `batch` in an operand whose batch strides start at word `stride_base` (matmul).
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

// A[batch](m, k); callers guarantee m < M and k < K.
fn load_a(batch: u32, m: u32, k: u32) -> f32 {
    switch MODE {
        case 0u: {
            return a[word(8u) + batch_offset(batch, 20u) + m * word(9u) + k * word(10u)];
        }
        case 1u: {
            return patch_value(true, m, k);
        }
        case 2u: {
            // Output-grad tap that input pixel (n, ih, iw) received through kernel offset (kh, kw).
            let kk = word(12u) * word(13u);
            let co = k / kk;
            let kh = (k % kk) / word(13u);
            let kw = k % word(13u);
            let hw = word(9u) * word(10u);
            let n = m / hw;
            let ih = (m % hw) / word(10u);
            let iw = m % word(10u);
            let ty = i32(ih + word(18u)) - i32(kh);
            let tx = i32(iw + word(19u)) - i32(kw);
            if ty < 0 || tx < 0 || u32(ty) % word(16u) != 0u || u32(tx) % word(17u) != 0u {
                return 0.0;
            }
            let oh = u32(ty) / word(16u);
            let ow = u32(tx) / word(17u);
            if oh >= word(14u) || ow >= word(15u) {
                return 0.0;
            }
            return a[((n * word(11u) + co) * word(14u) + oh) * word(15u) + ow];
        }
        default: {
            // Output grad as [Cout, N·OH·OW].
            let ohw = word(14u) * word(15u);
            let n = k / ohw;
            return a[(n * word(11u) + m) * ohw + k % ohw];
        }
    }
}

// B[batch](k, n); callers guarantee k < K and n < N.
fn load_b(batch: u32, k: u32, n: u32) -> f32 {
    switch MODE {
        case 0u: {
            return b[word(11u) + batch_offset(batch, 24u) + k * word(12u) + n * word(13u)];
        }
        case 1u: {
            return b[n * word(2u) + k];
        }
        case 2u: {
            // Weight [Cout, Cin, KH, KW] at (co, ci = n, kh, kw) with k = (co, kh, kw).
            let kk = word(12u) * word(13u);
            let co = k / kk;
            return b[(co * word(8u) + n) * kk + k % kk];
        }
        default: {
            // Input patches: k = (image, oh, ow), n = (ci, kh, kw).
            return patch_value(false, k, n);
        }
    }
}

fn store(batch: u32, m: u32, n: u32, value: f32) {
    switch MODE {
        case 1u: {
            let ohw = word(14u) * word(15u);
            let image = m / ohw;
            var out = value;
            if word(20u) != 0u {
                out = out + bias[n];
            }
            c[(image * word(11u) + n) * ohw + m % ohw] = out;
        }
        case 2u: {
            let hw = word(9u) * word(10u);
            let image = m / hw;
            c[(image * word(8u) + n) * hw + m % hw] = value;
        }
        default: {
            // matmul: [batch, M, N]; weight-grad partials: [slice, Cout, Cin·KH·KW].
            c[(batch * word(0u) + m) * word(1u) + n] = value;
        }
    }
}

@compute @workgroup_size(256)
fn gemm_main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let m_size = word(0u);
    let n_size = word(1u);
    let k_size = word(2u);
    let tiles_m = word(4u);
    let tiles_n = word(5u);
    let tile = workgroup_index(wid, groups);
    if tile >= word(3u) * tiles_m * tiles_n {
        return;
    }
    let batch = tile / (tiles_m * tiles_n);
    let m0 = ((tile / tiles_n) % tiles_m) * TILE_M;
    let n0 = (tile % tiles_n) * TILE_N;
    var k_begin = 0u;
    var k_end = k_size;
    if MODE == 3u {
        k_begin = batch * word(6u);
        k_end = min(k_size, k_begin + word(6u));
    }

    let tx = lid % 16u;
    let ty = lid / 16u;
    var acc: array<vec4<f32>, 4>;

    for (var k0 = k_begin; k0 < k_end; k0 = k0 + TILE_K) {
        for (var i = 0u; i < 4u; i = i + 1u) {
            let index = lid + i * 256u;
            // A: 64 rows x 16 k; consecutive threads read consecutive k of one row.
            let ar = index / TILE_K;
            let ak = index % TILE_K;
            var av = 0.0;
            if m0 + ar < m_size && k0 + ak < k_end {
                av = load_a(batch, m0 + ar, k0 + ak);
            }
            a_tile[ak * 16u + ar / 4u][ar % 4u] = av;
            // B: 16 k x 64 columns; consecutive threads read consecutive columns.
            let bk = index / TILE_N;
            let bn = index % TILE_N;
            var bv = 0.0;
            if k0 + bk < k_end && n0 + bn < n_size {
                bv = load_b(batch, k0 + bk, n0 + bn);
            }
            b_tile[bk * 16u + bn / 4u][bn % 4u] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk = kk + 1u) {
            let av = a_tile[kk * 16u + ty];
            let bv = b_tile[kk * 16u + tx];
            acc[0] = acc[0] + av.x * bv;
            acc[1] = acc[1] + av.y * bv;
            acc[2] = acc[2] + av.z * bv;
            acc[3] = acc[3] + av.w * bv;
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i = i + 1u) {
        let m = m0 + ty * 4u + i;
        if m < m_size {
            for (var j = 0u; j < 4u; j = j + 1u) {
                let n = n0 + tx * 4u + j;
                if n < n_size {
                    store(batch, m, n, acc[i][j]);
                }
            }
        }
    }
}
