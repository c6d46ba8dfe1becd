//! Callbacks `fit` calls around every epoch: early stopping, checkpoints, a CSV log and learning-rate
//! schedules.

use std::io::Write;
use std::path::{Path, PathBuf};

use kiln_autograd::Var;
use kiln_device::{Error, RawTensor, Result};

use crate::checkpoint::TrainingProgress;
use crate::{Evaluation, Metric, Model};

/// What one epoch measured.
pub struct EpochLogs<'a> {
    /// Training loss and metrics.
    pub train: &'a Evaluation,
    /// Validation loss and metrics, when validating.
    pub validation: Option<&'a Evaluation>,
}

/// Which logged number a callback watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Monitor {
    /// Training loss (lower is better).
    Loss,
    /// Validation loss (lower is better).
    ValLoss,
    /// A training metric (better as [`Metric::higher_is_better`] says).
    Metric(Metric),
    /// A validation metric (better as [`Metric::higher_is_better`] says).
    ValMetric(Metric),
}

impl Monitor {
    /// The watched value, oriented so that lower is better; `None` when it was not logged.
    fn score(self, logs: &EpochLogs<'_>) -> Option<f32> {
        match self {
            Monitor::Loss => Some(logs.train.loss),
            Monitor::ValLoss => logs.validation.map(|v| v.loss),
            Monitor::Metric(m) => logs.train.metric(m).map(|v| oriented(m, v)),
            Monitor::ValMetric(m) => logs
                .validation
                .and_then(|v| v.metric(m))
                .map(|v| oriented(m, v)),
        }
    }

    fn require(self, logs: &EpochLogs<'_>) -> Result<f32> {
        self.score(logs).ok_or_else(|| {
            Error::usage(
                "callback",
                format!(
                    "{self:?} was not logged (validation needs validation_split or validation_data)"
                ),
            )
        })
    }
}

/// A metric's value turned so that lower is better.
fn oriented(metric: Metric, value: f32) -> f32 {
    if metric.higher_is_better() {
        -value
    } else {
        value
    }
}

/// Whether training goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Next epoch.
    Continue,
    /// Stop after this epoch.
    Stop,
}

/// Hooks around each epoch of `fit`.
pub trait Callback {
    /// Before epoch `epoch` (0-based) trains.
    fn on_epoch_begin(&mut self, _epoch: usize, _model: &mut Model) -> Result<()> {
        Ok(())
    }

    /// After epoch `epoch`; returning `Control::Stop` ends training.
    fn on_epoch_end(
        &mut self,
        epoch: usize,
        logs: &EpochLogs<'_>,
        model: &mut Model,
    ) -> Result<Control>;

    /// The checkpoint this callback writes, which `fit` with `resume: true` continues from
    /// ([`ModelCheckpoint`]'s folder); `None` for other callbacks.
    fn checkpoint_dir(&self) -> Option<&Path> {
        None
    }

    /// Called when `fit` resumes from a checkpoint, with the progress it recorded (before the
    /// first resumed epoch).
    fn on_resume(&mut self, _progress: &TrainingProgress) {}

    /// Whether only rank 0 of a distributed `fit` runs this callback (those that write files:
    /// checkpoints, logs). The others run on every rank, which see the same logs (rank 0's
    /// validation figures, metrics combined over the ranks); a stop on any rank stops them all.
    fn rank_zero_only(&self) -> bool {
        self.checkpoint_dir().is_some()
    }
}

/// Stops when the monitored value has not improved by `min_delta` for `patience` epochs (Keras's
/// `EarlyStopping`: with patience 2, training stops at the second epoch in a row without
/// improvement); with `restore_best_weights(true)` the model then gets back the weights and buffers
/// of its best epoch.
pub struct EarlyStopping {
    monitor: Monitor,
    patience: usize,
    min_delta: f32,
    restore_best_weights: bool,
    best: f32,
    waited: usize,
    best_epoch: Option<usize>,
    stopped_epoch: Option<usize>,
    /// The best epoch's values: optimizers replace a parameter's tensor rather than write into it,
    /// so keeping the tensors keeps the values (no copy).
    best_weights: Vec<(Var, RawTensor)>,
}

impl EarlyStopping {
    /// Watches `monitor` with the given patience.
    pub fn new(monitor: Monitor, patience: usize) -> Self {
        EarlyStopping {
            monitor,
            patience,
            min_delta: 0.0,
            restore_best_weights: false,
            best: f32::INFINITY,
            waited: 0,
            best_epoch: None,
            stopped_epoch: None,
            best_weights: Vec::new(),
        }
    }

    /// The smallest change that counts as an improvement.
    pub fn min_delta(mut self, delta: f32) -> Self {
        self.min_delta = delta;
        self
    }

    /// When training stops, restore the weights (and buffers) of the best epoch.
    pub fn restore_best_weights(mut self, restore: bool) -> Self {
        self.restore_best_weights = restore;
        self
    }

    /// The epoch (0-based) with the best monitored value so far.
    pub fn best_epoch(&self) -> Option<usize> {
        self.best_epoch
    }

    /// The epoch (0-based) after which this callback stopped training, if it did.
    pub fn stopped_epoch(&self) -> Option<usize> {
        self.stopped_epoch
    }
}

impl Callback for EarlyStopping {
    fn on_epoch_end(
        &mut self,
        epoch: usize,
        logs: &EpochLogs<'_>,
        model: &mut Model,
    ) -> Result<Control> {
        let score = self.monitor.require(logs)?;
        if score < self.best - self.min_delta {
            (self.best, self.waited, self.best_epoch) = (score, 0, Some(epoch));
            if self.restore_best_weights {
                self.best_weights = model
                    .state()
                    .into_iter()
                    .map(|(_, var)| {
                        let value = var.tensor().raw().clone();
                        (var, value)
                    })
                    .collect();
            }
            return Ok(Control::Continue);
        }
        self.waited += 1;
        if self.waited < self.patience {
            return Ok(Control::Continue);
        }
        self.stopped_epoch = Some(epoch);
        if self.restore_best_weights {
            for (var, value) in &self.best_weights {
                var.set(value.clone())?;
            }
        }
        Ok(Control::Stop)
    }
}

/// Saves the model (weights, config, optimizer state and training progress, as one atomic unit) after
/// each epoch, or only when the monitored value improved. `fit` with `resume: true` continues from
/// its folder (the best value so far included). `fit` runs it after the epoch's other callbacks, so
/// what they record (a log row) is never ahead of the checkpoint.
pub struct ModelCheckpoint {
    dir: PathBuf,
    best_only: Option<Monitor>,
    best: f32,
}

impl ModelCheckpoint {
    /// Saves into `dir` after every epoch.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ModelCheckpoint {
            dir: dir.into(),
            best_only: None,
            best: f32::INFINITY,
        }
    }

    /// Saves only when `monitor` improves.
    pub fn save_best_only(mut self, monitor: Monitor) -> Self {
        self.best_only = Some(monitor);
        self
    }
}

impl Callback for ModelCheckpoint {
    fn on_epoch_end(
        &mut self,
        _epoch: usize,
        logs: &EpochLogs<'_>,
        model: &mut Model,
    ) -> Result<Control> {
        let mut best = None;
        if let Some(monitor) = self.best_only {
            let score = monitor.require(logs)?;
            if score >= self.best {
                return Ok(Control::Continue);
            }
            self.best = score;
            best = Some(score);
        }
        model.save_checkpoint(&self.dir, best)?;
        Ok(Control::Continue)
    }

    fn checkpoint_dir(&self) -> Option<&Path> {
        Some(&self.dir)
    }

    fn on_resume(&mut self, progress: &TrainingProgress) {
        if let Some(best) = progress.best {
            self.best = best;
        }
    }
}

/// Appends one CSV row per epoch: `epoch,loss,<metrics>,val_loss,<val metrics>`.
pub struct CsvLogger {
    path: PathBuf,
    wrote_header: bool,
}

impl CsvLogger {
    /// Logs to `path`: replaced when training starts from epoch 0; when `fit` resumes at a later
    /// epoch (`resume` or `initial_epoch`), the rows of earlier epochs are kept and those of the
    /// resumed epoch on (left by an interrupted run), or cut short by a crash, are dropped.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CsvLogger {
            path: path.into(),
            wrote_header: false,
        }
    }
}

impl Callback for CsvLogger {
    fn rank_zero_only(&self) -> bool {
        true
    }

    fn on_epoch_end(
        &mut self,
        epoch: usize,
        logs: &EpochLogs<'_>,
        _model: &mut Model,
    ) -> Result<Control> {
        let io = |e: std::io::Error| Error::InvalidData {
            op: "CsvLogger",
            message: format!("{}: {e}", self.path.display()),
        };
        let mut columns = vec!["epoch".to_string()];
        let mut values = vec![epoch.to_string()];
        for (name, v) in logs.train.values() {
            columns.push(name);
            values.push(v.to_string());
        }
        if let Some(val) = logs.validation {
            for (name, v) in val.values() {
                columns.push(format!("val_{name}"));
                values.push(v.to_string());
            }
        }
        let mut file = if self.wrote_header {
            std::fs::OpenOptions::new()
                .append(true)
                .open(&self.path)
                .map_err(io)?
        } else {
            // Resuming: keep the header and the rows of the epochs before this one.
            // (A row cut short by a crash has fewer fields than the header and goes too.)
            let kept: Vec<String> = match (epoch, std::fs::read_to_string(&self.path)) {
                (1.., Ok(text)) => {
                    let fields = text.lines().next().map_or(0, |h| h.split(',').count());
                    text.lines()
                        .enumerate()
                        .filter(|(i, line)| {
                            *i == 0
                                || (line.split(',').count() == fields
                                    && line
                                        .split(',')
                                        .next()
                                        .and_then(|e| e.parse::<usize>().ok())
                                        .is_some_and(|e| e < epoch))
                        })
                        .map(|(_, line)| line.to_string())
                        .collect()
                }
                _ => Vec::new(),
            };
            let mut f = std::fs::File::create(&self.path).map_err(io)?;
            if kept.is_empty() {
                writeln!(f, "{}", columns.join(",")).map_err(io)?;
            } else {
                for line in &kept {
                    writeln!(f, "{line}").map_err(io)?;
                }
            }
            self.wrote_header = true;
            f
        };
        writeln!(file, "{}", values.join(",")).map_err(io)?;
        Ok(Control::Continue)
    }
}

/// Sets the learning rate before each epoch from `schedule(epoch, current_lr)`.
pub struct LearningRateScheduler<F: FnMut(usize, f32) -> f32>(pub F);

impl<F: FnMut(usize, f32) -> f32> Callback for LearningRateScheduler<F> {
    fn on_epoch_begin(&mut self, epoch: usize, model: &mut Model) -> Result<()> {
        let lr = model.learning_rate()?;
        model.set_learning_rate((self.0)(epoch, lr))
    }

    fn on_epoch_end(
        &mut self,
        _epoch: usize,
        _logs: &EpochLogs<'_>,
        _model: &mut Model,
    ) -> Result<Control> {
        Ok(Control::Continue)
    }
}

/// Keras's `ReduceLROnPlateau`: multiplies the learning rate by `factor` when the monitored value
/// has not improved by `min_delta` for `patience` epochs, then waits `cooldown` epochs before
/// counting again; never below `min_lr`.
#[derive(Debug, Clone)]
pub struct ReduceLROnPlateau {
    monitor: Monitor,
    factor: f32,
    patience: usize,
    min_delta: f32,
    cooldown: usize,
    min_lr: f32,
    best: Option<f32>,
    wait: usize,
    cooling: usize,
}

impl ReduceLROnPlateau {
    /// Watches `monitor`; Keras's defaults: factor 0.1, patience 10, min_delta 1e-4, no cooldown,
    /// min_lr 0.
    pub fn new(monitor: Monitor) -> Self {
        ReduceLROnPlateau {
            monitor,
            factor: 0.1,
            patience: 10,
            min_delta: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
            best: None,
            wait: 0,
            cooling: 0,
        }
    }

    /// Sets the factor the rate is multiplied by (below 1).
    pub fn factor(mut self, factor: f32) -> Self {
        self.factor = factor;
        self
    }

    /// Sets the epochs without improvement before a reduction.
    pub fn patience(mut self, patience: usize) -> Self {
        self.patience = patience;
        self
    }

    /// Sets the least change that counts as an improvement.
    pub fn min_delta(mut self, min_delta: f32) -> Self {
        self.min_delta = min_delta;
        self
    }

    /// Sets the epochs after a reduction before epochs without improvement count again.
    pub fn cooldown(mut self, cooldown: usize) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// Sets the lowest rate.
    pub fn min_lr(mut self, min_lr: f32) -> Self {
        self.min_lr = min_lr;
        self
    }
}

impl Callback for ReduceLROnPlateau {
    fn on_epoch_end(
        &mut self,
        _epoch: usize,
        logs: &EpochLogs<'_>,
        model: &mut Model,
    ) -> Result<Control> {
        if !(0.0..1.0).contains(&self.factor) {
            return Err(Error::argument(
                "ReduceLROnPlateau",
                format!("factor {} must be in [0, 1)", self.factor),
            ));
        }
        let score = self.monitor.require(logs)?;
        if self.cooling > 0 {
            self.cooling -= 1;
            self.wait = 0;
        }
        match self.best {
            Some(best) if score >= best - self.min_delta => {
                if self.cooling == 0 {
                    self.wait += 1;
                }
            }
            _ => {
                self.best = Some(score);
                self.wait = 0;
            }
        }
        if self.wait >= self.patience {
            let lr = model.learning_rate()?;
            if lr > self.min_lr {
                model.set_learning_rate((lr * self.factor).max(self.min_lr))?;
                self.cooling = self.cooldown;
                self.wait = 0;
            }
        }
        Ok(Control::Continue)
    }
}
