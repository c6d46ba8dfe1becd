//! `Embedding`: integer ids (u32; f32 ids are cast) to learned vectors, with Keras's `mask_zero`
//! (id 0 is padding, and the output carries a mask that says so).

use kiln_autograd::{Tensor, Var};
use kiln_device::{BinaryOp, DType, Device, Error, Result};

use super::{Layer, built};

/// A lookup table of `input_dim` vectors of `output_dim` values.
pub struct Embedding {
    input_dim: usize,
    output_dim: usize,
    mask_zero: bool,
    table: Option<Var>,
    name: String,
}

impl Embedding {
    /// `input_dim` ids, each mapped to `output_dim` values.
    pub fn new(input_dim: usize, output_dim: usize) -> Self {
        Embedding {
            input_dim,
            output_dim,
            mask_zero: false,
            table: None,
            name: String::new(),
        }
    }

    /// With `true`, id 0 means padding: the output's mask (`[batch, steps]`, 1 for real steps, 0
    /// for padding) reaches the layers downstream, as with Keras's `mask_zero=True`.
    pub fn mask_zero(mut self, mask_zero: bool) -> Self {
        self.mask_zero = mask_zero;
        self
    }

    /// The layer described by its [`Layer::config`] JSON.
    pub fn from_config(config: &serde_json::Value) -> Result<Embedding> {
        let count = |key: &str| {
            config[key]
                .as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| Error::InvalidData {
                    op: "from_config",
                    message: format!("missing or non-integer \"{key}\" in layer config {config}"),
                })
        };
        Ok(Embedding::new(count("input_dim")?, count("output_dim")?)
            .mask_zero(config["mask_zero"].as_bool().unwrap_or(false)))
    }

    /// The ids of `x` as a u32 tensor of the same shape (cast when given as f32).
    fn ids(x: &Tensor) -> Result<Tensor> {
        Ok(match x.dtype() {
            DType::U32 => x.clone(),
            _ => Tensor::from_raw(x.raw().cast(DType::U32)?),
        })
    }
}

impl Layer for Embedding {
    fn config(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind(),
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "mask_zero": self.mask_zero,
        })
    }

    fn kind(&self) -> &'static str {
        "embedding"
    }

    fn build(
        &mut self,
        name: &str,
        input: &[usize],
        device: &Device,
        seed: u64,
    ) -> Result<Vec<usize>> {
        if input.len() != 1 {
            return Err(Error::invalid(
                "build",
                format!("layer {name} (Embedding) expects a sequence of ids, got {input:?}"),
            ));
        }
        if self.input_dim == 0 || self.output_dim == 0 {
            return Err(Error::argument(
                "build",
                format!(
                    "layer {name} (Embedding) needs input_dim and output_dim of at least 1, got {} and {}",
                    self.input_dim, self.output_dim
                ),
            ));
        }
        self.name = name.to_string();
        // Keras initialises embeddings uniformly in [-0.05, 0.05].
        let table = Tensor::uniform([self.input_dim, self.output_dim], -0.05, 0.05, seed, device)?;
        self.table = Some(Var::new(table));
        Ok(vec![input[0], self.output_dim])
    }

    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        let table = built(&self.name, &self.table)?;
        let [_, _] = x.dims() else {
            return Err(Error::invalid(
                "forward",
                format!(
                    "layer {} (Embedding) takes [batch, steps] ids, got {}",
                    self.name,
                    x.shape()
                ),
            ));
        };
        table.tensor().embedding(&Embedding::ids(x)?, None)
    }

    fn output_mask(&self, x: &Tensor, _mask: Option<&Tensor>) -> Result<Option<Tensor>> {
        if !self.mask_zero {
            return Ok(None);
        }
        // ids != 0, as f32 [batch, steps] (ids are whole numbers, so > 0.5 is != 0).
        let ids = x.raw().cast(DType::F32)?;
        Ok(Some(Tensor::from_raw(ids.scalar(BinaryOp::Greater, 0.5)?)))
    }

    fn parameters(&self) -> Vec<(&'static str, Var)> {
        self.table.iter().map(|t| ("weight", t.clone())).collect()
    }
}
