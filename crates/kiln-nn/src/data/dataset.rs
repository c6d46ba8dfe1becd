//! In-memory data sets and batching: a seeded shuffle, and the next batch gathered on a background
//! thread while the current one trains.

use kiln_autograd::Tensor;
use kiln_device::{Device, Error, Result};
use rand::SeedableRng;
use rand::seq::SliceRandom;

/// What a data set's samples are labelled with.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// One class index per sample, in `[0, classes)`.
    Classes {
        /// The labels.
        labels: Vec<u32>,
        /// Number of classes.
        classes: usize,
    },
    /// `width` f32 values per sample (one-hot vectors, regression targets, 0/1 flags).
    Values {
        /// The values, row-major.
        values: Vec<f32>,
        /// Values per sample.
        width: usize,
    },
}

/// Samples and their targets in host memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Features, row-major, `len() · sample_shape` values.
    pub features: Vec<f32>,
    /// Shape of one sample (`[1, 28, 28]` for MNIST).
    pub sample_shape: Vec<usize>,
    /// The targets.
    pub targets: Targets,
}

/// One batch on the host.
pub(crate) struct HostBatch {
    features: Vec<f32>,
    targets: Targets,
    len: usize,
}

impl Dataset {
    /// A data set, checking that features and targets describe the same number of samples.
    pub fn new(features: Vec<f32>, sample_shape: Vec<usize>, targets: Targets) -> Result<Self> {
        let per = sample_shape.iter().product::<usize>().max(1);
        let n = features.len() / per;
        let target_count = match &targets {
            Targets::Classes { labels, .. } => labels.len(),
            Targets::Values { values, width } => values.len() / (*width).max(1),
        };
        if !features.len().is_multiple_of(per) || n != target_count {
            return Err(Error::invalid(
                "Dataset::new",
                format!(
                    "{} feature values of shape {sample_shape:?} do not match {target_count} targets",
                    features.len()
                ),
            ));
        }
        if let Targets::Classes { labels, classes } = &targets
            && let Some(bad) = labels.iter().find(|&&l| l as usize >= *classes)
        {
            return Err(Error::InvalidData {
                op: "Dataset::new",
                message: format!("label {bad} is outside [0, {classes})"),
            });
        }
        if let Some(i) = features.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidData {
                op: "Dataset::new",
                message: format!("feature value {i} is {}", features[i]),
            });
        }
        Ok(Dataset {
            features,
            sample_shape,
            targets,
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        match &self.targets {
            Targets::Classes { labels, .. } => labels.len(),
            Targets::Values { values, width } => values.len() / (*width).max(1),
        }
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The samples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Result<Dataset> {
        if let Some(bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(Error::invalid(
                "Dataset::select",
                format!("index {bad} is out of range for {} samples", self.len()),
            ));
        }
        Ok(self.subset(indices))
    }

    /// The samples at `indices` (all in range).
    fn subset(&self, indices: &[usize]) -> Dataset {
        let batch = self.gather(indices);
        Dataset {
            features: batch.features,
            sample_shape: self.sample_shape.clone(),
            targets: batch.targets,
        }
    }

    /// Per-feature minimum and maximum (to normalise other sets with the training set's range).
    pub fn feature_range(&self) -> (Vec<f32>, Vec<f32>) {
        let per: usize = self.sample_shape.iter().product();
        let mut lo = vec![f32::INFINITY; per];
        let mut hi = vec![f32::NEG_INFINITY; per];
        for sample in self.features.chunks(per.max(1)) {
            for (j, &v) in sample.iter().enumerate() {
                lo[j] = lo[j].min(v);
                hi[j] = hi[j].max(v);
            }
        }
        (lo, hi)
    }

    /// Scales each feature by `(x - min) / (max - min)` with the given range (constant features → 0).
    pub fn min_max_scaled(&self, (lo, hi): &(Vec<f32>, Vec<f32>)) -> Dataset {
        let per = lo.len().max(1);
        let features = self
            .features
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let (l, h) = (lo[i % per], hi[i % per]);
                if h > l { (v - l) / (h - l) } else { 0.0 }
            })
            .collect();
        Dataset {
            features,
            sample_shape: self.sample_shape.clone(),
            targets: self.targets.clone(),
        }
    }

    /// The first `count` samples and the rest.
    pub fn split_at(&self, count: usize) -> (Dataset, Dataset) {
        let count = count.min(self.len());
        let all: Vec<usize> = (0..self.len()).collect();
        (self.subset(&all[..count]), self.subset(&all[count..]))
    }

    pub(crate) fn gather(&self, indices: &[usize]) -> HostBatch {
        let per: usize = self.sample_shape.iter().product();
        let mut features = Vec::with_capacity(indices.len() * per);
        for &i in indices {
            features.extend_from_slice(&self.features[i * per..(i + 1) * per]);
        }
        let targets = match &self.targets {
            Targets::Classes { labels, classes } => Targets::Classes {
                labels: indices.iter().map(|&i| labels[i]).collect(),
                classes: *classes,
            },
            Targets::Values { values, width } => Targets::Values {
                values: indices
                    .iter()
                    .flat_map(|&i| values[i * width..(i + 1) * width].iter().copied())
                    .collect(),
                width: *width,
            },
        };
        HostBatch {
            features,
            targets,
            len: indices.len(),
        }
    }

    /// Calls `step` with every batch of `batch_size` (the last may be smaller), in an order shuffled
    /// from `shuffle_seed` (or in order). The next batch is gathered on a background thread.
    pub(crate) fn for_each_batch(
        &self,
        batch_size: usize,
        shuffle_seed: Option<u64>,
        device: &Device,
        mut step: impl FnMut(Tensor, Tensor, usize) -> Result<()>,
    ) -> Result<()> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        if let Some(seed) = shuffle_seed {
            order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        }
        std::thread::scope(|scope| {
            let (sender, receiver) = std::sync::mpsc::sync_channel::<HostBatch>(1);
            let order = &order;
            scope.spawn(move || {
                for chunk in order.chunks(batch_size.max(1)) {
                    if sender.send(self.gather(chunk)).is_err() {
                        break;
                    }
                }
            });
            for batch in receiver {
                let (x, y) = batch.upload(&self.sample_shape, device)?;
                step(x, y, batch.len)?;
            }
            Ok(())
        })
    }
}

impl HostBatch {
    fn upload(&self, sample_shape: &[usize], device: &Device) -> Result<(Tensor, Tensor)> {
        let mut shape = vec![self.len];
        shape.extend_from_slice(sample_shape);
        let x = Tensor::from_slice(&self.features, shape, device)?;
        let y = match &self.targets {
            Targets::Classes { labels, .. } => Tensor::from_slice(labels, [self.len], device)?,
            Targets::Values { values, width } => {
                Tensor::from_slice(values, [self.len, *width], device)?
            }
        };
        Ok((x, y))
    }
}

/// One-hot vectors of `classes` values for class labels (Keras's `to_categorical`).
pub fn to_categorical(labels: &[u32], classes: usize) -> Vec<f32> {
    let mut out = vec![0.0; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        if (l as usize) < classes {
            out[i * classes + l as usize] = 1.0;
        }
    }
    out
}
