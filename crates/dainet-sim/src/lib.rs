//! Run many virtual nodes on one clock from one seed.
//!
//! The [`Simulator`] is a network of nodes: the very [`Coordinator`] and [`Trainer`]s a
//! networked node runs, each with its mailbox, on one virtual clock. Every message travels as
//! its wire frame ([`dainet_protocol::wire`]) over a modelled network ([`network`]: latency,
//! bandwidth by encoded bytes, loss, slow devices, crashes and restarts), the global model as a
//! blob a trainer fetches by hash; the coordinator's deadlines fire when the clock reaches
//! them; the simulator hosts the trainers and trains them in-process on their share of the data
//! when they ask. It makes no protocol decision: sampling, validation, secure aggregation,
//! privacy accounting and when a round closes are the state machines'. What it adds are the
//! faults of an evaluation (Byzantine clients and their attacks, stragglers, dropouts; see
//! [`faults`]) and the network's.
//!
//! # Guarantees
//! - **Determinism.** Messages due at the same virtual time reach the trainers together, and
//!   the trainers handle them (and train) in parallel on rayon's pool; what they send is
//!   collected in client order and delivered in `(arrival time, sequence number)` order, and
//!   every random choice (a lost message, a slow device) comes from a seeded stream. So the
//!   same seed gives the same bytes whatever the thread count.
//! - **No wall clock.** Virtual time only advances to the next arrival, deadline, finished
//!   training or crash; wall-clock timings are the caller's to take.
//! - **Real frames.** What a trainer or the coordinator receives is decoded from the bytes the
//!   other side encoded, with the receiver's size limits; a round's traffic is counted in those
//!   bytes ([`RoundTraffic`]).
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
//! let mut sim = Simulator::new(federation, coordinator, NetworkModel::default()).unwrap();
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
mod host;
pub mod network;

use dainet_core::{Params, Time};
use dainet_ml::data::Partition;
use dainet_ml::{Dataset, Model, SgdConfig};
use dainet_privacy::secagg::ClientMessage;
use dainet_protocol::wire::{self, ModelRef, ToTrainerFrame, WireLimits};
use dainet_protocol::{
    Action, ClientId, Coordinator, Finish, LedgerRecord, RoundOutcome, ToCoordinator, ToTrainer, TrainRequest, Trainer,
    TrainerAction, Update,
};
use faults::{Faults, RoundFaults};
use host::Host;
pub use network::{Crash, NetworkModel};
use network::{Direction, Links};
use rayon::prelude::*;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::ops::ControlFlow;
use std::sync::Arc;

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
    /// A round closed, with the faults its clients suffered and what it cost the network.
    RoundClosed(&'e RoundOutcome, &'e RoundFaults, &'e RoundTraffic),
}

/// What a round cost on the network: what was sent between the close of the round before and
/// this one's (the round's lifetime), and what its deadline cut off.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoundTraffic {
    /// Virtual milliseconds from the previous round's close (or the start) to this one's.
    pub round_ms: u64,
    /// Encoded bytes sent to trainers: frames, and model blobs a trainer did not hold yet.
    pub bytes_to_trainers: u64,
    /// Encoded bytes sent to the coordinator.
    pub bytes_to_coordinator: u64,
    /// Messages sent, both ways.
    pub messages: u64,
    /// Messages the network lost.
    pub lost: u64,
    /// Messages that reached a crashed trainer.
    pub to_crashed: u64,
    /// This round's updates (or, under secure aggregation, its "ready" and masked inputs) still
    /// being trained or on the wire when the round closed: cut by its deadline.
    pub cut_by_deadline: u64,
}

/// What happens at a virtual time.
enum Event {
    /// A frame from the coordinator reaches a trainer.
    ToTrainer { to: ClientId, frame: Vec<u8> },
    /// A frame from a trainer reaches the coordinator; `update_of` is the round whose update
    /// (or secure-round "ready" or masked input) it carries.
    ToCoordinator { from: ClientId, frame: Vec<u8>, update_of: Option<u32> },
    /// A trainer's training for `round` is done (its `life`-th life: a crash ends a life).
    Trained { client: ClientId, life: u32, round: u32, update: Update },
    /// A trainer crashes; it restarts `down_ms` later, if ever.
    Crash { client: ClientId, down_ms: Option<u64> },
    /// A crashed trainer comes back, with a fresh state.
    Restart { client: ClientId },
}

/// An event due at a time.
struct Scheduled {
    at: Time,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A trainer node: its state machine, whether it is up, and which model blob it holds.
struct TrainerNode {
    trainer: Trainer,
    up: bool,
    /// Incremented by each crash, so training that finishes after one is dropped.
    life: u32,
    /// The hash of the model blob it fetched last.
    holds: Option<[u8; 32]>,
}

/// The global models trainers may still fetch (the current one and the one before), by hash.
#[derive(Default)]
struct Models {
    recent: Vec<(ModelRef, Arc<Params>, usize)>,
}

impl Models {
    /// The reference and blob length of `params`, publishing it if it is new.
    fn publish(&mut self, params: &Arc<Params>) -> (ModelRef, usize) {
        if let Some((model, _, len)) = self.recent.iter().find(|(_, p, _)| Arc::ptr_eq(p, params)) {
            return (*model, *len);
        }
        let model = ModelRef::of(params);
        let len = wire::model_blob_len(params.values().len());
        if self.recent.len() == 2 {
            self.recent.remove(0);
        }
        self.recent.push((model, params.clone(), len));
        (model, len)
    }

    fn get(&self, model: &ModelRef) -> Option<Arc<Params>> {
        self.recent.iter().find(|(m, _, _)| m == model).map(|(_, p, _)| p.clone())
    }
}

/// A simulated federation in progress. See the crate docs.
pub struct Simulator<'a> {
    host: Host<'a>,
    coordinator: Coordinator,
    trainers: Vec<TrainerNode>,
    links: Links,
    limits: WireLimits,
    models: Models,
    now: Time,
    queue: BinaryHeap<Reverse<Scheduled>>,
    next_seq: u64,
    /// This round's traffic so far.
    traffic: RoundTraffic,
    /// When the previous round closed.
    last_close: Time,
    /// Messages the trainers sent and the caller has not seen yet (only when it asked to).
    sent: Vec<(ClientId, ToCoordinator)>,
    /// Whether to report what the trainers send ([`SimEvent::TrainerSent`]).
    report_sent: bool,
}

/// What one trainer did with what reached it at one instant.
#[derive(Default)]
struct TrainerStep {
    /// Training it asked its host for.
    train: Option<TrainRequest>,
    /// What it sent, in order.
    sent: Vec<ToCoordinator>,
}

/// What reached one trainer at one instant: messages, then finished trainings.
#[derive(Default)]
struct Inbox {
    messages: Vec<ToTrainer>,
    trained: Vec<(u32, Update)>,
}

/// Why a simulation cannot start.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the network model: {0}")]
pub struct NetworkError(String);

impl<'a> Simulator<'a> {
    /// A simulation of `coordinator` with one [`Trainer`] per client of `federation` over
    /// `network`; refused if the network's settings are out of range.
    pub fn new(
        federation: Federation<'a>,
        coordinator: Coordinator,
        network: NetworkModel,
    ) -> Result<Self, NetworkError> {
        let seed = federation.task_seed;
        let clients = federation.partition.num_clients() as u32;
        network.validate(clients).map_err(NetworkError)?;
        let trainers = (0..clients)
            .map(|k| TrainerNode { trainer: Trainer::new(ClientId(k), seed), up: true, life: 0, holds: None })
            .collect();
        let crashes = network.crashes.clone();
        let limits = coordinator.wire_limits();
        let mut sim = Self {
            host: Host::new(federation),
            coordinator,
            trainers,
            links: Links::new(network, seed, clients),
            limits,
            models: Models::default(),
            now: Time(0),
            queue: BinaryHeap::new(),
            next_seq: 0,
            traffic: RoundTraffic::default(),
            last_close: Time(0),
            sent: Vec::new(),
            report_sent: false,
        };
        for crash in crashes {
            sim.schedule(Time(crash.at_ms), Event::Crash { client: ClientId(crash.client), down_ms: crash.down_ms });
        }
        Ok(sim)
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
            SimEvent::RoundClosed(outcome, faults, _) => on_round(outcome, faults),
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
                        let faults = self.host.faults.remove(&outcome.round).unwrap_or_default();
                        let traffic = self.close_traffic(outcome.round, outcome.closed_at);
                        on_event(SimEvent::RoundClosed(&outcome, &faults, &traffic))
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

    /// The traffic of the round that just closed, with what its deadline cut; starts the next.
    fn close_traffic(&mut self, round: u32, closed_at: Time) -> RoundTraffic {
        let cut = self
            .queue
            .iter()
            .filter(|Reverse(s)| match &s.event {
                Event::ToCoordinator { update_of, .. } => *update_of == Some(round),
                Event::Trained { client, life, round: r, .. } => {
                    *r == round && self.trainers.get(client.0 as usize).is_some_and(|t| t.life == *life)
                }
                _ => false,
            })
            .count() as u64;
        let mut traffic = std::mem::take(&mut self.traffic);
        traffic.cut_by_deadline = cut;
        traffic.round_ms = closed_at.0.saturating_sub(self.last_close.0);
        self.last_close = closed_at;
        traffic
    }

    fn schedule(&mut self, at: Time, event: Event) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Reverse(Scheduled { at, seq, event }));
    }

    /// Puts `frame` on the wire between the coordinator and `client`, unless the network
    /// loses it. `extra` bytes travel with it (a model blob).
    fn transmit(
        &mut self,
        client: ClientId,
        direction: Direction,
        frame: Vec<u8>,
        extra: usize,
        event: impl FnOnce(Vec<u8>) -> Event,
    ) -> bool {
        let bytes = frame.len() + extra;
        match direction {
            Direction::ToTrainer => self.traffic.bytes_to_trainers += bytes as u64,
            Direction::ToCoordinator => self.traffic.bytes_to_coordinator += bytes as u64,
        }
        self.traffic.messages += 1;
        let at = self.links.arrival(self.now, client.0, direction, bytes);
        if self.links.lost(self.next_seq) {
            // The sequence number is spent either way, so a loss changes no other draw.
            self.next_seq += 1;
            self.traffic.lost += 1;
            return false;
        }
        self.schedule(at, event(frame));
        true
    }

    /// Puts a coordinator's message to `to` on the wire, unless `to` drops out of the round
    /// (it then never gets the request and never answers).
    fn send_to_trainer(&mut self, to: ClientId, message: ToTrainer) {
        if to.0 as usize >= self.trainers.len() {
            return;
        }
        let (frame, extra, model) = match &message {
            ToTrainer::Train(request) => {
                let fed = &self.host.federation;
                let round = request.round;
                if fed.faults.drops_out(fed.task_seed, round, to.0) {
                    self.host.faults.entry(round).or_default().dropouts += 1;
                    return;
                }
                let silent = fed.faults.silent_after_masking(fed.task_seed, round, to.0);
                if let Some(node) = self.trainers.get_mut(to.0 as usize) {
                    node.trainer.set_silent_after_masking(silent);
                }
                let (model, blob) = self.models.publish(&request.params);
                let held = self.trainers.get(to.0 as usize).and_then(|n| n.holds) == Some(model.hash);
                (wire::encode_train_request(request, model), if held { 0 } else { blob }, Some(model.hash))
            }
            _ => (wire::encode_to_trainer(&message), 0, None),
        };
        let arrived = self.transmit(to, Direction::ToTrainer, frame, extra, |frame| Event::ToTrainer { to, frame });
        if let (true, Some(hash)) = (arrived, model) {
            if let Some(node) = self.trainers.get_mut(to.0 as usize) {
                node.holds = Some(hash);
            }
        }
    }

    /// Advances the clock to the next event or deadline and handles it: every event due then
    /// is handled (the trainers' in parallel) before a deadline due at the same time fires.
    /// Returns false when nothing is pending.
    fn step(&mut self) -> bool {
        let event_at = self.queue.peek().map(|Reverse(s)| s.at);
        let timer_at = self.coordinator.poll_timeout();
        let at = match (event_at, timer_at) {
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
        let mut inboxes: BTreeMap<ClientId, Inbox> = BTreeMap::new();
        while self.queue.peek().is_some_and(|Reverse(s)| s.at == at) {
            let Some(Reverse(scheduled)) = self.queue.pop() else { break };
            match scheduled.event {
                Event::ToTrainer { to, frame } => {
                    if !self.trainers.get(to.0 as usize).is_some_and(|t| t.up) {
                        self.traffic.to_crashed += 1;
                        continue;
                    }
                    if let Some(message) = self.receive(&frame) {
                        inboxes.entry(to).or_default().messages.push(message);
                    }
                }
                Event::ToCoordinator { from, frame, .. } => {
                    // A refused frame is counted in the round's outcome; the round goes on.
                    let _ = self.coordinator.handle_frame(self.now, from, &frame);
                }
                Event::Trained { client, life, round, update } => {
                    if self.trainers.get(client.0 as usize).is_some_and(|t| t.up && t.life == life) {
                        inboxes.entry(client).or_default().trained.push((round, update));
                    }
                }
                Event::Crash { client, down_ms } => self.crash(client, down_ms),
                Event::Restart { client } => {
                    if let Some(node) = self.trainers.get_mut(client.0 as usize) {
                        node.up = true;
                    }
                }
            }
        }
        if !inboxes.is_empty() {
            self.run_trainers(inboxes);
        }
        true
    }

    /// A trainer goes down: it forgets everything (a fresh state machine when it restarts),
    /// and its training under way is lost.
    fn crash(&mut self, client: ClientId, down_ms: Option<u64>) {
        let seed = self.host.federation.task_seed;
        let Some(node) = self.trainers.get_mut(client.0 as usize) else { return };
        *node = TrainerNode { trainer: Trainer::new(client, seed), up: false, life: node.life + 1, holds: None };
        if let Some(ms) = down_ms {
            self.schedule(self.now.plus_ms(ms), Event::Restart { client });
        }
    }

    /// The message in a frame to a trainer, its model fetched from the published blobs. A
    /// frame a trainer cannot read is dropped, as a trainer would.
    fn receive(&self, frame: &[u8]) -> Option<ToTrainer> {
        match wire::decode_to_trainer(frame, self.limits).ok()? {
            ToTrainerFrame::Train(announcement) => {
                // The blob was checked against the reference when it was published.
                let params = self.models.get(&announcement.model)?;
                Some(ToTrainer::Train(TrainRequest {
                    round: announcement.round,
                    client: announcement.client,
                    params,
                    upload: announcement.upload,
                }))
            }
            ToTrainerFrame::Message(message) => Some(message),
            ToTrainerFrame::Rejected(_) => None,
        }
    }

    /// The trainers handle what reached them, train if asked, and send what they have to.
    fn run_trainers(&mut self, inboxes: BTreeMap<ClientId, Inbox>) {
        let now = self.now;
        // Out of `self` while they work, so the host can train beside them.
        let mut trainers = std::mem::take(&mut self.trainers);
        // The addressed trainers only (trainer k is at index k; the inboxes are in client
        // order), so an instant costs what reaches it, not the size of the federation.
        let mut busy: Vec<(&mut Trainer, Inbox)> = Vec::with_capacity(inboxes.len());
        let (mut rest, mut first_index) = (trainers.as_mut_slice(), 0usize);
        for (client, inbox) in inboxes {
            let Some(skip) = (client.0 as usize).checked_sub(first_index) else { continue };
            let Some((node, tail)) =
                std::mem::take(&mut rest).get_mut(skip..).and_then(<[TrainerNode]>::split_first_mut)
            else {
                break;
            };
            busy.push((&mut node.trainer, inbox));
            rest = tail;
            first_index = client.0 as usize + 1;
        }
        // Messages and finished trainings first: each trainer alone, so in parallel (SecAgg+
        // masking is the costly part).
        let mut steps: Vec<TrainerStep> = busy
            .par_iter_mut()
            .map(|(trainer, inbox)| {
                let mut step = TrainerStep::default();
                for message in inbox.messages.drain(..) {
                    // A trainer that refuses a message ignores it (a fault the round survives).
                    let _ = trainer.handle_message(now, message);
                }
                collect(trainer, &mut step);
                for (round, update) in inbox.trained.drain(..) {
                    // It asked for exactly this training.
                    let _ = trainer.handle_trained(now, round, update);
                    collect(trainer, &mut step);
                }
                step
            })
            .collect();
        // Then the training the trainers asked for, all at once: an attack may need the round's
        // other updates.
        let requests: Vec<(usize, TrainRequest)> =
            steps.iter_mut().enumerate().filter_map(|(i, s)| s.train.take().map(|r| (i, r))).collect();
        let mut later: Vec<(ClientId, u32, u64, Update)> = Vec::new();
        if !requests.is_empty() {
            let updates = self.host.train(requests.iter().map(|(_, r)| r).collect());
            let mut results: Vec<Option<(u32, Update)>> = vec![None; busy.len()];
            for ((i, request), update) in requests.into_iter().zip(updates) {
                let ms = self.training_ms(&request);
                if ms == 0 {
                    results[i] = Some((request.round, update));
                } else {
                    later.push((request.client, request.round, ms, update));
                }
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
        let sent: Vec<(ClientId, Vec<ToCoordinator>)> =
            busy.iter().map(|(t, _)| t.client()).zip(steps.into_iter().map(|s| s.sent)).collect();
        drop(busy);
        self.trainers = trainers;
        for (client, round, ms, update) in later {
            let life = self.trainers.get(client.0 as usize).map_or(0, |t| t.life);
            self.schedule(now.plus_ms(ms), Event::Trained { client, life, round, update });
        }
        for (from, messages) in sent {
            for message in messages {
                if self.report_sent {
                    self.sent.push((from, message.clone()));
                }
                let update_of = match &message {
                    ToCoordinator::Update { round, .. }
                    | ToCoordinator::Ready { round }
                    | ToCoordinator::SecAgg { round, message: ClientMessage::MaskedInput { .. } } => Some(*round),
                    ToCoordinator::SecAgg { .. } => None,
                };
                let frame = wire::encode_to_coordinator(&message);
                self.transmit(from, Direction::ToCoordinator, frame, 0, |frame| Event::ToCoordinator {
                    from,
                    frame,
                    update_of,
                });
            }
        }
    }

    /// Virtual milliseconds `request`'s training takes on its client: 6 operations a parameter
    /// an example an epoch run.
    fn training_ms(&self, request: &TrainRequest) -> u64 {
        if self.links.model().compute_gflops.is_none() {
            return 0;
        }
        let fed = &self.host.federation;
        let k = request.client.0;
        let examples = fed.partition.client(k as usize).len() as f64;
        let epochs = fed.faults.epochs(fed.task_seed, request.round, k, fed.sgd.epochs) as f64;
        let operations = 6.0 * request.params.values().len() as f64 * examples * epochs;
        self.links.compute_ms(k, operations)
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
