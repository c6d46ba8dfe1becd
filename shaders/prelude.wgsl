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
