//! Symbolic nodes: what `Input` and applied layers return. A node knows its per-sample shape, its
//! dtype and where it came from; it holds no data. Nodes are immutable and made only from nodes
//! that already exist, so a graph of them can never contain a cycle, and their creation order
//! (`id`) is a topological order.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kiln_device::DType;

use super::merge::MergeLayer;
use super::shared::SharedLayer;
use crate::shape::{IntoShape, batched};

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Where a node's value comes from.
pub(crate) enum Source {
    /// A model input, fed by the data.
    Input { name: Option<String> },
    /// A single-input layer applied to `input`.
    Layer { layer: SharedLayer, input: Node },
    /// A merge layer applied to several nodes.
    Merge {
        layer: Arc<dyn MergeLayer>,
        inputs: Vec<Node>,
    },
}

pub(crate) struct NodeInner {
    pub(crate) id: u64,
    pub(crate) shape: Vec<usize>,
    pub(crate) dtype: DType,
    pub(crate) source: Source,
}

/// A symbolic tensor of a graph under construction (Keras's `KerasTensor`): an [`Input`], or the
/// output of a layer applied to nodes. Clones refer to the same node.
#[derive(Clone)]
pub struct Node(pub(crate) Arc<NodeInner>);

impl Node {
    pub(crate) fn new(shape: Vec<usize>, dtype: DType, source: Source) -> Node {
        Node(Arc::new(NodeInner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            shape,
            dtype,
            source,
        }))
    }

    /// The shape of one sample (no batch dimension).
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    /// `F32` for values, `U32` for integer ids.
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }

    /// Whether this node is a model input.
    pub fn is_input(&self) -> bool {
        matches!(self.0.source, Source::Input { .. })
    }

    /// The creation number: unique, and larger than every node this one was made from.
    pub(crate) fn id(&self) -> u64 {
        self.0.id
    }

    pub(crate) fn source(&self) -> &Source {
        &self.0.source
    }

    /// The nodes this one was computed from.
    pub(crate) fn parents(&self) -> Vec<&Node> {
        match &self.0.source {
            Source::Input { .. } => Vec::new(),
            Source::Layer { input, .. } => vec![input],
            Source::Merge { inputs, .. } => inputs.iter().collect(),
        }
    }

    /// Every node this one depends on, itself included, each once.
    pub(crate) fn ancestors(&self) -> Vec<Node> {
        let mut seen = HashSet::new();
        let mut stack = vec![self.clone()];
        let mut out = Vec::new();
        while let Some(node) = stack.pop() {
            if seen.insert(node.id()) {
                stack.extend(node.parents().into_iter().cloned());
                out.push(node);
            }
        }
        out
    }

    /// For error messages: `input "user" (None, 1)`, `the output (None, 8) of layer dense (Dense)`.
    pub(crate) fn describe(&self) -> String {
        let shape = batched(self.shape());
        match &self.0.source {
            Source::Input { name: Some(name) } => format!("input {name:?} {shape}"),
            Source::Input { name: None } => format!("an unnamed input {shape}"),
            Source::Layer { layer, .. } => format!(
                "the output {shape} of layer {} ({})",
                layer.display_name(),
                layer.type_name()
            ),
            Source::Merge { layer, .. } => format!(
                "the output {shape} of a {} layer",
                super::names::keras_type_name(layer.kind())
            ),
        }
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({}, {})", self.describe(), self.dtype())
    }
}

/// A model input (Keras's `keras.Input`): the shape of one sample and whether it holds f32 values
/// or integer ids. Use it wherever a [`Node`] is expected (it dereferences to one).
///
/// ```
/// use kiln_nn::prelude::*;
/// let pixels = Input::new((1, 28, 28)); // f32 features, channels first
/// let user = Input::ids([1]).named("user"); // one u32 id per sample
/// assert_eq!(user.shape(), &[1]);
/// ```
#[derive(Clone, Debug)]
pub struct Input {
    node: Node,
}

impl Input {
    /// An input of f32 values, `shape` per sample (`30`, `(28, 28)`, `[1, 28, 28]`).
    pub fn new(shape: impl IntoShape) -> Input {
        Input::with(shape.into_shape(), DType::F32, None)
    }

    /// An input of u32 ids (for `Embedding`), `shape` per sample (`[1]`, `[steps]`).
    pub fn ids(shape: impl IntoShape) -> Input {
        Input::with(shape.into_shape(), DType::U32, None)
    }

    /// The same input named `name`: data set columns of that name feed it
    /// (`Dataset::from_inputs`), and errors and summaries call it so.
    pub fn named(self, name: &str) -> Input {
        Input::with(self.node.0.shape.clone(), self.node.0.dtype, Some(name))
    }

    pub(crate) fn with(shape: Vec<usize>, dtype: DType, name: Option<&str>) -> Input {
        Input {
            node: Node::new(
                shape,
                dtype,
                Source::Input {
                    name: name.map(str::to_string),
                },
            ),
        }
    }

    /// The same input (shape and name) holding `dtype` values.
    pub(crate) fn with_dtype(&self, dtype: DType) -> Input {
        let name = match self.node.source() {
            Source::Input { name } => name.clone(),
            _ => None,
        };
        Input::with(self.node.0.shape.clone(), dtype, name.as_deref())
    }

    /// The input's node.
    pub fn node(&self) -> &Node {
        &self.node
    }
}

impl std::ops::Deref for Input {
    type Target = Node;

    fn deref(&self) -> &Node {
        &self.node
    }
}

impl From<Input> for Node {
    fn from(input: Input) -> Node {
        input.node
    }
}

impl From<&Input> for Node {
    fn from(input: &Input) -> Node {
        input.node.clone()
    }
}
