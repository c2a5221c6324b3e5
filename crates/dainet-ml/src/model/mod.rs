//! Models over flat `f32` parameters, and their kernels.
//!
//! [`Model`] is the seam other backends plug into: a model is a layout of named tensors, an
//! initialiser, a forward pass and a gradient over a flat parameter slice. Everything above
//! (local training, aggregation, the ledger's commitments) sees only `&[f32]`.
//!
//! Built-in models run on `matrixmultiply`'s sgemm with our own small kernels:
//! [`Mlp`] (multinomial logistic regression is an MLP with no hidden layer) and
//! [`Cnn`] (McMahan et al. 2017's CNN for MNIST).

mod cnn;
mod gemm;
mod mlp;
pub(crate) mod ops;
mod spec;

pub use cnn::Cnn;
pub use mlp::Mlp;
pub use spec::{ModelSpec, ModelSpecError, MAX_PARAMS};

use dainet_core::{Layout, Params};
use std::sync::Arc;

/// Reusable buffers for one thread's forward and backward passes.
///
/// A model sizes the buffers it needs on first use; keeping one `Scratch` per worker avoids
/// allocating inside the training loop.
#[derive(Default, Debug)]
pub struct Scratch {
    pub(crate) bufs: Vec<Vec<f32>>,
    pub(crate) indices: Vec<Vec<u32>>,
    pub(crate) grad: Vec<f32>,
}

impl Scratch {
    /// Buffer `i`, resized to `len` (its contents are unspecified).
    pub(crate) fn buf(&mut self, i: usize, len: usize) -> &mut Vec<f32> {
        if self.bufs.len() <= i {
            self.bufs.resize_with(i + 1, Vec::new);
        }
        let b = &mut self.bufs[i];
        b.resize(len, 0.0);
        b
    }
}

/// A classifier over flat `f32` parameters.
///
/// Required: [`Model::layout`], [`Model::init`], [`Model::logits`], [`Model::loss_grad`];
/// the rest have defaults. Implementations must be deterministic: the same parameters and
/// inputs give the same bits, whichever thread runs them.
pub trait Model: Send + Sync {
    /// The spec this model was built from (written into model files).
    fn spec(&self) -> &ModelSpec;

    /// The tensors of the flat parameter vector.
    fn layout(&self) -> &Arc<Layout>;

    /// Initial parameters drawn from the stream of `task_seed` (He-uniform weights, zero
    /// biases, as fedtask-v1 specifies).
    fn init(&self, task_seed: u64) -> Params;

    /// Features per example.
    fn input_dim(&self) -> usize;

    /// Number of classes (logits per example).
    fn num_classes(&self) -> usize;

    /// Writes the logits of the `x.len() / input_dim()` examples of `x` into `out`.
    fn logits(&self, params: &[f32], x: &[f32], out: &mut [f32], scratch: &mut Scratch);

    /// The batch-mean softmax cross-entropy of `x`, `y`, writing its gradient into `grad`.
    fn loss_grad(&self, params: &[f32], x: &[f32], y: &[u32], grad: &mut [f32], scratch: &mut Scratch) -> f64;

    /// One plain SGD step `θ ← θ − lr·∇L(θ)`; returns the batch-mean loss at the old `θ`.
    ///
    /// The default computes the gradient and then applies it; a model may fuse the two.
    fn sgd_step(&self, params: &mut [f32], x: &[f32], y: &[u32], lr: f32, s: &mut Scratch) -> f64 {
        let mut grad = std::mem::take(&mut s.grad);
        grad.resize(params.len(), 0.0);
        let loss = self.loss_grad(params, x, y, &mut grad, s);
        for (p, g) in params.iter_mut().zip(&grad) {
            *p -= lr * g;
        }
        s.grad = grad;
        loss
    }

    /// How many examples to evaluate per chunk (bounds evaluation memory).
    fn eval_chunk(&self) -> usize {
        500
    }
}
