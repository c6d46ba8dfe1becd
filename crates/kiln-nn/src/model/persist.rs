//! A model's architecture as JSON (`config.json`, Keras-style: `class_name` `Sequential` or
//! `Functional`), and `save`/`load`/`load_model`: weights and buffers in `model.safetensors`, the
//! optimizer state in `optimizer.safetensors`, each written atomically.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use kiln_device::{DType, Device, Error, RawTensor, Result};
use serde_json::{Value, json};

use super::Model;
use super::graph::LayerRef;
use super::sequential::Sequential;
use crate::checkpoint::{
    Complete, TrainingProgress, from_safetensors, resolve_checkpoint, to_safetensors,
    write_checkpoint,
};
use crate::functional::{
    Add, Concatenate, Dot, Input, MergeLayer, Multiply, Node, SharedLayer, apply_merge,
};
use crate::layers::Layer;

fn bad(what: &str) -> Error {
    Error::InvalidData {
        op: "from_config",
        message: format!("{what} in model config"),
    }
}

/// A shape from JSON.
pub(crate) fn shape_of(value: &Value, key: &str) -> Result<Vec<usize>> {
    value[key]
        .as_array()
        .ok_or_else(|| bad(&format!("missing \"{key}\"")))?
        .iter()
        .map(|d| d.as_u64().map(|d| d as usize))
        .collect::<Option<_>>()
        .ok_or_else(|| bad(&format!("a non-integer \"{key}\"")))
}

/// `"f32"`/`"u32"` from JSON (absent: f32).
pub(crate) fn dtype_of(value: &Value, key: &str) -> Result<DType> {
    match value[key].as_str() {
        None | Some("f32") => Ok(DType::F32),
        Some("u32") => Ok(DType::U32),
        Some(other) => Err(bad(&format!("unknown dtype {other:?}"))),
    }
}

/// A layer rebuilt from its config: a single-input layer or a merge.
pub(crate) enum Rebuilt {
    Single(Box<dyn Layer>),
    Merge(Arc<dyn MergeLayer>),
}

/// Any layer from the JSON its `config()` wrote: merges here, the other layers by
/// `layers::from_config`.
pub(crate) fn layer_from_config(config: &Value) -> Result<Rebuilt> {
    let int = |key: &str, default: i64| -> Result<i32> {
        let v = config.get(key).map_or(Some(default), Value::as_i64);
        v.and_then(|v| i32::try_from(v).ok())
            .ok_or_else(|| bad(&format!("a non-integer \"{key}\" in {config}")))
    };
    Ok(match config["kind"].as_str() {
        Some("concatenate") => Rebuilt::Merge(Arc::new(Concatenate::new().axis(int("axis", -1)?))),
        Some("add") => Rebuilt::Merge(Arc::new(Add::new())),
        Some("multiply") => Rebuilt::Merge(Arc::new(Multiply::new())),
        Some("dot") => {
            let axes = match config["axes"].as_array().map(Vec::as_slice) {
                Some([a, b]) => match (a.as_i64(), b.as_i64()) {
                    (Some(a), Some(b)) => (a as i32, b as i32),
                    _ => return Err(bad(&format!("non-integer \"axes\" in {config}"))),
                },
                _ => return Err(bad(&format!("missing \"axes\" in {config}"))),
            };
            let normalize = config["normalize"].as_bool().unwrap_or(false);
            Rebuilt::Merge(Arc::new(Dot::new(axes).normalize(normalize)))
        }
        _ => Rebuilt::Single(crate::layers::from_config(config)?),
    })
}

impl Model {
    /// The architecture as JSON (what `save` writes to `config.json`): for a [`Sequential`] model
    /// its input shape and each layer's name, config and output shape; for a functional one its
    /// inputs, layers, nodes (each a layer applied to value slots: inputs first, then nodes) and
    /// outputs.
    pub fn config(&self) -> Value {
        let dtype = |d: DType| if d == DType::U32 { "u32" } else { "f32" };
        let trainable = |l: &LayerRef| match l {
            LayerRef::Single(layer) => layer.is_trainable(),
            LayerRef::Merge(_) => true,
        };
        if self.sequential {
            let input = &self.graph.inputs[0].node;
            let layers: Vec<Value> = self
                .graph
                .steps
                .iter()
                .map(|step| {
                    let layer = &self.graph.layers[step.layer];
                    json!({
                        "name": layer.name,
                        "config": layer.layer.config(),
                        "trainable": trainable(&layer.layer),
                        "output_shape": step.node.shape(),
                    })
                })
                .collect();
            return json!({
                "class_name": "Sequential",
                "name": self.name,
                "input_shape": input.shape(),
                "input_dtype": dtype(input.dtype()),
                "layers": layers,
            });
        }
        let inputs: Vec<Value> = self
            .graph
            .inputs
            .iter()
            .map(|i| json!({ "name": i.name, "shape": i.node.shape(), "dtype": dtype(i.node.dtype()) }))
            .collect();
        let layers: Vec<Value> = self
            .graph
            .layers
            .iter()
            .map(|l| json!({ "name": l.name, "config": l.layer.config(), "trainable": trainable(&l.layer) }))
            .collect();
        let nodes: Vec<Value> = self
            .graph
            .steps
            .iter()
            .map(|s| json!({ "layer": self.graph.layers[s.layer].name, "args": s.args }))
            .collect();
        json!({
            "class_name": "Functional",
            "name": self.name,
            "inputs": inputs,
            "layers": layers,
            "nodes": nodes,
            "outputs": self.graph.output_slots,
        })
    }

    /// An uncompiled model on `device` rebuilt from [`Model::config`]'s JSON (fresh weights).
    pub fn from_config(config: &Value, device: &Device) -> Result<Model> {
        match config["class_name"].as_str() {
            None | Some("Sequential") => Ok(Sequential::from_config(config, device)?.into_model()),
            Some("Functional") => functional_from_config(config, device),
            Some(other) => Err(bad(&format!("unknown class_name {other:?}"))),
        }
    }

    /// Keras's `load_model`: rebuilds the architecture saved by [`Model::save`] in `dir` on
    /// `device` and loads its weights and buffers. Compile it, then call [`Model::load`] again to
    /// also restore the optimizer state and resume training.
    pub fn load_model(dir: &Path, device: &Device) -> Result<Model> {
        let complete = resolve_checkpoint(dir)?;
        let mut model = Model::from_config(&read_config(&complete.dir)?, device)?;
        model.load_complete(complete)?;
        Ok(model)
    }

    /// Saves weights and buffers, configuration and optimizer state as the checkpoint `dir`, as
    /// one unit: written to a new folder, synced, then renamed into place (the previous checkpoint
    /// is kept until then, so a crash never leaves a mix; other files in `dir` stay). Once the model
    /// has been through `fit` (in a callback, or after it) the manifest also records the training
    /// progress that `resume` continues from.
    /// Resume with [`Model::load`] on an identically built model, or rebuild with
    /// [`Model::load_model`].
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.save_checkpoint(dir, None)
    }

    /// [`Model::save`], recording `best` (a checkpoint callback's best monitored value) too.
    pub(crate) fn save_checkpoint(&self, dir: &Path, best: Option<f32>) -> Result<()> {
        let state = self.state();
        let weights: Vec<(String, RawTensor)> = state
            .iter()
            .map(|(n, v)| (n.clone(), v.tensor().raw().clone()))
            .collect();
        let mut files = vec![
            (
                "model.safetensors",
                to_safetensors(&weights, HashMap::new())?,
            ),
            ("config.json", format!("{}\n", self.config()).into_bytes()),
        ];
        let mut steps = 0;
        if let Some(compiled) = &self.compiled {
            let (optimizer_steps, optimizer_state) = compiled.optimizer.state();
            steps = optimizer_steps;
            let mut tensors = Vec::new();
            for (name, var) in &state {
                for (i, t) in optimizer_state
                    .get(&var.id())
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    tensors.push((format!("{name}.{i}"), t.clone()));
                }
            }
            let metadata = [
                (
                    "optimizer".to_string(),
                    compiled.optimizer.name().to_string(),
                ),
                ("steps".to_string(), steps.to_string()),
            ];
            files.push((
                "optimizer.safetensors",
                to_safetensors(&tensors, metadata.into_iter().collect())?,
            ));
        }
        let progress = self.fitted.map(|(epoch, shuffle)| TrainingProgress {
            epoch,
            shuffle,
            best,
            rng: self.rng_positions(),
        });
        let optimizer = self
            .compiled
            .as_ref()
            .map(|c| (c.optimizer.name(), u64::from(steps)));
        write_checkpoint(dir, &files, optimizer, progress.as_ref())
    }

    /// The random layers' positions in their random sequences, by layer name.
    fn rng_positions(&self) -> std::collections::BTreeMap<String, u64> {
        self.graph
            .layers
            .iter()
            .filter_map(|l| match &l.layer {
                LayerRef::Single(layer) => Some((l.name.clone(), layer.layer().rng_position()?)),
                LayerRef::Merge(_) => None,
            })
            .collect()
    }

    /// Loads weights and buffers (and, when the model is compiled and the file exists, the
    /// optimizer state) saved by [`Model::save`]. All or nothing: the files are checked against the
    /// checkpoint's manifest and each other first, and a checkpoint of another architecture, another
    /// optimizer or an interrupted save is refused, naming the problem, with the model unchanged.
    pub fn load(&mut self, dir: &Path) -> Result<()> {
        self.load_complete(resolve_checkpoint(dir)?)
    }

    /// [`Model::load`] of a checkpoint already found and checked.
    pub(crate) fn load_complete(&mut self, complete: Complete) -> Result<()> {
        let Complete { dir, progress } = complete;
        let dir = dir.as_path();
        let device = self.place()?;
        let (weights, _) = from_safetensors(&dir.join("model.safetensors"), &device)?;
        let state = self.state();
        // Check every value before changing any.
        let mut values = Vec::with_capacity(state.len());
        for (name, var) in &state {
            let value = weights
                .get(name)
                .ok_or_else(|| Error::data("load", format!("the checkpoint has no {name}")))?;
            let current = var.tensor();
            if value.shape() != current.shape() {
                return Err(Error::data(
                    "load",
                    format!(
                        "parameter {name} is {} in the checkpoint but {} in this model (a different architecture)",
                        value.shape(),
                        current.shape()
                    ),
                ));
            }
            values.push((var, value.cast(current.dtype())?));
        }
        let state_file = dir.join("optimizer.safetensors");
        let optimizer_state = match (&self.compiled, state_file.exists()) {
            (Some(compiled), true) => {
                let (tensors, metadata) = from_safetensors(&state_file, &device)?;
                let saved_by = metadata.get("optimizer").map(String::as_str).unwrap_or("");
                if !saved_by.is_empty() && saved_by != compiled.optimizer.name() {
                    return Err(Error::data(
                        "load",
                        format!(
                            "the checkpoint's optimizer state is {saved_by}'s, this model is compiled \
                             with {}; compile with the optimizer it was saved with",
                            compiled.optimizer.name()
                        ),
                    ));
                }
                let steps = metadata
                    .get("steps")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let mut parts_by_id = HashMap::new();
                for (name, var) in &state {
                    let parts: Vec<RawTensor> = (0..)
                        .map_while(|i| tensors.get(&format!("{name}.{i}")).cloned())
                        .collect();
                    if !parts.is_empty() {
                        parts_by_id.insert(var.id(), parts);
                    }
                }
                Some((steps, parts_by_id))
            }
            _ => None,
        };
        // Apply; if the optimizer refuses its state after all, put everything back.
        let before = self.snapshot()?;
        for (var, value) in values {
            var.set(value)?;
        }
        if let (Some(compiled), Some((steps, parts))) = (self.compiled.as_mut(), optimizer_state) {
            if let Err(e) = compiled.optimizer.load_state(steps, parts) {
                self.restore(before)?;
                return Err(e);
            }
            compiled.state_device = Some(device);
        }
        // Random layers continue their sequences where the checkpoint left them.
        for (name, position) in progress.map(|p| p.rng).unwrap_or_default() {
            if let Some(LayerRef::Single(layer)) = self
                .graph
                .layers
                .iter()
                .find(|l| l.name == name)
                .map(|l| &l.layer)
            {
                layer.layer().set_rng_position(position);
            }
        }
        Ok(())
    }
}

/// `dir/config.json`, parsed.
pub(crate) fn read_config(dir: &Path) -> Result<Value> {
    let path = dir.join("config.json");
    let io = |e: &dyn std::fmt::Display| Error::InvalidData {
        op: "load_model",
        message: format!("{}: {e}", path.display()),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| io(&e))?;
    serde_json::from_str(&text).map_err(|e| io(&e))
}

/// A functional model from its config.
fn functional_from_config(config: &Value, device: &Device) -> Result<Model> {
    let array = |key: &str| {
        config[key]
            .as_array()
            .ok_or_else(|| bad(&format!("missing \"{key}\"")))
    };
    let mut values: Vec<Node> = Vec::new();
    for input in array("inputs")? {
        let name = input["name"]
            .as_str()
            .ok_or_else(|| bad("an input without \"name\""))?;
        let node = Input::with(
            shape_of(input, "shape")?,
            dtype_of(input, "dtype")?,
            Some(name),
        );
        values.push(node.into());
    }
    let inputs = values.clone();
    let mut layers: HashMap<String, LayerRef> = HashMap::new();
    for entry in array("layers")? {
        let name = entry["name"]
            .as_str()
            .ok_or_else(|| bad("a layer without \"name\""))?;
        let layer = match layer_from_config(&entry["config"])? {
            Rebuilt::Single(layer) => LayerRef::Single(
                SharedLayer::from_boxed(layer)
                    .named(name)
                    .trainable(entry["trainable"].as_bool().unwrap_or(true)),
            ),
            Rebuilt::Merge(merge) => LayerRef::Merge(merge),
        };
        layers.insert(name.to_string(), layer);
    }
    for node in array("nodes")? {
        let name = node["layer"].as_str().unwrap_or_default();
        let layer = layers
            .get(name)
            .ok_or_else(|| bad(&format!("a node of unknown layer {name:?}")))?;
        let args: Vec<&Node> = node["args"]
            .as_array()
            .ok_or_else(|| bad(&format!("node of {name:?} without \"args\"")))?
            .iter()
            .map(|a| {
                a.as_u64()
                    .and_then(|a| values.get(a as usize))
                    .ok_or_else(|| bad(&format!("node of {name:?} reads a value not computed yet")))
            })
            .collect::<Result<_>>()?;
        let output = match layer {
            LayerRef::Single(layer) => match args.as_slice() {
                [x] => layer.apply(x)?,
                _ => {
                    return Err(bad(&format!(
                        "layer {name:?} applied to {} values",
                        args.len()
                    )));
                }
            },
            LayerRef::Merge(merge) => apply_merge(merge.clone(), &args)?,
        };
        values.push(output);
    }
    let outputs: Vec<&Node> = array("outputs")?
        .iter()
        .map(|o| {
            o.as_u64()
                .and_then(|o| values.get(o as usize))
                .ok_or_else(|| bad("an output that is not a value"))
        })
        .collect::<Result<_>>()?;
    let model = Model::new(&inputs.iter().collect::<Vec<_>>(), &outputs)?;
    let name = config["name"].as_str().unwrap_or("model");
    Ok(model.named(name).on(device))
}
