// Elementwise kernels: unary functions, binary ops with numpy broadcasting over strided inputs, and
// tensor-scalar ops. One thread per output element; the output is contiguous.
//
// Params (32 words, see crates/kiln-device/src/gpu/params.rs):
//   0 numel   1 rank   2 a offset   3 b offset   4 scalar (f32 bits)
//   8..16 output shape   16..24 a strides   24..32 b strides   (strides in elements, 0 = broadcast)

// Which function to apply; codes are `UnaryOp`/`BinaryOp` in crates/kiln-device/src/ops.rs.
override OP: u32 = 0u;
// True when every input is contiguous with the output's shape, so indices need no stride walk.
override CONTIGUOUS: bool = false;

@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// Storage index of output element `linear` in an operand whose strides start at word `stride_base`.
fn strided_index(linear: u32, stride_base: u32, offset: u32) -> u32 {
    var rest = linear;
    var index = offset;
    for (var d = word(1u); d > 0u; d = d - 1u) {
        let dim = word(7u + d);
        index = index + (rest % dim) * word(stride_base + d - 1u);
        rest = rest / dim;
    }
    return index;
}

fn operand_index(linear: u32, stride_base: u32, offset: u32) -> u32 {
    if CONTIGUOUS {
        return linear + offset;
    }
    return strided_index(linear, stride_base, offset);
}

// The error function (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7); `erf` in ops/elementwise.rs is
// the same formula.
fn erf_approx(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.3275911 * abs(x));
    let poly = t * (0.2548296 + t * (-0.2844967 + t * (1.4214137 + t * (-1.4531521 + t * 1.0614054))));
    let y = 1.0 - poly * exp(-x * x);
    return select(y, -y, x < 0.0);
}

fn safe_tanh(x: f32) -> f32 {
    // tanh saturates to ±1 in f32 beyond |x| = 15; clamping avoids inf/inf inside some drivers' tanh.
    return tanh(clamp(x, -15.0, 15.0));
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

const INV_SQRT_2PI: f32 = 0.3989423;
const SQRT_2_OVER_PI: f32 = 0.7978846;
const GELU_TANH_CUBIC: f32 = 0.044715;

fn gelu_cdf(x: f32) -> f32 {
    return 0.5 * (1.0 + erf_approx(x * 0.70710678));
}

fn gelu_tanh_inner(x: f32) -> f32 {
    return SQRT_2_OVER_PI * (x + GELU_TANH_CUBIC * x * x * x);
}

fn unary(x: f32) -> f32 {
    switch OP {
        case 0u: { return max(x, 0.0); }
        case 1u: { return sigmoid(x); }
        case 2u: { return safe_tanh(x); }
        case 3u: { return exp(x); }
        case 4u: { return log(x); }
        case 5u: { return sqrt(x); }
        case 6u: { return -x; }
        case 7u: { return abs(x); }
        // sign, with sign(0) = 0 and NaN kept
        case 8u: { return select(sign(x), x, is_nan(x)); }
        case 9u: { return x * gelu_cdf(x); }
        case 10u: { return 0.5 * x * (1.0 + safe_tanh(gelu_tanh_inner(x))); }
        // softplus without overflow: max(x, 0) + ln(1 + e^-|x|)
        case 11u: { return max(x, 0.0) + log(1.0 + exp(-abs(x))); }
        case 12u: { return x * sigmoid(x); }
        case 13u: { return gelu_cdf(x) + x * exp(-0.5 * x * x) * INV_SQRT_2PI; }
        case 14u: {
            let t = safe_tanh(gelu_tanh_inner(x));
            let inner_grad = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_CUBIC * x * x);
            return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * inner_grad;
        }
        // SiLU's derivative
        default: {
            let s = sigmoid(x);
            return s * (1.0 + x * (1.0 - s));
        }
    }
}

fn binary(x: f32, y: f32) -> f32 {
    switch OP {
        case 0u: { return x + y; }
        case 1u: { return x - y; }
        case 2u: { return x * y; }
        case 3u: { return x / y; }
        // maximum propagates NaN like PyTorch; WGSL's max may not.
        case 4u: { return select(max(x, y), x + y, is_nan(x) || is_nan(y)); }
        case 5u: { return select(0.0, 1.0, x > y); }
        case 6u: { return select(0.0, 1.0, x == y); }
        // ReLU backward: gradient x where the input y was positive (x * 0 keeps a NaN gradient NaN).
        case 7u: { return x * select(0.0, 1.0, y > 0.0); }
        // leaky ReLU of x with slope y, and its derivative
        case 8u: { return select(y * x, x, x > 0.0); }
        case 9u: { return select(y, 1.0, x > 0.0); }
        // ELU of x with scale y, and its derivative
        case 10u: { return select(y * (exp(x) - 1.0), x, x > 0.0); }
        default: { return select(y * exp(x), 1.0, x > 0.0); }
    }
}

@compute @workgroup_size(256)
fn unary_main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = thread_index(wid, groups, lid);
    if i >= word(0u) {
        return;
    }
    out[i] = unary(a[operand_index(i, 16u, word(2u))]);
}

@compute @workgroup_size(256)
fn binary_main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = thread_index(wid, groups, lid);
    if i >= word(0u) {
        return;
    }
    out[i] = binary(a[operand_index(i, 16u, word(2u))], b[operand_index(i, 24u, word(3u))]);
}

@compute @workgroup_size(256)
fn scalar_main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = thread_index(wid, groups, lid);
    if i >= word(0u) {
        return;
    }
    out[i] = binary(a[operand_index(i, 16u, word(2u))], bitcast<f32>(word(4u)));
}
