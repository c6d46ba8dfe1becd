//! Merge layers: layers of several inputs (Keras's `Concatenate`, `Add`, `Multiply`, `Dot`). They
//! have no weights; their input shapes are checked when they are applied, so a mismatch is an
//! error naming the layer and the shapes while the graph is built.

use std::sync::Arc;

use kiln_autograd::Tensor;
use kiln_device::{DType, Error, Result};

use super::names::keras_type_name;
use super::node::{Node, Source};
use crate::shape::batched;

/// A layer of several inputs. Axes count the batch as axis 0, as in Keras.
pub trait MergeLayer: Send + Sync {
    /// The Keras kind (`concatenate`, `add`, `multiply`, `dot`), used for default names.
    fn kind(&self) -> &'static str;

    /// The per-sample output shape for per-sample input shapes `inputs`; an error names the layer
    /// (`name`) and the shapes when they do not fit together.
    fn output_shape(&self, name: &str, inputs: &[&[usize]]) -> Result<Vec<usize>>;

    /// The output for a batch of each input.
    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor>;

    /// The mask of the output given the inputs' masks (`[batch, steps]`); by default none.
    fn output_mask(&self, inputs: &[&Tensor], masks: &[Option<&Tensor>]) -> Result<Option<Tensor>> {
        let _ = (inputs, masks);
        Ok(None)
    }

    /// The hyperparameters as Keras-style JSON (`{"kind": "dot", "axes": [1, 1], ...}`).
    fn config(&self) -> serde_json::Value;

    /// The layer applied to `inputs` (Keras's `Concatenate()([a, b])`).
    fn apply(self, inputs: &[&Node]) -> Result<Node>
    where
        Self: Sized + 'static,
    {
        apply_merge(Arc::new(self), inputs)
    }
}

/// Applies a merge layer: checks the inputs and their shapes and makes the output node.
pub(crate) fn apply_merge(layer: Arc<dyn MergeLayer>, inputs: &[&Node]) -> Result<Node> {
    let kind = layer.kind();
    let name = provisional_name(kind, inputs);
    let type_name = keras_type_name(kind);
    if inputs.len() < 2 {
        return Err(Error::argument(
            "apply",
            format!(
                "layer {name} ({type_name}) merges at least two inputs, got {}",
                inputs.len()
            ),
        ));
    }
    if let Some(ids) = inputs.iter().find(|n| n.dtype() != DType::F32) {
        return Err(Error::invalid(
            "apply",
            format!(
                "layer {name} ({type_name}) takes f32 values, but {} holds integer ids: pass ids \
                 through an Embedding first",
                ids.describe()
            ),
        ));
    }
    let shapes: Vec<&[usize]> = inputs.iter().map(|n| n.shape()).collect();
    let output = layer.output_shape(&name, &shapes)?;
    Ok(Node::new(
        output,
        DType::F32,
        Source::Merge {
            layer,
            inputs: inputs.iter().map(|&n| n.clone()).collect(),
        },
    ))
}

/// `kind` or `kind_n`, `n` counting the merges of that kind the inputs depend on.
fn provisional_name(kind: &str, inputs: &[&Node]) -> String {
    let mut ids = std::collections::HashSet::new();
    for node in inputs.iter().flat_map(|n| n.ancestors()) {
        if let Source::Merge { layer, .. } = node.source()
            && layer.kind() == kind
        {
            ids.insert(node.id());
        }
    }
    match ids.len() {
        0 => kind.to_string(),
        n => format!("{kind}_{n}"),
    }
}

/// `(None, 4), (None, 3)` for messages.
fn listed(shapes: &[&[usize]]) -> String {
    shapes
        .iter()
        .map(|s| batched(s))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// A Keras axis (batch = 0, negative from the end) as a per-sample axis in `0..rank`.
fn sample_axis(axis: i32, rank: usize) -> Option<usize> {
    let full = if axis < 0 {
        rank as i64 + 1 + i64::from(axis)
    } else {
        i64::from(axis)
    };
    (1..=rank as i64).contains(&full).then(|| full as usize - 1)
}

/// `Err` unless `inputs` are at least two batches of samples (a direct `forward` call with fewer).
fn check_batches(kind: &str, inputs: &[&Tensor]) -> Result<usize> {
    if inputs.len() < 2 || inputs.iter().any(|x| x.dims().is_empty()) {
        return Err(Error::invalid(
            "forward",
            format!(
                "a {} layer merges at least two batched inputs, got {}",
                keras_type_name(kind),
                inputs.len()
            ),
        ));
    }
    Ok(inputs[0].dims().len() - 1)
}

/// The product of the masks that are present (a step counts when every input has it).
fn masks_and(masks: &[Option<&Tensor>]) -> Result<Option<Tensor>> {
    let mut out: Option<Tensor> = None;
    for mask in masks.iter().flatten() {
        out = Some(match out {
            Some(m) => m.mul(mask)?,
            None => (*mask).clone(),
        });
    }
    Ok(out)
}

/// Joins inputs along an axis (Keras's `Concatenate(axis=-1)`).
#[derive(Debug, Clone, Copy)]
pub struct Concatenate {
    axis: i32,
}

impl Concatenate {
    /// Joins along the last axis.
    pub fn new() -> Self {
        Concatenate { axis: -1 }
    }

    /// Joins along `axis` (Keras's numbering: 1 is the first axis of a sample, -1 the last).
    pub fn axis(mut self, axis: i32) -> Self {
        self.axis = axis;
        self
    }
}

impl Default for Concatenate {
    fn default() -> Self {
        Concatenate::new()
    }
}

impl MergeLayer for Concatenate {
    fn kind(&self) -> &'static str {
        "concatenate"
    }

    fn output_shape(&self, name: &str, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let rank = inputs.first().map_or(0, |s| s.len());
        let axis = sample_axis(self.axis, rank).filter(|_| inputs.iter().all(|s| s.len() == rank));
        let Some(axis) = axis else {
            return Err(Error::invalid(
                "apply",
                format!(
                    "layer {name} (Concatenate): cannot join inputs {} along axis {}: the inputs \
                     need one rank and an axis in 1..={rank} (or negative)",
                    listed(inputs),
                    self.axis
                ),
            ));
        };
        let mut out = inputs[0].to_vec();
        for shape in &inputs[1..] {
            let fits = (0..rank).all(|d| d == axis || shape[d] == out[d]);
            if !fits {
                return Err(Error::invalid(
                    "apply",
                    format!(
                        "layer {name} (Concatenate): inputs {} do not match outside axis {}: every \
                         dimension but the joined one must be equal",
                        listed(inputs),
                        self.axis
                    ),
                ));
            }
            out[axis] += shape[axis];
        }
        Ok(out)
    }

    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let rank = check_batches(self.kind(), inputs)?;
        let axis = sample_axis(self.axis, rank).ok_or_else(|| {
            Error::invalid("Concatenate", format!("axis {} is out of range", self.axis))
        })?;
        Tensor::concat(inputs, axis + 1)
    }

    fn output_mask(&self, inputs: &[&Tensor], masks: &[Option<&Tensor>]) -> Result<Option<Tensor>> {
        if masks.iter().all(Option::is_none) {
            return Ok(None);
        }
        let rank = check_batches(self.kind(), inputs)?;
        match sample_axis(self.axis, rank) {
            // Joined along the steps: the steps' masks are joined too (inputs without one: all real).
            Some(0) if rank >= 2 => {
                let filled = inputs
                    .iter()
                    .zip(masks)
                    .map(|(x, m)| match m {
                        Some(m) => Ok((*m).clone()),
                        None => Tensor::ones([x.dims()[0], x.dims()[1]], x.device()),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Some(Tensor::concat(&filled.iter().collect::<Vec<_>>(), 1)?))
            }
            Some(_) if rank >= 2 => masks_and(masks),
            _ => Ok(None),
        }
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "kind": self.kind(), "axis": self.axis })
    }
}

/// The per-sample shape two inputs of an elementwise merge broadcast to (Keras: equal dimensions,
/// or 1 against any).
fn broadcast(name: &str, type_name: &str, inputs: &[&[usize]]) -> Result<Vec<usize>> {
    let Some((first, rest)) = inputs.split_first() else {
        return Err(Error::argument(
            "apply",
            format!("layer {name} ({type_name}) merges at least two inputs, got none"),
        ));
    };
    let mut out = first.to_vec();
    for shape in rest {
        let fits = shape.len() == out.len()
            && shape
                .iter()
                .zip(&out)
                .all(|(&a, &b)| a == b || a == 1 || b == 1);
        if !fits {
            return Err(Error::invalid(
                "apply",
                format!(
                    "layer {name} ({type_name}): inputs {} have different shapes ({type_name} takes \
                     inputs of one shape, or of size 1 where they differ)",
                    listed(inputs)
                ),
            ));
        }
        for (o, &d) in out.iter_mut().zip(shape.iter()) {
            *o = (*o).max(d);
        }
    }
    Ok(out)
}

/// The elementwise sum of its inputs (Keras's `Add`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Add;

impl Add {
    /// The layer.
    pub fn new() -> Self {
        Add
    }
}

impl MergeLayer for Add {
    fn kind(&self) -> &'static str {
        "add"
    }

    fn output_shape(&self, name: &str, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        broadcast(name, "Add", inputs)
    }

    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        check_batches(self.kind(), inputs)?;
        let mut sum = inputs[0].add(inputs[1])?;
        for x in &inputs[2..] {
            sum = sum.add(x)?;
        }
        Ok(sum)
    }

    fn output_mask(&self, _: &[&Tensor], masks: &[Option<&Tensor>]) -> Result<Option<Tensor>> {
        masks_and(masks)
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "kind": self.kind() })
    }
}

/// The elementwise product of its inputs (Keras's `Multiply`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Multiply;

impl Multiply {
    /// The layer.
    pub fn new() -> Self {
        Multiply
    }
}

impl MergeLayer for Multiply {
    fn kind(&self) -> &'static str {
        "multiply"
    }

    fn output_shape(&self, name: &str, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        broadcast(name, "Multiply", inputs)
    }

    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        check_batches(self.kind(), inputs)?;
        let mut product = inputs[0].mul(inputs[1])?;
        for x in &inputs[2..] {
            product = product.mul(x)?;
        }
        Ok(product)
    }

    fn output_mask(&self, _: &[&Tensor], masks: &[Option<&Tensor>]) -> Result<Option<Tensor>> {
        masks_and(masks)
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "kind": self.kind() })
    }
}

/// Which axis of each input [`Dot`] sums over: one for both (`1`, `-1`) or a pair (`(1, 2)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DotAxes(pub i32, pub i32);

impl From<i32> for DotAxes {
    fn from(axis: i32) -> Self {
        DotAxes(axis, axis)
    }
}

impl From<(i32, i32)> for DotAxes {
    fn from((a, b): (i32, i32)) -> Self {
        DotAxes(a, b)
    }
}

/// The dot product of two inputs along an axis of each (Keras's `Dot(axes, normalize)`): samples
/// `[d]` and `[d]` give `[1]`; `[n, d]` and `[m, d]` with `axes = 2` give `[n, m]`. With
/// `normalize(true)` both inputs are L2-normalised along their axes first, so the output is the
/// cosine similarity.
#[derive(Debug, Clone, Copy)]
pub struct Dot {
    axes: DotAxes,
    normalize: bool,
}

impl Dot {
    /// Sums over `axes` (Keras's numbering: 1 is the first axis of a sample, -1 the last).
    pub fn new(axes: impl Into<DotAxes>) -> Self {
        Dot {
            axes: axes.into(),
            normalize: false,
        }
    }

    /// L2-normalises both inputs first (the output is then the cosine similarity).
    pub fn normalize(mut self, normalize: bool) -> Self {
        self.normalize = normalize;
        self
    }

    /// The per-sample axes, checked against the per-sample ranks.
    fn sample_axes(&self, ranks: (usize, usize)) -> Option<(usize, usize)> {
        if !(1..=2).contains(&ranks.0) || !(1..=2).contains(&ranks.1) {
            return None;
        }
        Some((
            sample_axis(self.axes.0, ranks.0)?,
            sample_axis(self.axes.1, ranks.1)?,
        ))
    }
}

/// `x / sqrt(max(sum(x², axis), 1e-12))`, Keras's `l2_normalize`.
fn l2_normalize(x: &Tensor, axis: usize) -> Result<Tensor> {
    let norm = x
        .mul(x)?
        .sum(axis as isize, true)?
        .maximum_scalar(1e-12)?
        .sqrt()?;
    x.div(&norm)
}

impl MergeLayer for Dot {
    fn kind(&self) -> &'static str {
        "dot"
    }

    fn output_shape(&self, name: &str, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let &[x, y] = inputs else {
            return Err(Error::invalid(
                "apply",
                format!(
                    "layer {name} (Dot) takes exactly two inputs, got {}",
                    inputs.len()
                ),
            ));
        };
        let Some((a, b)) = self.sample_axes((x.len(), y.len())) else {
            return Err(Error::invalid(
                "apply",
                format!(
                    "layer {name} (Dot): axes {:?} do not fit inputs {} (Dot takes samples of rank 1 \
                     or 2 and axes in 1..=rank, or negative)",
                    (self.axes.0, self.axes.1),
                    listed(inputs)
                ),
            ));
        };
        if x[a] != y[b] {
            return Err(Error::invalid(
                "apply",
                format!(
                    "layer {name} (Dot): inputs {} differ along axes {:?} ({} vs {}): the summed \
                     axes must have one size",
                    listed(inputs),
                    (self.axes.0, self.axes.1),
                    x[a],
                    y[b]
                ),
            ));
        }
        let mut out: Vec<usize> = (0..x.len()).filter(|&d| d != a).map(|d| x[d]).collect();
        out.extend((0..y.len()).filter(|&d| d != b).map(|d| y[d]));
        if out.is_empty() {
            out.push(1);
        }
        Ok(out)
    }

    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        check_batches(self.kind(), inputs)?;
        let &[x, y] = inputs else {
            return Err(Error::invalid("Dot", "takes exactly two inputs"));
        };
        let ranks = (x.dims().len() - 1, y.dims().len() - 1);
        let (a, b) = self.sample_axes(ranks).ok_or_else(|| {
            Error::invalid("Dot", format!("axes {:?} do not fit the inputs", self.axes))
        })?;
        let (x, y) = if self.normalize {
            (l2_normalize(x, a + 1)?, l2_normalize(y, b + 1)?)
        } else {
            (x.clone(), y.clone())
        };
        let batch = x.dims()[0];
        if ranks == (1, 1) {
            return x.mul(&y)?.sum(1, true);
        }
        // As a batched matmul [batch, n, k] · [batch, k, m] (transposes are views).
        // x contracts its last axis and y its first: a sample [n, d] summed over d (axis 1) is
        // used as is, over n (axis 0) transposed; the other way round for y.
        let x3 = match (ranks.0, a) {
            (1, _) => x.unsqueeze(1)?,
            (_, 0) => x.transpose(1, 2)?,
            _ => x,
        };
        let y3 = match (ranks.1, b) {
            (1, _) => y.unsqueeze(2)?,
            (_, 0) => y,
            _ => y.transpose(1, 2)?,
        };
        let z = x3.matmul(&y3)?;
        let shape: Vec<usize> = std::iter::once(batch)
            .chain(
                z.dims()[1..]
                    .iter()
                    .zip([ranks.0 == 2, ranks.1 == 2])
                    .filter(|(_, kept)| *kept)
                    .map(|(&d, _)| d),
            )
            .collect();
        z.reshape(shape)
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind(),
            "axes": [self.axes.0, self.axes.1],
            "normalize": self.normalize,
        })
    }
}
