// 2-D pooling over NCHW planes with any kernel, stride and zero padding. Forward: one thread per output
// element. Backward: one thread per input element gathers from every window that covers it, so no
// atomics are needed and overlapping windows (stride < kernel) add up deterministically.
//   max_forward   also records the argmax as a flat index y·W + x within the plane (as PyTorch does);
//                 padding counts as -inf
//   max_backward  dx = sum of dy over the windows whose argmax is this element
//   max_backward_windows  the same when windows do not overlap (stride >= kernel, the usual 2x2/2): one
//                 thread per window writes each of its taps once (dy at the argmax, 0 elsewhere); taps of
//                 no window are zeroed beforehand by the launcher
//   avg_forward   mean over the window's taps inside the image (padded taps are not counted)
//   avg_backward  dx = sum over covering windows of dy / (taps of that window)
//
// An argmax index outside its H x W plane (indices not from max_forward) raises the device's error
// flag in the backward kernels, with the largest such index; its gradient is dropped.
//
// Params (see crates/kiln-device/src/gpu/pool.rs):
//   0 planes (N·C)  1 H  2 W  3 OH  4 OW  5 KH  6 KW  7 stride h  8 stride w  9 pad h  10 pad w
//   11 error code (backward)

@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> src_index: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst_index: array<u32>;
@group(0) @binding(5) var<storage, read_write> error_flag: array<atomic<u32>>;

// Raises the error flag when `index` lies outside the H x W plane.
fn check_index(index: u32) {
    if index >= word(1u) * word(2u) {
        atomicMax(&error_flag[0], word(11u));
        atomicMax(&error_flag[1], min(index, 0xfffffffeu) + 1u);
    }
}

struct Window {
    y_begin: u32,
    y_end: u32,
    x_begin: u32,
    x_end: u32,
}

// The taps of output (oh, ow) that fall inside the H x W image.
fn window(oh: u32, ow: u32) -> Window {
    let y0 = i32(oh * word(7u)) - i32(word(9u));
    let x0 = i32(ow * word(8u)) - i32(word(10u));
    let y_begin = u32(max(y0, 0));
    let x_begin = u32(max(x0, 0));
    let y_end = u32(clamp(y0 + i32(word(5u)), 0, i32(word(1u))));
    let x_end = u32(clamp(x0 + i32(word(6u)), 0, i32(word(2u))));
    return Window(y_begin, max(y_end, y_begin), x_begin, max(x_end, x_begin));
}

// Output `i` (of N·C × OH × OW outputs): where its input plane starts, and its window.
struct Output {
    base: u32,
    window: Window,
}

fn output_window(i: u32) -> Output {
    let ohw = word(3u) * word(4u);
    let plane = i / ohw;
    let r = i - plane * ohw;
    let oh = r / word(4u);
    return Output(plane * word(1u) * word(2u), window(oh, r - oh * word(4u)));
}

// Outputs along one axis whose windows cover input position `i`: [first, last] (empty if first > last).
fn covering(i: u32, kernel: u32, stride: u32, pad: u32, outputs: u32) -> vec2<i32> {
    let p = i32(i + pad);
    let first = max(0, (p - i32(kernel) + i32(stride)) / i32(stride));
    let last = min(i32(outputs) - 1, p / i32(stride));
    return vec2<i32>(first, last);
}

// Input element `i` (of an N·C × H × W input): its plane, its flat index in the plane, and the rows and
// columns of the output windows that cover it.
struct Covers {
    plane: u32,
    own: u32,
    rows: vec2<i32>,
    cols: vec2<i32>,
}

fn covers(i: u32) -> Covers {
    let hw = word(1u) * word(2u);
    let y = (i % hw) / word(2u);
    let x = i % word(2u);
    let rows = covering(y, word(5u), word(7u), word(9u), word(3u));
    let cols = covering(x, word(6u), word(8u), word(10u), word(4u));
    return Covers(i / hw, y * word(2u) + x, rows, cols);
}

@compute @workgroup_size(256)
fn max_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, groups, lid);
    if i >= word(0u) * word(3u) * word(4u) {
        return;
    }
    let o = output_window(i);
    let w = o.window;
    let base = o.base;
    var best = bitcast<f32>(0xff800000u);
    var best_index = w.y_begin * word(2u) + w.x_begin;
    for (var y = w.y_begin; y < w.y_end; y = y + 1u) {
        for (var x = w.x_begin; x < w.x_end; x = x + 1u) {
            let v = src[base + y * word(2u) + x];
            if v > best || is_nan(v) {
                best = v;
                best_index = y * word(2u) + x;
                if is_nan(v) {
                    break;
                }
            }
        }
    }
    dst[i] = best;
    dst_index[i] = best_index;
}

@compute @workgroup_size(256)
fn max_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, groups, lid);
    if i >= word(0u) * word(1u) * word(2u) {
        return;
    }
    let c = covers(i);
    var total = 0.0;
    for (var oh = c.rows.x; oh <= c.rows.y; oh = oh + 1) {
        for (var ow = c.cols.x; ow <= c.cols.y; ow = ow + 1) {
            let o = (c.plane * word(3u) + u32(oh)) * word(4u) + u32(ow);
            // Each window's index is checked once, by the thread of its first tap.
            let w = window(u32(oh), u32(ow));
            if c.own == w.y_begin * word(2u) + w.x_begin {
                check_index(src_index[o]);
            }
            if src_index[o] == c.own {
                total = total + src[o];
            }
        }
    }
    dst[i] = total;
}

@compute @workgroup_size(256)
fn max_backward_windows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, groups, lid);
    if i >= word(0u) * word(3u) * word(4u) {
        return;
    }
    let o = output_window(i);
    let w = o.window;
    let base = o.base;
    let grad = src[i];
    let argmax = src_index[i];
    check_index(argmax);
    for (var y = w.y_begin; y < w.y_end; y = y + 1u) {
        for (var x = w.x_begin; x < w.x_end; x = x + 1u) {
            let own = y * word(2u) + x;
            dst[base + own] = select(0.0, grad, own == argmax);
        }
    }
}

@compute @workgroup_size(256)
fn avg_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, groups, lid);
    if i >= word(0u) * word(3u) * word(4u) {
        return;
    }
    let o = output_window(i);
    let w = o.window;
    let base = o.base;
    var total = 0.0;
    for (var y = w.y_begin; y < w.y_end; y = y + 1u) {
        for (var x = w.x_begin; x < w.x_end; x = x + 1u) {
            total = total + src[base + y * word(2u) + x];
        }
    }
    let taps = (w.y_end - w.y_begin) * (w.x_end - w.x_begin);
    dst[i] = total / f32(max(taps, 1u));
}

@compute @workgroup_size(256)
fn avg_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, groups, lid);
    if i >= word(0u) * word(1u) * word(2u) {
        return;
    }
    let c = covers(i);
    var total = 0.0;
    for (var oh = c.rows.x; oh <= c.rows.y; oh = oh + 1) {
        for (var ow = c.cols.x; ow <= c.cols.y; ow = ow + 1) {
            let w = window(u32(oh), u32(ow));
            let taps = (w.y_end - w.y_begin) * (w.x_end - w.x_begin);
            total = total + src[(c.plane * word(3u) + u32(oh)) * word(4u) + u32(ow)] / f32(max(taps, 1u));
        }
    }
    dst[i] = total;
}
