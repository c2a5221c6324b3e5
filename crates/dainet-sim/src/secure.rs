//! Secure aggregation in the simulator: the clients of a round run SecAgg+ (from
//! `dainet-privacy`) with an in-process server, and the coordinator receives only the unmasked
//! sum ([`SecureAggregate`]). No individual update reaches the coordinator.
//!
//! Each client's input is its change from the global model. With differential privacy, the
//! client clips it and adds its share of the noise first (distributed DP), and its weight is
//! 1; otherwise its weight is its example count. Clients that drop out after sending their
//! masked input (`dropout_after_masking`) stop answering: the server reconstructs their
//! pairwise masks from the other clients' shares.
//!
//! Messages between the SecAgg server and the clients are delivered at once; a stage that
//! waits for a dropped client ends at its deadline. Clients handle a stage's messages in
//! parallel; the server takes their replies in ascending client order, so the result is the
//! same whatever the thread count.

use dainet_agg::dp::{privatize_change, DpConfig};
use dainet_core::{Purpose, SplitMix64};
use dainet_privacy::secagg::{
    ClientMessage, ParticipantId, SecAggClient, SecAggConfig, SecAggServer, ServerMessage, Time as SecTime,
};
use dainet_protocol::round::SecureAggregate;
use dainet_protocol::ClientId;
use rayon::prelude::*;
use std::collections::BTreeMap;

/// Settings of secure aggregation in a simulation.
#[derive(Clone, Debug, PartialEq)]
pub struct SecureAggregation {
    /// Shares of each secret (k neighbours + 1); capped at the round's clients.
    pub num_shares: u32,
    /// Shares needed to reconstruct a secret (t).
    pub reconstruction_threshold: u32,
    /// Input values are clipped to ±this (and counted).
    pub clipping_range: f32,
    /// Quantisation levels.
    pub quantization_range: u32,
    /// Probability that a client stops answering after sending its masked input.
    pub dropout_after_masking: f64,
    /// Milliseconds a SecAgg stage waits for answers.
    pub stage_timeout_ms: u64,
    /// Client-side differential privacy (clip and add the distributed noise share).
    pub dp: Option<DpConfig>,
}

/// One client's contribution to a secure round.
pub(crate) struct SecureInput {
    pub client: ClientId,
    pub params: Vec<f32>,
    pub examples: u64,
}

/// The seed of a SecAgg party's randomness in `round` (`u64::MAX`: the server).
fn party_seed(task_seed: u64, round: u32, party: u64) -> [u8; 32] {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&task_seed.to_le_bytes());
    seed[8..12].copy_from_slice(&round.to_le_bytes());
    seed[12..20].copy_from_slice(&party.to_le_bytes());
    seed[20..].copy_from_slice(b"dainetsecagg");
    seed
}

/// Runs one round's SecAgg+ among `inputs`; returns the aggregate and the virtual time the
/// protocol took beyond its message latency (stage deadlines waited for).
pub(crate) fn secure_round(
    settings: &SecureAggregation,
    task_seed: u64,
    round: u32,
    global: &[f32],
    inputs: Vec<SecureInput>,
) -> Result<(SecureAggregate, u64), String> {
    let n = inputs.len();
    if n < 2 {
        return Err(format!("secure aggregation needs at least 2 clients in the round, got {n}"));
    }
    let d = global.len();
    // k + 1 shares with k even, or the complete graph.
    let mut shares = settings.num_shares.min(n as u32);
    if shares < n as u32 && (shares - 1) % 2 == 1 {
        shares -= 1;
    }
    let threshold = settings.reconstruction_threshold.clamp(2, shares.max(2));
    let mut config = SecAggConfig::new(shares, threshold, d);
    config.clipping_range = settings.clipping_range;
    config.quantization_range = settings.quantization_range;
    config.stage_timeout_ms = settings.stage_timeout_ms;

    // Client side: the change from the global model, privatised if DP is on.
    let prepared: Vec<(ParticipantId, Vec<f32>, u32, u64)> = inputs
        .into_par_iter()
        .map(|input| {
            let mut change: Vec<f32> =
                input.params.iter().zip(global).map(|(&u, &g)| (f64::from(u) - f64::from(g)) as f32).collect();
            let weight = match &settings.dp {
                Some(dp) => {
                    privatize_change(dp, dp.initial_norm(), &mut change, task_seed, round, u64::from(input.client.0));
                    1
                }
                None => input.examples.min(u64::from(u32::MAX)) as u32,
            };
            (ParticipantId(input.client.0), change, weight, input.examples)
        })
        .collect();
    config.max_weight = prepared.iter().map(|p| p.2).max().unwrap_or(1).max(1);
    let ids: Vec<ParticipantId> = prepared.iter().map(|p| p.0).collect();
    let examples: BTreeMap<ParticipantId, u64> = prepared.iter().map(|p| (p.0, p.3)).collect();
    let mut server = SecAggServer::new(config.clone(), ids.clone(), round, party_seed(task_seed, round, u64::MAX))
        .map_err(|e| format!("secure aggregation: {e}"))?;
    let mut clients: Vec<Client> = prepared
        .into_par_iter()
        .map(|(id, change, weight, _)| {
            let seed = party_seed(task_seed, round, u64::from(id.0));
            let drops = SplitMix64::stream(task_seed, Purpose::DropoutAfterMasking, u64::from(round), u64::from(id.0))
                .next_f64()
                < settings.dropout_after_masking;
            SecAggClient::new(config.clone(), id, round, &change, weight, seed)
                .map(|state| Client { id, state, drops_after_masking: drops, masked: false })
                .map_err(|e| format!("secure aggregation, {id}: {e}"))
        })
        .collect::<Result<_, _>>()?;

    let start = SecTime(0);
    let mut now = start;
    server.handle_start(now);
    let result = loop {
        let mut outbox: BTreeMap<ParticipantId, Vec<ServerMessage>> = BTreeMap::new();
        while let Some((to, msg)) = server.poll_message() {
            outbox.entry(to).or_default().push(msg);
        }
        if outbox.is_empty() {
            if let Some(result) = server.poll_result() {
                break result.map_err(|e| format!("secure aggregation failed: {e}"))?;
            }
            match server.poll_timeout() {
                Some(deadline) => {
                    now = deadline;
                    server.handle_timeout(now);
                    continue;
                }
                None => return Err("secure aggregation stalled: nothing in flight and no deadline".into()),
            }
        }
        let replies: Vec<(ParticipantId, Vec<ClientMessage>)> = clients
            .par_iter_mut()
            .filter_map(|c| outbox.get(&c.id).map(|msgs| (c, msgs)))
            .map(|(c, msgs)| (c.id, c.handle(now, msgs)))
            .collect();
        for (id, msgs) in replies {
            for msg in msgs {
                // A refused message is counted by the server; the protocol goes on.
                let _ = server.handle_message(now, id, msg);
            }
        }
    };
    let mean = result.weighted_mean_f64().ok_or("secure aggregation: no weight in the sum")?;
    let total_weight = result.total_weight() as f64;
    let contributors: Vec<ClientId> = result.contributors().iter().map(|p| ClientId(p.0)).collect();
    let aggregate = SecureAggregate {
        sum: mean.iter().map(|m| m * total_weight).collect(),
        total_weight,
        examples: result.contributors().iter().map(|p| examples.get(p).copied().unwrap_or(0)).sum(),
        contributors,
        clipped_values: result.clipped(),
    };
    Ok((aggregate, now.0 - start.0))
}

/// A client of the in-process SecAgg+ session.
struct Client {
    id: ParticipantId,
    state: SecAggClient,
    drops_after_masking: bool,
    masked: bool,
}

impl Client {
    /// Handles the stage's messages; a client that drops after masking stays silent once it
    /// has sent its masked input.
    fn handle(&mut self, now: SecTime, msgs: &[ServerMessage]) -> Vec<ClientMessage> {
        let mut out = Vec::new();
        for msg in msgs {
            if self.masked && self.drops_after_masking {
                continue;
            }
            // A message the client refuses is counted by the client; it goes on.
            if let Ok(Some(reply)) = self.state.handle_message(now, msg.clone()) {
                self.masked |= matches!(reply, ClientMessage::MaskedInput { .. });
                out.push(reply);
            }
        }
        out
    }
}
