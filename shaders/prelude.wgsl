// Included before every other shader by crates/kiln-device/src/shaders.rs: the 32-word parameter block
// each kernel reads from binding 0 (see crates/kiln-device/src/gpu/params.rs), and the flattening of the
// x·y dispatch grid back into one index. Each shader documents which parameter words it reads.

const WORKGROUP: u32 = 256u;

struct Params {
    words: array<vec4<u32>, 8>,
}

@group(0) @binding(0) var<uniform> params: Params;

fn word(i: u32) -> u32 {
    return params.words[i >> 2u][i & 3u];
}

// Index of workgroup `wid` in an x·y grid of `groups` workgroups.
fn workgroup_index(wid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return wid.y * groups.x + wid.x;
}

// Global index of thread `lid` of workgroup `wid` (workgroups of WORKGROUP threads).
fn thread_index(wid: vec3<u32>, groups: vec3<u32>, lid: u32) -> u32 {
    return workgroup_index(wid, groups) * WORKGROUP + lid;
}

// NaN test on the bits: `x != x` is folded to false by drivers that compile with fast-math
// assumptions (lavapipe does), which silently dropped NaN from max, min, argmax and softmax.
fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

// A running (max, sum of exp(x - max)) pair — the stable log-sum-exp of softmax and cross-entropy —
// with value `v` added. The pair starts at (-inf, 0); a NaN input makes the sum NaN.
fn max_sum_add(state: vec2<f32>, v: f32) -> vec2<f32> {
    if v > state.x {
        return vec2<f32>(v, state.y * exp(state.x - v) + 1.0);
    }
    if v > bitcast<f32>(0xff800000u) {
        return vec2<f32>(state.x, state.y + exp(v - state.x));
    }
    if is_nan(v) {
        return vec2<f32>(state.x, v);
    }
    return state;
}

// Two (max, sum of exp(x - max)) pairs merged into one; NaN sums stay NaN.
fn max_sum_merge(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let m = max(a.x, b.x);
    if is_nan(a.y) || is_nan(b.y) {
        return vec2<f32>(m, a.y + b.y);
    }
    var s = 0.0;
    if a.x > bitcast<f32>(0xff800000u) {
        s = s + a.y * exp(a.x - m);
    }
    if b.x > bitcast<f32>(0xff800000u) {
        s = s + b.y * exp(b.x - m);
    }
    return vec2<f32>(m, s);
}
