//! Data: the IDX reader, in-memory data sets with batching, verified downloads, and the
//! MNIST/Fashion-MNIST loaders.

mod dataset;
pub mod datasets;
mod download;
mod idx;
pub mod movielens;
pub mod tabular;
pub mod text;

pub use dataset::{Batch, Batches, Column, Dataset, Targets, to_categorical};
pub use download::{DownloadLimits, RemoteFile, download_verified, download_verified_with};
pub use idx::{IdxArray, read_idx};
