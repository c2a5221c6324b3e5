//! Special functions of numerical statistics, shared by the attacks (the normal quantile of
//! ALIE) and the privacy accountant (log erfc): `erfc` by W. J. Cody's rational Chebyshev
//! approximations (relative error below 1e-15 wherever the result is a normal f64),
//! `ln erfc` accurate where `erfc` underflows, `Φ` and `Φ⁻¹`.

// ---------------------------------------------------------------------------------------------
// erfc and ln(erfc) (W. J. Cody, Math. Comp. 23, 1969; Netlib SPECFUN `calerf`)
// ---------------------------------------------------------------------------------------------

// Cody's coefficients are given to more digits than an f64 holds; the nearest f64 is intended.
#[allow(clippy::excessive_precision)]
mod cody {
    /// `1/√π`.
    pub(super) const SQRPI: f64 = 5.6418958354775628695e-1;
    /// Below this |x|, erf is approximated directly.
    pub(super) const THRESH: f64 = 0.46875;
    /// erf on `[0, 0.46875]`.
    pub(super) const A: [f64; 5] = [
        3.16112374387056560e00,
        1.13864154151050156e02,
        3.77485237685302021e02,
        3.20937758913846947e03,
        1.85777706184603153e-1,
    ];
    pub(super) const B: [f64; 4] =
        [2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03, 2.84423683343917062e03];
    /// `erfc(x)·e^{x²}` on `[0.46875, 4]`.
    pub(super) const C: [f64; 9] = [
        5.64188496988670089e-1,
        8.88314979438837594e00,
        6.61191906371416295e01,
        2.98635138197400131e02,
        8.81952221241769090e02,
        1.71204761263407058e03,
        2.05107837782607147e03,
        1.23033935479799725e03,
        2.15311535474403846e-8,
    ];
    pub(super) const D: [f64; 8] = [
        1.57449261107098347e01,
        1.17693950891312499e02,
        5.37181101862009858e02,
        1.62138957456669019e03,
        3.29079923573345963e03,
        4.36261909014324716e03,
        3.43936767414372164e03,
        1.23033935480374942e03,
    ];
    /// `x·erfc(x)·e^{x²} = 1/√π − R(1/x²)` on `(4, ∞)`.
    pub(super) const P: [f64; 6] = [
        3.05326634961232344e-1,
        3.60344899949804439e-1,
        1.25781726111229246e-1,
        1.60837851487422766e-2,
        6.58749161529837803e-4,
        1.63153871373020978e-2,
    ];
    pub(super) const Q: [f64; 5] = [
        2.56852019228982242e00,
        1.87295284992346047e00,
        5.27905102951428412e-1,
        6.05183413124413191e-2,
        2.33520497626869185e-3,
    ];
}

/// erf(x) for `|x| ≤ 0.46875`.
fn erf_small(x: f64) -> f64 {
    let ysq = x * x;
    let mut num = cody::A[4] * ysq;
    let mut den = ysq;
    for k in 0..3 {
        num = (num + cody::A[k]) * ysq;
        den = (den + cody::B[k]) * ysq;
    }
    x * (num + cody::A[3]) / (den + cody::B[3])
}

/// For `y > 0.46875`: `ln(erfc(y)·e^{y²})`, i.e. `ln erfcx(y)`.
fn log_erfcx_large(y: f64) -> f64 {
    if y <= 4.0 {
        let mut num = cody::C[8] * y;
        let mut den = y;
        for k in 0..7 {
            num = (num + cody::C[k]) * y;
            den = (den + cody::D[k]) * y;
        }
        ((num + cody::C[7]) / (den + cody::D[7])).ln()
    } else {
        let z = 1.0 / (y * y);
        let mut num = cody::P[5] * z;
        let mut den = z;
        for k in 0..4 {
            num = (num + cody::P[k]) * z;
            den = (den + cody::Q[k]) * z;
        }
        let r = z * (num + cody::P[4]) / (den + cody::Q[4]);
        (cody::SQRPI - r).ln() - y.ln()
    }
}

/// `y²` split as `(hi, lo)` with `hi = ⌊16y⌋²/256` exact, so `e^{−y²} = e^{−hi}·e^{−lo}` loses
/// no accuracy to the rounding of `y²` (Cody's device). Requires finite `y ≥ 0`.
fn split_square(y: f64) -> (f64, f64) {
    let ysq = (16.0 * y).trunc() / 16.0;
    (ysq * ysq, (y - ysq) * (y + ysq))
}

/// The complementary error function, relative error ≲ 1e-15 wherever the result is a normal f64.
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let y = x.abs();
    if y <= cody::THRESH {
        return 1.0 - erf_small(x);
    }
    let tail = if y == f64::INFINITY {
        0.0
    } else {
        let (hi, lo) = split_square(y);
        (-hi).exp() * (-lo + log_erfcx_large(y)).exp()
    };
    if x < 0.0 {
        2.0 - tail
    } else {
        tail
    }
}

/// `ln(erfc(x))`, accurate for all x, including where `erfc(x)` underflows (TF-Privacy's
/// `_log_erfc`). For `x > 0.46875` it is evaluated as `−x² + ln(erfc(x)·e^{x²})` with Cody's
/// scaled forms (the `x > 4` form is the rational fit to the asymptotic expansion), so no
/// separate asymptotic series is needed.
pub fn log_erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x <= -cody::THRESH {
        return erfc(x).ln();
    }
    if x <= cody::THRESH {
        return (-erf_small(x)).ln_1p();
    }
    if x == f64::INFINITY {
        return f64::NEG_INFINITY;
    }
    let (hi, lo) = split_square(x);
    if hi == f64::INFINITY {
        return f64::NEG_INFINITY;
    }
    -hi - lo + log_erfcx_large(x)
}

/// The standard normal distribution function `Φ(x) = erfc(−x/√2)/2`.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// The standard normal quantile `Φ⁻¹(p)` for `p` in `(0, 1)`: Acklam's approximation and
/// one Halley step. Outside `(0, 1)` it returns NaN or an infinity; callers check `p`.
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] =
        [7.784_695_709_041_462e-3, 3.224_671_290_700_398e-1, 2.445_134_137_142_996, 3.754_408_661_907_416];
    const P_LOW: f64 = 0.024_25;

    if !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let x = if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    };
    // One Halley step on Φ(x) − p = 0.
    let e = normal_cdf(x) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (0.5 * x * x).exp();
    x - u / (1.0 + 0.5 * x * u)
}
