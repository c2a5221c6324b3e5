//! Share dainet's vocabulary: seeded random streams, flat parameters and their layout.
//!
//! Every crate above this one speaks in these types:
//! - [`rng`]: [`SplitMix64`] and [`stream_seed`], the named, seeded random streams every
//!   random choice is drawn from, so that one seed reproduces a whole run byte for byte.
//! - [`params`]: [`Params`], a model's parameters as one flat `f32` vector with a
//!   [`Layout`] naming each tensor and its shape.
//! - [`file`]: files written whole or not at all.
//! - [`codec`]: the byte format of what is stored or sent (a version byte, then postcard),
//!   decoded with a size bound and never a panic.
//! - [`text`]: quoting untrusted values in error messages, a short excerpt at most.
//!
//! Stability: ALPHA (breaking changes expected).
#![deny(missing_docs)]

pub mod codec;
pub mod file;
pub mod params;
pub mod rng;
pub mod special;
pub mod text;

pub use params::{Layout, LayoutError, Params, TensorSpec};

/// A logical time in milliseconds, from an origin the driver chooses. Protocol state machines
/// take it as an argument and never read a clock; the simulator's clock is virtual, the node's
/// real.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub u64);

impl Time {
    /// `self + ms` milliseconds, saturating.
    pub fn plus_ms(self, ms: u64) -> Time {
        Time(self.0.saturating_add(ms))
    }
}
pub use rng::{stream_seed, Purpose, SplitMix64};
