// Fused recurrent cells: one step of an LSTM or GRU after its two GEMMs (the input projection x·W_ihᵀ
// and the hidden projection h·W_hhᵀ), forward and backward, one thread per (sample, unit). This turns
// a step's dozen elementwise kernels into one each way. The state of an LSTM is [N, 2H] (h | c), of a
// GRU [N, H]; `saved` [N, 4H] keeps what the backward needs (LSTM: the activated gates i, f, g, o;
// GRU: r, z, n and the hidden part of n's pre-activation). A mask (one value per sample, 1 = a real
// step) keeps the previous state through padding. Gate orders are PyTorch's (LSTM i, f, g, o; GRU r,
// z, n); crates/kiln-device/src/cpu/recurrent.rs is the CPU twin.
//
// The backward adds up to three gradients of the new state: `d_state` (from outside the recurrence,
// at an offset: one step of a [T, N, S] gradient), `d_carry` (the previous state's gradient from the
// step after) and `d_hidden` ([N, H], the gradient through the next step's hidden GEMM).
//
// Params: 0 rows N  1 units H  2 has mask  3 x-gates offset  4 h-gates offset  5 state offset
//         6 mask offset  7 has d_carry  8 has d_hidden  9 d_state offset  (offsets in elements)

@group(0) @binding(1) var<storage, read> x_gates: array<f32>;
@group(0) @binding(2) var<storage, read> h_gates: array<f32>;
@group(0) @binding(3) var<storage, read> state_prev: array<f32>;
@group(0) @binding(4) var<storage, read> step_mask: array<f32>;
@group(0) @binding(5) var<storage, read_write> state_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> saved_out: array<f32>;
@group(0) @binding(7) var<storage, read> d_state: array<f32>;
@group(0) @binding(8) var<storage, read> saved: array<f32>;
@group(0) @binding(9) var<storage, read_write> d_x_gates: array<f32>;
@group(0) @binding(10) var<storage, read_write> d_h_gates: array<f32>;
@group(0) @binding(11) var<storage, read_write> d_state_prev: array<f32>;
@group(0) @binding(12) var<storage, read> d_carry: array<f32>;
@group(0) @binding(13) var<storage, read> d_hidden: array<f32>;

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

fn tanh_safe(x: f32) -> f32 {
    return tanh(clamp(x, -15.0, 15.0));
}

// The total gradient of element `i` of the new state [N, width]; `hidden` is its index in [N, H]
// when it belongs to the hidden state.
fn incoming(i: u32, hidden: u32, is_hidden: bool) -> f32 {
    var g = d_state[word(9u) + i];
    if word(7u) == 1u {
        g = g + d_carry[i];
    }
    if is_hidden && word(8u) == 1u {
        g = g + d_hidden[hidden];
    }
    return g;
}

// 1 for a real step, 0 for padding (always 1 without a mask).
fn keep(n: u32) -> f32 {
    if word(2u) == 0u {
        return 1.0;
    }
    return step_mask[word(6u) + n];
}

@compute @workgroup_size(256)
fn lstm_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let t = thread_index(wid, groups, lid);
    let h = word(1u);
    if t >= word(0u) * h {
        return;
    }
    let n = t / h;
    let j = t % h;
    let xg = word(3u) + n * 4u * h + j;
    let hg = word(4u) + n * 4u * h + j;
    let i = sigmoid(x_gates[xg] + h_gates[hg]);
    let f = sigmoid(x_gates[xg + h] + h_gates[hg + h]);
    let g = tanh_safe(x_gates[xg + 2u * h] + h_gates[hg + 2u * h]);
    let o = sigmoid(x_gates[xg + 3u * h] + h_gates[hg + 3u * h]);
    let sp = word(5u) + n * 2u * h + j;
    let c_prev = state_prev[sp + h];
    let c = f * c_prev + i * g;
    let new_h = o * tanh_safe(c);
    let m = keep(n);
    state_out[n * 2u * h + j] = state_prev[sp] + m * (new_h - state_prev[sp]);
    state_out[n * 2u * h + h + j] = c_prev + m * (c - c_prev);
    let s = n * 4u * h + j;
    saved_out[s] = i;
    saved_out[s + h] = f;
    saved_out[s + 2u * h] = g;
    saved_out[s + 3u * h] = o;
}

@compute @workgroup_size(256)
fn lstm_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let t = thread_index(wid, groups, lid);
    let h = word(1u);
    if t >= word(0u) * h {
        return;
    }
    let n = t / h;
    let j = t % h;
    let s = n * 4u * h + j;
    let i = saved[s];
    let f = saved[s + h];
    let g = saved[s + 2u * h];
    let o = saved[s + 3u * h];
    let c_prev = state_prev[word(5u) + n * 2u * h + h + j];
    let tanh_c = tanh_safe(f * c_prev + i * g);
    let m = keep(n);
    let dh = incoming(n * 2u * h + j, n * h + j, true);
    let dc_in = incoming(n * 2u * h + h + j, 0u, false);
    let dh_new = m * dh;
    let dc = m * dc_in + dh_new * o * (1.0 - tanh_c * tanh_c);
    d_x_gates[s] = dc * g * i * (1.0 - i);
    d_x_gates[s + h] = dc * c_prev * f * (1.0 - f);
    d_x_gates[s + 2u * h] = dc * i * (1.0 - g * g);
    d_x_gates[s + 3u * h] = dh_new * tanh_c * o * (1.0 - o);
    // the h half gets the pass-through of padded steps; the GEMM's gradient is added by autograd
    d_state_prev[n * 2u * h + j] = (1.0 - m) * dh;
    d_state_prev[n * 2u * h + h + j] = dc * f + (1.0 - m) * dc_in;
}

@compute @workgroup_size(256)
fn gru_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let t = thread_index(wid, groups, lid);
    let h = word(1u);
    if t >= word(0u) * h {
        return;
    }
    let n = t / h;
    let j = t % h;
    let xg = word(3u) + n * 3u * h + j;
    let hg = word(4u) + n * 3u * h + j;
    let r = sigmoid(x_gates[xg] + h_gates[hg]);
    let z = sigmoid(x_gates[xg + h] + h_gates[hg + h]);
    let hn = h_gates[hg + 2u * h];
    let candidate = tanh_safe(x_gates[xg + 2u * h] + r * hn);
    let h_prev = state_prev[word(5u) + n * h + j];
    let new_h = candidate + z * (h_prev - candidate);
    state_out[n * h + j] = h_prev + keep(n) * (new_h - h_prev);
    let s = n * 4u * h + j;
    saved_out[s] = r;
    saved_out[s + h] = z;
    saved_out[s + 2u * h] = candidate;
    saved_out[s + 3u * h] = hn;
}

@compute @workgroup_size(256)
fn gru_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let t = thread_index(wid, groups, lid);
    let h = word(1u);
    if t >= word(0u) * h {
        return;
    }
    let n = t / h;
    let j = t % h;
    let s = n * 4u * h + j;
    let r = saved[s];
    let z = saved[s + h];
    let candidate = saved[s + 2u * h];
    let hn = saved[s + 3u * h];
    let h_prev = state_prev[word(5u) + n * h + j];
    let m = keep(n);
    let dh = incoming(n * h + j, n * h + j, true);
    let dh_new = m * dh;
    let d_pre_n = dh_new * (1.0 - z) * (1.0 - candidate * candidate);
    let d_pre_r = d_pre_n * hn * r * (1.0 - r);
    let d_pre_z = dh_new * (h_prev - candidate) * z * (1.0 - z);
    let g = n * 3u * h + j;
    d_x_gates[g] = d_pre_r;
    d_x_gates[g + h] = d_pre_z;
    d_x_gates[g + 2u * h] = d_pre_n;
    d_state_prev[n * h + j] = dh_new * z + (1.0 - m) * dh;
}

// The GRU's hidden-gate gradients from its input-gate ones (gru_backward's d_x_gates): the same for r
// and z, times r for n (n's hidden part is r · (h·W_hn)). A second kernel keeps gru_backward within
// eight storage buffers (WebGPU's default).
@compute @workgroup_size(256)
fn gru_backward_hidden(@builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) groups: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let t = thread_index(wid, groups, lid);
    let h = word(1u);
    if t >= word(0u) * h {
        return;
    }
    let n = t / h;
    let j = t % h;
    let g = n * 3u * h + j;
    d_h_gates[g] = d_x_gates[g];
    d_h_gates[g + h] = d_x_gates[g + h];
    d_h_gates[g + 2u * h] = d_x_gates[g + 2u * h] * saved[n * 4u * h + j];
}
