//! `MultiHeadAttention` (self-attention over `[steps, features]`, padded keys masked) and the
//! `TransformerEncoder` block built from it: attention and a feed-forward network, each with a
//! residual connection and layer normalisation (the post-norm block of "Attention Is All You Need"
//! and Keras's text-classification example).

use kiln_autograd::{AttentionWeights, Tensor, Var};
use kiln_device::{Device, Error, Result};

use super::dense::on_rows;
use super::{Initializer, Layer, built, zeros};

/// The parameters of one self-attention block, PyTorch's layout.
struct AttentionParams {
    w_in: Var,
    b_in: Var,
    w_out: Var,
    b_out: Var,
}

impl AttentionParams {
    fn new(features: usize, seed: u64, device: &Device) -> Result<Self> {
        let glorot = Initializer::GlorotUniform;
        Ok(AttentionParams {
            w_in: glorot.init(
                &[3 * features, features],
                (features, features),
                seed,
                device,
            )?,
            b_in: zeros(&[3 * features], device)?,
            w_out: glorot.init(
                &[features, features],
                (features, features),
                seed.wrapping_add(1),
                device,
            )?,
            b_out: zeros(&[features], device)?,
        })
    }

    /// Self-attention of `x` with `heads` heads; `mask` (`[N, T]`, 1 = real step) hides padded keys.
    fn attend(&self, x: &Tensor, heads: usize, mask: Option<&Tensor>) -> Result<Tensor> {
        let (w_in, b_in, w_out, b_out) = (
            self.w_in.tensor(),
            self.b_in.tensor(),
            self.w_out.tensor(),
            self.b_out.tensor(),
        );
        let weights = AttentionWeights {
            w_in: &w_in,
            b_in: Some(&b_in),
            w_out: &w_out,
            b_out: Some(&b_out),
        };
        let ignore = mask
            .map(|m| m.mul_scalar(-1.0)?.add_scalar(1.0))
            .transpose()?;
        x.multi_head_attention(&weights, heads, ignore.as_ref())
    }

    fn named(&self, prefix: [&'static str; 4]) -> Vec<(&'static str, Var)> {
        vec![
            (prefix[0], self.w_in.clone()),
            (prefix[1], self.b_in.clone()),
            (prefix[2], self.w_out.clone()),
            (prefix[3], self.b_out.clone()),
        ]
    }
}

/// `[steps, features]` per sample, with `heads` dividing the features.
fn check_sequence(name: &str, type_name: &str, input: &[usize], heads: usize) -> Result<usize> {
    match *input {
        [_, features] if heads > 0 && features % heads == 0 => Ok(features),
        [_, features] => Err(Error::argument(
            "build",
            format!(
                "layer {name} ({type_name}): {heads} heads must divide the {features} features"
            ),
        )),
        _ => Err(Error::invalid(
            "build",
            format!(
                "layer {name} ({type_name}) expects [steps, features] per sample, got {input:?}"
            ),
        )),
    }
}

/// Multi-head self-attention (Keras's `MultiHeadAttention` called with `query = value = key = x`,
/// `key_dim = features / heads`); the output has the input's shape.
pub struct MultiHeadAttention {
    heads: usize,
    params: Option<AttentionParams>,
    name: String,
}

impl MultiHeadAttention {
    /// Self-attention with `heads` heads.
    pub fn new(heads: usize) -> Self {
        MultiHeadAttention {
            heads,
            params: None,
            name: String::new(),
        }
    }
}

impl Layer for MultiHeadAttention {
    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "kind": self.kind(), "num_heads": self.heads })
    }

    fn kind(&self) -> &'static str {
        "multi_head_attention"
    }

    fn build(
        &mut self,
        name: &str,
        input: &[usize],
        device: &Device,
        seed: u64,
    ) -> Result<Vec<usize>> {
        let features = check_sequence(name, "MultiHeadAttention", input, self.heads)?;
        self.name = name.to_string();
        self.params = Some(AttentionParams::new(features, seed, device)?);
        Ok(input.to_vec())
    }

    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        self.forward_masked(x, None, training)
    }

    fn forward_masked(&self, x: &Tensor, mask: Option<&Tensor>, _training: bool) -> Result<Tensor> {
        built(&self.name, &self.params)?.attend(x, self.heads, mask)
    }

    fn output_mask(&self, _x: &Tensor, mask: Option<&Tensor>) -> Result<Option<Tensor>> {
        Ok(mask.cloned())
    }

    fn parameters(&self) -> Vec<(&'static str, Var)> {
        self.params
            .iter()
            .flat_map(|p| {
                p.named([
                    "in_proj_weight",
                    "in_proj_bias",
                    "out_proj.weight",
                    "out_proj.bias",
                ])
            })
            .collect()
    }
}

struct EncoderParams {
    attention: AttentionParams,
    norm1: (Var, Var),
    ff1: (Var, Var),
    ff2: (Var, Var),
    norm2: (Var, Var),
}

/// A Transformer encoder block: `x = norm(x + attention(x))`, then `norm(x + W₂ relu(W₁ x))`.
pub struct TransformerEncoder {
    heads: usize,
    feed_forward: usize,
    epsilon: f32,
    params: Option<EncoderParams>,
    name: String,
}

impl TransformerEncoder {
    /// A block with `heads` attention heads and a feed-forward layer of `feed_forward` units.
    pub fn new(heads: usize, feed_forward: usize) -> Self {
        TransformerEncoder {
            heads,
            feed_forward,
            epsilon: 1e-6,
            params: None,
            name: String::new(),
        }
    }
}

/// `x · Wᵀ + b` (with ReLU when `relu`) over the last axis.
fn dense_steps(x: &Tensor, (w, b): &(Var, Var), relu: bool) -> Result<Tensor> {
    on_rows(x, |rows| {
        if relu {
            rows.linear_relu(&w.tensor(), Some(&b.tensor()))
        } else {
            rows.linear(&w.tensor(), Some(&b.tensor()))
        }
    })
}

impl Layer for TransformerEncoder {
    fn config(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": self.kind(),
            "num_heads": self.heads,
            "intermediate_dim": self.feed_forward,
        })
    }

    fn kind(&self) -> &'static str {
        "transformer_encoder"
    }

    fn build(
        &mut self,
        name: &str,
        input: &[usize],
        device: &Device,
        seed: u64,
    ) -> Result<Vec<usize>> {
        let e = check_sequence(name, "TransformerEncoder", input, self.heads)?;
        let ff = self.feed_forward;
        let norm = || -> Result<(Var, Var)> {
            Ok((Var::new(Tensor::ones([e], device)?), zeros(&[e], device)?))
        };
        let glorot = Initializer::GlorotUniform;
        self.name = name.to_string();
        self.params = Some(EncoderParams {
            attention: AttentionParams::new(e, seed, device)?,
            norm1: norm()?,
            ff1: (
                glorot.init(&[ff, e], (e, ff), seed.wrapping_add(2), device)?,
                zeros(&[ff], device)?,
            ),
            ff2: (
                glorot.init(&[e, ff], (ff, e), seed.wrapping_add(3), device)?,
                zeros(&[e], device)?,
            ),
            norm2: norm()?,
        });
        Ok(input.to_vec())
    }

    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        self.forward_masked(x, None, training)
    }

    fn forward_masked(&self, x: &Tensor, mask: Option<&Tensor>, _training: bool) -> Result<Tensor> {
        let p = built(&self.name, &self.params)?;
        let norm =
            |t: &Tensor, (w, b): &(Var, Var)| t.layer_norm(&w.tensor(), &b.tensor(), self.epsilon);
        let attended = norm(&x.add(&p.attention.attend(x, self.heads, mask)?)?, &p.norm1)?;
        let ff = dense_steps(&dense_steps(&attended, &p.ff1, true)?, &p.ff2, false)?;
        norm(&attended.add(&ff)?, &p.norm2)
    }

    fn output_mask(&self, _x: &Tensor, mask: Option<&Tensor>) -> Result<Option<Tensor>> {
        Ok(mask.cloned())
    }

    fn parameters(&self) -> Vec<(&'static str, Var)> {
        let Some(p) = &self.params else {
            return Vec::new();
        };
        let mut named = p.attention.named([
            "attention.in_proj_weight",
            "attention.in_proj_bias",
            "attention.out_proj.weight",
            "attention.out_proj.bias",
        ]);
        for (names, (w, b)) in [
            (["norm1.weight", "norm1.bias"], &p.norm1),
            (["linear1.weight", "linear1.bias"], &p.ff1),
            (["linear2.weight", "linear2.bias"], &p.ff2),
            (["norm2.weight", "norm2.bias"], &p.norm2),
        ] {
            named.push((names[0], w.clone()));
            named.push((names[1], b.clone()));
        }
        named
    }
}
