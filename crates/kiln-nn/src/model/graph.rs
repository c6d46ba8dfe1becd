//! The plan a [`crate::Model`] runs: its inputs, its steps in topological order (node creation
//! order), the distinct layers with the names the model gives them, and where each value is last
//! read. Built and validated once, by `Model::new`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kiln_device::{Error, Result};

use crate::functional::{Input, MergeLayer, Node, SharedLayer, Source};

/// A model input and the name data set columns use for it.
pub(crate) struct GraphInput {
    pub(crate) node: Node,
    pub(crate) name: String,
}

/// A layer of the model, named.
pub(crate) struct GraphLayer {
    pub(crate) name: String,
    pub(crate) layer: LayerRef,
}

/// A single-input layer (possibly applied several times) or a merge.
#[derive(Clone)]
pub(crate) enum LayerRef {
    Single(SharedLayer),
    Merge(Arc<dyn MergeLayer>),
}

impl LayerRef {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            LayerRef::Single(l) => l.kind(),
            LayerRef::Merge(m) => m.kind(),
        }
    }

    pub(crate) fn config(&self) -> serde_json::Value {
        match self {
            LayerRef::Single(l) => l.layer().config(),
            LayerRef::Merge(m) => m.config(),
        }
    }

    fn same(&self, other: &LayerRef) -> bool {
        match (self, other) {
            (LayerRef::Single(a), LayerRef::Single(b)) => a.same_layer(b),
            (LayerRef::Merge(a), LayerRef::Merge(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// One layer call: the node it computes, which layer, and the value slots it reads.
pub(crate) struct Step {
    pub(crate) node: Node,
    pub(crate) layer: usize,
    pub(crate) args: Vec<usize>,
}

/// The validated graph.
pub(crate) struct Graph {
    pub(crate) inputs: Vec<GraphInput>,
    pub(crate) outputs: Vec<Node>,
    /// Value slots: inputs first (`0..inputs.len()`), then one per step.
    pub(crate) steps: Vec<Step>,
    pub(crate) layers: Vec<GraphLayer>,
    /// The slot of each output.
    pub(crate) output_slots: Vec<usize>,
    /// Per slot, the last step that reads it (`None`: no step does).
    pub(crate) last_read: Vec<Option<usize>>,
}

fn invalid(message: String) -> Error {
    Error::argument("Model::new", message)
}

impl Graph {
    /// Validates the graph from `inputs` to `outputs`: every output computed from the given inputs
    /// only, every input used, each input given once, layer names unique.
    pub(crate) fn new(inputs: &[&Node], outputs: &[&Node]) -> Result<Graph> {
        if inputs.is_empty() || outputs.is_empty() {
            return Err(invalid(format!(
                "a model needs inputs and outputs, got {} inputs and {} outputs",
                inputs.len(),
                outputs.len()
            )));
        }
        let mut input_ids = HashSet::new();
        for input in inputs {
            if !input.is_input() {
                return Err(invalid(format!(
                    "inputs must be Input nodes, but {} is a layer's output",
                    input.describe()
                )));
            }
            if !input_ids.insert(input.id()) {
                return Err(invalid(format!(
                    "{} is given twice as an input",
                    input.describe()
                )));
            }
        }
        let mut reached: HashMap<u64, Node> = HashMap::new();
        for (i, output) in outputs.iter().enumerate() {
            for node in output.ancestors() {
                if node.is_input() && !input_ids.contains(&node.id()) {
                    return Err(invalid(format!(
                        "output {i} ({}) is computed from {}, which is not among the model's \
                         inputs: pass it to Model::new",
                        output.describe(),
                        node.describe()
                    )));
                }
                reached.insert(node.id(), node);
            }
        }
        if let Some(unused) = inputs.iter().find(|n| !reached.contains_key(&n.id())) {
            return Err(invalid(format!(
                "{} is not used by any output: remove it from the inputs or connect it",
                unused.describe()
            )));
        }
        // Creation order is a topological order: a node is made only from nodes that exist.
        let mut nodes: Vec<Node> = reached.into_values().filter(|n| !n.is_input()).collect();
        nodes.sort_by_key(Node::id);

        let mut slots: HashMap<u64, usize> = HashMap::new();
        for (i, input) in inputs.iter().enumerate() {
            slots.insert(input.id(), i);
        }
        let mut layers: Vec<LayerRef> = Vec::new();
        let mut steps = Vec::with_capacity(nodes.len());
        for (i, node) in nodes.iter().enumerate() {
            let layer = match node.source() {
                Source::Layer { layer, .. } => LayerRef::Single(layer.clone()),
                Source::Merge { layer, .. } => LayerRef::Merge(layer.clone()),
                Source::Input { .. } => continue,
            };
            let index = match layers.iter().position(|l| l.same(&layer)) {
                Some(index) => index,
                None => {
                    layers.push(layer);
                    layers.len() - 1
                }
            };
            let args = node.parents().iter().map(|p| slots[&p.id()]).collect();
            slots.insert(node.id(), inputs.len() + i);
            steps.push(Step {
                node: node.clone(),
                layer: index,
                args,
            });
        }
        let mut last_read = vec![None; inputs.len() + steps.len()];
        for (i, step) in steps.iter().enumerate() {
            for &a in &step.args {
                last_read[a] = Some(i);
            }
        }
        Ok(Graph {
            inputs: name_inputs(inputs)?,
            output_slots: outputs.iter().map(|o| slots[&o.id()]).collect(),
            outputs: outputs.iter().map(|&o| o.clone()).collect(),
            steps,
            layers: name_layers(layers)?,
            last_read,
        })
    }

    /// The graph of a model whose output is its input (a `Sequential` before its first layer).
    pub(crate) fn identity(input: &Input) -> Graph {
        let node = input.node().clone();
        let name = match node.source() {
            Source::Input { name: Some(name) } => name.clone(),
            _ => "input".to_string(),
        };
        Graph {
            inputs: vec![GraphInput {
                node: node.clone(),
                name,
            }],
            outputs: vec![node],
            steps: Vec::new(),
            layers: Vec::new(),
            output_slots: vec![0],
            last_read: vec![None],
        }
    }

    /// The step that computes slot `slot`, if it is not an input.
    pub(crate) fn step_of(&self, slot: usize) -> Option<&Step> {
        slot.checked_sub(self.inputs.len())
            .and_then(|i| self.steps.get(i))
    }

    /// The single-input layers, each once.
    pub(crate) fn single_layers(&self) -> impl Iterator<Item = (&str, &SharedLayer)> {
        self.layers.iter().filter_map(|l| match &l.layer {
            LayerRef::Single(layer) => Some((l.name.as_str(), layer)),
            LayerRef::Merge(_) => None,
        })
    }
}

/// Input names: the given ones, else `input`, `input_1`, ... in order, skipping names in use.
fn name_inputs(inputs: &[&Node]) -> Result<Vec<GraphInput>> {
    let given: Vec<Option<String>> = inputs
        .iter()
        .map(|n| match n.source() {
            Source::Input { name } => name.clone(),
            _ => None,
        })
        .collect();
    let mut taken: HashSet<String> = HashSet::new();
    for name in given.iter().flatten() {
        if !taken.insert(name.clone()) {
            return Err(invalid(format!(
                "two inputs are named {name:?}; input names must be unique"
            )));
        }
    }
    let mut unnamed = 0;
    let mut out = Vec::with_capacity(inputs.len());
    for (node, name) in inputs.iter().zip(given) {
        let name = name.unwrap_or_else(|| next_free("input", &mut unnamed, &mut taken));
        out.push(GraphInput {
            node: (*node).clone(),
            name,
        });
    }
    Ok(out)
}

/// Layer names: the given ones, else `kind`, `kind_1`, ... per kind in order, skipping names in use
/// (so a `Sequential` model's layers are `conv2d`, `dense`, `dense_1`, as before).
fn name_layers(layers: Vec<LayerRef>) -> Result<Vec<GraphLayer>> {
    let given: Vec<Option<String>> = layers
        .iter()
        .map(|l| match l {
            LayerRef::Single(layer) => layer.name(),
            LayerRef::Merge(_) => None,
        })
        .collect();
    let mut taken: HashSet<String> = HashSet::new();
    for name in given.iter().flatten() {
        if !taken.insert(name.clone()) {
            return Err(invalid(format!(
                "two layers are named {name:?}; layer names must be unique in a model"
            )));
        }
    }
    let mut per_kind: HashMap<&'static str, usize> = HashMap::new();
    Ok(layers
        .into_iter()
        .zip(given)
        .map(|(layer, name)| {
            let name = name.unwrap_or_else(|| {
                let count = per_kind.entry(layer.kind()).or_insert(0);
                next_free(layer.kind(), count, &mut taken)
            });
            GraphLayer { name, layer }
        })
        .collect())
}

/// `base` or `base_n` for the first `n >= *count` not taken; takes it and advances the count.
fn next_free(base: &str, count: &mut usize, taken: &mut HashSet<String>) -> String {
    loop {
        let name = match *count {
            0 => base.to_string(),
            n => format!("{base}_{n}"),
        };
        *count += 1;
        if taken.insert(name.clone()) {
            return name;
        }
    }
}
