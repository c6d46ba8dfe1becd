// Row gathers and their gradient: `index_select` along dimension 0 (embedding lookup) reads rows
// src[idx[i]]; its backward adds gradient rows into dst[idx[i]]. Indices repeat, and WGSL has no float
// atomics, so the add is a compare-exchange loop on the f32 bits (sums may round in any order).
// An index out of range raises the device's error flag (reported at the next readback, with the largest
// offending index in its second word) and yields 0.
//
// Params: 0 indices  1 row length (elements)  2 rows of the table  3 error code

@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> indices: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> sums: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read_write> error_flag: array<atomic<u32>>;

// out[i, c] = src[indices[i], c]
@compute @workgroup_size(256)
fn gather_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let t = thread_index(wid, groups, lid);
    let row_len = word(1u);
    if t >= word(0u) * row_len {
        return;
    }
    let row = indices[t / row_len];
    if row >= word(2u) {
        atomicMax(&error_flag[0], word(3u));
        atomicMax(&error_flag[1], min(row, 0xfffffffeu) + 1u);
        out[t] = 0.0;
        return;
    }
    out[t] = src[row * row_len + t % row_len];
}

// sums[indices[i], c] += src[i, c]
@compute @workgroup_size(256)
fn scatter_add_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let t = thread_index(wid, groups, lid);
    let row_len = word(1u);
    if t >= word(0u) * row_len {
        return;
    }
    let row = indices[t / row_len];
    if row >= word(2u) {
        atomicMax(&error_flag[0], word(3u));
        atomicMax(&error_flag[1], min(row, 0xfffffffeu) + 1u);
        return;
    }
    let target_index = row * row_len + t % row_len;
    let add = src[t];
    var old = atomicLoad(&sums[target_index]);
    loop {
        let swapped = atomicCompareExchangeWeak(&sums[target_index], old, bitcast<u32>(bitcast<f32>(old) + add));
        if swapped.exchanged {
            break;
        }
        old = swapped.old_value;
    }
}
