//! The trainers' host: it trains each client on its share of the data when its trainer asks,
//! and applies the evaluation's faults to what comes out (Byzantine updates, stragglers' partial
//! work). It decides nothing of the protocol; the trainer state machine does.

use crate::faults::{Attack, RoundFaults};
use crate::Federation;
use dainet_agg::attack;
use dainet_core::{Purpose, SplitMix64};
use dainet_ml::data::poison::{backdoor_dataset, flip_labels};
use dainet_ml::{train_local_with_momentum, Dataset, Scratch};
use dainet_protocol::{TrainRequest, Update};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// The host of a federation's trainers: their data, their carried momentum, the faults of the
/// rounds not yet closed.
pub(crate) struct Host<'a> {
    pub(crate) federation: Federation<'a>,
    /// Faults of the rounds not yet closed, by round.
    pub(crate) faults: BTreeMap<u32, RoundFaults>,
    /// Each client's momentum, kept between its rounds when `carry_momentum` is on.
    momentum: BTreeMap<u32, Vec<f32>>,
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

impl<'a> Host<'a> {
    pub(crate) fn new(federation: Federation<'a>) -> Self {
        Self { federation, faults: BTreeMap::new(), momentum: BTreeMap::new() }
    }

    /// Trains the requested clients in parallel and applies the round's faults; returns the
    /// updates in request order.
    pub(crate) fn train(&mut self, requests: Vec<&TrainRequest>) -> Vec<Update> {
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
