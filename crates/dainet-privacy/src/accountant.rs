//! Rényi-DP (RDP) accountant for the Poisson-subsampled Gaussian mechanism.
//!
//! # What it computes
//!
//! One step of DP-SGD / DP-FedAvg samples every record (or client) independently with
//! probability `q`, sums the clipped contributions and adds Gaussian noise with standard
//! deviation `noise_multiplier × clip_norm`. [`rdp_subsampled_gaussian`] returns, for each Rényi
//! order α, an upper bound on the Rényi divergence of order α of `steps` adaptive compositions
//! of that step, following Mironov, Talwar and Zhang 2019, "Rényi Differential Privacy of the
//! Sampled Gaussian Mechanism" (<https://arxiv.org/abs/1908.10530>), Section 3.3, as
//! TensorFlow Privacy's `rdp_accountant.py` does:
//!
//! - integer orders: the binomial expansion of `A_α` summed in log space;
//! - fractional orders: the two convergent series with `log erfc` weights, summed in log space
//!   until both terms fall below `e^-30`;
//! - special cases: `q = 0` gives 0, `q = 1` gives `α / (2σ²)` exactly (the unsampled Gaussian
//!   mechanism), `σ = 0` (with `q > 0`) gives `+∞`.
//!
//! RDP composes additively, so [`RdpAccountant`] simply sums the per-order vectors of rounds that
//! may use different `q` and `σ`. [`epsilon`] converts an RDP curve to `(ε, δ)`-DP with either
//! - [`Conversion::Classic`]: `ε = min_α RDP(α) + ln(1/δ)/(α − 1)` (Mironov 2017, "Rényi
//!   Differential Privacy", <https://arxiv.org/abs/1702.07476>, Proposition 3), or
//! - [`Conversion::Tight`]: `ε = min_α RDP(α) + ln(1 − 1/α) − (ln δ + ln α)/(α − 1)`, clamped at
//!   0 (Balle, Barthe, Gaboardi, Hsu and Sato 2020, "Hypothesis Testing Interpretations and Renyi
//!   Differential Privacy", AISTATS 2020, <https://arxiv.org/abs/1905.09982>; the same bound
//!   appears as Proposition 12 of <https://arxiv.org/abs/2004.00010>), in the form used by
//!   TensorFlow Privacy's current `_compute_eps`; it is never larger than the classic one.
//!
//! # Guarantees
//!
//! - The reported ε is an upper bound: whenever a sum cannot be evaluated reliably (a value
//!   overflows, a series does not converge within its iteration cap, or an intermediate turns
//!   NaN) the RDP at that order is reported as `+∞`, which can only make ε larger. Rounding
//!   noise that would make an RDP value negative is clamped to 0 (the true value is ≥ 0).
//! - No function in this module panics; invalid inputs are reported as [`AccountantError`].
//! - All arithmetic is `f64` in log space, so nothing overflows for large orders or step counts.
//!   `log erfc` is evaluated with W. J. Cody's rational Chebyshev approximations ("Rational
//!   Chebyshev approximations for the error function", Math. Comp. 23, 1969), whose tail form
//!   `erfc(x) = e^{-x²}/x · (1/√π − R(1/x²))` is evaluated in log space, so it stays accurate
//!   (relative error near machine precision) where `erfc` itself underflows.
//! - Work per order is `O(α)` for integer orders and bounded by the series cap for fractional
//!   ones; orders are limited to [`MAX_ORDER`]. Apart from the returned vectors nothing is
//!   allocated; [`RdpAccountant::compose`] and [`RdpAccountant::epsilon_after`] allocate nothing.

use std::f64::consts::LN_2;

/// The largest Rényi order accepted. The integer-order sum costs `O(α)` work per order, so
/// orders are bounded to keep every call fast; useful orders are far smaller (at most a few
/// hundred in practice).
pub const MAX_ORDER: f64 = 1e6;

/// A fractional-order series that has not dropped below `e^-30` after this many terms (beyond
/// the order itself) is abandoned and its RDP reported as `+∞`.
const MAX_FRAC_TERMS: u64 = 5_000_000;

/// The log-space threshold below which a fractional-order series term ends the series (as in
/// TensorFlow Privacy).
const FRAC_TERM_LOG_CUTOFF: f64 = -30.0;

/// Orders at or below this use the classic bound in [`Conversion::Tight`]: the tight formula is
/// numerically delicate as α → 1 and gains nothing there (TensorFlow Privacy uses the same cut).
const TIGHT_MIN_ORDER: f64 = 1.01;

/// Errors reported by the accountant for invalid inputs.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum AccountantError {
    /// The sampling rate `q` was NaN or outside `[0, 1]`.
    #[error("sampling rate q must be in [0, 1], got {0}")]
    InvalidSamplingRate(f64),
    /// The noise multiplier σ was negative or NaN.
    #[error("noise multiplier must be non-negative and not NaN, got {0}")]
    InvalidNoiseMultiplier(f64),
    /// δ was NaN or outside the open interval `(0, 1)`.
    #[error("delta must be in the open interval (0, 1), got {0}")]
    InvalidDelta(f64),
    /// No orders were given.
    #[error("orders must not be empty")]
    EmptyOrders,
    /// An order was not finite, not greater than 1, or above [`MAX_ORDER`].
    #[error("order at index {index} must be finite, greater than 1 and at most {max}, got {order}", max = MAX_ORDER)]
    InvalidOrder {
        /// Position of the offending order.
        index: usize,
        /// The offending order.
        order: f64,
    },
    /// The orders and RDP slices have different lengths.
    #[error("orders and rdp must have the same length, got {orders} orders and {rdp} rdp values")]
    LengthMismatch {
        /// Number of orders.
        orders: usize,
        /// Number of RDP values.
        rdp: usize,
    },
    /// An RDP value was negative or NaN (`+∞` is allowed).
    #[error("rdp value at index {index} must be non-negative and not NaN, got {value}")]
    InvalidRdp {
        /// Position of the offending value.
        index: usize,
        /// The offending value.
        value: f64,
    },
}

/// How to turn an RDP curve into an `(ε, δ)` guarantee; see the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conversion {
    /// `ε = min_α RDP(α) + ln(1/δ)/(α − 1)` (Mironov 2017, Proposition 3).
    Classic,
    /// `ε = max(0, min_α RDP(α) + ln(1 − 1/α) − (ln δ + ln α)/(α − 1))` (Balle et al. 2020), with
    /// TensorFlow Privacy's KL shortcut (`ε = 0` when `δ² ≥ 1 − e^{−RDP(α)}`). Never larger than
    /// [`Conversion::Classic`] on the same curve.
    Tight,
}

/// The standard orders grid: 1 + x/10 for x in 1..=99, then 12..=63 (TF-Privacy's default).
pub fn default_orders() -> Vec<f64> {
    (1..=99u32).map(|x| 1.0 + f64::from(x) / 10.0).chain((12..=63u32).map(f64::from)).collect()
}

/// RDP of `steps` compositions of the Poisson-subsampled Gaussian mechanism at each order.
///
/// `q` is the sampling probability, `noise_multiplier` the ratio σ of the noise standard
/// deviation to the L2 sensitivity. Returns `steps × RDP_step(α)` for each α in `orders`, in the
/// same order; values may be `+∞` (e.g. for σ = 0), never NaN or negative.
///
/// # Errors
///
/// [`AccountantError::InvalidSamplingRate`] if `q ∉ [0, 1]`,
/// [`AccountantError::InvalidNoiseMultiplier`] if σ is negative or NaN,
/// [`AccountantError::EmptyOrders`] / [`AccountantError::InvalidOrder`] for bad orders.
pub fn rdp_subsampled_gaussian(
    q: f64,
    noise_multiplier: f64,
    steps: u64,
    orders: &[f64],
) -> Result<Vec<f64>, AccountantError> {
    validate_mechanism(q, noise_multiplier)?;
    validate_orders(orders)?;
    Ok(orders.iter().map(|&alpha| rdp_steps(q, noise_multiplier, steps, alpha)).collect())
}

/// Converts an RDP curve to `(ε, δ)`-DP; returns `(ε, the order that attained it)`.
///
/// Ties go to the first order. If every order gives `+∞`, the result is `(+∞, orders[0])`.
///
/// # Errors
///
/// [`AccountantError::InvalidDelta`] if `δ ∉ (0, 1)`, [`AccountantError::LengthMismatch`] if the
/// slices differ in length, [`AccountantError::EmptyOrders`] / [`AccountantError::InvalidOrder`]
/// for bad orders, [`AccountantError::InvalidRdp`] for negative or NaN RDP values.
pub fn epsilon(orders: &[f64], rdp: &[f64], delta: f64, conversion: Conversion) -> Result<(f64, f64), AccountantError> {
    validate_delta(delta)?;
    if orders.len() != rdp.len() {
        return Err(AccountantError::LengthMismatch { orders: orders.len(), rdp: rdp.len() });
    }
    validate_orders(orders)?;
    if let Some((index, &value)) = rdp.iter().enumerate().find(|(_, r)| r.is_nan() || **r < 0.0) {
        return Err(AccountantError::InvalidRdp { index, value });
    }
    Ok(best_epsilon(orders, |i| rdp[i], delta, conversion))
}

/// Accumulates RDP over rounds that may use different q and σ.
///
/// RDP composes by addition, order by order, so the accountant keeps one running total per order.
#[derive(Clone, Debug)]
pub struct RdpAccountant {
    orders: Vec<f64>,
    rdp: Vec<f64>,
}

impl RdpAccountant {
    /// A fresh accountant (zero RDP) tracking the given orders.
    ///
    /// # Errors
    ///
    /// [`AccountantError::EmptyOrders`] / [`AccountantError::InvalidOrder`] unless every order is
    /// finite, greater than 1 and at most [`MAX_ORDER`].
    pub fn new(orders: Vec<f64>) -> Result<Self, AccountantError> {
        validate_orders(&orders)?;
        let rdp = vec![0.0; orders.len()];
        Ok(Self { orders, rdp })
    }

    /// Records `steps` rounds of the subsampled Gaussian mechanism with sampling rate `q` and
    /// noise multiplier σ. On error nothing is recorded.
    ///
    /// # Errors
    ///
    /// [`AccountantError::InvalidSamplingRate`] / [`AccountantError::InvalidNoiseMultiplier`] for
    /// invalid `q` or σ.
    pub fn compose(&mut self, q: f64, noise_multiplier: f64, steps: u64) -> Result<(), AccountantError> {
        validate_mechanism(q, noise_multiplier)?;
        for (total, &alpha) in self.rdp.iter_mut().zip(&self.orders) {
            *total += rdp_steps(q, noise_multiplier, steps, alpha);
        }
        Ok(())
    }

    /// The ε spent so far at the given δ.
    ///
    /// # Errors
    ///
    /// [`AccountantError::InvalidDelta`] if `δ ∉ (0, 1)`.
    pub fn epsilon(&self, delta: f64, conversion: Conversion) -> Result<f64, AccountantError> {
        validate_delta(delta)?;
        Ok(best_epsilon(&self.orders, |i| self.rdp[i], delta, conversion).0)
    }

    /// ε if one more composition (q, σ, steps) were made, without making it (for budget checks).
    ///
    /// # Errors
    ///
    /// [`AccountantError::InvalidSamplingRate`], [`AccountantError::InvalidNoiseMultiplier`] or
    /// [`AccountantError::InvalidDelta`] for invalid arguments.
    pub fn epsilon_after(
        &self,
        q: f64,
        noise_multiplier: f64,
        steps: u64,
        delta: f64,
        conversion: Conversion,
    ) -> Result<f64, AccountantError> {
        validate_mechanism(q, noise_multiplier)?;
        validate_delta(delta)?;
        let total = |i: usize| self.rdp[i] + rdp_steps(q, noise_multiplier, steps, self.orders[i]);
        Ok(best_epsilon(&self.orders, total, delta, conversion).0)
    }

    /// The accumulated RDP, one value per order (same indexing as [`RdpAccountant::orders`]).
    pub fn rdp(&self) -> &[f64] {
        &self.rdp
    }

    /// The tracked orders.
    pub fn orders(&self) -> &[f64] {
        &self.orders
    }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

fn validate_mechanism(q: f64, noise_multiplier: f64) -> Result<(), AccountantError> {
    if !(0.0..=1.0).contains(&q) {
        return Err(AccountantError::InvalidSamplingRate(q));
    }
    if noise_multiplier.is_nan() || noise_multiplier < 0.0 {
        return Err(AccountantError::InvalidNoiseMultiplier(noise_multiplier));
    }
    Ok(())
}

fn validate_delta(delta: f64) -> Result<(), AccountantError> {
    if delta > 0.0 && delta < 1.0 {
        Ok(())
    } else {
        Err(AccountantError::InvalidDelta(delta))
    }
}

fn validate_orders(orders: &[f64]) -> Result<(), AccountantError> {
    if orders.is_empty() {
        return Err(AccountantError::EmptyOrders);
    }
    match orders.iter().enumerate().find(|(_, &a)| !(a > 1.0 && a <= MAX_ORDER)) {
        Some((index, &order)) => Err(AccountantError::InvalidOrder { index, order }),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// RDP → (ε, δ)
// ---------------------------------------------------------------------------------------------

/// `(ε, order)` minimising the per-order bound; `rdp_at(i)` is the (valid, ≥ 0) RDP at
/// `orders[i]`. Inputs are assumed validated; a NaN candidate (impossible for valid inputs) is
/// skipped.
fn best_epsilon(orders: &[f64], rdp_at: impl Fn(usize) -> f64, delta: f64, conversion: Conversion) -> (f64, f64) {
    let log_delta = delta.ln();
    let mut best = (f64::INFINITY, orders.first().copied().unwrap_or(f64::NAN));
    for (i, &alpha) in orders.iter().enumerate() {
        let r = rdp_at(i);
        let classic = r - log_delta / (alpha - 1.0);
        let eps = match conversion {
            Conversion::Classic => classic,
            Conversion::Tight => {
                if delta * delta + (-r).exp_m1() >= 0.0 {
                    // δ ≥ sqrt(1 − e^{−KL}) bounds the total variation distance: ε = 0.
                    0.0
                } else if alpha > TIGHT_MIN_ORDER {
                    let tight = r + (-1.0 / alpha).ln_1p() - (log_delta + alpha.ln()) / (alpha - 1.0);
                    tight.min(classic)
                } else {
                    classic
                }
            }
        };
        if eps < best.0 {
            best = (eps, alpha);
        }
    }
    if conversion == Conversion::Tight {
        best.0 = best.0.max(0.0);
    }
    best
}

// ---------------------------------------------------------------------------------------------
// RDP of the sampled Gaussian mechanism (Mironov, Talwar and Zhang 2019)
// ---------------------------------------------------------------------------------------------

/// `steps × RDP_step(α)`, never NaN or negative. Inputs are assumed validated.
fn rdp_steps(q: f64, sigma: f64, steps: u64, alpha: f64) -> f64 {
    if steps == 0 {
        return 0.0;
    }
    let per_step = rdp_step(q, sigma, alpha);
    if per_step == 0.0 {
        0.0
    } else {
        per_step * steps as f64
    }
}

/// RDP of one step at order `alpha`; never NaN or negative (unreliable values become `+∞`).
fn rdp_step(q: f64, sigma: f64, alpha: f64) -> f64 {
    if q == 0.0 || sigma == f64::INFINITY {
        return 0.0;
    }
    if q == 1.0 {
        return alpha / (2.0 * sigma * sigma);
    }
    if sigma * sigma == 0.0 {
        return f64::INFINITY;
    }
    sanitize_rdp(log_a(q, sigma, alpha) / (alpha - 1.0))
}

/// Maps NaN (an unreliable computation) to `+∞` and clamps rounding noise below 0 to 0.
fn sanitize_rdp(r: f64) -> f64 {
    if r.is_nan() {
        f64::INFINITY
    } else {
        r.max(0.0)
    }
}

/// `ln A_α` for `0 < q < 1`, `0 < σ < ∞`, choosing the integer or fractional formula.
fn log_a(q: f64, sigma: f64, alpha: f64) -> f64 {
    if alpha.fract() == 0.0 {
        // Orders are validated to be at most MAX_ORDER, so the conversion is exact.
        log_a_int(q, sigma, alpha as u64)
    } else {
        log_a_frac(q, sigma, alpha)
    }
}

/// `ln A_α` for integer α (TF-Privacy's `_compute_log_a_int`):
/// `A_α = Σ_{i=0}^{α} C(α, i) q^i (1 − q)^{α−i} exp((i² − i) / (2σ²))`.
fn log_a_int(q: f64, sigma: f64, alpha: u64) -> f64 {
    let log_q = q.ln();
    let log_1mq = (-q).ln_1p();
    let two_sigma_sq = 2.0 * sigma * sigma;
    let a = alpha as f64;
    let mut log_a = f64::NEG_INFINITY;
    // ln C(α, i), updated incrementally: C(α, i + 1) = C(α, i) · (α − i) / (i + 1).
    let mut log_coef = 0.0;
    for i in 0..=alpha {
        let fi = i as f64;
        if i > 0 {
            log_coef += ((a - fi + 1.0) / fi).ln();
        }
        let s = log_coef + fi * log_q + (a - fi) * log_1mq + (fi * fi - fi) / two_sigma_sq;
        log_a = log_add(log_a, s);
    }
    log_a
}

/// `ln A_α` for fractional α (TF-Privacy's `_compute_log_a_frac`): the two series of Mironov,
/// Talwar and Zhang (2019), Section 3.3, with `z₀ = σ² ln(1/q − 1) + 1/2`, summed until both
/// terms drop below `e^-30`. Also valid for integer α (then the coefficients vanish past α).
///
/// Returns NaN (mapped to `+∞` by the caller) if a partial sum would turn negative, a term is NaN,
/// or the series does not converge within [`MAX_FRAC_TERMS`] terms past α; `+∞` if a term
/// overflows.
fn log_a_frac(q: f64, sigma: f64, alpha: f64) -> f64 {
    let log_q = q.ln();
    let log_1mq = (-q).ln_1p();
    let sigma_sq = sigma * sigma;
    let two_sigma_sq = 2.0 * sigma_sq;
    let sqrt2_sigma = std::f64::consts::SQRT_2 * sigma;
    let z0 = sigma_sq * (log_1mq - log_q) + 0.5;
    let max_terms = alpha.ceil() as u64 + MAX_FRAC_TERMS;

    let mut log_a0 = f64::NEG_INFINITY;
    let mut log_a1 = f64::NEG_INFINITY;
    // ln |C(α, i)| and the sign of C(α, i), updated incrementally.
    let mut log_coef = 0.0;
    let mut coef_positive = true;
    let mut i: u64 = 0;
    loop {
        let fi = i as f64;
        if i > 0 {
            let factor = (alpha - fi + 1.0) / fi;
            if factor < 0.0 {
                coef_positive = !coef_positive;
            }
            log_coef += factor.abs().ln();
        }
        let j = alpha - fi;
        let log_t0 = log_coef + fi * log_q + j * log_1mq;
        let log_t1 = log_coef + j * log_q + fi * log_1mq;
        let log_e0 = -LN_2 + log_erfc((fi - z0) / sqrt2_sigma);
        let log_e1 = -LN_2 + log_erfc((z0 - j) / sqrt2_sigma);
        let log_s0 = log_t0 + (fi * fi - fi) / two_sigma_sq + log_e0;
        let log_s1 = log_t1 + (j * j - j) / two_sigma_sq + log_e1;
        if log_s0.is_nan() || log_s1.is_nan() {
            return f64::NAN;
        }
        if log_s0 == f64::INFINITY || log_s1 == f64::INFINITY {
            return f64::INFINITY;
        }
        if coef_positive {
            log_a0 = log_add(log_a0, log_s0);
            log_a1 = log_add(log_a1, log_s1);
        } else {
            log_a0 = log_sub(log_a0, log_s0);
            log_a1 = log_sub(log_a1, log_s1);
        }
        if log_a0.is_nan() || log_a1.is_nan() {
            return f64::NAN;
        }
        if log_s0.max(log_s1) < FRAC_TERM_LOG_CUTOFF {
            break;
        }
        i += 1;
        if i > max_terms {
            return f64::NAN;
        }
    }
    log_add(log_a0, log_a1)
}

/// `ln(e^x + e^y)` without overflow (TF-Privacy's `_log_add`).
fn log_add(logx: f64, logy: f64) -> f64 {
    let (a, b) = if logx < logy { (logx, logy) } else { (logy, logx) };
    if a == f64::NEG_INFINITY || b == f64::INFINITY {
        return b;
    }
    (a - b).exp().ln_1p() + b
}

/// `ln(e^x − e^y)` for `x ≥ y` (TF-Privacy's `_log_sub`); NaN if `x < y` (a negative result).
fn log_sub(logx: f64, logy: f64) -> f64 {
    if logx < logy || logx.is_nan() || logy.is_nan() {
        return f64::NAN;
    }
    if logy == f64::NEG_INFINITY {
        return logx;
    }
    if logx == logy {
        return f64::NEG_INFINITY;
    }
    let d = logx - logy;
    if d < LN_2 {
        // ln(e^d − 1) via expm1, accurate for small d.
        d.exp_m1().ln() + logy
    } else {
        // ln(1 − e^{−d}), accurate (and overflow-free) for large d.
        (-(-d).exp()).ln_1p() + logx
    }
}

use dainet_core::special::log_erfc;

#[cfg(test)]
// Reference values are written with all the digits they were computed to.
#[allow(clippy::excessive_precision)]
mod tests {
    use super::*;
    use dainet_core::special::erfc;
    use std::f64::consts::PI;

    const MNIST_Q: f64 = 256.0 / 60000.0;

    fn rel_err(got: f64, want: f64) -> f64 {
        ((got - want) / want).abs()
    }

    fn classic_eps(sigma: f64, steps: u64) -> (f64, f64) {
        let orders = default_orders();
        let rdp = rdp_subsampled_gaussian(MNIST_Q, sigma, steps, &orders).unwrap();
        epsilon(&orders, &rdp, 1e-5, Conversion::Classic).unwrap()
    }

    #[test]
    fn default_orders_grid() {
        let orders = default_orders();
        assert_eq!(orders.len(), 99 + 52);
        assert_eq!(orders[0], 1.1);
        assert_eq!(orders[9], 2.0);
        assert_eq!(orders[98], 10.9);
        assert_eq!(orders[99], 12.0);
        assert_eq!(*orders.last().unwrap(), 63.0);
        assert!(orders.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn mnist_sigma_1_12_steps_14062() {
        let (eps, order) = classic_eps(1.12, 14_062);
        println!("sigma 1.12, 14062 steps: eps = {eps:?} at order {order}");
        assert!((eps - 2.92).abs() <= 0.01, "eps = {eps}");
    }

    #[test]
    fn mnist_sigma_0_6_steps_7031() {
        let (eps, order) = classic_eps(0.6, 7_031);
        println!("sigma 0.6, 7031 steps: eps = {eps:?} at order {order}");
        assert!((eps - 9.75).abs() <= 0.01, "eps = {eps}");
    }

    #[test]
    fn mnist_sigma_1_2_steps_2343() {
        let (eps, order) = classic_eps(1.2, 2_343);
        println!("sigma 1.2, 2343 steps: eps = {eps:?} at order {order}");
        assert!((eps - 1.20).abs() <= 0.01, "eps = {eps}");
    }

    #[test]
    fn matches_reference_values() {
        // From an independent Python port of TF-Privacy's rdp_accountant.py (binomials via
        // lgamma, erfc from the C library), q = 256/60000, σ = 1.12, one step.
        let cases = [
            (1.5, 1.6587866006251938e-05),
            (2.0, 2.2196515455940337e-05),
            (2.5, 2.7846157669159183e-05),
            (8.3, 9.669719007965007e-05),
            (20.0, 2.2278748760310187),
            (63.0, 19.56666986876594),
        ];
        for (alpha, want) in cases {
            let got = rdp_subsampled_gaussian(MNIST_Q, 1.12, 1, &[alpha]).unwrap()[0];
            assert!(rel_err(got, want) < 1e-9, "alpha {alpha}: {got} vs {want}");
        }
    }

    #[test]
    fn order_two_closed_form() {
        // A_2 = (1 − q)² + 2q(1 − q) + q² e^{1/σ²} = 1 + q²(e^{1/σ²} − 1), on both paths.
        for q in [1e-5_f64, MNIST_Q, 0.1, 0.5, 0.99] {
            for sigma in [0.7_f64, 1.0, 1.12, 3.0] {
                let want = (q * q * (1.0 / (sigma * sigma)).exp_m1()).ln_1p();
                let int = rdp_step(q, sigma, 2.0);
                let frac = sanitize_rdp(log_a_frac(q, sigma, 2.0));
                assert!(rel_err(int, want) < 1e-9, "q {q}, sigma {sigma}: int {int} vs {want}");
                assert!(rel_err(frac, want) < 1e-6, "q {q}, sigma {sigma}: frac {frac} vs {want}");
            }
        }
    }

    #[test]
    fn q_one_is_unsampled_gaussian() {
        let orders = [1.1, 1.5, 2.0, 2.5, 3.0, 7.0, 10.9, 32.0, 63.0, 1000.0, 1000.5];
        for sigma in [0.3, 1.0, 1.12, 5.0] {
            let rdp = rdp_subsampled_gaussian(1.0, sigma, 1, &orders).unwrap();
            for (&alpha, &r) in orders.iter().zip(&rdp) {
                let want = alpha / (2.0 * sigma * sigma);
                assert!(rel_err(r, want) <= 1e-12, "alpha {alpha}, sigma {sigma}: {r} vs {want}");
            }
            let rdp = rdp_subsampled_gaussian(1.0, sigma, 10, &orders).unwrap();
            for (&alpha, &r) in orders.iter().zip(&rdp) {
                let want = 10.0 * alpha / (2.0 * sigma * sigma);
                assert!(rel_err(r, want) <= 1e-12);
            }
        }
    }

    #[test]
    fn special_cases() {
        let orders = default_orders();
        assert!(rdp_subsampled_gaussian(0.0, 1.0, 100, &orders).unwrap().iter().all(|&r| r == 0.0));
        assert!(rdp_subsampled_gaussian(0.0, 0.0, 100, &orders).unwrap().iter().all(|&r| r == 0.0));
        assert!(rdp_subsampled_gaussian(0.01, 0.0, 1, &orders).unwrap().iter().all(|&r| r == f64::INFINITY));
        assert!(rdp_subsampled_gaussian(0.01, 1.0, 0, &orders).unwrap().iter().all(|&r| r == 0.0));
        assert!(rdp_subsampled_gaussian(0.01, 0.0, 0, &orders).unwrap().iter().all(|&r| r == 0.0));
        assert!(rdp_subsampled_gaussian(0.01, f64::INFINITY, 5, &orders).unwrap().iter().all(|&r| r == 0.0));
        // σ = 0 gives ε = ∞ under both conversions.
        let rdp = rdp_subsampled_gaussian(0.01, 0.0, 1, &orders).unwrap();
        assert_eq!(epsilon(&orders, &rdp, 1e-5, Conversion::Classic).unwrap().0, f64::INFINITY);
        assert_eq!(epsilon(&orders, &rdp, 1e-5, Conversion::Tight).unwrap().0, f64::INFINITY);
    }

    #[test]
    fn epsilon_falls_toward_zero_as_q_falls() {
        let orders = default_orders();
        for conversion in [Conversion::Classic, Conversion::Tight] {
            let eps: Vec<f64> = [0.1, 0.01, 0.001, 1e-5]
                .iter()
                .map(|&q| {
                    let rdp = rdp_subsampled_gaussian(q, 1.0, 1, &orders).unwrap();
                    epsilon(&orders, &rdp, 1e-5, conversion).unwrap().0
                })
                .collect();
            assert!(eps.windows(2).all(|w| w[1] < w[0]), "{conversion:?}: {eps:?}");
            if conversion == Conversion::Tight {
                assert!(eps[3] < 0.01, "{eps:?}");
            }
        }
        // (The classic bound on a fixed grid cannot go below ln(1/δ)/(α_max − 1), hence the tight
        // conversion for the last check.)
    }

    #[test]
    fn tight_never_exceeds_classic() {
        let orders = default_orders();
        for (q, sigma, steps) in
            [(MNIST_Q, 1.12, 14_062), (MNIST_Q, 0.6, 7_031), (0.1, 0.8, 100), (1.0, 2.0, 1), (0.5, 3.0, 1000)]
        {
            let rdp = rdp_subsampled_gaussian(q, sigma, steps, &orders).unwrap();
            for delta in [1e-3, 1e-5, 1e-9] {
                let (classic, _) = epsilon(&orders, &rdp, delta, Conversion::Classic).unwrap();
                let (tight, _) = epsilon(&orders, &rdp, delta, Conversion::Tight).unwrap();
                assert!(tight <= classic, "q {q}, sigma {sigma}: {tight} > {classic}");
                assert!(tight >= 0.0);
            }
        }
        // Also for orders at or below the tight cut-off.
        let orders = [1.001, 1.005];
        let rdp = [1e-4, 1e-4];
        let (classic, _) = epsilon(&orders, &rdp, 1e-5, Conversion::Classic).unwrap();
        let (tight, _) = epsilon(&orders, &rdp, 1e-5, Conversion::Tight).unwrap();
        assert!(tight <= classic);
    }

    #[test]
    fn rdp_is_monotone_in_order() {
        let mut orders = default_orders();
        orders.extend([64.5, 100.0, 128.0, 200.25, 256.0]);
        for (q, sigma) in [(MNIST_Q, 1.12), (MNIST_Q, 0.6), (0.01, 2.0), (0.1, 1.0), (0.5, 0.7), (1e-4, 4.0)] {
            let rdp = rdp_subsampled_gaussian(q, sigma, 1, &orders).unwrap();
            for k in 1..rdp.len() {
                assert!(
                    rdp[k] >= rdp[k - 1] * (1.0 - 1e-9),
                    "q {q}, sigma {sigma}: rdp({}) = {} < rdp({}) = {}",
                    orders[k],
                    rdp[k],
                    orders[k - 1],
                    rdp[k - 1]
                );
            }
        }
    }

    #[test]
    fn frac_and_int_paths_agree() {
        for (q, sigma) in [(MNIST_Q, 1.12), (MNIST_Q, 0.6), (0.01, 2.0), (0.1, 1.0), (0.5, 0.7), (0.9, 3.0)] {
            for alpha in [2u64, 3, 5, 10, 32, 63] {
                let a = alpha as f64;
                let int = log_a_int(q, sigma, alpha);
                let frac = log_a_frac(q, sigma, a);
                assert!(rel_err(frac, int) < 1e-9, "q {q}, sigma {sigma}, alpha {alpha}: {frac} vs {int}");
                // Continuity across the integer: a nearby fractional order is close.
                let near = rdp_step(q, sigma, a + 1e-9);
                let at = rdp_step(q, sigma, a);
                assert!(rel_err(near, at) < 1e-6, "alpha {alpha}: {near} vs {at}");
            }
        }
    }

    #[test]
    fn erfc_spot_values() {
        // Reference values computed to 30+ digits (Taylor series of erf in high precision).
        let cases = [
            (0.0, 1.0),
            (0.1, 8.87537083981715158e-01),
            (0.3, 6.71373240540872551e-01),
            (0.46875, 5.07386526782061975e-01),
            (0.5, 0.4795001221869535),
            (0.75, 2.88844366346484860e-01),
            (1.0, 1.57299207050285134e-01),
            (2.0, 4.67773498104726623e-03),
            (3.0, 2.209049699858544e-05),
            (4.0, 1.54172579002800200e-08),
            (4.5, 1.96616044154288758e-10),
            (5.0, 1.53745979442803494e-12),
            (6.0, 2.15197367124989128e-17),
            (10.0, 2.088487583762545e-45),
            (-0.2, 1.22270258921047836e+00),
            (-0.46875, 1.49261347321793791e+00),
            (-1.0, 1.84270079294971478e+00),
            (-3.0, 1.99997790950300147e+00),
        ];
        for (x, want) in cases {
            let got = erfc(x);
            assert!(rel_err(got, want) < 1e-13, "erfc({x}) = {got:e}, want {want:e}");
        }
        assert_eq!(erfc(f64::INFINITY), 0.0);
        assert_eq!(erfc(f64::NEG_INFINITY), 2.0);
        assert!(erfc(f64::NAN).is_nan());
    }

    #[test]
    fn log_erfc_spot_values() {
        let cases = [
            (-3.0, 6.93136135250446817e-01),
            (-0.46875, 4.00528592351307833e-01),
            (0.1, -1.19304973737395598e-01),
            (0.46875, -6.78482185614396105e-01),
            (0.5, -7.35011129837084387e-01),
            (1.0, -1.84960550993324824e+00),
            (3.0, -1.07203630419811127e+01),
            (4.0, -1.79877783121030070e+01),
            (4.5, -2.23497683034359405e+01),
            (5.0, -2.72008895455374358e+01),
            (6.0, -3.83775611732233912e+01),
            // ln(2.088487583762545e-45)
            (10.0, -102.87988902484489),
            (20.0, -4.03569343334104246e+02),
            (26.0, -6.79831199763194263e+02),
            (30.0, -9.03974117110643874e+02),
            (100.0, -1.00051775851226648e+04),
            (1000.0, -1.00000748012072186e+06),
            (1e5, -1.00000000120852909e+10),
        ];
        for (x, want) in cases {
            let got = log_erfc(x);
            assert!(rel_err(got, want) < 1e-13, "log_erfc({x}) = {got:e}, want {want:e}");
        }
        assert_eq!(log_erfc(f64::INFINITY), f64::NEG_INFINITY);
        assert_eq!(log_erfc(1e200), f64::NEG_INFINITY);
        assert!(rel_err(log_erfc(f64::NEG_INFINITY), LN_2) < 1e-15);
    }

    /// `ln erfc(x)` from the asymptotic expansion, summed to its smallest term (accurate to far
    /// below f64 precision for x ≥ 8).
    fn log_erfc_asymptotic(x: f64) -> f64 {
        let mut sum = 1.0;
        let mut term: f64 = 1.0;
        for n in 1..200 {
            let next = -term * (2 * n - 1) as f64 / (2.0 * x * x);
            if next.abs() >= term.abs() || next.abs() < 1e-18 {
                break;
            }
            term = next;
            sum += term;
        }
        -x * x - x.ln() - 0.5 * PI.ln() + sum.ln()
    }

    #[test]
    fn log_erfc_matches_erfc_and_asymptotics() {
        // Where erfc is a normal number, ln(erfc) and log_erfc agree.
        let mut x = -5.0;
        while x < 26.0 {
            let direct = erfc(x).ln();
            let log = log_erfc(x);
            assert!((direct - log).abs() <= 1e-13 * direct.abs().max(1.0), "x {x}: {direct} vs {log}");
            x += 0.0137;
        }
        // Far tail: the asymptotic expansion.
        let mut x = 8.0;
        while x < 1e6 {
            let want = log_erfc_asymptotic(x);
            assert!(rel_err(log_erfc(x), want) < 1e-14, "x {x}: {} vs {want}", log_erfc(x));
            x *= 1.07;
        }
    }

    #[test]
    fn log_add_sub() {
        let (a, b) = (3.0_f64.ln(), 2.0_f64.ln());
        assert!((log_add(a, b) - 5.0_f64.ln()).abs() < 1e-15);
        assert!((log_sub(a, b) - 0.0).abs() < 1e-15);
        assert_eq!(log_add(f64::NEG_INFINITY, 1.5), 1.5);
        assert_eq!(log_add(1.5, f64::NEG_INFINITY), 1.5);
        assert_eq!(log_add(f64::INFINITY, f64::INFINITY), f64::INFINITY);
        assert_eq!(log_sub(1.5, f64::NEG_INFINITY), 1.5);
        assert_eq!(log_sub(1.5, 1.5), f64::NEG_INFINITY);
        assert!(log_sub(1.0, 2.0).is_nan());
        // Large gaps do not overflow; tiny gaps keep their precision.
        assert_eq!(log_sub(1000.0, 0.0), 1000.0);
        assert!((log_sub(1e-10, 0.0) - (1e-10_f64).exp_m1().ln()).abs() < 1e-12);
        assert!((log_add(800.0, 800.0) - (800.0 + LN_2)).abs() < 1e-12);
    }

    #[test]
    fn accountant_composes_additively() {
        let orders = default_orders();
        let mut acc = RdpAccountant::new(orders.clone()).unwrap();
        assert!(acc.rdp().iter().all(|&r| r == 0.0));
        assert_eq!(acc.orders(), &orders[..]);

        let predicted = acc.epsilon_after(MNIST_Q, 1.12, 14_062, 1e-5, Conversion::Classic).unwrap();
        acc.compose(MNIST_Q, 1.12, 10_000).unwrap();
        acc.compose(MNIST_Q, 1.12, 4_062).unwrap();
        let eps = acc.epsilon(1e-5, Conversion::Classic).unwrap();
        let (direct, _) = classic_eps(1.12, 14_062);
        assert!(rel_err(eps, direct) < 1e-12, "{eps} vs {direct}");
        assert!(rel_err(predicted, direct) < 1e-12, "{predicted} vs {direct}");

        // Mixed rounds: the total is the sum of the parts, and epsilon_after does not mutate.
        let before = acc.rdp().to_vec();
        let after = acc.epsilon_after(0.01, 0.8, 50, 1e-5, Conversion::Tight).unwrap();
        assert_eq!(acc.rdp(), &before[..]);
        acc.compose(0.01, 0.8, 50).unwrap();
        assert_eq!(acc.epsilon(1e-5, Conversion::Tight).unwrap(), after);
        let extra = rdp_subsampled_gaussian(0.01, 0.8, 50, &orders).unwrap();
        for ((&total, &b), &e) in acc.rdp().iter().zip(&before).zip(&extra) {
            assert!(rel_err(total, b + e) < 1e-15);
        }
        assert!(acc.epsilon(1e-5, Conversion::Tight).unwrap() <= acc.epsilon(1e-5, Conversion::Classic).unwrap());

        // A failed composition records nothing.
        let snapshot = acc.rdp().to_vec();
        assert!(acc.compose(1.5, 1.0, 1).is_err());
        assert!(acc.compose(0.5, -1.0, 1).is_err());
        assert_eq!(acc.rdp(), &snapshot[..]);
    }

    #[test]
    fn epsilon_reports_best_order() {
        let orders = [2.0, 4.0, 8.0];
        let rdp = [0.5, 0.1, 3.0];
        let (eps, order) = epsilon(&orders, &rdp, 1e-5, Conversion::Classic).unwrap();
        assert_eq!(order, 4.0);
        assert!((eps - (0.1 + (1e5_f64).ln() / 3.0)).abs() < 1e-12);
        let (eps, order) = epsilon(&orders, &[f64::INFINITY; 3], 1e-5, Conversion::Classic).unwrap();
        assert_eq!((eps, order), (f64::INFINITY, 2.0));
        // Tiny RDP: the KL shortcut gives exactly zero under the tight conversion.
        let (eps, _) = epsilon(&orders, &[1e-12; 3], 1e-5, Conversion::Tight).unwrap();
        assert_eq!(eps, 0.0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let orders = default_orders();
        for q in [-0.1, 1.1, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(matches!(
                rdp_subsampled_gaussian(q, 1.0, 1, &orders),
                Err(AccountantError::InvalidSamplingRate(_))
            ));
        }
        for sigma in [-1.0, f64::NAN, f64::NEG_INFINITY, -0.0 - 1e-300] {
            assert!(matches!(
                rdp_subsampled_gaussian(0.1, sigma, 1, &orders),
                Err(AccountantError::InvalidNoiseMultiplier(_))
            ));
        }
        assert_eq!(rdp_subsampled_gaussian(0.1, 1.0, 1, &[]), Err(AccountantError::EmptyOrders));
        assert_eq!(
            rdp_subsampled_gaussian(0.1, 1.0, 1, &[2.0, 1.0]),
            Err(AccountantError::InvalidOrder { index: 1, order: 1.0 })
        );
        for bad in [0.5, -3.0, f64::INFINITY, 2e6] {
            assert_eq!(
                RdpAccountant::new(vec![1.5, bad]).unwrap_err(),
                AccountantError::InvalidOrder { index: 1, order: bad }
            );
        }
        assert!(matches!(RdpAccountant::new(vec![f64::NAN]), Err(AccountantError::InvalidOrder { index: 0, .. })));
        assert_eq!(RdpAccountant::new(vec![]).unwrap_err(), AccountantError::EmptyOrders);

        let rdp = vec![0.1; orders.len()];
        for delta in [0.0, 1.0, -1e-5, 1.5, f64::NAN] {
            assert!(matches!(
                epsilon(&orders, &rdp, delta, Conversion::Classic),
                Err(AccountantError::InvalidDelta(_))
            ));
        }
        assert_eq!(
            epsilon(&orders, &rdp[1..], 1e-5, Conversion::Tight),
            Err(AccountantError::LengthMismatch { orders: orders.len(), rdp: orders.len() - 1 })
        );
        let mut bad_rdp = rdp.clone();
        bad_rdp[3] = -1e-3;
        assert_eq!(
            epsilon(&orders, &bad_rdp, 1e-5, Conversion::Classic),
            Err(AccountantError::InvalidRdp { index: 3, value: -1e-3 })
        );
        bad_rdp[3] = f64::NAN;
        assert!(matches!(
            epsilon(&orders, &bad_rdp, 1e-5, Conversion::Classic),
            Err(AccountantError::InvalidRdp { index: 3, .. })
        ));
        assert_eq!(epsilon(&[], &[], 1e-5, Conversion::Classic), Err(AccountantError::EmptyOrders));

        let acc = RdpAccountant::new(orders).unwrap();
        assert!(matches!(acc.epsilon(0.0, Conversion::Classic), Err(AccountantError::InvalidDelta(_))));
        assert!(matches!(
            acc.epsilon_after(0.1, 1.0, 1, 2.0, Conversion::Classic),
            Err(AccountantError::InvalidDelta(_))
        ));
        assert!(matches!(
            acc.epsilon_after(2.0, 1.0, 1, 1e-5, Conversion::Classic),
            Err(AccountantError::InvalidSamplingRate(_))
        ));
        // Messages are lowercase and say what was wrong.
        assert_eq!(AccountantError::InvalidDelta(2.0).to_string(), "delta must be in the open interval (0, 1), got 2");
    }

    #[test]
    fn extreme_inputs_do_not_panic_or_nan() {
        let mut orders = default_orders();
        orders.extend([1.000001, 1.0001, 500.0, 777.7, 5000.0]);
        for q in [0.0, 1e-300, 5e-324, 1e-12, 1e-3, 0.5, 1.0 - 1e-12, 1.0 - f64::EPSILON, 1.0] {
            for sigma in [0.0, 1e-300, 1e-8, 0.05, 0.5, 1.0, 10.0, 1e6, 1e154, f64::MAX, f64::INFINITY] {
                for steps in [0, 1, u64::MAX] {
                    let rdp = rdp_subsampled_gaussian(q, sigma, steps, &orders).unwrap();
                    assert!(rdp.iter().all(|&r| r >= 0.0), "q {q}, sigma {sigma}, steps {steps}: {rdp:?}");
                    for conversion in [Conversion::Classic, Conversion::Tight] {
                        let (eps, order) = epsilon(&orders, &rdp, 1e-5, conversion).unwrap();
                        assert!(eps >= 0.0 && orders.contains(&order));
                    }
                }
            }
        }
    }
}
