// Softmax and log-softmax along one axis of a contiguous tensor viewed as [outer, axis, inner], forward
// and backward. One workgroup of 256 threads per row: an online pass keeps each thread's running max
// and rescaled sum (so huge logits never overflow), a tree combines them, then each element is written.
//
// Params (see crates/kiln-device/src/gpu/softmax.rs):  0 outer  1 axis length  2 inner

// true: log_softmax; false: softmax.
override LOG: bool = false;

// forward: the input; backward: the forward output y.
@group(0) @binding(1) var<storage, read> x: array<f32>;
// backward only: the upstream gradient.
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> maxima: array<f32, 256>;
var<workgroup> sums: array<f32, 256>;

fn row_base(row: u32) -> u32 {
    let inner = word(2u);
    return (row / inner) * word(1u) * inner + row % inner;
}

// Combines (max, sum of exp(x - max)) pairs of threads lid and lid + width, tree style.
fn reduce_max_sum(lid: u32) {
    workgroupBarrier();
    for (var width = WORKGROUP / 2u; width > 0u; width = width / 2u) {
        if lid < width {
            let merged = max_sum_merge(vec2<f32>(maxima[lid], sums[lid]), vec2<f32>(maxima[lid + width], sums[lid + width]));
            maxima[lid] = merged.x;
            sums[lid] = merged.y;
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn softmax_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = workgroup_index(wid, groups);
    if row >= word(0u) * word(2u) {
        return;
    }
    let base = row_base(row);
    let inner = word(2u);
    let n = word(1u);
    var state = vec2<f32>(bitcast<f32>(0xff800000u), 0.0);
    for (var j = lid; j < n; j = j + WORKGROUP) {
        state = max_sum_add(state, x[base + j * inner]);
    }
    maxima[lid] = state.x;
    sums[lid] = state.y;
    reduce_max_sum(lid);
    let row_max = maxima[0];
    let log_sum = log(sums[0]);
    for (var j = lid; j < n; j = j + WORKGROUP) {
        let shifted = x[base + j * inner] - row_max;
        if LOG {
            out[base + j * inner] = shifted - log_sum;
        } else {
            out[base + j * inner] = exp(shifted - log_sum);
        }
    }
}

// softmax: dx = y * (dy - sum(dy * y)); log_softmax: dx = dy - exp(y) * sum(dy).
@compute @workgroup_size(256)
fn softmax_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = workgroup_index(wid, groups);
    if row >= word(0u) * word(2u) {
        return;
    }
    let base = row_base(row);
    let inner = word(2u);
    let n = word(1u);
    var s = 0.0;
    for (var j = lid; j < n; j = j + WORKGROUP) {
        let i = base + j * inner;
        if LOG {
            s = s + grad[i];
        } else {
            s = s + grad[i] * x[i];
        }
    }
    sums[lid] = s;
    workgroupBarrier();
    for (var width = WORKGROUP / 2u; width > 0u; width = width / 2u) {
        if lid < width {
            sums[lid] = sums[lid] + sums[lid + width];
        }
        workgroupBarrier();
    }
    let total = sums[0];
    for (var j = lid; j < n; j = j + WORKGROUP) {
        let i = base + j * inner;
        if LOG {
            out[i] = grad[i] - exp(x[i]) * total;
        } else {
            out[i] = x[i] * (grad[i] - total);
        }
    }
}
