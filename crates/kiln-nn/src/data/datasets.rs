//! MNIST and Fashion-MNIST. The files are looked for, in order: an explicit folder or `KILN_DATA`,
//! the user cache (`~/.cache/kiln/<name>`), Debian's packages (`/usr/share/datasets/<name>`), and
//! finally the 10,000-digit sample shipped in the repository (`data/mnist-sample`, MNIST only). A line
//! on stderr says which was used.
//!
//! Fetching the full sets from the standard mirrors is not automatic yet: [`super::download_verified`]
//! does the verified download, but the SHA-256 of the mirrors' files could not be checked on the
//! machines kiln is built on (no route to the mirrors), and kiln does not ship checksums it has not
//! verified. Download them with your own checksums into `~/.cache/kiln/<name>`, or install Debian's
//! `dataset-fashion-mnist`.

use std::path::{Path, PathBuf};

use kiln_device::{Error, Result};

use super::{Dataset, Targets, read_idx};

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
}

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
    let names = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ];
    let find = |name: &str| {
        [format!("{name}.gz"), name.to_string()]
            .into_iter()
            .map(|f| dir.join(f))
            .find(|p| p.exists())
    };
    Some([
        find(names[0])?,
        find(names[1])?,
        find(names[2])?,
        find(names[3])?,
    ])
}

/// The repository's sample folder (`data/mnist-sample`), next to the workspace root.
fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist-sample")
}

/// Loads `which`, from `dir` if given, else from the first location that has it.
pub fn load(which: Which, dir: Option<&Path>) -> Result<Splits> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = dir {
        candidates.push(dir.to_path_buf());
    } else {
        if let Some(env) = std::env::var_os("KILN_DATA") {
            let env = PathBuf::from(env);
            candidates.push(env.join(which.folder()));
            candidates.push(env);
        }
        if let Some(home) = std::env::var_os("HOME") {
            candidates.push(PathBuf::from(home).join(".cache/kiln").join(which.folder()));
        }
        candidates.push(Path::new("/usr/share/datasets").join(which.folder()));
    }
    for dir in &candidates {
        if let Some([xtr, ytr, xte, yte]) = standard_files(dir) {
            let splits = Splits {
                train: load_pair(&xtr, &ytr)?,
                test: load_pair(&xte, &yte)?,
                source: dir.display().to_string(),
            };
            eprintln!("kiln: {} from {}", which.folder(), splits.source);
            return Ok(splits);
        }
    }
    if dir.is_none() && which == Which::Mnist {
        return sample();
    }
    Err(Error::InvalidData {
        op: "datasets",
        message: format!(
            "{} not found in {candidates:?}; install Debian's dataset-{} package or pass the folder",
            which.folder(),
            which.folder()
        ),
    })
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
    let (mut values, mut targets) = (
        Vec::with_capacity(samples * features),
        Vec::with_capacity(samples),
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
