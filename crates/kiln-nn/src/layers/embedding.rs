//! `Embedding`: integer ids (stored as f32 in the batch) to learned vectors.

use kiln_autograd::{Tensor, Var};
use kiln_device::{DType, Device, Error, Result};

use super::{Layer, built};

/// A lookup table of `input_dim` vectors of `output_dim` values.
pub struct Embedding {
    input_dim: usize,
    output_dim: usize,
    table: Option<Var>,
    name: String,
}

impl Embedding {
    /// `input_dim` ids, each mapped to `output_dim` values.
    pub fn new(input_dim: usize, output_dim: usize) -> Self {
        Embedding {
            input_dim,
            output_dim,
            table: None,
            name: String::new(),
        }
    }
}

impl Layer for Embedding {
    fn config(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind(),
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
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
        self.name = name.to_string();
        // Keras initialises embeddings uniformly in [-0.05, 0.05].
        let table = Tensor::uniform([self.input_dim, self.output_dim], -0.05, 0.05, seed, device)?;
        self.table = Some(Var::new(table));
        Ok(vec![input[0], self.output_dim])
    }

    fn forward(&self, x: &Tensor, _training: bool) -> Result<Tensor> {
        let table = built(&self.name, &self.table)?;
        let dims = x.dims().to_vec();
        let ids = Tensor::from_raw(x.raw().cast(DType::U32)?.reshape([x.numel()])?);
        table
            .tensor()
            .index_select(&ids)?
            .reshape([dims[0], dims[1], self.output_dim])
    }

    fn parameters(&self) -> Vec<(&'static str, Var)> {
        self.table.iter().map(|t| ("weight", t.clone())).collect()
    }
}
