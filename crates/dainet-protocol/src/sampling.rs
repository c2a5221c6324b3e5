//! Which clients train in a round.

use crate::ClientId;
use dainet_core::{Purpose, SplitMix64};

/// The clients of round `round` (1-based): fedtask-v1's schedule, `a = [0, …, K−1]`
/// shuffled with `seed(4, r, 0)`, the first `m` taken, sorted ascending.
///
/// Each round draws from its own stream, so a run resumed at round r samples exactly what
/// the uninterrupted run sampled.
pub fn sample_clients(task_seed: u64, round: u32, num_clients: u32, per_round: u32) -> Vec<ClientId> {
    let mut a: Vec<u32> = (0..num_clients).collect();
    SplitMix64::stream(task_seed, Purpose::ClientSampling, u64::from(round), 0).shuffle(&mut a);
    let mut chosen: Vec<ClientId> = a[..per_round.min(num_clients) as usize].iter().map(|&k| ClientId(k)).collect();
    chosen.sort_unstable();
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u32]) -> Vec<ClientId> {
        v.iter().map(|&k| ClientId(k)).collect()
    }

    // fedtask-v1, Test vectors: "clients of round 1" and "clients of round 2".
    #[test]
    fn fedtask_schedule() {
        assert_eq!(sample_clients(1, 1, 100, 10), ids(&[9, 17, 24, 33, 37, 41, 77, 86, 93, 96]));
        assert_eq!(sample_clients(1, 2, 100, 10), ids(&[2, 8, 24, 37, 44, 52, 67, 76, 87, 96]));
    }

    #[test]
    fn never_more_than_the_federation() {
        assert_eq!(sample_clients(1, 1, 3, 10).len(), 3);
    }
}
