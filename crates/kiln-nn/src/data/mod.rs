//! Data: the IDX reader, in-memory data sets with batching, and the MNIST/Fashion-MNIST loaders.

mod dataset;
pub mod datasets;
mod idx;

pub use dataset::{Dataset, Targets, to_categorical};
pub use idx::{IdxArray, read_idx};
