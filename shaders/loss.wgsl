// Losses, each producing per-row (or per-element) losses and the gradient of the mean loss in one pass:
//   cross_entropy   logits [N, C] with u32 class labels [N] (SOFT = false) or probabilities [N, C]
//                   (SOFT = true). One workgroup per row: stable log-sum-exp, then
//                   grad = (softmax · sum(target) - target) / N. A label outside [0, C) sets the device's
//                   error flag (reported at the next readback) and yields NaN.
//   bce_with_logits loss = max(x, 0) - x·t + log(1 + exp(-|x|)), grad = (sigmoid(x) - t) / numel
//   mse             loss = (x - t)², grad = 2 (x - t) / numel
// The mean of the losses is then taken by reduce.wgsl.
//
// Params (see crates/kiln-device/src/gpu/loss.rs):
//   0 rows (N) or elements  1 classes (C)  2 gradient scale (f32 bits: 1/N or 1/numel)  3 error code

override SOFT: bool = false;

@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> targets: array<f32>;
@group(0) @binding(4) var<storage, read_write> losses: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad: array<f32>;
@group(0) @binding(6) var<storage, read_write> error_flag: array<atomic<u32>>;

var<workgroup> maxima: array<f32, 256>;
var<workgroup> sums: array<f32, 256>;
var<workgroup> picked: array<f32, 256>;

@compute @workgroup_size(256)
fn cross_entropy_main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = workgroup_index(wid, groups);
    if row >= word(0u) {
        return;
    }
    let classes = word(1u);
    let base = row * classes;
    var label = 0u;
    var label_ok = true;
    if !SOFT {
        label = labels[row];
        label_ok = label < classes;
        if !label_ok && lid == 0u {
            atomicMax(&error_flag[0], word(3u));
            atomicMax(&error_flag[1], min(label, 0xfffffffeu) + 1u);
        }
    }
    // Online max / sum of exp, plus sum(target · x) and sum(target) for soft labels.
    var state = vec2<f32>(bitcast<f32>(0xff800000u), 0.0);
    var tx = 0.0;
    for (var j = lid; j < classes; j = j + WORKGROUP) {
        let v = logits[base + j];
        state = max_sum_add(state, v);
        if SOFT {
            tx = tx + targets[base + j] * v;
        }
    }
    maxima[lid] = state.x;
    sums[lid] = state.y;
    picked[lid] = tx;
    workgroupBarrier();
    for (var width = WORKGROUP / 2u; width > 0u; width = width / 2u) {
        if lid < width {
            let merged = max_sum_merge(vec2<f32>(maxima[lid], sums[lid]), vec2<f32>(maxima[lid + width], sums[lid + width]));
            maxima[lid] = merged.x;
            sums[lid] = merged.y;
            picked[lid] = picked[lid] + picked[lid + width];
        }
        workgroupBarrier();
    }
    let log_sum_exp = maxima[0] + log(sums[0]);
    let scale = bitcast<f32>(word(2u));
    // sum(target) per row: 1 for class labels.
    var target_sum = 1.0;
    if SOFT {
        workgroupBarrier();
        var t = 0.0;
        for (var j = lid; j < classes; j = j + WORKGROUP) {
            t = t + targets[base + j];
        }
        sums[lid] = t;
        workgroupBarrier();
        for (var width = WORKGROUP / 2u; width > 0u; width = width / 2u) {
            if lid < width {
                sums[lid] = sums[lid] + sums[lid + width];
            }
            workgroupBarrier();
        }
        target_sum = sums[0];
    }
    if lid == 0u {
        if SOFT {
            losses[row] = target_sum * log_sum_exp - picked[0];
        } else if label_ok {
            losses[row] = log_sum_exp - logits[base + label];
        } else {
            losses[row] = bitcast<f32>(0x7fc00000u);
        }
    }
    for (var j = lid; j < classes; j = j + WORKGROUP) {
        let p = exp(logits[base + j] - log_sum_exp);
        var t = 0.0;
        if SOFT {
            t = targets[base + j];
        } else if j == label {
            t = 1.0;
        }
        grad[base + j] = (p * target_sum - t) * scale;
    }
}

@compute @workgroup_size(256)
fn bce_with_logits_main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = thread_index(wid, groups, lid);
    if i >= word(0u) {
        return;
    }
    let x = logits[i];
    let t = targets[i];
    losses[i] = max(x, 0.0) - x * t + log(1.0 + exp(-abs(x)));
    grad[i] = (1.0 / (1.0 + exp(-x)) - t) * bitcast<f32>(word(2u));
}

@compute @workgroup_size(256)
fn mse_main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = thread_index(wid, groups, lid);
    if i >= word(0u) {
        return;
    }
    let d = logits[i] - targets[i];
    losses[i] = d * d;
    grad[i] = 2.0 * d * bitcast<f32>(word(2u));
}
