//! Run many virtual nodes on one clock from one seed.
//!
//! The [`Simulator`] drives the very [`Coordinator`] and [`Trainer`]s a networked node runs:
//! it carries every message between them after a simulated network delay on a virtual clock,
//! fires the coordinator's timers when the clock reaches them, and is the trainers' host — it
//! trains them in-process on their share of the data when they ask. It makes no protocol
//! decision: sampling, validation, secure aggregation, privacy accounting and when a round
//! closes are the state machines'. What it adds are the faults of an evaluation (Byzantine
//! clients and their attacks, stragglers, dropouts; see [`faults`]).
//!
//! # Guarantees
//! - **Determinism.** Messages due at the same virtual time reach the trainers together, and
//!   the trainers handle them (and train) in parallel on rayon's pool; what they send is
//!   collected in client order and delivered in `(arrival time, sequence number)` order, and
//!   every random choice comes from a seeded stream. So the same seed gives the same bytes
//!   whatever the thread count.
//! - **No wall clock.** Virtual time only advances to the next arrival or deadline; wall-clock
//!   timings are the caller's to take.
//!
//! # Example
//! Ten clients with two Gaussian blobs each, three rounds of FedAvg:
//! ```
//! use dainet_ml::data::partition::{partition, PartitionScheme};
//! use dainet_ml::{Dataset, ModelSpec, SgdConfig};
//! use dainet_agg::strategy::{RobustParams, Strategy, StrategyConfig};
//! use dainet_protocol::{Coordinator, RoundConfig};
//! use dainet_sim::{faults::Faults, Federation, NetworkModel, SimEnd, Simulator};
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
//!     round_timeout_ms: None, min_updates: 1, secure: None, privacy: None,
//! };
//! let fedavg = Strategy::new(StrategyConfig::named("fedavg", &RobustParams::default()).unwrap(), 1).unwrap();
//! let coordinator = Coordinator::new(rounds, fedavg, model.init(1), 1).unwrap();
//! let federation = Federation {
//!     model: model.as_ref(), train: &data, partition: &part, sgd: SgdConfig::default(), task_seed: 1,
//!     faults: Faults::default(), carry_momentum: false,
//! };
//! let mut sim = Simulator::new(federation, coordinator, NetworkModel::default());
//! let mut closed = Vec::new();
//! let end = sim.run(|outcome, _faults| {
//!     closed.push((outcome.round, outcome.contributors.len()));
//!     std::ops::ControlFlow::Continue(())
//! });
//! assert_eq!(end, SimEnd::Finished(dainet_protocol::Finish::LastRound));
//! assert_eq!(closed, vec![(1, 3), (2, 3), (3, 3)]);
//! assert_eq!(sim.now().0, 300); // three round trips of 2 x 50 ms
//! ```
//!
//! Stability: ALPHA.
#![deny(missing_docs)]

pub mod faults;

use dainet_agg::attack;
use dainet_core::{Purpose, SplitMix64};
use dainet_ml::data::poison::{backdoor_dataset, flip_labels};
use dainet_ml::data::Partition;
use dainet_ml::{train_local_with_momentum, Dataset, Model, Scratch, SgdConfig};
use dainet_protocol::{
    Action, ClientId, Coordinator, Finish, LedgerRecord, RoundOutcome, Time, ToCoordinator, ToTrainer, TrainRequest,
    Trainer, TrainerAction, Update,
};
use faults::{Attack, Faults, RoundFaults};
use rayon::prelude::*;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
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
    /// Byzantine clients, stragglers, dropouts (none by default).
    pub faults: Faults,
    /// Whether each client keeps its SGD momentum from one participation to the next
    /// (worker momentum; with `sgd.momentum > 0`). Off by default: momentum restarts each round.
    pub carry_momentum: bool,
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

/// Client `req.client`'s local training, on poisoned data if it runs a data attack.
fn train_client(fed: &Federation<'_>, req: &TrainRequest, scratch: &mut Scratch, velocity: &mut Vec<f32>) -> Update {
    let k = req.client.0 as usize;
    let (round, client) = (u64::from(req.round), k as u64);
    let mut rng = SplitMix64::stream(fed.task_seed, Purpose::BatchOrder, round, client);
    let mut sgd = fed.sgd.clone();
    sgd.epochs = fed.faults.epochs(fed.task_seed, req.round, req.client.0, sgd.epochs);
    let indices = fed.partition.client(k);
    let poisoned: Option<Dataset> = match &fed.faults.attack {
        Some(Attack::LabelFlip) if fed.faults.attacks(req.client.0) => {
            let mut data = fed.train.select(indices);
            let mut labels = data.labels().to_vec();
            flip_labels(&mut labels, data.num_classes()).expect("dataset labels lie below its class count");
            data = Dataset::new(data.features().to_vec(), labels, data.dim(), data.num_classes())
                .expect("flipped labels stay below the class count");
            Some(data)
        }
        Some(Attack::Backdoor { trigger, target, poison_fraction, .. }) if fed.faults.attacks(req.client.0) => {
            let mut attack_rng = SplitMix64::stream(fed.task_seed, Purpose::Attack, round, client);
            // Validated when the attack was configured (image data, target below the classes).
            backdoor_dataset(fed.train, indices, trigger, *target, *poison_fraction, &mut attack_rng).ok()
        }
        _ => None,
    };
    let local = match &poisoned {
        Some(data) => {
            let all: Vec<usize> = (0..data.len()).collect();
            train_local_with_momentum(fed.model, req.params.values(), data, &all, &sgd, &mut rng, scratch, velocity)
        }
        None => train_local_with_momentum(
            fed.model,
            req.params.values(),
            fed.train,
            indices,
            &sgd,
            &mut rng,
            scratch,
            velocity,
        ),
    };
    Update { params: local.params, num_examples: local.num_examples as u64, train_loss: local.mean_loss }
}

/// How the simulation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum SimEnd {
    /// The coordinator finished, for this reason.
    Finished(Finish),
    /// The round callback asked to stop.
    Stopped,
    /// Nothing was in flight and no timer was set: the protocol cannot progress.
    Stalled,
}

/// What a simulation tells its caller as it runs (see [`Simulator::run_events`]).
#[derive(Debug)]
pub enum SimEvent<'e> {
    /// The coordinator asks for this to be submitted to the ledger, before what follows.
    Record(LedgerRecord),
    /// A trainer sent this to the coordinator (what a trainer that keeps its own updates
    /// stores).
    TrainerSent {
        /// The trainer.
        client: ClientId,
        /// The message.
        message: &'e ToCoordinator,
    },
    /// A round closed, with the faults its clients suffered.
    RoundClosed(&'e RoundOutcome, &'e RoundFaults),
}

/// A message on the simulated network.
enum Message {
    ToTrainer(ClientId, ToTrainer),
    /// From a trainer.
    ToCoordinator(ClientId, ToCoordinator),
}

/// A message on its way.
struct Delivery {
    at: Time,
    seq: u64,
    message: Message,
}

impl PartialEq for Delivery {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Delivery {}
impl PartialOrd for Delivery {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delivery {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A coordinator and its trainers on a virtual clock.
pub struct Simulator<'a> {
    federation: Federation<'a>,
    coordinator: Coordinator,
    trainers: Vec<Trainer>,
    network: NetworkModel,
    now: Time,
    in_flight: BinaryHeap<Reverse<Delivery>>,
    next_seq: u64,
    /// Faults of the rounds not yet closed, by round.
    faults: BTreeMap<u32, RoundFaults>,
    /// Each client's momentum, kept between its rounds when `carry_momentum` is on.
    momentum: BTreeMap<u32, Vec<f32>>,
    /// Messages the trainers sent and the caller has not seen yet (only when it asked to).
    sent: Vec<(ClientId, ToCoordinator)>,
    /// Whether to report what the trainers send ([`SimEvent::TrainerSent`]).
    report_sent: bool,
}

/// What one trainer did with the messages that reached it at one instant.
#[derive(Default)]
struct TrainerStep {
    /// Training it asked its host for.
    train: Option<TrainRequest>,
    /// What it sent, in order.
    sent: Vec<ToCoordinator>,
}

impl<'a> Simulator<'a> {
    /// A simulation of `coordinator` with one [`Trainer`] per client of `federation` over
    /// `network`.
    pub fn new(federation: Federation<'a>, coordinator: Coordinator, network: NetworkModel) -> Self {
        let seed = federation.task_seed;
        let trainers =
            (0..federation.partition.num_clients() as u32).map(|k| Trainer::new(ClientId(k), seed)).collect();
        Self {
            federation,
            coordinator,
            trainers,
            network,
            now: Time(0),
            in_flight: BinaryHeap::new(),
            next_seq: 0,
            faults: Default::default(),
            momentum: Default::default(),
            sent: Vec::new(),
            report_sent: false,
        }
    }

    /// Reports every message a trainer sends ([`SimEvent::TrainerSent`]): what a trainer that
    /// keeps its own updates stores. Off by default (it copies each update).
    pub fn reporting_trainer_messages(mut self) -> Self {
        self.report_sent = true;
        self
    }

    /// The virtual time.
    pub fn now(&self) -> Time {
        self.now
    }

    /// The coordinator (for its strategy's state, to checkpoint).
    pub fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    /// Runs until the coordinator finishes or `on_round` breaks, calling `on_round` with each
    /// round's outcome and faults as it closes (before the next round's clients train).
    pub fn run(&mut self, mut on_round: impl FnMut(&RoundOutcome, &RoundFaults) -> ControlFlow<()>) -> SimEnd {
        self.run_events(|event| match event {
            SimEvent::RoundClosed(outcome, faults) => on_round(outcome, faults),
            _ => ControlFlow::Continue(()),
        })
    }

    /// Runs until the coordinator finishes or `on_event` breaks, telling `on_event` of every
    /// ledger record, every round that closes and (if asked for) every message a trainer
    /// sends, in the order they happen: a record comes before the messages the coordinator
    /// sends after it.
    pub fn run_events(&mut self, mut on_event: impl FnMut(SimEvent<'_>) -> ControlFlow<()>) -> SimEnd {
        self.coordinator.handle_start(self.now);
        loop {
            for (client, message) in std::mem::take(&mut self.sent) {
                if on_event(SimEvent::TrainerSent { client, message: &message }).is_break() {
                    return SimEnd::Stopped;
                }
            }
            while let Some(action) = self.coordinator.poll_action() {
                let flow = match action {
                    Action::Send { to, message } => {
                        self.send_to_trainer(to, message);
                        ControlFlow::Continue(())
                    }
                    Action::Record(record) => on_event(SimEvent::Record(record)),
                    Action::RoundClosed(outcome) => {
                        let faults = self.faults.remove(&outcome.round).unwrap_or_default();
                        on_event(SimEvent::RoundClosed(&outcome, &faults))
                    }
                    Action::Finished(why) => return SimEnd::Finished(why),
                    // Refusals are counted in the round's outcome.
                    Action::Accepted(_) | Action::Rejected { .. } => ControlFlow::Continue(()),
                };
                if flow.is_break() {
                    return SimEnd::Stopped;
                }
            }
            if !self.step() {
                return SimEnd::Stalled;
            }
        }
    }

    fn send(&mut self, at: Time, message: Message) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.push(Reverse(Delivery { at, seq, message }));
    }

    /// Puts a coordinator's message to `to` in flight, unless `to` drops out of the round (it
    /// then never gets the request and never answers).
    fn send_to_trainer(&mut self, to: ClientId, message: ToTrainer) {
        let fed = &self.federation;
        if let ToTrainer::Train(request) = &message {
            let round = request.round;
            if fed.faults.drops_out(fed.task_seed, round, to.0) {
                self.faults.entry(round).or_default().dropouts += 1;
                return;
            }
            let silent = fed.faults.silent_after_masking(fed.task_seed, round, to.0);
            if let Some(trainer) = self.trainers.get_mut(to.0 as usize) {
                trainer.set_silent_after_masking(silent);
            }
        }
        let at = self.now.plus_ms(self.network.latency_ms);
        self.send(at, Message::ToTrainer(to, message));
    }

    /// Advances the clock to the next delivery or deadline and handles it: every message due
    /// then is delivered (the trainers' in parallel) before a deadline due at the same time
    /// fires. Returns false when nothing is pending.
    fn step(&mut self) -> bool {
        let arrival_at = self.in_flight.peek().map(|Reverse(d)| d.at);
        let timer_at = self.coordinator.poll_timeout();
        let at = match (arrival_at, timer_at) {
            (Some(a), Some(t)) if a <= t => a,
            (Some(a), None) => a,
            (_, Some(t)) => {
                self.now = self.now.max(t);
                self.coordinator.handle_timeout(self.now);
                return true;
            }
            (None, None) => return false,
        };
        self.now = self.now.max(at);
        let mut to_trainers: BTreeMap<ClientId, Vec<ToTrainer>> = BTreeMap::new();
        while self.in_flight.peek().is_some_and(|Reverse(d)| d.at == at) {
            let Reverse(delivery) = self.in_flight.pop().expect("peeked");
            match delivery.message {
                Message::ToTrainer(to, message) => to_trainers.entry(to).or_default().push(message),
                Message::ToCoordinator(from, message) => self.deliver_to_coordinator(from, message),
            }
        }
        if !to_trainers.is_empty() {
            self.run_trainers(to_trainers);
        }
        true
    }

    fn deliver_to_coordinator(&mut self, from: ClientId, message: ToCoordinator) {
        // A refused message is counted in the round's outcome; the round goes on.
        let _ = self.coordinator.handle_message(self.now, from, message);
    }

    /// The trainers handle what reached them, train if asked, and send what they have to.
    fn run_trainers(&mut self, inbox: BTreeMap<ClientId, Vec<ToTrainer>>) {
        let now = self.now;
        // Out of `self` while they work, so the host can train beside them.
        let mut trainers = std::mem::take(&mut self.trainers);
        // The addressed trainers only (trainer k is at index k; the inbox is in client order),
        // so an instant costs what reaches it, not the size of the federation.
        let mut busy: Vec<(&mut Trainer, Vec<ToTrainer>)> = Vec::with_capacity(inbox.len());
        let (mut rest, mut first_index) = (trainers.as_mut_slice(), 0usize);
        for (client, messages) in inbox {
            let Some(skip) = (client.0 as usize).checked_sub(first_index) else { continue };
            let Some((trainer, tail)) =
                std::mem::take(&mut rest).get_mut(skip..).and_then(<[Trainer]>::split_first_mut)
            else {
                break;
            };
            busy.push((trainer, messages));
            rest = tail;
            first_index = client.0 as usize + 1;
        }
        // Messages first: each trainer alone, so in parallel (SecAgg+ masking is the costly part).
        let mut steps: Vec<TrainerStep> = busy
            .par_iter_mut()
            .map(|(trainer, messages)| {
                let mut step = TrainerStep::default();
                for message in messages.drain(..) {
                    // A trainer that refuses a message ignores it (a fault the round survives).
                    let _ = trainer.handle_message(now, message);
                }
                collect(trainer, &mut step);
                step
            })
            .collect();
        // Then the training the trainers asked for, all at once: an attack may need the round's
        // other updates.
        let requests: Vec<(usize, TrainRequest)> =
            steps.iter_mut().enumerate().filter_map(|(i, s)| s.train.take().map(|r| (i, r))).collect();
        if !requests.is_empty() {
            let updates = self.train(requests.iter().map(|(_, r)| r).collect());
            let mut results: Vec<Option<(u32, Update)>> = vec![None; busy.len()];
            for ((i, request), update) in requests.into_iter().zip(updates) {
                results[i] = Some((request.round, update));
            }
            busy.par_iter_mut().zip(steps.par_iter_mut()).zip(results.into_par_iter()).for_each(
                |(((trainer, _), step), result)| {
                    if let Some((round, update)) = result {
                        // It asked for exactly this training.
                        let _ = trainer.handle_trained(now, round, update);
                        collect(trainer, step);
                    }
                },
            );
        }
        let at = now.plus_ms(self.network.latency_ms);
        let sent: Vec<(ClientId, Vec<ToCoordinator>)> =
            busy.iter().map(|(t, _)| t.client()).zip(steps.into_iter().map(|s| s.sent)).collect();
        drop(busy);
        self.trainers = trainers;
        for (from, messages) in sent {
            for message in messages {
                if self.report_sent {
                    self.sent.push((from, message.clone()));
                }
                self.send(at, Message::ToCoordinator(from, message));
            }
        }
    }

    /// Trains the requested clients in parallel and applies the round's faults; returns the
    /// updates in request order.
    fn train(&mut self, requests: Vec<&TrainRequest>) -> Vec<Update> {
        let carry = self.federation.carry_momentum;
        // Each client's carried momentum goes to the one task that trains it and comes back.
        let mut velocities: Vec<Vec<f32>> = requests
            .iter()
            .map(|r| if carry { self.momentum.remove(&r.client.0).unwrap_or_default() } else { Vec::new() })
            .collect();
        let fed = &self.federation;
        let mut updates: Vec<Update> = requests
            .par_iter()
            .zip(velocities.par_iter_mut())
            .map_init(Scratch::default, |scratch, (req, velocity)| train_client(fed, req, scratch, velocity))
            .collect();
        if carry {
            for (req, velocity) in requests.iter().zip(velocities) {
                self.momentum.insert(req.client.0, velocity);
            }
        }
        let stats = self.apply_update_attacks(&requests, &mut updates);
        if let Some(round) = requests.first().map(|r| r.round) {
            let entry = self.faults.entry(round).or_default();
            entry.byzantine += stats.byzantine;
            entry.stragglers += stats.stragglers;
        }
        updates
    }

    /// Replaces the Byzantine clients' updates as their attack says (update attacks only;
    /// data attacks happened in training). Returns the round's Byzantine and straggler counts.
    fn apply_update_attacks(&self, requests: &[&TrainRequest], updates: &mut [Update]) -> RoundFaults {
        let fed = &self.federation;
        let seed = fed.task_seed;
        let mut stats = RoundFaults::default();
        if requests.is_empty() {
            return stats;
        }
        stats.stragglers = requests
            .iter()
            .filter(|r| fed.faults.epochs(seed, r.round, r.client.0, fed.sgd.epochs) < fed.sgd.epochs)
            .count();
        let byz: Vec<usize> = (0..requests.len()).filter(|&i| fed.faults.attacks(requests[i].client.0)).collect();
        stats.byzantine = byz.len();
        let Some(attack) = &fed.faults.attack else { return stats };
        if byz.is_empty() {
            return stats;
        }
        let global = requests[0].params.values();
        let deltas: Vec<Vec<f32>> =
            updates.iter().map(|u| u.params.iter().zip(global).map(|(p, g)| p - g).collect()).collect();
        let refs =
            |idx: &mut dyn Iterator<Item = usize>| -> Vec<&[f32]> { idx.map(|i| deltas[i].as_slice()).collect() };
        let collective: Option<Vec<f32>> = match attack {
            Attack::Alie { z } => {
                let z = z.unwrap_or_else(|| attack::alie_z(requests.len(), byz.len()).unwrap_or(0.0));
                attack::alie(&refs(&mut byz.iter().copied()), z).ok()
            }
            Attack::Ipm { epsilon } => {
                let honest: Vec<&[f32]> = refs(&mut (0..requests.len()).filter(|i| !byz.contains(i)));
                // With no honest client in the round there is nothing to invert: send zeros.
                attack::ipm(&honest, *epsilon).ok().or_else(|| Some(vec![0.0; global.len()]))
            }
            _ => None,
        };
        for &i in &byz {
            let req = requests[i];
            let mut delta = match &collective {
                Some(c) => c.clone(),
                None => deltas[i].clone(),
            };
            match attack {
                Attack::SignFlip { scale } => attack::sign_flip(&mut delta, *scale),
                Attack::GaussianNoise { sigma } => {
                    let mut rng =
                        SplitMix64::stream(seed, Purpose::Attack, u64::from(req.round), u64::from(req.client.0));
                    attack::gaussian_noise(&mut delta, *sigma, &mut rng).expect("sigma checked by Attack::validate");
                }
                Attack::Backdoor { boost, .. } => attack::scale(&mut delta, *boost),
                Attack::LabelFlip | Attack::Alie { .. } | Attack::Ipm { .. } => {}
            }
            updates[i].params = global.iter().zip(&delta).map(|(g, d)| g + d).collect();
        }
        stats
    }
}

/// Moves a trainer's pending actions into `step`.
fn collect(trainer: &mut Trainer, step: &mut TrainerStep) {
    while let Some(action) = trainer.poll_action() {
        match action {
            TrainerAction::Train(request) => step.train = Some(request),
            TrainerAction::Send(message) => step.sent.push(message),
        }
    }
}
