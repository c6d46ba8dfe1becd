//! Rebuilding a layer from the JSON its [`Layer::config`] wrote (Keras's `layer_from_config`).

use kiln_device::{Error, Result};
use serde_json::Value;

use super::{
    Activation, ActivationLayer, AveragePooling2D, BatchNormalization, Conv1D, Conv2D, Dense,
    Dropout, Embedding, Flatten, GRU, GlobalAveragePooling1D, GlobalAveragePooling2D,
    GlobalMaxPooling1D, Initializer, LSTM, Layer, LayerNormalization, MaxPooling2D,
    MultiHeadAttention, Padding, Permute, Reshape, TransformerEncoder,
};

fn bad(config: &Value, what: &str) -> Error {
    Error::InvalidData {
        op: "from_config",
        message: format!("{what} in layer config {config}"),
    }
}

fn count(config: &Value, key: &str) -> Result<usize> {
    config[key]
        .as_u64()
        .map(|v| v as usize)
        .ok_or_else(|| bad(config, &format!("missing or non-integer \"{key}\"")))
}

fn pair(config: &Value, key: &str) -> Result<(usize, usize)> {
    match config[key].as_array().map(Vec::as_slice) {
        Some([a, b]) => match (a.as_u64(), b.as_u64()) {
            (Some(a), Some(b)) => Ok((a as usize, b as usize)),
            _ => Err(bad(config, &format!("\"{key}\" is not two integers"))),
        },
        _ => Err(bad(config, &format!("missing or malformed \"{key}\""))),
    }
}

fn activation(config: &Value) -> Result<Activation> {
    let name = config["activation"].as_str().unwrap_or("linear");
    Activation::from_name(name).ok_or_else(|| bad(config, &format!("unknown activation {name:?}")))
}

fn padding(config: &Value) -> Result<Padding> {
    let name = config["padding"].as_str().unwrap_or("valid");
    Padding::from_name(name).ok_or_else(|| bad(config, &format!("unknown padding {name:?}")))
}

fn initializer(config: &Value, key: &str, default: Initializer) -> Result<Initializer> {
    match config[key].as_str() {
        None => Ok(default),
        Some(name) => Initializer::from_name(name)
            .ok_or_else(|| bad(config, &format!("unknown initializer {name:?}"))),
    }
}

fn float(config: &Value, key: &str) -> Result<f32> {
    config[key]
        .as_f64()
        .map(|v| v as f32)
        .ok_or_else(|| bad(config, &format!("missing or non-numeric \"{key}\"")))
}

fn counts(config: &Value, key: &str) -> Result<Vec<usize>> {
    config[key]
        .as_array()
        .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
        .ok_or_else(|| bad(config, &format!("missing or malformed \"{key}\"")))
}

/// A layer, unbuilt, from its config (see [`Layer::config`]); an unknown kind or a missing field is
/// an error quoting the config.
pub fn from_config(config: &Value) -> Result<Box<dyn Layer>> {
    let kind = config["kind"]
        .as_str()
        .ok_or_else(|| bad(config, "missing \"kind\""))?;
    Ok(match kind {
        "dense" => Box::new(
            Dense::new(count(config, "units")?)
                .activation(activation(config)?)
                .kernel_initializer(initializer(
                    config,
                    "kernel_initializer",
                    Initializer::GlorotUniform,
                )?),
        ),
        "conv2d" => Box::new(
            Conv2D::new(count(config, "filters")?, pair(config, "kernel_size")?)
                .strides(pair(config, "strides")?)
                .padding(padding(config)?)
                .activation(activation(config)?)
                .kernel_initializer(initializer(
                    config,
                    "kernel_initializer",
                    Initializer::GlorotUniform,
                )?),
        ),
        "max_pooling2d" => Box::new(MaxPooling2D::with_strides(
            pair(config, "pool_size")?,
            pair(config, "strides")?,
        )),
        "average_pooling2d" => Box::new(AveragePooling2D::with_strides(
            pair(config, "pool_size")?,
            pair(config, "strides")?,
        )),
        "flatten" => Box::new(Flatten::new()),
        "dropout" => Box::new(Dropout::new(
            config["rate"]
                .as_f64()
                .ok_or_else(|| bad(config, "missing \"rate\""))? as f32,
        )),
        "embedding" => Box::new(Embedding::from_config(config)?),
        "activation" => Box::new(ActivationLayer(activation(config)?)),
        "conv1d" => Box::new(
            Conv1D::new(count(config, "filters")?, count(config, "kernel_size")?)
                .strides(count(config, "strides")?)
                .padding(padding(config)?)
                .activation(activation(config)?)
                .kernel_initializer(initializer(
                    config,
                    "kernel_initializer",
                    Initializer::GlorotUniform,
                )?),
        ),
        "global_average_pooling1d" => Box::new(GlobalAveragePooling1D),
        "global_max_pooling1d" => Box::new(GlobalMaxPooling1D),
        "global_average_pooling2d" => Box::new(GlobalAveragePooling2D),
        "lstm" | "gru" => {
            let units = count(config, "units")?;
            let layer = if kind == "lstm" {
                LSTM::new(units)
            } else {
                GRU::new(units)
            };
            Box::new(
                layer
                    .return_sequences(config["return_sequences"].as_bool().unwrap_or(false))
                    .kernel_initializer(initializer(
                        config,
                        "kernel_initializer",
                        Initializer::GlorotUniform,
                    )?)
                    .recurrent_initializer(initializer(
                        config,
                        "recurrent_initializer",
                        Initializer::Orthogonal,
                    )?),
            )
        }
        "layer_normalization" => {
            Box::new(LayerNormalization::new().epsilon(float(config, "epsilon")?))
        }
        "batch_normalization" => Box::new(
            BatchNormalization::new()
                .momentum(float(config, "momentum")?)
                .epsilon(float(config, "epsilon")?),
        ),
        "multi_head_attention" => Box::new(MultiHeadAttention::new(count(config, "num_heads")?)),
        "transformer_encoder" => Box::new(TransformerEncoder::new(
            count(config, "num_heads")?,
            count(config, "intermediate_dim")?,
        )),
        "reshape" => Box::new(Reshape::new(counts(config, "target_shape")?)),
        "permute" => Box::new(Permute::new(counts(config, "dims")?)),
        other => return Err(bad(config, &format!("unknown layer kind {other:?}"))),
    })
}
