//! Simulated federations on a small synthetic task: determinism, deadlines, stopping.

use dainet_agg::strategy::{RobustParams, Strategy, StrategyConfig};
use dainet_core::SplitMix64;
use dainet_ml::data::partition::{partition, PartitionScheme};
use dainet_ml::{evaluate, Dataset, Model, ModelSpec, SgdConfig};
use dainet_protocol::{Coordinator, Finish, RoundConfig};
use dainet_sim::faults::Faults;
use dainet_sim::{Federation, NetworkModel, SimEnd, Simulator};
use std::ops::ControlFlow;

/// Two Gaussian blobs in 4 dimensions: an easy, fully synthetic task.
fn blobs(n: usize, seed: u64) -> Dataset {
    let mut g = SplitMix64::new(seed);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..n {
        let label = (i % 2) as u32;
        let centre = if label == 0 { -1.0 } else { 1.0 };
        x.extend((0..4).map(|_| (centre + 0.7 * g.next_normal()) as f32));
        y.push(label);
    }
    Dataset::new(x, y, 4, 2).unwrap()
}

struct Run {
    rounds: Vec<(u32, bool, usize, u64)>,
    final_params: Vec<f32>,
    end: SimEnd,
    accuracy: f64,
}

fn run(rounds: u32, latency_ms: u64, timeout: Option<u64>, stop_after: Option<u32>) -> Run {
    let data = blobs(400, 3);
    let model: Box<dyn Model> = ModelSpec::Mlp { input: 4, hidden: vec![8], classes: 2 }.build();
    let part =
        partition(&PartitionScheme::Dirichlet { alpha: 0.5, min_size: 5 }, data.labels(), 2, 20, 7, None).unwrap();
    let config = RoundConfig {
        task_seed: 7,
        num_clients: 20,
        clients_per_round: 5,
        rounds,
        round_timeout_ms: timeout,
        min_updates: 1,
        secure: None,
        privacy: None,
    };
    let fedavg = Strategy::new(StrategyConfig::named("fedavg", &RobustParams::default()).unwrap(), 7).unwrap();
    let coordinator = Coordinator::new(config, fedavg, model.init(7), 1).unwrap();
    let sgd = SgdConfig { learning_rate: 0.1, momentum: 0.9, ..SgdConfig::default() };
    let fed = Federation {
        model: model.as_ref(),
        train: &data,
        partition: &part,
        sgd,
        task_seed: 7,
        faults: Faults::default(),
        // Clients carry their momentum between rounds: part of what must replay exactly.
        carry_momentum: true,
    };
    let mut sim = Simulator::new(fed, coordinator, NetworkModel { latency_ms });
    let mut log = Vec::new();
    let mut last = Vec::new();
    let end = sim.run(|o, _| {
        log.push((o.round, o.aggregated(), o.contributors.len(), o.closed_at.0));
        last = o.params.values().to_vec();
        if Some(o.round) == stop_after {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    let accuracy = evaluate(model.as_ref(), &last, &data).accuracy;
    Run { rounds: log, final_params: last, end, accuracy }
}

#[test]
fn the_same_seed_reproduces_the_run_bit_for_bit() {
    let (a, b) = (run(8, 50, None, None), run(8, 50, None, None));
    assert_eq!(a.end, SimEnd::Finished(Finish::LastRound));
    assert_eq!(a.rounds, b.rounds);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert!(bits(&a.final_params) == bits(&b.final_params));
    assert!(a.accuracy > 0.85, "the federation should learn the blobs: accuracy {}", a.accuracy);
}

#[test]
fn rounds_take_one_round_trip_of_virtual_time() {
    let r = run(4, 50, None, None);
    let closed: Vec<u64> = r.rounds.iter().map(|x| x.3).collect();
    assert_eq!(closed, vec![100, 200, 300, 400]);
    assert!(r.rounds.iter().all(|x| x.1 && x.2 == 5));
}

#[test]
fn a_deadline_shorter_than_the_network_closes_rounds_unaggregated() {
    // Updates need 2 x 80 ms; the round gives up after 100 ms, so no update is ever
    // accepted (late ones are refused as for a closed round) and the model stays put.
    let r = run(3, 80, Some(100), None);
    assert_eq!(r.end, SimEnd::Finished(Finish::LastRound));
    assert_eq!(
        r.rounds.iter().map(|x| (x.1, x.2, x.3)).collect::<Vec<_>>(),
        vec![(false, 0, 100), (false, 0, 200), (false, 0, 300)]
    );
}

#[test]
fn the_round_callback_can_stop_the_run() {
    let r = run(10, 50, None, Some(3));
    assert_eq!(r.end, SimEnd::Stopped);
    assert_eq!(r.rounds.len(), 3);
}
