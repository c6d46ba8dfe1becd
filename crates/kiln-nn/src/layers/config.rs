//! Rebuilding a layer from the JSON its [`Layer::config`] wrote (Keras's `layer_from_config`).

use kiln_device::{Error, Result};
use serde_json::Value;

use super::{
    Activation, ActivationLayer, AveragePooling2D, Conv2D, Dense, Dropout, Embedding, Flatten,
    Layer, MaxPooling2D, Padding,
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

/// A layer, unbuilt, from its config (see [`Layer::config`]); an unknown kind or a missing field is
/// an error quoting the config.
pub fn from_config(config: &Value) -> Result<Box<dyn Layer>> {
    let kind = config["kind"]
        .as_str()
        .ok_or_else(|| bad(config, "missing \"kind\""))?;
    Ok(match kind {
        "dense" => Box::new(Dense::new(count(config, "units")?).activation(activation(config)?)),
        "conv2d" => {
            let name = config["padding"].as_str().unwrap_or("valid");
            let padding = Padding::from_name(name)
                .ok_or_else(|| bad(config, &format!("unknown padding {name:?}")))?;
            Box::new(
                Conv2D::new(count(config, "filters")?, pair(config, "kernel_size")?)
                    .strides(pair(config, "strides")?)
                    .padding(padding)
                    .activation(activation(config)?),
            )
        }
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
        "embedding" => Box::new(Embedding::new(
            count(config, "input_dim")?,
            count(config, "output_dim")?,
        )),
        "activation" => Box::new(ActivationLayer(activation(config)?)),
        other => return Err(bad(config, &format!("unknown layer kind {other:?}"))),
    })
}
