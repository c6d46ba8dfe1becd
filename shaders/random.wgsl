// Seeded random tensors generated on the device: element i is a pure function of (seed, i), so a
// seed gives the same tensor on every device and every run (crates/kiln-device/src/cpu/random.rs
// computes the same hash).
//   uniform_main  a + (b - a) · u,  u in [0, 1) with 24 random bits
//   normal_main   a + b · z,  z standard normal by Box-Muller from two uniforms
//
// Params: 0 numel  2 seed (low word)  3 seed (high word)  4 a (f32 bits)  5 b (f32 bits)

@group(0) @binding(1) var<storage, read_write> out: array<f32>;

// A 32-bit integer hash with low bias (lowbias32).
fn mix(v: u32) -> u32 {
    var x = v;
    x = x ^ (x >> 16u);
    x = x * 0x7feb352du;
    x = x ^ (x >> 15u);
    x = x * 0x846ca68bu;
    x = x ^ (x >> 16u);
    return x;
}

// 24 random bits for counter `i` as a float in [0, 1).
fn unit(i: u32) -> f32 {
    let key = mix(word(2u)) ^ mix(word(3u) ^ 0x9e3779b9u);
    return f32(mix(i ^ key) >> 8u) * (1.0 / 16777216.0);
}

@compute @workgroup_size(256)
fn uniform_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, groups, lid);
    if i >= word(0u) {
        return;
    }
    let a = bitcast<f32>(word(4u));
    let b = bitcast<f32>(word(5u));
    out[i] = a + (b - a) * unit(i);
}

@compute @workgroup_size(256)
fn normal_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, groups, lid);
    if i >= word(0u) {
        return;
    }
    // u1 in (0, 1] so the log is finite.
    let u1 = 1.0 - unit(2u * i);
    let u2 = unit(2u * i + 1u);
    let z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
    out[i] = bitcast<f32>(word(4u)) + bitcast<f32>(word(5u)) * z;
}
