//! The model and training test vectors of fedtask-v1 (`shared/bench/fedtask-v1.md`,
//! "Test vectors"), on the bundled MNIST.

use dainet_core::{Purpose, SplitMix64};
use dainet_ml::data::idx::{load_idx_dataset, mnist_default_paths};
use dainet_ml::data::partition::{partition, PartitionScheme};
use dainet_ml::{evaluate, train_local, Dataset, Model, ModelSpec, Scratch, SgdConfig};
use std::path::Path;

fn pool_and_test() -> (Dataset, Dataset) {
    let (images, labels) = mnist_default_paths(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist"));
    let all = load_idx_dataset(&images, &labels).unwrap();
    (all.slice(0..8000), all.slice(8000..10000))
}

fn model(text: &str) -> Box<dyn Model> {
    text.parse::<ModelSpec>().unwrap().build()
}

fn sum(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x)).sum()
}

fn sum_sq(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x) * f64::from(x)).sum()
}

fn close(got: f64, want: f64, tol: f64) -> bool {
    (got - want).abs() <= tol
}

#[test]
fn two_nn_init_matches() {
    let m = model("mlp:784-200-200-10");
    let p = m.init(1);
    assert_eq!(p.len(), 199_210);
    // "2NN init: W1[0,0], W1[0,1]": exact f32 values.
    assert_eq!(f64::from(p.tensor(0)[0]), 0.07553386688232422);
    assert_eq!(f64::from(p.tensor(0)[1]), -0.030392859131097794);
    // "Σ W1, Σ W2, Σ W3 (f64 sums)".
    for (i, want) in [(0, -19.094679341240532), (2, -24.947759417354973), (4, -10.201382039143937)] {
        assert!(close(sum(p.tensor(i)), want, 1e-9), "tensor {i}: {}", sum(p.tensor(i)));
    }
    assert!(p.tensor(1).iter().chain(p.tensor(3)).chain(p.tensor(5)).all(|&b| b == 0.0));
    // "2NN init: test accuracy, loss".
    let (_, test) = pool_and_test();
    let e = evaluate(m.as_ref(), p.values(), &test);
    assert_eq!(e.accuracy, 0.1125);
    assert!(close(e.loss, 2.44289499, 1e-6), "loss {}", e.loss);
}

#[test]
fn lr_init_matches() {
    let m = model("mlp:784-10");
    let p = m.init(1);
    assert_eq!(p.len(), 7_850);
    assert!(close(sum(p.tensor(0)), -1.6285344327435496, 1e-9));
    let (_, test) = pool_and_test();
    let e = evaluate(m.as_ref(), p.values(), &test);
    assert_eq!(e.accuracy, 0.1045);
    assert!(close(e.loss, 2.35451921, 1e-6), "loss {}", e.loss);
}

/// Client 0 of the IID partition trained in round 1 from θ_0.
fn client0_round1(text: &str) -> (f64, Vec<f64>) {
    let m = model(text);
    let p = m.init(1);
    let (pool, _) = pool_and_test();
    let part = partition(&PartitionScheme::Iid, pool.labels(), 10, 100, 1, None).unwrap();
    let mut rng = SplitMix64::stream(1, Purpose::BatchOrder, 1, 0);
    let out = train_local(
        m.as_ref(),
        p.values(),
        &pool,
        part.client(0),
        &SgdConfig::default(),
        &mut rng,
        &mut Scratch::default(),
    );
    assert_eq!(out.steps, 8);
    assert_eq!(out.num_examples, 80);
    let layout = m.layout().clone();
    let sq = (0..layout.tensors().len()).step_by(2).map(|i| sum_sq(&out.params[layout.range(i)])).collect();
    (out.mean_loss, sq)
}

#[test]
fn two_nn_client_zero_round_one_matches() {
    let (loss, sq) = client0_round1("mlp:784-200-200-10");
    assert!(close(loss, 2.33756888, 1e-6), "loss {loss}");
    for (got, want) in sq.iter().zip([400.232454, 400.165957, 19.6878617]) {
        assert!(close(*got, want, 1e-4 * want), "ΣW² {got} vs {want}");
    }
}

#[test]
fn lr_client_zero_round_one_matches() {
    let (loss, sq) = client0_round1("mlp:784-10");
    assert!(close(loss, 2.28945741, 1e-6), "loss {loss}");
    assert!(close(sq[0], 20.0462768, 1e-4 * 20.0462768), "ΣW² {}", sq[0]);
}

#[test]
fn round_one_batch_order_of_client_zero_matches() {
    // "round 1 / client 0 batch order, first 10".
    let mut perm: Vec<usize> = (0..80).collect();
    SplitMix64::stream(1, Purpose::BatchOrder, 1, 0).shuffle(&mut perm);
    assert_eq!(&perm[..10], &[41, 64, 20, 78, 33, 52, 38, 16, 58, 35]);
}

#[test]
fn fused_sgd_step_equals_gradient_then_update() {
    // The MLP fuses plain SGD into its backward pass; the general path must agree.
    let m = model("mlp:784-32-10");
    let (pool, _) = pool_and_test();
    let x = &pool.features()[..10 * 784];
    let y = &pool.labels()[..10];
    let mut fused = m.init(3).into_values();
    let mut plain = fused.clone();
    let mut s = Scratch::default();
    let l1 = m.sgd_step(&mut fused, x, y, 0.1, &mut s);
    let mut grad = vec![0.0; plain.len()];
    let l2 = m.loss_grad(&plain, x, y, &mut grad, &mut s);
    for (p, g) in plain.iter_mut().zip(&grad) {
        *p -= 0.1 * g;
    }
    assert_eq!(l1, l2);
    let max_diff = fused.iter().zip(&plain).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max_diff < 1e-6, "max diff {max_diff}");
}

#[test]
fn cnn_gradient_matches_finite_differences() {
    let m = model("cnn:1x8x8-3");
    let p = m.init(5).into_values();
    let mut g = SplitMix64::new(11);
    let x: Vec<f32> = (0..2 * 64).map(|_| g.next_f64() as f32).collect();
    let y = [1u32, 2];
    let mut grad = vec![0.0; p.len()];
    let mut s = Scratch::default();
    m.loss_grad(&p, &x, &y, &mut grad, &mut s);
    let layout = m.layout().clone();
    // One coordinate in each tensor, central differences in f64 of the f32 loss.
    for t in 0..layout.tensors().len() {
        let i = layout.range(t).start + layout.range(t).len() / 3;
        let h = 1e-2f32;
        let mut plus = p.clone();
        plus[i] += h;
        let mut minus = p.clone();
        minus[i] -= h;
        let lp = m.loss_grad(&plus, &x, &y, &mut vec![0.0; p.len()], &mut s);
        let lm = m.loss_grad(&minus, &x, &y, &mut vec![0.0; p.len()], &mut s);
        let numeric = (lp - lm) / (2.0 * f64::from(h));
        let analytic = f64::from(grad[i]);
        assert!(
            (numeric - analytic).abs() <= 2e-3 + 0.05 * analytic.abs(),
            "{}: numeric {numeric} analytic {analytic}",
            layout.tensors()[t].name
        );
    }
}
