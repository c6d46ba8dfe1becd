//! Models: [`Model`] (Keras's functional `Model(inputs, outputs)`) and [`Sequential`], a builder of
//! the same graph. One executor runs both; `compile`, `fit`, `evaluate`, `predict`, `summary`,
//! `save` and `load_model` are written once, on `Model`.

mod device;
mod fit_config;
mod graph;
mod persist;
mod progress;
mod run;
mod sequential;
mod summary;
mod train;

use std::sync::Mutex;

use kiln_autograd::Var;
use kiln_device::{Error, RawTensor, Result};

pub use fit_config::{Callbacks, Evaluation, FitConfig, History};
pub use run::ModelInputs;
pub use sequential::Sequential;

use crate::functional::{Node, SharedLayer};
use crate::loss::Loss;
use crate::metrics::Metric;
use crate::optim::Optimizer;
use device::Placement;
use graph::{Graph, LayerRef};

/// The optimizer, losses and metrics chosen by `compile`.
struct Compiled {
    optimizer: Box<dyn Optimizer>,
    /// Each output's loss and its weight in the total.
    losses: Vec<(Loss, f32)>,
    metrics: Vec<Metric>,
    /// Where the optimizer's state lives (it follows the model when the model moves).
    state_device: Option<kiln_device::Device>,
}

/// A graph of layers from [`crate::functional::Input`]s to outputs, with Keras's verbs:
/// `compile`, `fit`, `evaluate`, `predict`, `summary`, `save`, `load_model`.
///
/// ```
/// use kiln_device::Device;
/// use kiln_nn::prelude::*;
/// let x = Input::new(30);
/// let h = Dense::new(16).activation(Activation::Relu).apply(&x)?;
/// let y = Dense::new(1).activation(Activation::Sigmoid).apply(&h)?;
/// let mut model = Model::new(&[&x], &[&y])?.on(&Device::cpu());
/// model.compile(Adam::new(0.01), Loss::BinaryCrossentropy, &[Metric::Accuracy])?;
/// # Ok::<(), kiln_device::Error>(())
/// ```
pub struct Model {
    name: String,
    /// Built by [`Sequential`] (its config and summary keep Keras's Sequential form).
    sequential: bool,
    graph: Graph,
    placement: Mutex<Placement>,
    compiled: Option<Compiled>,
    /// Where the running (or last) `fit` stands: epochs completed and its shuffle seed; saved in
    /// checkpoints for `resume`.
    fitted: Option<(usize, Option<u64>)>,
}

impl Model {
    /// The model computing `outputs` from `inputs`. Errors name the node when an output needs an
    /// input that is not given, an input is unused or given twice, or two layers share a name.
    /// Graphs cannot have cycles: a node is made only from nodes that already exist.
    pub fn new(inputs: &[&Node], outputs: &[&Node]) -> Result<Model> {
        Ok(Model::from_graph(
            Graph::new(inputs, outputs)?,
            "model",
            false,
        ))
    }

    fn from_graph(graph: Graph, name: &str, sequential: bool) -> Model {
        Model {
            name: name.to_string(),
            sequential,
            graph,
            placement: Mutex::new(Placement::default()),
            compiled: None,
            fitted: None,
        }
    }

    /// The same model with another name (shown by `summary`).
    pub fn named(mut self, name: &str) -> Model {
        self.name = name.to_string();
        self
    }

    /// The model's name (`"model"`, `"sequential"` unless renamed).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The input nodes, in the order `predict` and `train_on_batch` take tensors.
    pub fn inputs(&self) -> Vec<Node> {
        self.graph.inputs.iter().map(|i| i.node.clone()).collect()
    }

    /// The output nodes.
    pub fn outputs(&self) -> Vec<Node> {
        self.graph.outputs.clone()
    }

    /// The inputs' names (given with `Input::named`, else `input`, `input_1`, ...): the column
    /// names a data set made with `Dataset::from_inputs` uses.
    pub fn input_names(&self) -> Vec<&str> {
        self.graph.inputs.iter().map(|i| i.name.as_str()).collect()
    }

    /// The layer named `name` (Keras's `get_layer`), to freeze it or read its weights.
    pub fn get_layer(&self, name: &str) -> Result<SharedLayer> {
        match self.graph.layers.iter().find(|l| l.name == name) {
            Some(l) => match &l.layer {
                LayerRef::Single(layer) => Ok(layer.clone()),
                LayerRef::Merge(_) => Err(Error::argument(
                    "get_layer",
                    format!("{name} is a merge layer, which has no weights"),
                )),
            },
            None => Err(Error::argument(
                "get_layer",
                format!(
                    "the model has no layer {name:?} (its layers: {})",
                    self.layer_names().join(", ")
                ),
            )),
        }
    }

    /// Every layer's name, in order.
    pub fn layer_names(&self) -> Vec<&str> {
        self.graph.layers.iter().map(|l| l.name.as_str()).collect()
    }

    /// Every parameter with its PyTorch-style name (`conv2d.weight`, `dense.bias`, ...), frozen
    /// ones included; a shared layer's once.
    pub fn named_parameters(&self) -> Vec<(String, Var)> {
        self.graph
            .single_layers()
            .flat_map(|(name, layer)| {
                layer
                    .parameters()
                    .into_iter()
                    .map(move |(p, v)| (format!("{name}.{p}"), v))
            })
            .collect()
    }

    /// The parameters the optimizer updates: those of layers that are not frozen (PyTorch's
    /// `parameters()` with `requires_grad`), for custom training loops.
    pub fn trainable_parameters(&self) -> Vec<Var> {
        self.graph
            .single_layers()
            .filter(|(_, layer)| layer.is_trainable())
            .flat_map(|(_, layer)| layer.parameters().into_iter().map(|(_, v)| v))
            .collect()
    }

    /// The layers' untrained state (batch-normalisation statistics), named like parameters
    /// (`batch_normalization.running_mean`).
    pub fn named_buffers(&self) -> Vec<(String, Var)> {
        self.graph
            .single_layers()
            .flat_map(|(name, layer)| {
                layer
                    .buffers()
                    .into_iter()
                    .map(move |(b, v)| (format!("{name}.{b}"), v))
            })
            .collect()
    }

    /// Parameters and buffers: everything `save` writes.
    pub(crate) fn state(&self) -> Vec<(String, Var)> {
        let mut all = self.named_parameters();
        all.extend(self.named_buffers());
        all
    }

    /// Replaces a parameter's (or buffer's) values by name; the shape must stay the same.
    pub fn set_weight(&self, name: &str, value: &RawTensor) -> Result<()> {
        let (_, var) = self
            .state()
            .into_iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| {
                Error::argument("set_weight", format!("the model has no parameter {name:?}"))
            })?;
        var.set(value.to_device(&self.place()?)?)
    }

    /// The optimizer settings, or an error telling `op`'s caller to compile first.
    fn compiled(&self, op: &'static str) -> Result<&Compiled> {
        self.compiled.as_ref().ok_or_else(|| {
            Error::usage(
                op,
                "call compile(optimizer, loss, metrics) first".to_string(),
            )
        })
    }
}
