//! Per-sample shapes as users write them: `30`, `(28, 28)`, `[1, 28, 28]`, `vec![30]`, and how
//! they are printed in errors and summaries (Keras's `(None, 30)`).

/// Something that names a per-sample shape (no batch dimension): a `usize` (one dimension), a
/// tuple of one to four `usize`s, an array, a slice or a `Vec` of them.
pub trait IntoShape {
    /// The dimensions.
    fn into_shape(self) -> Vec<usize>;
}

impl IntoShape for usize {
    fn into_shape(self) -> Vec<usize> {
        vec![self]
    }
}

impl IntoShape for (usize,) {
    fn into_shape(self) -> Vec<usize> {
        vec![self.0]
    }
}

impl IntoShape for (usize, usize) {
    fn into_shape(self) -> Vec<usize> {
        vec![self.0, self.1]
    }
}

impl IntoShape for (usize, usize, usize) {
    fn into_shape(self) -> Vec<usize> {
        vec![self.0, self.1, self.2]
    }
}

impl IntoShape for (usize, usize, usize, usize) {
    fn into_shape(self) -> Vec<usize> {
        vec![self.0, self.1, self.2, self.3]
    }
}

impl<const N: usize> IntoShape for [usize; N] {
    fn into_shape(self) -> Vec<usize> {
        self.to_vec()
    }
}

impl<const N: usize> IntoShape for &[usize; N] {
    fn into_shape(self) -> Vec<usize> {
        self.to_vec()
    }
}

impl IntoShape for &[usize] {
    fn into_shape(self) -> Vec<usize> {
        self.to_vec()
    }
}

impl IntoShape for Vec<usize> {
    fn into_shape(self) -> Vec<usize> {
        self
    }
}

impl IntoShape for &Vec<usize> {
    fn into_shape(self) -> Vec<usize> {
        self.clone()
    }
}

/// A Python-style tuple: `(5, 20)`, `(5,)`, `()`.
pub(crate) fn tuple(dims: &[usize]) -> String {
    match dims {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            dims.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A per-sample shape with Keras's unknown batch first: `(None, 30)`.
pub(crate) fn batched(sample: &[usize]) -> String {
    let dims: Vec<String> = std::iter::once("None".to_string())
        .chain(sample.iter().map(usize::to_string))
        .collect();
    format!("({})", dims.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_from_tuples_arrays_and_vecs() {
        assert_eq!(30.into_shape(), vec![30]);
        assert_eq!((28, 28, 1).into_shape(), vec![28, 28, 1]);
        assert_eq!([1, 28, 28].into_shape(), vec![1, 28, 28]);
        assert_eq!(vec![4, 2].into_shape(), vec![4, 2]);
        assert_eq!(batched(&[30]), "(None, 30)");
        assert_eq!(tuple(&[5, 20]), "(5, 20)");
        assert_eq!(tuple(&[5]), "(5,)");
    }
}
