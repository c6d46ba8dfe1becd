//! Data-parallel training over MPI (PyTorch's DDP, Horovod): every rank holds the whole model, trains
//! on its shard of each global batch, and the gradients are averaged by all-reduce before the same
//! optimizer step on every rank, so the ranks' weights stay identical.
//!
//! `fit` takes it as an option (`FitConfig::distributed`). Launched the way MPI programs are:
//! `mpirun -np 4 target/release/examples/mnist --distributed`. The MPI binding is behind the cargo
//! feature `mpi` (it needs an MPI library and libclang to build); without it [`Distributed::mpi`]
//! says how to get it, and [`Distributed::single`] runs the same code path in one process.
//!
//! Gradients are averaged through host memory in a few large buckets (one all-reduce per
//! [`BUCKET_FLOATS`] values), after the backward pass; overlapping them with it, as DDP does, is not
//! done.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kiln_autograd::{Gradients, Tensor, Var};
use kiln_device::{Backend, DType, Device, Error, GpuOptions, RawTensor, Result};

use crate::model::Evaluation;

/// Values per all-reduce: gradients are packed into buckets of this many f32 (16 MiB).
pub const BUCKET_FLOATS: usize = 4 << 20;

/// How a reduction combines the ranks' values.
#[derive(Debug, Clone, Copy)]
enum Combine {
    Min,
    Max,
}

/// The collective operations data-parallel training needs, across ranks `0..size`.
trait Collectives {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// This rank's position among the ranks on its machine, and how many there are.
    fn local(&self) -> (usize, usize);
    /// Element-wise sum over the ranks, in place.
    fn sum_f32(&self, values: &mut [f32]);
    fn sum_f64(&self, values: &mut [f64]);
    fn combine_u64(&self, values: &mut [u64], how: Combine);
    /// Rank 0's values, everywhere.
    fn broadcast_f32(&self, values: &mut [f32]);
    /// Ends every rank of the job with `code`.
    fn abort(&self, code: i32) -> !;
}

/// One process on its own: rank 0 of 1; every collective is the identity.
struct Alone;

impl Collectives for Alone {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn local(&self) -> (usize, usize) {
        (0, 1)
    }
    fn sum_f32(&self, _: &mut [f32]) {}
    fn sum_f64(&self, _: &mut [f64]) {}
    fn combine_u64(&self, _: &mut [u64], _: Combine) {}
    fn broadcast_f32(&self, _: &mut [f32]) {}
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

#[cfg(feature = "mpi")]
mod mpi_world {
    use mpi::collective::SystemOperation;
    use mpi::traits::*;

    use super::{Collectives, Combine};

    /// The MPI job's world communicator (MPI is finalised when the universe drops).
    pub(super) struct MpiWorld {
        pub(super) _universe: mpi::environment::Universe,
        pub(super) world: mpi::topology::SimpleCommunicator,
        pub(super) local: (usize, usize),
    }

    impl Collectives for MpiWorld {
        fn rank(&self) -> usize {
            self.world.rank() as usize
        }
        fn size(&self) -> usize {
            self.world.size() as usize
        }
        fn local(&self) -> (usize, usize) {
            self.local
        }
        fn sum_f32(&self, values: &mut [f32]) {
            let send = values.to_vec();
            self.world
                .all_reduce_into(&send[..], values, SystemOperation::sum());
        }
        fn sum_f64(&self, values: &mut [f64]) {
            let send = values.to_vec();
            self.world
                .all_reduce_into(&send[..], values, SystemOperation::sum());
        }
        fn combine_u64(&self, values: &mut [u64], how: Combine) {
            let send = values.to_vec();
            let op = match how {
                Combine::Min => SystemOperation::min(),
                Combine::Max => SystemOperation::max(),
            };
            self.world.all_reduce_into(&send[..], values, op);
        }
        fn broadcast_f32(&self, values: &mut [f32]) {
            self.world.process_at_rank(0).broadcast_into(values);
        }
        fn abort(&self, code: i32) -> ! {
            self.world.abort(code)
        }
    }
}

/// Time and bytes spent averaging gradients so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SyncStats {
    /// Optimizer steps synchronised.
    pub steps: u64,
    /// Wall time inside gradient all-reduces (the host copies around them included).
    pub all_reduce: Duration,
    /// Gradient bytes each rank contributed.
    pub bytes: u64,
}

/// A data-parallel job: this process's rank among `size` ranks, and the collectives between them.
/// Give it to `fit` with `FitConfig { distributed: Some(&job), .. }`.
pub struct Distributed {
    comm: Box<dyn Collectives>,
    stats: Mutex<SyncStats>,
}

impl std::fmt::Debug for Distributed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Distributed(rank {} of {})", self.rank(), self.size())
    }
}

/// Environment variables MPI launchers set in every process they start (Open MPI, PMIx, MPICH/Hydra,
/// Slurm's PMI).
const LAUNCHER_VARIABLES: [&str; 4] = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"];

fn launched_by_mpi() -> bool {
    LAUNCHER_VARIABLES
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

impl Distributed {
    /// Joins the MPI job this process was started in (`mpirun -np 4 program --distributed`).
    /// Errors, with how to fix it, when the process was not started by an MPI launcher or kiln
    /// was built without the `mpi` feature.
    pub fn mpi() -> Result<Distributed> {
        if !launched_by_mpi() {
            return Err(Error::usage(
                "Distributed::mpi",
                "this process was not started by an MPI launcher; run it as `mpirun -np 2 \
                 <program> --distributed` (Open MPI as root also needs \
                 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1)",
            ));
        }
        Distributed::join_mpi()
    }

    #[cfg(feature = "mpi")]
    fn join_mpi() -> Result<Distributed> {
        use mpi::traits::*;
        // MPI is called only from the thread that runs `fit` (rayon and the batch loader never do).
        let threading = mpi::Threading::Funneled;
        let (universe, _) = mpi::initialize_with_threading(threading).ok_or_else(|| {
            Error::usage(
                "Distributed::mpi",
                "MPI is already initialised in this process; make one Distributed and share it",
            )
        })?;
        let world = universe.world();
        let local = world.split_shared(world.rank());
        let local = (local.rank() as usize, local.size() as usize);
        Ok(Distributed::with(Box::new(mpi_world::MpiWorld {
            _universe: universe,
            world,
            local,
        })))
    }

    #[cfg(not(feature = "mpi"))]
    fn join_mpi() -> Result<Distributed> {
        Err(Error::usage(
            "Distributed::mpi",
            "kiln was built without MPI; build with `--features mpi` (needs an MPI library and \
             libclang: apt-get install openmpi-bin libopenmpi-dev libclang-dev)",
        ))
    }

    /// A job of one process (rank 0 of 1): `fit` takes the distributed path with nothing to
    /// exchange, so it trains exactly as without it.
    pub fn single() -> Distributed {
        Distributed::with(Box::new(Alone))
    }

    fn with(comm: Box<dyn Collectives>) -> Distributed {
        Distributed {
            comm,
            stats: Mutex::new(SyncStats::default()),
        }
    }

    /// This process's rank, `0..size`.
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.comm.size()
    }

    /// Whether this is rank 0, the one that prints and writes checkpoints.
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }

    /// The device this rank should train on: `KILN_DEVICE` when set; else, when the machine has a
    /// hardware GPU for every rank on it, the one at this rank's local position; else the CPU.
    pub fn device(&self) -> Result<Device> {
        if std::env::var("KILN_DEVICE").is_ok_and(|v| !v.trim().is_empty()) {
            return Ok(Device::auto());
        }
        let (local_rank, local_size) = self.comm.local();
        // One GPU is often listed once per API (Vulkan and GL): count within the first backend
        // that has hardware adapters.
        let adapters = Device::list_adapters();
        let backends = [
            (Backend::Vulkan, "vulkan"),
            (Backend::Metal, "metal"),
            (Backend::Dx12, "dx12"),
            (Backend::Gl, "gl"),
        ];
        let found = backends.into_iter().find_map(|(backend, name)| {
            let count = (adapters.iter())
                .filter(|a| !a.is_software && a.backend == name)
                .count();
            (count > 0).then_some((backend, count))
        });
        match found {
            Some((backend, count)) if count >= local_size => Device::gpu_with(
                &GpuOptions::default()
                    .backends(&[backend])
                    .allow_software(false)
                    .adapter_index(local_rank),
            ),
            _ => Ok(Device::cpu()),
        }
    }

    /// Time and bytes spent averaging gradients so far.
    pub fn stats(&self) -> SyncStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The mean time of `repeats` all-reduces of `floats` f32 values (for bandwidth estimates).
    pub fn time_all_reduce(&self, floats: usize, repeats: usize) -> Duration {
        let mut values = vec![1.0f32; floats];
        let started = Instant::now();
        for _ in 0..repeats.max(1) {
            self.comm.sum_f32(&mut values);
        }
        started.elapsed() / repeats.max(1) as u32
    }

    /// Ends every rank of the job after `error` on this one (MPI's abort: no rank is left waiting
    /// in a collective). The error is printed first, naming the rank.
    pub fn abort(&self, error: &Error) -> ! {
        eprintln!(
            "kiln: rank {} of {} failed: {error}; aborting every rank",
            self.rank(),
            self.size()
        );
        self.comm.abort(1)
    }

    /// `local` on every rank when every rank's is `Ok`; otherwise an error on every rank (its own on
    /// a rank that failed), so that no rank goes on to a collective a failed one never reaches.
    pub(crate) fn all_ready<T>(&self, local: Result<T>) -> Result<T> {
        let mut failed = [u64::from(local.is_err())];
        self.comm.combine_u64(&mut failed, Combine::Max);
        match local {
            Ok(_) if failed[0] == 1 => Err(Error::usage(
                "fit",
                format!(
                    "another rank of the {} failed before training (it printed its error); this \
                     is rank {}",
                    self.size(),
                    self.rank()
                ),
            )),
            local => local,
        }
    }

    /// Whether `flag` is true on any rank (so that every rank stops training together).
    pub(crate) fn any(&self, flag: bool) -> bool {
        let mut value = [u64::from(flag)];
        self.comm.combine_u64(&mut value, Combine::Max);
        value[0] == 1
    }

    /// Rank 0's `evaluation` on every rank (the ranks' own may differ in the last bits, and
    /// callbacks must decide alike everywhere).
    pub(crate) fn broadcast_evaluation(&self, evaluation: Evaluation) -> Evaluation {
        if self.size() == 1 {
            return evaluation;
        }
        let mut values: Vec<f32> = evaluation.values().into_iter().map(|(_, v)| v).collect();
        self.comm.broadcast_f32(&mut values);
        with_values(evaluation, values)
    }

    /// `Err` on every rank unless all ranks agree on each of `values` (named by `what`).
    pub(crate) fn check_agreement(&self, what: &[(&str, u64)]) -> Result<()> {
        let mut low: Vec<u64> = what.iter().map(|(_, v)| *v).collect();
        let mut high = low.clone();
        self.comm.combine_u64(&mut low, Combine::Min);
        self.comm.combine_u64(&mut high, Combine::Max);
        let differing: Vec<&str> = (what.iter().zip(low.iter().zip(&high)))
            .filter(|(_, (l, h))| l != h)
            .map(|((name, _), _)| *name)
            .collect();
        if differing.is_empty() {
            return Ok(());
        }
        Err(Error::usage(
            "fit",
            format!(
                "the {} ranks differ in {} (this is rank {}); every rank must build the same model \
                 and read the same data set",
                self.size(),
                differing.join(" and "),
                self.rank()
            ),
        ))
    }

    /// Rank 0's values of `vars` (f32 tensors), everywhere, in one broadcast.
    pub(crate) fn broadcast_vars(&self, vars: &[Var]) -> Result<()> {
        if self.size() == 1 {
            return Ok(());
        }
        let vars: Vec<&Var> = vars
            .iter()
            .filter(|v| v.tensor().dtype() == DType::F32)
            .collect();
        let mut flat = Vec::new();
        for v in &vars {
            flat.extend(v.tensor().to_vec::<f32>()?);
        }
        self.comm.broadcast_f32(&mut flat);
        for (v, value) in vars.iter().zip(split_like(vars.iter().copied(), &flat)?) {
            v.set(value)?;
        }
        Ok(())
    }

    /// Averages one step's gradients over the ranks, in place: this rank computed `grads` (mean
    /// loss `loss`) over `local` of the global batch's `global` samples, so each rank's share is
    /// weighted `local / global` and the result is the gradient of the whole batch's mean loss. A
    /// rank with no samples in the batch gives no gradients (zeros). Returns the batch's mean loss.
    pub(crate) fn average(
        &self,
        params: &[Var],
        grads: &mut Gradients,
        loss: f32,
        (local, global): (usize, usize),
    ) -> Result<f32> {
        if self.size() == 1 {
            // Nothing to exchange: this rank's batch is the global batch.
            self.stats.lock().unwrap_or_else(|e| e.into_inner()).steps += 1;
            return Ok(loss);
        }
        let started = Instant::now();
        let weight = local as f32 / global.max(1) as f32;
        let numel: usize = params.iter().map(|p| p.tensor().numel()).sum();
        let mut flat = Vec::with_capacity(numel + 1);
        for p in params {
            match grads.get_raw(p.id()) {
                Some(g) => flat.extend(g.to_f32_vec()?.into_iter().map(|v| v * weight)),
                None => flat.resize(flat.len() + p.tensor().numel(), 0.0),
            }
        }
        flat.push(if local == 0 { 0.0 } else { loss * weight });
        for bucket in flat.chunks_mut(BUCKET_FLOATS) {
            self.comm.sum_f32(bucket);
        }
        for (p, g) in params.iter().zip(split_like(params.iter(), &flat)?) {
            grads.insert(p.id(), g);
        }
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.steps += 1;
        stats.all_reduce += started.elapsed();
        stats.bytes += 4 * flat.len() as u64;
        Ok(flat[numel])
    }

    /// The ranks' evaluations of their shards combined: each metric (and per-output value)
    /// averaged weighted by the samples each rank saw; the loss, already global, is kept.
    pub(crate) fn combine(&self, evaluation: Evaluation, samples: usize) -> Evaluation {
        if self.size() == 1 {
            return evaluation;
        }
        // Everything after the loss (which is already global), weighted by this rank's samples.
        let n = samples as f64;
        let mut values: Vec<f64> = (evaluation.values().into_iter().skip(1))
            .map(|(_, v)| if samples == 0 { 0.0 } else { f64::from(v) * n })
            .collect();
        values.push(n);
        self.comm.sum_f64(&mut values);
        let total = values.pop().unwrap_or(1.0).max(1.0);
        let averaged = values.into_iter().map(|v| (v / total) as f32);
        let loss = evaluation.loss;
        with_values(evaluation, std::iter::once(loss).chain(averaged))
    }
}

/// `evaluation` with its numbers replaced by `values`, in [`Evaluation::values`]'s order (loss,
/// metrics, per-output values).
fn with_values(evaluation: Evaluation, values: impl IntoIterator<Item = f32>) -> Evaluation {
    let mut values = values.into_iter();
    let mut next = || values.next().unwrap_or(f32::NAN);
    Evaluation {
        loss: next(),
        metrics: (evaluation.metrics.into_iter())
            .map(|(m, _)| (m, next()))
            .collect(),
        outputs: (evaluation.outputs.into_iter())
            .map(|(name, _)| (name, next()))
            .collect(),
    }
}

/// `flat` cut into one tensor per variable, each shaped like it and on its device.
fn split_like<'v>(vars: impl Iterator<Item = &'v Var>, flat: &[f32]) -> Result<Vec<RawTensor>> {
    let mut offset = 0;
    vars.map(|v| {
        let t = v.tensor();
        let n = t.numel();
        let part = Tensor::from_slice(&flat[offset..offset + n], t.dims(), t.device())?;
        offset += n;
        Ok(part.raw().clone())
    })
    .collect()
}

/// Rank `rank`'s part of each global batch when `order` is cut into global batches of
/// `batch_size × size` samples (the last may be smaller): rank r takes the r-th run of
/// `batch_size`, which may be short or empty at the end. Returns each global batch's indices for
/// this rank and the global batch's size. Over the ranks, every sample is in exactly one part.
pub(crate) fn shards(
    order: &[usize],
    batch_size: usize,
    rank: usize,
    size: usize,
) -> Vec<(&[usize], usize)> {
    order
        .chunks(batch_size * size)
        .map(|global| {
            let start = (rank * batch_size).min(global.len());
            let end = ((rank + 1) * batch_size).min(global.len());
            (&global[start..end], global.len())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::shards;

    #[test]
    fn shards_cover_every_sample_once_per_epoch() {
        for (samples, batch, size) in [(100, 8, 2), (101, 8, 3), (5, 4, 4), (64, 32, 2), (1, 1, 2)]
        {
            let order: Vec<usize> = (0..samples).rev().collect();
            let mut seen = vec![0; samples];
            let mut batches = None;
            for rank in 0..size {
                let parts = shards(&order, batch, rank, size);
                assert_eq!(*batches.get_or_insert(parts.len()), parts.len());
                for (part, global) in parts {
                    assert!(part.len() <= batch && global <= batch * size);
                    part.iter().for_each(|&i| seen[i] += 1);
                }
            }
            assert!(
                seen.iter().all(|&c| c == 1),
                "{samples} samples, batch {batch}, {size} ranks"
            );
        }
    }
}
