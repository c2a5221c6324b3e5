//! Data poisoning for Byzantine clients: label flipping and pixel-pattern backdoors.
//!
//! This module owns how a malicious client corrupts its own training examples before
//! honest-looking local training, and how the success of a backdoor is measured.
//!
//! - [`flip_labels`]: `y ↦ C − 1 − y`, the label-flipping attack used throughout the
//!   Byzantine-robustness literature (e.g. Fang et al. 2020, <https://arxiv.org/abs/1911.11815>;
//!   Tolpegin et al. 2020, <https://arxiv.org/abs/2007.08432>).
//! - [`Trigger`], [`backdoor_dataset`], [`triggered_test_set`]: a BadNets-style pixel
//!   pattern (Gu, Dolan-Gavitt and Garg 2017, <https://arxiv.org/abs/1708.06733>), a
//!   `size × size` square in the bottom-right corner of every channel, as used for the
//!   pixel-pattern backdoor of Bagdasaryan et al. 2020 ("How To Backdoor Federated
//!   Learning", <https://arxiv.org/abs/1807.00459>). The backdoor success rate of a model is
//!   its accuracy on [`triggered_test_set`].
//!
//! Guarantees:
//! - the clean dataset is never modified: poisoned data is always a new [`Dataset`];
//! - the rows poisoned by [`backdoor_dataset`] depend only on the caller's [`SplitMix64`];
//! - bad input (a row of the wrong length, a trigger that does not fit the images, a target
//!   class or label out of range, a fraction outside `[0, 1]`) is a [`PoisonError`], never a
//!   panic, and leaves the input unchanged.

use dainet_core::SplitMix64;

use super::{Dataset, DatasetError};

/// Why data cannot be poisoned as asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoisonError {
    /// A row's length is not the trigger's image size.
    #[error("row has {got} values, but the trigger's image shape holds {expected}")]
    RowLength {
        /// Values per image of the trigger's shape.
        expected: usize,
        /// Values in the row.
        got: usize,
    },
    /// The dataset's rows are not images.
    #[error("a trigger needs image rows, but the dataset has no image shape")]
    NotImages,
    /// The dataset's image shape is not the trigger's.
    #[error("the dataset's images are {dataset:?} but the trigger is for {trigger:?}")]
    ShapeMismatch {
        /// `[channels, height, width]` of the dataset.
        dataset: [usize; 3],
        /// `[channels, height, width]` of the trigger.
        trigger: [usize; 3],
    },
    /// The trigger itself is unusable.
    #[error("invalid trigger: {0}")]
    BadTrigger(String),
    /// The target class is not a class of the dataset.
    #[error("backdoor target {target} is not below the number of classes ({num_classes})")]
    TargetOutOfRange {
        /// The target asked for.
        target: u32,
        /// The class count.
        num_classes: usize,
    },
    /// A label is not below the class count.
    #[error("label {label} at position {position} is not below the number of classes ({num_classes})")]
    LabelOutOfRange {
        /// The label.
        label: u32,
        /// Its position.
        position: usize,
        /// The class count.
        num_classes: usize,
    },
    /// The class count is zero or beyond the `u32` labels.
    #[error("number of classes {0} must be between 1 and 2^32")]
    BadClassCount(usize),
    /// The poison fraction is not in `[0, 1]`.
    #[error("poison fraction must be in [0, 1], got {0}")]
    BadFraction(f64),
    /// A row index is not a row of the dataset.
    #[error("row index {index} is out of range for a dataset of {len} rows")]
    IndexOutOfRange {
        /// The index.
        index: usize,
        /// Rows in the dataset.
        len: usize,
    },
    /// Rebuilding the dataset failed (an internal invariant; not expected).
    #[error(transparent)]
    Dataset(#[from] DatasetError),
}

/// Flips every label `y` to `num_classes − 1 − y` (the label-flipping attack).
///
/// ```
/// let mut y = [0u32, 3, 9];
/// dainet_ml::data::poison::flip_labels(&mut y, 10).unwrap();
/// assert_eq!(y, [9, 6, 0]);
/// ```
///
/// Errors, leaving `labels` unchanged, if `num_classes` is 0 or above `2^32`, or a label is
/// not below `num_classes`.
pub fn flip_labels(labels: &mut [u32], num_classes: usize) -> Result<(), PoisonError> {
    if num_classes == 0 || num_classes - 1 > u32::MAX as usize {
        return Err(PoisonError::BadClassCount(num_classes));
    }
    if let Some((position, &label)) = labels.iter().enumerate().find(|&(_, &y)| y as usize >= num_classes) {
        return Err(PoisonError::LabelOutOfRange { label, position, num_classes });
    }
    let top = (num_classes - 1) as u32;
    for y in labels.iter_mut() {
        *y = top - *y;
    }
    Ok(())
}

/// A pixel-pattern trigger: a `size × size` square in the bottom-right corner of every
/// channel of a `[channels, height, width]` image, set to `value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Trigger {
    /// The image shape `[channels, height, width]` (row-major, channel first).
    pub image_shape: [usize; 3],
    /// The side of the square, in pixels; between 1 and the image's height and width.
    pub size: usize,
    /// The value written to the square's pixels; must be finite.
    pub value: f32,
}

impl Trigger {
    /// The MNIST trigger: a 4 × 4 white square (1.0, the brightest pixel after scaling to
    /// `[0, 1]`) in the bottom-right corner of a `[1, 28, 28]` image.
    pub fn mnist() -> Self {
        Self { image_shape: [1, 28, 28], size: 4, value: 1.0 }
    }

    /// Values per image: the product of [`Trigger::image_shape`].
    ///
    /// Errors if the shape has a zero dimension or its product overflows, the square is
    /// empty or larger than the image, or `value` is not finite.
    pub fn image_len(&self) -> Result<usize, PoisonError> {
        let [c, h, w] = self.image_shape;
        let len = c.checked_mul(h).and_then(|v| v.checked_mul(w));
        let len = match len {
            Some(len) if len > 0 => len,
            _ => return Err(PoisonError::BadTrigger(format!("image shape {:?} holds no pixels", self.image_shape))),
        };
        if self.size == 0 || self.size > h || self.size > w {
            return Err(PoisonError::BadTrigger(format!(
                "a {s} x {s} square does not fit a {h} x {w} image",
                s = self.size
            )));
        }
        if !self.value.is_finite() {
            return Err(PoisonError::BadTrigger(format!("trigger value {} is not finite", self.value)));
        }
        Ok(len)
    }

    /// Stamps the trigger onto one image row `x` (`[channels, height, width]`, row-major).
    ///
    /// ```
    /// use dainet_ml::data::poison::Trigger;
    /// let t = Trigger { image_shape: [1, 3, 3], size: 2, value: 9.0 };
    /// let mut x = [0.0f32; 9];
    /// t.apply(&mut x).unwrap();
    /// assert_eq!(x, [0.0, 0.0, 0.0, 0.0, 9.0, 9.0, 0.0, 9.0, 9.0]);
    /// ```
    ///
    /// Errors, leaving `x` unchanged, if the trigger is invalid (see
    /// [`Trigger::image_len`]) or `x` is not one image long.
    pub fn apply(&self, x: &mut [f32]) -> Result<(), PoisonError> {
        let expected = self.image_len()?;
        if x.len() != expected {
            return Err(PoisonError::RowLength { expected, got: x.len() });
        }
        self.stamp(x);
        Ok(())
    }

    /// Writes the square; `x` is known to be one valid image long.
    fn stamp(&self, x: &mut [f32]) {
        let [_, h, w] = self.image_shape;
        for channel in x.chunks_exact_mut(h * w) {
            for row in channel.chunks_exact_mut(w).skip(h - self.size) {
                row[w - self.size..].fill(self.value);
            }
        }
    }

    /// Checks that `data` holds images of this trigger's shape.
    fn check_dataset(&self, data: &Dataset) -> Result<(), PoisonError> {
        let expected = self.image_len()?;
        let shape = data.image_shape().ok_or(PoisonError::NotImages)?;
        if shape != self.image_shape {
            return Err(PoisonError::ShapeMismatch { dataset: shape, trigger: self.image_shape });
        }
        if data.dim() != expected {
            return Err(PoisonError::RowLength { expected, got: data.dim() });
        }
        Ok(())
    }
}

/// A client's poisoned training set: the rows `clean.select(indices)`, of which a
/// `poison_fraction` share carry `trigger` and the label `target` (the rest are unchanged).
///
/// `k = ⌊poison_fraction · indices.len()⌋` rows are poisoned, at least one when the fraction
/// is positive and `indices` is not empty. They are the rows at the first `k` positions of
/// `0..indices.len()` shuffled by `rng` ([`SplitMix64::shuffle`]); nothing is drawn when
/// `k = 0`. The result keeps the order of `indices` and the image shape of `clean`.
///
/// Errors: an index out of range, a dataset that is not images of the trigger's shape, a
/// `target` not below the class count, or a fraction outside `[0, 1]`.
pub fn backdoor_dataset(
    clean: &Dataset,
    indices: &[usize],
    trigger: &Trigger,
    target: u32,
    poison_fraction: f64,
    rng: &mut SplitMix64,
) -> Result<Dataset, PoisonError> {
    trigger.check_dataset(clean)?;
    check_target(clean, target)?;
    if !(0.0..=1.0).contains(&poison_fraction) {
        return Err(PoisonError::BadFraction(poison_fraction));
    }
    if let Some(&index) = indices.iter().find(|&&i| i >= clean.len()) {
        return Err(PoisonError::IndexOutOfRange { index, len: clean.len() });
    }
    let n = indices.len();
    let mut k = ((poison_fraction * n as f64).floor() as usize).min(n);
    if poison_fraction > 0.0 && n > 0 {
        k = k.max(1);
    }
    let selected = clean.select(indices);
    let dim = selected.dim();
    let mut features = selected.features().to_vec();
    let mut labels = selected.labels().to_vec();
    if k > 0 {
        let mut positions: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut positions);
        for &p in &positions[..k] {
            trigger.stamp(&mut features[p * dim..(p + 1) * dim]);
            labels[p] = target;
        }
    }
    Ok(Dataset::new(features, labels, dim, clean.num_classes())?.with_image_shape(trigger.image_shape))
}

/// The backdoor test set: every row of `test` whose label is not `target`, with `trigger`
/// stamped on and the label set to `target`, in their original order. A model's accuracy
/// on it is the backdoor success rate.
///
/// Errors: a dataset that is not images of the trigger's shape, or a `target` not below the
/// class count.
pub fn triggered_test_set(test: &Dataset, trigger: &Trigger, target: u32) -> Result<Dataset, PoisonError> {
    trigger.check_dataset(test)?;
    check_target(test, target)?;
    let dim = test.dim();
    let keep: Vec<usize> = (0..test.len()).filter(|&i| test.labels()[i] != target).collect();
    let mut features = test.select(&keep).features().to_vec();
    for row in features.chunks_exact_mut(dim) {
        trigger.stamp(row);
    }
    let labels = vec![target; keep.len()];
    Ok(Dataset::new(features, labels, dim, test.num_classes())?.with_image_shape(trigger.image_shape))
}

fn check_target(data: &Dataset, target: u32) -> Result<(), PoisonError> {
    if target as usize >= data.num_classes() {
        return Err(PoisonError::TargetOutOfRange { target, num_classes: data.num_classes() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` images of shape [2, 4, 5] (dim 40), row i filled with i, label i % 3, 3 classes.
    fn images(n: usize) -> Dataset {
        let features = (0..n).flat_map(|i| std::iter::repeat_n(i as f32, 40)).collect();
        let labels = (0..n).map(|i| (i % 3) as u32).collect();
        Dataset::new(features, labels, 40, 3).unwrap().with_image_shape([2, 4, 5])
    }

    fn trigger() -> Trigger {
        Trigger { image_shape: [2, 4, 5], size: 2, value: -7.0 }
    }

    /// Whether row `x` carries exactly `t`'s square over a background that is not `t.value`.
    fn has_trigger(t: &Trigger, x: &[f32]) -> bool {
        let [c, h, w] = t.image_shape;
        (0..c * h * w).all(|i| {
            let (r, col) = ((i / w) % h, i % w);
            let inside = r >= h - t.size && col >= w - t.size;
            (x[i] == t.value) == inside
        })
    }

    #[test]
    fn flip_labels_mirrors_classes() {
        let mut y = [0u32, 1, 2, 9, 5];
        flip_labels(&mut y, 10).unwrap();
        assert_eq!(y, [9, 8, 7, 0, 4]);
        flip_labels(&mut y, 10).unwrap();
        assert_eq!(y, [0, 1, 2, 9, 5], "flipping twice is the identity");
        let mut binary = [0u32, 1, 1];
        flip_labels(&mut binary, 2).unwrap();
        assert_eq!(binary, [1, 0, 0]);
    }

    #[test]
    fn flip_labels_rejects_bad_input_unchanged() {
        let mut y = [0u32, 10, 3];
        assert!(matches!(
            flip_labels(&mut y, 10),
            Err(PoisonError::LabelOutOfRange { label: 10, position: 1, num_classes: 10 })
        ));
        assert_eq!(y, [0, 10, 3]);
        assert!(matches!(flip_labels(&mut y, 0), Err(PoisonError::BadClassCount(0))));
        if usize::BITS > 32 {
            let huge = u32::MAX as usize + 2;
            assert!(matches!(flip_labels(&mut y, huge), Err(PoisonError::BadClassCount(h)) if h == huge));
        }
    }

    #[test]
    fn trigger_stamps_the_bottom_right_square_of_every_channel() {
        let t = trigger();
        let mut x = vec![0.5f32; 40];
        t.apply(&mut x).unwrap();
        assert!(has_trigger(&t, &x));
        // Channel 1, row 3, columns 3 and 4: index 20 + 15 + 3.
        assert_eq!(&x[38..40], &[-7.0, -7.0]);
        assert_eq!(x[37], 0.5);
        assert_eq!(x.iter().filter(|&&v| v == -7.0).count(), 2 * 2 * 2);
        // MNIST: 16 pixels of 784, the last one included, the first not.
        let m = Trigger::mnist();
        let mut img = vec![0.0f32; 784];
        m.apply(&mut img).unwrap();
        assert_eq!(img.iter().filter(|&&v| v == 1.0).count(), 16);
        assert_eq!(img[783], 1.0);
        assert_eq!(img[24 * 28 + 24], 1.0);
        assert_eq!(img[23 * 28 + 27], 0.0);
        assert_eq!(img[27 * 28 + 23], 0.0);
        // A full-image square covers everything.
        let full = Trigger { image_shape: [1, 2, 2], size: 2, value: 3.0 };
        let mut x = [0.0f32; 4];
        full.apply(&mut x).unwrap();
        assert_eq!(x, [3.0; 4]);
    }

    #[test]
    fn trigger_rejects_bad_rows_and_bad_triggers() {
        let mut short = vec![0.0f32; 39];
        assert!(matches!(trigger().apply(&mut short), Err(PoisonError::RowLength { expected: 40, got: 39 })));
        assert!(short.iter().all(|&v| v == 0.0));
        let bad = [
            Trigger { size: 0, ..trigger() },
            Trigger { size: 5, ..trigger() }, // taller than the 4-pixel height
            Trigger { value: f32::NAN, ..trigger() },
            Trigger { image_shape: [0, 4, 5], ..trigger() },
            Trigger { image_shape: [usize::MAX, 4, 5], ..trigger() },
        ];
        for t in bad {
            let mut x = vec![0.0f32; 40];
            assert!(matches!(t.apply(&mut x), Err(PoisonError::BadTrigger(_))), "{t:?}");
        }
    }

    #[test]
    fn backdoor_poisons_the_asked_share_of_the_clients_rows() {
        let clean = images(30);
        let indices: Vec<usize> = (0..30).rev().step_by(2).collect(); // 15 rows
        let t = trigger();
        let poisoned = backdoor_dataset(&clean, &indices, &t, 2, 0.4, &mut SplitMix64::new(5)).unwrap();
        assert_eq!(poisoned.len(), 15);
        assert_eq!(poisoned.image_shape(), Some([2, 4, 5]));
        let stamped: Vec<usize> = (0..15).filter(|&p| has_trigger(&t, poisoned.row(p))).collect();
        assert_eq!(stamped.len(), 6, "floor(0.4 * 15)");
        // They are the first 6 of the positions 0..15 shuffled by the same generator.
        let mut positions: Vec<usize> = (0..15).collect();
        SplitMix64::new(5).shuffle(&mut positions);
        let mut expected = positions[..6].to_vec();
        expected.sort_unstable();
        assert_eq!(stamped, expected);
        for (p, &original) in indices.iter().enumerate() {
            if stamped.contains(&p) {
                assert_eq!(poisoned.labels()[p], 2);
                // Outside the square the row keeps its values.
                assert_eq!(poisoned.row(p)[0], original as f32);
            } else {
                assert_eq!(poisoned.row(p), clean.row(original));
                assert_eq!(poisoned.labels()[p], clean.labels()[original]);
            }
        }
        // The clean dataset is untouched, and the choice follows the seed.
        assert_eq!(clean, images(30));
        let again = backdoor_dataset(&clean, &indices, &t, 2, 0.4, &mut SplitMix64::new(5)).unwrap();
        assert_eq!(poisoned, again);
        let other = backdoor_dataset(&clean, &indices, &t, 2, 0.4, &mut SplitMix64::new(6)).unwrap();
        assert_ne!(poisoned, other);
    }

    #[test]
    fn backdoor_fraction_edges() {
        let clean = images(10);
        let t = trigger();
        let all: Vec<usize> = (0..10).collect();
        let count = |d: &Dataset| (0..d.len()).filter(|&p| has_trigger(&t, d.row(p))).count();
        // A tiny positive fraction still poisons one row.
        let d = backdoor_dataset(&clean, &all, &t, 0, 0.01, &mut SplitMix64::new(1)).unwrap();
        assert_eq!(count(&d), 1);
        // Zero poisons nothing and draws nothing.
        let mut rng = SplitMix64::new(1);
        let d = backdoor_dataset(&clean, &all, &t, 0, 0.0, &mut rng).unwrap();
        assert_eq!(count(&d), 0);
        assert_eq!(d, clean);
        assert_eq!(rng.next_u64(), SplitMix64::new(1).next_u64());
        // One poisons everything.
        let d = backdoor_dataset(&clean, &all, &t, 1, 1.0, &mut SplitMix64::new(1)).unwrap();
        assert_eq!(count(&d), 10);
        assert!(d.labels().iter().all(|&y| y == 1));
        // No rows: an empty dataset.
        let d = backdoor_dataset(&clean, &[], &t, 1, 0.5, &mut SplitMix64::new(1)).unwrap();
        assert!(d.is_empty());
    }

    #[test]
    fn backdoor_rejects_bad_input() {
        let clean = images(10);
        let t = trigger();
        let rng = &mut SplitMix64::new(1);
        for fraction in [-0.1, 1.5, f64::NAN] {
            assert!(matches!(
                backdoor_dataset(&clean, &[0, 1], &t, 0, fraction, rng),
                Err(PoisonError::BadFraction(_))
            ));
        }
        assert!(matches!(
            backdoor_dataset(&clean, &[0, 1], &t, 3, 0.5, rng),
            Err(PoisonError::TargetOutOfRange { target: 3, num_classes: 3 })
        ));
        assert!(matches!(
            backdoor_dataset(&clean, &[0, 10], &t, 0, 0.5, rng),
            Err(PoisonError::IndexOutOfRange { index: 10, len: 10 })
        ));
        let flat = Dataset::new(vec![0.0; 80], vec![0, 1], 40, 3).unwrap();
        assert!(matches!(backdoor_dataset(&flat, &[0], &t, 0, 0.5, rng), Err(PoisonError::NotImages)));
        let other_shape = Trigger { image_shape: [2, 5, 4], ..t.clone() };
        assert!(matches!(
            backdoor_dataset(&clean, &[0], &other_shape, 0, 0.5, rng),
            Err(PoisonError::ShapeMismatch { dataset: [2, 4, 5], trigger: [2, 5, 4] })
        ));
        let mnist_on_small = backdoor_dataset(&clean, &[0], &Trigger::mnist(), 0, 0.5, rng);
        assert!(matches!(mnist_on_small, Err(PoisonError::ShapeMismatch { .. })));
    }

    #[test]
    fn triggered_test_set_drops_the_target_class_and_relabels() {
        let test = images(10); // labels 0,1,2,0,1,2,0,1,2,0
        let t = trigger();
        let d = triggered_test_set(&test, &t, 0).unwrap();
        assert_eq!(d.len(), 6);
        assert!(d.labels().iter().all(|&y| y == 0));
        assert_eq!(d.image_shape(), Some([2, 4, 5]));
        // Rows 1, 2, 4, 5, 7, 8 in order, stamped.
        let originals: Vec<f32> = (0..d.len()).map(|p| d.row(p)[0]).collect();
        assert_eq!(originals, vec![1.0, 2.0, 4.0, 5.0, 7.0, 8.0]);
        assert!((0..d.len()).all(|p| has_trigger(&t, d.row(p))));
        assert_eq!(test, images(10));
    }

    #[test]
    fn triggered_test_set_rejects_bad_input() {
        let test = images(4);
        assert!(matches!(
            triggered_test_set(&test, &trigger(), 7),
            Err(PoisonError::TargetOutOfRange { target: 7, num_classes: 3 })
        ));
        let flat = Dataset::new(vec![0.0; 40], vec![0], 40, 3).unwrap();
        assert!(matches!(triggered_test_set(&flat, &trigger(), 0), Err(PoisonError::NotImages)));
        let bad = Trigger { size: 9, ..trigger() };
        assert!(matches!(triggered_test_set(&test, &bad, 0), Err(PoisonError::BadTrigger(_))));
    }
}
