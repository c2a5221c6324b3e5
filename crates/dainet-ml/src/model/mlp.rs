//! Multi-layer perceptrons: dense layers with ReLU between them.
//!
//! Layer `l` computes `h_{l+1} = h_l · W_l + b_l` with `W_l` of shape `(fan_in, fan_out)`,
//! row-major, and the parameters ordered `W1, b1, W2, b2, …` (fedtask-v1's layout). With no
//! hidden layer this is multinomial logistic regression.
//!
//! Plain SGD is fused into the backward pass: each weight update is the sgemm that computes
//! its gradient, with `alpha = −lr` and `beta = 1`, issued after that layer's weights were
//! used to propagate the error. This halves the memory traffic of a step.

use super::gemm::{sgemm, Op};
use super::ops;
use super::{Model, ModelSpec, Scratch};
use dainet_core::{Layout, Params, TensorSpec};
use std::sync::Arc;

/// A multi-layer perceptron; `dims` are the layer widths from input to logits.
#[derive(Debug, Clone)]
pub struct Mlp {
    spec: ModelSpec,
    dims: Vec<usize>,
    layout: Arc<Layout>,
    /// Offsets of (weight, bias) of each layer in the flat vector.
    offsets: Vec<(usize, usize)>,
}

/// Where the backward pass puts each layer's gradient.
enum GradSink<'a> {
    /// Into `grad` (overwritten); `params` are only read.
    Buffer { params: &'a [f32], grad: &'a mut [f32] },
    /// Straight into `params`, scaled by `−lr`.
    Sgd { params: &'a mut [f32], lr: f32 },
}

impl GradSink<'_> {
    fn params(&self) -> &[f32] {
        match self {
            GradSink::Buffer { params, .. } => params,
            GradSink::Sgd { params, .. } => params,
        }
    }

    /// `(alpha, target, beta)`: the gradient `g` is applied as `target = alpha·g + beta·target`.
    fn target(&mut self) -> (f32, &mut [f32], f32) {
        match self {
            GradSink::Buffer { grad, .. } => (1.0, grad, 0.0),
            GradSink::Sgd { params, lr } => (-*lr, params, 1.0),
        }
    }
}

impl Mlp {
    /// An MLP with `input` features, `hidden` layer widths (ReLU) and `classes` logits.
    pub fn new(input: usize, hidden: &[usize], classes: usize) -> Self {
        let mut dims = vec![input];
        dims.extend_from_slice(hidden);
        dims.push(classes);
        let mut tensors = Vec::new();
        for (l, w) in dims.windows(2).enumerate() {
            tensors.push(TensorSpec { name: format!("dense{l}.weight"), shape: vec![w[0], w[1]] });
            tensors.push(TensorSpec { name: format!("dense{l}.bias"), shape: vec![w[1]] });
        }
        let layout = Layout::new(tensors).expect("generated names are unique");
        let offsets = (0..dims.len() - 1).map(|l| (layout.range(2 * l).start, layout.range(2 * l + 1).start)).collect();
        let spec = ModelSpec::Mlp { input, hidden: hidden.to_vec(), classes };
        Self { spec, dims, layout: Arc::new(layout), offsets }
    }

    fn layers(&self) -> usize {
        self.dims.len() - 1
    }

    /// Forward pass; activations of layer `l` land in `scratch.bufs[l]` (`bufs[0]` is
    /// unused: the input is `x`). Returns the batch size.
    fn forward(&self, params: &[f32], x: &[f32], s: &mut Scratch) -> usize {
        let batch = x.len() / self.dims[0];
        for l in 0..self.layers() {
            let (fan_in, fan_out) = (self.dims[l], self.dims[l + 1]);
            let (wo, bo) = self.offsets[l];
            let mut out = std::mem::take(s.buf(l + 1, batch * fan_out));
            ops::broadcast_rows(&mut out, &params[bo..bo + fan_out]);
            let input: &[f32] = if l == 0 { x } else { &s.bufs[l] };
            sgemm(batch, fan_in, fan_out, 1.0, input, Op::N, &params[wo..], Op::N, 1.0, &mut out);
            if l + 1 < self.layers() {
                ops::relu(&mut out);
            }
            s.bufs[l + 1] = out;
        }
        batch
    }

    /// Backward pass from the logits left in `scratch` by [`Mlp::forward`].
    fn backward(&self, x: &[f32], y: &[u32], s: &mut Scratch, mut sink: GradSink<'_>) -> f64 {
        let batch = y.len();
        let top = self.layers();
        // The logits in bufs[top] become the first delta (dL/d output of the layer); bufs[top + 1]
        // is the spare that receives the next layer's delta, and the two swap on the way down.
        let mut delta = std::mem::take(&mut s.bufs[top]);
        let loss = ops::softmax_ce_backward(&mut delta, y, self.dims[top]);
        for l in (0..top).rev() {
            let (fan_in, fan_out) = (self.dims[l], self.dims[l + 1]);
            let (wo, bo) = self.offsets[l];
            // Error of the layer below, through the old weights, before they change.
            let mut below = Vec::new();
            if l > 0 {
                below = std::mem::take(s.buf(top + 1, batch * fan_in));
                let w = &sink.params()[wo..wo + fan_in * fan_out];
                sgemm(batch, fan_out, fan_in, 1.0, &delta, Op::N, w, Op::T, 0.0, &mut below);
                ops::relu_backward(&mut below, &s.bufs[l]);
            }
            let input: &[f32] = if l == 0 { x } else { &s.bufs[l] };
            let (alpha, target, beta) = sink.target();
            let (w_grad, rest) = target[wo..].split_at_mut(fan_in * fan_out);
            sgemm(fan_in, batch, fan_out, alpha, input, Op::T, &delta, Op::N, beta, w_grad);
            debug_assert_eq!(bo, wo + fan_in * fan_out, "bias follows its weights");
            ops::col_sums(&delta, &mut rest[..fan_out], alpha, beta);
            if l > 0 {
                s.bufs[top + 1] = std::mem::replace(&mut delta, below);
            }
        }
        s.bufs[top] = delta;
        loss
    }
}

impl Model for Mlp {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn layout(&self) -> &Arc<Layout> {
        &self.layout
    }

    fn init(&self, task_seed: u64) -> Params {
        let weights: Vec<(usize, usize)> = (0..self.layers()).map(|l| (2 * l, self.dims[l])).collect();
        ops::he_uniform(&self.layout, task_seed, &weights)
    }

    fn input_dim(&self) -> usize {
        self.dims[0]
    }

    fn num_classes(&self) -> usize {
        self.dims[self.layers()]
    }

    fn logits(&self, params: &[f32], x: &[f32], out: &mut [f32], s: &mut Scratch) {
        self.forward(params, x, s);
        out.copy_from_slice(&s.bufs[self.layers()]);
    }

    fn loss_grad(&self, params: &[f32], x: &[f32], y: &[u32], grad: &mut [f32], s: &mut Scratch) -> f64 {
        self.forward(params, x, s);
        self.backward(x, y, s, GradSink::Buffer { params, grad })
    }

    fn sgd_step(&self, params: &mut [f32], x: &[f32], y: &[u32], lr: f32, s: &mut Scratch) -> f64 {
        self.forward(params, x, s);
        self.backward(x, y, s, GradSink::Sgd { params, lr })
    }
}
