//! Central evaluation: accuracy and mean cross-entropy on a test set.
//!
//! Chunks of the test set are scored in parallel; per-example results are combined in
//! example order, so the numbers are the same whatever the thread count.

use crate::data::Dataset;
use crate::model::{ops, Model, Scratch};
use rayon::prelude::*;

/// Accuracy and loss of a model on a dataset.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    /// Fraction of examples whose first maximal logit is the label.
    pub accuracy: f64,
    /// Mean over examples of `logsumexp(z) − z_y` (per-example values in f32, mean in f64).
    pub loss: f64,
    /// Examples scored.
    pub examples: usize,
}

/// Evaluates `params` of `model` on all of `data`.
pub fn evaluate(model: &dyn Model, params: &[f32], data: &Dataset) -> Evaluation {
    let chunk = model.eval_chunk().max(1);
    let classes = model.num_classes();
    let n = data.len();
    let per_chunk: Vec<(usize, Vec<f32>)> = (0..n.div_ceil(chunk))
        .into_par_iter()
        .map_init(Scratch::default, |scratch, c| {
            let rows = c * chunk..((c + 1) * chunk).min(n);
            let x = &data.features()[rows.start * data.dim()..rows.end * data.dim()];
            let mut z = vec![0.0; rows.len() * classes];
            model.logits(params, x, &mut z, scratch);
            let mut correct = 0;
            let mut losses = Vec::with_capacity(rows.len());
            for (row, &y) in z.chunks_exact(classes).zip(&data.labels()[rows]) {
                correct += usize::from(ops::argmax(row) == y as usize);
                losses.push(ops::cross_entropy(row, y));
            }
            (correct, losses)
        })
        .collect();
    let correct: usize = per_chunk.iter().map(|(c, _)| c).sum();
    let loss_sum: f64 = per_chunk.iter().flat_map(|(_, l)| l).map(|&l| f64::from(l)).sum();
    let denom = n.max(1) as f64;
    Evaluation { accuracy: correct as f64 / denom, loss: loss_sum / denom, examples: n }
}

/// Class probabilities (softmax of the logits) for each row of `x`, row-major.
pub fn predict_proba(model: &dyn Model, params: &[f32], x: &[f32]) -> Vec<f32> {
    let classes = model.num_classes();
    let dim = model.input_dim();
    let chunk = model.eval_chunk().max(1) * dim;
    let mut out = Vec::with_capacity(x.len() / dim * classes);
    let mut scratch = Scratch::default();
    for xs in x.chunks(chunk) {
        let mut z = vec![0.0; xs.len() / dim * classes];
        model.logits(params, xs, &mut z, &mut scratch);
        for row in z.chunks_exact_mut(classes) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            row.iter_mut().for_each(|v| *v /= sum);
        }
        out.extend_from_slice(&z);
    }
    out
}
