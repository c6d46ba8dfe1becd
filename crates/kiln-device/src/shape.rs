//! `Shape` (the dimensions of a tensor) and numpy broadcasting.

use smallvec::SmallVec;

use crate::{Error, Result};

/// Dimensions or strides, inline up to rank 4 (NCHW, attention scores): creating a tensor of such a
/// rank allocates nothing for them.
pub(crate) type Dims = SmallVec<[usize; 4]>;

/// The dimensions of a tensor, outermost first (`[batch, channels, height, width]` for images).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub(crate) Dims);

impl Shape {
    /// A shape from its dimensions.
    pub fn new(dims: impl Into<Vec<usize>>) -> Self {
        Shape(Dims::from_vec(dims.into()))
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// Number of elements (1 for a scalar, 0 if any dimension is 0).
    pub fn numel(&self) -> usize {
        // Saturates instead of wrapping: a count past usize::MAX can never be allocated, so every
        // size check then refuses it.
        self.0
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .unwrap_or(usize::MAX)
    }

    /// Row-major (C-order) strides of a contiguous tensor of this shape, in elements.
    pub fn contiguous_strides(&self) -> Vec<usize> {
        self.strides_row_major().into_vec()
    }

    /// [`Shape::contiguous_strides`], inline.
    pub(crate) fn strides_row_major(&self) -> Dims {
        let mut strides: Dims = SmallVec::from_elem(0, self.rank());
        let mut acc = 1;
        for (stride, &dim) in strides.iter_mut().zip(&self.0).rev() {
            *stride = acc;
            acc *= dim;
        }
        strides
    }

    /// Resolves a possibly negative axis (`-1` = last) against this shape's rank.
    pub fn axis(&self, op: &'static str, axis: isize) -> Result<usize> {
        let rank = self.rank() as isize;
        let resolved = if axis < 0 { axis + rank } else { axis };
        if resolved < 0 || resolved >= rank {
            return Err(Error::invalid(
                op,
                format!(
                    "axis {axis} is out of range for shape {self} (valid: {} ..= {})",
                    -rank,
                    rank - 1
                ),
            ));
        }
        Ok(resolved as usize)
    }

    /// The shape two operands broadcast to, numpy style: dimensions are aligned from the right and each
    /// pair must be equal or contain a 1.
    pub fn broadcast(op: &'static str, lhs: &Shape, rhs: &Shape) -> Result<Shape> {
        let rank = lhs.rank().max(rhs.rank());
        let mut dims = vec![0; rank];
        for (i, dim) in dims.iter_mut().enumerate() {
            let l = lhs.dim_from_right(rank - 1 - i);
            let r = rhs.dim_from_right(rank - 1 - i);
            *dim = match (l, r) {
                (l, r) if l == r => l,
                (1, r) => r,
                (l, 1) => l,
                _ => {
                    return Err(Error::Broadcast {
                        op,
                        lhs: lhs.clone(),
                        rhs: rhs.clone(),
                    });
                }
            };
        }
        Ok(Shape(Dims::from_vec(dims)))
    }

    /// The `i`-th dimension counted from the right, 1 past the rank.
    fn dim_from_right(&self, i: usize) -> usize {
        if i < self.rank() {
            self.0[self.rank() - 1 - i]
        } else {
            1
        }
    }
}

impl std::fmt::Debug for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl From<&[usize]> for Shape {
    fn from(dims: &[usize]) -> Self {
        Shape(Dims::from_slice(dims))
    }
}

impl From<Vec<usize>> for Shape {
    fn from(dims: Vec<usize>) -> Self {
        Shape(Dims::from_vec(dims))
    }
}

impl<const N: usize> From<[usize; N]> for Shape {
    fn from(dims: [usize; N]) -> Self {
        Shape(Dims::from_slice(&dims))
    }
}

impl FromIterator<usize> for Shape {
    fn from_iter<I: IntoIterator<Item = usize>>(dims: I) -> Self {
        Shape(dims.into_iter().collect())
    }
}

impl From<()> for Shape {
    fn from(_: ()) -> Self {
        Shape(Dims::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasts_like_numpy() {
        let s = Shape::broadcast("add", &[3, 1, 5].into(), &[4, 5].into()).unwrap();
        assert_eq!(s.dims(), &[3, 4, 5]);
        let s = Shape::broadcast("add", &[2, 1, 4, 1].into(), &[3, 1, 5].into()).unwrap();
        assert_eq!(s.dims(), &[2, 3, 4, 5]);
        let s = Shape::broadcast("add", &().into(), &[2].into()).unwrap();
        assert_eq!(s.dims(), &[2]);
    }

    #[test]
    fn incompatible_broadcast_names_op_and_shapes() {
        let err = Shape::broadcast("mul", &[3, 4].into(), &[5].into())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mul") && err.contains("[3, 4]") && err.contains("[5]"),
            "{err}"
        );
    }

    #[test]
    fn contiguous_strides_are_row_major() {
        assert_eq!(Shape::from([2, 3, 4]).contiguous_strides(), vec![12, 4, 1]);
        assert_eq!(Shape::from(()).contiguous_strides(), Vec::<usize>::new());
    }

    #[test]
    fn negative_axes_count_from_the_end() {
        let s = Shape::from([2, 3]);
        assert_eq!(s.axis("sum", -1).unwrap(), 1);
        assert!(s.axis("sum", 2).unwrap_err().to_string().contains("axis 2"));
    }
}
