//! The recorded graph and reverse-mode differentiation: each op's output holds a [`Node`] with its
//! inputs and a closure that maps the output's gradient to the inputs' gradients. `backward` runs the
//! closures in reverse topological order, releasing each node's saved tensors as soon as it has run.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Mutex;

use kiln_device::{BinaryOp, DType, Error, RawTensor, Result};

use crate::{Tensor, TensorId};

/// Maps the gradient of an op's output to the gradients of its inputs (`None`: no gradient).
pub(crate) type BackwardFn =
    Box<dyn FnOnce(&RawTensor) -> Result<Vec<Option<RawTensor>>> + Send + Sync>;

/// How an op's output was made.
pub(crate) struct Node {
    pub(crate) op: &'static str,
    inputs: Mutex<Vec<Tensor>>,
    backward: Mutex<Option<BackwardFn>>,
}

impl Node {
    pub(crate) fn new(op: &'static str, inputs: Vec<Tensor>, backward: BackwardFn) -> Self {
        Node {
            op,
            inputs: Mutex::new(inputs),
            backward: Mutex::new(Some(backward)),
        }
    }

    fn inputs(&self) -> Vec<Tensor> {
        self.inputs.lock().unwrap().clone()
    }
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Runs `f` without recording any op (inference, optimizer updates). Nests; restores on return.
pub fn no_grad<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            GRAD_ENABLED.with(|g| g.set(self.0));
        }
    }
    let _restore = Restore(GRAD_ENABLED.with(|g| g.replace(false)));
    f()
}

/// Whether ops on this thread are being recorded.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Gradients of a backward pass, by tensor; they live on the tensors' device.
#[derive(Default, Debug)]
pub struct Gradients {
    grads: HashMap<TensorId, RawTensor>,
}

impl Gradients {
    /// The gradient of `tensor` (a leaf that requires grad and took part), as a tensor without history.
    pub fn get(&self, tensor: &Tensor) -> Option<Tensor> {
        self.grads
            .get(&tensor.id())
            .map(|g| Tensor::from_raw(g.clone()))
    }

    /// The gradient of the tensor with this id.
    pub fn get_raw(&self, id: TensorId) -> Option<&RawTensor> {
        self.grads.get(&id)
    }

    /// Removes and returns a gradient.
    pub fn remove(&mut self, tensor: &Tensor) -> Option<RawTensor> {
        self.grads.remove(&tensor.id())
    }

    /// Sets the gradient of the tensor with this id (for code that transforms gradients, such as
    /// clipping, before an optimizer step).
    pub fn insert(&mut self, id: TensorId, grad: RawTensor) {
        self.grads.insert(id, grad);
    }

    /// Number of gradients held.
    pub fn len(&self) -> usize {
        self.grads.len()
    }

    /// Whether no gradient is held.
    pub fn is_empty(&self) -> bool {
        self.grads.is_empty()
    }
}

/// Adds `grad` into the slot of `id`.
fn accumulate(
    grads: &mut HashMap<TensorId, RawTensor>,
    id: TensorId,
    grad: RawTensor,
) -> Result<()> {
    let total = match grads.remove(&id) {
        Some(existing) => existing.binary(BinaryOp::Add, &grad)?,
        None => grad,
    };
    grads.insert(id, total);
    Ok(())
}

/// Every tensor `root` depends on, each after all the tensors that consume it (reverse topological).
fn reverse_topological(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut visited = std::collections::HashSet::new();
    // Iterative post-order DFS: (tensor, inputs expanded?)
    let mut stack = vec![(root.clone(), false)];
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if !visited.insert(t.id()) {
            continue;
        }
        let inputs = t.node().map(Node::inputs).unwrap_or_default();
        stack.push((t, true));
        for input in inputs.into_iter().rev() {
            if input.requires_grad() && !visited.contains(&input.id()) {
                stack.push((input, false));
            }
        }
    }
    order.reverse();
    order
}

/// Runs backward from `root` seeded with `seed` (same shape as `root`).
pub(crate) fn backward(root: &Tensor, seed: RawTensor) -> Result<Gradients> {
    if !root.requires_grad() {
        return Err(Error::usage(
            "backward",
            format!(
                "the tensor {} does not require grad: no op on its path had an input that requires grad \
                 (mark parameters with Var::new or .requires_grad(), and do not call backward inside no_grad)",
                root.shape()
            ),
        ));
    }
    let mut pending: HashMap<TensorId, RawTensor> = HashMap::new();
    pending.insert(root.id(), seed);
    let mut leaves = HashMap::new();
    let mut order: Vec<Option<Tensor>> = reverse_topological(root).into_iter().map(Some).collect();
    for slot in order.iter_mut() {
        let tensor = slot.take().expect("each tensor is visited once");
        let Some(grad) = pending.remove(&tensor.id()) else {
            continue;
        };
        let Some(node) = tensor.node() else {
            leaves.insert(tensor.id(), grad);
            continue;
        };
        let inputs = std::mem::take(&mut *node.inputs.lock().unwrap());
        let run = node.backward.lock().unwrap().take().ok_or_else(|| {
            Error::usage(
                "backward",
                format!(
                    "the graph through {} was already differentiated and its saved tensors released; \
                     run the forward pass again",
                    node.op
                ),
            )
        })?;
        let input_grads = run(&grad)?;
        for (input, g) in inputs.iter().zip(input_grads) {
            if let Some(g) = g
                && input.requires_grad()
            {
                if g.shape() != input.shape() {
                    return Err(Error::invalid(
                        "backward",
                        format!(
                            "{}: gradient {} does not match input {}",
                            node.op,
                            g.shape(),
                            input.shape()
                        ),
                    ));
                }
                accumulate(&mut pending, input.id(), g)?;
            }
        }
    }
    Ok(Gradients { grads: leaves })
}

/// A gradient of ones shaped like `t` (the seed of a scalar loss).
pub(crate) fn ones_like(t: &Tensor) -> Result<RawTensor> {
    RawTensor::ones(t.shape().clone(), DType::F32, t.device())
}
