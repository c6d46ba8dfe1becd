//! Training and evaluation: `compile`, `train_on_batch`, `fit` (with callbacks) and `evaluate`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use kiln_autograd::{Gradients, Tensor, TensorId, Var, no_grad};
use kiln_device::{BinaryOp, DType, Device, Error, ErrorKind, RawTensor, Result};

use super::fit_config::{Evaluation, FitConfig, History};
use super::progress::{epoch_loss, progress_bar, progress_line};
use super::run::ModelInputs;
use super::{Compiled, Model};
use crate::callbacks::{Callback, Control, EpochLogs};
use crate::checkpoint::{checkpoint_exists, resolve_checkpoint};
use crate::data::{Dataset, Targets};
use crate::distributed::Distributed;
use crate::layers::Activation;
use crate::loss::{Loss, Losses};
use crate::metrics::{Metric, MetricTotals};
use crate::optim::Optimizer;

/// Targets as the loss takes them: for every loss but the categorical cross-entropies (which read
/// class labels), 0/1 labels (u32) become f32 values and `[batch]` targets become `[batch, 1]` for a
/// model with one output value, as in Keras.
fn adapt_targets(loss: Loss, scores: &Tensor, y: &Tensor) -> Result<Tensor> {
    if matches!(
        loss,
        Loss::SparseCategoricalCrossentropy
            | Loss::CategoricalCrossentropy
            | Loss::SparseCategoricalCrossentropySmoothed(_)
    ) {
        return Ok(y.clone());
    }
    let y = if y.dtype() == DType::F32 {
        y.clone()
    } else {
        Tensor::from_raw(y.raw().cast(DType::F32)?)
    };
    match (y.dims(), scores.dims()) {
        (&[n], &[m, 1]) if n == m => y.reshape([n, 1]),
        _ => Ok(y),
    }
}

/// Each sample's weight from `class_weight` (one per class, Keras's `class_weight`) and its targets
/// as the loss takes them: class labels pick their class's weight, 0/1 values pick class 0's or 1's,
/// one-hot rows their class's.
fn class_weights(class_weight: &[f32], y: &Tensor) -> Result<Tensor> {
    let n = y.dims().first().copied().unwrap_or(0);
    let weights = Tensor::from_slice(class_weight, [class_weight.len()], y.device())?;
    let wrong = |what: String| {
        Err(Error::argument(
            "fit",
            format!("class_weight has {} weights, {what}", class_weight.len()),
        ))
    };
    if y.dtype() == DType::U32 {
        return y.one_hot(class_weight.len())?.mul(&weights)?.sum(1, false);
    }
    match y.dims() {
        [_, 1] if class_weight.len() == 2 => {
            // w0 + (w1 - w0) · y
            y.reshape([n])?
                .mul_scalar(class_weight[1] - class_weight[0])?
                .add_scalar(class_weight[0])
        }
        [_, 1] => wrong("but 0/1 targets need two (class 0's, class 1's)".to_string()),
        [_, c] if *c == class_weight.len() => y.mul(&weights)?.sum(1, false),
        _ => wrong(format!("but the targets are {}", y.shape())),
    }
}

/// `Err` unless `class_weight` has one weight per class of `data` (two for 0/1 targets).
fn check_class_weight(data: &Dataset, class_weight: Option<&[f32]>) -> Result<()> {
    let Some(weights) = class_weight else {
        return Ok(());
    };
    let classes = match data.targets() {
        Targets::Classes { classes, .. } => *classes,
        Targets::Values { width: 1, .. } => 2,
        Targets::Values { width, .. } => *width,
        Targets::None => return Ok(()),
    };
    if weights.len() != classes {
        return Err(Error::argument(
            "fit",
            format!(
                "class_weight has {} weights but the targets have {classes} classes; give one per class",
                weights.len()
            ),
        ));
    }
    if let Some(w) = weights.iter().find(|w| !w.is_finite() || **w < 0.0) {
        return Err(Error::argument(
            "fit",
            format!("class weight {w} must be finite and >= 0"),
        ));
    }
    Ok(())
}

/// The batch's mean loss, weighted per sample when `weights` (`[N]`) are given.
fn batch_loss(loss: Loss, scores: &Tensor, y: &Tensor, weights: Option<&Tensor>) -> Result<Tensor> {
    match weights {
        Some(w) => loss.compute_weighted(scores, y, w),
        None => loss.compute(scores, y),
    }
}

/// `local`, or in a job of several ranks an error on every rank unless all ranks' are `Ok`.
fn all_ready<T>(job: Option<&Distributed>, local: Result<T>) -> Result<T> {
    match job {
        Some(job) => job.all_ready(local),
        None => local,
    }
}

/// A data-parallel step: the job, and this rank's and the global batch's sample counts.
#[derive(Clone, Copy)]
struct StepSync<'a> {
    job: &'a Distributed,
    samples: (usize, usize),
}

/// What [`Model::train_epochs`] trains on and reports.
struct Epochs<'a> {
    train: &'a Dataset,
    validation: &'a Dataset,
    columns: &'a [usize],
    first_epoch: usize,
    output_names: &'a [String],
    metrics: &'a [Metric],
}

/// One output's part of a batch: its mean loss (before its weight), the scores its metrics read,
/// its targets as the loss took them, and the score at which one score means class 1.
struct OutputStep {
    loss: Tensor,
    scores: Tensor,
    targets: Tensor,
    threshold: f32,
}

/// Per-epoch sums for each output: its metrics and its batch losses (kept on the device).
struct OutputTotals {
    metrics: Vec<MetricTotals>,
    losses: Vec<Vec<(RawTensor, usize)>>,
}

impl OutputTotals {
    fn new(outputs: usize, metrics: &[Metric]) -> OutputTotals {
        OutputTotals {
            metrics: (0..outputs).map(|_| MetricTotals::new(metrics)).collect(),
            losses: vec![Vec::new(); outputs],
        }
    }

    /// Adds a batch of `len` samples.
    fn add(&mut self, parts: &[OutputStep], len: usize) -> Result<()> {
        for ((part, metrics), losses) in parts.iter().zip(&mut self.metrics).zip(&mut self.losses) {
            metrics.add(&part.scores, &part.targets, part.threshold)?;
            if parts.len() > 1 {
                losses.push((part.loss.raw().reshape([1])?, len));
            }
        }
        Ok(())
    }

    /// The epoch's [`Evaluation`] with total loss `loss`: the metrics of a one-output model, or
    /// each output's loss and metrics under its name.
    fn finish(self, loss: f32, names: &[String]) -> Result<Evaluation> {
        let mut metrics = Vec::new();
        let mut outputs = Vec::new();
        let several = names.len() > 1;
        for ((totals, losses), name) in self.metrics.into_iter().zip(&self.losses).zip(names) {
            let values = totals.finish()?;
            if several {
                outputs.push((format!("{name}_loss"), epoch_loss(losses, 0, false)?));
                outputs.extend(
                    values
                        .into_iter()
                        .map(|(m, v)| (format!("{name}_{}", m.name()), v)),
                );
            } else {
                metrics = values;
            }
        }
        Ok(Evaluation {
            loss,
            metrics,
            outputs,
        })
    }
}

/// The model's training state at one moment: each parameter's and buffer's value, and the optimizer's
/// state. Tensors are immutable, so this holds handles, not copies.
pub(crate) struct Snapshot {
    values: Vec<(Var, RawTensor)>,
    optimizer: Option<(u32, std::collections::HashMap<TensorId, Vec<RawTensor>>)>,
}

/// Each named variable with its value now (a handle: tensors are immutable, so no copy).
fn current_values(vars: Vec<(String, Var)>) -> Vec<(Var, RawTensor)> {
    vars.into_iter()
        .map(|(_, var)| {
            let value = var.tensor().raw().clone();
            (var, value)
        })
        .collect()
}

impl Model {
    /// A fingerprint of the model's structure: every parameter's and buffer's name and shape, and
    /// which are trained (ranks of a data-parallel job must agree on it).
    fn structure_hash(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for (name, var) in self.state() {
            (name, var.tensor().dims().to_vec(), var.is_frozen()).hash(&mut hasher);
        }
        hasher.finish()
    }

    /// The training state now (see [`Snapshot`]).
    pub(crate) fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot {
            values: current_values(self.state()),
            optimizer: self.compiled.as_ref().map(|c| c.optimizer.state()),
        })
    }

    /// Puts a [`Snapshot`] back: every value and the optimizer's state.
    pub(crate) fn restore(&mut self, snapshot: Snapshot) -> Result<()> {
        for (var, value) in snapshot.values {
            var.set(value)?;
        }
        if let (Some(compiled), Some((steps, state))) = (self.compiled.as_mut(), snapshot.optimizer)
        {
            compiled.optimizer.load_state(steps, state)?;
        }
        Ok(())
    }

    /// The buffers' values now (handles).
    fn buffer_values(&self) -> Vec<(Var, RawTensor)> {
        current_values(self.named_buffers())
    }

    /// Sets the optimizer's step count back to `steps` (its state tensors were held by the step
    /// guard); at 0 it starts afresh, as before its first step.
    fn rewind_optimizer(&mut self, steps: u32) -> Result<()> {
        if let Some(compiled) = self.compiled.as_mut() {
            let state = if steps == 0 {
                Default::default()
            } else {
                compiled.optimizer.state().1
            };
            compiled.optimizer.load_state(steps, state)?;
        }
        Ok(())
    }

    /// Chooses the optimizer, the loss and the metrics, and moves the model to its device.
    ///
    /// `loss` is one [`Loss`], or for a model with several outputs [`Losses`]: one per output and
    /// their weights in the total (a single `Loss` then applies to every output, as in Keras). The
    /// metrics are computed for every output.
    pub fn compile(
        &mut self,
        optimizer: impl Optimizer + 'static,
        loss: impl Into<Losses>,
        metrics: &[Metric],
    ) -> Result<()> {
        let losses = loss.into().resolve(self.graph.outputs.len())?;
        self.compiled = Some(Compiled {
            optimizer: Box::new(optimizer),
            losses,
            metrics: metrics.to_vec(),
            state_device: None,
        });
        self.place()?;
        Ok(())
    }

    /// The current learning rate.
    pub fn learning_rate(&self) -> Result<f32> {
        Ok(self.compiled("learning_rate")?.optimizer.learning_rate())
    }

    /// Changes the learning rate.
    pub fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        self.compiled("set_learning_rate")?;
        if let Some(compiled) = self.compiled.as_mut() {
            compiled.optimizer.set_learning_rate(lr);
        }
        Ok(())
    }

    /// Whether output `o`'s loss absorbs its last activation (softmax + cross-entropy, ...).
    fn fused(&self, o: usize, loss: Loss) -> bool {
        loss.fused_activation() == Some(self.final_activation(o))
    }

    /// Each output's scores for its loss and metrics (before a fused activation), and the
    /// threshold at which a single score means class 1.
    fn scores(
        &self,
        inputs: Vec<Tensor>,
        training: bool,
        losses: &[(Loss, f32)],
    ) -> Result<Vec<(Tensor, f32)>> {
        let fused: Vec<bool> = (losses.iter().enumerate())
            .map(|(o, (loss, _))| self.fused(o, *loss))
            .collect();
        let outputs = self.forward(inputs, training, &fused)?;
        Ok((outputs.into_iter().enumerate())
            .map(|(o, scores)| {
                let linear = fused[o] || self.final_activation(o) == Activation::Linear;
                (scores, if linear { 0.0 } else { 0.5 })
            })
            .collect())
    }

    /// The total loss of a batch (each output's loss times its weight) and each output's part.
    /// `weights` are the samples' loss weights, `class_weight` one weight per class.
    fn batch_losses(
        &self,
        op: &'static str,
        scores: Vec<(Tensor, f32)>,
        targets: &[Tensor],
        weights: Option<&Tensor>,
        class_weight: Option<&[f32]>,
    ) -> Result<(Tensor, Vec<OutputStep>)> {
        let losses = &self.compiled(op)?.losses;
        if targets.len() != scores.len() {
            return Err(Error::argument(
                op,
                format!(
                    "model {:?} has {} outputs ({}) but {} targets were given; give one per output \
                     (Dataset::with_output_targets)",
                    self.name,
                    scores.len(),
                    self.output_names().join(", "),
                    targets.len()
                ),
            ));
        }
        let mut total: Option<Tensor> = None;
        let mut parts = Vec::with_capacity(scores.len());
        for ((&(loss_fn, weight), (scores, threshold)), y) in losses.iter().zip(scores).zip(targets)
        {
            let y = adapt_targets(loss_fn, &scores, y)?;
            let sample_weights = match (class_weight, weights) {
                (Some(cw), Some(w)) => Some(class_weights(cw, &y)?.mul(w)?),
                (Some(cw), None) => Some(class_weights(cw, &y)?),
                (None, w) => w.cloned(),
            };
            let loss = batch_loss(loss_fn, &scores, &y, sample_weights.as_ref())?;
            let weighted = if weight == 1.0 {
                loss.clone()
            } else {
                loss.mul_scalar(weight)?
            };
            total = Some(match total {
                Some(t) => t.add(&weighted)?,
                None => weighted,
            });
            parts.push(OutputStep {
                loss,
                scores,
                targets: y,
                threshold,
            });
        }
        let total = total.ok_or_else(|| Error::usage(op, "the model has no outputs"))?;
        Ok((total, parts))
    }

    /// One optimizer step on a batch (`x`: one tensor, or one per input; `y`: the targets, or one
    /// tensor per output); returns the batch's mean loss (on the device).
    pub fn train_on_batch(&mut self, x: impl ModelInputs, y: impl ModelInputs) -> Result<Tensor> {
        let device = self.place()?;
        let inputs = self.prepare(x.into_tensors(), &device)?;
        let targets = (y.into_tensors().iter())
            .map(|y| super::device::on_device(y, &device))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.train_step(inputs, &targets, None, None, None, None)?.0)
    }

    /// One optimizer step on prepared inputs; returns the total loss and each output's part (see
    /// [`OutputStep`]). `weights` are the samples' loss weights, `class_weight` one weight per
    /// class.
    fn train_step(
        &mut self,
        inputs: Vec<Tensor>,
        targets: &[Tensor],
        weights: Option<&Tensor>,
        class_weight: Option<&[f32]>,
        guarded_step: Option<u32>,
        sync: Option<StepSync<'_>>,
    ) -> Result<(Tensor, Vec<OutputStep>)> {
        let losses = self.compiled("train_on_batch")?.losses.clone();
        let device = self.place()?;
        self.place_optimizer_state(&device)?;
        let scores = self.scores(inputs, true, &losses)?;
        let (loss, mut parts) =
            self.batch_losses("train_on_batch", scores, targets, weights, class_weight)?;
        if let Some(step) = guarded_step {
            // Before the updates it must be able to hold.
            device.guard_loss(loss.raw(), step)?;
        }
        let grads = loss.backward()?;
        let loss = match sync {
            Some(sync) => {
                let local = loss.to_scalar()?;
                let global = self.averaged_step(grads, sync, local)?;
                Tensor::from_slice(&[global], [1], &device)?.reshape([])?
            }
            None => {
                self.optimizer_step(&grads)?;
                loss
            }
        };
        for part in &mut parts {
            part.loss = part.loss.detach();
            part.scores = part.scores.detach();
        }
        Ok((loss.detach(), parts))
    }

    /// One optimizer step with `grads` on the trainable parameters.
    fn optimizer_step(&mut self, grads: &Gradients) -> Result<()> {
        let params = self.trainable_parameters();
        if let Some(compiled) = self.compiled.as_mut() {
            compiled.optimizer.step(&params, grads)?;
        }
        Ok(())
    }

    /// A data-parallel step: `grads` (this rank's, with mean loss `local`) averaged over the ranks,
    /// then [`Model::optimizer_step`]. Returns the batch's mean loss over every rank.
    fn averaged_step(
        &mut self,
        mut grads: Gradients,
        sync: StepSync<'_>,
        local: f32,
    ) -> Result<f32> {
        let params = self.trainable_parameters();
        let loss = sync.job.average(&params, &mut grads, local, sync.samples)?;
        self.optimizer_step(&grads)?;
        Ok(loss)
    }

    /// Refuses data `fit` or `evaluate` cannot use with the compiled losses (or class weights),
    /// before any work.
    fn check_data(&self, op: &'static str, data: &Dataset, class_weight: bool) -> Result<()> {
        let losses = &self.compiled(op)?.losses;
        let targets = data.output_targets();
        if targets.len() != losses.len() {
            return Err(Error::argument(
                op,
                format!(
                    "model {:?} has {} outputs ({}) but the data set has targets for {}; give one \
                     set per output with Dataset::with_output_targets",
                    self.name,
                    losses.len(),
                    self.output_names().join(", "),
                    targets.len()
                ),
            ));
        }
        if class_weight && losses.len() > 1 {
            return Err(Error::usage(
                op,
                "class_weight is for one-output models (as in Keras); give the samples' weights \
                 with Dataset::with_sample_weights instead",
            ));
        }
        for (o, (t, (loss, _))) in targets.iter().zip(losses).enumerate() {
            self.check_targets(op, t, *loss, o)?;
        }
        Ok(())
    }

    /// Refuses targets output `o` cannot be trained on with `loss`.
    fn check_targets(
        &self,
        op: &'static str,
        targets: &Targets,
        loss: Loss,
        o: usize,
    ) -> Result<()> {
        match targets {
            Targets::None => Err(Error::data(
                op,
                "the data set has no targets (Targets::None); give it labels or values".to_string(),
            )),
            Targets::Classes { classes, .. }
                if matches!(
                    loss,
                    Loss::BinaryCrossentropy | Loss::BinaryCrossentropyPosWeight(_)
                ) && *classes > 2 =>
            {
                Err(Error::data(
                    op,
                    format!(
                        "binary cross-entropy takes 0/1 labels, but the data set has {classes} \
                         classes: use Loss::SparseCategoricalCrossentropy with {classes} outputs"
                    ),
                ))
            }
            Targets::Values { values, .. }
                if matches!(
                    loss,
                    Loss::BinaryCrossentropy | Loss::BinaryCrossentropyPosWeight(_)
                ) =>
            {
                match values.iter().find(|v| !(0.0..=1.0).contains(*v)) {
                    None => Ok(()),
                    Some(v) => Err(Error::data(
                        op,
                        format!(
                            "binary cross-entropy takes targets in [0, 1], but the data set holds {v}; \
                             use 0/1 labels or probabilities"
                        ),
                    )),
                }
            }
            // Labels past the model's outputs, found here rather than by a kernel at the epoch's
            // end (where a GPU would report them).
            Targets::Classes { labels, .. }
                if matches!(
                    loss,
                    Loss::SparseCategoricalCrossentropy
                        | Loss::SparseCategoricalCrossentropySmoothed(_)
                ) =>
            {
                let outputs = self.graph.outputs[o].shape().last().copied().unwrap_or(0);
                match labels
                    .iter()
                    .enumerate()
                    .find(|(_, l)| **l as usize >= outputs)
                {
                    None => Ok(()),
                    Some((sample, label)) => Err(Error::data(
                        op,
                        format!(
                            "label {label} of sample {sample} is outside the model's {outputs} \
                             outputs (classes 0..{outputs}); give the last layer one unit per class"
                        ),
                    )),
                }
            }
            _ => Ok(()),
        }
    }

    /// Trains on `data` as Keras's `fit` does, calling `config.callbacks` around each epoch;
    /// returns the per-epoch history.
    pub fn fit(&mut self, data: &Dataset, config: &FitConfig<'_>) -> Result<History> {
        self.fit_with(data, config, &mut [])
    }

    /// [`Model::fit`] with more callbacks, called after those of `config`.
    pub fn fit_with(
        &mut self,
        data: &Dataset,
        config: &FitConfig<'_>,
        callbacks: &mut [&mut dyn Callback],
    ) -> Result<History> {
        // In a job of several ranks, a rank whose own checks fail must not leave the others waiting
        // in a collective: every rank learns whether all are ready before going on.
        let several = config.distributed.filter(|job| job.size() > 1);
        let checked = self
            .check_fit(data, config)
            .and_then(|split| Ok((split, config.callbacks.borrow()?)));
        let ((train, split_off, columns), mut own_callbacks) = all_ready(several, checked)?;
        let metric_list = self.compiled("fit")?.metrics.clone();
        let output_names = self.output_names();
        let mut all_callbacks: Vec<&mut dyn Callback> = own_callbacks
            .iter_mut()
            .map(|c| &mut **c as &mut dyn Callback)
            .chain(callbacks.iter_mut().map(|c| &mut **c as &mut dyn Callback))
            .collect();
        let validation = config.validation_data.unwrap_or(&split_off);
        let started = if config.resume {
            self.resume(config, &mut all_callbacks)
        } else {
            Ok(config.initial_epoch)
        };
        let first_epoch = all_ready(
            several,
            started.and_then(|first| self.place().map(|_| first)),
        )?;
        if let Some(job) = config.distributed {
            job.check_agreement(&[
                ("model (layers and parameter shapes)", self.structure_hash()),
                ("metrics", (metric_list.len() * output_names.len()) as u64),
                ("training samples", train.len() as u64),
                ("validation samples", validation.len() as u64),
                ("batch size", config.batch_size as u64),
                ("epochs", config.epochs as u64),
                ("first epoch", first_epoch as u64),
                ("shuffle seed", config.shuffle.unwrap_or(u64::MAX)),
            ])?;
            let state: Vec<Var> = self.state().into_iter().map(|(_, v)| v).collect();
            if let Err(e) = job.broadcast_vars(&state)
                && job.size() > 1
            {
                job.abort(&e);
            }
            // Files are written by rank 0 only.
            if !job.is_root() {
                all_callbacks.retain(|c| !c.rank_zero_only());
            }
        }
        let run = Epochs {
            train: &train,
            validation,
            columns: &columns,
            first_epoch,
            output_names: &output_names,
            metrics: &metric_list,
        };
        // From here every rank runs the same collectives; an error on one ends them all.
        match (self.train_epochs(config, run, &mut all_callbacks), several) {
            (Err(e), Some(job)) => job.abort(&e),
            (history, _) => history,
        }
    }

    /// `fit`'s checks of its arguments and data, before any work; returns the training part, the
    /// part held out for validation, and the data set columns for the model's inputs.
    fn check_fit(
        &self,
        data: &Dataset,
        config: &FitConfig<'_>,
    ) -> Result<(Dataset, Dataset, Vec<usize>)> {
        if config.batch_size == 0 || data.is_empty() {
            return Err(Error::argument(
                "fit",
                format!(
                    "needs a batch size >= 1 and data (got {} and {} samples)",
                    config.batch_size,
                    data.len()
                ),
            ));
        }
        self.check_data("fit", data, config.class_weight.is_some())?;
        check_class_weight(data, config.class_weight.as_deref())?;
        if !(0.0..1.0).contains(&config.validation_split) {
            return Err(Error::argument(
                "fit",
                format!(
                    "validation_split {} must be in [0, 1): the fraction of samples held out",
                    config.validation_split
                ),
            ));
        }
        let columns = self.column_order("fit", data)?;
        let held_out = (data.len() as f32 * config.validation_split.clamp(0.0, 1.0)) as usize;
        let (train, split_off) = data.split_at(data.len() - held_out);
        if train.is_empty() {
            return Err(Error::argument(
                "fit",
                format!(
                    "validation_split {} leaves none of the {} samples to train on; use a split below 1",
                    config.validation_split,
                    data.len()
                ),
            ));
        }
        Ok((train, split_off, columns))
    }

    /// The epochs of [`Model::fit_with`], once its checks are done.
    fn train_epochs(
        &mut self,
        config: &FitConfig<'_>,
        run: Epochs<'_>,
        all_callbacks: &mut [&mut dyn Callback],
    ) -> Result<History> {
        let Epochs {
            train,
            validation,
            columns,
            first_epoch,
            output_names,
            metrics: metric_list,
        } = run;
        let job = config.distributed;
        let (rank, ranks) = job.map_or((0, 1), |j| (j.rank(), j.size()));
        let verbose = config.verbose && rank == 0;
        let steps = train.len().div_ceil(config.batch_size * ranks);
        let mut history = History::default();
        self.fitted = Some((first_epoch, config.shuffle));
        let device = self.place()?;
        for epoch in first_epoch..config.epochs {
            for callback in all_callbacks.iter_mut() {
                callback.on_epoch_begin(epoch, self)?;
            }
            let started = Instant::now();
            // A non-finite loss must not leave NaN weights behind: on the CPU each step's loss is
            // checked as it comes (reading it costs nothing) and the state before that step comes
            // back (handles, not copies: tensors are immutable); on a GPU the step guard below.
            // A data-parallel step reads the global loss anyway: checked there, on every device.
            let on_cpu = matches!(device, Device::Cpu(_)) || job.is_some();
            let (check_each_step, guard) = (
                config.stop_on_non_finite && on_cpu,
                config.stop_on_non_finite && !on_cpu,
            );
            let mut last_good = self.snapshot()?;
            // On a GPU the step guard checks each loss on the device and holds every update from
            // the first non-finite one on (no host sync per step); the buffers the forward pass
            // updates (batch-norm statistics) are kept per step, as handles, to be put back.
            let mut buffers_before: Vec<Vec<(Var, RawTensor)>> = Vec::new();
            let steps_at_start = self.compiled.as_ref().map_or(0, |c| c.optimizer.state().0);
            if guard {
                device.begin_step_guard()?;
            }
            let mut failed_batch: Option<(usize, f32)> = None;
            let mut totals = OutputTotals::new(output_names.len(), metric_list);
            // Per-batch losses stay on the device until the epoch ends: one readback then.
            let mut batch_losses: Vec<(RawTensor, usize)> = Vec::new();
            let seed = config.shuffle.map(|s| s.wrapping_add(epoch as u64));
            let bar = progress_bar(verbose, steps, epoch, config.epochs);
            let mut local_samples = 0;
            let shard = (rank, ranks);
            let step_result = train.for_each_shard(
                columns,
                config.batch_size,
                seed,
                &device,
                shard,
                |batch, global| {
                    if failed_batch.is_some() {
                        return Ok(());
                    }
                    let Some(batch) = batch else {
                        // This rank has no samples of the last global batch: it still takes part
                        // in the step, with no gradient of its own.
                        let job = job.ok_or_else(|| Error::usage("fit", "an empty batch"))?;
                        if check_each_step {
                            last_good = self.snapshot()?;
                        }
                        let sync = StepSync {
                            job,
                            samples: (0, global),
                        };
                        let loss = self.averaged_step(Gradients::default(), sync, 0.0)?;
                        bar.inc(1);
                        if check_each_step && !loss.is_finite() {
                            failed_batch = Some((batch_losses.len(), loss));
                            return Ok(());
                        }
                        let loss = Tensor::from_slice(&[loss], [1], &device)?;
                        batch_losses.push((loss.raw().clone(), global));
                        return Ok(());
                    };
                    let inputs = self.prepare(batch.inputs, &device)?;
                    if check_each_step {
                        last_good = self.snapshot()?;
                    } else if guard {
                        buffers_before.push(self.buffer_values());
                    }
                    // Metrics read the scores of the training forward pass, as Keras's do.
                    let (loss, parts) = self.train_step(
                        inputs,
                        &batch.targets,
                        batch.weights.as_ref(),
                        config.class_weight.as_deref(),
                        guard.then_some(batch_losses.len() as u32),
                        job.map(|job| StepSync {
                            job,
                            samples: (batch.len, global),
                        }),
                    )?;
                    bar.inc(1);
                    if check_each_step {
                        let value = loss.to_scalar()?;
                        if !value.is_finite() {
                            failed_batch = Some((batch_losses.len(), value));
                            return Ok(());
                        }
                    }
                    // The loss of the global batch (this rank's batch alone without a job).
                    let counted = if job.is_some() { global } else { batch.len };
                    batch_losses.push((loss.raw().reshape([1])?, counted));
                    local_samples += batch.len;
                    totals.add(&parts, batch.len)
                },
            );
            let guarded = if guard {
                device.end_step_guard()
            } else {
                Ok(None)
            };
            step_result?;
            if let Some(bad) = guarded? {
                let bad = bad as usize;
                for (var, value) in buffers_before.swap_remove(bad) {
                    var.set(value)?;
                }
                self.rewind_optimizer(steps_at_start + bad as u32)?;
                return Err(Error::data(
                    "fit",
                    format!(
                        "the loss became NaN or infinite at epoch {}, batch {} (lower the learning \
                         rate, or check the data for NaN, infinities or unnormalised values); the \
                         weights and optimizer state are back to those before that batch",
                        epoch + 1,
                        bad + 1
                    ),
                ));
            }
            let loss = match failed_batch {
                Some((batch, value)) => Err(Error::InvalidData {
                    op: "fit",
                    message: format!(
                        "the loss became {value} at epoch {}, batch {} (lower the learning rate, or \
                         check the data for NaN, infinities or unnormalised values)",
                        epoch + 1,
                        batch + 1
                    ),
                }),
                None => epoch_loss(&batch_losses, epoch, config.stop_on_non_finite),
            };
            let loss = match loss {
                Ok(loss) => loss,
                // A device fault is reported as it is (a caller retries elsewhere on DeviceLost);
                // the state is put back as far as the device still allows.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::DeviceLost | ErrorKind::Gpu | ErrorKind::Resource
                    ) =>
                {
                    let _ = self.restore(last_good);
                    return Err(e);
                }
                Err(e) => {
                    self.restore(last_good)?;
                    let restored = if on_cpu {
                        "before that batch"
                    } else {
                        "at the start of that epoch"
                    };
                    return Err(Error::InvalidData {
                        op: "fit",
                        message: format!(
                            "{}; the weights and optimizer state are back to those {restored}",
                            e.to_string().trim_start_matches("fit: ")
                        ),
                    });
                }
            };
            let mut evaluation = totals.finish(loss, output_names)?;
            if let Some(job) = job {
                evaluation = job.combine(evaluation, local_samples);
                // Batch statistics (batch normalisation) follow rank 0's, as DDP's buffers do.
                let buffers: Vec<Var> = self.named_buffers().into_iter().map(|(_, v)| v).collect();
                job.broadcast_vars(&buffers)?;
            }
            let mut validation_eval = if validation.is_empty() {
                None
            } else {
                Some(self.evaluate(validation, config.batch_size)?)
            };
            if let Some(job) = job {
                // Every rank's callbacks must see the same logs: rank 0's validation figures.
                validation_eval = validation_eval.map(|e| job.broadcast_evaluation(e));
            }
            if verbose {
                println!("Epoch {}/{}", epoch + 1, config.epochs);
                println!(
                    "{}",
                    progress_line(
                        steps,
                        started.elapsed().as_secs_f64(),
                        &evaluation,
                        validation_eval.as_ref()
                    )
                );
            }
            // With the profiler on (KILN_PROFILE=1), each epoch ends with its per-kernel table.
            if let Some(profile) = device.take_profile()?
                && !profile.rows.is_empty()
            {
                eprintln!("Epoch {}/{}: {profile}", epoch + 1, config.epochs);
            }
            let logs = EpochLogs {
                train: &evaluation,
                validation: validation_eval.as_ref(),
            };
            self.fitted = Some((epoch + 1, config.shuffle));
            // Checkpoints last: whatever the other callbacks record for this epoch (a log row) is
            // then never ahead of the checkpoint a crash would resume from.
            let mut stop = false;
            for checkpoints in [false, true] {
                for callback in all_callbacks.iter_mut() {
                    if callback.checkpoint_dir().is_some() == checkpoints {
                        stop |= callback.on_epoch_end(epoch, &logs, self)? == Control::Stop;
                    }
                }
            }
            if let Some(job) = job {
                // A callback that runs on rank 0 only may stop: every rank stops together.
                stop = job.any(stop);
            }
            history.train.push(evaluation);
            history.validation.extend(validation_eval);
            if stop {
                break;
            }
        }
        Ok(history)
    }

    /// `resume: true`: loads the checkpoint the callbacks' `ModelCheckpoint` keeps, when there is
    /// one, and returns the epoch to continue from.
    fn resume(
        &mut self,
        config: &FitConfig<'_>,
        callbacks: &mut [&mut dyn Callback],
    ) -> Result<usize> {
        let dirs: Vec<PathBuf> = callbacks
            .iter()
            .filter_map(|c| c.checkpoint_dir().map(Path::to_path_buf))
            .collect();
        let dir = match dirs.as_slice() {
            [dir] => dir,
            [] => {
                return Err(Error::usage(
                    "fit",
                    "resume: true continues from a ModelCheckpoint callback's folder; add one",
                ));
            }
            _ => {
                return Err(Error::usage(
                    "fit",
                    format!(
                        "resume: true found {} ModelCheckpoint callbacks ({dirs:?}); keep one",
                        dirs.len()
                    ),
                ));
            }
        };
        if !checkpoint_exists(dir) {
            return Ok(config.initial_epoch);
        }
        let complete = resolve_checkpoint(dir)?;
        let progress = complete.progress.clone().ok_or_else(|| {
            Error::usage(
                "fit",
                format!(
                    "{} was saved outside fit and records no progress to resume from; load it with \
                     Model::load and set initial_epoch instead",
                    dir.display()
                ),
            )
        })?;
        if progress.shuffle != config.shuffle {
            return Err(Error::usage(
                "fit",
                format!(
                    "the checkpoint in {} was trained with shuffle {:?}, this fit has {:?}: resuming \
                     would not continue that run; use the same shuffle seed",
                    dir.display(),
                    progress.shuffle,
                    config.shuffle
                ),
            ));
        }
        self.load_complete(complete)?;
        for callback in callbacks.iter_mut() {
            callback.on_resume(&progress);
        }
        Ok(progress.epoch)
    }

    /// Loss and metrics on `data`, without training.
    pub fn evaluate(&self, data: &Dataset, batch_size: usize) -> Result<Evaluation> {
        let compiled = self.compiled("evaluate")?;
        let losses = compiled.losses.clone();
        let output_names = self.output_names();
        let mut totals = OutputTotals::new(losses.len(), &compiled.metrics);
        if batch_size == 0 || data.is_empty() {
            return Err(Error::argument(
                "evaluate",
                format!(
                    "needs a batch size >= 1 and data, got batch size {batch_size} and {} samples \
                     (an empty data set has no loss)",
                    data.len()
                ),
            ));
        }
        self.check_data("evaluate", data, false)?;
        let columns = self.column_order("evaluate", data)?;
        let device = self.place()?;
        let mut loss_sum: Option<RawTensor> = None;
        no_grad(|| {
            data.for_each_batch(&columns, batch_size.max(1), None, &device, |batch| {
                let inputs = self.prepare(batch.inputs, &device)?;
                let scores = self.scores(inputs, false, &losses)?;
                let (loss, parts) = self.batch_losses(
                    "evaluate",
                    scores,
                    &batch.targets,
                    batch.weights.as_ref(),
                    None,
                )?;
                let weighted = loss.raw().scalar(BinaryOp::Mul, batch.len as f32)?;
                loss_sum = Some(match loss_sum.take() {
                    Some(s) => s.binary(BinaryOp::Add, &weighted)?,
                    None => weighted,
                });
                totals.add(&parts, batch.len)
            })
        })?;
        let loss = match loss_sum {
            Some(s) => s.to_f32_vec()?[0] / data.len() as f32,
            None => f32::NAN,
        };
        totals.finish(loss, &output_names)
    }
}
