//! Applying layers to nodes. A layer is built (its parameters created) the first time it is
//! applied; a [`SharedLayer`] handle applied again reuses those weights (Keras's shared layers) and
//! carries the `trainable` flag.

use std::cell::Cell;
use std::sync::{Arc, Mutex, MutexGuard};

use kiln_autograd::{Tensor, Var};
use kiln_device::{DType, Device, Error, Pool2dParams, Result};

use super::names::keras_type_name;
use super::node::{Node, Source};
use crate::layers::Layer;
use crate::shape::{batched, tuple};

thread_local! {
    /// (base seed, layers built so far) of this thread's initialisers.
    static SEEDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Seeds the parameter initialisation of the layers this thread applies from now on (Keras's
/// `keras.utils.set_random_seed`). Without it each thread starts from seed 0, so a program builds
/// the same weights on every run.
pub fn set_random_seed(seed: u64) {
    SEEDS.with(|s| s.set((seed, 0)));
}

/// The next layer seed of this thread: `base · 1000 + n`, as `Sequential::seed` numbers its layers.
fn next_seed() -> u64 {
    SEEDS.with(|s| {
        let (base, n) = s.get();
        s.set((base, n + 1));
        base.wrapping_mul(1000).wrapping_add(n)
    })
}

/// Layer kinds that take integer ids (every other layer takes f32 values).
const ID_LAYERS: [&str; 1] = ["embedding"];

/// Layer kinds that take `[channels, height, width]` images.
const IMAGE_LAYERS: [&str; 4] = [
    "conv2d",
    "max_pooling2d",
    "average_pooling2d",
    "global_average_pooling2d",
];

struct Built {
    input: Vec<usize>,
    output: Vec<usize>,
}

struct Meta {
    /// The name the user gave, if any.
    name: Option<String>,
    /// The name the layer was built under.
    built_name: Option<String>,
    built: Option<Built>,
    trainable: bool,
}

struct Shared {
    kind: &'static str,
    layer: Mutex<Box<dyn Layer>>,
    meta: Mutex<Meta>,
}

/// A handle to a layer that can be applied to several nodes, all sharing its weights (Keras's
/// `shared = Dense(4); a = shared(x1); b = shared(x2)`), and frozen with `trainable(false)`. Clones
/// are handles to the same layer.
///
/// ```
/// use kiln_nn::prelude::*;
/// let (left, right) = (Input::new(8), Input::new(8));
/// let shared = Dense::new(4).shared();
/// let a = shared.apply(&left)?;
/// let b = shared.apply(&right)?; // the same weight and bias
/// let model = Model::new(&[&left, &right], &[&Add::new().apply(&[&a, &b])?])?;
/// assert_eq!(model.named_parameters().len(), 2);
/// # Ok::<(), kiln_device::Error>(())
/// ```
#[derive(Clone)]
pub struct SharedLayer(Arc<Shared>);

impl SharedLayer {
    /// A handle to `layer` (not built yet).
    pub fn new(layer: impl Layer + 'static) -> SharedLayer {
        SharedLayer::from_boxed(Box::new(layer))
    }

    /// A handle to a layer chosen at run time.
    pub fn from_boxed(layer: Box<dyn Layer>) -> SharedLayer {
        SharedLayer(Arc::new(Shared {
            kind: layer.kind(),
            layer: Mutex::new(layer),
            meta: Mutex::new(Meta {
                name: None,
                built_name: None,
                built: None,
                trainable: true,
            }),
        }))
    }

    /// Names the layer (checkpoint names become `name.weight`); by default models name layers
    /// after their kind (`dense`, `dense_1`, ...).
    pub fn named(self, name: &str) -> SharedLayer {
        self.meta().name = Some(name.to_string());
        self
    }

    /// Sets whether the optimizer trains this layer (Keras's `layer.trainable`).
    pub fn trainable(self, trainable: bool) -> SharedLayer {
        self.set_trainable(trainable);
        self
    }

    /// Freezes (`false`) or unfreezes the layer everywhere it is used; takes effect at the next
    /// training step.
    pub fn set_trainable(&self, trainable: bool) {
        self.meta().trainable = trainable;
        let parameters = self.layer().parameters();
        for (_, p) in parameters {
            p.set_frozen(!trainable);
        }
    }

    /// Whether the optimizer trains this layer.
    pub fn is_trainable(&self) -> bool {
        self.meta().trainable
    }

    /// The Keras kind (`dense`, `conv2d`, ...).
    pub fn kind(&self) -> &'static str {
        self.0.kind
    }

    /// Keras's type name (`Dense`, `Conv2D`, `MaxPooling2D`, ...).
    pub fn type_name(&self) -> String {
        keras_type_name(self.0.kind)
    }

    /// The name given with [`SharedLayer::named`], if any.
    pub fn name(&self) -> Option<String> {
        self.meta().name.clone()
    }

    /// The per-sample output shape, once the layer is built.
    pub fn output_shape(&self) -> Option<Vec<usize>> {
        self.meta().built.as_ref().map(|b| b.output.clone())
    }

    /// The layer's parameters with their PyTorch-style names (`weight`, `bias`).
    pub fn parameters(&self) -> Vec<(&'static str, Var)> {
        self.layer().parameters()
    }

    /// The layer's saved, untrained state (`running_mean`, ...).
    pub fn buffers(&self) -> Vec<(&'static str, Var)> {
        self.layer().buffers()
    }

    /// The layer applied to `x`: builds it the first time (an error names the layer and the
    /// shapes when it cannot take `x`), then reuses its weights.
    pub fn apply(&self, x: &Node) -> Result<Node> {
        self.apply_seeded(x, None)
    }

    /// [`SharedLayer::apply`] with the seed to build from (else this thread's next seed).
    pub(crate) fn apply_seeded(&self, x: &Node, seed: Option<u64>) -> Result<Node> {
        // Messages describe `x` only after the lock is released: `x` may come from this layer.
        let mut meta = self.meta();
        let output = match &meta.built {
            Some(built) if built.input != x.shape() => {
                let (name, input) = (self.display_name_of(&meta), batched(&built.input));
                drop(meta);
                return Err(Error::invalid(
                    "apply",
                    format!(
                        "layer {name} ({}) was built for inputs {input} and cannot be applied to \
                         {}: a shared layer takes one input shape",
                        self.type_name(),
                        x.describe()
                    ),
                ));
            }
            Some(built) => built.output.clone(),
            None => {
                let name = meta
                    .name
                    .clone()
                    .unwrap_or_else(|| provisional_name(self.0.kind, x));
                self.check_input(&name, x)?;
                let seed = seed.unwrap_or_else(next_seed);
                // Built on the CPU (initialisers give the same values on every device); the model
                // moves its weights to its device at compile or first use.
                let output = self.layer().build(&name, x.shape(), &Device::cpu(), seed)?;
                if !meta.trainable {
                    for (_, p) in self.layer().parameters() {
                        p.set_frozen(true);
                    }
                }
                meta.built = Some(Built {
                    input: x.shape().to_vec(),
                    output: output.clone(),
                });
                meta.built_name = Some(name);
                output
            }
        };
        drop(meta);
        Ok(Node::new(
            output,
            DType::F32,
            Source::Layer {
                layer: self.clone(),
                input: x.clone(),
            },
        ))
    }

    /// Refuses ids for layers that take values, and channels-last images.
    fn check_input(&self, name: &str, x: &Node) -> Result<()> {
        let kind = self.0.kind;
        if x.dtype() == DType::U32 && !ID_LAYERS.contains(&kind) {
            return Err(Error::invalid(
                "apply",
                format!(
                    "layer {name} ({}) takes f32 values, but {} holds integer ids: \
                     pass ids through an Embedding first",
                    self.type_name(),
                    x.describe()
                ),
            ));
        }
        if let &[h, w, c] = x.shape()
            && IMAGE_LAYERS.contains(&kind)
            && (c == 1 || c == 3)
            && h > c
            && w > c
        {
            return Err(Error::invalid(
                "build",
                format!(
                    "layer {name} ({}): the input {} looks channels-last (Keras's default), but kiln \
                     is channels-first: use [{c}, {h}, {w}] for the input shape and store each \
                     image's {c} channel plane(s) one after the other",
                    self.type_name(),
                    tuple(x.shape()),
                ),
            ));
        }
        Ok(())
    }

    /// The name for messages: the given one, else the one it was built under, else its kind.
    pub(crate) fn display_name(&self) -> String {
        self.display_name_of(&self.meta())
    }

    fn display_name_of(&self, meta: &Meta) -> String {
        meta.name
            .clone()
            .or_else(|| meta.built_name.clone())
            .unwrap_or_else(|| self.0.kind.to_string())
    }

    /// Whether both handles refer to one layer.
    pub fn same_layer(&self, other: &SharedLayer) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The layer, locked for a call (a poisoned lock still holds a usable layer: layers change
    /// only when built).
    pub(crate) fn layer(&self) -> MutexGuard<'_, Box<dyn Layer>> {
        self.0
            .layer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn meta(&self) -> MutexGuard<'_, Meta> {
        self.0
            .meta
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `forward_masked` and `output_mask` of the layer for `x` and its mask.
    pub(crate) fn call(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        training: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        // As in Keras, a frozen BatchNormalization runs in inference mode (its moving statistics
        // stay as they are). The flag is read before the layer is locked: `apply` holds the metadata
        // lock while it locks the layer, so the layer lock is never held while taking the other.
        let frozen_norm = !self.is_trainable() && self.0.kind == "batch_normalization";
        let layer = self.layer();
        let y = layer.forward_masked(x, mask, training && !frozen_norm)?;
        Ok((y, layer.output_mask(x, mask)?))
    }

    /// The layer's output max-pooled by `pool` in one op ([`Layer::forward_max_pooled`]), if the
    /// layer has a fused kernel for it.
    pub(crate) fn call_max_pooled(
        &self,
        x: &Tensor,
        pool: Pool2dParams,
        training: bool,
    ) -> Option<Result<Tensor>> {
        self.layer().forward_max_pooled(x, pool, training)
    }
}

impl std::fmt::Debug for SharedLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SharedLayer({} ({}), trainable: {})",
            self.display_name(),
            self.type_name(),
            self.is_trainable()
        )
    }
}

/// `kind` or `kind_n`, `n` counting the layers of that kind `x` depends on (the name
/// `Sequential` gives the layer; a model renames layers uniquely in its own order).
fn provisional_name(kind: &'static str, x: &Node) -> String {
    let mut seen: Vec<SharedLayer> = Vec::new();
    for node in x.ancestors() {
        if let Source::Layer { layer, .. } = node.source()
            && layer.kind() == kind
            && !seen.iter().any(|s| s.same_layer(layer))
        {
            seen.push(layer.clone());
        }
    }
    match seen.len() {
        0 => kind.to_string(),
        n => format!("{kind}_{n}"),
    }
}

/// Applying a layer to a node, Keras's `layer(x)`: `Dense::new(8).apply(&x)?`. Implemented for every
/// [`Layer`].
pub trait ApplyLayer: Layer + Sized + 'static {
    /// The layer built for and applied to `x` (use [`ApplyLayer::shared`] to apply it again).
    fn apply(self, x: &Node) -> Result<Node> {
        SharedLayer::new(self).apply(x)
    }

    /// A handle that applies this one layer to several nodes, sharing its weights.
    fn shared(self) -> SharedLayer {
        SharedLayer::new(self)
    }

    /// The layer, frozen (`false`) or trainable: `Dense::new(8).trainable(false).apply(&x)?`.
    fn trainable(self, trainable: bool) -> SharedLayer {
        SharedLayer::new(self).trainable(trainable)
    }

    /// The layer with a name of your choice (`Dense::new(8).named("hidden")`).
    fn named(self, name: &str) -> SharedLayer {
        SharedLayer::new(self).named(name)
    }
}

impl<L: Layer + 'static> ApplyLayer for L {}

/// What `Sequential::add` takes: a layer, a boxed layer, or a [`SharedLayer`] handle.
pub trait IntoSharedLayer {
    /// The layer as a handle.
    fn into_shared(self) -> SharedLayer;
}

impl<L: Layer + 'static> IntoSharedLayer for L {
    fn into_shared(self) -> SharedLayer {
        SharedLayer::new(self)
    }
}

impl IntoSharedLayer for Box<dyn Layer> {
    fn into_shared(self) -> SharedLayer {
        SharedLayer::from_boxed(self)
    }
}

impl IntoSharedLayer for SharedLayer {
    fn into_shared(self) -> SharedLayer {
        self
    }
}

impl IntoSharedLayer for &SharedLayer {
    fn into_shared(self) -> SharedLayer {
        self.clone()
    }
}
