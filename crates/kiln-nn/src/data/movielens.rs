//! MovieLens ratings (user, movie, stars) for recommenders: GroupLens's `ml-100k` layout (`u.data`,
//! tab-separated `user item rating timestamp`, and `u.item`, `|`-separated with the title second) or
//! plain CSVs with headers (`ratings.csv`: `user_id,item_id,rating[,timestamp]`, `movies.csv`:
//! `item_id,title[,..]`). GroupLens does not allow redistributing the files: [`download_movielens`]
//! fetches <https://files.grouplens.org/datasets/movielens/ml-100k.zip>, checks it against the MD5
//! GroupLens publishes beside it (`ml-100k.zip.md5`) and unpacks the two files the loader reads.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::download::{DownloadLimits, digest_file, failed, fetch};

use rand::SeedableRng;
use rand::seq::SliceRandom;

use super::{Column, Dataset, Targets};
use kiln_device::{Error, Result};

/// Where GroupLens serves MovieLens 100K (`ml-100k.zip` and its `ml-100k.zip.md5`).
pub const GROUPLENS: &str = "https://files.grouplens.org/datasets/movielens";

/// The files of `ml-100k.zip` the loader reads, unpacked by [`download_movielens`].
const UNPACKED: [&str; 2] = ["u.data", "u.item"];

/// MovieLens 100K in `dest/ml-100k` (returned): already there, or downloaded from `base_url`
/// ([`GROUPLENS`]) — `ml-100k.zip` streamed within [`DownloadLimits::default`], checked against the
/// MD5 in `ml-100k.zip.md5` (GroupLens's published checksum), then `u.data` and `u.item` unpacked
/// (each written whole before it is renamed into place; the archive is deleted). A checksum that does
/// not match is an error and nothing is kept.
pub fn download_movielens(base_url: &str, dest: &Path) -> Result<PathBuf> {
    let dir = dest.join("ml-100k");
    if UNPACKED.iter().all(|f| dir.join(f).exists()) {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir).map_err(|e| failed(&dir.display().to_string(), e))?;
    let base = base_url.trim_end_matches('/');
    // The checksum file: "<32 hex digits>" or "MD5 (ml-100k.zip) = <32 hex digits>".
    let md5_path = dir.join("ml-100k.zip.md5");
    fetch(
        &format!("{base}/ml-100k.zip.md5"),
        &md5_path,
        DownloadLimits {
            max_bytes: 4096,
            ..DownloadLimits::default()
        },
        |_| Ok(()),
    )?;
    let published = std::fs::read_to_string(&md5_path).map_err(|e| failed("ml-100k.zip.md5", e))?;
    let _ = std::fs::remove_file(&md5_path);
    let expected = published
        .split(|c: char| !c.is_ascii_hexdigit())
        .find(|word| word.len() == 32)
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| failed("ml-100k.zip.md5", format!("no MD5 in {published:?}")))?;
    let zip_path = dir.join("ml-100k.zip");
    fetch(
        &format!("{base}/ml-100k.zip"),
        &zip_path,
        DownloadLimits::default(),
        |part| {
            let got = digest_file::<md5::Md5>(part)?;
            if got == expected {
                Ok(())
            } else {
                Err(failed(
                    "ml-100k.zip",
                    format!("MD5 mismatch: GroupLens publishes {expected}, got {got}"),
                ))
            }
        },
    )?;
    let unpacked = unpack(&zip_path, &dir);
    let _ = std::fs::remove_file(&zip_path);
    unpacked?;
    Ok(dir)
}

/// Writes `ml-100k/u.data` and `ml-100k/u.item` of the archive into `dir`.
fn unpack(zip_path: &Path, dir: &Path) -> Result<()> {
    let file = std::fs::File::open(zip_path).map_err(|e| failed("ml-100k.zip", e))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| failed("ml-100k.zip", e))?;
    for name in UNPACKED {
        let mut entry = archive
            .by_name(&format!("ml-100k/{name}"))
            .map_err(|e| failed("ml-100k.zip", format!("ml-100k/{name}: {e}")))?;
        // ml-100k's files are a few MB; a larger entry is not MovieLens 100K.
        if entry.size() > 64 << 20 {
            return Err(failed(
                "ml-100k.zip",
                format!("ml-100k/{name} unpacks to {} bytes", entry.size()),
            ));
        }
        let mut bytes = Vec::new();
        entry
            .by_ref()
            .take(64 << 20)
            .read_to_end(&mut bytes)
            .map_err(|e| failed("ml-100k.zip", format!("ml-100k/{name}: {e}")))?;
        let target = dir.join(name);
        let part = dir.join(format!("{name}.part"));
        std::fs::write(&part, &bytes)
            .and_then(|()| std::fs::rename(&part, &target))
            .map_err(|e| failed(name, e))?;
    }
    Ok(())
}

/// One rating, with 0-based user and movie ids.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rating {
    /// The user (0-based).
    pub user: u32,
    /// The movie (0-based).
    pub item: u32,
    /// The stars given.
    pub rating: f32,
}

/// Ratings with the titles of the movies.
#[derive(Debug, Clone)]
pub struct MovieLens {
    /// Every rating.
    pub ratings: Vec<Rating>,
    /// Title of movie `i` at index `i` (empty where the movie file has none).
    pub titles: Vec<String>,
    /// Number of users (largest user id + 1).
    pub users: usize,
    /// Number of movies (largest movie id + 1, or the titles' count when larger).
    pub items: usize,
}

fn bad(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::InvalidData {
        op: "movielens",
        message: format!("{}: {message}", path.display()),
    }
}

/// Reads `path` as records split by `delimiter`, with or without a header row.
fn records(path: &Path, delimiter: u8, header: bool) -> Result<Vec<csv::ByteRecord>> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(header)
        .flexible(true)
        .from_path(path)
        .map_err(|e| bad(path, e))?;
    reader
        .byte_records()
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(path, e))
}

/// Field `i` of a record parsed as `T`, or an error naming the file, row and field.
fn field<T: std::str::FromStr>(
    path: &Path,
    row: usize,
    record: &csv::ByteRecord,
    i: usize,
) -> Result<T> {
    let raw = record
        .get(i)
        .ok_or_else(|| bad(path, format!("row {row} has no field {i}")))?;
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| {
            bad(
                path,
                format!(
                    "row {row}, field {i}: {:?} is not a number",
                    String::from_utf8_lossy(raw)
                ),
            )
        })
}

/// Ids above this are refused: the tables are indexed by id (MovieLens's largest is below 200,000).
const MAX_ID: u32 = 10_000_000;

/// A 1-based id as 0-based.
fn id(path: &Path, row: usize, record: &csv::ByteRecord, i: usize) -> Result<u32> {
    let value: u32 = field(path, row, record, i)?;
    if value == 0 || value > MAX_ID {
        return Err(bad(
            path,
            format!("row {row}: id {value} is outside 1..={MAX_ID} (ids count from 1)"),
        ));
    }
    Ok(value - 1)
}

/// MovieLens from `dir`: `u.data` + `u.item` (GroupLens) or `ratings.csv` + `movies.csv`.
pub fn movielens(dir: &Path) -> Result<MovieLens> {
    let (ratings_path, titles_path, delimiter, header) = if dir.join("u.data").exists() {
        (dir.join("u.data"), dir.join("u.item"), b'\t', false)
    } else if dir.join("ratings.csv").exists() {
        (dir.join("ratings.csv"), dir.join("movies.csv"), b',', true)
    } else {
        return Err(bad(
            dir,
            "neither u.data (GroupLens's ml-100k) nor ratings.csv is here; download_movielens \
             fetches and checks https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        ));
    };
    let mut ratings = Vec::new();
    for (i, record) in records(&ratings_path, delimiter, header)?
        .iter()
        .enumerate()
    {
        let row = i + 1 + usize::from(header);
        let rating = Rating {
            user: id(&ratings_path, row, record, 0)?,
            item: id(&ratings_path, row, record, 1)?,
            rating: field(&ratings_path, row, record, 2)?,
        };
        if !rating.rating.is_finite() {
            return Err(bad(
                &ratings_path,
                format!("row {row}: rating {}", rating.rating),
            ));
        }
        ratings.push(rating);
    }
    if ratings.is_empty() {
        return Err(bad(&ratings_path, "no ratings"));
    }
    let mut titles: Vec<String> = Vec::new();
    if titles_path.exists() {
        let titles_delimiter = if header { b',' } else { b'|' };
        for (i, record) in records(&titles_path, titles_delimiter, header)?
            .iter()
            .enumerate()
        {
            let row = i + 1 + usize::from(header);
            let item = id(&titles_path, row, record, 0)? as usize;
            // u.item is Latin-1: decode lossily rather than refuse a title
            let title = record
                .get(1)
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned();
            if item >= titles.len() {
                titles.resize(item + 1, String::new());
            }
            titles[item] = title;
        }
    }
    let users = ratings
        .iter()
        .map(|r| r.user as usize + 1)
        .max()
        .unwrap_or(0);
    let items = ratings
        .iter()
        .map(|r| r.item as usize + 1)
        .max()
        .unwrap_or(0)
        .max(titles.len());
    titles.resize(items, String::new());
    Ok(MovieLens {
        ratings,
        titles,
        users,
        items,
    })
}

impl MovieLens {
    /// The ratings shuffled from `seed` and split: `(train, test)` with `test_fraction` of them in
    /// the test part.
    pub fn split(&self, test_fraction: f32, seed: u64) -> (Vec<Rating>, Vec<Rating>) {
        let mut shuffled = self.ratings.clone();
        shuffled.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        let test = ((shuffled.len() as f32) * test_fraction.clamp(0.0, 1.0)) as usize;
        let train = shuffled.split_off(test);
        (train, shuffled)
    }

    /// The mean rating of `ratings`.
    pub fn mean(ratings: &[Rating]) -> f32 {
        ratings.iter().map(|r| r.rating).sum::<f32>() / ratings.len().max(1) as f32
    }

    /// A two-input data set (`"user"` and `"item"` ids, one each per sample) with the ratings minus
    /// `center` as targets.
    pub fn dataset(ratings: &[Rating], center: f32) -> Result<Dataset> {
        let users = ratings.iter().map(|r| r.user).collect();
        let items = ratings.iter().map(|r| r.item).collect();
        Dataset::from_inputs(
            vec![
                ("user", Column::ids(users, [1])),
                ("item", Column::ids(items, [1])),
            ],
            Targets::Values {
                values: ratings.iter().map(|r| r.rating - center).collect(),
                width: 1,
            },
        )
    }
}
