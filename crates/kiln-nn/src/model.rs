//! `Sequential`: a stack of layers with Keras's verbs — `compile`, `fit`, `evaluate`, `predict`,
//! `summary`.

use std::time::Instant;

use kiln_autograd::{Tensor, Var, no_grad};
use kiln_device::{BinaryOp, Device, Error, RawTensor, Result};

use crate::callbacks::{Callback, Control, EpochLogs};
use crate::data::Dataset;
use crate::layers::{Activation, Layer};
use crate::loss::Loss;
use crate::metrics::{Metric, MetricTotals};
use crate::optim::Optimizer;

/// How `fit` trains.
#[derive(Debug, Clone)]
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
    /// The epoch to start from when resuming (shuffling continues where it left off).
    pub initial_epoch: usize,
    /// Data to validate on after each epoch (instead of `validation_split`).
    pub validation_data: Option<&'a Dataset>,
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
            validation_data: None,
        }
    }
}

/// Loss and metrics of one pass over some data.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Mean loss.
    pub loss: f32,
    /// Each metric's value.
    pub metrics: Vec<(Metric, f32)>,
}

impl Evaluation {
    /// A metric's value.
    pub fn metric(&self, metric: Metric) -> Option<f32> {
        self.metrics
            .iter()
            .find(|(m, _)| *m == metric)
            .map(|(_, v)| *v)
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

struct Compiled {
    optimizer: Box<dyn Optimizer>,
    loss: Loss,
    metrics: Vec<Metric>,
}

/// A linear stack of layers, built from the per-sample input shape.
pub struct Sequential {
    input_shape: Vec<usize>,
    layers: Vec<(String, Box<dyn Layer>, Vec<usize>)>,
    /// Chosen by `on`, else `Device::auto()` when the first layer is added.
    device: Option<Device>,
    seed: u64,
    compiled: Option<Compiled>,
}

impl Sequential {
    /// An empty model for samples of `input_shape` (channels first: `[1, 28, 28]` for MNIST) on
    /// `Device::auto()`.
    pub fn new(input_shape: impl Into<Vec<usize>>) -> Self {
        Sequential {
            input_shape: input_shape.into(),
            layers: Vec::new(),
            device: None,
            seed: 0,
            compiled: None,
        }
    }

    /// Runs on `device` instead (set before adding layers).
    pub fn on(mut self, device: &Device) -> Self {
        self.device = Some(device.clone());
        self
    }

    /// Seeds parameter initialisation (set before adding layers).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Appends `layer`, building it for the current output shape. Panics are never used: a shape the
    /// layer cannot take is returned as an error naming it.
    #[allow(
        clippy::should_implement_trait,
        reason = "Keras's name for appending a layer"
    )]
    pub fn add(self, layer: impl Layer + 'static) -> Result<Self> {
        self.add_boxed(Box::new(layer))
    }

    /// [`Sequential::add`] for a layer chosen at run time.
    pub fn add_boxed(mut self, mut layer: Box<dyn Layer>) -> Result<Self> {
        let input = self
            .layers
            .last()
            .map_or(self.input_shape.clone(), |(_, _, out)| out.clone());
        let same_kind = self
            .layers
            .iter()
            .filter(|(_, l, _)| l.kind() == layer.kind())
            .count();
        let name = if same_kind == 0 {
            layer.kind().to_string()
        } else {
            format!("{}_{same_kind}", layer.kind())
        };
        let seed = self
            .seed
            .wrapping_mul(1000)
            .wrapping_add(self.layers.len() as u64);
        let device = self.device.get_or_insert_with(Device::auto).clone();
        let output = layer.build(&name, &input, &device, seed)?;
        self.layers.push((name, layer, output));
        Ok(self)
    }

    /// The architecture as JSON: the input shape and each layer's name, config and output shape
    /// (what `save` writes to `config.json`).
    pub fn config(&self) -> serde_json::Value {
        let layers: Vec<serde_json::Value> = self
            .layers
            .iter()
            .map(|(name, layer, shape)| {
                serde_json::json!({ "name": name, "config": layer.config(), "output_shape": shape })
            })
            .collect();
        serde_json::json!({ "input_shape": self.input_shape, "layers": layers })
    }

    /// An uncompiled model on `device` rebuilt from [`Sequential::config`]'s JSON (fresh weights).
    pub fn from_config(config: &serde_json::Value, device: &Device) -> Result<Sequential> {
        let bad = |what: &str| Error::InvalidData {
            op: "from_config",
            message: format!("{what} in model config"),
        };
        let input_shape: Vec<usize> = config["input_shape"]
            .as_array()
            .ok_or_else(|| bad("missing \"input_shape\""))?
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("a non-integer \"input_shape\""))?;
        let layers = config["layers"]
            .as_array()
            .ok_or_else(|| bad("missing \"layers\""))?;
        let mut model = Sequential::new(input_shape).on(device);
        for layer in layers {
            model = model.add_boxed(crate::layers::from_config(&layer["config"])?)?;
        }
        Ok(model)
    }

    /// Keras's `load_model`: rebuilds the architecture saved by [`Sequential::save`] in `dir` on
    /// `device` and loads its weights. Compile it, then call [`Sequential::load`] again to also restore
    /// the optimizer state and resume training.
    pub fn load_model(dir: &std::path::Path, device: &Device) -> Result<Sequential> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::InvalidData {
            op: "load_model",
            message: format!("{}: {e}", path.display()),
        })?;
        let config = serde_json::from_str(&text).map_err(|e| Error::InvalidData {
            op: "load_model",
            message: format!("{}: {e}", path.display()),
        })?;
        let mut model = Sequential::from_config(&config, device)?;
        model.load(dir)?;
        Ok(model)
    }

    /// The device the model runs on.
    pub fn device(&self) -> Device {
        self.device.clone().unwrap_or_else(Device::auto)
    }

    /// Every parameter with its PyTorch-style name (`conv2d.weight`, `dense.bias`, ...).
    pub fn named_parameters(&self) -> Vec<(String, Var)> {
        self.layers
            .iter()
            .flat_map(|(name, layer, _)| {
                layer
                    .parameters()
                    .into_iter()
                    .map(move |(p, v)| (format!("{name}.{p}"), v))
            })
            .collect()
    }

    fn parameters(&self) -> Vec<Var> {
        self.named_parameters()
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }

    /// Replaces a parameter's values by name.
    pub fn set_weight(&self, name: &str, value: &RawTensor) -> Result<()> {
        let (_, var) = self
            .named_parameters()
            .into_iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| {
                Error::invalid("set_weight", format!("the model has no parameter {name:?}"))
            })?;
        var.set(value.to_device(&self.device())?)
    }

    /// Keras's summary: each layer, its output shape and parameter count.
    pub fn summary(&self) -> String {
        let mut out = String::from("Model: \"sequential\"\n");
        let rule = "_".repeat(65);
        out += &format!(
            "{rule}\n{:<34}{:<22}{:>9}\n{}\n",
            "Layer (type)",
            "Output Shape",
            "Param #",
            "=".repeat(65)
        );
        let mut total = 0;
        for (name, layer, shape) in &self.layers {
            let count: usize = layer
                .parameters()
                .iter()
                .map(|(_, v)| v.tensor().numel())
                .sum();
            total += count;
            let shape = format!(
                "(None, {})",
                shape
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            out += &format!(
                "{:<34}{:<22}{:>9}\n",
                format!("{name} ({})", layer.kind()),
                shape,
                count
            );
        }
        out += &format!(
            "{}\nTotal params: {total}\nTrainable params: {total}\nNon-trainable params: 0\n{rule}\n",
            "=".repeat(65)
        );
        out
    }

    /// Chooses the optimizer, the loss and the metrics.
    pub fn compile(
        &mut self,
        optimizer: impl Optimizer + 'static,
        loss: Loss,
        metrics: &[Metric],
    ) -> Result<()> {
        self.compiled = Some(Compiled {
            optimizer: Box::new(optimizer),
            loss,
            metrics: metrics.to_vec(),
        });
        Ok(())
    }

    fn compiled(&self, op: &'static str) -> Result<&Compiled> {
        self.compiled.as_ref().ok_or_else(|| {
            Error::invalid(
                op,
                "call compile(optimizer, loss, metrics) first".to_string(),
            )
        })
    }

    /// Whether the loss absorbs the last layer's activation (softmax + cross-entropy, ...).
    fn fused(&self, loss: Loss) -> bool {
        let last = self.layers.last().map(|(_, l, _)| l.activation());
        last.is_some() && last == loss.fused_activation()
    }

    /// The model's output for a batch; `before_final_activation` stops before the last activation.
    fn run(&self, x: &Tensor, training: bool, before_final_activation: bool) -> Result<Tensor> {
        let batch = x.dims().first().copied().unwrap_or(0);
        let expected: Vec<usize> = std::iter::once(batch)
            .chain(self.input_shape.iter().copied())
            .collect();
        if x.dims() != expected {
            return Err(Error::invalid(
                "forward",
                format!(
                    "input {} does not match the model's input [batch, {:?}]",
                    x.shape(),
                    self.input_shape
                ),
            ));
        }
        let mut h = x.clone();
        let last = self.layers.len().saturating_sub(1);
        for (i, (_, layer, _)) in self.layers.iter().enumerate() {
            h = if i == last && before_final_activation {
                layer.forward_before_activation(&h, training)?
            } else {
                layer.forward(&h, training)?
            };
        }
        Ok(h)
    }

    /// Scores for the loss and metrics, and the threshold at which a single score means class 1.
    fn scores(&self, x: &Tensor, training: bool, loss: Loss) -> Result<(Tensor, f32)> {
        let fused = self.fused(loss);
        let threshold = if fused
            || self
                .layers
                .last()
                .is_some_and(|(_, l, _)| l.activation() == Activation::Linear)
        {
            0.0
        } else {
            0.5
        };
        Ok((self.run(x, training, fused)?, threshold))
    }

    /// One optimizer step on a batch; returns the batch's mean loss (on the device).
    pub fn train_on_batch(&mut self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        Ok(self.train_step(x, y)?.0)
    }

    /// One optimizer step; returns the loss, the scores the metrics read, and their threshold.
    fn train_step(&mut self, x: &Tensor, y: &Tensor) -> Result<(Tensor, Tensor, f32)> {
        let loss_fn = self.compiled("train_on_batch")?.loss;
        let (scores, threshold) = self.scores(x, true, loss_fn)?;
        let loss = loss_fn.compute(&scores, y)?;
        let grads = loss.backward()?;
        let params = self.parameters();
        let compiled = self.compiled.as_mut().expect("checked above");
        compiled.optimizer.step(&params, &grads)?;
        Ok((loss.detach(), scores.detach(), threshold))
    }

    /// Trains on `data` as Keras's `fit` does; returns the per-epoch history.
    pub fn fit(&mut self, data: &Dataset, config: &FitConfig<'_>) -> Result<History> {
        self.fit_with(data, config, &mut [])
    }

    /// The current learning rate.
    pub fn learning_rate(&self) -> Result<f32> {
        Ok(self.compiled("learning_rate")?.optimizer.learning_rate())
    }

    /// Changes the learning rate.
    pub fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        self.compiled("set_learning_rate")?;
        self.compiled
            .as_mut()
            .expect("checked")
            .optimizer
            .set_learning_rate(lr);
        Ok(())
    }

    /// `fit` with callbacks around each epoch (early stopping, checkpoints, logs, schedules).
    pub fn fit_with(
        &mut self,
        data: &Dataset,
        config: &FitConfig<'_>,
        callbacks: &mut [&mut dyn Callback],
    ) -> Result<History> {
        let compiled = self.compiled("fit")?;
        let metric_list = compiled.metrics.clone();
        if config.batch_size == 0 || data.is_empty() {
            return Err(Error::invalid(
                "fit",
                format!(
                    "needs a batch size >= 1 and data (got {} and {} samples)",
                    config.batch_size,
                    data.len()
                ),
            ));
        }
        let held_out = (data.len() as f32 * config.validation_split.clamp(0.0, 1.0)) as usize;
        let (train, split_off) = data.split_at(data.len() - held_out);
        let validation = config.validation_data.unwrap_or(&split_off);
        let steps = train.len().div_ceil(config.batch_size);
        let mut history = History::default();
        let device = self.device();
        for epoch in config.initial_epoch..config.epochs {
            for callback in callbacks.iter_mut() {
                callback.on_epoch_begin(epoch, self)?;
            }
            let started = Instant::now();
            let mut totals = MetricTotals::new(&metric_list);
            // Per-batch losses stay on the device until the epoch ends: one readback then.
            let mut batch_losses: Vec<(RawTensor, usize)> = Vec::new();
            let seed = config.shuffle.map(|s| s.wrapping_add(epoch as u64));
            let bar = progress_bar(config.verbose, steps, epoch, config.epochs);
            train.for_each_batch(config.batch_size, seed, &device, |x, y, n| {
                // Metrics read the scores of the training forward pass, as Keras's do.
                let (loss, scores, threshold) = self.train_step(&x, &y)?;
                bar.inc(1);
                batch_losses.push((loss.raw().reshape([1])?, n));
                totals.add(&scores, &y, threshold)
            })?;
            let loss = epoch_loss(&batch_losses, epoch)?;
            let evaluation = Evaluation {
                loss,
                metrics: totals.finish()?,
            };
            let validation_eval = if validation.is_empty() {
                None
            } else {
                Some(self.evaluate(validation, config.batch_size)?)
            };
            if config.verbose {
                println!("Epoch {}/{}", epoch + 1, config.epochs);
                println!(
                    "{}",
                    progress_line(
                        steps,
                        started.elapsed().as_secs_f64(),
                        &evaluation,
                        validation_eval.as_ref()
                    )
                );
            }
            // With the profiler on (KILN_PROFILE=1), each epoch ends with its per-kernel table.
            if let Some(profile) = self.device().take_profile()?
                && !profile.rows.is_empty()
            {
                eprintln!("Epoch {}/{}: {profile}", epoch + 1, config.epochs);
            }
            let mut stop = false;
            let logs = EpochLogs {
                train: &evaluation,
                validation: validation_eval.as_ref(),
            };
            for callback in callbacks.iter_mut() {
                stop |= callback.on_epoch_end(epoch, &logs, self)? == Control::Stop;
            }
            history.train.push(evaluation);
            history.validation.extend(validation_eval);
            if stop {
                break;
            }
        }
        Ok(history)
    }

    /// Loss and metrics on `data`, without training.
    pub fn evaluate(&self, data: &Dataset, batch_size: usize) -> Result<Evaluation> {
        let compiled = self.compiled("evaluate")?;
        let (loss_fn, mut totals) = (compiled.loss, MetricTotals::new(&compiled.metrics));
        let mut loss_sum: Option<RawTensor> = None;
        no_grad(|| {
            data.for_each_batch(batch_size.max(1), None, &self.device(), |x, y, n| {
                let (scores, threshold) = self.scores(&x, false, loss_fn)?;
                let weighted = loss_fn
                    .compute(&scores, &y)?
                    .raw()
                    .scalar(BinaryOp::Mul, n as f32)?;
                loss_sum = Some(match loss_sum.take() {
                    Some(s) => s.binary(BinaryOp::Add, &weighted)?,
                    None => weighted,
                });
                totals.add(&scores, &y, threshold)
            })
        })?;
        let loss = match loss_sum {
            Some(s) => s.to_f32_vec()?[0] / data.len() as f32,
            None => f32::NAN,
        };
        Ok(Evaluation {
            loss,
            metrics: totals.finish()?,
        })
    }

    /// Saves weights, configuration and optimizer state into `dir` (created if needed), each file
    /// written atomically. Resume with [`Sequential::load`] on an identically built model.
    pub fn save(&self, dir: &std::path::Path) -> Result<()> {
        use crate::checkpoint::{to_safetensors, write_atomically};
        std::fs::create_dir_all(dir).map_err(|e| Error::InvalidData {
            op: "save",
            message: format!("{}: {e}", dir.display()),
        })?;
        let named = self.named_parameters();
        let weights: Vec<(String, RawTensor)> = named
            .iter()
            .map(|(n, v)| (n.clone(), v.tensor().raw().clone()))
            .collect();
        write_atomically(
            &dir.join("model.safetensors"),
            &to_safetensors(&weights, Default::default())?,
        )?;
        let config = format!("{}\n", self.config());
        write_atomically(&dir.join("config.json"), config.as_bytes())?;
        if let Some(compiled) = &self.compiled {
            let (steps, state) = compiled.optimizer.state();
            let mut tensors = Vec::new();
            for (name, var) in &named {
                for (i, t) in state.get(&var.id()).into_iter().flatten().enumerate() {
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
            write_atomically(
                &dir.join("optimizer.safetensors"),
                &to_safetensors(&tensors, metadata.into_iter().collect())?,
            )?;
        }
        Ok(())
    }

    /// Loads weights (and, when the model is compiled and the file exists, the optimizer state) saved
    /// by [`Sequential::save`].
    pub fn load(&mut self, dir: &std::path::Path) -> Result<()> {
        use crate::checkpoint::from_safetensors;
        let device = self.device();
        let (weights, _) = from_safetensors(&dir.join("model.safetensors"), &device)?;
        let named = self.named_parameters();
        // Check every parameter before changing any, so a mismatched checkpoint leaves the model as it was.
        let mut values = Vec::with_capacity(named.len());
        for (name, var) in &named {
            let value = weights
                .get(name)
                .ok_or_else(|| Error::invalid("load", format!("the checkpoint has no {name}")))?;
            let current = var.tensor();
            if value.shape() != current.shape() {
                return Err(Error::invalid(
                    "load",
                    format!(
                        "parameter {name} is {} in the checkpoint but {} in this model (a different architecture)",
                        value.shape(),
                        current.shape()
                    ),
                ));
            }
            values.push((var, value.clone()));
        }
        for (var, value) in values {
            var.set(value)?;
        }
        let state_file = dir.join("optimizer.safetensors");
        if let (Some(compiled), true) = (self.compiled.as_mut(), state_file.exists()) {
            let (tensors, metadata) = from_safetensors(&state_file, &device)?;
            let steps = metadata
                .get("steps")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let mut state = std::collections::HashMap::new();
            for (name, var) in &named {
                let parts: Vec<RawTensor> = (0..)
                    .map_while(|i| tensors.get(&format!("{name}.{i}")).cloned())
                    .collect();
                if !parts.is_empty() {
                    state.insert(var.id(), parts);
                }
            }
            compiled.optimizer.load_state(steps, state)?;
        }
        Ok(())
    }

    /// The model's outputs (after every activation) for a batch of inputs.
    pub fn predict(&self, x: &Tensor) -> Result<Tensor> {
        no_grad(|| self.run(x, false, false))
    }
}

/// The sample-weighted mean of an epoch's batch losses (read back in one transfer); a NaN or infinite
/// batch loss is an error naming the epoch and the batch.
fn epoch_loss(batch_losses: &[(RawTensor, usize)], epoch: usize) -> Result<f32> {
    if batch_losses.is_empty() {
        return Ok(f32::NAN);
    }
    let tensors: Vec<&RawTensor> = batch_losses.iter().map(|(t, _)| t).collect();
    let losses = RawTensor::concat(&tensors, 0)?.to_vec::<f32>()?;
    if let Some(batch) = losses.iter().position(|l| !l.is_finite()) {
        return Err(Error::InvalidData {
            op: "fit",
            message: format!(
                "the loss became {} at epoch {}, batch {} (lower the learning rate, or check the data for \
                 NaN, infinities or unnormalised values)",
                losses[batch],
                epoch + 1,
                batch + 1
            ),
        });
    }
    let samples: usize = batch_losses.iter().map(|(_, n)| n).sum();
    Ok(losses
        .iter()
        .zip(batch_losses)
        .map(|(l, (_, n))| l * *n as f32)
        .sum::<f32>()
        / samples as f32)
}

/// A Keras-style bar of the epoch's steps, drawn only when stdout is a terminal (losses are not read
/// back per step, so the bar shows steps and time; the epoch line below gives the numbers).
fn progress_bar(
    verbose: bool,
    steps: usize,
    epoch: usize,
    epochs: usize,
) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !verbose || !std::io::stdout().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(steps as u64);
    let style = indicatif::ProgressStyle::with_template(&format!(
        "Epoch {}/{epochs} {{pos}}/{{len}} [{{bar:30}}] - {{elapsed}}",
        epoch + 1
    ))
    .expect("a valid template")
    .progress_chars("=>.");
    bar.set_style(style);
    bar
}

/// `938/938 [==============================] - 3s 3ms/step - loss: 0.2735 - accuracy: 0.9213`
fn progress_line(
    steps: usize,
    seconds: f64,
    train: &Evaluation,
    validation: Option<&Evaluation>,
) -> String {
    let mut line = format!(
        "{steps}/{steps} [{}] - {:.0}s {:.0}ms/step - loss: {:.4}",
        "=".repeat(30),
        seconds,
        seconds * 1000.0 / steps.max(1) as f64,
        train.loss
    );
    for (m, v) in &train.metrics {
        line += &format!(" - {}: {v:.4}", m.name());
    }
    if let Some(val) = validation {
        line += &format!(" - val_loss: {:.4}", val.loss);
        for (m, v) in &val.metrics {
            line += &format!(" - val_{}: {v:.4}", m.name());
        }
    }
    line
}
