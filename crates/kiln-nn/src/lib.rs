//! kiln's Keras-style training layer: [`Model`]s of [`layers`] — built with the functional API
//! ([`functional::Input`], `layer.apply(&x)`, merge layers) or stacked by [`Sequential`] — compiled
//! with an [`optim::Optimizer`], a [`Loss`] and [`Metric`]s, trained with `fit` on
//! [`data::Dataset`]s.
//!
//! ```no_run
//! use kiln_nn::prelude::*;
//! let data = kiln_nn::data::datasets::mnist(None)?;
//! let mut model = Sequential::new([1, 28, 28])
//!     .add(Conv2D::new(32, (3, 3)).activation(Activation::Relu))?
//!     .add(MaxPooling2D::new((2, 2)))?
//!     .add(Flatten::new())?
//!     .add(Dense::new(10).activation(Activation::Softmax))?;
//! model.compile(Adam::new(0.001), Loss::SparseCategoricalCrossentropy, &[Metric::Accuracy])?;
//! model.fit(&data.train, &FitConfig { epochs: 10, batch_size: 64, ..Default::default() })?;
//! println!("{:?}", model.evaluate(&data.test, 64)?);
//! # Ok::<(), kiln_device::Error>(())
//! ```

pub mod callbacks;
mod checkpoint;
pub mod data;
pub mod distributed;
pub mod functional;
pub mod layers;
mod loss;
pub mod metrics;
mod model;
pub mod optim;
pub mod plot;
mod shape;

pub use checkpoint::{TrainingProgress, checkpoint_progress};
pub use distributed::Distributed;
pub use loss::{Loss, Losses};
pub use metrics::Metric;
pub use model::{Callbacks, Evaluation, FitConfig, History, Model, ModelInputs, Sequential};
pub use shape::IntoShape;

/// Everything a training program uses.
pub mod prelude {
    pub use crate::callbacks::{
        Callback, CsvLogger, EarlyStopping, LearningRateScheduler, ModelCheckpoint, Monitor,
        ReduceLROnPlateau,
    };
    pub use crate::data::{Batch, Column, Dataset, Targets, to_categorical};
    pub use crate::functional::{
        Add, ApplyLayer, Concatenate, Dot, Input, MergeLayer, Multiply, Node, SharedLayer,
    };
    pub use crate::layers::{
        Activation, ActivationLayer, AveragePooling2D, Conv2D, Dense, Dropout, Embedding, Flatten,
        Layer, MaxPooling2D, Padding,
    };
    pub use crate::layers::{
        BatchNormalization, Conv1D, GRU, GlobalAveragePooling1D, GlobalAveragePooling2D,
        GlobalMaxPooling1D, Initializer, LSTM, LayerNormalization, MultiHeadAttention, Permute,
        Reshape, TransformerEncoder,
    };
    pub use crate::optim::{
        Adagrad, Adam, Clip, CosineDecay, ExponentialDecay, LearningRateSchedule, Optimizer,
        OptimizerExt, RmsProp, Sgd,
    };
    pub use crate::{
        Callbacks, Distributed, Evaluation, FitConfig, History, Loss, Losses, Metric, Model,
        Sequential,
    };
}
