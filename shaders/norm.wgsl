// Per-channel statistics and affine maps of a contiguous [N, C, L] tensor: batch normalisation's
// kernels. Channel c's elements are x[(n·C + c)·L + l] for every n and l (M = N·L of them).
//
// channel_sums_main: one workgroup per (channel, part); its threads stride over the part's elements
// and reduce in workgroup memory, writing two sums per (part, channel):
//   MODE 0 (moments):    Σ (p - K)  and  Σ (p - K)²        with K = the channel's first element
//   MODE 1 (gradients):  Σ p        and  Σ p · (q - μ[c])
// (the shift K keeps E[x²] - E[x]² accurate when the mean is large). A second, tiny pass
// (`channel_sums_finish`) adds the parts; for MODE 0 it turns them into the mean and the biased
// variance, so either way the result is a [2, C] tensor.
// channel_affine_main: out = α[c]·p + β[c]·(q - μ[c]) + γ[c], one thread per element; the
// coefficients are a [4, C] tensor (α, β, μ, γ). Forward: p = x, β = 0. Backward: p = dy, q = x.
//
// Params: 0 N  1 C  2 L  3 parts  4 elements per part

override MODE: u32 = 0u;

@group(0) @binding(1) var<storage, read> p: array<f32>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> coef: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> partial: array<f32>;

var<workgroup> tree_a: array<f32, 256>;
var<workgroup> tree_b: array<f32, 256>;

// Element `i` (0..M) of channel `c`.
fn channel_index(c: u32, i: u32) -> u32 {
    let l = word(2u);
    return ((i / l) * word(1u) + c) * l + i % l;
}

@compute @workgroup_size(256)
fn channel_sums_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let g = workgroup_index(wid, groups);
    let channels = word(1u);
    if g >= channels * word(3u) {
        return;
    }
    let c = g % channels;
    let part = g / channels;
    let m = word(0u) * word(2u);
    let start = part * word(4u);
    let end = min(start + word(4u), m);
    var center = 0.0;
    if MODE == 0u {
        center = p[channel_index(c, 0u)];
    } else {
        center = coef[c];
    }
    var a = 0.0;
    var b = 0.0;
    for (var i = start + lid; i < end; i = i + 256u) {
        let at = channel_index(c, i);
        if MODE == 0u {
            let d = p[at] - center;
            a = a + d;
            b = b + d * d;
        } else {
            a = a + p[at];
            b = b + p[at] * (q[at] - center);
        }
    }
    tree_a[lid] = a;
    tree_b[lid] = b;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride = stride >> 1u) {
        if lid < stride {
            tree_a[lid] = tree_a[lid] + tree_a[lid + stride];
            tree_b[lid] = tree_b[lid] + tree_b[lid + stride];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        out[g] = tree_a[0];
        out[channels * word(3u) + g] = tree_b[0];
    }
}

// Adds the parts (sum k of channel c is Σ_part partial[(k·parts + part)·C + c]); MODE 0 writes the
// mean and the biased variance instead of the two sums.
@compute @workgroup_size(256)
fn channel_sums_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let c = thread_index(wid, groups, lid);
    let channels = word(1u);
    if c >= channels {
        return;
    }
    var a = 0.0;
    var b = 0.0;
    for (var part = 0u; part < word(3u); part = part + 1u) {
        a = a + partial[part * channels + c];
        b = b + partial[(word(3u) + part) * channels + c];
    }
    if MODE == 0u {
        let m = f32(word(0u) * word(2u));
        let shifted_mean = a / m;
        out[c] = p[channel_index(c, 0u)] + shifted_mean;
        out[channels + c] = max(b / m - shifted_mean * shifted_mean, 0.0);
    } else {
        out[c] = a;
        out[channels + c] = b;
    }
}

@compute @workgroup_size(256)
fn channel_affine_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, groups, lid);
    let channels = word(1u);
    if i >= word(0u) * channels * word(2u) {
        return;
    }
    let c = (i / word(2u)) % channels;
    var y = coef[c] * p[i] + coef[3u * channels + c];
    if MODE == 1u {
        y = y + coef[channels + c] * (q[i] - coef[2u * channels + c]);
    }
    out[i] = y;
}
