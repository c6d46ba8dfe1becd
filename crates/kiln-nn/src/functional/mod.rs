//! The functional API (Keras's): [`Input`]s, layers applied to [`Node`]s, merge layers, then
//! `Model::new(inputs, outputs)`.
//!
//! ```
//! use kiln_nn::prelude::*;
//! let user = Input::ids([1]).named("user");
//! let item = Input::ids([1]).named("item");
//! let u = Flatten::new().apply(&Embedding::new(100, 8).apply(&user)?)?;
//! let i = Flatten::new().apply(&Embedding::new(50, 8).apply(&item)?)?;
//! let rating = Dot::new(1).apply(&[&u, &i])?;
//! let model = Model::new(&[&user, &item], &[&rating])?;
//! assert_eq!(rating.shape(), &[1]);
//! print!("{}", model.summary());
//! # Ok::<(), kiln_device::Error>(())
//! ```

mod merge;
mod names;
mod node;
mod shared;

pub use merge::{Add, Concatenate, Dot, DotAxes, MergeLayer, Multiply};
pub use names::keras_type_name;
pub use node::{Input, Node};
pub use shared::{ApplyLayer, IntoSharedLayer, SharedLayer, set_random_seed};

pub(crate) use merge::apply_merge;
pub(crate) use node::Source;
