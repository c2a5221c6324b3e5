//! McMahan et al. (2017)'s CNN for MNIST: two 5x5 convolutions ("same" padding, 32 and 64
//! channels, ReLU), each followed by 2x2 max pooling, a 512-unit ReLU dense layer and a
//! dense output layer (1,663,370 parameters for 28x28 digits).
//!
//! Activations are NHWC, so a convolution is one sgemm of the im2col matrix
//! (`batch·H·W` rows, `5·5·C_in` columns in `(kh, kw, c)` order) with the kernel stored as
//! `[5, 5, C_in, C_out]` (HWIO, TensorFlow's order). Inputs arrive as rows of
//! `[channels, height, width]` (the dataset's order) and are transposed to NHWC first.
//! The dense layer after the last pooling reads the NHWC activations flattened, so
//! `fc0.weight` has `H/4·W/4·64` rows in `(h, w, c)` order.

use super::gemm::{sgemm, Op};
use super::ops;
use super::{Model, ModelSpec, Scratch};
use dainet_core::{Layout, Params, TensorSpec};
use std::sync::Arc;

const K: usize = 5;
const PAD: usize = 2;
const C1: usize = 32;
const C2: usize = 64;
const FC: usize = 512;

/// McMahan et al.'s CNN.
#[derive(Debug, Clone)]
pub struct Cnn {
    spec: ModelSpec,
    input: [usize; 3],
    classes: usize,
    layout: Arc<Layout>,
}

/// Indices of the tensors in the layout.
const CONV0_W: usize = 0;
const CONV0_B: usize = 1;
const CONV1_W: usize = 2;
const CONV1_B: usize = 3;
const FC0_W: usize = 4;
const FC0_B: usize = 5;
const FC1_W: usize = 6;
const FC1_B: usize = 7;

/// Scratch buffer slots.
const X_NHWC: usize = 0;
const COLS0: usize = 1;
const A0: usize = 2; // conv0 output after ReLU, batch·H·W·C1
const P0: usize = 3; // pooled, batch·H/2·W/2·C1
const COLS1: usize = 4;
const A1: usize = 5; // batch·H/2·W/2·C2
const P1: usize = 6; // batch·H/4·W/4·C2
const H0: usize = 7; // fc0 output after ReLU, batch·FC
const Z: usize = 8; // logits
const D_H0: usize = 9;
const D_P1: usize = 10;
const D_A1: usize = 11;
const D_COLS1: usize = 12;
const D_P0: usize = 13;
const D_A0: usize = 14;
const ARG0: usize = 0; // pooling argmax indices
const ARG1: usize = 1;

impl Cnn {
    /// The CNN for images of `input = [channels, height, width]` (height and width multiples
    /// of 4) and `classes` outputs.
    pub fn new(input: [usize; 3], classes: usize) -> Self {
        let [c, h, w] = input;
        let t = |name: &str, shape: &[usize]| TensorSpec { name: name.into(), shape: shape.to_vec() };
        let layout = Layout::new(vec![
            t("conv0.weight", &[K, K, c, C1]),
            t("conv0.bias", &[C1]),
            t("conv1.weight", &[K, K, C1, C2]),
            t("conv1.bias", &[C2]),
            t("fc0.weight", &[(h / 4) * (w / 4) * C2, FC]),
            t("fc0.bias", &[FC]),
            t("fc1.weight", &[FC, classes]),
            t("fc1.bias", &[classes]),
        ])
        .expect("fixed names are unique");
        Self { spec: ModelSpec::Cnn { input, classes }, input, classes, layout: Arc::new(layout) }
    }

    fn tensor<'p>(&self, params: &'p [f32], i: usize) -> &'p [f32] {
        &params[self.layout.range(i)]
    }

    /// Forward pass, keeping every activation in `s` for the backward pass.
    fn forward(&self, params: &[f32], x: &[f32], s: &mut Scratch) -> usize {
        let [c, h, w] = self.input;
        let batch = x.len() / (c * h * w);
        let (h2, w2, h4, w4) = (h / 2, w / 2, h / 4, w / 4);

        let mut xin = std::mem::take(s.buf(X_NHWC, x.len()));
        chw_to_hwc(x, &mut xin, batch, c, h * w);
        let a0 = conv_forward(self, params, CONV0_W, CONV0_B, &xin, [batch, h, w, c], C1, COLS0, A0, s);
        s.bufs[X_NHWC] = xin;
        max_pool(&a0, [batch, h, w, C1], s, P0, ARG0);
        s.bufs[A0] = a0;
        let p0 = std::mem::take(&mut s.bufs[P0]);
        let a1 = conv_forward(self, params, CONV1_W, CONV1_B, &p0, [batch, h2, w2, C1], C2, COLS1, A1, s);
        s.bufs[P0] = p0;
        max_pool(&a1, [batch, h2, w2, C2], s, P1, ARG1);
        s.bufs[A1] = a1;

        let flat = h4 * w4 * C2;
        let mut h0 = std::mem::take(s.buf(H0, batch * FC));
        ops::broadcast_rows(&mut h0, self.tensor(params, FC0_B));
        let fc0w = self.tensor(params, FC0_W);
        sgemm(batch, flat, FC, 1.0, &s.bufs[P1], Op::N, fc0w, Op::N, 1.0, &mut h0);
        ops::relu(&mut h0);
        let mut z = std::mem::take(s.buf(Z, batch * self.classes));
        ops::broadcast_rows(&mut z, self.tensor(params, FC1_B));
        sgemm(batch, FC, self.classes, 1.0, &h0, Op::N, self.tensor(params, FC1_W), Op::N, 1.0, &mut z);
        s.bufs[H0] = h0;
        s.bufs[Z] = z;
        batch
    }
}

/// Transposes `batch` rows of `[c, hw]` into `[hw, c]`.
fn chw_to_hwc(x: &[f32], out: &mut [f32], batch: usize, c: usize, hw: usize) {
    if c == 1 {
        out.copy_from_slice(x);
        return;
    }
    for b in 0..batch {
        let (src, dst) = (&x[b * c * hw..][..c * hw], &mut out[b * c * hw..][..c * hw]);
        for ch in 0..c {
            for p in 0..hw {
                dst[p * c + ch] = src[ch * hw + p];
            }
        }
    }
}

/// im2col of an NHWC tensor for a KxK "same" convolution: `batch·h·w` rows of `K·K·c`.
fn im2col(x: &[f32], [batch, h, w, c]: [usize; 4], cols: &mut [f32]) {
    let row_len = K * K * c;
    for b in 0..batch {
        for oy in 0..h {
            for ox in 0..w {
                let row = &mut cols[((b * h + oy) * w + ox) * row_len..][..row_len];
                for ky in 0..K {
                    let iy = oy + ky;
                    for kx in 0..K {
                        let ix = ox + kx;
                        let dst = &mut row[(ky * K + kx) * c..][..c];
                        if iy < PAD || iy >= h + PAD || ix < PAD || ix >= w + PAD {
                            dst.fill(0.0);
                        } else {
                            let src = ((b * h + iy - PAD) * w + ix - PAD) * c;
                            dst.copy_from_slice(&x[src..src + c]);
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds each column entry back to the input position it came from.
fn col2im(cols: &[f32], [batch, h, w, c]: [usize; 4], dx: &mut [f32]) {
    dx.fill(0.0);
    let row_len = K * K * c;
    for b in 0..batch {
        for oy in 0..h {
            for ox in 0..w {
                let row = &cols[((b * h + oy) * w + ox) * row_len..][..row_len];
                for ky in 0..K {
                    let iy = oy + ky;
                    if iy < PAD || iy >= h + PAD {
                        continue;
                    }
                    for kx in 0..K {
                        let ix = ox + kx;
                        if ix < PAD || ix >= w + PAD {
                            continue;
                        }
                        let dst = ((b * h + iy - PAD) * w + ix - PAD) * c;
                        for (d, &v) in dx[dst..dst + c].iter_mut().zip(&row[(ky * K + kx) * c..]) {
                            *d += v;
                        }
                    }
                }
            }
        }
    }
}

/// A ReLU convolution layer: returns the NHWC output; its im2col matrix stays in `cols_slot`.
#[allow(clippy::too_many_arguments)]
fn conv_forward(
    net: &Cnn,
    params: &[f32],
    w_idx: usize,
    b_idx: usize,
    x: &[f32],
    shape: [usize; 4],
    c_out: usize,
    cols_slot: usize,
    out_slot: usize,
    s: &mut Scratch,
) -> Vec<f32> {
    let [batch, h, w, c] = shape;
    let rows = batch * h * w;
    let mut cols = std::mem::take(s.buf(cols_slot, rows * K * K * c));
    im2col(x, shape, &mut cols);
    let mut out = std::mem::take(s.buf(out_slot, rows * c_out));
    ops::broadcast_rows(&mut out, net.tensor(params, b_idx));
    sgemm(rows, K * K * c, c_out, 1.0, &cols, Op::N, net.tensor(params, w_idx), Op::N, 1.0, &mut out);
    ops::relu(&mut out);
    s.bufs[cols_slot] = cols;
    out
}

/// 2x2 max pooling of an NHWC tensor into `s.bufs[out_slot]`, remembering each maximum's
/// position in `s.indices[arg_slot]`.
fn max_pool(x: &[f32], [batch, h, w, c]: [usize; 4], s: &mut Scratch, out_slot: usize, arg_slot: usize) {
    let (ho, wo) = (h / 2, w / 2);
    let n = batch * ho * wo * c;
    let mut out = std::mem::take(s.buf(out_slot, n));
    if s.indices.len() <= arg_slot {
        s.indices.resize_with(arg_slot + 1, Vec::new);
    }
    let arg = &mut s.indices[arg_slot];
    arg.resize(n, 0);
    for b in 0..batch {
        for oy in 0..ho {
            for ox in 0..wo {
                let o = ((b * ho + oy) * wo + ox) * c;
                let base = ((b * h + 2 * oy) * w + 2 * ox) * c;
                for ch in 0..c {
                    let mut best = base + ch;
                    for cand in [base + c + ch, base + w * c + ch, base + (w + 1) * c + ch] {
                        if x[cand] > x[best] {
                            best = cand;
                        }
                    }
                    out[o + ch] = x[best];
                    arg[o + ch] = best as u32;
                }
            }
        }
    }
    s.bufs[out_slot] = out;
}

impl Model for Cnn {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn layout(&self) -> &Arc<Layout> {
        &self.layout
    }

    fn init(&self, task_seed: u64) -> Params {
        let flat = self.layout.tensors()[FC0_W].shape[0];
        let weights = [(CONV0_W, K * K * self.input[0]), (CONV1_W, K * K * C1), (FC0_W, flat), (FC1_W, FC)];
        ops::he_uniform(&self.layout, task_seed, &weights)
    }

    fn input_dim(&self) -> usize {
        self.input.iter().product()
    }

    fn num_classes(&self) -> usize {
        self.classes
    }

    fn logits(&self, params: &[f32], x: &[f32], out: &mut [f32], s: &mut Scratch) {
        self.forward(params, x, s);
        out.copy_from_slice(&s.bufs[Z]);
    }

    fn loss_grad(&self, params: &[f32], x: &[f32], y: &[u32], grad: &mut [f32], s: &mut Scratch) -> f64 {
        let batch = self.forward(params, x, s);
        let [c, h, w] = self.input;
        let (h2, w2, h4, w4) = (h / 2, w / 2, h / 4, w / 4);
        let l = self.layout.clone();

        // Output layer.
        let mut dz = std::mem::take(&mut s.bufs[Z]);
        let loss = ops::softmax_ce_backward(&mut dz, y, self.classes);
        sgemm(FC, batch, self.classes, 1.0, &s.bufs[H0], Op::T, &dz, Op::N, 0.0, &mut grad[l.range(FC1_W)]);
        ops::col_sums(&dz, &mut grad[l.range(FC1_B)], 1.0, 0.0);
        let mut dh0 = std::mem::take(s.buf(D_H0, batch * FC));
        sgemm(batch, self.classes, FC, 1.0, &dz, Op::N, self.tensor(params, FC1_W), Op::T, 0.0, &mut dh0);
        ops::relu_backward(&mut dh0, &s.bufs[H0]);
        s.bufs[Z] = dz;

        // Dense layer.
        let flat = h4 * w4 * C2;
        sgemm(flat, batch, FC, 1.0, &s.bufs[P1], Op::T, &dh0, Op::N, 0.0, &mut grad[l.range(FC0_W)]);
        ops::col_sums(&dh0, &mut grad[l.range(FC0_B)], 1.0, 0.0);
        let mut dp1 = std::mem::take(s.buf(D_P1, batch * flat));
        sgemm(batch, FC, flat, 1.0, &dh0, Op::N, self.tensor(params, FC0_W), Op::T, 0.0, &mut dp1);
        s.bufs[D_H0] = dh0;

        // Pool 1 and conv 1, then pool 0 and conv 0 (whose input gradient is not needed).
        let dp0 = conv_backward(self, params, grad, s, &CONV1, &dp1, [batch, h2, w2, C1], C2, true);
        s.bufs[D_P1] = dp1;
        conv_backward(self, params, grad, s, &CONV0, &dp0, [batch, h, w, c], C1, false);
        s.bufs[D_P0] = dp0;
        loss
    }

    fn eval_chunk(&self) -> usize {
        50
    }
}

/// The tensors and scratch slots of one convolution layer.
struct ConvSlots {
    weight: usize,
    bias: usize,
    /// Its im2col matrix (forward).
    cols: usize,
    /// Its output after ReLU (forward).
    act: usize,
    /// The argmax of the pooling after it (forward).
    arg: usize,
    /// The gradient of its output.
    d_act: usize,
    /// The gradient of its im2col matrix.
    d_cols: usize,
    /// The gradient of its input.
    d_in: usize,
}

const CONV0: ConvSlots =
    ConvSlots { weight: CONV0_W, bias: CONV0_B, cols: COLS0, act: A0, arg: ARG0, d_act: D_A0, d_cols: 0, d_in: 0 };
const CONV1: ConvSlots = ConvSlots {
    weight: CONV1_W,
    bias: CONV1_B,
    cols: COLS1,
    act: A1,
    arg: ARG1,
    d_act: D_A1,
    d_cols: D_COLS1,
    d_in: D_P0,
};

/// Backward through max pooling, ReLU and a "same" convolution with input `shape` (NHWC) and
/// `c_out` channels: from the gradient of the pooled output, writes the layer's weight and
/// bias gradients into `grad` and, if `want_input`, returns the gradient of its input.
#[allow(clippy::too_many_arguments)]
fn conv_backward(
    net: &Cnn,
    params: &[f32],
    grad: &mut [f32],
    s: &mut Scratch,
    slots: &ConvSlots,
    d_pooled: &[f32],
    shape: [usize; 4],
    c_out: usize,
    want_input: bool,
) -> Vec<f32> {
    let [batch, h, w, c_in] = shape;
    let rows = batch * h * w;
    let l = &net.layout;
    let mut d_act = std::mem::take(s.buf(slots.d_act, rows * c_out));
    unpool(d_pooled, &s.indices[slots.arg], &mut d_act);
    ops::relu_backward(&mut d_act, &s.bufs[slots.act]);
    let k = K * K * c_in;
    sgemm(k, rows, c_out, 1.0, &s.bufs[slots.cols], Op::T, &d_act, Op::N, 0.0, &mut grad[l.range(slots.weight)]);
    ops::col_sums(&d_act, &mut grad[l.range(slots.bias)], 1.0, 0.0);
    let mut d_in = Vec::new();
    if want_input {
        let mut d_cols = std::mem::take(s.buf(slots.d_cols, rows * k));
        sgemm(rows, c_out, k, 1.0, &d_act, Op::N, net.tensor(params, slots.weight), Op::T, 0.0, &mut d_cols);
        d_in = std::mem::take(s.buf(slots.d_in, rows * c_in));
        col2im(&d_cols, shape, &mut d_in);
        s.bufs[slots.d_cols] = d_cols;
    }
    s.bufs[slots.d_act] = d_act;
    d_in
}

/// Routes each pooled gradient back to the position of its maximum.
fn unpool(d_out: &[f32], arg: &[u32], d_in: &mut [f32]) {
    d_in.fill(0.0);
    for (&d, &i) in d_out.iter().zip(arg) {
        d_in[i as usize] += d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_count_matches_the_paper() {
        // McMahan et al. 2017, section 3: "1,663,370 total parameters".
        assert_eq!(Cnn::new([1, 28, 28], 10).layout().len(), 1_663_370);
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), y> == <x, col2im(y)> for any x, y.
        let shape = [2, 4, 4, 3];
        let n = 2 * 4 * 4 * 3;
        let x: Vec<f32> = (0..n).map(|i| ((i * 7 % 11) as f32) - 5.0).collect();
        let m = 2 * 4 * 4 * K * K * 3;
        let y: Vec<f32> = (0..m).map(|i| ((i * 5 % 13) as f32) * 0.1).collect();
        let mut cols = vec![0.0; m];
        im2col(&x, shape, &mut cols);
        let mut back = vec![0.0; n];
        col2im(&y, shape, &mut back);
        let lhs: f64 = cols.iter().zip(&y).map(|(a, b)| f64::from(a * b)).sum();
        let rhs: f64 = x.iter().zip(&back).map(|(a, b)| f64::from(a * b)).sum();
        assert!((lhs - rhs).abs() < 1e-3, "{lhs} vs {rhs}");
    }
}
