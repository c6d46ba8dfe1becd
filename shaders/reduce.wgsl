// Reductions along one axis of a contiguous tensor viewed as [outer, axis, inner]: sum (and mean via a
// scale), max, min, argmax. A workgroup of 256 threads reduces one slice of one output: each thread
// accumulates a strided run, then a tree in workgroup memory combines the 256 partial results.
// Long axes are split over `parts` workgroups per output; a second launch reduces the parts.
//
// Params (see crates/kiln-device/src/gpu/reduce.rs):
//   0 outer  1 axis length  2 inner  3 elements per part  4 parts per output  5 scale (f32 bits)

// 0 sum, 1 max, 2 min.
override OP: u32 = 0u;

@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst_index: array<u32>;

var<workgroup> values: array<f32, 256>;
var<workgroup> indices: array<u32, 256>;

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
        case 1u: { return select(max(x, y), x + y, x != x || y != y); }
        case 2u: { return select(min(x, y), x + y, x != x || y != y); }
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

// Which output and which run of the axis this workgroup reduces.
fn slice_of(wid: vec3<u32>, groups: vec3<u32>) -> Slice {
    let group = workgroup_index(wid, groups);
    let parts = word(4u);
    let output = group / parts;
    let part = group % parts;
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
    @builtin(local_invocation_index) lid: u32,
) {
    let s = slice_of(wid, groups);
    if !s.valid {
        return;
    }
    let inner = word(2u);
    var acc = identity();
    for (var j = s.begin + lid; j < s.end; j = j + WORKGROUP) {
        acc = combine(acc, src[s.base + j * inner]);
    }
    values[lid] = acc;
    workgroupBarrier();
    for (var width = WORKGROUP / 2u; width > 0u; width = width / 2u) {
        if lid < width {
            values[lid] = combine(values[lid], values[lid + width]);
        }
        workgroupBarrier();
    }
    if lid == 0u {
        var result = values[0];
        if OP == 0u {
            result = result * bitcast<f32>(word(5u));
        }
        dst[s.output * word(4u) + s.part] = result;
    }
}

// Index of the largest element along the axis (the first one on ties; NaN counts as largest).
@compute @workgroup_size(256)
fn argmax_main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let s = slice_of(wid, groups);
    if !s.valid {
        return;
    }
    let inner = word(2u);
    var best = bitcast<f32>(0xff800000u);
    var best_index = 0xffffffffu;
    for (var j = s.begin + lid; j < s.end; j = j + WORKGROUP) {
        let v = src[s.base + j * inner];
        if best_index == 0xffffffffu || v > best || (v != v && best == best) {
            best = v;
            best_index = j;
        }
    }
    values[lid] = best;
    indices[lid] = best_index;
    workgroupBarrier();
    for (var width = WORKGROUP / 2u; width > 0u; width = width / 2u) {
        if lid < width {
            let v = values[lid + width];
            let i = indices[lid + width];
            let mine = values[lid];
            let my_index = indices[lid];
            let better = i != 0xffffffffu && (my_index == 0xffffffffu || v > mine
                || (v == mine && i < my_index) || (v != v && mine == mine)
                || (v != v && mine != mine && i < my_index));
            if better {
                values[lid] = v;
                indices[lid] = i;
            }
        }
        workgroupBarrier();
    }
    if lid == 0u {
        dst_index[s.output] = indices[0];
    }
}
