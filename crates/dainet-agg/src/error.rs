//! Why an update or a set of updates cannot be aggregated.

/// An update that cannot be aggregated.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum AggregationError {
    /// The update's length differs from the model's.
    #[error("update has {got} parameters, expected {expected}")]
    WrongLength {
        /// The model's parameter count.
        expected: usize,
        /// The update's.
        got: usize,
    },
    /// The update holds NaN or an infinity.
    #[error("update parameter {index} is not finite ({value})")]
    NonFinite {
        /// Its position.
        index: usize,
        /// The value.
        value: f32,
    },
    /// The weight is not positive and finite.
    #[error("update weight {0} must be positive and finite")]
    BadWeight(f64),
    /// Nothing was added.
    #[error("no update to aggregate")]
    Empty,
    /// A rule needs more updates than it was given.
    #[error("{rule} needs at least {needed} updates ({why}), got {got}")]
    TooFewUpdates {
        /// The rule, e.g. `bulyan(f=2)`.
        rule: String,
        /// Updates it needs.
        needed: usize,
        /// The relation that sets the need, e.g. `n >= 4f + 3`.
        why: &'static str,
        /// Updates given.
        got: usize,
    },
    /// The update's change from the global model is longer than the configured bound.
    #[error("update norm {norm:.4} exceeds the bound {bound}")]
    NormTooLarge {
        /// The L2 norm of the update's change.
        norm: f64,
        /// The bound.
        bound: f64,
    },
    /// A setting is out of range.
    #[error("{0}")]
    InvalidSetting(String),
}

/// Checks that `update` has `expected` finite values.
pub fn check_update(update: &[f32], expected: usize) -> Result<(), AggregationError> {
    if update.len() != expected {
        return Err(AggregationError::WrongLength { expected, got: update.len() });
    }
    // An exponent of all ones is NaN or an infinity. OR-ing a flag per value has no early exit
    // and vectorises; the position is only looked for when something was found.
    const EXPONENT: u32 = 0x7f80_0000;
    let scan = |chunk: &[f32]| chunk.iter().fold(0u32, |acc, v| acc | u32::from(v.to_bits() & EXPONENT == EXPONENT));
    // Large updates are scanned in parallel: validation sits on the coordinator's path.
    let bad = if update.len() >= 1 << 18 {
        use rayon::prelude::*;
        update.par_chunks(1 << 16).map(scan).reduce(|| 0, |a, b| a | b)
    } else {
        scan(update)
    };
    if bad == 0 {
        return Ok(());
    }
    let index = update.iter().position(|v| !v.is_finite()).expect("a non-finite value was seen");
    Err(AggregationError::NonFinite { index, value: update[index] })
}

/// An update that passed [`check_update`]: the expected length, every value finite.
///
/// Validation is the step before aggregation: it happens as an update arrives (and is
/// refused and counted there), so aggregation can take `Checked` updates without scanning
/// them again.
#[derive(Clone, Copy, Debug)]
pub struct Checked<'a>(&'a [f32]);

impl<'a> Checked<'a> {
    /// Checks `values` against the expected length.
    pub fn new(values: &'a [f32], expected: usize) -> Result<Self, AggregationError> {
        check_update(values, expected)?;
        Ok(Self(values))
    }

    /// The checked values.
    pub fn values(&self) -> &'a [f32] {
        self.0
    }
}
