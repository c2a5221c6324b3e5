//! Share dainet's vocabulary: seeded random streams, flat parameters and their layout.
//!
//! Every crate above this one speaks in these types:
//! - [`rng`]: [`SplitMix64`] and [`stream_seed`], the named, seeded random streams every
//!   random choice is drawn from, so that one seed reproduces a whole run byte for byte.
//! - [`params`]: [`Params`], a model's parameters as one flat `f32` vector with a
//!   [`Layout`] naming each tensor and its shape.
//!
//! Stability: ALPHA (breaking changes expected).
#![deny(missing_docs)]

pub mod params;
pub mod rng;

pub use params::{Layout, LayoutError, Params, TensorSpec};
pub use rng::{stream_seed, Purpose, SplitMix64};
