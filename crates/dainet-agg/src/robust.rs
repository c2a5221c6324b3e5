//! Byzantine-robust aggregation rules: the coordinate-wise median and trimmed mean, Krum and
//! Multi-Krum, Bulyan and centered clipping, plus the L2 helpers `l2_norm` and `clip_to_norm`.
//!
//! Every rule takes the round's client models (or deltas) as `&[&[f32]]`, all of one length,
//! unweighted as in Flower, and returns a new vector:
//!
//! - [`median`]: the coordinate-wise median (Yin, Chen, Ramchandran and Bartlett 2018,
//!   <https://arxiv.org/abs/1803.01498>); for even `n` the mean of the two middle values.
//! - [`trimmed_mean`]: the coordinate-wise mean after dropping the `floor(beta·n)` smallest
//!   and largest values (Yin et al. 2018; Flower's `FedTrimmedAvg`, default `beta = 0.2`).
//! - [`krum_scores`], [`multi_krum`]: Krum and Multi-Krum (Blanchard, El Mhamdi, Guerraoui and
//!   Stainer 2017, <https://papers.nips.cc/paper/6617>); `m = 1` is Krum.
//! - [`bulyan`]: Krum applied recursively, then a coordinate-wise trimmed mean around the
//!   median (El Mhamdi, Guerraoui and Rouault 2018, <https://arxiv.org/abs/1802.07927>).
//! - [`centered_clipping`]: iterative clipping around a center (Karimireddy, He and Jaggi
//!   2021, <https://arxiv.org/abs/2012.10333>).
//!
//! Guarantees:
//!
//! - No input panics. An empty list is [`AggregationError::Empty`]; an update whose length
//!   differs from the first one's is [`AggregationError::WrongLength`]; a NaN or infinity is
//!   [`AggregationError::NonFinite`] (check each update with [`crate::check_update`] as it
//!   arrives and drop the bad ones, so that one client cannot void the round); too few updates
//!   for `f` is [`AggregationError::TooFewUpdates`] naming the relation (`n >= 2f + 3`,
//!   `n >= 4f + 3`); a setting out of range is [`AggregationError::InvalidSetting`].
//! - Identical output bits whatever rayon's thread count: per-coordinate work is independent,
//!   and every sum runs in a fixed order (over updates by ascending index, over coordinates
//!   sequentially, or over sorted values) in `f64`, rounded to `f32` once at the end.
//! - [`median`] and [`trimmed_mean`] are permutation invariant to the bit: they depend only on
//!   the multiset of each coordinate's values (the kept values of the trimmed mean are sorted
//!   before they are summed).
//! - Ties are broken by the lower update index (Krum's selection) or the lower value (which of
//!   two equally distant values Bulyan keeps), never by chance.

use rayon::prelude::*;

use crate::error::{check_update, AggregationError};

/// Coordinates per parallel block of the coordinate-wise rules.
const BLOCK: usize = 4096;

/// The order of `f32` used everywhere here: IEEE 754 `totalOrder`, so that selection never
/// panics and equal keys have equal bits.
fn cmp_f32(a: &f32, b: &f32) -> std::cmp::Ordering {
    a.total_cmp(b)
}

/// Checks that `updates` is not empty and that every update has the first one's length and
/// only finite values; returns that length. The error is the first bad update's.
fn check_updates(updates: &[&[f32]]) -> Result<usize, AggregationError> {
    let len = updates.first().ok_or(AggregationError::Empty)?.len();
    match updates.par_iter().map(|u| check_update(u, len)).find_first(Result::is_err) {
        Some(err) => err.map(|()| len),
        None => Ok(len),
    }
}

/// Applies `reduce` to every coordinate's column of values (one per update, in update order),
/// in parallel over blocks of [`BLOCK`] coordinates with one reusable column buffer per job.
fn per_coordinate<F>(updates: &[&[f32]], len: usize, reduce: F) -> Vec<f32>
where
    F: Fn(&mut [f32]) -> f32 + Sync,
{
    let mut out = vec![0.0f32; len];
    out.par_chunks_mut(BLOCK).enumerate().for_each_init(
        || Vec::with_capacity(updates.len()),
        |column: &mut Vec<f32>, (b, block)| {
            let start = b * BLOCK;
            let rows: Vec<&[f32]> = updates.iter().map(|u| &u[start..start + block.len()]).collect();
            for (j, slot) in block.iter_mut().enumerate() {
                column.clear();
                column.extend(rows.iter().map(|r| r[j]));
                *slot = reduce(column);
            }
        },
    );
    out
}

/// The coordinate-wise mean of `updates` (at least one, all of length `len`), summed in `f64`
/// in update order.
fn mean_of(updates: &[&[f32]], len: usize) -> Vec<f32> {
    let n = updates.len() as f64;
    let mut out = vec![0.0f32; len];
    out.par_chunks_mut(BLOCK).enumerate().for_each(|(b, block)| {
        let start = b * BLOCK;
        let mut acc = vec![0.0f64; block.len()];
        for u in updates {
            for (a, &v) in acc.iter_mut().zip(&u[start..start + block.len()]) {
                *a += f64::from(v);
            }
        }
        for (o, a) in block.iter_mut().zip(acc) {
            *o = (a / n) as f32;
        }
    });
    out
}

/// The mean of `values` in `f64`, summed in slice order, rounded to `f32`.
fn mean_in_order(values: &[f32]) -> f32 {
    let sum: f64 = values.iter().map(|&v| f64::from(v)).sum();
    (sum / values.len() as f64) as f32
}

/// The median of `column` (not empty); reorders it.
fn median_of(column: &mut [f32]) -> f32 {
    let n = column.len();
    let (lower, &mut upper_mid, _) = column.select_nth_unstable_by(n / 2, cmp_f32);
    if n % 2 == 1 {
        return upper_mid;
    }
    // Even n: the lower middle value is the largest of the lower half.
    let lower_mid = lower.iter().copied().max_by(cmp_f32).unwrap_or(upper_mid);
    ((f64::from(lower_mid) + f64::from(upper_mid)) * 0.5) as f32
}

/// The coordinate-wise median of `updates` (Yin et al. 2018); for an even count, the mean of
/// the two middle values.
///
/// Runs a selection (not a sort) per coordinate, in parallel over blocks of coordinates. The
/// result depends only on each coordinate's multiset of values: shuffling the updates leaves
/// every output bit unchanged.
///
/// ```
/// let (a, b, c) = ([1.0, 9.0], [2.0, -4.0], [100.0, 0.0]);
/// assert_eq!(dainet_agg::robust::median(&[&a, &b, &c]).unwrap(), vec![2.0, 0.0]);
/// ```
pub fn median(updates: &[&[f32]]) -> Result<Vec<f32>, AggregationError> {
    let len = check_updates(updates)?;
    Ok(per_coordinate(updates, len, median_of))
}

/// The coordinate-wise trimmed mean of `updates`: drops the `floor(beta·n)` smallest and the
/// `floor(beta·n)` largest values of each coordinate and averages the rest (Yin et al. 2018;
/// Flower's `FedTrimmedAvg`, whose default `beta` is 0.2).
///
/// Needs `0 <= beta < 0.5` ([`AggregationError::InvalidSetting`] otherwise) and at least one
/// value left, `n > 2·floor(beta·n)`. Two selections per coordinate find the kept values;
/// they are sorted before the `f64` sum so that the output bits do not depend on the order of
/// the updates.
///
/// ```
/// let (a, b, c, d, e) = ([5.0], [1.0], [100.0], [2.0], [3.0]);
/// // floor(0.2 · 5) = 1 value dropped at each end: mean(2, 3, 5).
/// let out = dainet_agg::robust::trimmed_mean(&[&a, &b, &c, &d, &e], 0.2).unwrap();
/// assert_eq!(out, vec![(10.0f64 / 3.0) as f32]);
/// ```
pub fn trimmed_mean(updates: &[&[f32]], beta: f64) -> Result<Vec<f32>, AggregationError> {
    if !(0.0..0.5).contains(&beta) {
        return Err(AggregationError::InvalidSetting(format!("trimmed_mean needs 0 <= beta < 0.5, got beta = {beta}")));
    }
    let len = check_updates(updates)?;
    let n = updates.len();
    let trim = (beta * n as f64).floor() as usize;
    let keep = n.saturating_sub(trim.saturating_mul(2));
    if keep == 0 {
        // Only reachable through rounding of beta·n for beta just below 0.5.
        return Err(AggregationError::TooFewUpdates {
            rule: format!("trimmed_mean(beta={beta})"),
            needed: trim.saturating_mul(2).saturating_add(1),
            why: "n > 2·floor(beta·n)",
            got: n,
        });
    }
    Ok(per_coordinate(updates, len, |column| {
        let upper = if trim > 0 {
            column.select_nth_unstable_by(trim, cmp_f32);
            &mut column[trim..]
        } else {
            column
        };
        if keep < upper.len() {
            upper.select_nth_unstable_by(keep - 1, cmp_f32);
        }
        let kept = &mut upper[..keep];
        kept.sort_unstable_by(cmp_f32);
        mean_in_order(kept)
    }))
}

/// `Σ_j (a_j − b_j)²` in `f64`, in a fixed order (four interleaved partial sums). `a` and `b`
/// must have the same length (the longer one's extra values are ignored).
pub fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| {
            let d = f64::from(x) - f64::from(y);
            d * d
        })
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..4 {
            let d = f64::from(x[l]) - f64::from(y[l]);
            acc[l] += d * d;
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// For each update, every other update as `(squared distance, index)`, nearest first, ties by
/// index. The `n(n − 1)/2` distances are computed once each, in parallel over pairs.
fn neighbour_rows(updates: &[&[f32]]) -> Vec<Vec<(f64, usize)>> {
    let n = updates.len();
    let pairs: Vec<(usize, usize)> = (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j))).collect();
    let distances: Vec<f64> = pairs.par_iter().map(|&(i, j)| squared_distance(updates[i], updates[j])).collect();
    let mut rows: Vec<Vec<(f64, usize)>> = (0..n).map(|_| Vec::with_capacity(n.saturating_sub(1))).collect();
    for (&(i, j), &d) in pairs.iter().zip(&distances) {
        rows[i].push((d, j));
        rows[j].push((d, i));
    }
    rows.par_iter_mut().for_each(|row| row.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))));
    rows
}

/// The Krum score of a row: the sum of its `k` nearest distances to updates still `alive`,
/// nearest first.
fn row_score(row: &[(f64, usize)], alive: &[bool], k: usize) -> f64 {
    row.iter().filter(|&&(_, j)| alive[j]).take(k).map(|&(d, _)| d).sum()
}

/// Checks `n >= 2f + 3` for the Krum rules.
fn check_krum_count(rule: String, n: usize, f: usize) -> Result<(), AggregationError> {
    let needed = f.saturating_mul(2).saturating_add(3);
    if n < needed {
        return Err(AggregationError::TooFewUpdates { rule, needed, why: "n >= 2f + 3", got: n });
    }
    Ok(())
}

/// Krum scores over all `n` updates with `k = n − f − 2` neighbours (`n >= 2f + 3` checked).
fn scores_unchecked(updates: &[&[f32]], f: usize) -> Vec<f64> {
    let n = updates.len();
    let k = n - f - 2;
    let rows = neighbour_rows(updates);
    let alive = vec![true; n];
    rows.par_iter().map(|row| row_score(row, &alive, k)).collect()
}

/// The Krum score of every update (Blanchard et al. 2017): the sum of the squared L2
/// distances to its `n − f − 2` nearest other updates, in `f64`.
///
/// `f` is the number of Byzantine updates to tolerate; needs `n >= 2f + 3`
/// ([`AggregationError::TooFewUpdates`] otherwise). The pairwise distances are computed once
/// each, in parallel over pairs.
///
/// ```
/// let pts: Vec<[f32; 1]> = vec![[0.0], [1.0], [2.0], [3.0], [10.0]];
/// let refs: Vec<&[f32]> = pts.iter().map(|p| p.as_slice()).collect();
/// // f = 1: each score sums the 2 nearest squared distances.
/// assert_eq!(dainet_agg::robust::krum_scores(&refs, 1).unwrap(), vec![5.0, 2.0, 2.0, 5.0, 113.0]);
/// ```
pub fn krum_scores(updates: &[&[f32]], f: usize) -> Result<Vec<f64>, AggregationError> {
    check_updates(updates)?;
    check_krum_count(format!("krum(f={f})"), updates.len(), f)?;
    Ok(scores_unchecked(updates, f))
}

/// Multi-Krum (Blanchard et al. 2017): selects the `m` updates with the lowest Krum scores
/// (ties to the lower index) and returns their coordinate-wise mean with the selected indices
/// in ascending order. `m = 1` is Krum.
///
/// Needs `n >= 2f + 3` ([`AggregationError::TooFewUpdates`]) and `1 <= m <= n`
/// ([`AggregationError::InvalidSetting`]).
pub fn multi_krum(updates: &[&[f32]], f: usize, m: usize) -> Result<(Vec<f32>, Vec<usize>), AggregationError> {
    let len = check_updates(updates)?;
    let n = updates.len();
    check_krum_count(format!("multi_krum(f={f}, m={m})"), n, f)?;
    if m == 0 || m > n {
        return Err(AggregationError::InvalidSetting(format!("multi_krum needs 1 <= m <= n = {n}, got m = {m}")));
    }
    let scores = scores_unchecked(updates, f);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_unstable_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    let mut selected = order[..m].to_vec();
    selected.sort_unstable();
    let chosen: Vec<&[f32]> = selected.iter().map(|&i| updates[i]).collect();
    Ok((mean_of(&chosen, len), selected))
}

/// Bulyan's selection: `theta` updates chosen one at a time by Krum over the updates not yet
/// chosen, returned in ascending order. Krum on `r` remaining updates sums the
/// `max(1, r − f − 2)` nearest distances (at most `r − 1`), as Flower does.
fn bulyan_select(updates: &[&[f32]], f: usize, theta: usize) -> Vec<usize> {
    let n = updates.len();
    let rows = neighbour_rows(updates);
    let mut alive = vec![true; n];
    let mut selected = Vec::with_capacity(theta);
    for _ in 0..theta.min(n) {
        let remaining = n - selected.len();
        let k = remaining.saturating_sub(f.saturating_add(2)).max(1).min(remaining - 1);
        let best = (0..n)
            .into_par_iter()
            .filter(|&i| alive[i])
            .map(|i| (row_score(&rows[i], &alive, k), i))
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let Some((_, i)) = best else { break };
        alive[i] = false;
        selected.push(i);
    }
    selected.sort_unstable();
    selected
}

/// Bulyan's coordinate rule: the mean of the `beta` values of `column` closest to its median
/// (ties to the lower value); sorts `column`.
fn mean_around_median(column: &mut [f32], beta: usize) -> f32 {
    column.sort_unstable_by(cmp_f32);
    let theta = column.len();
    let mid = theta / 2;
    let twice_median =
        if theta % 2 == 1 { 2.0 * f64::from(column[mid]) } else { f64::from(column[mid - 1]) + f64::from(column[mid]) };
    // The `beta` closest values form a window of the sorted column. Slide it up while the
    // value just above it is strictly closer to the median than its lowest value:
    // |s[a+beta] − med| < |s[a] − med|  <=>  s[a] + s[a+beta] < 2·med for sorted values.
    let mut start = 0;
    while start + beta < theta && f64::from(column[start]) + f64::from(column[start + beta]) < twice_median {
        start += 1;
    }
    mean_in_order(&column[start..start + beta])
}

/// Bulyan (El Mhamdi et al. 2018): picks `θ = n − 2f` updates by applying Krum repeatedly
/// (scores recomputed over the updates not yet picked, the pick removed each time), then, per
/// coordinate, averages the `β = θ − 2f` of the `θ` values closest to their median.
///
/// Needs `n >= 4f + 3`; otherwise the error reads e.g.
/// `bulyan(f=2) needs at least 11 updates (n >= 4f + 3), got 9`. With `f = 0` it is the mean.
pub fn bulyan(updates: &[&[f32]], f: usize) -> Result<Vec<f32>, AggregationError> {
    let len = check_updates(updates)?;
    let n = updates.len();
    let needed = f.saturating_mul(4).saturating_add(3);
    if n < needed {
        return Err(AggregationError::TooFewUpdates {
            rule: format!("bulyan(f={f})"),
            needed,
            why: "n >= 4f + 3",
            got: n,
        });
    }
    let theta = n - 2 * f;
    let beta = theta - 2 * f;
    let chosen: Vec<&[f32]> = bulyan_select(updates, f, theta).into_iter().map(|i| updates[i]).collect();
    Ok(per_coordinate(&chosen, len, |column| mean_around_median(column, beta)))
}

/// `‖x − v‖` with `x` in `f32` and `v` in `f64`, summed in order.
fn distance_to(x: &[f32], v: &[f64]) -> f64 {
    x.iter()
        .zip(v)
        .map(|(&a, &b)| {
            let d = f64::from(a) - b;
            d * d
        })
        .sum::<f64>()
        .sqrt()
}

/// Centered clipping (Karimireddy, He and Jaggi 2021): starting from `v = center`, repeats
/// `iterations` times `v ← v + (1/n) Σ_i (x_i − v) · min(1, tau / ‖x_i − v‖)`.
///
/// Each iteration moves `v` by at most `tau`, however far an outlier lies. `center` (usually
/// the previous aggregate or momentum) must have the updates' length and be finite; `tau`
/// must be positive and finite and `iterations` at least 1
/// ([`AggregationError::InvalidSetting`] otherwise). `v` is kept in `f64` and rounded to
/// `f32` at the end.
pub fn centered_clipping(
    updates: &[&[f32]],
    center: &[f32],
    tau: f64,
    iterations: usize,
) -> Result<Vec<f32>, AggregationError> {
    if !(tau.is_finite() && tau > 0.0) {
        return Err(AggregationError::InvalidSetting(format!(
            "centered_clipping needs a positive finite tau, got tau = {tau}"
        )));
    }
    if iterations == 0 {
        return Err(AggregationError::InvalidSetting("centered_clipping needs at least 1 iteration, got 0".into()));
    }
    let len = check_updates(updates)?;
    check_update(center, len)?;
    let n = updates.len() as f64;
    let mut v: Vec<f64> = center.iter().map(|&c| f64::from(c)).collect();
    for _ in 0..iterations {
        let scales: Vec<f64> = updates
            .par_iter()
            .map(|x| {
                let dist = distance_to(x, &v);
                if dist > tau {
                    tau / dist
                } else {
                    1.0
                }
            })
            .collect();
        v.par_chunks_mut(BLOCK).enumerate().for_each(|(b, block)| {
            let start = b * BLOCK;
            let mut acc = vec![0.0f64; block.len()];
            for (x, &s) in updates.iter().zip(&scales) {
                for ((a, &xj), &vj) in acc.iter_mut().zip(&x[start..start + block.len()]).zip(block.iter()) {
                    *a += (f64::from(xj) - vj) * s;
                }
            }
            for (vj, a) in block.iter_mut().zip(acc) {
                *vj += a / n;
            }
        });
    }
    Ok(v.into_iter().map(|x| x as f32).collect())
}

/// The L2 norm of `v`, summed in `f64` in a fixed order. NaN if `v` holds a NaN, infinite if
/// it holds an infinity; never overflows for finite `f32` values.
pub fn l2_norm(v: &[f32]) -> f64 {
    let mut acc = [0.0f64; 4];
    let chunks = v.chunks_exact(4);
    let tail: f64 = chunks.remainder().iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    for c in chunks {
        for l in 0..4 {
            acc[l] += f64::from(c[l]) * f64::from(c[l]);
        }
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3]) + tail).sqrt()
}

/// Scales `v` in place so that `l2_norm(v) <= bound` and returns its norm before scaling.
///
/// A `v` already within the bound is left unchanged. Scaling rounds each value to `f32` with
/// a safety margin of `2^-23` relative, so the clipped norm is at most `bound` (and within
/// about `2^-22` of it). A negative or NaN `bound` acts as 0 (`v` becomes zero); an infinite
/// bound clips nothing. A `v` holding a NaN or infinity is left unchanged and its non-finite
/// norm returned.
///
/// ```
/// let mut v = [3.0f32, 4.0];
/// assert_eq!(dainet_agg::robust::clip_to_norm(&mut v, 1.0), 5.0);
/// assert!(dainet_agg::robust::l2_norm(&v) <= 1.0);
/// ```
pub fn clip_to_norm(v: &mut [f32], bound: f64) -> f64 {
    const SHRINK: f64 = 1.0 - 1.0 / (1u64 << 23) as f64;
    let norm = l2_norm(v);
    let bound = if bound >= 0.0 { bound } else { 0.0 };
    if !norm.is_finite() || norm <= bound {
        return norm;
    }
    let mut current = norm;
    // One pass suffices unless rounding to f32 (subnormals) defeats the margin.
    for _ in 0..4 {
        let scale = bound / current * SHRINK;
        for x in v.iter_mut() {
            *x = (f64::from(*x) * scale) as f32;
        }
        current = l2_norm(v);
        if current <= bound {
            return norm;
        }
    }
    v.fill(0.0);
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use dainet_core::SplitMix64;

    fn refs(updates: &[Vec<f32>]) -> Vec<&[f32]> {
        updates.iter().map(Vec::as_slice).collect()
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// `n` updates of `len` values drawn from N(0, 1).
    fn random_updates(n: usize, len: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = SplitMix64::new(seed);
        (0..n).map(|_| (0..len).map(|_| rng.next_normal() as f32).collect()).collect()
    }

    /// `honest` updates of `len` values near 1.0 (within ±0.05), then the `byzantine` ones.
    fn honest_then(honest: usize, len: usize, byzantine: &[Vec<f32>], seed: u64) -> Vec<Vec<f32>> {
        let mut rng = SplitMix64::new(seed);
        let mut out: Vec<Vec<f32>> =
            (0..honest).map(|_| (0..len).map(|_| (1.0 + 0.1 * (rng.next_f64() - 0.5)) as f32).collect()).collect();
        out.extend(byzantine.iter().cloned());
        out
    }

    fn assert_within_honest(result: &[f32], honest: &[Vec<f32>]) {
        for (j, &r) in result.iter().enumerate() {
            let lo = honest.iter().map(|u| u[j]).fold(f32::INFINITY, f32::min);
            let hi = honest.iter().map(|u| u[j]).fold(f32::NEG_INFINITY, f32::max);
            assert!(lo <= r && r <= hi, "coordinate {j}: {r} outside the honest range [{lo}, {hi}]");
        }
    }

    #[test]
    fn median_of_hand_computed_vectors_odd_and_even() {
        // # Prepare
        let odd = [vec![1.0, 5.0, -1.0], vec![3.0, 2.0, 0.0], vec![2.0, 9.0, 4.0]];
        let even = [vec![1.0, 4.0], vec![3.0, 2.0], vec![10.0, 0.0], vec![2.0, 8.0]];
        // # Execute
        let odd_median = median(&refs(&odd)).unwrap();
        let even_median = median(&refs(&even)).unwrap();
        let single = median(&[&[7.5, -2.0]]).unwrap();
        // # Assert
        assert_eq!(odd_median, vec![2.0, 5.0, 0.0]);
        // Sorted columns (1, 2, 3, 10) and (0, 2, 4, 8): middle means 2.5 and 3.
        assert_eq!(even_median, vec![2.5, 3.0]);
        assert_eq!(single, vec![7.5, -2.0]);
    }

    #[test]
    fn median_matches_a_sorting_reference_across_blocks() {
        // # Prepare: 50,000 coordinates span 13 blocks, the last one partial.
        let updates = random_updates(6, 50_000, 11);
        // # Execute
        let got = median(&refs(&updates)).unwrap();
        // # Assert
        for (j, &g) in got.iter().enumerate() {
            let mut col: Vec<f32> = updates.iter().map(|u| u[j]).collect();
            col.sort_by(f32::total_cmp);
            let want = ((f64::from(col[2]) + f64::from(col[3])) * 0.5) as f32;
            assert_eq!(g.to_bits(), want.to_bits(), "coordinate {j}");
        }
    }

    #[test]
    fn trimmed_mean_of_hand_computed_vectors() {
        // # Prepare
        let updates = [vec![5.0, 1.0], vec![1.0, 1.0], vec![100.0, 1.0], vec![2.0, 4.0], vec![3.0, -50.0]];
        // # Execute
        let trimmed = trimmed_mean(&refs(&updates), 0.2).unwrap();
        let untrimmed = trimmed_mean(&refs(&updates), 0.0).unwrap();
        let heavy = trimmed_mean(&refs(&updates), 0.4).unwrap();
        // # Assert
        // floor(0.2·5) = 1 per side: mean(2, 3, 5) and mean(1, 1, 1).
        assert_eq!(trimmed, vec![(10.0f64 / 3.0) as f32, 1.0]);
        // beta = 0 is the plain mean: 111 / 5 and -43 / 5.
        assert_eq!(untrimmed, vec![22.2, -8.6]);
        // floor(0.4·5) = 2 per side leaves the median.
        assert_eq!(heavy, median(&refs(&updates)).unwrap());
    }

    #[test]
    fn median_and_trimmed_mean_are_permutation_invariant_to_the_bit() {
        // # Prepare: 40 updates (more than the slice length below which selection sorts):
        // random values plus signed zeros and duplicates; from coordinate 2 on, five values at
        // 1e20, five at -1e20 and 30 of order 1e4, so that one of each ±1e20 survives the trim
        // and the f64 sum of the kept values depends on its order (ulp(1e20) = 16384).
        let mut updates = random_updates(40, 3_000, 5);
        for (i, u) in updates.iter_mut().enumerate() {
            u[0] = if i % 2 == 0 { 0.0 } else { -0.0 };
            u[1] = (i % 3) as f32;
            for v in &mut u[2..] {
                *v = match i % 8 {
                    0 => 1e20,
                    1 => -1e20,
                    _ => *v * 3e4,
                };
            }
        }
        let mut shuffled = updates.clone();
        SplitMix64::new(99).shuffle(&mut shuffled);
        assert_ne!(updates, shuffled);
        // # Execute
        let med = (median(&refs(&updates)).unwrap(), median(&refs(&shuffled)).unwrap());
        let trim = (trimmed_mean(&refs(&updates), 0.1).unwrap(), trimmed_mean(&refs(&shuffled), 0.1).unwrap());
        // # Assert
        assert_eq!(bits(&med.0), bits(&med.1));
        assert_eq!(bits(&trim.0), bits(&trim.1));
    }

    #[test]
    fn median_and_trimmed_mean_ignore_two_outliers() {
        // # Prepare: 7 honest near 1.0, one Byzantine at +1e6 and one at -1e6; then two
        // colluding at +1e6.
        let spread = honest_then(7, 64, &[vec![1e6; 64], vec![-1e6; 64]], 1);
        let colluding = honest_then(7, 64, &[vec![1e6; 64], vec![1e6; 64]], 1);
        // # Execute
        let med = median(&refs(&spread)).unwrap();
        let med_colluding = median(&refs(&colluding)).unwrap();
        let trim = trimmed_mean(&refs(&spread), 0.2).unwrap();
        let trim_colluding = trimmed_mean(&refs(&colluding), 0.25).unwrap();
        // # Assert
        assert_within_honest(&med, &spread[..7]);
        assert_within_honest(&med_colluding, &colluding[..7]);
        assert_within_honest(&trim, &spread[..7]);
        assert_within_honest(&trim_colluding, &colluding[..7]);
    }

    #[test]
    fn krum_scores_and_selection_of_a_hand_computed_line() {
        // # Prepare: 1-D points 0, 1, 2, 3, 10 with f = 1, so 2 neighbours per score.
        let updates = [vec![0.0], vec![1.0], vec![2.0], vec![3.0], vec![10.0]];
        // # Execute
        let scores = krum_scores(&refs(&updates), 1).unwrap();
        let krum = multi_krum(&refs(&updates), 1, 1).unwrap();
        let multi = multi_krum(&refs(&updates), 1, 3).unwrap();
        // # Assert
        // 0: 1 + 4; 1: 1 + 1; 2: 1 + 1; 3: 1 + 4; 10: 49 + 64.
        assert_eq!(scores, vec![5.0, 2.0, 2.0, 5.0, 113.0]);
        // Ties go to the lower index: 1 before 2, and 0 before 3.
        assert_eq!(krum, (vec![1.0], vec![1]));
        assert_eq!(multi, (vec![1.0], vec![0, 1, 2]));
    }

    #[test]
    fn krum_and_multi_krum_pick_the_honest_cluster() {
        // # Prepare: 7 honest near (1, …, 1); 2 Byzantine colluding close to each other but far
        // away, placed first so that index order alone would pick them.
        let mut updates = honest_then(7, 100, &[vec![30.0; 100], vec![30.001; 100]], 3);
        updates.rotate_right(2);
        // # Execute
        let scores = krum_scores(&refs(&updates), 2).unwrap();
        let (krum, krum_idx) = multi_krum(&refs(&updates), 2, 1).unwrap();
        let (_, multi_idx) = multi_krum(&refs(&updates), 2, 5).unwrap();
        let (_, all_honest) = multi_krum(&refs(&updates), 2, 7).unwrap();
        // # Assert
        assert!(scores[0] > 10.0 * scores[2..].iter().cloned().fold(0.0, f64::max));
        assert_eq!(krum_idx.len(), 1);
        assert!(krum_idx[0] >= 2);
        assert_eq!(krum, updates[krum_idx[0]]);
        assert_eq!(multi_idx.len(), 5);
        assert!(multi_idx.iter().all(|&i| i >= 2), "{multi_idx:?}");
        assert!(multi_idx.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(all_honest, vec![2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn krum_refuses_too_few_updates() {
        // # Prepare
        let updates = random_updates(6, 4, 2);
        // # Execute
        let err = krum_scores(&refs(&updates), 2).unwrap_err();
        let err_multi = multi_krum(&refs(&updates), usize::MAX, 1).unwrap_err();
        // # Assert
        assert_eq!(err.to_string(), "krum(f=2) needs at least 7 updates (n >= 2f + 3), got 6");
        assert!(matches!(err_multi, AggregationError::TooFewUpdates { needed: usize::MAX, why: "n >= 2f + 3", .. }));
    }

    #[test]
    fn bulyan_refuses_fewer_than_4f_plus_3_updates() {
        // # Prepare
        let updates = random_updates(9, 8, 4);
        // # Execute
        let err = bulyan(&refs(&updates), 2).unwrap_err();
        // # Assert
        assert_eq!(
            err,
            AggregationError::TooFewUpdates { rule: "bulyan(f=2)".into(), needed: 11, why: "n >= 4f + 3", got: 9 }
        );
        assert_eq!(err.to_string(), "bulyan(f=2) needs at least 11 updates (n >= 4f + 3), got 9");
        assert!(bulyan(&refs(&updates[..7]), 1).is_ok());
    }

    #[test]
    fn bulyan_at_n_equal_4f_plus_3_stays_in_the_honest_range() {
        // # Prepare: f = 2, n = 11: 9 honest near 1.0, 2 Byzantine (one far, one at -1e6).
        let updates = honest_then(9, 200, &[vec![1e6; 200], vec![-1e6; 200]], 8);
        let mut colluding = honest_then(9, 200, &[vec![50.0; 200], vec![50.0; 200]], 8);
        colluding.rotate_right(2);
        // # Execute
        let out = bulyan(&refs(&updates), 2).unwrap();
        let out_colluding = bulyan(&refs(&colluding), 2).unwrap();
        // # Assert
        assert_within_honest(&out, &updates[..9]);
        assert_within_honest(&out_colluding, &colluding[2..]);
    }

    #[test]
    fn bulyan_selection_and_coordinate_rule_by_hand() {
        // # Prepare: 1-D points 0..=5 and 100 with f = 1: theta = 5, beta = 3.
        let updates = [vec![0.0], vec![1.0], vec![2.0], vec![3.0], vec![4.0], vec![5.0], vec![100.0]];
        // # Execute
        let selected = bulyan_select(&refs(&updates), 1, 5);
        let out = bulyan(&refs(&updates), 1).unwrap();
        let skewed = mean_around_median(&mut [10.0, 0.0, 1.5, 9.0, 1.0], 3);
        let tie = mean_around_median(&mut [2.0, 1.0, 0.0], 2);
        // # Assert
        // Krum picks 2 (tie with 3), then 3, then 1 (tie with 4), then 4, then 0 (tie with 5).
        assert_eq!(selected, vec![0, 1, 2, 3, 4]);
        assert_eq!(out, vec![2.0]);
        // Median 1.5; the 3 closest are 0, 1 and 1.5.
        assert_eq!(skewed, (2.5f64 / 3.0) as f32);
        // Median 1; 0 and 2 are equally close: the lower one is kept.
        assert_eq!(tie, 0.5);
    }

    #[test]
    fn bulyan_with_no_byzantine_is_the_mean() {
        // # Prepare
        let updates = [vec![1.0, 8.0], vec![2.0, -4.0], vec![6.0, 2.0]];
        // # Execute
        let out = bulyan(&refs(&updates), 0).unwrap();
        // # Assert
        assert_eq!(out, vec![3.0, 2.0]);
    }

    #[test]
    fn centered_clipping_moves_at_most_tau_per_iteration() {
        // # Prepare: 8 updates at the center and one huge outlier; and the outlier alone.
        let center = vec![0.5f32; 10];
        let mut updates = vec![center.clone(); 8];
        updates.push(vec![1e6; 10]);
        let tau = 2.0;
        // # Execute
        let moved: Vec<f64> = (1..=4)
            .map(|l| {
                let v = centered_clipping(&refs(&updates), &center, tau, l).unwrap();
                let delta: Vec<f32> = v.iter().zip(&center).map(|(a, b)| a - b).collect();
                l2_norm(&delta)
            })
            .collect();
        let alone = centered_clipping(&[&[100.0, 0.0]], &[0.0, 0.0], 0.5, 3).unwrap();
        // # Assert
        // One iteration moves exactly tau / n toward the outlier; never more than tau each.
        assert!((moved[0] - tau / 9.0).abs() < 1e-5, "{moved:?}");
        for (l, &m) in moved.iter().enumerate() {
            assert!(m <= tau * (l + 1) as f64 + 1e-5, "{moved:?}");
            assert!(m < 1.0, "the outlier dragged the aggregate: {moved:?}");
        }
        assert_eq!(alone, vec![1.5, 0.0]);
    }

    #[test]
    fn centered_clipping_with_a_large_tau_is_the_mean() {
        // # Prepare
        let updates = [vec![1.0, 8.0], vec![2.0, -4.0], vec![6.0, 2.0]];
        // # Execute
        let out = centered_clipping(&refs(&updates), &[100.0, -100.0], 1e9, 1).unwrap();
        // # Assert
        assert_eq!(out, vec![3.0, 2.0]);
    }

    #[test]
    fn results_are_identical_on_one_and_two_threads() {
        // # Prepare: n = 11 (Bulyan's minimum for f = 2) random updates of 50,000 values.
        let updates = random_updates(11, 50_000, 42);
        let updates = refs(&updates);
        let center = vec![0.1f32; 50_000];
        let run_all = || {
            let (mk, idx) = multi_krum(&updates, 2, 4).unwrap();
            let scores = krum_scores(&updates, 2).unwrap();
            let floats = [
                median(&updates).unwrap(),
                trimmed_mean(&updates, 0.2).unwrap(),
                mk,
                bulyan(&updates, 2).unwrap(),
                centered_clipping(&updates, &center, 50.0, 3).unwrap(),
            ];
            (floats.map(|v| bits(&v)), idx, scores.iter().map(|s| s.to_bits()).collect::<Vec<_>>())
        };
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let two = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        // # Execute
        let on_one = one.install(run_all);
        let on_two = two.install(run_all);
        let on_default = run_all();
        // # Assert
        assert_eq!(on_one, on_two);
        assert_eq!(on_one, on_default);
    }

    #[test]
    fn empty_and_ragged_input_and_non_finite_values_are_errors() {
        // # Prepare
        let ragged: [&[f32]; 3] = [&[1.0, 2.0], &[1.0, 2.0], &[1.0]];
        let nan: [&[f32]; 3] = [&[1.0, 2.0], &[1.0, f32::NAN], &[1.0, 2.0]];
        let wrong = || AggregationError::WrongLength { expected: 2, got: 1 };
        // # Execute / Assert
        assert_eq!(median(&[]), Err(AggregationError::Empty));
        assert_eq!(trimmed_mean(&[], 0.2), Err(AggregationError::Empty));
        assert_eq!(krum_scores(&[], 0), Err(AggregationError::Empty));
        assert_eq!(multi_krum(&[], 0, 1), Err(AggregationError::Empty));
        assert_eq!(bulyan(&[], 0), Err(AggregationError::Empty));
        assert_eq!(centered_clipping(&[], &[], 1.0, 1), Err(AggregationError::Empty));
        assert_eq!(median(&ragged), Err(wrong()));
        assert_eq!(trimmed_mean(&ragged, 0.0), Err(wrong()));
        assert_eq!(krum_scores(&ragged, 0), Err(wrong()));
        assert_eq!(multi_krum(&ragged, 0, 1), Err(wrong()));
        assert_eq!(bulyan(&ragged, 0), Err(wrong()));
        assert_eq!(centered_clipping(&ragged, &[0.0, 0.0], 1.0, 1), Err(wrong()));
        assert_eq!(centered_clipping(&ragged[..2], &[0.0], 1.0, 1), Err(wrong()));
        assert!(matches!(median(&nan), Err(AggregationError::NonFinite { index: 1, .. })));
        assert!(matches!(bulyan(&nan, 0), Err(AggregationError::NonFinite { index: 1, .. })));
    }

    #[test]
    fn bad_beta_tau_m_and_iterations_are_errors() {
        // # Prepare
        let updates = random_updates(7, 3, 6);
        let updates = refs(&updates);
        let center = [0.0f32; 3];
        // # Execute / Assert
        for beta in [-0.1, 0.5, 0.7, f64::NAN, f64::INFINITY] {
            assert!(matches!(trimmed_mean(&updates, beta), Err(AggregationError::InvalidSetting(_))), "beta {beta}");
        }
        assert!(trimmed_mean(&updates, 0.49).is_ok());
        for tau in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(
                matches!(centered_clipping(&updates, &center, tau, 1), Err(AggregationError::InvalidSetting(_))),
                "tau {tau}"
            );
        }
        assert!(matches!(centered_clipping(&updates, &center, 1.0, 0), Err(AggregationError::InvalidSetting(_))));
        assert!(matches!(
            centered_clipping(&updates, &[0.0, f32::INFINITY, 0.0], 1.0, 1),
            Err(AggregationError::NonFinite { index: 1, .. })
        ));
        for m in [0, 8] {
            let err = multi_krum(&updates, 2, m).unwrap_err();
            assert_eq!(err, AggregationError::InvalidSetting(format!("multi_krum needs 1 <= m <= n = 7, got m = {m}")));
        }
        assert_eq!(multi_krum(&updates, 2, 7).unwrap().1, (0..7).collect::<Vec<_>>());
    }

    #[test]
    fn l2_norm_and_clip_to_norm() {
        // # Prepare
        let mut long = vec![3.0f32, 4.0];
        let mut short = vec![0.3f32, 0.4];
        let mut random: Vec<f32> = random_updates(1, 1001, 7).remove(0);
        let mut negative_bound = vec![1.0f32, 1.0];
        // # Execute
        let long_norm = clip_to_norm(&mut long, 1.0);
        let short_norm = clip_to_norm(&mut short, 1.0);
        let random_norm = clip_to_norm(&mut random, 0.75);
        let negative_norm = clip_to_norm(&mut negative_bound, -1.0);
        // # Assert
        assert_eq!(l2_norm(&[]), 0.0);
        assert_eq!(long_norm, 5.0);
        assert!(l2_norm(&long) <= 1.0 && l2_norm(&long) > 1.0 - 1e-6);
        assert!((long[0] / long[1] - 0.75).abs() < 1e-6);
        assert!((short_norm - 0.5).abs() < 1e-7);
        assert_eq!(short, vec![0.3, 0.4]);
        assert!(random_norm > 20.0);
        assert!(l2_norm(&random) <= 0.75 && l2_norm(&random) > 0.75 - 1e-6);
        assert_eq!(negative_norm, 2f64.sqrt());
        assert_eq!(negative_bound, vec![0.0, 0.0]);
        assert!(clip_to_norm(&mut [f32::NAN, 1.0], 1.0).is_nan());
    }
}
