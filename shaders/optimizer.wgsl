// Fused optimizer updates: one thread per parameter element reads the parameter, its gradient and its
// state, and writes the updated parameter and state (PyTorch's update rules).
//   adam_main  Adam / AdamW. L2 weight decay adds wd·p to the gradient (Adam); decoupled weight decay
//              scales p by (1 - lr·wd) first (AdamW). Bias correction with c1 = 1 - β1^t, c2 = 1 - β2^t:
//              m' = β1 m + (1-β1) g; v' = β2 v + (1-β2) g²; p' = p - lr · (m'/c1) / (sqrt(v'/c2) + eps)
//   sgd_main   SGD with momentum: g += wd·p; buf' = μ buf + (1 - dampening) g (buf' = g on the first
//              step); nesterov: g += μ buf', else g = buf'; p' = p - lr g
//
//   rmsprop_main  RMSprop (PyTorch's): g += wd·p; a' = ρ a + (1-ρ) g²; centred: ḡ' = ρ ḡ + (1-ρ) g and
//              a' - ḡ'² under the root; s = g / (sqrt(..) + eps); p' = p - lr s, or with momentum s
//              itself (into param_out) for rmsprop_momentum: buf' = μ buf + s, p' = p - lr buf'.
//              State 1 = a, state 2 = buf, state 3 = ḡ (read and written only when used)
//   adagrad_main  Adagrad: acc' = acc + g²; p' = p - lr g / (sqrt(acc') + eps). State 1 = acc
//
//   adam_multi, sgd_multi  the same for up to four parameters in one launch (a model's whole update),
//              each in its own buffers: parameter k gets its own run of workgroups, so which buffers a
//              thread reads is the same across its workgroup
//   guard_main the step guard of `fit` on a GPU: when the loss (binding 1) is NaN or infinite and the
//              guard word is still 0, writes word 0 (the step + 1) into it. Every update kernel reads
//              the guard (binding 38) and, once it is set, writes its inputs through unchanged: the
//              weights and state stay those before the first non-finite step, with no host sync.
//
// Params (see crates/kiln-device/src/gpu/optimizer.rs), floats as f32 bits:
//   0 elements  1 lr  2 β1 | momentum  3 β2 | dampening  4 eps  5 weight decay  6 c1  7 c2
//   8 flags: bit 0 decoupled (AdamW), bit 1 nesterov, bit 2 first step, bit 3 centred, bit 4 momentum
//   (RMSprop: 2 ρ, 3 momentum; Adagrad: 1 lr, 4 eps)
//   multi: 9 parameters in this launch  10..14 each one's first workgroup  14..18 each one's elements

@group(0) @binding(1) var<storage, read> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read> state1: array<f32>;
@group(0) @binding(4) var<storage, read> state2: array<f32>;
@group(0) @binding(5) var<storage, read_write> param_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> state1_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> state2_out: array<f32>;

// The step guard: 0 while every loss so far was finite (a zero word when no guard is set).
@group(0) @binding(38) var<storage, read> guard: array<u32>;
@group(0) @binding(39) var<storage, read_write> guard_out: array<u32>;

// Whether an earlier loss was non-finite: updates write their inputs through.
fn held() -> bool {
    return guard[0] != 0u;
}

@compute @workgroup_size(1)
fn guard_main() {
    let non_finite = (bitcast<u32>(param[0]) & 0x7f800000u) == 0x7f800000u;
    if non_finite && guard_out[0] == 0u {
        guard_out[0] = word(0u);
    }
}

fn float_word(i: u32) -> f32 {
    return bitcast<f32>(word(i));
}

struct Updated {
    param: f32,
    state1: f32,
    state2: f32,
}

fn adam_update(param: f32, grad: f32, m: f32, v: f32) -> Updated {
    let lr = float_word(1u);
    let beta1 = float_word(2u);
    let beta2 = float_word(3u);
    let wd = float_word(5u);
    var p = param;
    var g = grad;
    if (word(8u) & 1u) != 0u {
        p = p * (1.0 - lr * wd);
    } else {
        g = g + wd * p;
    }
    let m2 = beta1 * m + (1.0 - beta1) * g;
    let v2 = beta2 * v + (1.0 - beta2) * g * g;
    let denom = sqrt(v2 / float_word(7u)) + float_word(4u);
    return Updated(p - lr * (m2 / float_word(6u)) / denom, m2, v2);
}

// The momentum buffer `buf` is not read on the first step.
fn sgd_update(p: f32, grad: f32, buf: f32) -> Updated {
    let momentum = float_word(2u);
    var g = grad + float_word(5u) * p;
    var b = g;
    if (word(8u) & 4u) == 0u {
        b = momentum * buf + (1.0 - float_word(3u)) * g;
    }
    if (word(8u) & 2u) != 0u {
        g = g + momentum * b;
    } else {
        g = b;
    }
    return Updated(p - float_word(1u) * g, b, 0.0);
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
    var u = adam_update(param[i], grad[i], state1[i], state2[i]);
    if held() {
        u = Updated(param[i], state1[i], state2[i]);
    }
    param_out[i] = u.param;
    state1_out[i] = u.state1;
    state2_out[i] = u.state2;
}

@group(0) @binding(36) var<storage, read> state3: array<f32>;
@group(0) @binding(37) var<storage, read_write> state3_out: array<f32>;

// RMSprop in at most eight storage buffers per entry point (WebGPU's default): `rmsprop_main`
// updates the averages and, without momentum, the parameter; with momentum it writes the step
// g / (sqrt(..) + eps) where the parameter would go, and `rmsprop_momentum` applies it.
@compute @workgroup_size(256)
fn rmsprop_main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = thread_index(wid, groups, lid);
    if i >= word(0u) {
        return;
    }
    let rho = float_word(2u);
    let keep = held();
    let p = param[i];
    let g = grad[i] + float_word(5u) * p;
    let square_avg = rho * state1[i] + (1.0 - rho) * g * g;
    state1_out[i] = select(square_avg, state1[i], keep);
    var variance = square_avg;
    if (word(8u) & 8u) != 0u {
        let grad_avg = rho * state3[i] + (1.0 - rho) * g;
        state3_out[i] = select(grad_avg, state3[i], keep);
        variance = variance - grad_avg * grad_avg;
    }
    let step = g / (sqrt(variance) + float_word(4u));
    if (word(8u) & 16u) != 0u {
        param_out[i] = step;
    } else {
        param_out[i] = select(p - float_word(1u) * step, p, keep);
    }
}

// RMSprop's momentum: `grad` holds the step rmsprop_main wrote; buf' = μ buf + step, p' = p - lr buf'.
@compute @workgroup_size(256)
fn rmsprop_momentum(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = thread_index(wid, groups, lid);
    if i >= word(0u) {
        return;
    }
    let keep = held();
    let buffer = float_word(3u) * state2[i] + grad[i];
    state2_out[i] = select(buffer, state2[i], keep);
    param_out[i] = select(param[i] - float_word(1u) * buffer, param[i], keep);
}

@compute @workgroup_size(256)
fn adagrad_main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = thread_index(wid, groups, lid);
    if i >= word(0u) {
        return;
    }
    let keep = held();
    let g = grad[i];
    let sum = state1[i] + g * g;
    state1_out[i] = select(sum, state1[i], keep);
    param_out[i] = select(param[i] - float_word(1u) * g / (sqrt(sum) + float_word(4u)), param[i], keep);
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
    var buf = 0.0;
    if (word(8u) & 4u) == 0u {
        buf = state1[i];
    }
    var u = sgd_update(param[i], grad[i], buf);
    if held() {
        u = Updated(param[i], buf, 0.0);
    }
    param_out[i] = u.param;
    state1_out[i] = u.state1;
}

// Up to four parameters per launch: parameter k's tensors are bound at 8 + k (param), 12 + k (grad),
// 16 + k (state 1), 20 + k (state 2), 24 + k (param out), 28 + k (state 1 out), 32 + k (state 2 out).
@group(0) @binding(8) var<storage, read> p0: array<f32>;
@group(0) @binding(9) var<storage, read> p1: array<f32>;
@group(0) @binding(10) var<storage, read> p2: array<f32>;
@group(0) @binding(11) var<storage, read> p3: array<f32>;
@group(0) @binding(12) var<storage, read> g0: array<f32>;
@group(0) @binding(13) var<storage, read> g1: array<f32>;
@group(0) @binding(14) var<storage, read> g2: array<f32>;
@group(0) @binding(15) var<storage, read> g3: array<f32>;
@group(0) @binding(16) var<storage, read> a0: array<f32>;
@group(0) @binding(17) var<storage, read> a1: array<f32>;
@group(0) @binding(18) var<storage, read> a2: array<f32>;
@group(0) @binding(19) var<storage, read> a3: array<f32>;
@group(0) @binding(20) var<storage, read> b0: array<f32>;
@group(0) @binding(21) var<storage, read> b1: array<f32>;
@group(0) @binding(22) var<storage, read> b2: array<f32>;
@group(0) @binding(23) var<storage, read> b3: array<f32>;
@group(0) @binding(24) var<storage, read_write> p0_out: array<f32>;
@group(0) @binding(25) var<storage, read_write> p1_out: array<f32>;
@group(0) @binding(26) var<storage, read_write> p2_out: array<f32>;
@group(0) @binding(27) var<storage, read_write> p3_out: array<f32>;
@group(0) @binding(28) var<storage, read_write> a0_out: array<f32>;
@group(0) @binding(29) var<storage, read_write> a1_out: array<f32>;
@group(0) @binding(30) var<storage, read_write> a2_out: array<f32>;
@group(0) @binding(31) var<storage, read_write> a3_out: array<f32>;
@group(0) @binding(32) var<storage, read_write> b0_out: array<f32>;
@group(0) @binding(33) var<storage, read_write> b1_out: array<f32>;
@group(0) @binding(34) var<storage, read_write> b2_out: array<f32>;
@group(0) @binding(35) var<storage, read_write> b3_out: array<f32>;

// The parameter workgroup `group` works on and the element of it this thread takes: (k, j, valid).
fn locate(group: u32, lid: u32) -> vec3<u32> {
    var k = 0u;
    for (var next = 1u; next < word(9u); next = next + 1u) {
        if group >= word(10u + next) {
            k = next;
        }
    }
    let j = (group - word(10u + k)) * WORKGROUP + lid;
    return vec3<u32>(k, j, select(0u, 1u, j < word(14u + k)));
}

fn multi_param(k: u32, j: u32) -> f32 {
    switch k {
        case 0u: { return p0[j]; }
        case 1u: { return p1[j]; }
        case 2u: { return p2[j]; }
        default: { return p3[j]; }
    }
}

fn multi_grad(k: u32, j: u32) -> f32 {
    switch k {
        case 0u: { return g0[j]; }
        case 1u: { return g1[j]; }
        case 2u: { return g2[j]; }
        default: { return g3[j]; }
    }
}

fn multi_state1(k: u32, j: u32) -> f32 {
    switch k {
        case 0u: { return a0[j]; }
        case 1u: { return a1[j]; }
        case 2u: { return a2[j]; }
        default: { return a3[j]; }
    }
}

fn multi_state2(k: u32, j: u32) -> f32 {
    switch k {
        case 0u: { return b0[j]; }
        case 1u: { return b1[j]; }
        case 2u: { return b2[j]; }
        default: { return b3[j]; }
    }
}

fn multi_store(k: u32, j: u32, u: Updated) {
    switch k {
        case 0u: { p0_out[j] = u.param; a0_out[j] = u.state1; }
        case 1u: { p1_out[j] = u.param; a1_out[j] = u.state1; }
        case 2u: { p2_out[j] = u.param; a2_out[j] = u.state1; }
        default: { p3_out[j] = u.param; a3_out[j] = u.state1; }
    }
}

fn multi_store_state2(k: u32, j: u32, v: f32) {
    switch k {
        case 0u: { b0_out[j] = v; }
        case 1u: { b1_out[j] = v; }
        case 2u: { b2_out[j] = v; }
        default: { b3_out[j] = v; }
    }
}

@compute @workgroup_size(256)
fn adam_multi(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let at = locate(workgroup_index(wid, groups), lid);
    if at.z == 0u {
        return;
    }
    var u = adam_update(
        multi_param(at.x, at.y),
        multi_grad(at.x, at.y),
        multi_state1(at.x, at.y),
        multi_state2(at.x, at.y),
    );
    if held() {
        u = Updated(multi_param(at.x, at.y), multi_state1(at.x, at.y), multi_state2(at.x, at.y));
    }
    multi_store(at.x, at.y, u);
    multi_store_state2(at.x, at.y, u.state2);
}

@compute @workgroup_size(256)
fn sgd_multi(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let at = locate(workgroup_index(wid, groups), lid);
    if at.z == 0u {
        return;
    }
    var buf = 0.0;
    if (word(8u) & 4u) == 0u {
        buf = multi_state1(at.x, at.y);
    }
    var u = sgd_update(multi_param(at.x, at.y), multi_grad(at.x, at.y), buf);
    if held() {
        u = Updated(multi_param(at.x, at.y), buf, 0.0);
    }
    multi_store(at.x, at.y, u);
}
