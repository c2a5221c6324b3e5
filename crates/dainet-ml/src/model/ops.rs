//! Element-wise kernels shared by the built-in models.

use dainet_core::{Layout, Params, Purpose, SplitMix64};
use std::sync::Arc;

/// Fills `out` (rows of `bias.len()`) with copies of `bias`.
pub(crate) fn broadcast_rows(out: &mut [f32], bias: &[f32]) {
    for row in out.chunks_exact_mut(bias.len()) {
        row.copy_from_slice(bias);
    }
}

/// `x = max(x, 0)` in place.
pub(crate) fn relu(x: &mut [f32]) {
    for v in x {
        *v = v.max(0.0);
    }
}

/// Zeroes `grad` where the ReLU output `act` is not positive (the derivative is 0 at 0).
pub(crate) fn relu_backward(grad: &mut [f32], act: &[f32]) {
    for (g, &a) in grad.iter_mut().zip(act) {
        if a <= 0.0 {
            *g = 0.0;
        }
    }
}

/// Column sums of `m` (rows of `out.len()`), scaled by `alpha` and added to `beta * out`.
pub(crate) fn col_sums(m: &[f32], out: &mut [f32], alpha: f32, beta: f32) {
    let n = out.len();
    let mut acc = vec![0.0f32; n];
    for row in m.chunks_exact(n) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += v;
        }
    }
    for (o, a) in out.iter_mut().zip(acc) {
        *o = beta * *o + alpha * a;
    }
}

/// The per-example loss `logsumexp(z) − z_y` of one row of logits, computed stably.
pub(crate) fn cross_entropy(z: &[f32], y: u32) -> f32 {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = z.iter().map(|&v| (v - max).exp()).sum();
    max + sum.ln() - z[y as usize]
}

/// Turns logits `z` (rows of `classes`) into `dL/dz = (softmax(z) − onehot(y)) / batch` in
/// place and returns the batch-mean cross-entropy.
pub(crate) fn softmax_ce_backward(z: &mut [f32], y: &[u32], classes: usize) -> f64 {
    let batch = y.len();
    let inv = 1.0 / batch as f32;
    let mut total = 0.0f64;
    for (row, &label) in z.chunks_exact_mut(classes).zip(y) {
        let label = label as usize;
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let z_y = row[label];
        let mut sum = 0.0f32;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        total += f64::from(max + sum.ln() - z_y);
        for (c, v) in row.iter_mut().enumerate() {
            let p = *v / sum;
            *v = (p - if c == label { 1.0 } else { 0.0 }) * inv;
        }
    }
    total / batch as f64
}

/// The index of the first maximum of `z` (ties go to the first, as fedtask-v1 says).
pub(crate) fn argmax(z: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in z.iter().enumerate() {
        if v > z[best] {
            best = i;
        }
    }
    best
}

/// Parameters of `layout` with He-uniform weights and zero biases (fedtask-v1): one
/// generator started at the initial-weights stream of `task_seed` fills the tensors
/// `weights = [(tensor index, fan_in), …]` in that order, each row-major, with
/// `w = f32((2u − 1)·sqrt(6 / fan_in))`; every other tensor is zero.
pub(crate) fn he_uniform(layout: &Arc<Layout>, task_seed: u64, weights: &[(usize, usize)]) -> Params {
    let mut params = Params::zeros(layout.clone());
    let mut g = SplitMix64::stream(task_seed, Purpose::InitialWeights, 0, 0);
    for &(tensor, fan_in) in weights {
        let bound = (6.0 / fan_in as f64).sqrt();
        for v in &mut params.values_mut()[layout.range(tensor)] {
            *v = ((2.0 * g.next_f64() - 1.0) * bound) as f32;
        }
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_ce_gradient_rows_sum_to_zero_and_loss_matches() {
        let mut z = vec![1.0, 2.0, 3.0, 0.5, 0.5, 0.5];
        let y = [2, 0];
        let l0 = cross_entropy(&z[0..3], 2);
        let l1 = cross_entropy(&z[3..6], 0);
        let loss = softmax_ce_backward(&mut z, &y, 3);
        assert!((loss - f64::from(l0 + l1) / 2.0).abs() < 1e-6);
        assert!((l1 - 3f32.ln()).abs() < 1e-6);
        for row in z.chunks(3) {
            assert!(row.iter().sum::<f32>().abs() < 1e-6);
        }
        // d/dz_y is (p_y - 1)/batch, negative.
        assert!(z[2] < 0.0 && z[3] < 0.0);
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.0, 2.0, 2.0, 1.0]), 1);
    }

    #[test]
    fn large_logits_stay_finite() {
        assert!(cross_entropy(&[1000.0, -1000.0], 1).is_finite());
    }
}
