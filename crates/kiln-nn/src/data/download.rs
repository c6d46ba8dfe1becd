//! Downloading data files with SHA-256 verification: each file streams into `<name>.part` in the
//! destination folder while it is hashed, and is renamed into place only when the hash matches, so an
//! interrupted or corrupted download never looks like a complete file. A progress bar is drawn when
//! stdout is a terminal.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use kiln_device::{Error, Result};
use sha2::{Digest, Sha256};

/// A file to fetch and the SHA-256 (lowercase hex) its bytes must have.
#[derive(Debug, Clone, Copy)]
pub struct RemoteFile<'a> {
    /// File name, appended to the base URL and used in the destination folder.
    pub name: &'a str,
    /// Expected SHA-256 of the file, lowercase hex.
    pub sha256: &'a str,
}

pub(crate) fn failed(name: &str, message: impl std::fmt::Display) -> Error {
    Error::InvalidData {
        op: "download",
        message: format!("{name}: {message}"),
    }
}

/// SHA-256 of a file, lowercase hex.
pub(crate) fn hash_file(path: &Path) -> Result<String> {
    digest_file::<Sha256>(path)
}

/// The digest `D` (SHA-256, MD5, ...) of a file, lowercase hex.
pub(crate) fn digest_file<D: Digest + Write>(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| failed(&path.display().to_string(), e))?;
    let mut hasher = D::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| failed(&path.display().to_string(), e))?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// How long a download may wait and how much it may fetch: a stalled or hostile mirror ends in an
/// error, never a hang or a full disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownloadLimits {
    /// Longest wait to connect.
    pub connect: Duration,
    /// Longest wait for the response's headers.
    pub response: Duration,
    /// Longest wait for any one read of the body (a stalled transfer).
    pub idle: Duration,
    /// Longest time a whole file may take.
    pub total: Duration,
    /// Largest file accepted, in bytes: checked against `Content-Length` before reading, and while
    /// reading.
    pub max_bytes: u64,
}

impl Default for DownloadLimits {
    /// 15 s to connect, 30 s for headers, 30 s without data, 30 min per file, 256 MiB per file.
    fn default() -> Self {
        DownloadLimits {
            connect: Duration::from_secs(15),
            response: Duration::from_secs(30),
            idle: Duration::from_secs(30),
            total: Duration::from_secs(30 * 60),
            max_bytes: 256 << 20,
        }
    }
}

/// Fetches `base_url/<name>` for every file into `dest` (created if needed), skipping files already
/// there with the right hash. A file whose bytes do not match its SHA-256 is an error and is not kept.
/// Waits and sizes are bounded by [`DownloadLimits::default`].
pub fn download_verified(base_url: &str, files: &[RemoteFile<'_>], dest: &Path) -> Result<()> {
    download_verified_with(base_url, files, dest, DownloadLimits::default())
}

/// [`download_verified`] with other [`DownloadLimits`].
pub fn download_verified_with(
    base_url: &str,
    files: &[RemoteFile<'_>],
    dest: &Path,
    limits: DownloadLimits,
) -> Result<()> {
    std::fs::create_dir_all(dest).map_err(|e| failed(&dest.display().to_string(), e))?;
    for file in files {
        let target = dest.join(file.name);
        if target.exists() && hash_file(&target)? == file.sha256 {
            continue;
        }
        let url = format!("{}/{}", base_url.trim_end_matches('/'), file.name);
        fetch(&url, &target, limits, |part| {
            let got = hash_file(part)?;
            if got == file.sha256 {
                Ok(())
            } else {
                Err(failed(
                    file.name,
                    format!("SHA-256 mismatch: expected {}, got {got}", file.sha256),
                ))
            }
        })?;
    }
    Ok(())
}

/// Streams `url` into `target` within `limits`: into `<target>.part` first, synced, then `check`ed
/// (a checksum) and only then renamed into place; on any error nothing is left behind.
pub(crate) fn fetch(
    url: &str,
    target: &Path,
    limits: DownloadLimits,
    check: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let name = target
        .file_name()
        .map_or_else(|| url.to_string(), |n| n.to_string_lossy().into_owned());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(limits.connect))
        .timeout_recv_response(Some(limits.response))
        .timeout_per_read(Some(limits.idle))
        .timeout_recv_body(Some(limits.total))
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| failed(&name, format!("GET {url}: {e}")))?;
    let length = response.body().content_length();
    if let Some(length) = length.filter(|&l| l > limits.max_bytes) {
        return Err(failed(
            &name,
            format!(
                "{url} announces {length} bytes, more than the {} allowed (DownloadLimits::max_bytes)",
                limits.max_bytes
            ),
        ));
    }
    let bar = progress(&name, length);
    let mut part = target.as_os_str().to_owned();
    part.push(".part");
    let part = std::path::PathBuf::from(part);
    let result = (|| {
        let mut out = std::fs::File::create(&part).map_err(|e| failed(&name, e))?;
        let mut reader = response.body_mut().as_reader();
        let mut buffer = vec![0u8; 1 << 16];
        let mut received = 0u64;
        loop {
            let n = reader
                .read(&mut buffer)
                .map_err(|e| failed(&name, format!("reading {url}: {e}")))?;
            if n == 0 {
                break;
            }
            received += n as u64;
            if received > limits.max_bytes {
                return Err(failed(
                    &name,
                    format!(
                        "{url} sent more than the {} bytes allowed (DownloadLimits::max_bytes)",
                        limits.max_bytes
                    ),
                ));
            }
            out.write_all(&buffer[..n]).map_err(|e| failed(&name, e))?;
            bar.inc(n as u64);
        }
        out.sync_all().map_err(|e| failed(&name, e))?;
        check(&part)?;
        std::fs::rename(&part, target).map_err(|e| failed(&name, e))
    })();
    bar.finish_and_clear();
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

fn progress(name: &str, length: Option<u64>) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(length.unwrap_or(0));
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{name} [{{bar:30}}] {{bytes}}/{{total_bytes}}"
    )) {
        bar.set_style(style.progress_chars("=>."));
    }
    bar
}
