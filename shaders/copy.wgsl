// Layout and dtype conversion: contiguous copies of strided views, casts between f32, f16 and u32, and
// fills. Every buffer is bound as 32-bit words; f16 tensors hold two halves per word (element 2k in the
// low 16 bits), so no adapter feature is needed to store f16. The output is contiguous.
//
// Params (32 words, see crates/kiln-device/src/gpu/params.rs):
//   0 numel (elements)   1 rank   2 source offset (elements)   3 destination offset   4 fill word
//   8..16 shape   16..24 source strides (elements)   24..32 destination strides (scatter_words)

@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

// Storage index (in elements) of element `linear` of a view whose offset is word `offset_word` and
// whose strides start at word `stride_base`.
fn view_index(linear: u32, offset_word: u32, stride_base: u32) -> u32 {
    var rest = linear;
    var index = word(offset_word);
    for (var d = word(1u); d > 0u; d = d - 1u) {
        let dim = word(7u + d);
        index = index + (rest % dim) * word(stride_base + d - 1u);
        rest = rest / dim;
    }
    return index;
}

fn source_index(linear: u32) -> u32 {
    return view_index(linear, 2u, 16u);
}

// The 16 bits of half element `h` of the source.
fn source_half_bits(h: u32) -> u32 {
    return (src[h >> 1u] >> ((h & 1u) * 16u)) & 0xffffu;
}

// Gathers 32-bit elements (f32 or u32): one thread per element.
@compute @workgroup_size(256)
fn copy_words(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, groups, lid);
    if i >= word(0u) {
        return;
    }
    dst[i] = src[source_index(i)];
}

// Gathers f16 elements: one thread per output word (two elements).
@compute @workgroup_size(256)
fn copy_halves(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let t = thread_index(wid, groups, lid);
    let first = 2u * t;
    if first >= word(0u) {
        return;
    }
    var packed = source_half_bits(source_index(first));
    if first + 1u < word(0u) {
        packed = packed | (source_half_bits(source_index(first + 1u)) << 16u);
    }
    dst[t] = packed;
}

// f32 -> f16: one thread per output word (two elements).
@compute @workgroup_size(256)
fn f32_to_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let t = thread_index(wid, groups, lid);
    let first = 2u * t;
    if first >= word(0u) {
        return;
    }
    var pair = vec2<f32>(bitcast<f32>(src[source_index(first)]), 0.0);
    if first + 1u < word(0u) {
        pair.y = bitcast<f32>(src[source_index(first + 1u)]);
    }
    dst[t] = pack2x16float(pair);
}

// f16 -> f32: one thread per element.
@compute @workgroup_size(256)
fn f16_to_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, groups, lid);
    if i >= word(0u) {
        return;
    }
    dst[i] = bitcast<u32>(unpack2x16float(source_half_bits(source_index(i))).x);
}

// u32 -> f32: one thread per element.
@compute @workgroup_size(256)
fn u32_to_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, groups, lid);
    if i >= word(0u) {
        return;
    }
    dst[i] = bitcast<u32>(f32(src[source_index(i)]));
}

// f32 -> u32, truncating toward zero; negative values and NaN become 0.
@compute @workgroup_size(256)
fn f32_to_u32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, groups, lid);
    if i >= word(0u) {
        return;
    }
    let x = bitcast<f32>(src[source_index(i)]);
    dst[i] = select(0u, u32(x), x > 0.0);
}

// Copies 32-bit elements of a source view into a destination view (concat writes each input into
// its slice of the output this way): one thread per element.
@compute @workgroup_size(256)
fn scatter_words(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, groups, lid);
    if i >= word(0u) {
        return;
    }
    dst[view_index(i, 3u, 24u)] = src[source_index(i)];
}

// Writes the fill word to the first numel words of dst.
@compute @workgroup_size(256)
fn fill_words(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, groups, lid);
    if i >= word(0u) {
        return;
    }
    dst[i] = word(4u);
}
