//! Shamir secret sharing (Shamir 1979) over the prime field GF(p), p = 2^127 − 1.
//!
//! Elements are `u128`s below p. Products are formed exactly as 254-bit numbers from four
//! 64×64-bit partial products and reduced with the Mersenne identity 2^127 ≡ 1 (mod p): a
//! number `h·2^127 + l` is congruent to `h + l`.
//!
//! A 32-byte secret does not fit one element, so it is cut into three chunks of 15, 15 and
//! 2 bytes (little-endian integers below 2^120, 2^120 and 2^16, all below p) and each chunk
//! is shared with its own random polynomial of degree `threshold − 1`. A share is the three
//! evaluations at the holder's x-coordinate; [`Share::to_bytes`] writes them as 3 × 16 bytes.

use rand_core::Rng;

/// The field modulus p = 2^127 − 1, a Mersenne prime.
pub const P: u128 = (1u128 << 127) - 1;

/// The byte widths of the chunks a 32-byte secret is cut into.
pub const CHUNKS: [usize; 3] = [15, 15, 2];

/// Bytes of one share on the wire: three field elements of 16 bytes.
pub const SHARE_BYTES: usize = 48;

/// An element of GF(2^127 − 1), always reduced (below p).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fe(u128);

/// Reduces any `u128` modulo p.
#[inline]
fn reduce(x: u128) -> u128 {
    // x = h·2^127 + l ≡ h + l, with h ≤ 1 and l < 2^127, so the sum is below 2^127 + 1.
    let r = (x & P) + (x >> 127);
    if r >= P {
        r - P
    } else {
        r
    }
}

impl Fe {
    /// Zero.
    pub const ZERO: Fe = Fe(0);
    /// One.
    pub const ONE: Fe = Fe(1);

    /// The element congruent to `v`.
    pub fn new(v: u128) -> Fe {
        Fe(reduce(v))
    }

    /// `v` if it is below p.
    pub fn from_canonical(v: u128) -> Option<Fe> {
        (v < P).then_some(Fe(v))
    }

    /// The canonical representative, below p.
    pub fn value(self) -> u128 {
        self.0
    }

    /// A uniform element: 127 random bits, redrawn in the one case (all ones) that is p.
    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> Fe {
        loop {
            let mut b = [0u8; 16];
            rng.fill_bytes(&mut b);
            let v = u128::from_le_bytes(b) >> 1;
            if v < P {
                return Fe(v);
            }
        }
    }

    /// `self + other`.
    #[inline]
    #[allow(clippy::should_implement_trait)]
    pub fn add(self, other: Fe) -> Fe {
        // Both are below 2^127, so the sum fits a u128.
        Fe(reduce(self.0 + other.0))
    }

    /// `self − other`.
    #[inline]
    #[allow(clippy::should_implement_trait)]
    pub fn sub(self, other: Fe) -> Fe {
        Fe(reduce(self.0 + (P - other.0)))
    }

    /// `self · other`.
    #[inline]
    #[allow(clippy::should_implement_trait)]
    pub fn mul(self, other: Fe) -> Fe {
        let (a0, a1) = (self.0 & u64::MAX as u128, self.0 >> 64);
        let (b0, b1) = (other.0 & u64::MAX as u128, other.0 >> 64);
        // a1, b1 < 2^63: every partial product is below 2^127 and `mid` below 2^128.
        let ll = a0 * b0;
        let mid = a0 * b1 + a1 * b0;
        let hh = a1 * b1;
        let (lo, carry) = ll.overflowing_add(mid << 64);
        // The product is hi·2^128 + lo with hi < 2^126 + 2^65.
        let hi = hh + (mid >> 64) + carry as u128;
        // 2^128 ≡ 2 (mod p): product ≡ 2·hi + lo.
        Fe(reduce(reduce(hi << 1) + reduce(lo)))
    }

    /// `self^e`.
    pub fn pow(self, mut e: u128) -> Fe {
        let (mut base, mut acc) = (self, Fe::ONE);
        while e > 0 {
            if e & 1 == 1 {
                acc = acc.mul(base);
            }
            base = base.mul(base);
            e >>= 1;
        }
        acc
    }

    /// The inverse `self^(p − 2)` (Fermat), or `None` for zero.
    pub fn inv(self) -> Option<Fe> {
        (self.0 != 0).then(|| self.pow(P - 2))
    }
}

/// Why shares could not be combined into a secret.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShamirError {
    /// Fewer shares than the threshold.
    #[error("got {got} shares, threshold is {threshold}")]
    TooFewShares {
        /// Shares given.
        got: usize,
        /// Shares needed.
        threshold: usize,
    },
    /// Two shares at the same x-coordinate, or one at x = 0.
    #[error("shares at duplicate or zero x-coordinate x={x}")]
    BadCoordinate {
        /// The offending coordinate.
        x: u128,
    },
    /// The shares do not lie on one polynomial of degree `threshold − 1`, or the secret they
    /// give does not fit its chunk: at least one share is wrong.
    #[error("shares are inconsistent (chunk {chunk})")]
    Inconsistent {
        /// The chunk (0, 1 or 2) that failed.
        chunk: usize,
    },
    /// A share's bytes hold a value not below p, or the wrong number of bytes.
    #[error("malformed share bytes")]
    Malformed,
}

/// One holder's share of a 32-byte secret: the three chunk polynomials evaluated at `x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    /// The holder's x-coordinate (never zero).
    pub x: Fe,
    /// The evaluations, one per chunk.
    pub y: [Fe; 3],
}

impl Share {
    /// The evaluations as 48 little-endian bytes (the x-coordinate is implied by the holder).
    pub fn to_bytes(&self) -> [u8; SHARE_BYTES] {
        let mut out = [0u8; SHARE_BYTES];
        for (dst, y) in out.chunks_exact_mut(16).zip(self.y) {
            dst.copy_from_slice(&y.value().to_le_bytes());
        }
        out
    }

    /// The share at `x` whose evaluations are `bytes` (as written by [`Share::to_bytes`]).
    pub fn from_bytes(x: Fe, bytes: &[u8]) -> Result<Share, ShamirError> {
        if bytes.len() != SHARE_BYTES || x == Fe::ZERO {
            return Err(ShamirError::Malformed);
        }
        let mut y = [Fe::ZERO; 3];
        for (dst, src) in y.iter_mut().zip(bytes.chunks_exact(16)) {
            let v = u128::from_le_bytes(src.try_into().expect("16 bytes"));
            *dst = Fe::from_canonical(v).ok_or(ShamirError::Malformed)?;
        }
        Ok(Share { x, y })
    }
}

/// The three chunk values of a 32-byte secret.
fn chunk_values(secret: &[u8; 32]) -> [Fe; 3] {
    let mut out = [Fe::ZERO; 3];
    let mut at = 0;
    for (dst, width) in out.iter_mut().zip(CHUNKS) {
        let mut b = [0u8; 16];
        b[..width].copy_from_slice(&secret[at..at + width]);
        *dst = Fe(u128::from_le_bytes(b));
        at += width;
    }
    out
}

/// Shares `secret` among holders at `xs` (distinct, nonzero) so that any `threshold` of them
/// recover it and fewer learn nothing. Costs 3 · `threshold` · `xs.len()` multiplications.
///
/// # Panics
/// If `threshold` is 0 (callers validate their configuration).
pub fn split<R: Rng + ?Sized>(secret: &[u8; 32], threshold: usize, xs: &[Fe], rng: &mut R) -> Vec<Share> {
    assert!(threshold >= 1, "threshold must be at least 1");
    let chunks = chunk_values(secret);
    // coefficients[c] = [a_0 = chunk, a_1, …, a_{t−1}].
    let coefficients: Vec<Vec<Fe>> =
        chunks.iter().map(|&a0| std::iter::once(a0).chain((1..threshold).map(|_| Fe::random(rng))).collect()).collect();
    xs.iter()
        .map(|&x| {
            let mut y = [Fe::ZERO; 3];
            for (dst, coeffs) in y.iter_mut().zip(&coefficients) {
                // Horner, from the highest coefficient.
                *dst = coeffs.iter().rev().fold(Fe::ZERO, |acc, &a| acc.mul(x).add(a));
            }
            Share { x, y }
        })
        .collect()
}

/// The Lagrange weights λ_i = Π_{j≠i} (x_j − at)/(x_j − x_i) for evaluating at `at`.
///
/// One field inversion for all the weights (Montgomery's trick: invert the product of the
/// denominators, then peel each off), not one per weight: an inversion costs ~250
/// multiplications, and the server runs this for every share beyond the threshold of every
/// secret it reconstructs.
fn lagrange_weights(xs: &[Fe], at: Fe) -> Result<Vec<Fe>, ShamirError> {
    let mut nums = Vec::with_capacity(xs.len());
    let mut dens = Vec::with_capacity(xs.len());
    for (i, &xi) in xs.iter().enumerate() {
        let (mut num, mut den) = (Fe::ONE, Fe::ONE);
        for (j, &xj) in xs.iter().enumerate() {
            if i != j {
                num = num.mul(xj.sub(at));
                den = den.mul(xj.sub(xi));
            }
        }
        if den == Fe::ZERO {
            return Err(ShamirError::BadCoordinate { x: xi.value() });
        }
        nums.push(num);
        dens.push(den);
    }
    // prefix[i] = den_0 · … · den_{i−1}; walking back, `inv` is (den_0 · … · den_i)^−1.
    let mut prefix = Vec::with_capacity(dens.len());
    let mut product = Fe::ONE;
    for &den in &dens {
        prefix.push(product);
        product = product.mul(den);
    }
    let mut inv = product.inv().expect("a product of nonzero elements of a field is nonzero");
    let mut weights = vec![Fe::ZERO; xs.len()];
    for i in (0..xs.len()).rev() {
        weights[i] = nums[i].mul(inv.mul(prefix[i]));
        inv = inv.mul(dens[i]);
    }
    Ok(weights)
}

/// Recovers the secret from at least `threshold` shares (the first `threshold` interpolate;
/// every further share is checked to lie on the same polynomials, so a wrong share among
/// more than `threshold` is detected, not silently used).
pub fn combine(shares: &[Share], threshold: usize) -> Result<[u8; 32], ShamirError> {
    if threshold == 0 || shares.len() < threshold {
        return Err(ShamirError::TooFewShares { got: shares.len(), threshold });
    }
    let mut seen: Vec<u128> = shares.iter().map(|s| s.x.value()).collect();
    seen.sort_unstable();
    if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
        return Err(ShamirError::BadCoordinate { x: w[0] });
    }
    if seen.first() == Some(&0) {
        return Err(ShamirError::BadCoordinate { x: 0 });
    }
    let (basis, extra) = shares.split_at(threshold);
    let xs: Vec<Fe> = basis.iter().map(|s| s.x).collect();
    let at_zero = lagrange_weights(&xs, Fe::ZERO)?;
    let eval = |weights: &[Fe], chunk: usize| {
        basis.iter().zip(weights).fold(Fe::ZERO, |acc, (s, &w)| acc.add(s.y[chunk].mul(w)))
    };
    for share in extra {
        let weights = lagrange_weights(&xs, share.x)?;
        for chunk in 0..3 {
            if eval(&weights, chunk) != share.y[chunk] {
                return Err(ShamirError::Inconsistent { chunk });
            }
        }
    }
    let mut secret = [0u8; 32];
    let mut at = 0;
    for (chunk, width) in CHUNKS.into_iter().enumerate() {
        let v = eval(&at_zero, chunk).value();
        if v >> (8 * width) != 0 {
            return Err(ShamirError::Inconsistent { chunk });
        }
        secret[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
        at += width;
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// Schoolbook double-and-add multiplication mod p: an independent reference.
    fn slow_mul(a: u128, b: u128) -> u128 {
        let (mut acc, mut base, mut e) = (0u128, a % P, b);
        while e > 0 {
            if e & 1 == 1 {
                acc = (acc + base) % P;
            }
            base = (base + base) % P;
            e >>= 1;
        }
        acc
    }

    #[test]
    fn mul_matches_double_and_add() {
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        let edge = [0, 1, 2, P - 1, P - 2, 1u128 << 126, (1u128 << 64) - 1, 1u128 << 64];
        for &a in &edge {
            for &b in &edge {
                assert_eq!(Fe(a).mul(Fe(b)).value(), slow_mul(a, b), "{a} * {b}");
            }
        }
        for _ in 0..2000 {
            let (a, b) = (Fe::random(&mut rng), Fe::random(&mut rng));
            assert_eq!(a.mul(b).value(), slow_mul(a.value(), b.value()));
        }
    }

    #[test]
    fn field_laws_hold() {
        let mut rng = ChaCha20Rng::from_seed([2; 32]);
        for _ in 0..200 {
            let (a, b, c) = (Fe::random(&mut rng), Fe::random(&mut rng), Fe::random(&mut rng));
            assert_eq!(a.mul(b.add(c)), a.mul(b).add(a.mul(c)));
            assert_eq!(a.sub(b).add(b), a);
            if a != Fe::ZERO {
                assert_eq!(a.mul(a.inv().unwrap()), Fe::ONE);
            }
        }
        assert_eq!(Fe::new(P), Fe::ZERO);
        assert_eq!(Fe::new(u128::MAX), Fe::ONE);
        assert_eq!(Fe::ZERO.sub(Fe::ONE).value(), P - 1);
        assert_eq!(Fe::ZERO.inv(), None);
    }

    fn xs(ids: impl IntoIterator<Item = u128>) -> Vec<Fe> {
        ids.into_iter().map(Fe::new).collect()
    }

    #[test]
    fn lagrange_weights_match_one_inversion_per_weight() {
        // The batched inversion against the textbook formula, weight by weight.
        let direct = |xs: &[Fe], at: Fe| -> Vec<Fe> {
            (0..xs.len())
                .map(|i| {
                    let others = (0..xs.len()).filter(|&j| j != i);
                    let num = others.clone().fold(Fe::ONE, |acc, j| acc.mul(xs[j].sub(at)));
                    let den = others.fold(Fe::ONE, |acc, j| acc.mul(xs[j].sub(xs[i])));
                    num.mul(den.inv().unwrap())
                })
                .collect()
        };
        let points = xs([1, 2, 5, 9, 10, 17, 40]);
        for at in [Fe::ZERO, Fe::new(3), Fe::new(P - 1)] {
            assert_eq!(lagrange_weights(&points, at).unwrap(), direct(&points, at));
        }
        assert_eq!(lagrange_weights(&xs([4, 7, 4]), Fe::ZERO), Err(ShamirError::BadCoordinate { x: 4 }));
    }

    #[test]
    fn any_threshold_subset_recovers_the_secret() {
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        secret[31] = 0xff; // the 2-byte chunk at its maximum
        let shares = split(&secret, 3, &xs(1..=5), &mut rng);
        for subset in [[0, 1, 2], [4, 2, 0], [1, 3, 4]] {
            let picked: Vec<Share> = subset.iter().map(|&i| shares[i]).collect();
            assert_eq!(combine(&picked, 3).unwrap(), secret);
        }
        assert_eq!(combine(&shares, 3).unwrap(), secret, "extra shares are consistent");
        assert_eq!(combine(&shares[..2], 3), Err(ShamirError::TooFewShares { got: 2, threshold: 3 }));
    }

    #[test]
    fn fewer_than_threshold_shares_fit_every_secret() {
        // With t − 1 shares fixed, each candidate secret has a consistent polynomial: the
        // t-th share needed for it exists. Check it for two different secrets.
        let mut rng = ChaCha20Rng::from_seed([4; 32]);
        let shares = split(&[7u8; 32], 2, &xs([1, 2]), &mut rng);
        for other in [[0u8; 32], [9u8; 32]] {
            // The line through (0, other) and share 0, evaluated at x = 2.
            let mut forged = shares[1];
            for c in 0..3 {
                let s = chunk_values(&other)[c];
                let slope = shares[0].y[c].sub(s);
                forged.y[c] = s.add(slope.mul(Fe::new(2)));
            }
            assert_eq!(combine(&[shares[0], forged], 2).unwrap(), other);
        }
    }

    #[test]
    fn a_wrong_share_is_detected_when_there_are_spares() {
        let mut rng = ChaCha20Rng::from_seed([5; 32]);
        let mut shares = split(&[1u8; 32], 2, &xs(1..=4), &mut rng);
        shares[3].y[1] = shares[3].y[1].add(Fe::ONE);
        assert_eq!(combine(&shares, 2), Err(ShamirError::Inconsistent { chunk: 1 }));
        let mut dup = shares.clone();
        dup[1].x = dup[0].x;
        assert!(matches!(combine(&dup, 2), Err(ShamirError::BadCoordinate { .. })));
    }

    #[test]
    fn share_bytes_round_trip_and_reject_non_canonical() {
        let mut rng = ChaCha20Rng::from_seed([6; 32]);
        let share = split(&[42u8; 32], 2, &xs([9]), &mut rng)[0];
        assert_eq!(Share::from_bytes(share.x, &share.to_bytes()).unwrap(), share);
        let mut bad = share.to_bytes();
        bad[..16].copy_from_slice(&P.to_le_bytes());
        assert_eq!(Share::from_bytes(share.x, &bad), Err(ShamirError::Malformed));
        assert_eq!(Share::from_bytes(share.x, &bad[..47]), Err(ShamirError::Malformed));
    }
}
