// Softmax and log-softmax along one axis of a contiguous tensor viewed as [outer, axis, inner], forward
// and backward. Rows go to teams of threads (a subgroup, or a power-of-two run of threads sharing a tree
// in workgroup memory: see teams_*.wgsl, compiled in front of this file); a workgroup takes several rows.
// An online pass keeps each thread's running max and rescaled sum (so huge logits never overflow), the
// team combines them, then each element is written.
//
// Rows that are contiguous and a multiple of four long (inner = 1, axis % 4 = 0) are read as vec4.
//
// Params (see crates/kiln-device/src/gpu/softmax.rs):
//   0 outer  1 axis length  2 inner  3 rows per workgroup  4 rows read as vec4 (0 or 1)
//   31 threads per team (teams_shared.wgsl)

// true: log_softmax; false: softmax.
override LOG: bool = false;

// forward: the input; backward: the forward output y.
@group(0) @binding(1) var<storage, read> x: array<f32>;
// backward only: the upstream gradient.
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// The same buffers as x and grad, read four elements at a time.
@group(0) @binding(4) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> grad4: array<vec4<f32>>;

fn vec4_rows() -> bool {
    return word(4u) != 0u;
}

fn row_base(row: u32) -> u32 {
    let inner = word(2u);
    return (row / inner) * word(1u) * inner + row % inner;
}

@compute @workgroup_size(256)
fn softmax_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    t: Team,
) {
    let rows = word(0u) * word(2u);
    let per_group = word(3u);
    let first = workgroup_index(wid, groups) * per_group;
    if first >= rows {
        return;
    }
    let team = team_of(t);
    let inner = word(2u);
    let n = word(1u);
    for (var r0 = 0u; r0 < per_group; r0 = r0 + team.w) {
        let row = first + r0 + team.x;
        let valid = r0 + team.x < per_group && row < rows;
        let base = row_base(row);
        var state = vec2<f32>(bitcast<f32>(0xff800000u), 0.0);
        if valid && vec4_rows() {
            for (var j = team.y; j < n / 4u; j = j + team.z) {
                let v = x4[base / 4u + j];
                state = max_sum_add(max_sum_add(max_sum_add(max_sum_add(state, v.x), v.y), v.z), v.w);
            }
        } else if valid {
            for (var j = team.y; j < n; j = j + team.z) {
                state = max_sum_add(state, x[base + j * inner]);
            }
        }
        let total = team_max_sum(state, t);
        let log_sum = log(total.y);
        if valid && vec4_rows() {
            for (var j = team.y; j < n / 4u; j = j + team.z) {
                let shifted = x4[base / 4u + j] - total.x - log_sum;
                var y = shifted;
                if !LOG {
                    y = exp(shifted);
                }
                for (var c = 0u; c < 4u; c = c + 1u) {
                    out[base + 4u * j + c] = y[c];
                }
            }
        } else if valid {
            for (var j = team.y; j < n; j = j + team.z) {
                let shifted = x[base + j * inner] - total.x;
                if LOG {
                    out[base + j * inner] = shifted - log_sum;
                } else {
                    out[base + j * inner] = exp(shifted - log_sum);
                }
            }
        }
    }
}

// softmax: dx = y * (dy - sum(dy * y)); log_softmax: dx = dy - exp(y) * sum(dy).
@compute @workgroup_size(256)
fn softmax_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    t: Team,
) {
    let rows = word(0u) * word(2u);
    let per_group = word(3u);
    let first = workgroup_index(wid, groups) * per_group;
    if first >= rows {
        return;
    }
    let team = team_of(t);
    let inner = word(2u);
    let n = word(1u);
    for (var r0 = 0u; r0 < per_group; r0 = r0 + team.w) {
        let row = first + r0 + team.x;
        let valid = r0 + team.x < per_group && row < rows;
        let base = row_base(row);
        var s = 0.0;
        if valid && vec4_rows() {
            var s4 = vec4<f32>(0.0);
            for (var j = team.y; j < n / 4u; j = j + team.z) {
                if LOG {
                    s4 = s4 + grad4[base / 4u + j];
                } else {
                    s4 = s4 + grad4[base / 4u + j] * x4[base / 4u + j];
                }
            }
            s = (s4.x + s4.y) + (s4.z + s4.w);
        } else if valid {
            for (var j = team.y; j < n; j = j + team.z) {
                let i = base + j * inner;
                if LOG {
                    s = s + grad[i];
                } else {
                    s = s + grad[i] * x[i];
                }
            }
        }
        let total = team_sum(s, t);
        if valid {
            for (var j = team.y; j < n; j = j + team.z) {
                let i = base + j * inner;
                if LOG {
                    out[i] = grad[i] - exp(x[i]) * total;
                } else {
                    out[i] = x[i] * (grad[i] - total);
                }
            }
        }
    }
}
