//! The executor: runs the graph's steps in order on a batch, carrying each value's mask along the
//! edges (`forward_masked` with the input's mask, `output_mask` to the consumers), and the checks
//! on what is fed in (count, shape, dtype, device).

use kiln_autograd::{Tensor, no_grad};
use kiln_device::{Device, Error, Result};

use super::Model;
use super::device::on_device;
use super::graph::{Graph, LayerRef};
use crate::data::{Batches, Dataset};
use crate::layers::Activation;
use crate::shape::{batched, tuple};

/// What a model takes as its inputs: one tensor (`&x`) or one per input, in the model's input
/// order (`&[&users, &items]`, `&batch.inputs`).
pub trait ModelInputs {
    /// The tensors, in order.
    fn into_tensors(self) -> Vec<Tensor>;
}

impl ModelInputs for &Tensor {
    fn into_tensors(self) -> Vec<Tensor> {
        vec![self.clone()]
    }
}

impl ModelInputs for &[Tensor] {
    fn into_tensors(self) -> Vec<Tensor> {
        self.to_vec()
    }
}

impl ModelInputs for &Vec<Tensor> {
    fn into_tensors(self) -> Vec<Tensor> {
        self.clone()
    }
}

impl ModelInputs for &[&Tensor] {
    fn into_tensors(self) -> Vec<Tensor> {
        self.iter().map(|&t| t.clone()).collect()
    }
}

impl<const N: usize> ModelInputs for &[&Tensor; N] {
    fn into_tensors(self) -> Vec<Tensor> {
        self.iter().map(|&t| t.clone()).collect()
    }
}

impl<const N: usize> ModelInputs for &[Tensor; N] {
    fn into_tensors(self) -> Vec<Tensor> {
        self.to_vec()
    }
}

/// A value flowing along an edge and its mask.
type Value = (Tensor, Option<Tensor>);

impl Model {
    /// `inputs` checked against the model's inputs (count and per-sample shape; a dtype that
    /// differs is cast, as Keras does) and moved to `device`.
    pub(crate) fn prepare(&self, inputs: Vec<Tensor>, device: &Device) -> Result<Vec<Tensor>> {
        let expected = &self.graph.inputs;
        if inputs.len() != expected.len() {
            return Err(Error::invalid(
                "forward",
                format!(
                    "model {:?} takes {} input(s) ({}), got {}",
                    self.name,
                    expected.len(),
                    self.input_names().join(", "),
                    inputs.len()
                ),
            ));
        }
        inputs
            .into_iter()
            .zip(expected)
            .enumerate()
            .map(|(i, (x, input))| {
                let shape = input.node.shape();
                if x.dims().len() != shape.len() + 1 || &x.dims()[1..] != shape {
                    return Err(Error::invalid(
                        "forward",
                        format!(
                            "input {i} ({:?}) of model {:?} is incompatible: expected shape {}, got {}",
                            input.name,
                            self.name,
                            batched(shape),
                            tuple(x.dims())
                        ),
                    ));
                }
                let x = if x.dtype() == input.node.dtype() {
                    x
                } else {
                    Tensor::from_raw(x.raw().cast(input.node.dtype())?)
                };
                on_device(&x, device)
            })
            .collect()
    }

    /// Runs the graph on prepared inputs. Output `o` stops before its layer's activation when
    /// `before_final_activation[o]` (for a loss fused with it; missing entries mean no).
    pub(crate) fn forward(
        &self,
        inputs: Vec<Tensor>,
        training: bool,
        before_final_activation: &[bool],
    ) -> Result<Vec<Tensor>> {
        let graph = &self.graph;
        let n_inputs = graph.inputs.len();
        let mut values: Vec<Option<Value>> = inputs.into_iter().map(|x| Some((x, None))).collect();
        values.resize(n_inputs + graph.steps.len(), None);
        let stops_early = |o: usize| before_final_activation.get(o).copied().unwrap_or(false);
        let fused_slots: Vec<usize> = (graph.output_slots.iter().enumerate())
            .filter(|&(o, _)| stops_early(o))
            .map(|(_, &slot)| slot)
            .collect();
        // The values before the activation of the outputs that stop early, by slot.
        let mut fused: Vec<(usize, Tensor)> = Vec::new();
        // The next step's value, when this step computed it with its own in one fused op.
        let mut computed_ahead: Option<Value> = None;
        for (i, step) in graph.steps.iter().enumerate() {
            let slot = n_inputs + i;
            if let Some(value) = computed_ahead.take() {
                values[slot] = Some(value);
                release_last_reads(graph, i, &mut values);
                continue;
            }
            if let Some(pooled) = self.max_pooled_ahead(i, &values, &fused_slots, training) {
                // This step's output is read only by the next step, a max pooling it fused.
                computed_ahead = Some((pooled?, None));
                release_last_reads(graph, i, &mut values);
                continue;
            }
            let args: Vec<&Value> = step
                .args
                .iter()
                .map(|&a| {
                    values[a].as_ref().ok_or_else(|| {
                        Error::invalid("forward", format!("value {a} was released too early"))
                    })
                })
                .collect::<Result<_>>()?;
            let value = match &graph.layers[step.layer].layer {
                LayerRef::Single(layer) => {
                    let (x, mask) = args[0];
                    if fused_slots.contains(&slot) {
                        let pre = layer.layer().forward_before_activation(x, training)?;
                        fused.push((slot, pre.clone()));
                        // The activated value too, only when another step or output reads it.
                        let read_elsewhere = graph.last_read[slot].is_some()
                            || (graph.output_slots.iter().enumerate())
                                .any(|(o, &s)| s == slot && !stops_early(o));
                        if read_elsewhere {
                            layer.call(x, mask.as_ref(), training)?
                        } else {
                            (pre, None)
                        }
                    } else {
                        layer.call(x, mask.as_ref(), training)?
                    }
                }
                LayerRef::Merge(merge) => {
                    let xs: Vec<&Tensor> = args.iter().map(|(x, _)| x).collect();
                    let masks: Vec<Option<&Tensor>> =
                        args.iter().map(|(_, m)| m.as_ref()).collect();
                    let y = merge.forward(&xs)?;
                    let mask = merge.output_mask(&xs, &masks)?;
                    (y, mask)
                }
            };
            values[slot] = Some(value);
            release_last_reads(graph, i, &mut values);
        }
        graph
            .output_slots
            .iter()
            .enumerate()
            .map(|(o, &slot)| match fused.iter().find(|(s, _)| *s == slot) {
                Some((_, pre)) if stops_early(o) => Ok(pre.clone()),
                _ => values[slot]
                    .as_ref()
                    .map(|(y, _)| y.clone())
                    .ok_or_else(|| {
                        Error::invalid("forward", format!("output {o} was not computed"))
                    }),
            })
            .collect()
    }

    /// Step `i` and the max pooling after it as one op (`Conv2D` with ReLU, then `MaxPooling2D`),
    /// when the pooling is the only reader of step `i`'s output, that output is not a model output
    /// and carries no mask, and the layer has a fused kernel; `None` otherwise.
    fn max_pooled_ahead(
        &self,
        i: usize,
        values: &[Option<Value>],
        fused_slots: &[usize],
        training: bool,
    ) -> Option<Result<Tensor>> {
        let graph = &self.graph;
        let slot = graph.inputs.len() + i;
        let (step, next) = (&graph.steps[i], graph.steps.get(i + 1)?);
        let only_read_by_next = next.args == [slot]
            && graph.last_read[slot] == Some(i + 1)
            && !graph.output_slots.contains(&slot)
            && !fused_slots.contains(&(slot + 1));
        if !only_read_by_next || step.args.len() != 1 {
            return None;
        }
        let (LayerRef::Single(layer), LayerRef::Single(pool)) = (
            &graph.layers[step.layer].layer,
            &graph.layers[next.layer].layer,
        ) else {
            return None;
        };
        let pool = pool.layer().max_pool_params()?;
        match values[step.args[0]].as_ref()? {
            (x, None) => layer.call_max_pooled(x, pool, training),
            (_, Some(_)) => None,
        }
    }

    /// The activation output `o` ends with (`Linear` for merges and inputs).
    pub(crate) fn final_activation(&self, o: usize) -> Activation {
        match self.graph.step_of(self.graph.output_slots[o]) {
            Some(step) => match &self.graph.layers[step.layer].layer {
                LayerRef::Single(layer) => layer.layer().activation(),
                LayerRef::Merge(_) => Activation::Linear,
            },
            None => Activation::Linear,
        }
    }

    /// Each output's name, as Keras names an output's losses and metrics (`price_loss`): the
    /// name of the layer that computes it (an input's name when an output is an input).
    pub fn output_names(&self) -> Vec<String> {
        let graph = &self.graph;
        (graph.output_slots.iter())
            .map(|&slot| match graph.step_of(slot) {
                Some(step) => graph.layers[step.layer].name.clone(),
                None => graph.inputs[slot].name.clone(),
            })
            .collect()
    }

    /// Every output for a batch, recording the ops for autograd (`training` switches dropout and
    /// the like): for custom training loops.
    pub fn call_all(&self, inputs: impl ModelInputs, training: bool) -> Result<Vec<Tensor>> {
        let device = self.place()?;
        let inputs = self.prepare(inputs.into_tensors(), &device)?;
        self.forward(inputs, training, &[])
    }

    /// The output of a one-output model for a batch, recording the ops for autograd: for custom
    /// training loops (`model.call(&batch.inputs, true)?`).
    pub fn call(&self, inputs: impl ModelInputs, training: bool) -> Result<Tensor> {
        self.single_output("call")?;
        Ok(self.call_all(inputs, training)?.remove(0))
    }

    /// The model's output (after every activation) for a batch of inputs, without recording.
    pub fn predict(&self, inputs: impl ModelInputs) -> Result<Tensor> {
        self.single_output("predict")?;
        no_grad(|| Ok(self.call_all(inputs, false)?.remove(0)))
    }

    /// Every output of the model (after every activation) for a batch of inputs, in output order,
    /// without recording: `predict` for multi-output models.
    pub fn predict_all(&self, inputs: impl ModelInputs) -> Result<Vec<Tensor>> {
        no_grad(|| self.call_all(inputs, false))
    }

    /// The model's outputs for every sample of `data`, computed `batch_size` at a time and joined
    /// (on the model's device); the data's targets are not used.
    pub fn predict_dataset(&self, data: &Dataset, batch_size: usize) -> Result<Tensor> {
        self.single_output("predict_dataset")?;
        let device = self.place()?;
        let columns = self.column_order("predict_dataset", data)?;
        let mut parts = Vec::new();
        no_grad(|| {
            for batch in data.batches_of(columns, batch_size, None, &device)? {
                let inputs = self.prepare(batch?.inputs, &device)?;
                parts.push(self.forward(inputs, false, &[])?.remove(0));
            }
            Ok::<_, Error>(())
        })?;
        if parts.is_empty() {
            return Err(Error::argument("predict_dataset", "the data set is empty"));
        }
        Tensor::concat(&parts.iter().collect::<Vec<_>>(), 0)
    }

    /// The batches of `data` for this model: its columns in the order of the model's inputs (matched
    /// by name, else by position), on the model's device — for custom training loops.
    pub fn batches<'d>(
        &self,
        data: &'d Dataset,
        batch_size: usize,
        shuffle_seed: Option<u64>,
    ) -> Result<Batches<'d>> {
        let device = self.place()?;
        data.batches_of(
            self.column_order("batches", data)?,
            batch_size,
            shuffle_seed,
            &device,
        )
    }

    /// `Err` unless the model has one output.
    pub(crate) fn single_output(&self, op: &'static str) -> Result<()> {
        match self.graph.outputs.len() {
            1 => Ok(()),
            n => Err(Error::usage(
                op,
                format!(
                    "model {:?} has {n} outputs; {op} takes one-output models (use call_all or \
                     predict_all)",
                    self.name
                ),
            )),
        }
    }

    /// Which data set column feeds each model input: named columns by name, unnamed ones by
    /// position; each column's sample shape is checked against its input.
    pub(crate) fn column_order(&self, op: &'static str, data: &Dataset) -> Result<Vec<usize>> {
        let names = data.input_names();
        let inputs = &self.graph.inputs;
        let order: Vec<usize> =
            if names.iter().all(Option::is_none) {
                if names.len() != inputs.len() {
                    return Err(Error::invalid(
                        op,
                        format!(
                            "model {:?} takes {} input(s) ({}), but the data set has {} column(s)",
                            self.name,
                            inputs.len(),
                            self.input_names().join(", "),
                            names.len()
                        ),
                    ));
                }
                (0..inputs.len()).collect()
            } else {
                inputs
                    .iter()
                    .map(|input| {
                        names
                        .iter()
                        .position(|n| *n == Some(input.name.as_str()))
                        .ok_or_else(|| {
                            Error::invalid(
                                op,
                                format!(
                                    "the data set has no column named {:?} for the model's input \
                                     of that name (its columns: {}); name the model's inputs with \
                                     Input::named, or the columns after them",
                                    input.name,
                                    names.iter().flatten().copied().collect::<Vec<_>>().join(", ")
                                ),
                            )
                        })
                    })
                    .collect::<Result<_>>()?
            };
        for (i, (input, &c)) in inputs.iter().zip(&order).enumerate() {
            let column = data.column(c);
            if column.sample_shape() != input.node.shape() {
                return Err(Error::invalid(
                    op,
                    format!(
                        "input {i} ({:?}) of model {:?} is incompatible: expected shape {}, got {} \
                         from the data set",
                        input.name,
                        self.name,
                        batched(input.node.shape()),
                        batched(column.sample_shape())
                    ),
                ));
            }
        }
        self.check_ids(op, data, &order)?;
        Ok(order)
    }

    /// Refuses ids an `Embedding` reading an input directly has no row for, before any batch runs
    /// (on a GPU such an id would otherwise only be reported when the epoch's results are read).
    fn check_ids(&self, op: &'static str, data: &Dataset, order: &[usize]) -> Result<()> {
        let n_inputs = self.graph.inputs.len();
        for step in &self.graph.steps {
            let layer = &self.graph.layers[step.layer];
            let (Some(&input), "embedding") = (step.args.first(), layer.layer.kind()) else {
                continue;
            };
            let Some(rows) = layer.layer.config()["input_dim"].as_u64() else {
                continue;
            };
            if input >= n_inputs {
                continue;
            }
            let column = data.column(order[input]);
            let largest = match (column.as_ids(), column.as_features()) {
                (Some(ids), _) => ids.iter().max().map(|&id| f64::from(id)),
                (None, Some(values)) => values.iter().map(|&v| f64::from(v)).reduce(f64::max),
                (None, None) => None,
            };
            if let Some(largest) = largest.filter(|&l| l >= rows as f64) {
                return Err(Error::data(
                    op,
                    format!(
                        "input {:?} holds id {largest} but layer {:?} (Embedding) has {rows} rows \
                         (ids 0..{rows}): build it with Embedding::new({}, ..) or remap the ids",
                        self.graph.inputs[input].name,
                        layer.name,
                        largest as u64 + 1
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Releases the values step `i` was the last to read (outputs are kept).
fn release_last_reads(graph: &Graph, i: usize, values: &mut [Option<Value>]) {
    for &a in &graph.steps[i].args {
        if graph.last_read[a] == Some(i) && !graph.output_slots.contains(&a) {
            values[a] = None;
        }
    }
}
