//! The streaming weighted mean of FedAvg.

use crate::error::{check_update, AggregationError};

/// The streaming weighted mean `Σ_k (n_k / Σ_j n_j) · θ_k` of FedAvg.
///
/// ```
/// let mut mean = dainet_agg::FedAvg::new(2);
/// mean.add(&[1.0, 2.0], 1.0).unwrap();
/// mean.add(&[3.0, 4.0], 3.0).unwrap();
/// assert!(mean.add(&[f32::NAN, 0.0], 1.0).is_err()); // refused, mean unchanged
/// assert_eq!(mean.finish().unwrap(), vec![2.5, 3.5]);
/// ```
#[derive(Clone, Debug)]
pub struct FedAvg {
    sum: Vec<f64>,
    total_weight: f64,
    count: usize,
}

impl FedAvg {
    /// An empty mean of models with `len` parameters.
    pub fn new(len: usize) -> Self {
        Self { sum: vec![0.0; len], total_weight: 0.0, count: 0 }
    }

    /// Folds in `update` with `weight` (its example count). A bad update is refused and
    /// leaves the mean unchanged.
    pub fn add(&mut self, update: &[f32], weight: f64) -> Result<(), AggregationError> {
        check_update(update, self.sum.len())?;
        if !(weight.is_finite() && weight > 0.0) {
            return Err(AggregationError::BadWeight(weight));
        }
        self.fold(update, None, weight);
        Ok(())
    }

    /// Folds in the change `update − base` (taken in f64, so it never overflows) with
    /// `weight`, in one pass: the way a round
    /// aggregates client models as changes from the global model `base` (which must have the
    /// mean's length and be finite). A bad update is refused and leaves the mean unchanged.
    pub fn add_change(&mut self, update: &[f32], base: &[f32], weight: f64) -> Result<(), AggregationError> {
        check_update(update, self.sum.len())?;
        check_update(base, self.sum.len())?;
        if !(weight.is_finite() && weight > 0.0) {
            return Err(AggregationError::BadWeight(weight));
        }
        self.fold(update, Some(base), weight);
        Ok(())
    }

    /// `sum += weight · (update − base)`, `base` defaulting to zero.
    fn fold(&mut self, update: &[f32], base: Option<&[f32]>, weight: f64) {
        // Large models fold in parallel over blocks of coordinates; each coordinate's sum is
        // the same whatever the split, so the result does not depend on the thread count.
        const BLOCK: usize = 1 << 15;
        let fold = |sum: &mut [f64], upd: &[f32], base: Option<&[f32]>| match base {
            None => {
                for (s, &v) in sum.iter_mut().zip(upd) {
                    *s += weight * f64::from(v);
                }
            }
            Some(base) => {
                for ((s, &v), &b) in sum.iter_mut().zip(upd).zip(base) {
                    *s += weight * (f64::from(v) - f64::from(b));
                }
            }
        };
        if self.sum.len() >= 2 * BLOCK {
            use rayon::prelude::*;
            let sum = self.sum.par_chunks_mut(BLOCK).zip(update.par_chunks(BLOCK)).enumerate();
            sum.for_each(|(i, (s, u))| fold(s, u, base.map(|b| &b[i * BLOCK..(i * BLOCK + u.len())])));
        } else {
            fold(&mut self.sum, update, base);
        }
        self.total_weight += weight;
        self.count += 1;
    }

    /// Updates folded in so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The sum of the weights folded in so far.
    pub fn total_weight(&self) -> f64 {
        self.total_weight
    }

    /// The weighted mean, rounded to `f32`.
    pub fn finish(self) -> Result<Vec<f32>, AggregationError> {
        if self.count == 0 {
            return Err(AggregationError::Empty);
        }
        let w = self.total_weight;
        Ok(self.sum.into_iter().map(|s| (s / w) as f32).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Prepare / Execute / Assert on hand-computed vectors.
    #[test]
    fn weighted_mean_of_three_updates() {
        let mut avg = FedAvg::new(2);
        avg.add(&[1.0, 0.0], 1.0).unwrap();
        avg.add(&[3.0, 4.0], 3.0).unwrap();
        avg.add(&[0.0, 8.0], 4.0).unwrap();
        // (1·1 + 3·3 + 4·0) / 8 = 1.25; (0 + 12 + 32) / 8 = 5.5
        assert_eq!(avg.finish().unwrap(), vec![1.25, 5.5]);
    }

    #[test]
    fn bad_updates_are_refused_and_change_nothing() {
        let mut avg = FedAvg::new(2);
        avg.add(&[2.0, 2.0], 1.0).unwrap();
        assert_eq!(avg.add(&[1.0], 1.0), Err(AggregationError::WrongLength { expected: 2, got: 1 }));
        assert!(matches!(avg.add(&[f32::NAN, 1.0], 1.0), Err(AggregationError::NonFinite { index: 0, .. })));
        assert!(matches!(avg.add(&[1.0, f32::INFINITY], 1.0), Err(AggregationError::NonFinite { index: 1, .. })));
        assert_eq!(avg.add(&[1.0, 1.0], 0.0), Err(AggregationError::BadWeight(0.0)));
        assert_eq!(avg.count(), 1);
        assert_eq!(avg.finish().unwrap(), vec![2.0, 2.0]);
    }

    #[test]
    fn changes_fold_in_one_pass() {
        let mut avg = FedAvg::new(2);
        avg.add_change(&[3.0, 1.0], &[1.0, 1.0], 1.0).unwrap();
        avg.add_change(&[1.0, 5.0], &[1.0, 1.0], 3.0).unwrap();
        assert!(avg.add_change(&[f32::INFINITY, 0.0], &[1.0, 1.0], 1.0).is_err());
        // ((2, 0)·1 + (0, 4)·3) / 4
        assert_eq!(avg.finish().unwrap(), vec![0.5, 3.0]);
    }

    #[test]
    fn large_means_fold_the_same_in_parallel_blocks() {
        let n = 300_000;
        let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.001).sin()).collect();
        let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.002).cos()).collect();
        let mut big = FedAvg::new(n);
        big.add_change(&a, &b, 2.0).unwrap();
        big.add(&b, 1.0).unwrap();
        let got = big.finish().unwrap();
        for i in [0, 32_767, 32_768, 65_536, 199_999, n - 1] {
            let want = ((2.0 * (f64::from(a[i]) - f64::from(b[i])) + f64::from(b[i])) / 3.0) as f32;
            assert_eq!(got[i], want, "coordinate {i}");
        }
    }

    #[test]
    fn empty_mean_is_an_error() {
        assert_eq!(FedAvg::new(3).finish(), Err(AggregationError::Empty));
    }
}
