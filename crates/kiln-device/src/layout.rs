//! `Layout`: how a tensor's elements sit in its storage (shape + strides + offset), so that reshape,
//! transpose, broadcast and narrow are views that copy nothing.

use crate::shape::Dims;
use crate::{Error, Result, Shape};

/// Shape, per-dimension strides and starting offset, all in elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    shape: Shape,
    strides: Dims,
    offset: usize,
}

impl Layout {
    /// The row-major layout of a fresh tensor.
    pub fn contiguous(shape: impl Into<Shape>) -> Self {
        let shape = shape.into();
        let strides = shape.strides_row_major();
        Layout {
            shape,
            strides,
            offset: 0,
        }
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// The strides, in elements (0 on broadcast dimensions).
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// Offset of the first element in the storage, in elements.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Whether elements are stored row-major without gaps (the offset may be non-zero).
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for (&dim, &stride) in self.shape.dims().iter().zip(&self.strides).rev() {
            if dim != 1 && stride != expected {
                return false;
            }
            expected *= dim;
        }
        true
    }

    /// One past the largest storage index this layout touches (0 for an empty tensor).
    pub fn storage_extent(&self) -> usize {
        if self.shape.numel() == 0 {
            return 0;
        }
        let last: usize = self
            .shape
            .dims()
            .iter()
            .zip(&self.strides)
            .map(|(&d, &s)| (d - 1) * s)
            .sum();
        self.offset + last + 1
    }

    /// The same elements with a new shape; `None` when that needs a copy (the layout is not contiguous).
    pub fn reshape(&self, op: &'static str, shape: Shape) -> Result<Option<Layout>> {
        if shape.numel() != self.shape.numel() {
            return Err(Error::invalid(
                op,
                format!(
                    "cannot reshape {} ({} elements) into {} ({} elements)",
                    self.shape,
                    self.shape.numel(),
                    shape,
                    shape.numel()
                ),
            ));
        }
        if !self.is_contiguous() {
            return Ok(None);
        }
        let mut layout = Layout::contiguous(shape);
        layout.offset = self.offset;
        Ok(Some(layout))
    }

    /// Dimensions reordered: output dimension `i` is input dimension `order[i]`.
    pub fn permute(&self, order: &[usize]) -> Result<Layout> {
        let rank = self.shape.rank();
        let mut seen = vec![false; rank];
        let valid = order.len() == rank
            && order
                .iter()
                .all(|&d| d < rank && !std::mem::replace(&mut seen[d], true));
        if !valid {
            return Err(Error::invalid(
                "permute",
                format!(
                    "{order:?} is not a permutation of the {rank} dimensions of {}",
                    self.shape
                ),
            ));
        }
        Ok(Layout {
            shape: order.iter().map(|&d| self.shape.dims()[d]).collect(),
            strides: order.iter().map(|&d| self.strides[d]).collect(),
            offset: self.offset,
        })
    }

    /// Two dimensions swapped.
    pub fn transpose(&self, dim0: usize, dim1: usize) -> Result<Layout> {
        let rank = self.shape.rank();
        if dim0 >= rank || dim1 >= rank {
            return Err(Error::invalid(
                "transpose",
                format!(
                    "dimensions ({dim0}, {dim1}) are out of range for shape {}",
                    self.shape
                ),
            ));
        }
        let mut order: Vec<usize> = (0..rank).collect();
        order.swap(dim0, dim1);
        self.permute(&order)
    }

    /// A view of this layout broadcast to `target` (numpy rules; broadcast dimensions get stride 0).
    pub fn broadcast_to(&self, op: &'static str, target: &Shape) -> Result<Layout> {
        let error = || Error::Broadcast {
            op,
            lhs: self.shape.clone(),
            rhs: target.clone(),
        };
        if target.rank() < self.shape.rank() {
            return Err(error());
        }
        let lead = target.rank() - self.shape.rank();
        let mut strides: Dims = smallvec::smallvec![0; target.rank()];
        for (i, &dim) in self.shape.dims().iter().enumerate() {
            let want = target.dims()[lead + i];
            strides[lead + i] = if dim == want {
                self.strides[i]
            } else if dim == 1 {
                0
            } else {
                return Err(error());
            };
        }
        Ok(Layout {
            shape: target.clone(),
            strides,
            offset: self.offset,
        })
    }

    /// The slice `start .. start + len` of dimension `dim`.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Layout> {
        let dims = self.shape.dims();
        if dim >= dims.len() || start.checked_add(len).is_none_or(|end| end > dims[dim]) {
            return Err(Error::invalid(
                "narrow",
                format!(
                    "range {start}..{} of dimension {dim} is out of bounds for shape {}",
                    start.saturating_add(len),
                    self.shape
                ),
            ));
        }
        let mut new_dims = dims.to_vec();
        new_dims[dim] = len;
        Ok(Layout {
            shape: new_dims.into(),
            strides: self.strides.clone(),
            offset: self.offset + start * self.strides[dim],
        })
    }

    /// Dimension `dim` (which must be 1) removed.
    pub fn squeeze(&self, dim: usize) -> Result<Layout> {
        if self.shape.dims().get(dim) != Some(&1) {
            return Err(Error::invalid(
                "squeeze",
                format!("dimension {dim} of shape {} is not of size 1", self.shape),
            ));
        }
        let mut dims = Dims::from_slice(self.shape.dims());
        let mut strides = self.strides.clone();
        dims.remove(dim);
        strides.remove(dim);
        Ok(Layout {
            shape: Shape(dims),
            strides,
            offset: self.offset,
        })
    }

    /// A new dimension of size 1 inserted at `dim`.
    pub fn unsqueeze(&self, dim: usize) -> Result<Layout> {
        if dim > self.shape.rank() {
            return Err(Error::invalid(
                "unsqueeze",
                format!("position {dim} is out of range for shape {}", self.shape),
            ));
        }
        let mut dims = Dims::from_slice(self.shape.dims());
        let mut strides = self.strides.clone();
        dims.insert(dim, 1);
        strides.insert(dim, 0);
        Ok(Layout {
            shape: Shape(dims),
            strides,
            offset: self.offset,
        })
    }

    /// Storage index of every element in row-major order.
    pub fn indices(&self) -> StridedIndices<'_> {
        StridedIndices::new(self)
    }
}

/// Merges adjacent dimensions that are contiguous in every operand, so kernels walk fewer, longer
/// dimensions. Returns the merged shape and each operand's merged strides; dimensions of size 1 are
/// dropped. `strides[k]` are operand `k`'s strides over `dims`.
pub fn coalesce_dims(dims: &[usize], strides: &[&[usize]]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut out_dims: Vec<usize> = Vec::new();
    let mut out_strides: Vec<Vec<usize>> = vec![Vec::new(); strides.len()];
    for d in 0..dims.len() {
        if dims[d] == 1 {
            continue;
        }
        let mergeable = !out_dims.is_empty()
            && strides
                .iter()
                .zip(&out_strides)
                .all(|(s, o)| *o.last().unwrap() == s[d] * dims[d]);
        if mergeable {
            *out_dims.last_mut().unwrap() *= dims[d];
            for (s, o) in strides.iter().zip(out_strides.iter_mut()) {
                *o.last_mut().unwrap() = s[d];
            }
        } else {
            out_dims.push(dims[d]);
            for (s, o) in strides.iter().zip(out_strides.iter_mut()) {
                o.push(s[d]);
            }
        }
    }
    (out_dims, out_strides)
}

/// Iterator over the storage indices of a strided layout in row-major element order.
pub struct StridedIndices<'a> {
    layout: &'a Layout,
    position: Vec<usize>,
    next: Option<usize>,
}

impl<'a> StridedIndices<'a> {
    fn new(layout: &'a Layout) -> Self {
        let next = (layout.shape.numel() > 0).then_some(layout.offset);
        StridedIndices {
            layout,
            position: vec![0; layout.shape.rank()],
            next,
        }
    }
}

impl Iterator for StridedIndices<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let current = self.next?;
        let dims = self.layout.shape.dims();
        let strides = &self.layout.strides;
        let mut index = current;
        let mut d = dims.len();
        loop {
            if d == 0 {
                self.next = None;
                break;
            }
            d -= 1;
            self.position[d] += 1;
            index += strides[d];
            if self.position[d] < dims[d] {
                self.next = Some(index);
                break;
            }
            index -= strides[d] * dims[d];
            self.position[d] = 0;
        }
        Some(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_is_a_view_with_swapped_strides() {
        let t = Layout::contiguous([2, 3]).transpose(0, 1).unwrap();
        assert_eq!(t.shape().dims(), &[3, 2]);
        assert!(!t.is_contiguous());
        assert_eq!(t.indices().collect::<Vec<_>>(), vec![0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn broadcast_gives_zero_strides() {
        let b = Layout::contiguous([3, 1])
            .broadcast_to("add", &[2, 3, 4].into())
            .unwrap();
        assert_eq!(b.strides(), &[0, 1, 0]);
        assert_eq!(b.indices().take(5).collect::<Vec<_>>(), vec![0, 0, 0, 0, 1]);
    }

    #[test]
    fn narrow_moves_the_offset() {
        let n = Layout::contiguous([4, 3]).narrow(0, 1, 2).unwrap();
        assert_eq!(n.offset(), 3);
        assert!(n.is_contiguous());
        assert_eq!(n.storage_extent(), 9);
        let n = Layout::contiguous([4, 3]).narrow(1, 1, 1).unwrap();
        assert_eq!(n.indices().collect::<Vec<_>>(), vec![1, 4, 7, 10]);
        assert!(Layout::contiguous([4, 3]).narrow(1, 2, 2).is_err());
    }

    #[test]
    fn reshape_needs_contiguous_and_same_count() {
        let l = Layout::contiguous([2, 6]);
        assert!(l.reshape("reshape", [3, 4].into()).unwrap().is_some());
        assert!(l.reshape("reshape", [5].into()).is_err());
        let t = l.transpose(0, 1).unwrap();
        assert!(t.reshape("reshape", [12].into()).unwrap().is_none());
    }

    #[test]
    fn squeeze_unsqueeze_round_trip() {
        let l = Layout::contiguous([2, 3]);
        let u = l.unsqueeze(1).unwrap();
        assert_eq!(u.shape().dims(), &[2, 1, 3]);
        assert_eq!(u.squeeze(1).unwrap(), l);
        assert!(l.squeeze(0).is_err());
    }

    #[test]
    fn coalesce_merges_contiguous_runs() {
        let (dims, strides) = coalesce_dims(&[2, 3, 4], &[&[12, 4, 1], &[0, 4, 1]]);
        assert_eq!(dims, vec![2, 12]);
        assert_eq!(strides, vec![vec![12, 1], vec![0, 1]]);
        let (dims, strides) = coalesce_dims(&[1, 5], &[&[5, 1]]);
        assert_eq!((dims, strides), (vec![5], vec![vec![1]]));
    }

    #[test]
    fn empty_layout_yields_no_indices() {
        assert_eq!(Layout::contiguous([0, 3]).indices().count(), 0);
        assert_eq!(
            Layout::contiguous(()).indices().collect::<Vec<_>>(),
            vec![0]
        );
    }
}
