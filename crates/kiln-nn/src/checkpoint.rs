//! Saving and resuming a [`crate::Model`]: `model.safetensors` (weights and buffers under PyTorch-style
//! names and layouts), `config.json` (the layers and shapes) and `optimizer.safetensors` (the
//! optimizer's step count and per-parameter state). Every file is written to a temporary file and
//! renamed over the old one, so a crash never leaves a half-written file; `manifest.json`, written
//! last, holds each file's SHA-256, so a checkpoint whose save was interrupted between files (new
//! weights, old optimizer state) is refused by `load` instead of being loaded as a mix.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use kiln_device::{DType, Device, Error, RawTensor, Result};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

fn io(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::InvalidData {
        op: "checkpoint",
        message: format!("{}: {e}", path.display()),
    }
}

/// Writes `bytes` to `path` atomically (temporary file in the same folder, flushed, then renamed).
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
    file.write_all(bytes).map_err(|e| io(&tmp, e))?;
    file.sync_all().map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

/// The manifest's name in a checkpoint folder.
pub(crate) const MANIFEST: &str = "manifest.json";

/// The SHA-256 of `bytes`, in hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `files` into `dir` (each atomically), then the manifest of their hashes, then syncs the
/// folder so the renames are durable.
pub(crate) fn write_checkpoint(dir: &Path, files: &[(&str, Vec<u8>)]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut hashes = serde_json::Map::new();
    for (name, bytes) in files {
        write_atomically(&dir.join(name), bytes)?;
        hashes.insert((*name).to_string(), sha256_hex(bytes).into());
    }
    let manifest = serde_json::json!({ "format": 1, "files": hashes });
    write_atomically(&dir.join(MANIFEST), format!("{manifest}\n").as_bytes())?;
    // the folder's entries (the renames) reach the disk too
    if let Ok(folder) = std::fs::File::open(dir) {
        let _ = folder.sync_all();
    }
    Ok(())
}

/// `Err` unless every file the manifest of `dir` lists is there with its hash (a checkpoint without a
/// manifest, from an older kiln, is accepted as it is).
pub(crate) fn verify_checkpoint(dir: &Path) -> Result<()> {
    let path = dir.join(MANIFEST);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
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
    Ok(())
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
                .map_err(|e| Error::invalid("checkpoint", format!("{name}: {e}")))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::invalid("checkpoint", e.to_string()))
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
