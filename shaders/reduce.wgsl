// Reductions along one axis of a contiguous tensor viewed as [outer, axis, inner]: sum (and mean via a
// scale), max, min, argmax. The axis of each output may be split into `parts` slices; a team of threads
// (a subgroup, or a run of threads sharing a tree in workgroup memory: see teams_*.wgsl, compiled in
// front of this file) reduces one slice — each thread a strided run, then the team combines them — and
// a workgroup takes several slices. Split axes are finished by a second launch over the parts.
//
// Contiguous axes whose parts are whole vec4s (inner = 1, axis and part length multiples of four) are
// read as vec4 by reduce_main.
//
// Params (see crates/kiln-device/src/gpu/reduce.rs):
//   0 outer  1 axis length  2 inner  3 elements per part  4 parts per output  5 scale (f32 bits)
//   6 slices per workgroup  7 read as vec4 (0 or 1)  31 threads per team (teams_shared.wgsl)

// 0 sum, 1 max, 2 min.
override OP: u32 = 0u;

@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst_index: array<u32>;
// The same buffer as src, four elements at a time.
@group(0) @binding(4) var<storage, read> src4: array<vec4<f32>>;

fn identity() -> f32 {
    switch OP {
        case 1u: { return bitcast<f32>(0xff800000u); }
        case 2u: { return bitcast<f32>(0x7f800000u); }
        default: { return 0.0; }
    }
}

// max/min propagate NaN, as PyTorch's do.
fn combine(x: f32, y: f32) -> f32 {
    switch OP {
        case 1u: { return select(max(x, y), x + y, is_nan(x) || is_nan(y)); }
        case 2u: { return select(min(x, y), x + y, is_nan(x) || is_nan(y)); }
        default: { return x + y; }
    }
}

struct Slice {
    valid: bool,
    output: u32,
    part: u32,
    base: u32,
    begin: u32,
    end: u32,
}

// Slice `index` (= output · parts + part): which output and which run of its axis.
fn slice_of(index: u32) -> Slice {
    let parts = word(4u);
    let output = index / parts;
    let part = index % parts;
    let inner = word(2u);
    let axis = word(1u);
    let base = (output / inner) * axis * inner + output % inner;
    let begin = part * word(3u);
    return Slice(output < word(0u) * inner, output, part, base, begin, min(axis, begin + word(3u)));
}

@compute @workgroup_size(256)
fn reduce_main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    t: Team,
) {
    let per_group = word(6u);
    let first = workgroup_index(wid, groups) * per_group;
    if first >= word(0u) * word(2u) * word(4u) {
        return;
    }
    let team = team_of(t);
    let inner = word(2u);
    for (var s0 = 0u; s0 < per_group; s0 = s0 + team.w) {
        let s = slice_of(first + s0 + team.x);
        let valid = s0 + team.x < per_group && s.valid;
        var acc = identity();
        if valid && word(7u) != 0u {
            for (var j = s.begin / 4u + team.y; j < s.end / 4u; j = j + team.z) {
                let v = src4[s.base / 4u + j];
                acc = combine(acc, combine(combine(v.x, v.y), combine(v.z, v.w)));
            }
        } else if valid {
            for (var j = s.begin + team.y; j < s.end; j = j + team.z) {
                acc = combine(acc, src[s.base + j * inner]);
            }
        }
        var result = team_reduce(acc, OP, t);
        if valid && team.y == 0u {
            if OP == 0u {
                result = result * bitcast<f32>(word(5u));
            }
            dst[s.output * word(4u) + s.part] = result;
        }
    }
}

// Index of the largest element along the axis (the first one on ties; NaN counts as largest).
@compute @workgroup_size(256)
fn argmax_main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    t: Team,
) {
    let per_group = word(6u);
    let first = workgroup_index(wid, groups) * per_group;
    if first >= word(0u) * word(2u) * word(4u) {
        return;
    }
    let team = team_of(t);
    let inner = word(2u);
    for (var s0 = 0u; s0 < per_group; s0 = s0 + team.w) {
        let s = slice_of(first + s0 + team.x);
        let valid = s0 + team.x < per_group && s.valid;
        var best = bitcast<f32>(0xff800000u);
        var best_index = 0xffffffffu;
        if valid {
            for (var j = s.begin + team.y; j < s.end; j = j + team.z) {
                let v = src[s.base + j * inner];
                if best_index == 0xffffffffu || v > best || (is_nan(v) && !is_nan(best)) {
                    best = v;
                    best_index = j;
                }
            }
        }
        let index = team_argmax(best, best_index, t);
        if valid && team.y == 0u {
            dst_index[s.output] = index;
        }
    }
}
