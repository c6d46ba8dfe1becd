//! Losses composed from kernels: Huber, L1, class-weighted and label-smoothed cross-entropy, and
//! binary cross-entropy with a positive-class weight. (The fused softmax cross-entropy, BCE and MSE
//! kernels are in `nn.rs`.)

use kiln_device::{DType, Error, Result};

use crate::Tensor;

impl Tensor {
    /// `[N]` u32 class labels as `[N, classes]` one-hot rows (f32, no gradient).
    pub fn one_hot(&self, classes: usize) -> Result<Tensor> {
        let op = "one_hot";
        if self.dims().len() != 1 {
            return Err(Error::invalid(
                op,
                format!("expects [batch] labels, got {}", self.shape()),
            ));
        }
        self.raw()
            .expect_dtype(op, DType::U32, "labels are u32 class indices")?;
        let labels = Tensor::from_raw(self.raw().cast(DType::F32)?.reshape([self.numel(), 1])?);
        labels.eq(&Tensor::arange(classes, self.device())?)
    }

    fn check_pair(&self, op: &'static str, target: &Tensor) -> Result<()> {
        if self.shape() != target.shape() {
            return Err(Error::invalid(
                op,
                format!(
                    "prediction {} and target {} must have the same shape",
                    self.shape(),
                    target.shape()
                ),
            ));
        }
        Ok(())
    }

    /// Huber loss (mean): `½ d²` where `|d| ≤ delta`, else `delta (|d| - ½ delta)`, `d = self - target`.
    pub fn huber(&self, target: &Tensor, delta: f32) -> Result<Tensor> {
        self.huber_per_element(target, delta)?.mean_all()
    }

    /// Huber loss of each element, unreduced (PyTorch's `reduction="none"`).
    pub fn huber_per_element(&self, target: &Tensor, delta: f32) -> Result<Tensor> {
        self.check_pair("huber", target)?;
        let abs = self.sub(target)?.abs()?;
        // the quadratic part min(|d|, delta) = |d| - relu(|d| - delta)
        let quadratic = abs.sub(&abs.sub_scalar(delta)?.relu()?)?;
        let linear = abs.sub(&quadratic)?;
        quadratic
            .mul(&quadratic)?
            .mul_scalar(0.5)?
            .add(&linear.mul_scalar(delta)?)
    }

    /// Mean absolute error.
    pub fn l1(&self, target: &Tensor) -> Result<Tensor> {
        self.check_pair("l1", target)?;
        self.sub(target)?.abs()?.mean_all()
    }

    /// `[N, C]` logits and `[N]` labels: the checked class count.
    fn classes(&self, op: &'static str, labels: &Tensor) -> Result<usize> {
        match self.dims() {
            [n, c] if labels.dims() == [*n] => Ok(*c),
            _ => Err(Error::invalid(
                op,
                format!(
                    "expects [batch, classes] logits and [batch] labels, got {} and {}",
                    self.shape(),
                    labels.shape()
                ),
            )),
        }
    }

    /// Softmax cross-entropy with a weight per class (`[C]`): `Σ w[yᵢ] nllᵢ / Σ w[yᵢ]`, PyTorch's
    /// weighted mean (Keras's `class_weight`).
    pub fn cross_entropy_weighted(&self, labels: &Tensor, class_weight: &Tensor) -> Result<Tensor> {
        let op = "cross_entropy_weighted";
        let c = self.classes(op, labels)?;
        if class_weight.dims() != [c] {
            return Err(Error::invalid(
                op,
                format!("class weights {} must be [{c}]", class_weight.shape()),
            ));
        }
        let one_hot = labels.one_hot(c)?;
        let weight_of_row = one_hot.mul(class_weight)?.sum(1, false)?;
        let nll = one_hot.mul(&self.log_softmax(1)?)?.sum(1, false)?.neg()?;
        nll.mul(&weight_of_row)?
            .sum_all()?
            .div(&weight_of_row.sum_all()?)
    }

    /// Softmax cross-entropy against labels smoothed by `smoothing`: the target puts
    /// `1 - smoothing + smoothing / C` on the label and `smoothing / C` elsewhere.
    pub fn cross_entropy_smoothed(&self, labels: &Tensor, smoothing: f32) -> Result<Tensor> {
        let op = "cross_entropy_smoothed";
        let c = self.classes(op, labels)?;
        if !(0.0..=1.0).contains(&smoothing) {
            return Err(Error::argument(
                op,
                format!("label smoothing {smoothing} must be in [0, 1]"),
            ));
        }
        let targets = labels
            .one_hot(c)?
            .mul_scalar(1.0 - smoothing)?
            .add_scalar(smoothing / c as f32)?;
        self.cross_entropy_soft(&targets)
    }

    /// Binary cross-entropy on logits with the positive class weighted by `pos_weight` (broadcast
    /// against the logits): `-(p y log σ(x) + (1 - y) log(1 - σ(x)))`, averaged.
    pub fn bce_with_logits_weighted(
        &self,
        targets: &Tensor,
        pos_weight: &Tensor,
    ) -> Result<Tensor> {
        self.bce_with_logits_weighted_per_element(targets, pos_weight)?
            .mean_all()
    }

    /// [`Tensor::bce_with_logits_weighted`] of each element, unreduced.
    pub fn bce_with_logits_weighted_per_element(
        &self,
        targets: &Tensor,
        pos_weight: &Tensor,
    ) -> Result<Tensor> {
        self.check_pair("bce_with_logits_weighted", targets)?;
        // = (1 - y) x + (1 + (p - 1) y) softplus(-x)
        let factor = targets.mul(&pos_weight.sub_scalar(1.0)?)?.add_scalar(1.0)?;
        let negative = targets.mul_scalar(-1.0)?.add_scalar(1.0)?.mul(self)?;
        negative.add(&factor.mul(&self.neg()?.softplus()?)?)
    }
}
