//! The per-kernel profiler (`KILN_PROFILE=1`, or [`crate::Device::set_profiling`]): every GPU dispatch
//! is timed — by TIMESTAMP_QUERY around its own compute pass where the adapter has it, else by the host
//! clock around a submit-and-wait of that one dispatch — and summed per (op, kernel, plan, shape) into a
//! [`Profile`] table with the time share, the throughput and, for GEMMs, the executed/useful FLOP ratio.

use std::collections::HashMap;
use std::fmt;

/// What a launcher knows about its next dispatch beyond the op name (GEMM plans and sizes).
#[derive(Debug, Clone, Default)]
pub(crate) struct Annotation {
    /// The variant chosen, such as `tile 128x128x8 (8x8)` or `gemv 256 lanes + split-K 4`.
    pub(crate) detail: String,
    /// The problem size, such as `43264x32x9` (M×N×K).
    pub(crate) shape: String,
    /// FLOPs the op needs.
    pub(crate) useful_flops: u64,
    /// FLOPs the kernel executes, padding included.
    pub(crate) executed_flops: u64,
}

/// One recorded dispatch, waiting for its time.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) op: &'static str,
    pub(crate) kernel: String,
    pub(crate) annotation: Annotation,
    /// Bytes of the storage buffers bound (read or written), for GB/s.
    pub(crate) bytes: u64,
}

/// One line of a [`Profile`]: every dispatch of the same op, kernel, plan and shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileRow {
    /// The op that launched the kernel (`conv2d_weight_grad`, `adam`, ...).
    pub op: String,
    /// `file::entry` of the kernel, with its specialisation (`gemm.wgsl::gemm_main MODE=1`).
    pub kernel: String,
    /// The variant chosen (GEMM tile, GEMV lanes, split-K), empty for other kernels.
    pub detail: String,
    /// The problem size, where the launcher reports it (GEMMs: `M x N x K`).
    pub shape: String,
    /// Dispatches summed into this row.
    pub calls: u64,
    /// Their total time.
    pub seconds: f64,
    /// FLOPs needed (0 where not reported).
    pub useful_flops: u64,
    /// FLOPs executed, padding included (0 where not reported).
    pub executed_flops: u64,
    /// Bytes of the buffers bound, summed over the calls.
    pub bytes: u64,
}

impl ProfileRow {
    /// Executed over useful FLOPs (1.0 = no padding), where reported.
    pub fn waste(&self) -> Option<f64> {
        (self.useful_flops > 0).then(|| self.executed_flops as f64 / self.useful_flops as f64)
    }
}

/// The per-kernel times recorded since profiling started or the last [`crate::Device::take_profile`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    /// Rows, slowest first.
    pub rows: Vec<ProfileRow>,
    /// How the times were taken: `"GPU timestamps"` or `"host clock, one dispatch per submit"`.
    pub timer: String,
}

impl Profile {
    /// Sum of every row's time.
    pub fn total_seconds(&self) -> f64 {
        self.rows.iter().map(|r| r.seconds).sum()
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.total_seconds();
        writeln!(
            f,
            "kiln profile ({}): {} kernels, {:.3} ms",
            self.timer,
            self.rows.iter().map(|r| r.calls).sum::<u64>(),
            total * 1e3
        )?;
        writeln!(
            f,
            "{:<22} {:<34} {:<30} {:<18} {:>5} {:>10} {:>6} {:>12} {:>6}",
            "op", "kernel", "plan", "shape", "calls", "ms", "share", "throughput", "waste"
        )?;
        for r in &self.rows {
            let throughput = if r.seconds <= 0.0 {
                String::new()
            } else if r.useful_flops > 0 {
                format!("{:.2} GFLOP/s", r.useful_flops as f64 / r.seconds / 1e9)
            } else {
                format!("{:.2} GB/s", r.bytes as f64 / r.seconds / 1e9)
            };
            let share = if total > 0.0 { r.seconds / total } else { 0.0 };
            writeln!(
                f,
                "{:<22} {:<34} {:<30} {:<18} {:>5} {:>10.3} {:>5.1}% {:>12} {:>6}",
                r.op,
                r.kernel,
                r.detail,
                r.shape,
                r.calls,
                r.seconds * 1e3,
                share * 100.0,
                throughput,
                r.waste().map(|w| format!("{w:.2}x")).unwrap_or_default()
            )?;
        }
        Ok(())
    }
}

/// The profiler's state in a GPU context.
#[derive(Default)]
pub(crate) struct Profiler {
    /// Dispatches of the open batch, in order (their timestamp pairs have the same index).
    pub(crate) pending: Vec<Record>,
    rows: HashMap<(String, String, String, String), ProfileRow>,
}

impl Profiler {
    /// Adds `seconds` for `record` to its row.
    pub(crate) fn add(&mut self, record: Record, seconds: f64) {
        let key = (
            record.op.to_string(),
            record.kernel.clone(),
            record.annotation.detail.clone(),
            record.annotation.shape.clone(),
        );
        let row = self.rows.entry(key).or_insert_with(|| ProfileRow {
            op: record.op.to_string(),
            kernel: record.kernel,
            detail: record.annotation.detail,
            shape: record.annotation.shape,
            calls: 0,
            seconds: 0.0,
            useful_flops: 0,
            executed_flops: 0,
            bytes: 0,
        });
        row.calls += 1;
        row.seconds += seconds;
        row.useful_flops += record.annotation.useful_flops;
        row.executed_flops += record.annotation.executed_flops;
        row.bytes += record.bytes;
    }

    /// The rows so far, slowest first, and a fresh start.
    pub(crate) fn take(&mut self, timer: &str) -> Profile {
        let mut rows: Vec<ProfileRow> = self.rows.drain().map(|(_, r)| r).collect();
        rows.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        Profile {
            rows,
            timer: timer.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sum_per_kernel_and_sort_slowest_first() {
        let mut p = Profiler::default();
        let record = |op, flops| Record {
            op,
            kernel: "gemm.wgsl::gemm_main MODE=0".into(),
            annotation: Annotation {
                detail: "tile 64x64x16 (4x4)".into(),
                shape: "64x64x64".into(),
                useful_flops: flops,
                executed_flops: flops * 2,
            },
            bytes: 100,
        };
        p.add(record("matmul", 1000), 1e-3);
        p.add(record("matmul", 1000), 1e-3);
        p.add(record("conv2d", 10), 5e-3);
        let profile = p.take("test");
        assert_eq!(profile.rows.len(), 2);
        assert_eq!(profile.rows[0].op, "conv2d");
        assert_eq!(profile.rows[1].calls, 2);
        assert_eq!(profile.rows[1].waste(), Some(2.0));
        assert!((profile.total_seconds() - 7e-3).abs() < 1e-12);
        let table = profile.to_string();
        assert!(table.contains("tile 64x64x16"), "{table}");
        assert!(table.contains("2.00x"), "{table}");
        assert!(p.take("test").rows.is_empty());
    }
}
