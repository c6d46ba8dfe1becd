//! Checkpoints as one atomic unit and `fit(resume: true)`: a training process killed with SIGKILL at
//! random moments (saves included) and started again ends with the weights of an uninterrupted
//! run — bit-identical on the CPU, within float tolerance on the GPU — and the folder states a crash
//! can leave behind load as the last complete checkpoint.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kiln::device::testing::gpu_for_tests;
use kiln::nn::checkpoint_progress;
use kiln::nn::functional::set_random_seed;
use kiln::prelude::*;
use safetensors::SafeTensors;

/// Set in a child process: the folder it trains into, and its device (`cpu` or `gpu`).
const CHILD_DIR: &str = "KILN_RESUME_CHILD_DIR";
const CHILD_DEVICE: &str = "KILN_RESUME_CHILD_DEVICE";
const EPOCHS: usize = 40;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-resume-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// 512 samples of 16 features in 4 classes, the same every time.
fn data() -> Dataset {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let x: Vec<f32> = (0..512 * 16).map(|_| next() * 2.0 - 1.0).collect();
    let y: Vec<u32> = (0..512)
        .map(|i| {
            let row = &x[i * 16..(i + 1) * 16];
            u32::from(row[0] + row[1] > 0.0) * 2 + u32::from(row[2] - row[3] > 0.0)
        })
        .collect();
    Dataset::new(
        x,
        [16],
        Targets::Classes {
            labels: y,
            classes: 4,
        },
    )
    .unwrap()
}

/// A small classifier with dropout (its random sequence must resume too), compiled with Adam.
fn model(device: &Device) -> Sequential {
    set_random_seed(11);
    let mut model = Sequential::new([16])
        .on(device)
        .add(Dense::new(64).activation(Activation::Relu))
        .unwrap()
        .add(Dropout::new(0.2))
        .unwrap()
        .add(Dense::new(4).activation(Activation::Softmax))
        .unwrap();
    model
        .compile(
            Adam::new(0.01),
            Loss::SparseCategoricalCrossentropy,
            &[Metric::Accuracy],
        )
        .unwrap();
    model
}

/// Trains `EPOCHS` epochs with a checkpoint per epoch in `dir/checkpoint`, resuming from it.
fn train(dir: &Path, device: &Device) {
    let mut model = model(device);
    let mut checkpoint = ModelCheckpoint::new(dir.join("checkpoint"));
    let mut log = CsvLogger::new(dir.join("log.csv"));
    let config = FitConfig {
        epochs: EPOCHS,
        batch_size: 32,
        shuffle: Some(5),
        verbose: false,
        resume: true,
        callbacks: Callbacks::new(vec![&mut checkpoint, &mut log]),
        ..Default::default()
    };
    model.fit(&data(), &config).unwrap();
}

/// Not a test of its own: the body of the child processes the kill tests start.
#[test]
fn child_process() {
    if let (Ok(dir), Ok(device)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_DEVICE)) {
        let device = if device == "gpu" {
            gpu_for_tests().expect("the parent found a GPU")
        } else {
            Device::cpu()
        };
        train(Path::new(&dir), &device);
    }
}

fn child(dir: &Path, device: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process", "--test-threads=1", "--quiet"])
        .env(CHILD_DIR, dir)
        .env(CHILD_DEVICE, device)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Every tensor of the final checkpoint's weights, by name.
fn weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(dir.join("checkpoint/model.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<f32>)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (name, values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Starts children training in `dir` and kills `kills` of them with SIGKILL at random moments
/// (seeded) between `earliest` and `latest` after their start; a child that finishes before its
/// moment must have the weights `want`, and the next run starts in a fresh folder. Ends with one
/// uninterrupted child. Returns how many kills caught a child saving.
fn kill_and_resume(
    dir: &Path,
    device: &str,
    kills: usize,
    (earliest, latest): (Duration, Duration),
    check: impl Fn(&[(String, Vec<f32>)]),
) -> usize {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let (mut interrupted, mut during_save) = (0, 0);
    while interrupted < kills {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let fraction = (state >> 11) as f64 / (1u64 << 53) as f64;
        let wait = earliest + (latest.saturating_sub(earliest)).mul_f64(fraction);
        let mut process = child(dir, device);
        let started = Instant::now();
        while started.elapsed() < wait && process.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
        if process.try_wait().unwrap().is_none() {
            process.kill().unwrap(); // SIGKILL
            process.wait().unwrap();
            interrupted += 1;
            if dir.join("checkpoint.partial").exists() {
                during_save += 1;
            }
        } else {
            // It finished: check the run, then train again from scratch.
            assert!(process.wait().unwrap().success(), "a child failed");
            check(&weights(dir));
            std::fs::remove_dir_all(dir).unwrap();
            std::fs::create_dir_all(dir).unwrap();
        }
    }
    assert!(
        child(dir, device).wait().unwrap().success(),
        "the last child failed"
    );
    check(&weights(dir));
    during_save
}

/// An uninterrupted child's final weights, how long its run took and how long a child takes to
/// start and find the run finished (the earliest moment a kill can interrupt training).
fn uninterrupted(name: &str, device: &str) -> (Vec<(String, Vec<f32>)>, Duration, Duration) {
    let dir = scratch(name);
    let started = Instant::now();
    assert!(child(&dir, device).wait().unwrap().success());
    let took = started.elapsed();
    let progress = checkpoint_progress(&dir.join("checkpoint"))
        .unwrap()
        .unwrap();
    assert_eq!(progress.epoch, EPOCHS);
    let started = Instant::now();
    assert!(child(&dir, device).wait().unwrap().success());
    (weights(&dir), took, started.elapsed())
}

#[test]
fn sigkill_at_random_moments_then_resume_gives_the_uninterrupted_weights_on_the_cpu() {
    let (want, took, startup) = uninterrupted("cpu-reference", "cpu");
    let dir = scratch("cpu-killed");
    let during_save = kill_and_resume(&dir, "cpu", 20, (startup, took), |got| {
        assert_eq!(
            got, want,
            "resumed weights differ from the uninterrupted run"
        );
    });
    eprintln!(
        "20 kills, {during_save} of them during a save; a run takes {took:?}, a start {startup:?}"
    );
    // The log has one row per epoch, whatever the kills left behind.
    let log = std::fs::read_to_string(dir.join("log.csv")).unwrap();
    assert_eq!(log.lines().count(), EPOCHS + 1, "{log}");
}

#[test]
fn sigkill_then_resume_on_the_gpu_matches_within_tolerance() {
    if gpu_for_tests().is_none() {
        return;
    }
    let (want, took, startup) = uninterrupted("gpu-reference", "gpu");
    let dir = scratch("gpu-killed");
    kill_and_resume(&dir, "gpu", 3, (startup, took), |got| {
        for ((name, got), (_, want)) in got.iter().zip(&want) {
            for (g, w) in got.iter().zip(want) {
                assert!(
                    (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                    "{name}: {g} vs {w}"
                );
            }
        }
    });
}

#[test]
fn a_crash_between_the_renames_loads_the_previous_checkpoint_and_partial_saves_are_ignored() {
    let dir = scratch("renames");
    let ckpt = dir.join("checkpoint");
    let model = model(&Device::cpu());
    model.save(&ckpt).unwrap();
    let saved = model
        .predict_dataset(&data(), 64)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    // A crash after `checkpoint` -> `checkpoint.previous`, before the new one was renamed in: the
    // new folder is still `checkpoint.partial` (incomplete as far as anyone knows).
    std::fs::rename(&ckpt, dir.join("checkpoint.previous")).unwrap();
    std::fs::create_dir_all(dir.join("checkpoint.partial")).unwrap();
    std::fs::write(dir.join("checkpoint.partial/model.safetensors"), b"half").unwrap();
    let loaded = Model::load_model(&ckpt, &Device::cpu()).unwrap();
    assert_eq!(
        loaded
            .predict_dataset(&data(), 64)
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        saved
    );
    // The next save completes the unit again and clears both leftovers.
    model.save(&ckpt).unwrap();
    assert!(ckpt.join("manifest.json").exists());
    assert!(!dir.join("checkpoint.previous").exists());
    assert!(!dir.join("checkpoint.partial").exists());
}

#[test]
fn saving_again_keeps_files_the_user_put_beside_the_model() {
    let dir = scratch("extra-files");
    let ckpt = dir.join("model");
    let model = model(&Device::cpu());
    model.save(&ckpt).unwrap();
    std::fs::write(ckpt.join("tokenizer.json"), "{}").unwrap();
    std::fs::create_dir_all(ckpt.join("assets")).unwrap();
    std::fs::write(ckpt.join("assets/classes.txt"), "a\nb").unwrap();
    model.save(&ckpt).unwrap();
    assert_eq!(
        std::fs::read_to_string(ckpt.join("tokenizer.json")).unwrap(),
        "{}"
    );
    assert_eq!(
        std::fs::read_to_string(ckpt.join("assets/classes.txt")).unwrap(),
        "a\nb"
    );
}

#[test]
fn resume_needs_one_checkpoint_callback_and_the_same_shuffle_seed() {
    let dir = scratch("resume-errors");
    let mut model = model(&Device::cpu());
    let data = data();
    let no_callback = FitConfig {
        epochs: 1,
        resume: true,
        verbose: false,
        ..Default::default()
    };
    let e = model.fit(&data, &no_callback).unwrap_err().to_string();
    assert!(e.contains("ModelCheckpoint"), "{e}");

    // Two epochs with seed 5, then a resume with seed 6 is refused (it would not continue the run).
    let mut checkpoint = ModelCheckpoint::new(dir.join("checkpoint"));
    let first = FitConfig {
        epochs: 2,
        shuffle: Some(5),
        resume: true,
        verbose: false,
        callbacks: Callbacks::new(vec![&mut checkpoint]),
        ..Default::default()
    };
    assert_eq!(model.fit(&data, &first).unwrap().train.len(), 2);
    let progress = checkpoint_progress(&dir.join("checkpoint"))
        .unwrap()
        .unwrap();
    assert_eq!((progress.epoch, progress.shuffle), (2, Some(5)));
    assert_eq!(
        progress.rng.len(),
        1,
        "the dropout layer's position: {progress:?}"
    );

    let mut checkpoint = ModelCheckpoint::new(dir.join("checkpoint"));
    let other_seed = FitConfig {
        epochs: 4,
        shuffle: Some(6),
        resume: true,
        verbose: false,
        callbacks: Callbacks::new(vec![&mut checkpoint]),
        ..Default::default()
    };
    let e = model.fit(&data, &other_seed).unwrap_err().to_string();
    assert!(e.contains("shuffle"), "{e}");

    // The same seed continues at epoch 3: two more epochs.
    let mut checkpoint = ModelCheckpoint::new(dir.join("checkpoint"));
    let same_seed = FitConfig {
        epochs: 4,
        shuffle: Some(5),
        resume: true,
        verbose: false,
        callbacks: Callbacks::new(vec![&mut checkpoint]),
        ..Default::default()
    };
    assert_eq!(model.fit(&data, &same_seed).unwrap().train.len(), 2);
}

#[test]
fn a_save_keeps_user_files_but_never_an_older_checkpoint_s_own_files() {
    let dir = scratch("own-files");
    let ckpt = dir.join("model");
    // A compiled model's checkpoint has optimizer state; the tokenizer is the user's.
    model(&Device::cpu()).save(&ckpt).unwrap();
    assert!(ckpt.join("optimizer.safetensors").exists());
    std::fs::write(ckpt.join("tokenizer.json"), "{}").unwrap();
    // An uncompiled model saved over it: no optimizer state of the old one may come along.
    let uncompiled = Sequential::new([16]).add(Dense::new(4)).unwrap();
    uncompiled.save(&ckpt).unwrap();
    assert!(!ckpt.join("optimizer.safetensors").exists());
    assert!(ckpt.join("tokenizer.json").exists());
    // After a crash between the renames (only `.previous` complete), the user's file survives too.
    std::fs::rename(&ckpt, dir.join("model.previous")).unwrap();
    uncompiled.save(&ckpt).unwrap();
    assert!(ckpt.join("tokenizer.json").exists());
    assert!(!dir.join("model.previous").exists());
    // `.` cannot be swapped by a rename: refused, naming the fix.
    let e = uncompiled.save(std::path::Path::new(".")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Argument, "{e}");
}
