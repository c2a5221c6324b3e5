//! The simulated network: what a message costs in virtual time, which messages are lost, which
//! devices are slow, and when trainers crash.
//!
//! The model, per trainer (the coordinator is taken to sit on a well-connected server, so the
//! bottleneck of a link is the trainer's end):
//! - **Latency.** Every message takes `latency_ms` one way.
//! - **Bandwidth.** With `bandwidth_mbit`, a message of B encoded bytes also takes
//!   `8·B / bandwidth` on the trainer's downlink or uplink, and each of the two carries one
//!   message at a time, in sending order (a link is busy until its last message is through).
//!   A train request travels with the model's blob when the trainer does not hold that model
//!   yet. Without it, links are unlimited.
//! - **Loss.** Each message is lost whole with probability `loss` (a datagram dropped, or a
//!   connection cut mid-transfer), drawn from the stream `(seed, MessageLoss, sequence number)`.
//!   Nothing is resent: the round's deadline decides without it.
//! - **Compute.** With `compute_gflops`, local training takes `6·P·n·E` floating-point
//!   operations (P parameters, n examples, E epochs run: forward and backward of dense layers,
//!   a rule of thumb) at that speed. Without it, training takes no virtual time.
//! - **Slow devices.** The first `round(slow_clients·K)` trainers of a seeded shuffle
//!   (`SlowClients` stream) do everything `slowdown` times slower: their latency, transfer
//!   and compute times are multiplied by it.
//! - **Crashes.** A [`Crash`] takes a trainer down at a virtual time: what reaches it while
//!   down is lost, its training under way is lost, and it restarts (if it does) as a fresh
//!   trainer with no memory of the round.
//!
//! At the defaults (50 ms latency, nothing else) the network is what the simulator always
//! modelled, and a run's bytes are the same.

use dainet_core::{Purpose, SplitMix64, Time};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The simulated network between the coordinator and its trainers. See the module docs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkModel {
    /// One-way delay of every message, in milliseconds. Default: 50.
    pub latency_ms: u64,
    /// Each trainer's link speed in megabits per second, both ways; `None`: unlimited.
    pub bandwidth_mbit: Option<f64>,
    /// The probability that a message is lost, in `[0, 1)`. Default: 0.
    pub loss: f64,
    /// The share of trainers that are slow devices, in `[0, 1]`. Default: 0.
    pub slow_clients: f64,
    /// How many times slower a slow device is (latency, transfers, compute), at least 1.
    /// Default: 10.
    pub slowdown: f64,
    /// A trainer's training speed in GFLOP/s; `None`: training takes no virtual time.
    pub compute_gflops: Option<f64>,
    /// Trainers that crash, and when.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub crashes: Vec<Crash>,
}

impl Default for NetworkModel {
    fn default() -> Self {
        Self {
            latency_ms: 50,
            bandwidth_mbit: None,
            loss: 0.0,
            slow_clients: 0.0,
            slowdown: 10.0,
            compute_gflops: None,
            crashes: Vec::new(),
        }
    }
}

/// A trainer that goes down at `at_ms` (virtual time) and comes back `down_ms` later (never,
/// if `None`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crash {
    /// The trainer.
    pub client: u32,
    /// When it crashes.
    pub at_ms: u64,
    /// How long it stays down; `None`: for good.
    #[serde(default)]
    pub down_ms: Option<u64>,
}

/// The largest latency, crash time or downtime accepted: a day of virtual time.
pub const MAX_MS: u64 = 86_400_000;

impl NetworkModel {
    /// Checks every value against its range, naming the setting (as its config key) and the
    /// range; `num_clients` bounds the crashing trainers.
    pub fn validate(&self, num_clients: u32) -> Result<(), String> {
        let check = |ok: bool, what: String| if ok { Ok(()) } else { Err(what) };
        check(
            self.latency_ms <= MAX_MS,
            format!("network.latency_ms must be at most {MAX_MS}, got {}", self.latency_ms),
        )?;
        if let Some(b) = self.bandwidth_mbit {
            check(
                (0.001..=1e6).contains(&b),
                format!("network.bandwidth_mbit must be between 0.001 and 1000000, got {b}"),
            )?;
        }
        check((0.0..1.0).contains(&self.loss), format!("network.loss must be in [0, 1), got {}", self.loss))?;
        check(
            (0.0..=1.0).contains(&self.slow_clients),
            format!("network.slow_clients must be in [0, 1], got {}", self.slow_clients),
        )?;
        check(
            self.slowdown.is_finite() && (1.0..=1e6).contains(&self.slowdown),
            format!("network.slowdown must be between 1 and 1000000, got {}", self.slowdown),
        )?;
        if let Some(g) = self.compute_gflops {
            check(
                (1e-6..=1e9).contains(&g),
                format!("network.compute_gflops must be between 0.000001 and 1000000000, got {g}"),
            )?;
        }
        for crash in &self.crashes {
            check(
                crash.client < num_clients,
                format!("network.crashes: client {} is not among the {num_clients} clients", crash.client),
            )?;
            check(
                crash.at_ms <= MAX_MS && crash.down_ms.is_none_or(|d| d <= MAX_MS),
                format!("network.crashes: times must be at most {MAX_MS} ms"),
            )?;
        }
        Ok(())
    }

    /// What differs from the defaults, in words (`None` at the defaults but for the latency).
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(b) = self.bandwidth_mbit {
            parts.push(format!("{b} Mbit/s links"));
        }
        if self.loss > 0.0 {
            parts.push(format!("loss {}", self.loss));
        }
        if self.slow_clients > 0.0 {
            parts.push(format!("slow clients {} ({}x slower)", self.slow_clients, self.slowdown));
        }
        if let Some(g) = self.compute_gflops {
            parts.push(format!("training at {g} GFLOP/s"));
        }
        if !self.crashes.is_empty() {
            parts.push(format!("{} crashes", self.crashes.len()));
        }
        (!parts.is_empty()).then(|| format!("network: {} ms latency, {}", self.latency_ms, parts.join(", ")))
    }

    /// Whether any message can be lost or cut off (then rounds need a deadline).
    pub fn loses_messages(&self) -> bool {
        self.loss > 0.0 || !self.crashes.is_empty()
    }
}

/// The trainers' links as a run uses them: who is slow, when each link is free.
pub(crate) struct Links {
    model: NetworkModel,
    seed: u64,
    slow: BTreeSet<u32>,
    /// Per trainer: when its downlink and its uplink finish what they carry.
    free_at: Vec<(Time, Time)>,
}

/// Which way a message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    ToTrainer,
    ToCoordinator,
}

impl Links {
    pub(crate) fn new(model: NetworkModel, seed: u64, num_clients: u32) -> Self {
        let slow = if model.slow_clients > 0.0 {
            let mut ids: Vec<u32> = (0..num_clients).collect();
            SplitMix64::stream(seed, Purpose::SlowClients, 0, 0).shuffle(&mut ids);
            let n = ((model.slow_clients * f64::from(num_clients)).round() as usize).min(ids.len());
            ids[..n].iter().copied().collect()
        } else {
            BTreeSet::new()
        };
        Self { model, seed, slow, free_at: vec![(Time(0), Time(0)); num_clients as usize] }
    }

    /// The model.
    pub(crate) fn model(&self) -> &NetworkModel {
        &self.model
    }

    /// Whether `client` is a slow device.
    pub(crate) fn is_slow(&self, client: u32) -> bool {
        self.slow.contains(&client)
    }

    fn factor(&self, client: u32) -> f64 {
        if self.is_slow(client) {
            self.model.slowdown
        } else {
            1.0
        }
    }

    /// When `bytes` sent now between the coordinator and `client` arrive; occupies the link.
    pub(crate) fn arrival(&mut self, now: Time, client: u32, direction: Direction, bytes: usize) -> Time {
        let factor = self.factor(client);
        let latency = scale_ms(self.model.latency_ms as f64, factor);
        let Some(mbit) = self.model.bandwidth_mbit else {
            return now.plus_ms(latency);
        };
        let transfer = scale_ms(bytes as f64 * 8.0 / (mbit * 1e3), factor);
        let Some(link) = self.free_at.get_mut(client as usize) else {
            return now.plus_ms(latency.saturating_add(transfer));
        };
        let free = match direction {
            Direction::ToTrainer => &mut link.0,
            Direction::ToCoordinator => &mut link.1,
        };
        let done = now.max(*free).plus_ms(transfer);
        *free = done;
        done.plus_ms(latency)
    }

    /// Virtual milliseconds `client` trains for `operations` floating-point operations.
    pub(crate) fn compute_ms(&self, client: u32, operations: f64) -> u64 {
        match self.model.compute_gflops {
            Some(gflops) => scale_ms(operations / (gflops * 1e6), self.factor(client)),
            None => 0,
        }
    }

    /// Whether the message with sequence number `seq` is lost.
    pub(crate) fn lost(&self, seq: u64) -> bool {
        self.model.loss > 0.0
            && SplitMix64::stream(self.seed, Purpose::MessageLoss, seq, 0).next_f64() < self.model.loss
    }
}

/// `ms · factor`, rounded up to whole milliseconds (a message over a limited link takes at
/// least 1 ms), saturating.
fn scale_ms(ms: f64, factor: f64) -> u64 {
    let scaled = (ms * factor).ceil();
    if scaled >= u64::MAX as f64 {
        u64::MAX
    } else {
        scaled as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_old_fixed_latency() {
        let mut links = Links::new(NetworkModel::default(), 1, 10);
        for bytes in [0, 1, 10_000_000] {
            assert_eq!(links.arrival(Time(100), 3, Direction::ToTrainer, bytes), Time(150));
        }
        assert_eq!(links.compute_ms(3, 1e12), 0);
        assert!(!(0..1000).any(|seq| links.lost(seq)));
    }

    #[test]
    fn a_link_carries_one_message_at_a_time() {
        let model = NetworkModel { bandwidth_mbit: Some(8.0), ..NetworkModel::default() };
        let mut links = Links::new(model, 1, 2);
        // 8 Mbit/s: 1,000 bytes take 1 ms, 1,000,000 bytes 1 s.
        assert_eq!(links.arrival(Time(0), 0, Direction::ToTrainer, 1_000_000), Time(1_050));
        // Behind it on the same downlink; the uplink and the other trainer's link are free.
        assert_eq!(links.arrival(Time(10), 0, Direction::ToTrainer, 1_000), Time(1_051));
        assert_eq!(links.arrival(Time(10), 0, Direction::ToCoordinator, 1_000), Time(61));
        assert_eq!(links.arrival(Time(10), 1, Direction::ToTrainer, 1_000), Time(61));
    }

    #[test]
    fn slow_devices_are_seeded_and_slower_at_everything() {
        let model = NetworkModel {
            slow_clients: 0.2,
            slowdown: 10.0,
            compute_gflops: Some(1.0),
            bandwidth_mbit: Some(8.0),
            ..NetworkModel::default()
        };
        let mut links = Links::new(model.clone(), 1, 100);
        assert_eq!(links.slow.len(), 20);
        assert_eq!(links.slow, Links::new(model.clone(), 1, 100).slow);
        assert_ne!(links.slow, Links::new(model, 2, 100).slow);
        let slow = *links.slow.iter().next().unwrap();
        let fast = (0..100).find(|k| !links.is_slow(*k)).unwrap();
        // 1 GFLOP at 1 GFLOP/s.
        assert_eq!(links.compute_ms(fast, 1e9), 1_000);
        assert_eq!(links.compute_ms(slow, 1e9), 10_000);
        assert_eq!(links.arrival(Time(0), fast, Direction::ToCoordinator, 1_000), Time(51));
        assert_eq!(links.arrival(Time(0), slow, Direction::ToCoordinator, 1_000), Time(510));
    }

    #[test]
    fn loss_is_seeded_and_near_its_rate() {
        let model = NetworkModel { loss: 0.1, ..NetworkModel::default() };
        let links = Links::new(model, 1, 1);
        let lost = (0..100_000).filter(|&seq| links.lost(seq)).count();
        assert!((9_500..10_500).contains(&lost), "{lost}");
        assert_eq!(
            (0..1000).map(|s| links.lost(s)).collect::<Vec<_>>(),
            (0..1000).map(|s| links.lost(s)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn out_of_range_settings_name_their_key() {
        type Change = fn(&mut NetworkModel);
        let cases: [(Change, &str); 7] = [
            (|m| m.latency_ms = u64::MAX, "network.latency_ms"),
            (|m| m.bandwidth_mbit = Some(0.0), "network.bandwidth_mbit"),
            (|m| m.loss = 1.0, "network.loss"),
            (|m| m.slow_clients = f64::NAN, "network.slow_clients"),
            (|m| m.slowdown = 0.5, "network.slowdown"),
            (|m| m.compute_gflops = Some(f64::INFINITY), "network.compute_gflops"),
            (|m| m.crashes = vec![Crash { client: 10, at_ms: 0, down_ms: None }], "network.crashes"),
        ];
        for (change, key) in cases {
            let mut model = NetworkModel::default();
            change(&mut model);
            let err = model.validate(10).unwrap_err();
            assert!(err.starts_with(key), "{err}");
        }
        assert_eq!(NetworkModel::default().validate(10), Ok(()));
    }
}
