//! Saving and resuming a [`crate::Model`]: `model.safetensors` (weights and buffers under PyTorch-style
//! names and layouts), `config.json` (the layers and shapes) and `optimizer.safetensors` (the
//! optimizer's step count and per-parameter state) and `manifest.json` (each file's SHA-256 and the
//! training progress: epochs done, shuffle seed, best monitored value, random layers' positions).
//! A checkpoint is written as one unit — a new folder, synced, then renamed into place, the previous
//! checkpoint deleted only after — so a crash at any moment leaves one complete checkpoint, never a
//! mix; `load` checks every file against the manifest before changing anything.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use kiln_device::{DType, Device, Error, RawTensor, Result};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

fn io(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::InvalidData {
        op: "checkpoint",
        message: format!("{}: {e}", path.display()),
    }
}

/// Creates `path` with `bytes` and waits until they are on the disk.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = std::fs::File::create(path).map_err(|e| io(path, e))?;
    file.write_all(bytes).map_err(|e| io(path, e))?;
    file.sync_all().map_err(|e| io(path, e))
}

/// Makes a folder's entries (creations, renames) durable.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|folder| folder.sync_all())
        .map_err(|e| io(dir, e))
}

/// The manifest's name in a checkpoint folder.
pub(crate) const MANIFEST: &str = "manifest.json";
/// The manifest format `write_checkpoint` writes (1: hashes only; 2: with the training progress).
const FORMAT: u64 = 2;

/// How far training had come when a checkpoint was saved (its manifest's `"progress"`): where
/// `fit` with `resume: true` continues.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainingProgress {
    /// Epochs completed.
    pub epoch: usize,
    /// The shuffle seed `fit` was given (`None`: the data was not shuffled).
    pub shuffle: Option<u64>,
    /// The best value the saving [`crate::callbacks::ModelCheckpoint`] monitored (lower is better).
    pub best: Option<f32>,
    /// Each random layer's position in its random sequence (Dropout's calls), by layer name.
    pub rng: BTreeMap<String, u64>,
}

impl TrainingProgress {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "epoch": self.epoch,
            "shuffle": self.shuffle,
            "best": self.best,
            "rng": self.rng,
        })
    }

    fn from_json(value: &serde_json::Value) -> Option<Self> {
        Some(TrainingProgress {
            epoch: usize::try_from(value["epoch"].as_u64()?).ok()?,
            shuffle: value["shuffle"].as_u64(),
            best: value["best"].as_f64().map(|b| b as f32),
            rng: value["rng"]
                .as_object()?
                .iter()
                .map(|(name, calls)| Some((name.clone(), calls.as_u64()?)))
                .collect::<Option<_>>()?,
        })
    }
}

/// SHA-256 of `bytes`, in hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `dir` with `.suffix` appended to its last component (`ckpt` -> `ckpt.partial`).
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    dir.with_file_name(name)
}

/// `Err` unless `dir` ends in a folder name a sibling can be made of (`.`, `..` and `/` cannot be
/// swapped by a rename).
fn check_name(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        // Saving would move the file aside to make room: refuse, and leave it as it is.
        return Err(Error::argument(
            "checkpoint",
            format!(
                "{} is a file, not a folder: save the checkpoint under another name",
                dir.display()
            ),
        ));
    }
    match dir.file_name() {
        Some(_) => Ok(()),
        None => Err(Error::argument(
            "checkpoint",
            format!(
                "{}: save a checkpoint as a named folder (e.g. {}), not as . or ..",
                dir.display(),
                Path::new("model").display()
            ),
        )),
    }
}

fn remove_dir_if_there(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(dir, e)),
        _ => Ok(()),
    }
}

/// The files a checkpoint consists of: never carried from an older one into a new one (an uncompiled
/// model's save must not inherit the previous optimizer state).
const CHECKPOINT_FILES: [&str; 4] = [
    "model.safetensors",
    "config.json",
    "optimizer.safetensors",
    MANIFEST,
];

/// Hard-links (or copies) into `to` every entry of `from` that is not part of a checkpoint — a
/// tokenizer or column list saved beside the model — so a new checkpoint keeps them.
fn carry_over(from: &Path, to: &Path, checkpoint_files: &[&str]) -> Result<()> {
    let entries = std::fs::read_dir(from).map_err(|e| io(from, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io(from, e))?;
        let name = entry.file_name();
        let leftover = name.to_string_lossy().contains(".tmp-");
        if checkpoint_files.iter().any(|w| name == *w) || leftover {
            continue;
        }
        let (source, target) = (entry.path(), to.join(&name));
        if entry.file_type().map_err(|e| io(&source, e))?.is_dir() {
            std::fs::create_dir(&target).map_err(|e| io(&target, e))?;
            carry_over(&source, &target, &[])?;
        } else if std::fs::hard_link(&source, &target).is_err() {
            std::fs::copy(&source, &target).map_err(|e| io(&target, e))?;
        }
    }
    Ok(())
}

/// Writes the checkpoint `files` as one unit: into `<dir>.partial` (every file and the folder
/// synced, the manifest last: the files' hashes, the optimizer's kind and step count (for readers of
/// the manifest; `load` takes them from `optimizer.safetensors`), `progress`), then swapped in for
/// `dir` by two renames (`dir` -> `<dir>.previous`, `<dir>.partial` -> `dir`); the previous checkpoint is
/// deleted only once the new one is in place. A crash at any moment leaves `dir` or
/// `<dir>.previous` complete ([`resolve_checkpoint`] finds it). Other files in `dir` are kept.
pub(crate) fn write_checkpoint(
    dir: &Path,
    files: &[(&str, Vec<u8>)],
    optimizer: Option<(&str, u64)>,
    progress: Option<&TrainingProgress>,
) -> Result<()> {
    check_name(dir)?;
    let (partial, previous) = (sibling(dir, "partial"), sibling(dir, "previous"));
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    }
    remove_dir_if_there(&partial)?;
    std::fs::create_dir(&partial).map_err(|e| io(&partial, e))?;
    let mut hashes = serde_json::Map::new();
    for (name, bytes) in files {
        write_synced(&partial.join(name), bytes)?;
        hashes.insert((*name).to_string(), sha256_hex(bytes).into());
    }
    // What the user keeps beside the model, from the complete checkpoint (after a crash between the
    // renames that is `<dir>.previous`).
    let mut own: Vec<&str> = files.iter().map(|(name, _)| *name).collect();
    own.extend(CHECKPOINT_FILES);
    if dir.is_dir() {
        carry_over(dir, &partial, &own)?;
    } else if previous.join(MANIFEST).exists() {
        carry_over(&previous, &partial, &own)?;
    }
    let manifest = serde_json::json!({
        "format": FORMAT,
        "files": hashes,
        "optimizer": optimizer.map(|(name, _)| name),
        "steps": optimizer.map_or(0, |(_, steps)| steps),
        "progress": progress.map(TrainingProgress::to_json),
    });
    write_synced(&partial.join(MANIFEST), format!("{manifest}\n").as_bytes())?;
    sync_dir(&partial)?;
    if dir.exists() {
        remove_dir_if_there(&previous)?;
        std::fs::rename(dir, &previous).map_err(|e| io(dir, e))?;
    }
    std::fs::rename(&partial, dir).map_err(|e| io(dir, e))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    remove_dir_if_there(&previous)
}

/// A complete checkpoint, its files checked against its manifest.
pub(crate) struct Complete {
    /// Where its files are.
    pub dir: PathBuf,
    /// The training progress its manifest records (`None`: saved before any `fit`, or by an older
    /// kiln).
    pub progress: Option<TrainingProgress>,
}

/// The complete checkpoint saved as `dir`: `dir` itself (its files checked against its manifest; a
/// checkpoint without a manifest, from an older kiln, is taken as it is), or `<dir>.previous` when
/// a save was interrupted between its two renames. The files are read and hashed once.
pub(crate) fn resolve_checkpoint(dir: &Path) -> Result<Complete> {
    let mut complete = dir.to_path_buf();
    if !dir.join(MANIFEST).exists() {
        let previous = sibling(dir, "previous");
        if !dir.join("model.safetensors").exists() && previous.join(MANIFEST).exists() {
            complete = previous;
        }
    }
    let manifest = verify_checkpoint(&complete)?;
    Ok(Complete {
        progress: manifest.and_then(|m| TrainingProgress::from_json(&m["progress"])),
        dir: complete,
    })
}

/// The training progress recorded in the checkpoint saved as `dir` (`None`: saved before any `fit`;
/// an error when there is no complete checkpoint there).
pub fn checkpoint_progress(dir: &Path) -> Result<Option<TrainingProgress>> {
    Ok(resolve_checkpoint(dir)?.progress)
}

/// Whether a complete checkpoint exists as `dir` (or its interrupted save's `<dir>.previous`).
pub(crate) fn checkpoint_exists(dir: &Path) -> bool {
    dir.join("model.safetensors").exists() || sibling(dir, "previous").join(MANIFEST).exists()
}

/// `Err` unless every file the manifest of `dir` lists is there with its hash; the manifest (`None`
/// for a checkpoint without one, from an older kiln, accepted as it is).
fn verify_checkpoint(dir: &Path) -> Result<Option<serde_json::Value>> {
    let path = dir.join(MANIFEST);
    let Ok(text) = std::fs::read_to_string(&path) else {
        if !dir.join("model.safetensors").exists() {
            return Err(io(dir, "no checkpoint here (no model.safetensors)"));
        }
        return Ok(None);
    };
    let manifest: serde_json::Value = serde_json::from_str(&text).map_err(|e| io(&path, e))?;
    let files = manifest["files"]
        .as_object()
        .ok_or_else(|| io(&path, "no \"files\" in the manifest"))?;
    for (name, hash) in files {
        let file = dir.join(name);
        let bytes = std::fs::read(&file).map_err(|e| io(&file, e))?;
        if hash.as_str() != Some(sha256_hex(&bytes).as_str()) {
            return Err(io(
                &file,
                "does not match the checkpoint's manifest: the save that wrote it was interrupted, or \
                 the file was changed; use an earlier checkpoint",
            ));
        }
    }
    Ok(Some(manifest))
}

/// Serialises named f32 tensors (copied to the host) with `metadata`.
pub(crate) fn to_safetensors(
    tensors: &[(String, RawTensor)],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let host: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| {
            let bytes = t
                .cast(DType::F32)?
                .to_vec::<f32>()?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            Ok((name.clone(), t.shape().dims().to_vec(), bytes))
        })
        .collect::<Result<_>>()?;
    let views: Vec<(String, TensorView<'_>)> = host
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::data("checkpoint", format!("{name}: {e}")))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::data("checkpoint", e.to_string()))
}

/// Reads every f32 tensor of a safetensors file onto `device`, with the file's metadata.
pub(crate) fn from_safetensors(
    path: &Path,
    device: &Device,
) -> Result<(HashMap<String, RawTensor>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| io(path, e))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let file = SafeTensors::deserialize(&bytes).map_err(|e| io(path, e))?;
    let mut out = HashMap::new();
    for (name, view) in file.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(io(
                path,
                format!("{name} is {:?}, expected F32", view.dtype()),
            ));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        out.insert(
            name,
            RawTensor::from_slice(&values, view.shape().to_vec(), device)?,
        );
    }
    Ok((out, metadata))
}
