// Row teams in workgroup memory (compiled in front of softmax.wgsl and reduce.wgsl when the adapter
// has no SUBGROUP, or when KILN_SUBGROUPS=0): teams of `word(31)` consecutive threads (a power of two)
// reduce with a tree in workgroup memory. Every function has a barrier: call them from uniform control
// flow, with every thread of the workgroup. The other implementation is teams_subgroup.wgsl.

struct Team {
    @builtin(local_invocation_index) lid: u32,
}

var<workgroup> team_values: array<vec2<f32>, WORKGROUP>;
var<workgroup> team_indices: array<u32, WORKGROUP>;

// (team index in the workgroup, lane in the team, threads per team, teams per workgroup).
fn team_of(t: Team) -> vec4<u32> {
    let width = word(31u);
    return vec4<u32>(t.lid / width, t.lid % width, width, WORKGROUP / width);
}

// Reduces team_values[..].x (or the pair) over each team with `combine_code`: 0 sum, 1 max, 2 min
// (NaN-propagating), 3 max-sum merge; returns the team's result.
fn team_tree(lid: u32, combine_code: u32) -> vec2<f32> {
    let width = word(31u);
    let lane = lid % width;
    workgroupBarrier();
    for (var w = width / 2u; w > 0u; w = w / 2u) {
        if lane < w {
            let x = team_values[lid];
            let y = team_values[lid + w];
            var r = x;
            switch combine_code {
                case 0u: { r.x = x.x + y.x; }
                case 1u: { r.x = select(max(x.x, y.x), x.x + y.x, is_nan(x.x) || is_nan(y.x)); }
                case 2u: { r.x = select(min(x.x, y.x), x.x + y.x, is_nan(x.x) || is_nan(y.x)); }
                default: { r = max_sum_merge(x, y); }
            }
            team_values[lid] = r;
        }
        workgroupBarrier();
    }
    let result = team_values[lid - lane];
    workgroupBarrier();
    return result;
}

fn team_sum(v: f32, t: Team) -> f32 {
    team_values[t.lid] = vec2<f32>(v, 0.0);
    return team_tree(t.lid, 0u).x;
}

fn team_max_sum(state: vec2<f32>, t: Team) -> vec2<f32> {
    team_values[t.lid] = state;
    return team_tree(t.lid, 3u);
}

fn team_reduce(v: f32, op: u32, t: Team) -> f32 {
    team_values[t.lid] = vec2<f32>(v, 0.0);
    return team_tree(t.lid, op).x;
}

fn team_argmax(v: f32, index: u32, t: Team) -> u32 {
    let width = word(31u);
    let lid = t.lid;
    let lane = lid % width;
    team_values[lid] = vec2<f32>(v, 0.0);
    team_indices[lid] = index;
    workgroupBarrier();
    for (var w = width / 2u; w > 0u; w = w / 2u) {
        if lane < w {
            let other = team_values[lid + w].x;
            let i = team_indices[lid + w];
            let mine = team_values[lid].x;
            let my_index = team_indices[lid];
            let better = i != 0xffffffffu && (my_index == 0xffffffffu || other > mine
                || (other == mine && i < my_index) || (is_nan(other) && !is_nan(mine))
                || (is_nan(other) && is_nan(mine) && i < my_index));
            if better {
                team_values[lid].x = other;
                team_indices[lid] = i;
            }
        }
        workgroupBarrier();
    }
    let result = team_indices[lid - lane];
    workgroupBarrier();
    return result;
}
