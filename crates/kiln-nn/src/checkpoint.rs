//! Saving and resuming a [`crate::Model`]: `model.safetensors` (weights and buffers under PyTorch-style
//! names and layouts), `config.json` (the layers and shapes) and `optimizer.safetensors` (the
//! optimizer's step count and per-parameter state). Every file is written to a temporary file and
//! renamed over the old one, so a crash never leaves a half-written checkpoint.

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
