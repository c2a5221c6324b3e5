//! A model's parameters as one flat `f32` vector, and the layout that names its tensors.
//!
//! Flat parameters are what travels and what is aggregated: every strategy, codec and
//! commitment works on `&[f32]` without knowing the model. The [`Layout`] says how to cut the
//! vector back into named tensors (for safetensors files and for the model's kernels).

use std::sync::Arc;

/// One named tensor inside a flat parameter vector.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TensorSpec {
    /// The tensor's name, e.g. `"dense0.weight"`.
    pub name: String,
    /// The tensor's shape, row-major.
    pub shape: Vec<usize>,
}

impl TensorSpec {
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An error building a [`Layout`] or [`Params`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayoutError {
    /// Two tensors share a name.
    #[error("duplicate tensor name: name={0}")]
    DuplicateName(String),
    /// The values do not fill the layout exactly.
    #[error("parameter length mismatch: expected={expected} got={got}")]
    LengthMismatch {
        /// Elements the layout holds.
        expected: usize,
        /// Elements given.
        got: usize,
    },
}

/// The ordered list of tensors in a flat parameter vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    tensors: Vec<TensorSpec>,
    offsets: Vec<usize>,
    total: usize,
}

impl Layout {
    /// A layout of `tensors`, stored one after another in this order.
    pub fn new(tensors: Vec<TensorSpec>) -> Result<Self, LayoutError> {
        let mut offsets = Vec::with_capacity(tensors.len());
        let mut total = 0;
        for (i, t) in tensors.iter().enumerate() {
            if tensors[..i].iter().any(|u| u.name == t.name) {
                return Err(LayoutError::DuplicateName(t.name.clone()));
            }
            offsets.push(total);
            total += t.len();
        }
        Ok(Self { tensors, offsets, total })
    }

    /// The tensors, in storage order.
    pub fn tensors(&self) -> &[TensorSpec] {
        &self.tensors
    }

    /// The element range of tensor `i` in the flat vector.
    pub fn range(&self, i: usize) -> std::ops::Range<usize> {
        self.offsets[i]..self.offsets[i] + self.tensors[i].len()
    }

    /// The total number of elements.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether the layout holds no elements.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

/// A model's parameters: a flat `f32` vector and the [`Layout`] that names its parts.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    layout: Arc<Layout>,
    values: Vec<f32>,
}

impl Params {
    /// Parameters with `values`, which must fill `layout` exactly.
    pub fn new(layout: Arc<Layout>, values: Vec<f32>) -> Result<Self, LayoutError> {
        if values.len() != layout.len() {
            return Err(LayoutError::LengthMismatch { expected: layout.len(), got: values.len() });
        }
        Ok(Self { layout, values })
    }

    /// All-zero parameters of `layout`.
    pub fn zeros(layout: Arc<Layout>) -> Self {
        let values = vec![0.0; layout.len()];
        Self { layout, values }
    }

    /// The layout.
    pub fn layout(&self) -> &Arc<Layout> {
        &self.layout
    }

    /// The flat values.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The flat values, mutable.
    pub fn values_mut(&mut self) -> &mut [f32] {
        &mut self.values
    }

    /// The values of tensor `i` of the layout.
    pub fn tensor(&self, i: usize) -> &[f32] {
        &self.values[self.layout.range(i)]
    }

    /// The number of parameters.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Takes the flat values out.
    pub fn into_values(self) -> Vec<f32> {
        self.values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, shape: &[usize]) -> TensorSpec {
        TensorSpec { name: name.into(), shape: shape.to_vec() }
    }

    #[test]
    fn layout_offsets_follow_order() {
        let l = Layout::new(vec![spec("w", &[3, 2]), spec("b", &[2])]).unwrap();
        assert_eq!(l.len(), 8);
        assert_eq!(l.range(0), 0..6);
        assert_eq!(l.range(1), 6..8);
    }

    #[test]
    fn duplicate_names_are_refused() {
        let e = Layout::new(vec![spec("w", &[1]), spec("w", &[2])]).unwrap_err();
        assert_eq!(e, LayoutError::DuplicateName("w".into()));
    }

    #[test]
    fn params_must_fill_the_layout() {
        let l = Arc::new(Layout::new(vec![spec("w", &[2, 2])]).unwrap());
        let e = Params::new(l.clone(), vec![0.0; 3]).unwrap_err();
        assert_eq!(e, LayoutError::LengthMismatch { expected: 4, got: 3 });
        let p = Params::new(l, vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(p.tensor(0), &[1.0, 2.0, 3.0, 4.0]);
    }
}
