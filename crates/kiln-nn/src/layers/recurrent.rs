//! `LSTM` and `GRU` over `[steps, features]` inputs, with PyTorch's weight layout (`weight_ih`
//! `[gates·units, features]`, `weight_hh` `[gates·units, units]`) and Keras's defaults: Glorot kernels,
//! orthogonal recurrent kernels, zero bias (an LSTM's forget gate starts at 1, Keras's
//! `unit_forget_bias`). Padded steps (a mask from `Embedding::mask_zero`) keep the state.

use kiln_autograd::{RecurrentWeights, Tensor, Var};
use kiln_device::{CellKind, Device, Error, RawTensor, Result};

use super::{Initializer, Layer, built};

/// Keras's type name of a cell's layer.
fn type_name(cell: CellKind) -> &'static str {
    match cell {
        CellKind::Lstm => "LSTM",
        CellKind::Gru => "GRU",
    }
}

/// A recurrent layer; make one with [`LSTM::new`] or [`GRU::new`].
pub struct Recurrent {
    cell: CellKind,
    units: usize,
    return_sequences: bool,
    kernel_initializer: Initializer,
    recurrent_initializer: Initializer,
    /// `weight_ih`, `weight_hh`, `bias` (and a GRU's recurrent bias `bias_hh`).
    params: Option<Vec<Var>>,
    name: String,
}

/// Keras's `LSTM(units)`.
pub struct LSTM;

impl LSTM {
    /// An LSTM with `units` hidden units returning the last state.
    #[allow(clippy::new_ret_no_self, reason = "LSTM and GRU are one layer type")]
    pub fn new(units: usize) -> Recurrent {
        Recurrent::new(CellKind::Lstm, units)
    }
}

/// Keras's `GRU(units)` (with `reset_after=True`, its default).
pub struct GRU;

impl GRU {
    /// A GRU with `units` hidden units returning the last state.
    #[allow(clippy::new_ret_no_self, reason = "LSTM and GRU are one layer type")]
    pub fn new(units: usize) -> Recurrent {
        Recurrent::new(CellKind::Gru, units)
    }
}

impl Recurrent {
    /// A `cell` layer with `units` hidden units.
    pub fn new(cell: CellKind, units: usize) -> Self {
        Recurrent {
            cell,
            units,
            return_sequences: false,
            kernel_initializer: Initializer::GlorotUniform,
            recurrent_initializer: Initializer::Orthogonal,
            params: None,
            name: String::new(),
        }
    }

    /// Return every step's state (`[steps, units]`) instead of the last one (`[units]`).
    pub fn return_sequences(mut self, yes: bool) -> Self {
        self.return_sequences = yes;
        self
    }

    /// Sets how the input kernel starts.
    pub fn kernel_initializer(mut self, initializer: Initializer) -> Self {
        self.kernel_initializer = initializer;
        self
    }

    /// Sets how the recurrent kernel starts.
    pub fn recurrent_initializer(mut self, initializer: Initializer) -> Self {
        self.recurrent_initializer = initializer;
        self
    }
}

impl Layer for Recurrent {
    fn config(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind(),
            "units": self.units,
            "return_sequences": self.return_sequences,
            "kernel_initializer": self.kernel_initializer.name(),
            "recurrent_initializer": self.recurrent_initializer.name(),
        })
    }

    fn kind(&self) -> &'static str {
        self.cell.name()
    }

    fn build(
        &mut self,
        name: &str,
        input: &[usize],
        device: &Device,
        seed: u64,
    ) -> Result<Vec<usize>> {
        let &[steps, features] = input else {
            return Err(Error::invalid(
                "build",
                format!(
                    "layer {name} ({}) expects [steps, features] per sample, got {input:?}",
                    type_name(self.cell)
                ),
            ));
        };
        if self.units == 0 {
            return Err(Error::argument(
                "build",
                format!(
                    "layer {name} ({}) needs at least one unit",
                    type_name(self.cell)
                ),
            ));
        }
        self.name = name.to_string();
        let (h, gh) = (self.units, self.units * self.cell.gates());
        let w_ih = self
            .kernel_initializer
            .init(&[gh, features], (features, gh), seed, device)?;
        let w_hh =
            self.recurrent_initializer
                .init(&[gh, h], (h, gh), seed.wrapping_add(1), device)?;
        let mut bias = vec![0.0f32; gh];
        if self.cell == CellKind::Lstm {
            bias[h..2 * h].fill(1.0);
        }
        let bias = Var::new(Tensor::from_raw(RawTensor::from_slice(
            &bias,
            [gh],
            device,
        )?));
        let mut params = vec![w_ih, w_hh, bias];
        if self.cell == CellKind::Gru {
            params.push(Var::new(Tensor::zeros([gh], device)?));
        }
        self.params = Some(params);
        Ok(if self.return_sequences {
            vec![steps, h]
        } else {
            vec![h]
        })
    }

    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        self.forward_masked(x, None, training)
    }

    fn forward_masked(&self, x: &Tensor, mask: Option<&Tensor>, _training: bool) -> Result<Tensor> {
        let params: Vec<Tensor> = built(&self.name, &self.params)?
            .iter()
            .map(Var::tensor)
            .collect();
        let weights = RecurrentWeights {
            w_ih: &params[0],
            w_hh: &params[1],
            b_ih: Some(&params[2]),
            b_hh: params.get(3),
        };
        let out = match self.cell {
            CellKind::Lstm => x.lstm(&weights, mask)?,
            CellKind::Gru => x.gru(&weights, mask)?,
        };
        Ok(if self.return_sequences {
            out.sequence
        } else {
            out.last_h
        })
    }

    fn output_mask(&self, _x: &Tensor, mask: Option<&Tensor>) -> Result<Option<Tensor>> {
        Ok(if self.return_sequences {
            mask.cloned()
        } else {
            None
        })
    }

    fn parameters(&self) -> Vec<(&'static str, Var)> {
        const NAMES: [&str; 4] = ["weight_ih", "weight_hh", "bias", "bias_hh"];
        self.params
            .iter()
            .flatten()
            .zip(NAMES)
            .map(|(p, name)| (name, p.clone()))
            .collect()
    }
}
