//! MNIST and Fashion-MNIST. The files are looked for, in order: an explicit folder or `KILN_DATA`,
//! the user cache (`~/.cache/kiln/<name>`), Debian's packages (`/usr/share/datasets/<name>`), a
//! download from the standard mirrors into the user cache (each file checked against its published
//! SHA-256, with timeouts and a size cap; set `KILN_OFFLINE=1` to skip it, `KILN_MIRROR=<url>` to try
//! another mirror first), and finally the 10,000-digit sample shipped in the repository
//! (`data/mnist-sample`, or `KILN_DATA/mnist-sample`; MNIST only). Cached files are checked against
//! their published SHA-256 before use (a corrupt one is deleted and fetched again), and a folder
//! whose files fail to load is skipped for the next source. A line on stderr says which was used.

use std::path::{Path, PathBuf};

use kiln_device::{Error, Result};

use super::download::hash_file;
use super::{Dataset, RemoteFile, Targets, download_verified, read_idx};

/// Which data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Handwritten digits.
    Mnist,
    /// Zalando's clothing images.
    FashionMnist,
}

impl Which {
    fn folder(self) -> &'static str {
        match self {
            Which::Mnist => "mnist",
            Which::FashionMnist => "fashion-mnist",
        }
    }

    /// The mirrors that serve the four standard files, most reliable first.
    pub fn mirrors(self) -> &'static [&'static str] {
        match self {
            Which::Mnist => &[
                "https://storage.googleapis.com/cvdf-datasets/mnist",
                "https://ossci-datasets.s3.amazonaws.com/mnist",
            ],
            Which::FashionMnist => &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"],
        }
    }

    /// The four standard files with the SHA-256 their publishers give (the same sums appear in
    /// TensorFlow Datasets, torchvision-based projects and the Fashion-MNIST README).
    pub fn files(self) -> [RemoteFile<'static>; 4] {
        let sums = match self {
            Which::Mnist => [
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            ],
            Which::FashionMnist => [
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            ],
        };
        std::array::from_fn(|i| RemoteFile {
            name: FILE_NAMES[i],
            sha256: sums[i],
        })
    }
}

/// The standard file names as the mirrors serve them: train images, train labels, test images, test
/// labels.
const FILE_NAMES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

/// A train and a test set of 28×28 images scaled to [0, 1], shaped `[1, 28, 28]`, with class labels.
pub struct Splits {
    /// Training samples.
    pub train: Dataset,
    /// Test samples.
    pub test: Dataset,
    /// Where the files came from.
    pub source: String,
}

fn load_pair(images: &Path, labels: &Path) -> Result<Dataset> {
    let x = read_idx(images, 3)?;
    let y = read_idx(labels, 1)?;
    if x.dims[0] != y.dims[0] {
        return Err(Error::InvalidData {
            op: "datasets",
            message: format!(
                "{} has {} images but {} has {} labels",
                images.display(),
                x.dims[0],
                labels.display(),
                y.dims[0]
            ),
        });
    }
    let features = x.data.iter().map(|&b| f32::from(b) / 255.0).collect();
    Dataset::new(
        features,
        vec![1, x.dims[1], x.dims[2]],
        Targets::Classes {
            labels: y.data.iter().map(|&b| u32::from(b)).collect(),
            classes: 10,
        },
    )
}

/// The standard four files in `dir` (gzip or raw), if present.
fn standard_files(dir: &Path) -> Option<[PathBuf; 4]> {
    let find = |gz: &str| {
        [gz, gz.trim_end_matches(".gz")]
            .into_iter()
            .map(|f| dir.join(f))
            .find(|p| p.exists())
    };
    Some([
        find(FILE_NAMES[0])?,
        find(FILE_NAMES[1])?,
        find(FILE_NAMES[2])?,
        find(FILE_NAMES[3])?,
    ])
}

/// The shipped sample: `KILN_DATA/mnist-sample` when it is there (binaries run away from the source
/// tree), else the repository's `data/mnist-sample`.
fn sample_dir() -> PathBuf {
    std::env::var_os("KILN_DATA")
        .map(|data| PathBuf::from(data).join("mnist-sample"))
        .filter(|dir| dir.join("images-idx3-ubyte.gz").exists())
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist-sample"))
}

/// Reads the four standard files of `dir`, if it has them.
fn load_dir(which: Which, dir: &Path) -> Result<Option<Splits>> {
    let Some([xtr, ytr, xte, yte]) = standard_files(dir) else {
        return Ok(None);
    };
    let splits = Splits {
        train: load_pair(&xtr, &ytr)?,
        test: load_pair(&xte, &yte)?,
        source: dir.display().to_string(),
    };
    eprintln!("kiln: {} from {}", which.folder(), splits.source);
    Ok(Some(splits))
}

/// Fetches the four standard files of `which` from `mirror` into `dest`, each verified against its
/// published SHA-256 (see [`Which::files`]); files already there with the right hash are kept.
pub fn download(which: Which, mirror: &str, dest: &Path) -> Result<()> {
    download_verified(mirror, &which.files(), dest)
}

/// Loads `which`, from `dir` if given, else from the first location that has it (module docs).
pub fn load(which: Which, dir: Option<&Path>) -> Result<Splits> {
    if let Some(dir) = dir {
        return load_dir(which, dir)?.ok_or_else(|| Error::InvalidData {
            op: "datasets",
            message: format!(
                "{} has no {} files (expected {FILE_NAMES:?}, gzipped or not)",
                dir.display(),
                which.folder()
            ),
        });
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(env) = std::env::var_os("KILN_DATA") {
        let env = PathBuf::from(env);
        candidates.push(env.join(which.folder()));
        candidates.push(env);
    }
    let cache = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache/kiln").join(which.folder()));
    candidates.extend(cache.clone());
    candidates.push(Path::new("/usr/share/datasets").join(which.folder()));
    let offline = std::env::var_os("KILN_OFFLINE").is_some_and(|v| v != "0");
    let mirrors: Vec<String> = if offline {
        Vec::new()
    } else {
        std::env::var("KILN_MIRROR")
            .ok()
            .into_iter()
            .chain(which.mirrors().iter().map(|m| m.to_string()))
            .collect()
    };
    find(which, &candidates, cache.as_deref(), &mirrors)
}

/// The first of: a candidate folder that loads (the cache's files checked against their published
/// SHA-256 first, corrupt ones deleted; a folder that fails to load is skipped with a note), a
/// download from `mirrors` into `cache`, the shipped sample (MNIST).
fn find(
    which: Which,
    candidates: &[PathBuf],
    cache: Option<&Path>,
    mirrors: &[String],
) -> Result<Splits> {
    for dir in candidates {
        if Some(dir.as_path()) == cache {
            discard_corrupt(which, dir);
        }
        match load_dir(which, dir) {
            Ok(Some(splits)) => return Ok(splits),
            Ok(None) => {}
            Err(e) => eprintln!("kiln: skipping {}: {e}", dir.display()),
        }
    }
    if let Some(cache) = cache {
        for mirror in mirrors {
            eprintln!("kiln: downloading {} from {mirror}", which.folder());
            match download(which, mirror, cache).and_then(|()| load_dir(which, cache)) {
                Ok(Some(splits)) => return Ok(splits),
                Ok(None) => {}
                Err(e) => {
                    eprintln!("kiln: download failed: {e}");
                    // Leave no empty cache folder behind (remove_dir only removes an empty one).
                    let _ = std::fs::remove_dir(cache);
                }
            }
        }
    }
    if which == Which::Mnist {
        return sample();
    }
    Err(Error::InvalidData {
        op: "datasets",
        message: format!(
            "{} not found in {candidates:?} and not downloadable; install Debian's dataset-{} \
             package, or pass the folder that has the four IDX files",
            which.folder(),
            which.folder()
        ),
    })
}

/// Deletes the files in kiln's download cache `dir` whose SHA-256 is not the published one (a
/// download from an older kiln, a disk error, an edit), so they are fetched again.
fn discard_corrupt(which: Which, dir: &Path) {
    for file in which.files() {
        let path = dir.join(file.name);
        if path.exists() && hash_file(&path).ok().as_deref() != Some(file.sha256) {
            eprintln!(
                "kiln: {} does not have its published SHA-256; deleting it to fetch it again",
                path.display()
            );
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// The 10,000 real MNIST digits shipped in the repository, split 8,000 / 2,000.
pub fn sample() -> Result<Splits> {
    let dir = sample_dir();
    let all = load_pair(
        &dir.join("images-idx3-ubyte.gz"),
        &dir.join("labels-idx1-ubyte.gz"),
    )?;
    let (train, test) = all.split_at(8_000);
    eprintln!(
        "kiln: mnist sample (10,000 digits shipped in the repository) from {}",
        dir.display()
    );
    Ok(Splits {
        train,
        test,
        source: dir.display().to_string(),
    })
}

/// MNIST (see the module docs for where it is looked for).
pub fn mnist(dir: Option<&Path>) -> Result<Splits> {
    load(Which::Mnist, dir)
}

/// Fashion-MNIST (see the module docs for where it is looked for).
pub fn fashion_mnist(dir: Option<&Path>) -> Result<Splits> {
    load(Which::FashionMnist, dir)
}

/// The Breast Cancer Wisconsin data set in scikit-learn's CSV layout (a header line
/// `samples,features,names..`, then one row of features and a 0/1 label per sample): 30 features per
/// sample, target 1 = benign. Read from `path`, else from the copy shipped in `data/breast-cancer`.
pub fn breast_cancer(path: Option<&Path>) -> Result<Dataset> {
    let default =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/breast-cancer/breast_cancer.csv");
    let path = path.map_or(default, Path::to_path_buf);
    let bad = |message: String| Error::InvalidData {
        op: "breast_cancer",
        message: format!("{}: {message}", path.display()),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| bad("empty file".into()))?
        .split(',')
        .collect();
    let count = |i: usize| {
        header
            .get(i)
            .and_then(|v| v.trim().parse::<usize>().ok())
            .ok_or_else(|| bad("bad header".into()))
    };
    let (samples, features) = (count(0)?, count(1)?);
    // Sized by what the file holds, never by what its header claims (a corrupt one may say 10^14).
    let rows = text.lines().count().saturating_sub(1);
    let (mut values, mut targets) = (
        Vec::with_capacity(rows.min(samples).saturating_mul(features.min(1 << 16))),
        Vec::with_capacity(rows.min(samples)),
    );
    for (row, line) in lines.filter(|l| !l.trim().is_empty()).enumerate() {
        let fields: Vec<f32> = line
            .split(',')
            .map(|f| f.trim().parse::<f32>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| bad(format!("row {}: {e}", row + 2)))?;
        if fields.len() != features + 1 {
            return Err(bad(format!(
                "row {} has {} fields, expected {}",
                row + 2,
                fields.len(),
                features + 1
            )));
        }
        values.extend_from_slice(&fields[..features]);
        targets.push(fields[features]);
    }
    if targets.len() != samples {
        return Err(bad(format!(
            "{} rows, but the header says {samples}",
            targets.len()
        )));
    }
    Dataset::new(
        values,
        vec![features],
        Targets::Values {
            values: targets,
            width: 1,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kiln-datasets-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A folder holding the four standard names, filled with the sample's (valid IDX, but not the
    /// published) files, or with `broken` bytes for the training images.
    fn fake_copy(dir: &Path, broken: Option<&[u8]>) {
        let sample = sample_dir();
        for (name, source) in FILE_NAMES.iter().zip([
            "images-idx3-ubyte.gz",
            "labels-idx1-ubyte.gz",
            "images-idx3-ubyte.gz",
            "labels-idx1-ubyte.gz",
        ]) {
            std::fs::copy(sample.join(source), dir.join(name)).unwrap();
        }
        if let Some(bytes) = broken {
            std::fs::write(dir.join(FILE_NAMES[0]), bytes).unwrap();
        }
    }

    #[test]
    fn a_corrupt_cache_is_deleted_and_a_broken_folder_skipped_then_the_sample_serves() {
        let cache = scratch("cache");
        fake_copy(&cache, None);
        let broken = scratch("broken");
        fake_copy(&broken, Some(&[0, 0, 8, 3, 0, 0]));
        let splits = find(Which::Mnist, &[broken, cache.clone()], Some(&cache), &[]).unwrap();
        assert!(splits.source.contains("mnist-sample"), "{}", splits.source);
        // Every cached file failed its published hash, so none is kept to fail again.
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0);
    }

    #[test]
    fn a_download_that_fails_falls_back_to_the_next_mirror_then_the_sample() {
        let cache = scratch("mirrors");
        let mirrors = [
            "http://127.0.0.1:9/none".to_string(),
            "http://127.0.0.1:9/other".to_string(),
        ];
        let splits = find(Which::Mnist, &[], Some(&cache.join("mnist")), &mirrors).unwrap();
        assert!(splits.source.contains("mnist-sample"), "{}", splits.source);
        assert!(
            find(
                Which::FashionMnist,
                &[],
                Some(&cache.join("fashion")),
                &mirrors
            )
            .is_err()
        );
    }
}
