//! In-memory data sets and batching: one or several inputs (f32 features or u32 ids) and their
//! targets, a seeded shuffle, the next batch gathered on a background thread while the current one
//! trains (`fit`), and a public batch iterator for custom training loops.

use kiln_autograd::Tensor;
use kiln_device::{DType, Device, Error, Result};
use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::shape::IntoShape;

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
    /// No targets: samples to predict on (`Model::predict_dataset`).
    None,
}

impl Targets {
    /// Number of samples labelled (`None` without targets).
    fn count(&self) -> Option<usize> {
        match self {
            Targets::Classes { labels, .. } => Some(labels.len()),
            Targets::Values { values, width } => Some(values.len() / (*width).max(1)),
            Targets::None => None,
        }
    }

    fn gather(&self, indices: &[usize]) -> Targets {
        match self {
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
            Targets::None => Targets::None,
        }
    }

    fn upload(&self, len: usize, device: &Device) -> Result<Option<Tensor>> {
        Ok(Some(match self {
            Targets::Classes { labels, .. } => Tensor::from_slice(labels, [len], device)?,
            Targets::Values { values, width } => Tensor::from_slice(values, [len, *width], device)?,
            Targets::None => return Ok(None),
        }))
    }

    /// `Err` unless these targets label `samples` samples with finite values and in-range labels;
    /// `what` names them in errors.
    fn check(&self, what: &str, samples: usize) -> Result<()> {
        if let Some(count) = self.count()
            && count != samples
        {
            return Err(Error::invalid(
                "Dataset::new",
                format!("{what} label {count} samples, the inputs {samples}"),
            ));
        }
        match self {
            Targets::Values { values, .. } if values.iter().any(|v| !v.is_finite()) => {
                let i = values.iter().position(|v| !v.is_finite()).unwrap_or(0);
                Err(Error::InvalidData {
                    op: "Dataset::new",
                    message: format!(
                        "{what}: target value {i} is {} (NaN or infinite targets would turn the \
                         weights NaN)",
                        values[i]
                    ),
                })
            }
            Targets::Values { values, width }
                if *width == 0 || !values.len().is_multiple_of(*width) =>
            {
                Err(Error::invalid(
                    "Dataset::new",
                    format!(
                        "{what}: {} target values do not split into rows of width {width}",
                        values.len()
                    ),
                ))
            }
            Targets::Classes { labels, classes } => {
                match labels.iter().find(|&&l| l as usize >= *classes) {
                    Some(bad) => Err(Error::InvalidData {
                        op: "Dataset::new",
                        message: format!("{what}: label {bad} is outside [0, {classes})"),
                    }),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

/// The values of one column.
#[derive(Debug, Clone, PartialEq)]
enum Values {
    F32(Vec<f32>),
    U32(Vec<u32>),
}

/// One input of a data set: f32 features or u32 ids (ids are never stored as f32), row-major, with
/// the shape of one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    values: Values,
    sample_shape: Vec<usize>,
}

impl Column {
    /// f32 features, `sample_shape` values per sample (`[30]`, `[1, 28, 28]`, `(28, 28)`).
    pub fn features(values: Vec<f32>, sample_shape: impl IntoShape) -> Column {
        Column {
            values: Values::F32(values),
            sample_shape: sample_shape.into_shape(),
        }
    }

    /// Integer ids (for `Embedding` layers), `sample_shape` ids per sample (`[1]` for one id,
    /// `[steps]` for a sequence).
    pub fn ids(values: Vec<u32>, sample_shape: impl IntoShape) -> Column {
        Column {
            values: Values::U32(values),
            sample_shape: sample_shape.into_shape(),
        }
    }

    /// The shape of one sample.
    pub fn sample_shape(&self) -> &[usize] {
        &self.sample_shape
    }

    /// `F32` for features, `U32` for ids.
    pub fn dtype(&self) -> DType {
        match self.values {
            Values::F32(_) => DType::F32,
            Values::U32(_) => DType::U32,
        }
    }

    /// The features, when this column holds f32 values.
    pub fn as_features(&self) -> Option<&[f32]> {
        match &self.values {
            Values::F32(v) => Some(v),
            Values::U32(_) => None,
        }
    }

    /// The ids, when this column holds u32 ids.
    pub fn as_ids(&self) -> Option<&[u32]> {
        match &self.values {
            Values::U32(v) => Some(v),
            Values::F32(_) => None,
        }
    }

    /// Values per sample.
    fn per_sample(&self) -> usize {
        self.sample_shape.iter().product::<usize>().max(1)
    }

    /// Number of stored values.
    fn value_count(&self) -> usize {
        match &self.values {
            Values::F32(v) => v.len(),
            Values::U32(v) => v.len(),
        }
    }

    /// Checks that the column holds `samples` finite samples; `what` names it in errors.
    fn check(&self, what: &str, samples: usize) -> Result<()> {
        let per = self.per_sample();
        let count = self.value_count();
        if !count.is_multiple_of(per) || count / per != samples {
            return Err(Error::invalid(
                "Dataset::new",
                format!(
                    "{what}: {count} values of shape {:?} do not match {samples} targets",
                    self.sample_shape
                ),
            ));
        }
        if let Values::F32(v) = &self.values
            && let Some(i) = v.iter().position(|v| !v.is_finite())
        {
            return Err(Error::InvalidData {
                op: "Dataset::new",
                message: format!("{what}: feature value {i} is {}", v[i]),
            });
        }
        Ok(())
    }

    fn gather(&self, indices: &[usize]) -> Column {
        fn rows<T: Copy>(values: &[T], per: usize, indices: &[usize]) -> Vec<T> {
            let mut out = Vec::with_capacity(indices.len() * per);
            for &i in indices {
                out.extend_from_slice(&values[i * per..(i + 1) * per]);
            }
            out
        }
        let per = self.per_sample();
        let values = match &self.values {
            Values::F32(v) => Values::F32(rows(v, per, indices)),
            Values::U32(v) => Values::U32(rows(v, per, indices)),
        };
        Column {
            values,
            sample_shape: self.sample_shape.clone(),
        }
    }

    /// The column as a `[len, ..sample_shape]` tensor (f32 or u32) on `device`.
    fn upload(&self, len: usize, device: &Device) -> Result<Tensor> {
        let shape: Vec<usize> = std::iter::once(len)
            .chain(self.sample_shape.iter().copied())
            .collect();
        match &self.values {
            Values::F32(v) => Tensor::from_slice(v, shape, device),
            Values::U32(v) => Tensor::from_slice(v, shape, device),
        }
    }
}

/// A named (or positional) input column.
#[derive(Debug, Clone, PartialEq)]
struct Input {
    name: Option<String>,
    column: Column,
}

/// Samples and their targets in host memory: one or several inputs, each f32 features or u32 ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    inputs: Vec<Input>,
    /// One per model output (at least one; `Targets::None` to predict on).
    targets: Vec<Targets>,
    /// One loss weight per sample (Keras's `sample_weight`), when given.
    weights: Option<Vec<f32>>,
}

/// One batch on the host: the chosen columns' rows, their targets and sample weights.
pub(crate) struct HostBatch {
    columns: Vec<Column>,
    targets: Vec<Targets>,
    weights: Option<Vec<f32>>,
    len: usize,
}

/// One batch of `fit` or `evaluate` on the device.
pub(crate) struct DeviceBatch {
    /// The model's inputs.
    pub(crate) inputs: Vec<Tensor>,
    /// The targets of each model output (none when the data set has none).
    pub(crate) targets: Vec<Tensor>,
    /// The samples' loss weights `[len]`, when the data set has them.
    pub(crate) weights: Option<Tensor>,
    /// Samples in the batch.
    pub(crate) len: usize,
}

impl Dataset {
    /// A data set of one f32 input, checking that features and targets describe the same number of
    /// samples, that labels are in range and that no feature is NaN or infinite.
    pub fn new(features: Vec<f32>, sample_shape: impl IntoShape, targets: Targets) -> Result<Self> {
        Dataset::from_columns(vec![Column::features(features, sample_shape)], targets)
    }

    /// A data set of unnamed inputs, given to a model's inputs in order.
    pub fn from_columns(columns: Vec<Column>, targets: Targets) -> Result<Self> {
        let inputs = columns
            .into_iter()
            .map(|column| Input { name: None, column })
            .collect();
        Dataset::checked(inputs, targets)
    }

    /// A data set of named inputs (`("user", Column::ids(users, [1]))`), given to the model inputs of
    /// the same names (`Input::ids([1]).named("user")`).
    pub fn from_inputs(inputs: Vec<(&str, Column)>, targets: Targets) -> Result<Self> {
        let mut named: Vec<Input> = Vec::with_capacity(inputs.len());
        for (name, column) in inputs {
            if name.is_empty() || named.iter().any(|i| i.name.as_deref() == Some(name)) {
                return Err(Error::invalid(
                    "Dataset::from_inputs",
                    format!(
                        "input names must be unique and not empty; got {name:?} twice or empty"
                    ),
                ));
            }
            named.push(Input {
                name: Some(name.to_string()),
                column,
            });
        }
        Dataset::checked(named, targets)
    }

    fn checked(inputs: Vec<Input>, targets: Targets) -> Result<Self> {
        if inputs.is_empty() {
            return Err(Error::invalid(
                "Dataset::new",
                "a data set needs at least one input column",
            ));
        }
        let samples = match targets.count() {
            Some(n) => n,
            None => {
                let first = &inputs[0].column;
                first.value_count() / first.per_sample()
            }
        };
        targets.check("the targets", samples)?;
        for (i, input) in inputs.iter().enumerate() {
            let what = match &input.name {
                Some(name) => format!("input {name:?}"),
                None => format!("input {i}"),
            };
            input.column.check(&what, samples)?;
        }
        Ok(Dataset {
            inputs,
            targets: vec![targets],
            weights: None,
        })
    }

    /// The same inputs with targets for each output of a multi-output model, in the model's output
    /// order (Keras's `fit(x, [y1, y2])`); each must label every sample.
    pub fn with_output_targets(mut self, targets: Vec<Targets>) -> Result<Dataset> {
        let samples = self.len();
        if targets.is_empty() || targets.contains(&Targets::None) {
            return Err(Error::argument(
                "Dataset::with_output_targets",
                "give one set of targets (labels or values) per model output",
            ));
        }
        for (o, t) in targets.iter().enumerate() {
            t.check(&format!("the targets of output {o}"), samples)?;
        }
        self.targets = targets;
        Ok(self)
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        match self.targets[0].count() {
            Some(n) => n,
            None => {
                let first = &self.inputs[0].column;
                first.value_count() / first.per_sample()
            }
        }
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The targets (of the first output, for a data set made for several).
    pub fn targets(&self) -> &Targets {
        &self.targets[0]
    }

    /// The targets of every output (one entry unless made with
    /// [`Dataset::with_output_targets`]).
    pub fn output_targets(&self) -> &[Targets] {
        &self.targets
    }

    /// The shape of one sample of the first input (`[1, 28, 28]` for MNIST).
    pub fn sample_shape(&self) -> &[usize] {
        self.inputs[0].column.sample_shape()
    }

    /// The first input's values when it holds f32 features (`None` for ids).
    pub fn features(&self) -> Option<&[f32]> {
        self.inputs[0].column.as_features()
    }

    /// The input columns in order, with their names (`None` for positional ones).
    pub fn columns(&self) -> impl Iterator<Item = (Option<&str>, &Column)> {
        self.inputs.iter().map(|i| (i.name.as_deref(), &i.column))
    }

    /// The samples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Result<Dataset> {
        if let Some(bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(Error::argument(
                "Dataset::select",
                format!("index {bad} is out of range for {} samples", self.len()),
            ));
        }
        Ok(self.subset(indices))
    }

    /// The samples at `indices` (all in range).
    fn subset(&self, indices: &[usize]) -> Dataset {
        Dataset {
            inputs: self
                .inputs
                .iter()
                .map(|i| Input {
                    name: i.name.clone(),
                    column: i.column.gather(indices),
                })
                .collect(),
            targets: self.targets.iter().map(|t| t.gather(indices)).collect(),
            weights: self
                .weights
                .as_ref()
                .map(|w| indices.iter().map(|&i| w[i]).collect()),
        }
    }

    /// The same data with a loss weight per sample (Keras's `sample_weight`): each sample's loss
    /// counts `weight` times in `fit` and `evaluate` (the mean is still over the batch's samples).
    /// A negative or non-finite weight, or a count that differs from the samples', is an error.
    pub fn with_sample_weights(mut self, weights: Vec<f32>) -> Result<Dataset> {
        if weights.len() != self.len() {
            return Err(Error::invalid(
                "Dataset::with_sample_weights",
                format!("{} weights for {} samples", weights.len(), self.len()),
            ));
        }
        if let Some((i, w)) = weights
            .iter()
            .enumerate()
            .find(|(_, w)| !w.is_finite() || **w < 0.0)
        {
            return Err(Error::argument(
                "Dataset::with_sample_weights",
                format!("weight {w} of sample {i} must be finite and >= 0"),
            ));
        }
        self.weights = Some(weights);
        Ok(self)
    }

    /// The per-sample loss weights, when set.
    pub fn sample_weights(&self) -> Option<&[f32]> {
        self.weights.as_deref()
    }

    /// Per-feature minimum and maximum of the first input (to normalise other sets with the
    /// training set's range); empty when the first input holds ids.
    pub fn feature_range(&self) -> (Vec<f32>, Vec<f32>) {
        let Some(features) = self.features() else {
            return (Vec::new(), Vec::new());
        };
        let per: usize = self.inputs[0].column.per_sample();
        if per == 0 {
            return (Vec::new(), Vec::new());
        }
        let mut lo = vec![f32::INFINITY; per];
        let mut hi = vec![f32::NEG_INFINITY; per];
        for sample in features.chunks(per) {
            for (j, &v) in sample.iter().enumerate() {
                lo[j] = lo[j].min(v);
                hi[j] = hi[j].max(v);
            }
        }
        (lo, hi)
    }

    /// The first input's features scaled by `(x - min) / (max - min)` with the given range
    /// (constant features → 0); ids and other inputs are unchanged.
    pub fn min_max_scaled(&self, (lo, hi): &(Vec<f32>, Vec<f32>)) -> Dataset {
        let mut out = self.clone();
        if let (Some(features), false) = (self.features(), lo.is_empty()) {
            let per = lo.len();
            let scaled = features
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let (l, h) = (lo[i % per], hi[i % per]);
                    if h > l { (v - l) / (h - l) } else { 0.0 }
                })
                .collect();
            out.inputs[0].column.values = Values::F32(scaled);
        }
        out
    }

    /// The first `count` samples and the rest.
    pub fn split_at(&self, count: usize) -> (Dataset, Dataset) {
        let count = count.min(self.len());
        let all: Vec<usize> = (0..self.len()).collect();
        (self.subset(&all[..count]), self.subset(&all[count..]))
    }

    /// The rows `indices` of the input columns `columns` (in that order) and their targets.
    pub(crate) fn gather(&self, columns: &[usize], indices: &[usize]) -> HostBatch {
        HostBatch {
            columns: columns
                .iter()
                .map(|&c| self.inputs[c].column.gather(indices))
                .collect(),
            targets: self.targets.iter().map(|t| t.gather(indices)).collect(),
            weights: self
                .weights
                .as_ref()
                .map(|w| indices.iter().map(|&i| w[i]).collect()),
            len: indices.len(),
        }
    }

    /// Every batch of `batch_size` samples (the last may be smaller), in an order shuffled from
    /// `shuffle_seed` (or in order), as tensors on `device`: for custom training loops.
    pub fn batches(
        &self,
        batch_size: usize,
        shuffle_seed: Option<u64>,
        device: &Device,
    ) -> Result<Batches<'_>> {
        self.batches_of(
            (0..self.inputs.len()).collect(),
            batch_size,
            shuffle_seed,
            device,
        )
    }

    /// [`Dataset::batches`] of the input columns `columns`, in that order.
    pub(crate) fn batches_of(
        &self,
        columns: Vec<usize>,
        batch_size: usize,
        shuffle_seed: Option<u64>,
        device: &Device,
    ) -> Result<Batches<'_>> {
        if batch_size == 0 {
            return Err(Error::argument(
                "batches",
                "the batch size must be at least 1",
            ));
        }
        Ok(Batches {
            data: self,
            order: self.order(shuffle_seed),
            columns,
            batch_size,
            next: 0,
            device: device.clone(),
        })
    }

    /// Sample indices, shuffled from `seed` when given.
    fn order(&self, seed: Option<u64>) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        if let Some(seed) = seed {
            order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        }
        order
    }

    /// Calls `step` with every batch of `batch_size` (the last may be smaller) of the input columns
    /// `columns`, in an order shuffled from `shuffle_seed` (or in order). The next batch is gathered
    /// on a background thread.
    pub(crate) fn for_each_batch(
        &self,
        columns: &[usize],
        batch_size: usize,
        shuffle_seed: Option<u64>,
        device: &Device,
        mut step: impl FnMut(DeviceBatch) -> Result<()>,
    ) -> Result<()> {
        self.for_each_shard(
            columns,
            batch_size,
            shuffle_seed,
            device,
            (0, 1),
            |batch, _| match batch {
                Some(batch) => step(batch),
                None => Ok(()),
            },
        )
    }

    /// [`Dataset::for_each_batch`] for rank `rank` of `ranks` in data-parallel training: the
    /// shuffled order is cut into global batches of `batch_size × ranks` and `step` gets this
    /// rank's part of each (`None` when it has no samples of the last one) and the global batch's
    /// size.
    pub(crate) fn for_each_shard(
        &self,
        columns: &[usize],
        batch_size: usize,
        shuffle_seed: Option<u64>,
        device: &Device,
        (rank, ranks): (usize, usize),
        mut step: impl FnMut(Option<DeviceBatch>, usize) -> Result<()>,
    ) -> Result<()> {
        let order = self.order(shuffle_seed);
        let parts = crate::distributed::shards(&order, batch_size.max(1), rank, ranks.max(1));
        std::thread::scope(|scope| {
            let (sender, receiver) = std::sync::mpsc::sync_channel::<(HostBatch, usize)>(1);
            let parts = &parts;
            scope.spawn(move || {
                for &(indices, global) in parts {
                    if sender
                        .send((self.gather(columns, indices), global))
                        .is_err()
                    {
                        break;
                    }
                }
            });
            for (batch, global) in receiver {
                if batch.len == 0 {
                    step(None, global)?;
                    continue;
                }
                let (inputs, targets) = batch.upload(device)?;
                let weights = batch
                    .weights
                    .as_ref()
                    .map(|w| Tensor::from_slice(w, [batch.len], device))
                    .transpose()?;
                step(
                    Some(DeviceBatch {
                        inputs,
                        targets,
                        weights,
                        len: batch.len,
                    }),
                    global,
                )?;
            }
            Ok(())
        })
    }

    /// The names of the input columns (`None` for positional ones).
    pub(crate) fn input_names(&self) -> Vec<Option<&str>> {
        self.inputs.iter().map(|i| i.name.as_deref()).collect()
    }

    /// The column at `index`.
    pub(crate) fn column(&self, index: usize) -> &Column {
        &self.inputs[index].column
    }
}

impl HostBatch {
    fn upload(&self, device: &Device) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
        let inputs = self
            .columns
            .iter()
            .map(|c| c.upload(self.len, device))
            .collect::<Result<_>>()?;
        let mut targets = Vec::with_capacity(self.targets.len());
        for t in &self.targets {
            targets.extend(t.upload(self.len, device)?);
        }
        Ok((inputs, targets))
    }
}

/// One batch on a device: the input tensors (`[len, ..sample_shape]`, f32 or u32) and the targets
/// (`[len]` u32 class labels or `[len, width]` f32 values).
#[derive(Debug, Clone)]
pub struct Batch {
    /// The inputs, in the order of the data set's columns (or of the model's inputs, from
    /// `Model::batches`).
    pub inputs: Vec<Tensor>,
    /// Samples in the batch.
    pub len: usize,
    targets: Vec<Tensor>,
    names: Vec<Option<String>>,
}

impl Batch {
    /// The targets (of the first output; an error for a data set made with `Targets::None`).
    pub fn targets(&self) -> Result<&Tensor> {
        self.targets.first().ok_or_else(|| {
            Error::invalid(
                "Batch::targets",
                "the data set has no targets (Targets::None)",
            )
        })
    }

    /// The targets of every output, in the model's output order (empty without targets).
    pub fn output_targets(&self) -> &[Tensor] {
        &self.targets
    }

    /// The input of the column named `name`.
    pub fn input(&self, name: &str) -> Option<&Tensor> {
        self.names
            .iter()
            .position(|n| n.as_deref() == Some(name))
            .map(|i| &self.inputs[i])
    }
}

/// An iterator over a data set's batches (see [`Dataset::batches`]); each item is a [`Batch`] on
/// the device, or the error that uploading it gave.
pub struct Batches<'a> {
    data: &'a Dataset,
    order: Vec<usize>,
    columns: Vec<usize>,
    batch_size: usize,
    next: usize,
    device: Device,
}

impl Iterator for Batches<'_> {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.next >= self.order.len() {
            return None;
        }
        let end = (self.next + self.batch_size).min(self.order.len());
        let host = self.data.gather(&self.columns, &self.order[self.next..end]);
        self.next = end;
        let names = self
            .columns
            .iter()
            .map(|&c| self.data.inputs[c].name.clone())
            .collect();
        Some(host.upload(&self.device).map(|(inputs, targets)| Batch {
            inputs,
            targets,
            len: host.len,
            names,
        }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.order.len() - self.next).div_ceil(self.batch_size);
        (left, Some(left))
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
