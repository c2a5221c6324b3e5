//! Model-update attacks: what Byzantine clients send, for evaluating robust aggregation.
//!
//! This module owns the forging of malicious updates. Every attack works on *deltas*
//! (a client's model minus the global model), so a driver applies it between local
//! training and upload: `forged = attack(client − global)`, `sent = global + forged`.
//!
//! - [`sign_flip`]: `δ ← −s·δ`, the reversed-gradient Byzantine.
//! - [`gaussian_noise`]: every coordinate replaced by an `N(0, σ²)` draw, the "Gaussian"
//!   Byzantine of Blanchard, El Mhamdi, Guerraoui and Stainer, "Machine Learning with
//!   Adversaries: Byzantine Tolerant Gradient Descent" (NeurIPS 2017, the Krum paper).
//! - [`alie`] and [`alie_z`]: "A Little Is Enough" (Baruch, Baruch and Goldberg 2019,
//!   <https://arxiv.org/abs/1902.06156>): the coordinate-wise mean of honest deltas moved
//!   `z` standard deviations, small enough to hide among honest updates.
//! - [`ipm`]: inner-product manipulation (Xie, Koyejo and Gupta 2020,
//!   <https://arxiv.org/abs/1903.03936>): `−ε` times the mean of honest deltas.
//! - [`scale`]: the model-replacement boost `δ ← γ·δ` of Bagdasaryan et al. 2020 ("How To
//!   Backdoor Federated Learning", <https://arxiv.org/abs/1807.00459>), with `γ = n/η` for
//!   `n` clients per round and server learning rate `η`.
//!
//! Guarantees:
//! - randomness comes only from the caller's [`SplitMix64`], one [`SplitMix64::next_normal`]
//!   per coordinate in index order, so a forged update is a function of the seed;
//! - statistics over several deltas are accumulated in `f64` and rounded to `f32` once;
//! - bad input (no deltas, deltas of different lengths, non-finite values or settings) is
//!   an [`AggregationError`], never a panic. [`sign_flip`] and [`scale`] take any factor:
//!   a non-finite one yields a non-finite delta, which [`crate::check_update`] refuses.
//!
//! The standard normal quantile `Φ⁻¹` that [`alie_z`] needs is computed here: P. J.
//! Acklam's rational approximation (relative error below 1.15·10⁻⁹) refined by one Halley
//! step on `Φ(x) = erfc(−x/√2)/2`, with `erfc` from W. J. Cody's rational Chebyshev
//! approximations ("Rational Chebyshev approximations for the error function", Math. Comp.
//! 23, 1969; the CALERF routine of SPECFUN), accurate to about 10⁻¹⁶ relative.

use dainet_core::special::normal_quantile;
use dainet_core::SplitMix64;

use crate::error::{check_update, AggregationError};

/// Replaces `delta` by `−scale · delta` (the sign-flipping attack).
///
/// ```
/// let mut d = [1.0f32, -2.0];
/// dainet_agg::attack::sign_flip(&mut d, 2.0);
/// assert_eq!(d, [-2.0, 4.0]);
/// ```
pub fn sign_flip(delta: &mut [f32], scale: f32) {
    for v in delta.iter_mut() {
        *v *= -scale;
    }
}

/// Replaces `delta` by `gamma · delta`: the model-replacement boost of Bagdasaryan et al.
/// 2020, where `gamma = n / η` lets one attacker's update survive averaging over `n`
/// clients with server learning rate `η`.
///
/// ```
/// let mut d = [1.0f32, -2.0];
/// dainet_agg::attack::scale(&mut d, 10.0);
/// assert_eq!(d, [10.0, -20.0]);
/// ```
pub fn scale(delta: &mut [f32], gamma: f32) {
    for v in delta.iter_mut() {
        *v *= gamma;
    }
}

/// Replaces every coordinate of `delta` by an independent `N(0, sigma²)` draw: coordinate
/// `i` gets `sigma · rng.next_normal()` (the `i`-th draw), rounded to `f32`.
///
/// Errors with [`AggregationError::InvalidSetting`] if `sigma` is negative or not finite;
/// `delta` is then unchanged and nothing is drawn.
pub fn gaussian_noise(delta: &mut [f32], sigma: f64, rng: &mut SplitMix64) -> Result<(), AggregationError> {
    if !(sigma.is_finite() && sigma >= 0.0) {
        return Err(AggregationError::InvalidSetting(format!(
            "Gaussian attack sigma must be finite and non-negative, got {sigma}"
        )));
    }
    for v in delta.iter_mut() {
        *v = (sigma * rng.next_normal()) as f32;
    }
    Ok(())
}

/// The largest `z` an ALIE attack may use with `f` attackers among `n` clients (Baruch et
/// al. 2019, Algorithm 3): `s = ⌊n/2 + 1⌋ − f` honest clients must be won over, and
/// `z = Φ⁻¹((n − s)/n)`.
///
/// ```
/// // The paper's setting: n = 50 clients, f = 12 attackers → s = 14, Φ⁻¹(0.72).
/// let z = dainet_agg::attack::alie_z(50, 12).unwrap();
/// assert!((z - 0.5828).abs() < 1e-4);
/// ```
///
/// Errors with [`AggregationError::InvalidSetting`] if `f >= n`, if `s <= 0` (the
/// attackers are a majority and need no stealth), or if `(n − s)/n` is not inside `(0, 1)`.
pub fn alie_z(n: usize, f: usize) -> Result<f64, AggregationError> {
    if f >= n {
        return Err(AggregationError::InvalidSetting(format!(
            "ALIE needs fewer attackers than clients, got f = {f}, n = {n}"
        )));
    }
    let needed = n / 2 + 1;
    if f >= needed {
        return Err(AggregationError::InvalidSetting(format!(
            "ALIE with f = {f} of n = {n}: s = floor(n/2 + 1) - f = {} is not positive",
            needed as i128 - f as i128
        )));
    }
    let s = needed - f;
    let p = (n - s) as f64 / n as f64;
    if !(p > 0.0 && p < 1.0) {
        return Err(AggregationError::InvalidSetting(format!(
            "ALIE with f = {f} of n = {n}: (n - s)/n = {p} is not inside (0, 1)"
        )));
    }
    Ok(normal_quantile(p))
}

/// The ALIE update: coordinate-wise `μ − z·σ` of the `benign` deltas, where `μ` is their
/// mean and `σ` their population standard deviation (the attackers' estimate from their
/// own honest updates, Baruch et al. 2019).
///
/// ```
/// let m = dainet_agg::attack::alie(&[&[1.0, 3.0], &[3.0, 5.0]], 1.5).unwrap();
/// assert_eq!(m, vec![0.5, 2.5]);
/// ```
///
/// Errors: [`AggregationError::Empty`] without deltas, [`AggregationError::WrongLength`]
/// or [`AggregationError::NonFinite`] for a delta unlike the first or not finite, and
/// [`AggregationError::InvalidSetting`] for a non-finite `z` or a result beyond `f32`.
pub fn alie(benign: &[&[f32]], z: f64) -> Result<Vec<f32>, AggregationError> {
    if !z.is_finite() {
        return Err(AggregationError::InvalidSetting(format!("ALIE z must be finite, got {z}")));
    }
    let mean = mean_of(benign)?;
    let count = benign.len() as f64;
    let mut var = vec![0.0f64; mean.len()];
    for delta in benign {
        for ((s, &v), &m) in var.iter_mut().zip(delta.iter()).zip(&mean) {
            let d = f64::from(v) - m;
            *s += d * d;
        }
    }
    let forged = mean.iter().zip(&var).map(|(&m, &s)| (m - z * (s / count).sqrt()) as f32).collect();
    finite_result("ALIE", forged)
}

/// The inner-product-manipulation update: `−epsilon` times the coordinate-wise mean of the
/// `benign` deltas (Xie, Koyejo and Gupta 2020; they use `ε = 0.1` against Krum-like rules
/// and large `ε` against the mean).
///
/// ```
/// let m = dainet_agg::attack::ipm(&[&[1.0, -2.0], &[3.0, 0.0]], 0.5).unwrap();
/// assert_eq!(m, vec![-1.0, 0.5]);
/// ```
///
/// Errors as [`alie`], and [`AggregationError::InvalidSetting`] for a non-finite `epsilon`.
pub fn ipm(benign: &[&[f32]], epsilon: f64) -> Result<Vec<f32>, AggregationError> {
    if !epsilon.is_finite() {
        return Err(AggregationError::InvalidSetting(format!("IPM epsilon must be finite, got {epsilon}")));
    }
    let mean = mean_of(benign)?;
    finite_result("IPM", mean.iter().map(|&m| (-epsilon * m) as f32).collect())
}

/// The coordinate-wise `f64` mean of `deltas`, after checking them.
fn mean_of(deltas: &[&[f32]]) -> Result<Vec<f64>, AggregationError> {
    let first = deltas.first().ok_or(AggregationError::Empty)?;
    let len = first.len();
    let mut sum = vec![0.0f64; len];
    for delta in deltas {
        check_update(delta, len)?;
        for (s, &v) in sum.iter_mut().zip(delta.iter()) {
            *s += f64::from(v);
        }
    }
    let count = deltas.len() as f64;
    Ok(sum.into_iter().map(|s| s / count).collect())
}

/// `forged`, or an error if rounding to `f32` overflowed.
fn finite_result(attack: &str, forged: Vec<f32>) -> Result<Vec<f32>, AggregationError> {
    match forged.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(AggregationError::InvalidSetting(format!(
            "{attack} update coordinate {i} overflows f32; use a smaller factor"
        ))),
        None => Ok(forged),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dainet_core::special::{erfc, normal_cdf};

    #[test]
    fn sign_flip_and_scale_on_hand_vectors() {
        let mut d = [1.0f32, -2.0, 0.5, 0.0];
        sign_flip(&mut d, 1.0);
        assert_eq!(d, [-1.0, 2.0, -0.5, 0.0]);
        sign_flip(&mut d, 3.0);
        assert_eq!(d, [3.0, -6.0, 1.5, 0.0]);
        scale(&mut d, 0.5);
        assert_eq!(d, [1.5, -3.0, 0.75, 0.0]);
        // Model replacement with n = 10 clients, eta = 1: gamma = 10.
        scale(&mut d, 10.0);
        assert_eq!(d, [15.0, -30.0, 7.5, 0.0]);
        let mut empty: [f32; 0] = [];
        sign_flip(&mut empty, 2.0);
        scale(&mut empty, 2.0);
    }

    #[test]
    fn gaussian_noise_has_the_asked_moments_and_is_seeded() {
        let sigma = 2.5;
        let mut d = vec![100.0f32; 100_000];
        gaussian_noise(&mut d, sigma, &mut SplitMix64::new(11)).unwrap();
        let n = d.len() as f64;
        let mean = d.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = d.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
        // Standard errors: mean 2.5/316 ≈ 0.008, std ≈ 2.5/447 ≈ 0.006.
        assert!(mean.abs() < 0.04, "mean {mean}");
        assert!((var.sqrt() - sigma).abs() < 0.03, "std {}", var.sqrt());
        let mut again = vec![0.0f32; 100_000];
        gaussian_noise(&mut again, sigma, &mut SplitMix64::new(11)).unwrap();
        assert_eq!(d, again, "the original values must not matter, only the seed");
        let mut other = vec![0.0f32; 100_000];
        gaussian_noise(&mut other, sigma, &mut SplitMix64::new(12)).unwrap();
        assert_ne!(d, other);
        // Coordinate i is sigma times the i-th normal draw.
        let mut g = SplitMix64::new(11);
        assert_eq!(d[0], (sigma * g.next_normal()) as f32);
        assert_eq!(d[1], (sigma * g.next_normal()) as f32);
    }

    #[test]
    fn gaussian_noise_rejects_bad_sigma_and_leaves_delta_alone() {
        for sigma in [-1.0, f64::NAN, f64::INFINITY] {
            let mut d = [1.0f32, 2.0];
            let err = gaussian_noise(&mut d, sigma, &mut SplitMix64::new(1)).unwrap_err();
            assert!(matches!(err, AggregationError::InvalidSetting(_)), "{err:?}");
            assert_eq!(d, [1.0, 2.0]);
        }
        let mut d = [1.0f32, 2.0];
        gaussian_noise(&mut d, 0.0, &mut SplitMix64::new(1)).unwrap();
        assert_eq!(d, [0.0, 0.0]);
    }

    #[test]
    fn erfc_and_cdf_match_reference_values() {
        // Reference values from Python's math.erfc (correctly rounded to a few ulps).
        let cases = [
            (0.0, 1.0),
            (0.1, 0.887_537_083_981_715),
            (0.5, 0.479_500_122_186_953_5),
            (1.0, 0.157_299_207_050_285_13),
            (-1.0, 1.842_700_792_949_715),
            (3.0, 2.209_049_699_858_544e-5),
            (5.0, 1.537_459_794_428_035e-12),
            (10.0, 2.088_487_583_762_545e-45),
        ];
        for (x, want) in cases {
            let got = erfc(x);
            assert!(((got - want) / want).abs() < 1e-13, "erfc({x}) = {got}, want {want}");
        }
        assert_eq!(erfc(30.0), 0.0);
        assert_eq!(erfc(-30.0), 2.0);
        assert!((normal_cdf(-1.0) - 0.158_655_253_931_457_05).abs() < 1e-15);
        assert!((normal_cdf(1.959_963_984_540_054) - 0.975).abs() < 1e-15);
        assert_eq!(normal_cdf(0.0), 0.5);
    }

    #[test]
    fn normal_quantile_matches_known_values_and_is_symmetric() {
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-6);
        assert!((normal_quantile(0.975) - 1.959_963_984_540_054).abs() < 1e-13);
        assert_eq!(normal_quantile(0.5), 0.0);
        // Lower tail region (p < 0.02425) and a deep tail.
        assert!((normal_quantile(0.01) + 2.326_347_874_040_841).abs() < 1e-12);
        assert!((normal_quantile(1e-10) + 6.361_340_902_404_056).abs() < 1e-9);
        for p in [1e-8, 0.001, 0.02, 0.1, 0.3, 0.45, 0.72] {
            let (lo, hi) = (normal_quantile(p), normal_quantile(1.0 - p));
            assert!(lo < 0.0 || p >= 0.5);
            assert!((lo + hi).abs() < 1e-9 * lo.abs().max(1.0), "p {p}: {lo} vs {hi}");
            // Round trip through the distribution function.
            assert!(((normal_cdf(lo) - p) / p).abs() < 1e-12, "p {p}");
        }
        assert!(normal_quantile(0.0).is_infinite() && normal_quantile(1.0).is_infinite());
        assert!(normal_quantile(1.5).is_nan() && normal_quantile(f64::NAN).is_nan());
    }

    #[test]
    fn alie_z_for_the_papers_setting() {
        // n = 50, f = 12: s = floor(26) - 12 = 14, (n - s)/n = 36/50 = 0.72.
        let z = alie_z(50, 12).unwrap();
        assert!((z - normal_quantile(0.72)).abs() < 1e-15);
        assert!((z - 0.582_841_507_271_216).abs() < 1e-9, "z {z}");
        // n = 10, f = 2: s = 4, Φ⁻¹(0.6).
        assert!((alie_z(10, 2).unwrap() - 0.253_347_103_135_799_7).abs() < 1e-9);
        // f = 0 is allowed: s = n/2 + 1.
        assert!(alie_z(10, 0).unwrap() < 0.0);
    }

    #[test]
    fn alie_z_rejects_bad_counts() {
        for (n, f) in [(0, 0), (5, 5), (5, 7), (10, 6), (1, 0)] {
            let err = alie_z(n, f).unwrap_err();
            assert!(matches!(err, AggregationError::InvalidSetting(_)), "n {n} f {f}: {err:?}");
        }
        // f = n/2 + 1 - 1 is the largest allowed.
        assert!(alie_z(10, 5).is_ok());
    }

    #[test]
    fn alie_on_hand_vectors() {
        let (a, b) = ([1.0f32, 3.0], [3.0f32, 5.0]);
        // mu = [2, 4], sigma = [1, 1].
        assert_eq!(alie(&[&a, &b], 1.5).unwrap(), vec![0.5, 2.5]);
        assert_eq!(alie(&[&a, &b], 0.0).unwrap(), vec![2.0, 4.0]);
        assert_eq!(alie(&[&a, &b], -1.0).unwrap(), vec![3.0, 5.0]);
        // Population std of [0, 0, 3] is sqrt(2), mean 1.
        let m = alie(&[&[0.0], &[0.0], &[3.0]], 2.0).unwrap();
        assert!((f64::from(m[0]) - (1.0 - 2.0 * 2f64.sqrt())).abs() < 1e-6);
        // One delta: sigma = 0, the delta itself.
        assert_eq!(alie(&[&[7.0, -1.0]], 3.0).unwrap(), vec![7.0, -1.0]);
    }

    #[test]
    fn ipm_on_hand_vectors() {
        let m = ipm(&[&[1.0, -2.0, 4.0], &[3.0, 0.0, 0.0]], 0.5).unwrap();
        assert_eq!(m, vec![-1.0, 0.5, -1.0]);
        let m = ipm(&[&[1.0, -2.0, 4.0], &[3.0, 0.0, 0.0]], 100.0).unwrap();
        assert_eq!(m, vec![-200.0, 100.0, -200.0]);
    }

    #[test]
    fn attacks_on_many_deltas_reject_bad_input() {
        let none: [&[f32]; 0] = [];
        assert_eq!(alie(&none, 1.0), Err(AggregationError::Empty));
        assert_eq!(ipm(&none, 1.0), Err(AggregationError::Empty));
        let ragged: [&[f32]; 2] = [&[1.0, 2.0], &[1.0]];
        assert_eq!(alie(&ragged, 1.0), Err(AggregationError::WrongLength { expected: 2, got: 1 }));
        assert_eq!(ipm(&ragged, 1.0), Err(AggregationError::WrongLength { expected: 2, got: 1 }));
        let nan: [&[f32]; 2] = [&[1.0, 2.0], &[1.0, f32::NAN]];
        assert!(matches!(alie(&nan, 1.0), Err(AggregationError::NonFinite { index: 1, .. })));
        assert!(matches!(ipm(&nan, 1.0), Err(AggregationError::NonFinite { index: 1, .. })));
        let ok: [&[f32]; 2] = [&[1.0, 2.0], &[3.0, 2.0]];
        assert!(matches!(alie(&ok, f64::NAN), Err(AggregationError::InvalidSetting(_))));
        assert!(matches!(ipm(&ok, f64::INFINITY), Err(AggregationError::InvalidSetting(_))));
        // Finite settings whose result overflows f32.
        assert!(matches!(alie(&ok, 1e300), Err(AggregationError::InvalidSetting(_))));
        assert!(matches!(ipm(&ok, 1e300), Err(AggregationError::InvalidSetting(_))));
    }
}
