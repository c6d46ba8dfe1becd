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

/// Largest IDX body `read_idx` reads (4 GiB, more than any real IDX file): a header announcing more
/// is refused before anything is allocated or inflated, and a body is read only up to what its
/// header announced.
pub const MAX_IDX_BYTES: u64 = 1 << 32;

/// A reader of `path`'s bytes, decompressing when they start with the gzip magic (streamed: the
/// header is checked before the body is inflated), and whether it is gzip.
fn open(path: &Path) -> Result<(Box<dyn Read>, bool)> {
    let mut file = std::io::BufReader::new(std::fs::File::open(path).map_err(|e| bad(path, e))?);
    let gzip = std::io::BufRead::fill_buf(&mut file)
        .map_err(|e| bad(path, e))?
        .starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::bufread::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok((reader, gzip))
}

/// Fills `buf` from `reader`; `what` names the part when the data ends early.
fn fill(path: &Path, reader: &mut dyn Read, buf: &mut [u8], what: &str) -> Result<()> {
    reader.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => bad(path, format!("{what} (truncated or corrupt)")),
        _ => bad(path, e),
    })
}

/// An unsigned-byte IDX array: its dimensions and values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions (`[count, rows, cols]` for images, `[count]` for labels).
    pub dims: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes with `rank` dimensions (raw or gzip). The header is checked
/// (magic, rank, a body of at most [`MAX_IDX_BYTES`]) before the body is read, and the body must
/// hold exactly the values the header announces.
pub fn read_idx(path: &Path, rank: usize) -> Result<IdxArray> {
    let (reader, gzip) = open(path)?;
    // Errors in compressed files say so (a corrupt stream reads as a truncated or odd file).
    read_array(path, reader, rank).map_err(|e| match e {
        Error::InvalidData { op, message } if gzip => Error::InvalidData {
            op,
            message: format!("{message} (in gzip data)"),
        },
        other => other,
    })
}

/// [`read_idx`] on an open reader.
fn read_array(path: &Path, mut reader: Box<dyn Read>, rank: usize) -> Result<IdxArray> {
    let mut magic = [0u8; 4];
    fill(
        path,
        reader.as_mut(),
        &mut magic,
        "shorter than the 4-byte header",
    )?;
    let [zero0, zero1, kind, dims_count] = magic;
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
    let mut header = vec![0u8; 4 * rank];
    fill(path, reader.as_mut(), &mut header, "truncated header")?;
    let dims: Vec<usize> = header
        .chunks_exact(4)
        .map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n as u64 <= MAX_IDX_BYTES)
        .ok_or_else(|| {
            bad(
                path,
                format!("its header {dims:?} announces more than {MAX_IDX_BYTES} values"),
            )
        })?;
    let mut data = Vec::new();
    data.try_reserve_exact(expected + 1).map_err(|_| {
        bad(
            path,
            format!("cannot allocate the {expected} bytes its header {dims:?} announces"),
        )
    })?;
    // One byte past the announced body tells a file with trailing values from a complete one.
    let got = reader
        .take(expected as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| bad(path, e))?;
    if got != expected {
        return Err(bad(
            path,
            format!(
                "holds {}{got} values but its header {dims:?} says {expected} (truncated or corrupt)",
                if got > expected { "more than " } else { "" }
            ),
        ));
    }
    Ok(IdxArray { dims, data })
}
