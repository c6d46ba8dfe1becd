//! Data-parallel training (`FitConfig::distributed`). Without MPI: a one-process job trains exactly
//! as `fit` does, and asking for MPI outside a launcher says how to launch. With the `mpi` feature,
//! jobs under `mpirun` on this machine (loopback, `--oversubscribe`): 2 ranks × batch 32 end with
//! the weights of 1 process × batch 64, a failing rank ends every rank, ranks that disagree get an
//! error each, and a distributed run's checkpoint resumes in one process.

use kiln::device::device_test;
use kiln::prelude::*;

/// 640 samples of 6 features; the label says whether their weighted sum is positive.
fn data(samples: usize) -> Dataset {
    let features: Vec<f32> = (0..samples * 6)
        .map(|i| ((i as f32 * 12.9898).sin() * 43758.547).fract())
        .collect();
    let labels = features
        .chunks(6)
        .map(|f| u32::from(f[0] - 0.5 * f[1] + f[4] > 0.2))
        .collect();
    Dataset::new(features, [6], Targets::Classes { labels, classes: 2 }).unwrap()
}

/// The same small classifier on every call (seeded initialisers).
fn model(device: &Device) -> Model {
    let mut model = Sequential::new([6])
        .seed(3)
        .on(device)
        .add(Dense::new(16).activation(Activation::Relu))
        .unwrap()
        .add(Dense::new(2).activation(Activation::Softmax))
        .unwrap()
        .into_model();
    model
        .compile(
            Adam::new(0.01),
            Loss::SparseCategoricalCrossentropy,
            &[Metric::Accuracy],
        )
        .unwrap();
    model
}

/// Every parameter's values, by name.
fn weights(model: &Model) -> Vec<(String, Vec<f32>)> {
    model
        .named_parameters()
        .into_iter()
        .map(|(name, var)| (name, var.tensor().to_vec::<f32>().unwrap()))
        .collect()
}

device_test!(a_one_process_job_trains_exactly_as_fit, |device| {
    let data = data(200);
    let config = |job| FitConfig {
        epochs: 2,
        batch_size: 32,
        verbose: false,
        distributed: job,
        ..Default::default()
    };
    let mut plain = model(&device);
    let plain_history = plain.fit(&data, &config(None)).unwrap();
    let job = Distributed::single();
    let mut distributed = model(&device);
    let history = distributed.fit(&data, &config(Some(&job))).unwrap();
    assert_eq!(weights(&plain), weights(&distributed));
    for (a, b) in plain_history.train.iter().zip(&history.train) {
        assert!(
            (a.loss - b.loss).abs() <= 1e-6 * (1.0 + a.loss.abs()),
            "{a:?} vs {b:?}"
        );
        assert_eq!(a.metrics, b.metrics);
    }
    let stats = job.stats();
    assert_eq!(stats.steps, 14, "7 steps per epoch");
    assert_eq!(stats.bytes, 0, "one rank exchanges nothing");
});

#[test]
fn mpi_outside_a_launcher_says_how_to_launch() {
    if std::env::var_os("OMPI_COMM_WORLD_SIZE").is_some() {
        return; // a child of the MPI tests below
    }
    let err = Distributed::mpi().unwrap_err();
    assert_eq!(err.kind(), kiln::ErrorKind::Usage);
    assert!(err.to_string().contains("mpirun -np"), "{err}");
}

#[cfg(feature = "mpi")]
mod under_mpirun {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};
    use std::time::{Duration, Instant};

    use super::*;

    const SCENARIO: &str = "KILN_MPI_SCENARIO";
    const DIR: &str = "KILN_MPI_DIR";

    /// Runs this test binary's `child` under `mpirun -np 2` with `scenario`; returns its output and
    /// how long it took. Fails after two minutes (a hung job).
    fn mpirun(scenario: &str, dir: &Path, device: &str) -> (Output, Duration) {
        let started = Instant::now();
        let mut child = Command::new("mpirun")
            .args(["--oversubscribe", "-np", "2"])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "under_mpirun::child",
                "--test-threads=1",
                "--nocapture",
            ])
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .env(SCENARIO, scenario)
            .env(DIR, dir)
            .env("KILN_DEVICE", device)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("mpirun (Open MPI) is installed: apt-get install openmpi-bin");
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(120) {
                child.kill().unwrap();
                panic!("the {scenario} job hung");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        (child.wait_with_output().unwrap(), started.elapsed())
    }

    /// [`mpirun`], which must succeed (its stderr is the failure message).
    fn mpirun_ok(scenario: &str, dir: &Path, device: &str) {
        let (output, _) = mpirun(scenario, dir, device);
        assert!(
            output.status.success(),
            "{scenario}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kiln-mpi-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn train_config<'a>(job: Option<&'a Distributed>, batch_size: usize) -> FitConfig<'a> {
        FitConfig {
            epochs: 2,
            batch_size,
            shuffle: Some(7),
            verbose: false,
            distributed: job,
            ..Default::default()
        }
    }

    /// A callback that fails on rank 1 at the second epoch.
    struct FailOnRankOne(usize);

    impl Callback for FailOnRankOne {
        fn on_epoch_begin(&mut self, epoch: usize, _: &mut Model) -> kiln::Result<()> {
            if self.0 == 1 && epoch == 1 {
                return Err(kiln::Error::data("test", "rank 1 could not read its data"));
            }
            Ok(())
        }

        fn on_epoch_end(
            &mut self,
            _: usize,
            _: &kiln::nn::callbacks::EpochLogs<'_>,
            _: &mut Model,
        ) -> kiln::Result<kiln::nn::callbacks::Control> {
            Ok(kiln::nn::callbacks::Control::Continue)
        }
    }

    /// Stops training after the first epoch, on rank 0 only (it is a rank-0-only callback).
    struct StopOnRankZero;

    impl Callback for StopOnRankZero {
        fn on_epoch_end(
            &mut self,
            _: usize,
            _: &kiln::nn::callbacks::EpochLogs<'_>,
            _: &mut Model,
        ) -> kiln::Result<kiln::nn::callbacks::Control> {
            Ok(kiln::nn::callbacks::Control::Stop)
        }

        fn rank_zero_only(&self) -> bool {
            true
        }
    }

    /// Not a test of its own: the body of every rank the tests below start.
    #[test]
    fn child() {
        let (Ok(scenario), Ok(dir)) = (std::env::var(SCENARIO), std::env::var(DIR)) else {
            return;
        };
        let dir = PathBuf::from(dir);
        let job = Distributed::mpi().unwrap();
        let device = job.device().unwrap();
        let rank = job.rank();
        let mut model = model(&device);
        match scenario.as_str() {
            "train" => {
                let mut checkpoint = ModelCheckpoint::new(dir.join("checkpoint"));
                let config = FitConfig {
                    callbacks: Callbacks::new(vec![&mut checkpoint]),
                    ..train_config(Some(&job), 32)
                };
                model.fit(&data(640), &config).unwrap();
                let json = serde_json::to_string(&weights(&model)).unwrap();
                std::fs::write(dir.join(format!("rank{rank}.json")), json).unwrap();
                let stats = job.stats();
                let stats = format!("{} {}", stats.steps, stats.bytes);
                std::fs::write(dir.join(format!("stats{rank}")), stats).unwrap();
            }
            "fail" => {
                let mut failing = FailOnRankOne(rank);
                let config = FitConfig {
                    callbacks: Callbacks::new(vec![&mut failing]),
                    ..train_config(Some(&job), 32)
                };
                model.fit(&data(640), &config).unwrap();
                unreachable!("rank 1 fails, and the abort ends rank 0 too");
            }
            "mismatch" => {
                let samples = if rank == 1 { 600 } else { 640 };
                let err = model
                    .fit(&data(samples), &train_config(Some(&job), 32))
                    .unwrap_err();
                assert!(
                    err.to_string().contains("differ in training samples"),
                    "{err}"
                );
                std::fs::write(dir.join(format!("refused{rank}")), err.to_string()).unwrap();
            }
            "stop" => {
                let mut stop = StopOnRankZero;
                let config = FitConfig {
                    epochs: 5,
                    callbacks: Callbacks::new(vec![&mut stop]),
                    ..train_config(Some(&job), 32)
                };
                let history = model.fit(&data(640), &config).unwrap();
                std::fs::write(
                    dir.join(format!("epochs{rank}")),
                    history.train.len().to_string(),
                )
                .unwrap();
            }
            "early-error" => {
                // Rank 1's call is wrong (batch size 0): it gets its error, rank 0 one saying so.
                let batch = if rank == 1 { 0 } else { 32 };
                let err = model
                    .fit(&data(640), &train_config(Some(&job), batch))
                    .unwrap_err();
                std::fs::write(dir.join(format!("refused{rank}")), err.to_string()).unwrap();
            }
            other => panic!("unknown scenario {other}"),
        }
    }

    fn two_ranks_match_one_process_with_twice_the_batch(device_name: &str, device: &Device) {
        let dir = temp_dir(&format!("train-{device_name}"));
        mpirun_ok("train", &dir, device_name);
        let read = |rank: usize| -> Vec<(String, Vec<f32>)> {
            let text = std::fs::read_to_string(dir.join(format!("rank{rank}.json"))).unwrap();
            serde_json::from_str(&text).unwrap()
        };
        let (rank0, rank1) = (read(0), read(1));
        assert_eq!(rank0, rank1, "the ranks' weights are identical");
        // 640 samples in global batches of 64: 10 steps per epoch, 20 in all, each exchanging
        // every gradient and the loss.
        let parameters = 6 * 16 + 16 + 16 * 2 + 2;
        assert_eq!(
            std::fs::read_to_string(dir.join("stats0")).unwrap(),
            format!("20 {}", 20 * 4 * (parameters + 1))
        );

        let mut single = model(device);
        single.fit(&data(640), &train_config(None, 64)).unwrap();
        for ((name, a), (_, b)) in weights(&single).iter().zip(&rank0) {
            let worst = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            assert!(worst < 1e-4, "{name}: differs by {worst} after 20 steps");
        }

        // The distributed run's checkpoint (rank 0's) resumes in one process.
        let mut resumed = model(device);
        let mut checkpoint = ModelCheckpoint::new(dir.join("checkpoint"));
        let history = resumed
            .fit(
                &data(640),
                &FitConfig {
                    epochs: 3,
                    resume: true,
                    callbacks: Callbacks::new(vec![&mut checkpoint]),
                    ..train_config(None, 64)
                },
            )
            .unwrap();
        assert_eq!(
            history.train.len(),
            1,
            "epochs 1 and 2 came from the checkpoint"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn two_ranks_match_one_process_on_the_cpu() {
        two_ranks_match_one_process_with_twice_the_batch("cpu", &Device::cpu());
    }

    #[test]
    fn two_ranks_match_one_process_on_the_gpu() {
        if let Some(gpu) = kiln::device::testing::gpu_for_tests() {
            two_ranks_match_one_process_with_twice_the_batch("gpu", &gpu);
        }
    }

    #[test]
    fn a_failing_rank_ends_every_rank() {
        let dir = temp_dir("fail");
        let (output, took) = mpirun("fail", &dir, "cpu");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "the job must fail: {stderr}");
        assert!(
            stderr.contains("rank 1 of 2 failed") && stderr.contains("could not read its data"),
            "{stderr}"
        );
        assert!(took < Duration::from_secs(60), "took {took:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_stop_on_rank_zero_stops_every_rank() {
        let dir = temp_dir("stop");
        mpirun_ok("stop", &dir, "cpu");
        for rank in 0..2 {
            let epochs = std::fs::read_to_string(dir.join(format!("epochs{rank}"))).unwrap();
            assert_eq!(epochs, "1", "rank {rank}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_rank_failing_its_checks_gives_every_rank_an_error() {
        let dir = temp_dir("early-error");
        mpirun_ok("early-error", &dir, "cpu");
        let read =
            |rank: usize| std::fs::read_to_string(dir.join(format!("refused{rank}"))).unwrap();
        assert!(read(1).contains("batch size >= 1"), "{}", read(1));
        assert!(
            read(0).contains("another rank of the 2 failed"),
            "{}",
            read(0)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ranks_with_different_data_are_refused_on_every_rank() {
        let dir = temp_dir("mismatch");
        mpirun_ok("mismatch", &dir, "cpu");
        for rank in 0..2 {
            assert!(dir.join(format!("refused{rank}")).exists(), "rank {rank}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
