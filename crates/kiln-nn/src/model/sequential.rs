//! `Sequential`: a builder that applies each added layer to the previous output and keeps the
//! resulting [`Model`] — the same graph and executor as a functional model. It dereferences to
//! that `Model`, so `compile`, `fit`, `evaluate`, `predict`, `summary`, `save` and the rest are
//! `Model`'s.

use std::path::Path;

use kiln_device::{DType, Device, Error, Result};
use serde_json::Value;

use super::Model;
use super::graph::Graph;
use super::persist::{Rebuilt, dtype_of, layer_from_config, read_config, shape_of};
use crate::functional::{Input, IntoSharedLayer, Node, SharedLayer};
use crate::layers::Layer;
use crate::shape::IntoShape;

/// A linear stack of layers, built from the per-sample input shape (Keras's `Sequential`).
///
/// ```
/// use kiln_nn::prelude::*;
/// let model = Sequential::new((1, 28, 28)) // channels first
///     .add(Conv2D::new(8, (3, 3)).activation(Activation::Relu))?
///     .add(Flatten::new())?
///     .add(Dense::new(10).activation(Activation::Softmax))?;
/// assert!(model.summary().contains("conv2d (Conv2D)"));
/// # Ok::<(), kiln_device::Error>(())
/// ```
pub struct Sequential {
    model: Model,
    input: Input,
    output: Node,
    seed: u64,
    added: usize,
}

impl Sequential {
    /// An empty model for samples of `input_shape` — channels first (`[1, 28, 28]` or `(1, 28, 28)`
    /// for MNIST) — running on `Device::auto()` unless [`Sequential::on`] says otherwise.
    pub fn new(input_shape: impl IntoShape) -> Self {
        Sequential::from_input(Input::new(input_shape))
    }

    /// An empty model fed by `input` (`Input::ids([10])` for a model that starts with an
    /// `Embedding`; `new` switches to ids by itself when the first layer is one).
    pub fn from_input(input: Input) -> Self {
        let output = input.node().clone();
        Sequential {
            model: Model::from_graph(Graph::identity(&input), "sequential", true),
            input,
            output,
            seed: 0,
            added: 0,
        }
    }

    /// Runs the whole model on `device` (at any point: layers are built on the CPU and the model's
    /// state moves to its device at compile or first use).
    pub fn on(mut self, device: &Device) -> Self {
        self.model = self.model.on(device);
        self
    }

    /// Seeds parameter initialisation (set before adding layers).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Appends `layer` (a layer, or a [`SharedLayer`] handle to share or freeze it), building it for
    /// the current output shape; a shape the layer cannot take is an error naming it.
    #[allow(
        clippy::should_implement_trait,
        reason = "Keras's name for appending a layer"
    )]
    pub fn add(mut self, layer: impl IntoSharedLayer) -> Result<Self> {
        let layer = layer.into_shared();
        if self.added == 0 && layer.kind() == "embedding" && self.input.dtype() == DType::F32 {
            // An Embedding takes ids: the model's input holds u32 ids.
            self.input = self.input.with_dtype(DType::U32);
            self.output = self.input.node().clone();
        }
        let seed = self.seed.wrapping_mul(1000).wrapping_add(self.added as u64);
        let output = layer.apply_seeded(&self.output, Some(seed))?;
        self.model.graph = Graph::new(&[self.input.node()], &[&output])?;
        self.output = output;
        self.added += 1;
        Ok(self)
    }

    /// [`Sequential::add`] for a layer chosen at run time.
    pub fn add_boxed(self, layer: Box<dyn Layer>) -> Result<Self> {
        self.add(layer)
    }

    /// The input node (to continue the graph with the functional API).
    pub fn input(&self) -> &Node {
        self.input.node()
    }

    /// The last layer's output node.
    pub fn output(&self) -> &Node {
        &self.output
    }

    /// The model built so far.
    pub fn into_model(self) -> Model {
        self.model
    }

    /// An uncompiled model on `device` rebuilt from [`Model::config`]'s JSON of a Sequential model
    /// (fresh weights).
    pub fn from_config(config: &Value, device: &Device) -> Result<Sequential> {
        if config["class_name"].as_str() == Some("Functional") {
            return Err(Error::InvalidData {
                op: "from_config",
                message: "this is a functional model's config: rebuild it with Model::from_config"
                    .to_string(),
            });
        }
        let input = Input::with(
            shape_of(config, "input_shape")?,
            dtype_of(config, "input_dtype")?,
            None,
        );
        let layers = config["layers"]
            .as_array()
            .ok_or_else(|| Error::InvalidData {
                op: "from_config",
                message: "missing \"layers\" in model config".to_string(),
            })?;
        let mut model = Sequential::from_input(input).on(device);
        for entry in layers {
            let layer = match layer_from_config(&entry["config"])? {
                Rebuilt::Single(layer) => SharedLayer::from_boxed(layer),
                Rebuilt::Merge(merge) => {
                    return Err(Error::InvalidData {
                        op: "from_config",
                        message: format!(
                            "a Sequential model holds single-input layers, not {}",
                            merge.kind()
                        ),
                    });
                }
            };
            let trainable = entry["trainable"].as_bool().unwrap_or(true);
            model = model.add(layer.trainable(trainable))?;
        }
        if let Some(name) = config["name"].as_str() {
            model.model.name = name.to_string();
        }
        Ok(model)
    }

    /// Keras's `load_model`: rebuilds the architecture saved by [`Model::save`] in `dir` on
    /// `device` and loads its weights. Compile it, then call [`Model::load`] again to also restore
    /// the optimizer state and resume training.
    pub fn load_model(dir: &Path, device: &Device) -> Result<Sequential> {
        let mut model = Sequential::from_config(&read_config(dir)?, device)?;
        model.load(dir)?;
        Ok(model)
    }
}

impl std::ops::Deref for Sequential {
    type Target = Model;

    fn deref(&self) -> &Model {
        &self.model
    }
}

impl std::ops::DerefMut for Sequential {
    fn deref_mut(&mut self) -> &mut Model {
        &mut self.model
    }
}

impl From<Sequential> for Model {
    fn from(sequential: Sequential) -> Model {
        sequential.model
    }
}
