//! A federated round driven by hand: a coordinator and its trainers exchange messages through
//! a plain queue in this test — no simulator, no threads, no network. Every message crosses
//! the queue as its wire frame (`dainet_protocol::wire`), the global model as a blob fetched by
//! hash, so each round here also proves every message of it survives encoding.

use dainet_agg::dp::{privatize_change, Clipping, DpConfig, NoisePlacement};
use dainet_agg::strategy::{RobustParams, Strategy, StrategyConfig};
use dainet_core::{Layout, Params, TensorSpec};
use dainet_protocol::wire::{self, ToTrainerFrame};
use dainet_protocol::{
    Action, ClientId, Coordinator, Finish, PrivacyConfig, Rejection, RoundConfig, RoundOutcome, SecureConfig, Time,
    ToCoordinator, ToTrainer, Trainer, TrainerAction, Update,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

const DIM: usize = 6;
const CLIENTS: u32 = 6;
const PER_ROUND: u32 = 5;
const SEED: u64 = 7;
const CLIP: f64 = 0.5;

fn params(v: Vec<f32>) -> Params {
    let layout = Layout::new(vec![TensorSpec { name: "w".into(), shape: vec![v.len()] }]).unwrap();
    Params::new(Arc::new(layout), v).unwrap()
}

/// Client k's local training: it moves every coordinate of θ by its own amount.
fn local_model(global: &[f32], k: ClientId) -> Vec<f32> {
    global
        .iter()
        .enumerate()
        .map(|(i, g)| g + 0.05 * (k.0 as f32 + 1.0) * if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect()
}

fn dp() -> DpConfig {
    DpConfig {
        noise_multiplier: 1.0,
        clipping: Clipping::Fixed { norm: CLIP },
        placement: NoisePlacement::Distributed,
        clients_per_round: PER_ROUND as usize,
    }
}

fn secure_dp_config(rounds: u32, budget: Option<f64>) -> (RoundConfig, Strategy) {
    let mut strategy = StrategyConfig::named("fedavg", &RobustParams::default()).unwrap();
    strategy.dp = Some(dp());
    let config = RoundConfig {
        task_seed: SEED,
        num_clients: CLIENTS,
        clients_per_round: PER_ROUND,
        rounds,
        round_timeout_ms: Some(1_000),
        min_updates: 1,
        secure: Some(SecureConfig::new(PER_ROUND, None, None, 1.0, 1 << 16, 100)),
        privacy: Some(PrivacyConfig { delta: 1e-5, budget }),
    };
    (config, Strategy::new(strategy, SEED).unwrap())
}

/// Carries messages between `coordinator` and `trainers` until a round closes. Trainers in
/// `crashed` never get anything; `now` advances only to the coordinator's deadlines.
struct Network {
    coordinator: Coordinator,
    trainers: Vec<Trainer>,
    crashed: BTreeSet<ClientId>,
    now: Time,
    to_trainers: VecDeque<(ClientId, Vec<u8>)>,
    to_coordinator: VecDeque<(ClientId, Vec<u8>)>,
    /// Model blobs by hash, published as train requests go out.
    blobs: BTreeMap<[u8; 32], Vec<u8>>,
    rejected: Vec<Rejection>,
}

impl Network {
    fn new(coordinator: Coordinator) -> Self {
        Network {
            coordinator,
            trainers: (0..CLIENTS).map(|k| Trainer::new(ClientId(k), SEED)).collect(),
            crashed: BTreeSet::new(),
            now: Time(0),
            to_trainers: VecDeque::new(),
            to_coordinator: VecDeque::new(),
            blobs: BTreeMap::new(),
            rejected: Vec::new(),
        }
    }

    /// Runs until the next round closes; returns it and whether the run finished (and why).
    fn next_round(&mut self) -> (RoundOutcome, Option<Finish>) {
        let mut closed = None;
        loop {
            while let Some(action) = self.coordinator.poll_action() {
                match action {
                    Action::Send { to, message } => {
                        if let ToTrainer::Train(request) = &message {
                            let model = wire::ModelRef::of(&request.params);
                            self.blobs.entry(model.hash).or_insert_with(|| wire::encode_model(&request.params));
                        }
                        self.to_trainers.push_back((to, wire::encode_to_trainer(&message)));
                    }
                    Action::RoundClosed(outcome) => closed = Some(outcome),
                    Action::Finished(why) => return (closed.expect("a round closed first"), Some(why)),
                    Action::Accepted(_) | Action::Record(_) => {}
                    Action::Rejected { reason, .. } => self.rejected.push(reason),
                }
            }
            if let Some(outcome) = closed.take() {
                // Actions after RoundClosed belong to the next round: keep them for it.
                return (outcome, None);
            }
            if let Some((to, frame)) = self.to_trainers.pop_front() {
                if self.crashed.contains(&to) {
                    continue;
                }
                let message = self.receive(&frame);
                let trainer = &mut self.trainers[to.0 as usize];
                trainer.handle_message(self.now, message).unwrap();
                while let Some(action) = trainer.poll_action() {
                    match action {
                        TrainerAction::Train(request) => {
                            let update = Update {
                                params: local_model(request.params.values(), to),
                                num_examples: 10 + u64::from(to.0),
                                train_loss: 1.0,
                            };
                            trainer.handle_trained(self.now, request.round, update).unwrap();
                        }
                        TrainerAction::Send(message) => {
                            self.to_coordinator.push_back((to, wire::encode_to_coordinator(&message)))
                        }
                    }
                }
                continue;
            }
            if let Some((from, frame)) = self.to_coordinator.pop_front() {
                // Refusals come back as Rejected actions too.
                let _ = self.coordinator.handle_frame(self.now, from, &frame);
                continue;
            }
            let due = self.coordinator.poll_timeout().expect("nothing in flight: the round must have a deadline");
            self.now = due;
            self.coordinator.handle_timeout(due);
        }
    }

    /// The message in a frame to a trainer, its model fetched from the published blobs.
    fn receive(&self, frame: &[u8]) -> ToTrainer {
        match wire::decode_to_trainer(frame, self.coordinator.wire_limits()).unwrap() {
            ToTrainerFrame::Train(announcement) => {
                let blob = &self.blobs[&announcement.model.hash];
                let layout = self.coordinator.global().layout().clone();
                let model = wire::decode_model(blob, &announcement.model, &layout).unwrap();
                ToTrainer::Train(announcement.with_model(Arc::new(model)).unwrap())
            }
            ToTrainerFrame::Message(message) => message,
            ToTrainerFrame::Rejected(notice) => panic!("the coordinator sends no refusals here: {notice:?}"),
        }
    }
}

#[test]
fn a_secure_round_with_dp_survives_a_crash_and_a_dropout_after_masking() {
    let (config, strategy) = secure_dp_config(1, None);
    let global = vec![0.1f32; DIM];
    let mut net = Network::new(Coordinator::new(config, strategy, params(global.clone()), 1).unwrap());
    let sampled = dainet_protocol::sampling::sample_clients(SEED, 1, CLIENTS, PER_ROUND);
    // One sampled trainer crashes before it trains; another falls silent once it has masked.
    let (crashed, silent) = (sampled[0], sampled[1]);
    net.crashed.insert(crashed);
    net.trainers[silent.0 as usize].set_silent_after_masking(true);
    net.coordinator.handle_start(Time(0));
    let (outcome, finished) = net.next_round();

    assert_eq!(finished, Some(Finish::LastRound));
    assert!(outcome.aggregated(), "{:?}", outcome.not_aggregated);
    // The silent trainer's masked input is in the sum: the others' shares unmask it.
    let survivors: Vec<ClientId> = sampled.iter().copied().filter(|&k| k != crashed).collect();
    assert_eq!(outcome.contributors, survivors);
    assert_eq!(outcome.missing, vec![crashed]);
    assert_eq!(outcome.examples, None, "with DP every weight is 1: no example count is revealed");
    assert!(outcome.train_loss.is_nan(), "training losses are not revealed");
    // The crash made the coordinator wait for the round's deadline before opening the session.
    assert!(outcome.closed_at >= Time(1_000));

    // What DP-FedAvg with distributed noise gives: each survivor clips its change and adds its
    // share of the noise; the sum is divided by m, the clients sampled per round.
    let mut sum = vec![0.0f64; DIM];
    for &k in &survivors {
        let mut change: Vec<f32> =
            local_model(&global, k).iter().zip(&global).map(|(&u, &g)| (f64::from(u) - f64::from(g)) as f32).collect();
        privatize_change(&dp(), CLIP, &mut change, SEED, 1, u64::from(k.0));
        for (s, c) in sum.iter_mut().zip(&change) {
            *s += f64::from(*c);
        }
    }
    // Quantisation moves the weighted mean by less than Δ = 2c/(q − 1), so the sum by less
    // than Δ · (survivors), and θ by that over m.
    let step = 2.0 / f64::from((1u32 << 16) - 1);
    let bound = step * survivors.len() as f64 / f64::from(PER_ROUND) + 1e-6;
    for (i, (&theta, s)) in outcome.params.values().iter().zip(&sum).enumerate() {
        let want = f64::from(global[i]) + s / f64::from(PER_ROUND);
        assert!((f64::from(theta) - want).abs() <= bound, "coordinate {i}: {theta} vs {want} (bound {bound})");
    }
    let spent = outcome.privacy.expect("privacy is accounted");
    assert!(spent.epsilon > 0.0 && spent.epsilon.is_finite());
    assert_eq!(spent.epsilon_round, spent.epsilon, "the first round spends everything so far");
}

#[test]
fn the_coordinator_stops_before_a_round_that_would_exceed_the_budget() {
    // ε after one round, then a budget between two and three rounds' worth.
    let (config, strategy) = secure_dp_config(50, None);
    let mut net = Network::new(Coordinator::new(config, strategy, params(vec![0.0; DIM]), 1).unwrap());
    net.coordinator.handle_start(Time(0));
    let epsilons: Vec<f64> = (0..3).map(|_| net.next_round().0.privacy.unwrap().epsilon).collect();
    let budget = (epsilons[1] + epsilons[2]) / 2.0;

    let (config, strategy) = secure_dp_config(50, Some(budget));
    let mut net = Network::new(Coordinator::new(config, strategy, params(vec![0.0; DIM]), 1).unwrap());
    net.coordinator.handle_start(Time(0));
    let (first, finished) = net.next_round();
    assert_eq!(finished, None);
    let (second, finished) = net.next_round();
    let Some(Finish::PrivacyBudget { budget: b, would_reach }) = finished else { panic!("{finished:?}") };
    assert_eq!(b, budget);
    assert!((would_reach - epsilons[2]).abs() < 1e-9 && would_reach > budget);
    // The rounds' own spends add up to the total.
    let (a, b) = (first.privacy.unwrap(), second.privacy.unwrap());
    assert!((a.epsilon_round + b.epsilon_round - b.epsilon).abs() < 1e-12);
    assert!(net.coordinator.poll_action().is_none(), "nothing after Finished");

    // A budget that does not cover the first round is refused up front.
    let (config, strategy) = secure_dp_config(50, Some(epsilons[0] / 2.0));
    let refused = Coordinator::new(config, strategy, params(vec![0.0; DIM]), 1).err().unwrap();
    assert!(refused.to_string().contains("does not cover round 1"), "{refused}");
}

#[test]
fn messages_that_do_not_fit_a_secure_round_are_refused_with_a_reason_and_the_round_goes_on() {
    let (config, strategy) = secure_dp_config(2, None);
    let mut net = Network::new(Coordinator::new(config, strategy, params(vec![0.0; DIM]), 1).unwrap());
    net.coordinator.handle_start(Time(0));
    let sampled = dainet_protocol::sampling::sample_clients(SEED, 1, CLIENTS, PER_ROUND);
    let outsider = (0..CLIENTS).map(ClientId).find(|k| !sampled.contains(k)).unwrap();
    let c = &mut net.coordinator;
    let plain =
        ToCoordinator::Update { round: 1, update: Update { params: vec![0.0; DIM], num_examples: 1, train_loss: 0.0 } };
    let kind = |r: Result<(), Rejection>| r.unwrap_err().kind();
    assert_eq!(kind(c.handle_message(Time(0), sampled[0], plain)), "unexpected");
    assert_eq!(kind(c.handle_message(Time(0), outsider, ToCoordinator::Ready { round: 1 })), "not_sampled");
    assert_eq!(kind(c.handle_message(Time(0), sampled[0], ToCoordinator::Ready { round: 2 })), "wrong_round");
    c.handle_message(Time(0), sampled[0], ToCoordinator::Ready { round: 1 }).unwrap();
    assert_eq!(kind(c.handle_message(Time(0), sampled[0], ToCoordinator::Ready { round: 1 })), "duplicate");
    // The round still completes with everyone, and counted each refusal: the four above and
    // the trainer's own readiness, which came after the one sent in its name.
    let (outcome, _) = net.next_round();
    assert!(outcome.aggregated(), "{:?}", outcome.not_aggregated);
    assert_eq!(outcome.contributors.len(), PER_ROUND as usize);
    let refused: u32 = outcome.rejected.iter().map(|(_, n)| n).sum();
    assert_eq!(refused, 5);
    assert_eq!(net.rejected.len(), 5, "each refusal is an action too");
    assert_eq!(net.rejected[4], Rejection::Duplicate(sampled[0]));
    // A message for the round that closed is refused too.
    let late = net.coordinator.handle_message(net.now, sampled[1], ToCoordinator::Ready { round: 1 });
    assert_eq!(late.unwrap_err(), Rejection::WrongRound { open: 2, got: 1 });
}

#[test]
fn a_trainer_refuses_what_is_not_its_own() {
    let mut trainer = Trainer::new(ClientId(1), SEED);
    let update = Update { params: vec![0.0; DIM], num_examples: 1, train_loss: 0.0 };
    assert!(trainer.handle_trained(Time(0), 1, update).is_err(), "no training was asked for");
    let (config, strategy) = secure_dp_config(1, None);
    let mut c = Coordinator::new(config, strategy, params(vec![0.0; DIM]), 1).unwrap();
    c.handle_start(Time(0));
    let Some(Action::Send { to, message }) = c.poll_action() else { panic!() };
    let mut other = Trainer::new(ClientId(to.0 + 1), SEED);
    assert!(other.handle_message(Time(0), message.clone()).is_err(), "a request for another trainer");
    // A late, reordered request for an earlier round does not replace the round under way.
    let ToTrainer::Train(request) = message else { panic!("a train request") };
    let mut trainer = Trainer::new(to, SEED);
    let later = ToTrainer::Train(dainet_protocol::TrainRequest { round: 2, ..request.clone() });
    trainer.handle_message(Time(0), later).unwrap();
    let refused = trainer.handle_message(Time(0), ToTrainer::Train(request)).unwrap_err();
    assert_eq!(refused, dainet_protocol::TrainerError::Stale { got: 1, current: 2 });
}
