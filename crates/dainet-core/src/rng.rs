//! Named, seeded random streams.
//!
//! All randomness of the learning core comes from [`SplitMix64`] generators (Steele, Lea and
//! Flood, 2014), each started from a seed that names its purpose, as fixed by the fedtask-v1
//! benchmark (`shared/bench/fedtask-v1.md`):
//!
//! ```text
//! seed(purpose, i, j) = S * 10^12 + purpose * 10^9 + i * 10^3 + j
//! ```
//!
//! A fresh generator per use means a stream never depends on how many draws another stream
//! made, so clients can train in any order, on any number of threads, and a run resumed at
//! round r draws exactly what the uninterrupted run drew.
//!
//! The decimal formula only separates streams while `purpose < 1000`, `i < 10^6` and
//! `j < 1000`; [`stream_seed`] uses it inside that range (so the benchmark's streams are
//! bit-exact) and a SplitMix64 mix of all four numbers outside it (so a million clients
//! still get distinct streams).

/// The purpose of a random stream: the `purpose` term of the seed formula.
///
/// Values 1 to 5 are fixed by fedtask-v1; later values are dainet's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Purpose {
    /// The IID partition (fedtask-v1 purpose 1).
    IidPartition = 1,
    /// The shard assignment of the pathological non-IID partition (purpose 2).
    ShardAssignment = 2,
    /// The initial model weights (purpose 3).
    InitialWeights = 3,
    /// The clients sampled in round `i` (purpose 4).
    ClientSampling = 4,
    /// The mini-batch order of client `j` in round `i` (purpose 5).
    BatchOrder = 5,
    /// The Dirichlet label proportions of the Dirichlet partition.
    DirichletPartition = 6,
    /// The bucket assignment of round `i` (bucketing wrapper).
    Bucketing = 7,
    /// Which clients are Byzantine in an attack simulation.
    ByzantineSelection = 8,
    /// The randomness of client `j`'s attack in round `i` (noise, poisoned rows).
    Attack = 9,
    /// Whether client `j` straggles in round `i`, and how many epochs it then runs.
    Straggler = 10,
    /// Whether client `j` drops out of round `i`.
    Dropout = 11,
    /// The examples of the Synthetic(α, β) dataset.
    SyntheticData = 12,
    /// Whether client `j` drops out of round `i`'s secure aggregation after masking.
    DropoutAfterMasking = 13,
    /// Which clients are slow devices in a simulated network.
    SlowClients = 14,
    /// Whether the simulated network loses message `i`.
    MessageLoss = 15,
}

/// The seed of the stream for `purpose`, `i`, `j` under task seed `task_seed`.
///
/// ```
/// use dainet_core::{stream_seed, Purpose};
/// assert_eq!(stream_seed(1, Purpose::IidPartition, 0, 0), 1_001_000_000_000);
/// ```
pub fn stream_seed(task_seed: u64, purpose: Purpose, i: u64, j: u64) -> u64 {
    let p = purpose as u64;
    if i < 1_000_000 && j < 1_000 && task_seed < 18_000_000 {
        task_seed * 1_000_000_000_000 + p * 1_000_000_000 + i * 1_000 + j
    } else {
        // Outside the decimal formula's range: mix every term so streams stay distinct.
        let mut g = SplitMix64::new(task_seed ^ 0xDA1E_7000_0000_0000);
        let mut h = g.next_u64();
        for term in [p, i, j] {
            h = SplitMix64::new(h ^ term).next_u64();
        }
        h
    }
}

/// The SplitMix64 generator: a `u64` state advanced by a Weyl sequence and mixed.
///
/// Fast, small and fully specified, which is what reproducible partitions, initial weights
/// and batch orders need. It is not a cryptographic generator: key material never comes
/// from it.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose state starts at `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The generator for `stream_seed(task_seed, purpose, i, j)`.
    pub fn stream(task_seed: u64, purpose: Purpose, i: u64, j: u64) -> Self {
        Self::new(stream_seed(task_seed, purpose, i, j))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform double in `[0, 1)`: the top 53 bits times 2^-53, exact.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Shuffles `items` in place with Fisher–Yates, `j = next_u64() % (i + 1)`, from the end.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }

    /// A standard normal draw (Box–Muller, one of the pair).
    pub fn next_normal(&mut self) -> f64 {
        // 1 - u lies in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.next_f64();
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// A Gamma(`shape`, 1) draw (Marsaglia and Tsang 2000; boosted for `shape < 1`).
    ///
    /// `shape` must be positive and finite; callers validate it.
    pub fn next_gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            // Gamma(a) = Gamma(a + 1) * U^(1/a).
            let u = 1.0 - self.next_f64();
            return self.next_gamma(shape + 1.0) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.next_normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = 1.0 - self.next_f64();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // fedtask-v1, Test vectors: "SplitMix64 state 0, first 3 outputs".
    #[test]
    fn splitmix64_state_zero_matches_spec() {
        let mut g = SplitMix64::new(0);
        assert_eq!(g.next_u64(), 16294208416658607535);
        assert_eq!(g.next_u64(), 7960286522194355700);
        assert_eq!(g.next_u64(), 487617019471545679);
    }

    // fedtask-v1: "seed(1, 0, 0) = 1001000000000".
    #[test]
    fn seed_formula_matches_spec() {
        assert_eq!(stream_seed(1, Purpose::IidPartition, 0, 0), 1001000000000);
        assert_eq!(stream_seed(1, Purpose::BatchOrder, 3, 7), 1_005_000_003_007);
    }

    // fedtask-v1: "seed(3,0,0) generator, first 3 next_f64()".
    #[test]
    fn init_stream_f64_matches_spec() {
        let mut g = SplitMix64::stream(1, Purpose::InitialWeights, 0, 0);
        assert_eq!(g.next_f64(), 0.9317120026774252);
        assert_eq!(g.next_f64(), 0.3262903459671359);
        assert_eq!(g.next_f64(), 0.6773404868847985);
    }

    #[test]
    fn seeds_outside_the_decimal_range_stay_distinct() {
        let a = stream_seed(1, Purpose::BatchOrder, 5, 1000);
        let b = stream_seed(1, Purpose::BatchOrder, 6, 0);
        let c = stream_seed(1, Purpose::BatchOrder, 5, 1001);
        assert_ne!(a, b);
        assert_ne!(a, c);
        // The decimal formula would have given a == b here.
        assert_eq!(1_005_000_005_000u64 + 1000, 1_005_000_006_000u64);
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<u32> = (0..1000).collect();
        SplitMix64::new(42).shuffle(&mut v);
        assert_ne!(v, (0..1000).collect::<Vec<_>>());
        v.sort_unstable();
        assert_eq!(v, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn gamma_mean_is_close_to_shape() {
        for shape in [0.3, 1.0, 4.5] {
            let mut g = SplitMix64::new(7);
            let n = 20_000;
            let mean = (0..n).map(|_| g.next_gamma(shape)).sum::<f64>() / n as f64;
            assert!((mean - shape).abs() < 0.05 * shape.max(1.0), "shape {shape} mean {mean}");
        }
    }
}
