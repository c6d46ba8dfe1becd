//! Top-k of each row on the host: the same order as `shaders/topk.wgsl` (NaN largest, ties by index).

use std::cmp::Ordering;

/// The output order of two elements `(value, index)`: largest (or smallest) first, NaN first when
/// largest, ties by the lower index.
fn order(a: (f32, usize), b: (f32, usize), largest: bool) -> Ordering {
    let by_value = match (a.0.is_nan(), b.0.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => b.0.partial_cmp(&a.0).unwrap_or(Ordering::Equal),
    };
    let by_value = if largest {
        by_value
    } else {
        by_value.reverse()
    };
    by_value.then(a.1.cmp(&b.1))
}

/// Values and indices of the top `k` of each `len`-long row of `data`.
pub(crate) fn topk_rows(data: &[f32], len: usize, k: usize, largest: bool) -> (Vec<f32>, Vec<u32>) {
    let rows = data.len().checked_div(len).unwrap_or(0);
    let (mut values, mut indices) = (Vec::with_capacity(rows * k), Vec::with_capacity(rows * k));
    let mut order_buf: Vec<usize> = Vec::with_capacity(len);
    for row in data.chunks_exact(len.max(1)).take(rows) {
        order_buf.clear();
        order_buf.extend(0..len);
        let cmp = |&a: &usize, &b: &usize| order((row[a], a), (row[b], b), largest);
        if k < len {
            order_buf.select_nth_unstable_by(k, cmp);
            order_buf.truncate(k);
        }
        order_buf.sort_unstable_by(cmp);
        values.extend(order_buf.iter().map(|&i| row[i]));
        indices.extend(order_buf.iter().map(|&i| i as u32));
    }
    (values, indices)
}
