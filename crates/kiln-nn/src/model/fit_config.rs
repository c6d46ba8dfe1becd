//! What `fit` is told (`FitConfig`, with its callbacks) and what it reports (`History`,
//! `Evaluation`).

use std::cell::{RefCell, RefMut};

use kiln_device::{Error, Result};

use crate::callbacks::Callback;
use crate::data::Dataset;
use crate::distributed::Distributed;
use crate::metrics::Metric;

/// The callbacks `fit` calls around each epoch:
/// `Callbacks::new(vec![&mut early_stopping, &mut csv_logger])`.
#[derive(Default)]
pub struct Callbacks<'a>(RefCell<Vec<&'a mut dyn Callback>>);

impl<'a> Callbacks<'a> {
    /// The callbacks, called in this order.
    pub fn new(callbacks: Vec<&'a mut dyn Callback>) -> Self {
        Callbacks(RefCell::new(callbacks))
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The list for one `fit` (an error if another `fit` is using it).
    pub(crate) fn borrow(&self) -> Result<RefMut<'_, Vec<&'a mut dyn Callback>>> {
        self.0.try_borrow_mut().map_err(|_| {
            Error::usage(
                "fit",
                "these callbacks are already in use by a running fit (a callback called fit with \
                 the same FitConfig)",
            )
        })
    }
}

impl<'a> From<Vec<&'a mut dyn Callback>> for Callbacks<'a> {
    fn from(callbacks: Vec<&'a mut dyn Callback>) -> Self {
        Callbacks::new(callbacks)
    }
}

impl std::fmt::Debug for Callbacks<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Callbacks({})",
            self.0.try_borrow().map_or(0, |c| c.len())
        )
    }
}

/// How `fit` trains.
#[derive(Debug)]
pub struct FitConfig<'a> {
    /// Passes over the training data.
    pub epochs: usize,
    /// Samples per step.
    pub batch_size: usize,
    /// Shuffle the training data each epoch, from this seed (`None`: keep the order).
    pub shuffle: Option<u64>,
    /// Fraction of the training data (taken from its end, as Keras does) held out for validation.
    pub validation_split: f32,
    /// Print Keras's per-epoch progress line.
    pub verbose: bool,
    /// The epoch to start from when resuming by hand (shuffling continues where it left off).
    pub initial_epoch: usize,
    /// Continue from the checkpoint the [`crate::callbacks::ModelCheckpoint`] callback keeps, when
    /// there is one: its weights, optimizer state, random layers' positions and best value, from
    /// the epoch after the one it saved (`initial_epoch` is then ignored). With a checkpoint every
    /// epoch, an interrupted run started again with the same arguments ends with the weights an
    /// uninterrupted run would have — unless other callbacks keep state of their own
    /// (`EarlyStopping`'s patience and `ReduceLROnPlateau`'s lowered rate start afresh); with
    /// `save_best_only`, the epochs after the best one are trained again.
    pub resume: bool,
    /// Data to validate on after each epoch (instead of `validation_split`).
    pub validation_data: Option<&'a Dataset>,
    /// Called around each epoch (early stopping, checkpoints, logs, schedules).
    pub callbacks: Callbacks<'a>,
    /// Stop at the first NaN or infinite loss with the weights and optimizer state of the step before
    /// it, naming epoch and batch (default). On a GPU the check runs on the device (the step guard),
    /// so it costs no host sync; `false` trains on whatever the losses become (Keras's default
    /// without `TerminateOnNaN`).
    pub stop_on_non_finite: bool,
    /// A loss weight per class (Keras's `class_weight`, indexed by class; for 0/1 targets
    /// `[weight of 0, weight of 1]`): each sample's loss counts its class's weight. Multiplies the
    /// data set's sample weights when both are given.
    pub class_weight: Option<Vec<f32>>,
    /// Train data-parallel across the ranks of this job (see [`Distributed`]): `batch_size` is
    /// then each rank's part of a global batch of `batch_size × ranks`, the gradients are averaged
    /// before every step, only rank 0 prints and writes files (checkpoints, CSV logs), every
    /// rank's callbacks see the same logs (rank 0's validation figures, training metrics averaged
    /// over the ranks by samples: exact for accuracy and errors, an approximation for AUC and
    /// precision-type metrics) and the ranks stop together. A rank whose call or data fails the
    /// checks before training gets its error and the others an error saying so; an error during
    /// training (a non-finite loss included) ends every rank through MPI's abort, after printing
    /// it — never a rank left waiting.
    pub distributed: Option<&'a Distributed>,
}

impl Default for FitConfig<'_> {
    fn default() -> Self {
        FitConfig {
            epochs: 1,
            batch_size: 32,
            shuffle: Some(0),
            validation_split: 0.0,
            verbose: true,
            initial_epoch: 0,
            resume: false,
            validation_data: None,
            callbacks: Callbacks::default(),
            class_weight: None,
            stop_on_non_finite: true,
            distributed: None,
        }
    }
}

/// Loss and metrics of one pass over some data.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Mean loss (for several outputs: the weighted sum of their losses).
    pub loss: f32,
    /// Each metric's value (one-output models; see `outputs` for several).
    pub metrics: Vec<(Metric, f32)>,
    /// A multi-output model's loss and metrics per output, by Keras name (`price_loss`,
    /// `price_mae`, `approved_accuracy`); empty for one output.
    pub outputs: Vec<(String, f32)>,
}

impl Evaluation {
    /// A metric's value.
    pub fn metric(&self, metric: Metric) -> Option<f32> {
        self.metrics
            .iter()
            .find(|(m, _)| *m == metric)
            .map(|(_, v)| *v)
    }

    /// A value by its Keras name: `"loss"` or a metric's (`"accuracy"`, `"auc"`, `"f1_score"`, ...;
    /// the first metric of that name when several share it).
    pub fn get(&self, name: &str) -> Option<f32> {
        self.values()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// Every logged value by its Keras name, in the order Keras prints them: `loss`, each
    /// metric, then each output's loss and metrics.
    pub fn values(&self) -> Vec<(String, f32)> {
        std::iter::once(("loss".to_string(), self.loss))
            .chain(self.metrics.iter().map(|(m, v)| (m.name().to_string(), *v)))
            .chain(self.outputs.iter().cloned())
            .collect()
    }
}

/// What `fit` measured, epoch by epoch.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Training loss and metrics per epoch.
    pub train: Vec<Evaluation>,
    /// Validation loss and metrics per epoch (when validating).
    pub validation: Vec<Evaluation>,
}
