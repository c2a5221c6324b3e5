//! The streaming weighted mean of FedAvg.
//!
//! Updates are validated as they arrive and folded into one `f64` accumulator. Folding one
//! update at a time moves about 20 bytes per coordinate (read the update, read and write the
//! accumulator), 2.5 times a memory copy, so owned updates handed in with [`FedAvg::push`]
//! wait in a small batch of at most [`FOLD_BATCH`] and are folded together, block by block
//! over the coordinates, with each block of the accumulator in cache for the whole batch.
//! Every coordinate still adds its terms in arrival order, so the result has the same bits
//! as folding one at a time, whatever the batch and whatever the thread count.

use crate::error::{check_update, AggregationError, Checked};
use rayon::prelude::*;

/// Owned updates that wait to be folded together; the most that are ever resident.
pub const FOLD_BATCH: usize = 8;

/// Coordinates per block of the fold (256 KiB of accumulator, in L2; long runs of each
/// update keep the prefetchers streaming).
const BLOCK: usize = 1 << 14;

/// The streaming weighted mean `Σ_k (n_k / Σ_j n_j) · θ_k` of FedAvg, or of the changes
/// `θ_k − θ` from a base model θ ([`FedAvg::of_changes`]).
///
/// ```
/// let mut mean = dainet_agg::FedAvg::new(2);
/// mean.add(&[1.0, 2.0], 1.0).unwrap();
/// mean.push(vec![3.0, 4.0], 3.0).unwrap();
/// assert!(mean.add(&[f32::NAN, 0.0], 1.0).is_err()); // refused, mean unchanged
/// assert_eq!(mean.finish().unwrap(), vec![2.5, 3.5]);
/// ```
#[derive(Clone, Debug)]
pub struct FedAvg {
    sum: Vec<f64>,
    base: Option<Vec<f32>>,
    pending: Vec<(Vec<f32>, f64)>,
    total_weight: f64,
    count: usize,
}

impl FedAvg {
    /// An empty mean of models with `len` parameters.
    pub fn new(len: usize) -> Self {
        Self::new_in(Vec::new(), len)
    }

    /// As [`FedAvg::new`], reusing `buffer` (from [`FedAvg::finish_keeping_buffer`]) as the
    /// accumulator: a large model's accumulator is then not allocated and faulted in again
    /// every round.
    pub fn new_in(mut buffer: Vec<f64>, len: usize) -> Self {
        buffer.clear();
        buffer.resize(len, 0.0);
        Self { sum: buffer, base: None, pending: Vec::new(), total_weight: 0.0, count: 0 }
    }

    /// An empty mean of the changes `update − base` (each taken in f64, so it never
    /// overflows). `base` must be finite.
    pub fn of_changes(base: Vec<f32>) -> Self {
        Self::of_changes_in(Vec::new(), base)
    }

    /// As [`FedAvg::of_changes`], reusing `buffer` as the accumulator.
    pub fn of_changes_in(buffer: Vec<f64>, base: Vec<f32>) -> Self {
        let len = base.len();
        Self { base: Some(base), ..Self::new_in(buffer, len) }
    }

    fn check(&self, update: &[f32], weight: f64) -> Result<(), AggregationError> {
        check_update(update, self.sum.len())?;
        if !(weight.is_finite() && weight > 0.0) {
            return Err(AggregationError::BadWeight(weight));
        }
        Ok(())
    }

    /// Folds in `update` with `weight` (its example count) at once. A bad update is refused
    /// and leaves the mean unchanged.
    pub fn add(&mut self, update: &[f32], weight: f64) -> Result<(), AggregationError> {
        self.check(update, weight)?;
        self.flush();
        fold(&mut self.sum, self.base.as_deref(), &[(update, weight)]);
        self.total_weight += weight;
        self.count += 1;
        Ok(())
    }

    /// Takes `update` with `weight`; it is folded with the next ones once [`FOLD_BATCH`]
    /// wait, or at [`FedAvg::finish`]. A bad update is refused and leaves the mean unchanged.
    pub fn push(&mut self, update: Vec<f32>, weight: f64) -> Result<(), AggregationError> {
        self.check(&update, weight)?;
        self.pending.push((update, weight));
        self.total_weight += weight;
        self.count += 1;
        if self.pending.len() >= FOLD_BATCH {
            self.flush();
        }
        Ok(())
    }

    /// Folds in a batch of updates already checked on arrival, together, in one pass over
    /// the accumulator: the aggregation step proper, for a caller that holds the round's
    /// updates (validation being the step before it).
    pub fn add_checked(&mut self, batch: &[(Checked<'_>, f64)]) -> Result<(), AggregationError> {
        for (update, weight) in batch {
            if update.values().len() != self.sum.len() {
                return Err(AggregationError::WrongLength { expected: self.sum.len(), got: update.values().len() });
            }
            if !(weight.is_finite() && *weight > 0.0) {
                return Err(AggregationError::BadWeight(*weight));
            }
        }
        self.flush();
        let refs: Vec<(&[f32], f64)> = batch.iter().map(|(u, w)| (u.values(), *w)).collect();
        for chunk in refs.chunks(FOLD_BATCH) {
            fold(&mut self.sum, self.base.as_deref(), chunk);
        }
        self.total_weight += batch.iter().map(|(_, w)| w).sum::<f64>();
        self.count += batch.len();
        Ok(())
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch: Vec<(&[f32], f64)> = self.pending.iter().map(|(u, w)| (u.as_slice(), *w)).collect();
        fold(&mut self.sum, self.base.as_deref(), &batch);
        self.pending.clear();
    }

    /// Updates taken so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The sum of the weights taken so far.
    pub fn total_weight(&self) -> f64 {
        self.total_weight
    }

    /// The weighted mean, rounded to `f32`.
    pub fn finish(self) -> Result<Vec<f32>, AggregationError> {
        self.finish_keeping_buffer().map(|(mean, _)| mean)
    }

    /// The weighted mean, and the accumulator to reuse with [`FedAvg::new_in`].
    pub fn finish_keeping_buffer(self) -> Result<(Vec<f32>, Vec<f64>), AggregationError> {
        let mut mean = Vec::new();
        let buffer = self.finish_into(&mut mean)?;
        Ok((mean, buffer))
    }

    /// Writes the weighted mean into `out` (reusing its allocation) and returns the
    /// accumulator to reuse with [`FedAvg::new_in`].
    pub fn finish_into(mut self, out: &mut Vec<f32>) -> Result<Vec<f64>, AggregationError> {
        if self.count == 0 {
            return Err(AggregationError::Empty);
        }
        self.flush();
        let w = self.total_weight;
        out.clear();
        out.extend(self.sum.iter().map(|s| (s / w) as f32));
        Ok(self.sum)
    }
}

/// `s += w · (u − b)` (or `s += w · u`), element by element: a multiply and an add, each
/// rounded (no fused multiply-add), so every instruction set gives the same bits.
#[inline(always)]
fn fold_block(s: &mut [f64], u: &[f32], b: Option<&[f32]>, w: f64) {
    match b {
        Some(b) => {
            for ((s, &v), &b) in s.iter_mut().zip(u).zip(b) {
                *s += w * (f64::from(v) - f64::from(b));
            }
        }
        None => {
            for (s, &v) in s.iter_mut().zip(u) {
                *s += w * f64::from(v);
            }
        }
    }
}

/// [`fold_block`] compiled for AVX2, which the default x86-64 target does not assume.
///
/// # Safety
/// The CPU must support AVX2 (checked by the caller).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn fold_block_avx2(s: &mut [f64], u: &[f32], b: Option<&[f32]>, w: f64) {
    fold_block(s, u, b, w)
}

/// `sum += Σ_k w_k · (u_k − base)` (base defaulting to zero), block by block; within a
/// coordinate the terms are added in batch order.
fn fold(sum: &mut [f64], base: Option<&[f32]>, batch: &[(&[f32], f64)]) {
    #[cfg(target_arch = "x86_64")]
    let avx2 = std::arch::is_x86_feature_detected!("avx2");
    let work = |(block, s): (usize, &mut [f64])| {
        let range = block * BLOCK..block * BLOCK + s.len();
        for &(update, w) in batch {
            let (u, b) = (&update[range.clone()], base.map(|b| &b[range.clone()]));
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                // SAFETY: AVX2 support was detected at run time just above.
                unsafe { fold_block_avx2(s, u, b, w) };
                continue;
            }
            fold_block(s, u, b, w);
        }
    };
    // Small models fold on the calling thread; rayon's hand-off costs more than it saves.
    if sum.len() >= 4 * BLOCK {
        sum.par_chunks_mut(BLOCK).enumerate().for_each(work);
    } else {
        sum.chunks_mut(BLOCK).enumerate().for_each(work);
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
        assert!(matches!(avg.push(vec![1.0, f32::INFINITY], 1.0), Err(AggregationError::NonFinite { index: 1, .. })));
        assert_eq!(avg.add(&[1.0, 1.0], 0.0), Err(AggregationError::BadWeight(0.0)));
        assert_eq!(avg.count(), 1);
        assert_eq!(avg.finish().unwrap(), vec![2.0, 2.0]);
    }

    #[test]
    fn changes_from_a_base() {
        let mut avg = FedAvg::of_changes(vec![1.0, 1.0]);
        avg.add(&[3.0, 1.0], 1.0).unwrap();
        avg.push(vec![1.0, 5.0], 3.0).unwrap();
        assert!(avg.push(vec![f32::INFINITY, 0.0], 1.0).is_err());
        // ((2, 0)·1 + (0, 4)·3) / 4
        assert_eq!(avg.finish().unwrap(), vec![0.5, 3.0]);
        // Changes are taken in f64: 3e38 − (−3e38) does not overflow.
        let mut wide = FedAvg::of_changes(vec![-3.0e38]);
        wide.add(&[3.0e38], 1.0).unwrap();
        assert_eq!(wide.finish().unwrap(), vec![6.0e38f64 as f32]);
    }

    #[test]
    fn batched_and_one_at_a_time_folds_give_the_same_bits() {
        // Across the parallel threshold and block edges, with a base, 19 updates (two full
        // batches and a partial one).
        let n = 4 * BLOCK + 123;
        let updates: Vec<Vec<f32>> =
            (0..19).map(|k| (0..n).map(|i| ((i * (k + 3)) as f32 * 0.001).sin() * 1e3).collect()).collect();
        let base: Vec<f32> = (0..n).map(|i| (i as f32 * 0.002).cos()).collect();
        let mut one = FedAvg::of_changes(base.clone());
        let mut batched = FedAvg::of_changes(base);
        for (k, u) in updates.iter().enumerate() {
            let w = 1.0 + k as f64;
            one.add(u, w).unwrap();
            batched.push(u.clone(), w).unwrap();
        }
        let (a, b) = (one.finish().unwrap(), batched.finish().unwrap());
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }

    #[test]
    fn a_reused_buffer_starts_from_zero() {
        let mut first = FedAvg::new(2);
        first.add(&[4.0, 8.0], 1.0).unwrap();
        let (mean, buffer) = first.finish_keeping_buffer().unwrap();
        assert_eq!(mean, vec![4.0, 8.0]);
        let mut second = FedAvg::of_changes_in(buffer, vec![1.0, 1.0]);
        second.add(&[2.0, 3.0], 1.0).unwrap();
        assert_eq!(second.finish().unwrap(), vec![1.0, 2.0]);
    }

    #[test]
    fn checked_batches_fold_like_single_updates() {
        let updates: Vec<Vec<f32>> = (0..11).map(|k| vec![k as f32, -(k as f32) * 0.5, 0.25]).collect();
        let mut one = FedAvg::new(3);
        for u in &updates {
            one.add(u, 2.0).unwrap();
        }
        let checked: Vec<(Checked<'_>, f64)> = updates.iter().map(|u| (Checked::new(u, 3).unwrap(), 2.0)).collect();
        let mut batch = FedAvg::new(3);
        batch.add_checked(&checked).unwrap();
        let mut out = vec![9.0; 1];
        batch.finish_into(&mut out).unwrap();
        assert_eq!(one.finish().unwrap(), out);
        // Checked refuses what check_update refuses.
        assert!(Checked::new(&[f32::NAN], 1).is_err());
        assert!(Checked::new(&[1.0], 2).is_err());
        let short = [1.0f32];
        let mut wrong = FedAvg::new(3);
        assert!(wrong.add_checked(&[(Checked::new(&short, 1).unwrap(), 1.0)]).is_err());
    }

    #[test]
    fn empty_mean_is_an_error() {
        assert_eq!(FedAvg::new(3).finish(), Err(AggregationError::Empty));
    }
}
