// Fused optimizer updates: one thread per parameter element reads the parameter, its gradient and its
// state, and writes the updated parameter and state (PyTorch's update rules).
//   adam_main  Adam / AdamW. L2 weight decay adds wd·p to the gradient (Adam); decoupled weight decay
//              scales p by (1 - lr·wd) first (AdamW). Bias correction with c1 = 1 - β1^t, c2 = 1 - β2^t:
//              m' = β1 m + (1-β1) g; v' = β2 v + (1-β2) g²; p' = p - lr · (m'/c1) / (sqrt(v'/c2) + eps)
//   sgd_main   SGD with momentum: g += wd·p; buf' = μ buf + (1 - dampening) g (buf' = g on the first
//              step); nesterov: g += μ buf', else g = buf'; p' = p - lr g
//
// Params (see crates/kiln-device/src/gpu/optimizer.rs), floats as f32 bits:
//   0 elements  1 lr  2 β1 | momentum  3 β2 | dampening  4 eps  5 weight decay  6 c1  7 c2
//   8 flags: bit 0 decoupled (AdamW), bit 1 nesterov, bit 2 first step

@group(0) @binding(1) var<storage, read> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read> state1: array<f32>;
@group(0) @binding(4) var<storage, read> state2: array<f32>;
@group(0) @binding(5) var<storage, read_write> param_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> state1_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> state2_out: array<f32>;

fn float_word(i: u32) -> f32 {
    return bitcast<f32>(word(i));
}

@compute @workgroup_size(256)
fn adam_main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = thread_index(wid, groups, lid);
    if i >= word(0u) {
        return;
    }
    let lr = float_word(1u);
    let beta1 = float_word(2u);
    let beta2 = float_word(3u);
    let wd = float_word(5u);
    var p = param[i];
    var g = grad[i];
    if (word(8u) & 1u) != 0u {
        p = p * (1.0 - lr * wd);
    } else {
        g = g + wd * p;
    }
    let m = beta1 * state1[i] + (1.0 - beta1) * g;
    let v = beta2 * state2[i] + (1.0 - beta2) * g * g;
    let denom = sqrt(v / float_word(7u)) + float_word(4u);
    param_out[i] = p - lr * (m / float_word(6u)) / denom;
    state1_out[i] = m;
    state2_out[i] = v;
}

@compute @workgroup_size(256)
fn sgd_main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = thread_index(wid, groups, lid);
    if i >= word(0u) {
        return;
    }
    let momentum = float_word(2u);
    let p = param[i];
    var g = grad[i] + float_word(5u) * p;
    var buf = g;
    if (word(8u) & 4u) == 0u {
        buf = momentum * state1[i] + (1.0 - float_word(3u)) * g;
    }
    if (word(8u) & 2u) != 0u {
        g = g + momentum * buf;
    } else {
        g = buf;
    }
    param_out[i] = p - float_word(1u) * g;
    state1_out[i] = buf;
}
