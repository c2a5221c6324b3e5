//! Throw arbitrary and mutated bytes at decoders and count the panics.
//!
//! dainet's rule is that no input — a file, a flag, a message from a peer — makes a decoder
//! panic or allocate past a bound. This crate is the tool that checks it, shared by every
//! crate's `tests/decoders.rs`:
//! - [`mutate`] turns a valid encoding into a nearby invalid one (bit flips, byte edits,
//!   truncation, insertion, deletion, duplication, a length field inflated to a huge value,
//!   splicing with another seed); [`arbitrary`] makes random bytes.
//! - [`mutated`] and [`arbitrary_bytes`] are the same as `proptest` strategies, for the property
//!   tests of the normal suite (a few hundred cases each, so it stays fast).
//! - [`hammer`] runs one decoder on many such inputs, catching each panic with
//!   [`std::panic::catch_unwind`] rather than stopping at the first, and returns a [`Report`];
//!   [`long_run`] runs it on [`long_run_inputs`] inputs (10^6 unless `DAINET_HAMMER_INPUTS`
//!   says otherwise), prints one line, and fails if any input panicked.
//!
//! Adding a decoder to the long run is one line in its crate's `tests/decoders.rs`, in a test
//! marked `#[test]` and `#[ignore = "long run: …"]`:
//!
//! ```no_run
//! # fn decode(bytes: &[u8]) -> Result<u8, ()> { bytes.first().copied().ok_or(()) }
//! # let seeds = vec![vec![1u8, 2, 3]];
//! dainet_hammer::long_run("my-message", &seeds, |bytes| decode(bytes).is_ok());
//! ```
//!
//! and runs with `cargo test --release -p CRATE --test decoders -- --ignored --nocapture`.
//! The decoder returns whether it accepted the input; a panic is counted, not propagated.
//!
//! Mutations are drawn from a SplitMix64 stream seeded by the decoder's name, so a run is
//! repeatable and a panic found by one run is found again by the next.

use dainet_core::SplitMix64;
use proptest::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

/// Inputs a long run feeds each decoder when `DAINET_HAMMER_INPUTS` is not set: 10^6.
pub const LONG_RUN_INPUTS: u64 = 1_000_000;

/// The longest [`arbitrary`] input: enough to reach past every fixed header the project reads.
pub const MAX_ARBITRARY_LEN: usize = 1024;

/// A deterministic random stream: dainet's SplitMix64, named by the decoder under test.
#[derive(Clone, Debug)]
pub struct Rng(SplitMix64);

impl Rng {
    /// A stream from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(SplitMix64::new(seed))
    }

    /// A stream named by a string (the decoder's name): FNV-1a of its bytes.
    pub fn named(name: &str) -> Rng {
        Rng::new(name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Values a length or count field is inflated to: the edges where a decoder that trusts a length
/// overflows, allocates terabytes, or reads past its input.
const HUGE: [u64; 6] = [u64::MAX, u64::MAX / 2 + 1, u32::MAX as u64, 1 << 31, 1 << 16, 0xffff_ffff_ffff_fff0];

/// The bytes of text-like inputs: digits, number punctuation, quotes, line breaks, TOML's `=[]#`.
const TEXT: &[u8] = b"0123456789.,-+eE\"\n =[]abcxyz#";

/// Random bytes, 0 to [`MAX_ARBITRARY_LEN`] long; one time in four only printable ASCII and
/// line breaks, so text decoders (CSV, TOML, hex keys) get past their first check.
pub fn arbitrary(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(MAX_ARBITRARY_LEN + 1);
    let text = rng.below(4) == 0;
    (0..len)
        .map(|_| {
            let b = rng.next_u64() as u8;
            if text {
                TEXT[usize::from(b) % TEXT.len()]
            } else {
                b
            }
        })
        .collect()
}

/// A mutation of `seed`: one to four edits drawn from bit flips, byte overwrites, truncation,
/// insertion of random bytes, deletion or duplication of a range, a 1-, 2-, 4- or 8-byte field
/// (little- or big-endian) or a varint set to a huge value, and a splice with `other`.
pub fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        apply_one(rng, &mut bytes, other);
    }
    bytes
}

fn apply_one(rng: &mut Rng, bytes: &mut Vec<u8>, other: &[u8]) {
    let len = bytes.len();
    let at = if len == 0 { 0 } else { rng.below(len) };
    match rng.below(10) {
        0 | 1 if len > 0 => bytes[at] ^= 1 << rng.below(8),
        2 if len > 0 => bytes[at] = rng.next_u64() as u8,
        3 => bytes.truncate(rng.below(len + 1)),
        4 => {
            let n = 1 + rng.below(16);
            let insert: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            bytes.splice(at..at, insert);
        }
        5 if len > 0 => {
            let end = (at + 1 + rng.below(32)).min(len);
            bytes.drain(at..end);
        }
        6 if len > 0 => {
            let end = (at + 1 + rng.below(64)).min(len);
            let copy = bytes[at..end].to_vec();
            bytes.splice(at..at, copy);
        }
        7 | 8 => {
            let value = HUGE[rng.below(HUGE.len())];
            let width = [1, 2, 4, 8][rng.below(4)];
            let field = if rng.below(2) == 0 { value.to_le_bytes() } else { value.to_be_bytes() };
            let field = if rng.below(2) == 0 { &field[..width] } else { &field[8 - width..] };
            let end = (at + width).min(len);
            if rng.below(3) == 0 {
                // Postcard's lengths are varints: write the value as one.
                bytes.splice(at..end.min(at + 1), varint(value));
            } else {
                bytes.splice(at..end, field.iter().copied());
            }
        }
        _ if !other.is_empty() => {
            let from = rng.below(other.len());
            let take = 1 + rng.below(other.len() - from);
            let end = (at + rng.below(64)).min(len);
            bytes.splice(at..end, other[from..from + take].iter().copied());
        }
        _ => bytes.push(rng.next_u64() as u8),
    }
}

/// `value` as an LEB128 varint (postcard's length and integer encoding).
fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// What [`hammer`] saw.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The decoder's name.
    pub name: String,
    /// Inputs fed to it.
    pub inputs: u64,
    /// Inputs it accepted.
    pub accepted: u64,
    /// Inputs it refused.
    pub refused: u64,
    /// Inputs on which it panicked.
    pub panics: u64,
    /// The first input that panicked, if any.
    pub first_panic: Option<Vec<u8>>,
    /// Wall-clock seconds the run took.
    pub seconds: f64,
}

impl Report {
    /// Inputs per second.
    pub fn rate(&self) -> f64 {
        self.inputs as f64 / self.seconds.max(1e-9)
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "hammer decoder={} inputs={} accepted={} refused={} panics={} seconds={:.1} inputs_per_sec={:.0}",
            self.name,
            self.inputs,
            self.accepted,
            self.refused,
            self.panics,
            self.seconds,
            self.rate()
        )
    }
}

/// Feeds `decode` `inputs` inputs: each seed as it is, then alternately arbitrary bytes and
/// mutations of a seed (chosen in turn). `decode` returns whether it accepted the input. Each
/// call runs under [`catch_unwind`], so a panic is counted and the run goes on.
pub fn hammer(name: &str, seeds: &[Vec<u8>], inputs: u64, decode: impl Fn(&[u8]) -> bool) -> Report {
    let mut rng = Rng::named(name);
    let mut report = Report { name: name.to_string(), inputs, ..Report::default() };
    let start = Instant::now();
    // Silence the default hook's backtrace for each caught panic; restore it after.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for i in 0..inputs {
        let input = if i < seeds.len() as u64 {
            seeds[i as usize].clone()
        } else if seeds.is_empty() || i % 2 == 0 {
            arbitrary(&mut rng)
        } else {
            let seed = &seeds[rng.below(seeds.len())];
            let other = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, seed, other)
        };
        match catch_unwind(AssertUnwindSafe(|| decode(&input))) {
            Ok(true) => report.accepted += 1,
            Ok(false) => report.refused += 1,
            Err(_) => {
                report.panics += 1;
                report.first_panic.get_or_insert(input);
            }
        }
    }
    std::panic::set_hook(hook);
    report.seconds = start.elapsed().as_secs_f64();
    report
}

/// Inputs for a long run: `DAINET_HAMMER_INPUTS` if set (and a number), else [`LONG_RUN_INPUTS`].
pub fn long_run_inputs() -> u64 {
    std::env::var("DAINET_HAMMER_INPUTS").ok().and_then(|v| v.parse().ok()).unwrap_or(LONG_RUN_INPUTS)
}

/// [`hammer`] with [`long_run_inputs`] inputs: prints the [`Report`] line and panics (failing the
/// test) if any input panicked, showing the first one in hex.
pub fn long_run(name: &str, seeds: &[Vec<u8>], decode: impl Fn(&[u8]) -> bool) -> Report {
    let report = hammer(name, seeds, long_run_inputs(), decode);
    println!("{report}");
    if let Some(input) = &report.first_panic {
        let hex: String = input.iter().take(256).map(|b| format!("{b:02x}")).collect();
        panic!(
            "{name}: {} of {} inputs panicked; the first ({} bytes) begins {hex}",
            report.panics,
            report.inputs,
            input.len()
        );
    }
    assert!(report.seeds_ok(seeds.len()), "{name}: a seed was refused");
    report
}

impl Report {
    /// Whether at least the seeds could have been accepted (a harness whose decoder refuses its own
    /// valid seeds tests nothing): true when `accepted >= seeds`.
    fn seeds_ok(&self, seeds: usize) -> bool {
        self.accepted >= seeds as u64
    }
}

/// Property-test strategy: random bytes, 0 to [`MAX_ARBITRARY_LEN`] long.
pub fn arbitrary_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..=MAX_ARBITRARY_LEN),
        // Text-like bytes, for decoders that first check for UTF-8 or hex.
        proptest::collection::vec(proptest::sample::select(TEXT.to_vec()), 0..=256),
    ]
}

/// Property-test strategy: a [`mutate`]d copy of one of `seeds` (proptest draws the mutation's
/// random stream, so a failure shrinks to a seed number and prints it).
pub fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    assert!(!seeds.is_empty(), "mutated() needs at least one valid encoding");
    (0..seeds.len(), 0..seeds.len(), any::<u64>())
        .prop_map(move |(a, b, seed)| mutate(&mut Rng::new(seed), &seeds[a], &seeds[b]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_are_counted_not_propagated() {
        let seeds = vec![vec![1u8, 2, 3]];
        let report = hammer("test", &seeds, 1_000, |bytes| {
            if bytes.len() == 7 {
                panic!("seven");
            }
            bytes.len() < 3
        });
        assert_eq!(report.inputs, 1_000);
        assert_eq!(report.accepted + report.refused + report.panics, 1_000);
        assert!(report.panics > 0, "{report}");
        assert_eq!(report.first_panic.as_ref().map(Vec::len), Some(7));
    }

    #[test]
    fn mutations_are_repeatable_and_change_the_input() {
        let seed: Vec<u8> = (0..100).collect();
        let a: Vec<Vec<u8>> = (0..50).map(|i| mutate(&mut Rng::new(i), &seed, &seed)).collect();
        let b: Vec<Vec<u8>> = (0..50).map(|i| mutate(&mut Rng::new(i), &seed, &seed)).collect();
        assert_eq!(a, b);
        assert!(a.iter().filter(|m| **m != seed).count() > 40);
        // Length fields get inflated: some mutation carries four 0xff bytes in a row.
        let many: Vec<Vec<u8>> = (0..2_000).map(|i| mutate(&mut Rng::new(i), &seed, &seed)).collect();
        assert!(many.iter().any(|m| m.windows(4).any(|w| w == [0xff; 4])));
        assert!(many.iter().any(|m| m.len() < seed.len() / 2));
        assert!(many.iter().any(|m| m.len() > seed.len()));
    }

    #[test]
    fn varints_are_leb128() {
        assert_eq!(varint(0), [0]);
        assert_eq!(varint(300), [0xac, 0x02]);
        assert_eq!(varint(u64::MAX).len(), 10);
    }
}
