//! In-memory labelled examples.

/// An error building or slicing a [`Dataset`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// The feature buffer is not `labels.len() * dim` long.
    #[error("feature buffer holds {got} values, expected {expected} ({rows} rows x {dim} features)")]
    Shape {
        /// Values expected.
        expected: usize,
        /// Values given.
        got: usize,
        /// Rows (labels).
        rows: usize,
        /// Features per row.
        dim: usize,
    },
    /// A label is not below `num_classes`.
    #[error("label {label} at row {row} is not below the number of classes ({num_classes})")]
    Label {
        /// The offending label.
        label: u32,
        /// Its row.
        row: usize,
        /// The class count.
        num_classes: usize,
    },
    /// A dataset needs at least one feature and one class.
    #[error("a dataset needs at least one feature and one class (dim={dim}, classes={num_classes})")]
    Empty {
        /// Features per row.
        dim: usize,
        /// Classes.
        num_classes: usize,
    },
}

/// Labelled examples: row `i` is `features[i*dim .. (i+1)*dim]` with class `labels[i]`.
///
/// Images keep their `[channels, height, width]` shape in [`Dataset::image_shape`] so that
/// convolutional models can check their input.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    features: Vec<f32>,
    labels: Vec<u32>,
    dim: usize,
    num_classes: usize,
    image_shape: Option<[usize; 3]>,
}

impl Dataset {
    /// A dataset of `labels.len()` rows of `dim` features; every label must be below
    /// `num_classes`.
    pub fn new(features: Vec<f32>, labels: Vec<u32>, dim: usize, num_classes: usize) -> Result<Self, DatasetError> {
        if dim == 0 || num_classes == 0 {
            return Err(DatasetError::Empty { dim, num_classes });
        }
        let expected = labels.len() * dim;
        if features.len() != expected {
            return Err(DatasetError::Shape { expected, got: features.len(), rows: labels.len(), dim });
        }
        if let Some((row, &label)) = labels.iter().enumerate().find(|(_, &l)| l as usize >= num_classes) {
            return Err(DatasetError::Label { label, row, num_classes });
        }
        Ok(Self { features, labels, dim, num_classes, image_shape: None })
    }

    /// Marks the rows as images of `[channels, height, width]` (whose product must be `dim`).
    pub fn with_image_shape(mut self, shape: [usize; 3]) -> Self {
        assert_eq!(shape.iter().product::<usize>(), self.dim, "image shape must cover dim");
        self.image_shape = Some(shape);
        self
    }

    /// The image shape `[channels, height, width]`, if the rows are images.
    pub fn image_shape(&self) -> Option<[usize; 3]> {
        self.image_shape
    }

    /// The number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Features per example.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The number of classes; labels lie in `0..num_classes`.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// The features of example `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.dim..(i + 1) * self.dim]
    }

    /// All features, row-major.
    pub fn features(&self) -> &[f32] {
        &self.features
    }

    /// All labels.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// The examples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let mut features = Vec::with_capacity(indices.len() * self.dim);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            features.extend_from_slice(self.row(i));
            labels.push(self.labels[i]);
        }
        Dataset { features, labels, ..*self }
    }

    /// Rows `range` as a new dataset.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Dataset {
        let features = self.features[range.start * self.dim..range.end * self.dim].to_vec();
        let labels = self.labels[range].to_vec();
        Dataset { features, labels, ..*self }
    }

    /// How many examples of each class there are among `indices`.
    pub fn label_counts(&self, indices: impl IntoIterator<Item = usize>) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for i in indices {
            counts[self.labels[i] as usize] += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_labels_are_checked() {
        assert!(matches!(
            Dataset::new(vec![0.0; 5], vec![0, 1], 3, 2),
            Err(DatasetError::Shape { expected: 6, got: 5, .. })
        ));
        assert!(matches!(
            Dataset::new(vec![0.0; 6], vec![0, 2], 3, 2),
            Err(DatasetError::Label { label: 2, row: 1, .. })
        ));
    }

    #[test]
    fn select_and_counts() {
        let d = Dataset::new((0..6).map(|v| v as f32).collect(), vec![1, 0, 1], 2, 2).unwrap();
        let s = d.select(&[2, 0]);
        assert_eq!(s.features(), &[4.0, 5.0, 0.0, 1.0]);
        assert_eq!(s.labels(), &[1, 1]);
        assert_eq!(d.label_counts([0, 1, 2]), vec![1, 2]);
        assert_eq!(d.slice(1..3).labels(), &[0, 1]);
    }
}
