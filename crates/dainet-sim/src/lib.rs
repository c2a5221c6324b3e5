//! Run many virtual nodes on one clock from one seed.
//!
//! The [`Simulator`] drives the very [`Coordinator`] a networked node runs, with clients that
//! train in-process: it carries out each [`Action`], delivers each update after a simulated
//! network delay on a virtual clock, and fires the coordinator's timers when the clock
//! reaches them.
//!
//! # Guarantees
//! - **Determinism.** The clients of a round train in parallel on rayon's pool, but results
//!   are collected in request order and delivered in `(arrival time, sequence number)`
//!   order, and every random choice comes from a seeded stream; so the same seed gives the
//!   same bytes whatever the thread count.
//! - **No wall clock.** Virtual time only advances to the next arrival or deadline; wall-clock
//!   timings are the caller's to take.
//!
//! # Example
//! Ten clients with two Gaussian blobs each, three rounds of FedAvg:
//! ```
//! use dainet_ml::data::partition::{partition, PartitionScheme};
//! use dainet_ml::{Dataset, ModelSpec, SgdConfig};
//! use dainet_protocol::round::{Coordinator, RoundConfig};
//! use dainet_sim::{Federation, NetworkModel, SimEnd, Simulator};
//!
//! // 200 examples of 2 features: class 0 near (-1, -1), class 1 near (1, 1).
//! let x: Vec<f32> = (0..200).flat_map(|i| { let c = if i % 2 == 0 { -1.0 } else { 1.0 }; [c, c] }).collect();
//! let y: Vec<u32> = (0..200).map(|i| i % 2).collect();
//! let data = Dataset::new(x, y, 2, 2).unwrap();
//! let part = partition(&PartitionScheme::Iid, data.labels(), 2, 10, 1, None).unwrap();
//! let model = ModelSpec::Mlp { input: 2, hidden: vec![], classes: 2 }.build();
//!
//! let rounds = RoundConfig {
//!     task_seed: 1, num_clients: 10, clients_per_round: 3, rounds: 3,
//!     round_timeout_ms: None, min_updates: 1,
//! };
//! let coordinator = Coordinator::new(rounds, model.init(1), 1).unwrap();
//! let federation = Federation {
//!     model: model.as_ref(), train: &data, partition: &part, sgd: SgdConfig::default(), task_seed: 1,
//! };
//! let mut sim = Simulator::new(federation, coordinator, NetworkModel::default());
//! let mut closed = Vec::new();
//! let end = sim.run(|outcome| {
//!     closed.push((outcome.round, outcome.contributors.len()));
//!     std::ops::ControlFlow::Continue(())
//! });
//! assert_eq!(end, SimEnd::Finished);
//! assert_eq!(closed, vec![(1, 3), (2, 3), (3, 3)]);
//! assert_eq!(sim.now().0, 300); // three round trips of 2 x 50 ms
//! ```
//!
//! Stability: ALPHA.
#![deny(missing_docs)]

use dainet_core::{Purpose, SplitMix64};
use dainet_ml::data::Partition;
use dainet_ml::{train_local, Dataset, Model, Scratch, SgdConfig};
use dainet_protocol::round::{Action, Coordinator, RoundOutcome, TrainRequest, Update};
use dainet_protocol::{ClientId, Time};
use rayon::prelude::*;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::ControlFlow;

/// The clients of a simulated federation: a model, their data and how they train.
pub struct Federation<'a> {
    /// The model every client trains.
    pub model: &'a dyn Model,
    /// The pooled training examples.
    pub train: &'a Dataset,
    /// Which examples each client holds (client k holds `partition.client(k)`).
    pub partition: &'a Partition,
    /// Local training settings.
    pub sgd: SgdConfig,
    /// The task seed: client k's batch order in round r is the stream `seed(5, r, k)`.
    pub task_seed: u64,
}

/// The simulated network between the coordinator and its clients.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkModel {
    /// One-way delay of every message, in milliseconds. A round trip (model out, update
    /// back) takes twice this. Default: 50.
    pub latency_ms: u64,
}

impl Default for NetworkModel {
    fn default() -> Self {
        Self { latency_ms: 50 }
    }
}

/// How the simulation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimEnd {
    /// The coordinator finished its last round.
    Finished,
    /// The round callback asked to stop.
    Stopped,
    /// Nothing was in flight and no timer was set: the protocol cannot progress.
    Stalled,
}

/// An update on its way to the coordinator.
struct Arrival {
    at: Time,
    seq: u64,
    client: ClientId,
    round: u32,
    update: Update,
}

impl PartialEq for Arrival {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Arrival {}
impl PartialOrd for Arrival {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Arrival {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A coordinator and its in-process clients on a virtual clock.
pub struct Simulator<'a> {
    federation: Federation<'a>,
    coordinator: Coordinator,
    network: NetworkModel,
    now: Time,
    in_flight: BinaryHeap<Reverse<Arrival>>,
    next_seq: u64,
}

impl<'a> Simulator<'a> {
    /// A simulation of `coordinator` with the clients of `federation` over `network`.
    pub fn new(federation: Federation<'a>, coordinator: Coordinator, network: NetworkModel) -> Self {
        Self { federation, coordinator, network, now: Time(0), in_flight: BinaryHeap::new(), next_seq: 0 }
    }

    /// The virtual time.
    pub fn now(&self) -> Time {
        self.now
    }

    /// Runs until the coordinator finishes or `on_round` breaks, calling `on_round` as each
    /// round closes (before the next round's clients train).
    pub fn run(&mut self, mut on_round: impl FnMut(&RoundOutcome) -> ControlFlow<()>) -> SimEnd {
        self.coordinator.handle_start(self.now);
        loop {
            let mut requests = Vec::new();
            while let Some(action) = self.coordinator.poll_action() {
                match action {
                    Action::Train(request) => requests.push(request),
                    Action::RoundClosed(outcome) => {
                        if on_round(&outcome).is_break() {
                            return SimEnd::Stopped;
                        }
                    }
                    Action::Finished => return SimEnd::Finished,
                }
            }
            self.train(requests);
            if !self.step() {
                return SimEnd::Stalled;
            }
        }
    }

    /// Trains the requested clients in parallel and puts their updates in flight.
    fn train(&mut self, requests: Vec<TrainRequest>) {
        let fed = &self.federation;
        let updates: Vec<Update> = requests
            .par_iter()
            .map_init(Scratch::default, |scratch, req| {
                let k = req.client.0 as usize;
                let mut rng = SplitMix64::stream(fed.task_seed, Purpose::BatchOrder, u64::from(req.round), k as u64);
                let local = train_local(
                    fed.model,
                    req.params.values(),
                    fed.train,
                    fed.partition.client(k),
                    &fed.sgd,
                    &mut rng,
                    scratch,
                );
                Update { params: local.params, num_examples: local.num_examples as u64, train_loss: local.mean_loss }
            })
            .collect();
        let at = self.now.plus_ms(2 * self.network.latency_ms);
        for (req, update) in requests.into_iter().zip(updates) {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.in_flight.push(Reverse(Arrival { at, seq, client: req.client, round: req.round, update }));
        }
    }

    /// Advances the clock to the next arrival or deadline and handles it. Arrivals due at a
    /// deadline are delivered before it fires. Returns false when nothing is pending.
    fn step(&mut self) -> bool {
        let arrival_at = self.in_flight.peek().map(|Reverse(a)| a.at);
        let timer_at = self.coordinator.poll_timeout();
        let deliver = match (arrival_at, timer_at) {
            (Some(a), Some(t)) => a <= t,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return false,
        };
        if deliver {
            let Reverse(arrival) = self.in_flight.pop().expect("peeked");
            self.now = self.now.max(arrival.at);
            // A refused update is counted in the round's outcome; the round goes on.
            let _ = self.coordinator.handle_update(self.now, arrival.client, arrival.round, arrival.update);
        } else if let Some(t) = timer_at {
            self.now = self.now.max(t);
            self.coordinator.handle_timeout(self.now);
        }
        true
    }
}
