// Top-k along the last axis of a contiguous [rows, len] tensor: each thread takes one row and selects
// its k largest (or smallest) elements in order by k passes over the row, each finding the best element
// after the one chosen last (ties: the lower index first; NaN counts as the largest, as in PyTorch).
// k is small next to the row in every use (top-k accuracy, beam candidates), so k passes beat a sort.
//
// Params: 0 rows  1 row length  2 k  3 largest (1) or smallest (0)

@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> values: array<f32>;
@group(0) @binding(3) var<storage, read_write> indices: array<u32>;

// Does (a, ia) come before (b, ib) in the output order?
fn before(a: f32, ia: u32, b: f32, ib: u32) -> bool {
    if is_nan(a) != is_nan(b) {
        return is_nan(a) == (word(3u) == 1u);
    }
    if a != b && !is_nan(a) {
        return (a > b) == (word(3u) == 1u);
    }
    return ia < ib;
}

@compute @workgroup_size(256)
fn topk_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let row = thread_index(wid, groups, lid);
    if row >= word(0u) {
        return;
    }
    let len = word(1u);
    let base = row * len;
    var last_value = 0.0;
    var last_index = 0u;
    for (var j = 0u; j < word(2u); j = j + 1u) {
        var best_index = len;
        var best_value = 0.0;
        for (var i = 0u; i < len; i = i + 1u) {
            let v = src[base + i];
            let after_last = j == 0u || before(last_value, last_index, v, i);
            if after_last && (best_index == len || before(v, i, best_value, best_index)) {
                best_index = i;
                best_value = v;
            }
        }
        values[row * word(2u) + j] = best_value;
        indices[row * word(2u) + j] = best_index;
        last_value = best_value;
        last_index = best_index;
    }
}
