//! The 32-word parameter block every kernel reads from its uniform binding 0: sizes, shapes, strides,
//! offsets and scalars. Each shader documents which words it reads.

use crate::{Error, Result};

/// Number of 32-bit words in a parameter block.
pub(crate) const PARAM_WORDS: usize = 32;
/// Largest rank a strided kernel walks (after merging contiguous dimensions).
pub(crate) const MAX_KERNEL_RANK: usize = 8;

/// Word positions shared by the elementwise and copy kernels.
const NUMEL: usize = 0;
const RANK: usize = 1;
const SHAPE: usize = 8;

/// A parameter block under construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params(pub(crate) [u32; PARAM_WORDS]);

impl Params {
    /// A zeroed block.
    pub(crate) fn new() -> Self {
        Params([0; PARAM_WORDS])
    }

    /// Sets word `index`.
    pub(crate) fn set(mut self, index: usize, value: u32) -> Self {
        self.0[index] = value;
        self
    }

    /// Sets the element count, rank and shape of a strided kernel (words 0, 1 and 8..16).
    pub(crate) fn with_shape(
        mut self,
        op: &'static str,
        numel: usize,
        dims: &[usize],
    ) -> Result<Self> {
        if dims.len() > MAX_KERNEL_RANK {
            return Err(Error::invalid(
                op,
                format!(
                    "a strided view of rank {} cannot be walked by the GPU kernels (at most {MAX_KERNEL_RANK} \
                     non-mergeable dimensions); call .contiguous() first",
                    dims.len()
                ),
            ));
        }
        self.0[NUMEL] = to_word(op, numel)?;
        self.0[RANK] = dims.len() as u32;
        for (i, &d) in dims.iter().enumerate() {
            self.0[SHAPE + i] = to_word(op, d)?;
        }
        Ok(self)
    }

    /// Writes `values` starting at word `start`.
    pub(crate) fn with_words(
        mut self,
        op: &'static str,
        start: usize,
        values: &[usize],
    ) -> Result<Self> {
        for (i, &v) in values.iter().enumerate() {
            self.0[start + i] = to_word(op, v)?;
        }
        Ok(self)
    }
}

/// A size or index as a kernel word; GPU kernels index with 32 bits.
pub(crate) fn to_word(op: &'static str, value: usize) -> Result<u32> {
    u32::try_from(value).map_err(|_| {
        Error::invalid(
            op,
            format!("{value} exceeds the GPU kernels' 32-bit indexing; split the tensor"),
        )
    })
}
