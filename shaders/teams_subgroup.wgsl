// Row teams on subgroups (compiled in front of softmax.wgsl and reduce.wgsl when the adapter has
// SUBGROUP): each subgroup is one team and reduces with subgroup operations, no workgroup barriers.
// Correct for any subgroup size (8 on lavapipe, 32 on NVIDIA, 64 on AMD): a team's index comes from
// a workgroup counter, not from assuming which invocations form a subgroup.
// The other implementation of the same functions is teams_shared.wgsl.

// The builtins a team needs (an entry point takes this struct).
struct Team {
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) size: u32,
}

var<workgroup> team_count: atomic<u32>;

// (team index in the workgroup, lane in the team, threads per team, teams per workgroup). Call once,
// from uniform control flow, before any other team function.
fn team_of(t: Team) -> vec4<u32> {
    if t.lid == 0u {
        atomicStore(&team_count, 0u);
    }
    workgroupBarrier();
    // Every invocation is active here, so lane 0 of each subgroup takes a number for it.
    var index = 0u;
    if t.lane == 0u {
        index = atomicAdd(&team_count, 1u);
    }
    return vec4<u32>(subgroupBroadcast(index, 0u), t.lane, t.size, WORKGROUP / t.size);
}

fn team_sum(v: f32, t: Team) -> f32 {
    return subgroupAdd(v);
}

// Merges the team's (max, sum of exp(x - max)) pairs (see max_sum_add in the prelude).
fn team_max_sum(state: vec2<f32>, t: Team) -> vec2<f32> {
    let m = subgroupMax(state.x);
    var part = state.y;
    if state.x > bitcast<f32>(0xff800000u) {
        part = state.y * exp(state.x - m);
    }
    return vec2<f32>(m, subgroupAdd(part));
}

// Sum (op 0), max (1) or min (2) over the team; max and min propagate NaN.
fn team_reduce(v: f32, op: u32, t: Team) -> f32 {
    if op == 0u {
        return subgroupAdd(v);
    }
    if subgroupAny(is_nan(v)) {
        return bitcast<f32>(0x7fc00000u);
    }
    if op == 1u {
        return subgroupMax(v);
    }
    return subgroupMin(v);
}

// The team's argmax from each lane's (best value, its index; 0xffffffff when the lane saw nothing):
// the first NaN if any, else the first index of the largest value.
fn team_argmax(v: f32, index: u32, t: Team) -> u32 {
    let valid = index != 0xffffffffu;
    var candidate = false;
    if subgroupAny(valid && is_nan(v)) {
        candidate = valid && is_nan(v);
    } else {
        let best = subgroupMax(select(bitcast<f32>(0xff800000u), v, valid));
        candidate = valid && v == best;
    }
    return subgroupMin(select(0xffffffffu, index, candidate));
}
