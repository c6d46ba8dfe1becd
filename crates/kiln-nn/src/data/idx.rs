//! The IDX format of MNIST and Fashion-MNIST, raw or gzip-compressed. Magic numbers and sizes are
//! checked: a truncated or corrupt file is an error naming the file, never a panic.

use std::io::Read;
use std::path::Path;

use kiln_device::{Error, Result};

fn bad(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::InvalidData {
        op: "read_idx",
        message: format!("{}: {message}", path.display()),
    }
}

/// The bytes of `path`, decompressed when they start with the gzip magic.
fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| bad(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| bad(path, format!("gzip: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// An unsigned-byte IDX array: its dimensions and values.
pub struct IdxArray {
    /// Dimensions (`[count, rows, cols]` for images, `[count]` for labels).
    pub dims: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes with `rank` dimensions.
pub fn read_idx(path: &Path, rank: usize) -> Result<IdxArray> {
    let bytes = read_bytes(path)?;
    if bytes.len() < 4 {
        return Err(bad(path, "shorter than the 4-byte header"));
    }
    let [zero0, zero1, kind, dims_count] = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if zero0 != 0 || zero1 != 0 || kind != 0x08 {
        return Err(bad(
            path,
            format!(
                "not an unsigned-byte IDX file (magic {:02x}{:02x}{:02x}{:02x})",
                zero0, zero1, kind, dims_count
            ),
        ));
    }
    if dims_count as usize != rank {
        return Err(bad(
            path,
            format!("has {dims_count} dimensions, expected {rank}"),
        ));
    }
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(bad(path, "truncated header"));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(path, "dimensions overflow"))?;
    let body = &bytes[header..];
    if body.len() != expected {
        return Err(bad(
            path,
            format!(
                "holds {} values but its header {dims:?} says {expected} (truncated or corrupt)",
                body.len()
            ),
        ));
    }
    Ok(IdxArray {
        dims,
        data: body.to_vec(),
    })
}
