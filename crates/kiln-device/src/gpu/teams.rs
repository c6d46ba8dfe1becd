//! How the row kernels (`softmax.wgsl`, `reduce.wgsl`) split a workgroup into teams of threads, one row
//! per team: a subgroup each where the adapter has SUBGROUP (no workgroup barriers), else runs of
//! threads sharing a tree in workgroup memory, sized to the row.

use super::GpuContext;
use super::context::WORKGROUP_SIZE;
use super::params::Params;
use super::pipelines::Kernel;

/// The team layout of one launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Teams {
    /// Subgroups as teams (else workgroup-memory trees).
    pub(crate) subgroups: bool,
    /// Threads per team of the workgroup-memory variant (parameter word 31).
    pub(crate) width: usize,
    /// Rows a workgroup takes.
    pub(crate) rows_per_group: usize,
}

impl Teams {
    /// Teams for rows of `row_len` elements on `ctx`.
    pub(crate) fn for_rows(ctx: &GpuContext, row_len: usize) -> Self {
        let workgroup = WORKGROUP_SIZE as usize;
        if ctx.subgroups() {
            // As many rows as the smallest subgroup size makes teams; larger subgroups loop.
            let smallest = (ctx.info.subgroup_sizes[0] as usize).clamp(1, workgroup);
            return Teams {
                subgroups: true,
                width: smallest,
                rows_per_group: workgroup / smallest,
            };
        }
        // About four elements per thread, at most the whole workgroup per row.
        let width = (1usize << (row_len / 4).max(1).ilog2()).min(workgroup);
        Teams {
            subgroups: false,
            width,
            rows_per_group: workgroup / width,
        }
    }

    /// `kernel` compiled with this team variant.
    pub(crate) fn kernel(self, kernel: Kernel) -> Kernel {
        kernel.with_teams(self.subgroups)
    }

    /// `params` with the team width set (word 31).
    pub(crate) fn params(self, params: Params) -> Params {
        params.set(31, self.width as u32)
    }

    /// Workgroups for `rows` rows.
    pub(crate) fn workgroups(self, rows: usize) -> u64 {
        rows.div_ceil(self.rows_per_group) as u64
    }
}

#[cfg(test)]
mod tests {
    use crate::{Device, RawTensor, ReduceOp};

    fn values(n: usize, seed: f32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32 * 12.9898 + seed).sin() * 43758.547).fract() * 8.0)
            .collect()
    }

    /// Every row op, as values read back.
    fn row_ops(x: &RawTensor, dy: &RawTensor, axis: isize) -> Vec<Vec<f32>> {
        let mut out = Vec::new();
        let y = x.softmax(axis).unwrap();
        out.push(y.to_vec::<f32>().unwrap());
        out.push(x.log_softmax(axis).unwrap().to_vec::<f32>().unwrap());
        out.push(
            RawTensor::softmax_backward(&y, dy, axis)
                .unwrap()
                .to_vec::<f32>()
                .unwrap(),
        );
        for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min] {
            out.push(
                x.reduce(op, Some(axis), false)
                    .unwrap()
                    .to_vec::<f32>()
                    .unwrap(),
            );
        }
        let argmax = x
            .argmax(Some(axis), false)
            .unwrap()
            .to_vec::<u32>()
            .unwrap();
        out.push(argmax.into_iter().map(|i| i as f32).collect());
        out
    }

    /// Softmax (forward and backward) and sum/mean/max/min/argmax agree with the CPU with subgroup
    /// teams and with workgroup-memory teams, on short, long and strided rows, rows with NaN and rows
    /// of -inf; and each gives bit-identical results when run twice.
    #[test]
    fn subgroup_and_workgroup_teams_match_the_cpu_and_repeat_exactly() {
        let Some(device) = crate::testing::gpu_for_tests() else {
            return;
        };
        let Device::Gpu(gpu) = &device else {
            unreachable!("gpu_for_tests returns a GPU")
        };
        let cpu = Device::cpu();
        for (shape, axis) in [
            (vec![5, 1], 1),
            (vec![3, 3], 1),
            (vec![37, 1000], 1),
            (vec![2, 5000], 1),
            (vec![4, 9, 7], 1),
            (vec![70_000], 0),
        ] {
            let n: usize = shape.iter().product();
            let mut data = values(n, 1.0);
            if shape.len() == 2 && shape[0] >= 3 {
                let row = shape[1];
                data[row + row / 2] = f32::NAN;
                data[2 * row..3 * row].fill(f32::NEG_INFINITY);
            }
            let dy = values(n, 2.0);
            let want = {
                let x = RawTensor::from_slice(&data, shape.clone(), &cpu).unwrap();
                let dy = RawTensor::from_slice(&dy, shape.clone(), &cpu).unwrap();
                row_ops(&x, &dy, axis)
            };
            let x = RawTensor::from_slice(&data, shape.clone(), &device).unwrap();
            let tdy = RawTensor::from_slice(&dy, shape.clone(), &device).unwrap();
            for subgroups in [false, true] {
                gpu.ctx.set_subgroups(subgroups);
                let got = row_ops(&x, &tdy, axis);
                let bits = |runs: &[Vec<f32>]| -> Vec<Vec<u32>> {
                    runs.iter()
                        .map(|r| r.iter().map(|v| v.to_bits()).collect())
                        .collect()
                };
                assert_eq!(
                    bits(&got),
                    bits(&row_ops(&x, &tdy, axis)),
                    "{shape:?} subgroups {subgroups}: runs differ"
                );
                for (op, (g, w)) in got.iter().zip(&want).enumerate() {
                    for (i, (a, b)) in g.iter().zip(w).enumerate() {
                        let same = (a.is_nan() && b.is_nan())
                            || a == b
                            || (a - b).abs() <= 1e-4 * (1.0 + b.abs());
                        assert!(
                            same,
                            "{shape:?} subgroups {subgroups}, op {op}, element {i}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }
}
