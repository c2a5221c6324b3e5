//! The SecAgg+ server: routes keys and envelopes, adds masked inputs into one running sum,
//! and unmasks that sum.
//!
//! The server never holds an individual update in the clear: it receives only
//! [`MaskedInput`]s, adds each into its running sum as it arrives (keeping no copy), and the
//! only value it produces is the [`UnmaskedSum`] of at least `reconstruction_threshold`
//! clients. No method returns or takes a single client's plaintext.
//!
//! # Driving it
//! Call [`SecAggServer::handle_start`] once, then loop: drain
//! [`SecAggServer::poll_message`] and deliver each message; hand each client's answer to
//! [`SecAggServer::handle_message`]; when [`SecAggServer::poll_timeout`] is due, call
//! [`SecAggServer::handle_timeout`]; check [`SecAggServer::poll_result`] after each call.
//! A stage closes as soon as every live client has answered, or at its deadline with
//! whoever answered: that is how dropouts are detected.

use super::crypto::{self, KeyPair, LABEL_MASK};
use super::field::{self, Share};
use super::graph::Graph;
use super::quantize::Quantizer;
use super::{
    count, ClientMessage, ConfigError, MaskedInput, ParticipantId, PublicKeys, Recipient, SecAggConfig, SecAggError,
    ServerMessage, ShareBytes, Stage, Time, ENVELOPE_BYTES, HEADER_WORDS,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use rayon::prelude::*;
use std::collections::{BTreeMap, VecDeque};

/// The unmasked sum of the survivors' quantised inputs: `[Σ w, Σ clipped, Σ w·x_q]` modulo
/// 2^32 (exact: the configuration rules out wrapping), with who contributed.
#[derive(Clone, Debug, PartialEq)]
pub struct UnmaskedSum {
    round: u32,
    words: Vec<u32>,
    contributors: Vec<ParticipantId>,
    dropped: Vec<ParticipantId>,
    rejected: Vec<(&'static str, u32)>,
    quantizer: Quantizer,
}

impl UnmaskedSum {
    /// The round.
    pub fn round(&self) -> u32 {
        self.round
    }

    /// Σ w over the contributors.
    pub fn total_weight(&self) -> u64 {
        u64::from(self.words[0])
    }

    /// Input values clipped, summed over the contributors (the only clipping information
    /// the server gets: per-client counts are masked like the rest).
    pub fn clipped(&self) -> u64 {
        u64::from(self.words[1])
    }

    /// Σ w·x_q over the contributors, one word per input coordinate.
    pub fn weighted_quantized_sum(&self) -> &[u32] {
        &self.words[HEADER_WORDS..]
    }

    /// The whole unmasked vector, header included (for digests and tests).
    pub fn words(&self) -> &[u32] {
        &self.words
    }

    /// The weighted mean Σ w·x̃ / Σ w of the contributors' dequantised inputs, or `None` if
    /// the total weight is 0. Within [`UnmaskedSum::error_bound`] of the weighted mean of
    /// the clipped inputs.
    pub fn weighted_mean(&self) -> Option<Vec<f32>> {
        self.weighted_mean_f64().map(|m| m.into_iter().map(|v| v as f32).collect())
    }

    /// [`UnmaskedSum::weighted_mean`] in `f64`, before the final rounding to `f32`.
    pub fn weighted_mean_f64(&self) -> Option<Vec<f64>> {
        let w = self.total_weight();
        (w > 0).then(|| self.quantizer.dequantize_weighted_mean(self.weighted_quantized_sum(), w))
    }

    /// The bound Δ = 2·`clipping_range` / (`quantization_range` − 1) on the error of each
    /// coordinate of the weighted mean (before rounding to `f32`).
    pub fn error_bound(&self) -> f64 {
        self.quantizer.step()
    }

    /// The clients whose input is in the sum, ascending.
    pub fn contributors(&self) -> &[ParticipantId] {
        &self.contributors
    }

    /// The participants whose input is not in the sum, ascending.
    pub fn dropped(&self) -> &[ParticipantId] {
        &self.dropped
    }

    /// Messages the server refused during the round, by [`SecAggError::kind`].
    pub fn rejected(&self) -> &[(&'static str, u32)] {
        &self.rejected
    }
}

/// What a survivor was asked for in stage 4 (participant indices, ascending).
struct UnmaskAsk {
    survivors: Vec<usize>,
    dropped: Vec<usize>,
}

/// The server of one SecAgg+ round, as a state machine.
pub struct SecAggServer {
    config: SecAggConfig,
    round: u32,
    /// Participants, ascending; everything else is indexed like this.
    ids: Vec<ParticipantId>,
    graph: Graph,
    quantizer: Quantizer,
    stage: Stage,
    deadline: Option<Time>,
    /// Who is expected to answer the open stage.
    live: Vec<bool>,
    /// Who has answered the open stage.
    answered: Vec<bool>,
    keys: Vec<Option<PublicKeys>>,
    /// Stage 2 envelopes by sender: (recipient index, ciphertext), ascending.
    envelopes: Vec<Vec<(usize, Vec<u8>)>>,
    /// Who finished stage 2 (the masking graph's nodes).
    sharers: Vec<bool>,
    /// Who sent a masked input (U3).
    contributors: Vec<bool>,
    /// Σ y over the contributors so far, modulo 2^32.
    masked_sum: Vec<u32>,
    asks: Vec<Option<UnmaskAsk>>,
    self_mask_shares: BTreeMap<usize, Vec<Share>>,
    key_shares: BTreeMap<usize, Vec<Share>>,
    outbox: VecDeque<(Recipient, ServerMessage)>,
    result: Option<Result<UnmaskedSum, SecAggError>>,
    rejected: Vec<(&'static str, u32)>,
}

impl std::fmt::Debug for SecAggServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecAggServer")
            .field("round", &self.round)
            .field("participants", &self.ids.len())
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

impl SecAggServer {
    /// The server of `round` among `participants` (distinct). `rng_seed` seeds the shuffle
    /// of the communication graph (the server draws no other randomness).
    pub fn new(
        config: SecAggConfig,
        participants: Vec<ParticipantId>,
        round: u32,
        rng_seed: [u8; 32],
    ) -> Result<Self, SecAggError> {
        let mut ids = participants;
        ids.sort_unstable();
        if ids.is_empty() || ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(ConfigError::Participants.into());
        }
        let n = ids.len();
        config.validate_for(n)?;
        let graph_seed = ChaCha20Rng::from_seed(rng_seed).next_u64();
        let graph = Graph::harary(n, config.degree(), graph_seed)
            .map_err(|_| ConfigError::NumShares { num_shares: config.num_shares, participants: Some(n) })?;
        let quantizer = config.quantizer()?;
        let len = config.dimension + HEADER_WORDS;
        Ok(Self {
            round,
            graph,
            quantizer,
            stage: Stage::Setup,
            deadline: None,
            live: vec![true; n],
            answered: vec![false; n],
            keys: vec![None; n],
            envelopes: vec![Vec::new(); n],
            sharers: vec![false; n],
            contributors: vec![false; n],
            masked_sum: vec![0; len],
            asks: (0..n).map(|_| None).collect(),
            self_mask_shares: BTreeMap::new(),
            key_shares: BTreeMap::new(),
            outbox: VecDeque::new(),
            result: None,
            rejected: Vec::new(),
            ids,
            config,
        })
    }

    /// The round.
    pub fn round(&self) -> u32 {
        self.round
    }

    /// The open stage.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The participants, ascending.
    pub fn participants(&self) -> &[ParticipantId] {
        &self.ids
    }

    /// The neighbours of `id` in the communication graph, ascending (empty for a stranger).
    pub fn neighbours(&self, id: ParticipantId) -> Vec<ParticipantId> {
        match self.ids.binary_search(&id) {
            Ok(i) => self.graph.neighbours(i).into_iter().map(|j| self.ids[j]).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Messages refused so far, by [`SecAggError::kind`].
    pub fn rejected(&self) -> &[(&'static str, u32)] {
        &self.rejected
    }

    /// Opens stage 1: asks every participant for its keys. Calling it again does nothing.
    pub fn handle_start(&mut self, now: Time) {
        if self.stage != Stage::Setup {
            return;
        }
        for &id in &self.ids {
            self.outbox.push_back((id, ServerMessage::AdvertiseKeysRequest { round: self.round }));
        }
        self.stage = Stage::AdvertiseKeys;
        self.deadline = Some(now.plus_ms(self.config.stage_timeout_ms));
    }

    /// Hands in a message from `from`. A refused message is counted and changes nothing;
    /// the stage closes at once if it was the last one expected.
    pub fn handle_message(&mut self, now: Time, from: ParticipantId, msg: ClientMessage) -> Result<(), SecAggError> {
        let result = self.accept(from, msg);
        match &result {
            Err(e) => count(&mut self.rejected, e.kind()),
            Ok(()) => {
                if self.live.iter().zip(&self.answered).all(|(&l, &a)| !l || a) {
                    self.close_stage(now);
                }
            }
        }
        result
    }

    /// Tells the server that `now` has come: closes the open stage if its deadline passed.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.deadline.is_some_and(|d| now >= d) {
            self.close_stage(now);
        }
    }

    /// The next message to deliver, in order.
    #[must_use]
    pub fn poll_message(&mut self) -> Option<(Recipient, ServerMessage)> {
        self.outbox.pop_front()
    }

    /// When [`SecAggServer::handle_timeout`] must next be called, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        self.deadline
    }

    /// The outcome of the round, once: the unmasked sum, or why the round was aborted.
    #[must_use]
    pub fn poll_result(&mut self) -> Option<Result<UnmaskedSum, SecAggError>> {
        self.result.take()
    }

    fn threshold(&self) -> usize {
        self.config.reconstruction_threshold as usize
    }

    fn accept(&mut self, from: ParticipantId, msg: ClientMessage) -> Result<(), SecAggError> {
        if self.stage == Stage::Done {
            return Err(SecAggError::Finished);
        }
        let i = self.ids.binary_search(&from).map_err(|_| SecAggError::UnknownParticipant(from))?;
        if msg.round() != self.round {
            return Err(SecAggError::WrongRound { expected: self.round, got: msg.round() });
        }
        let got = msg.stage();
        if got < self.stage {
            return Err(SecAggError::Replayed { stage: got });
        }
        if got > self.stage || self.stage == Stage::Setup {
            return Err(SecAggError::WrongStage { expected: self.stage, got });
        }
        if !self.live[i] {
            return Err(SecAggError::NotLive { from, stage: self.stage });
        }
        if self.answered[i] {
            return Err(SecAggError::Duplicate { from, stage: self.stage });
        }
        match msg {
            ClientMessage::AdvertiseKeys { keys, .. } => {
                if !crypto::is_valid_public_key(&keys.c_pk) || !crypto::is_valid_public_key(&keys.s_pk) {
                    return Err(SecAggError::BadPublicKey { from });
                }
                self.keys[i] = Some(keys);
            }
            ClientMessage::ShareKeys { envelopes, .. } => self.accept_envelopes(i, envelopes)?,
            ClientMessage::MaskedInput { input, .. } => self.accept_masked(i, input)?,
            ClientMessage::Unmask { self_mask_shares, secret_key_shares, .. } => {
                self.accept_shares(i, &self_mask_shares, &secret_key_shares)?
            }
        }
        self.answered[i] = true;
        Ok(())
    }

    fn index(&self, id: ParticipantId) -> Option<usize> {
        self.ids.binary_search(&id).ok()
    }

    /// Live neighbours of `i`, ascending.
    fn live_neighbours(&self, i: usize, live: &[bool]) -> Vec<usize> {
        self.graph.neighbours(i).into_iter().filter(|&j| live[j]).collect()
    }

    fn accept_envelopes(&mut self, i: usize, envelopes: Vec<(ParticipantId, Vec<u8>)>) -> Result<(), SecAggError> {
        let from = self.ids[i];
        let expected = self.live_neighbours(i, &self.live);
        let mut routed = Vec::with_capacity(envelopes.len());
        for (k, (to, ciphertext)) in envelopes.into_iter().enumerate() {
            let j = self.index(to).ok_or(SecAggError::BadList { about: to, reason: "not a participant" })?;
            if expected.get(k) != Some(&j) {
                let reason = if expected.contains(&j) { "out of order or twice" } else { "not a live neighbour" };
                return Err(SecAggError::BadList { about: to, reason });
            }
            if ciphertext.len() != ENVELOPE_BYTES {
                return Err(SecAggError::WrongLength { from, expected: ENVELOPE_BYTES, got: ciphertext.len() });
            }
            routed.push((j, ciphertext));
        }
        if routed.len() != expected.len() {
            let missing = self.ids[expected[routed.len()]];
            return Err(SecAggError::BadList { about: missing, reason: "missing envelope" });
        }
        self.envelopes[i] = routed;
        Ok(())
    }

    fn accept_masked(&mut self, i: usize, input: MaskedInput) -> Result<(), SecAggError> {
        let expected = self.masked_sum.len();
        if input.len() != expected {
            return Err(SecAggError::WrongLength { from: self.ids[i], expected, got: input.len() });
        }
        for (s, y) in self.masked_sum.iter_mut().zip(input.words()) {
            *s = s.wrapping_add(*y);
        }
        self.contributors[i] = true;
        Ok(())
    }

    fn accept_shares(
        &mut self,
        i: usize,
        self_mask: &[(ParticipantId, ShareBytes)],
        secret_key: &[(ParticipantId, ShareBytes)],
    ) -> Result<(), SecAggError> {
        let from = self.ids[i];
        let ask = self.asks[i].as_ref().expect("every live client of stage 4 was asked");
        let x = from.share_x();
        let mut parsed = Vec::with_capacity(self_mask.len() + secret_key.len());
        for (shares, allowed, is_key) in [(self_mask, &ask.survivors, false), (secret_key, &ask.dropped, true)] {
            let mut last = None;
            for (owner, bytes) in shares {
                let o =
                    self.index(*owner).ok_or(SecAggError::BadList { about: *owner, reason: "not a participant" })?;
                if allowed.binary_search(&o).is_err() {
                    return Err(SecAggError::BadList { about: *owner, reason: "share not asked for" });
                }
                if last.is_some_and(|l| l >= o) {
                    return Err(SecAggError::BadList { about: *owner, reason: "out of order or twice" });
                }
                last = Some(o);
                let share = Share::from_bytes(x, bytes).map_err(|_| SecAggError::BadShare { from, owner: *owner })?;
                parsed.push((o, share, is_key));
            }
        }
        for (o, share, is_key) in parsed {
            let store = if is_key { &mut self.key_shares } else { &mut self.self_mask_shares };
            store.entry(o).or_default().push(share);
        }
        Ok(())
    }

    /// Removes nodes with fewer than t − 1 live neighbours until none is left: their
    /// secrets could never be reconstructed.
    fn prune(&self, live: &mut [bool]) {
        let need = self.threshold() - 1;
        loop {
            let mut changed = false;
            for i in 0..live.len() {
                if live[i] {
                    let degree = if self.graph.is_complete() {
                        live.iter().filter(|&&l| l).count() - 1
                    } else {
                        self.graph.neighbours(i).iter().filter(|&&j| live[j]).count()
                    };
                    if degree < need {
                        live[i] = false;
                        changed = true;
                    }
                }
            }
            if !changed {
                return;
            }
        }
    }

    fn close_stage(&mut self, now: Time) {
        let mut next: Vec<bool> = self.live.iter().zip(&self.answered).map(|(&l, &a)| l && a).collect();
        let stage = self.stage;
        match stage {
            Stage::AdvertiseKeys | Stage::ShareKeys => self.prune(&mut next),
            Stage::Setup | Stage::Done => return,
            Stage::CollectMaskedInputs | Stage::Unmask => {}
        }
        let alive = next.iter().filter(|&&l| l).count();
        if stage != Stage::Unmask && alive < self.threshold() {
            self.abort(SecAggError::TooFewSurvivors { stage, alive, needed: self.threshold() });
            return;
        }
        self.live = next;
        self.answered = vec![false; self.ids.len()];
        self.deadline = Some(now.plus_ms(self.config.stage_timeout_ms));
        match stage {
            Stage::AdvertiseKeys => self.open_share_keys(),
            Stage::ShareKeys => self.open_collect(),
            Stage::CollectMaskedInputs => self.open_unmask(),
            _ => {
                let result = self.unmask();
                self.finish(result);
            }
        }
    }

    fn abort(&mut self, error: SecAggError) {
        self.finish(Err(error));
    }

    fn finish(&mut self, result: Result<UnmaskedSum, SecAggError>) {
        self.stage = Stage::Done;
        self.deadline = None;
        self.result = Some(result);
        self.envelopes = Vec::new();
    }

    fn open_share_keys(&mut self) {
        for i in (0..self.ids.len()).filter(|&i| self.live[i]) {
            let neighbours = self
                .live_neighbours(i, &self.live)
                .into_iter()
                .map(|j| (self.ids[j], self.keys[j].expect("live clients advertised keys")))
                .collect();
            self.outbox.push_back((self.ids[i], ServerMessage::ShareKeysRequest { round: self.round, neighbours }));
        }
        self.stage = Stage::ShareKeys;
    }

    fn open_collect(&mut self) {
        self.sharers = self.live.clone();
        for j in (0..self.ids.len()).filter(|&j| self.live[j]) {
            let envelopes = self
                .live_neighbours(j, &self.live)
                .into_iter()
                .map(|i| {
                    let k = self.envelopes[i].binary_search_by_key(&j, |(to, _)| *to).expect("live senders wrote to j");
                    (self.ids[i], self.envelopes[i][k].1.clone())
                })
                .collect();
            self.outbox.push_back((self.ids[j], ServerMessage::MaskedInputRequest { round: self.round, envelopes }));
        }
        self.envelopes = Vec::new();
        self.stage = Stage::CollectMaskedInputs;
    }

    fn open_unmask(&mut self) {
        for i in (0..self.ids.len()).filter(|&i| self.contributors[i]) {
            let neighbours = self.live_neighbours(i, &self.sharers);
            let mut survivors: Vec<usize> = neighbours.iter().copied().filter(|&j| self.contributors[j]).collect();
            survivors.push(i);
            survivors.sort_unstable();
            let dropped: Vec<usize> = neighbours.into_iter().filter(|&j| !self.contributors[j]).collect();
            let msg = ServerMessage::UnmaskRequest {
                round: self.round,
                survivors: survivors.iter().map(|&j| self.ids[j]).collect(),
                dropped: dropped.iter().map(|&j| self.ids[j]).collect(),
            };
            self.asks[i] = Some(UnmaskAsk { survivors, dropped });
            self.outbox.push_back((self.ids[i], msg));
        }
        self.stage = Stage::Unmask;
    }

    fn reconstruct(&mut self, owner: usize, is_key: bool, secret: &'static str) -> Result<[u8; 32], SecAggError> {
        let store = if is_key { &mut self.key_shares } else { &mut self.self_mask_shares };
        let mut shares = store.remove(&owner).unwrap_or_default();
        shares.sort_unstable_by_key(|s| s.x);
        field::combine(&shares, self.config.reconstruction_threshold as usize)
            .map_err(|source| SecAggError::Reconstruction { owner: self.ids[owner], secret, source })
    }

    /// Stage 4's end: reconstruct every survivor's b and every dropped sharer's s_sk, and
    /// take their masks out of the sum.
    fn unmask(&mut self) -> Result<UnmaskedSum, SecAggError> {
        let n = self.ids.len();
        // (seed, subtract): the corrections to add to the masked sum.
        let mut corrections: Vec<([u8; 32], bool)> = Vec::new();
        let survivors: Vec<usize> = (0..n).filter(|&i| self.contributors[i]).collect();
        let dropped: Vec<usize> = (0..n).filter(|&j| self.sharers[j] && !self.contributors[j]).collect();
        for i in survivors {
            corrections.push((self.reconstruct(i, false, "self-mask seed")?, true));
        }
        for j in dropped {
            let key = KeyPair::from_secret(self.reconstruct(j, true, "masking key")?);
            let advertised = self.keys[j].expect("sharers advertised keys");
            if key.public() != advertised.s_pk {
                return Err(SecAggError::KeyMismatch { owner: self.ids[j] });
            }
            for k in self.live_neighbours(j, &self.sharers).into_iter().filter(|&k| self.contributors[k]) {
                let s_pk = self.keys[k].expect("contributors advertised keys").s_pk;
                let seed = key
                    .agree(&s_pk, LABEL_MASK, self.round, self.ids[j].0, self.ids[k].0)
                    .ok_or(SecAggError::BadPublicKey { from: self.ids[k] })?;
                // y_k holds +PRG(s_kj) if j > k and −PRG(s_kj) if j < k: undo it.
                corrections.push((seed, self.ids[j] > self.ids[k]));
            }
        }
        let len = self.masked_sum.len();
        let correction = corrections
            .par_iter()
            .fold(
                || vec![0u32; len],
                |mut acc, (seed, subtract)| {
                    crypto::prg_apply(seed, &mut acc, *subtract);
                    acc
                },
            )
            .reduce(|| vec![0u32; len], add_into);
        let words = add_into(std::mem::take(&mut self.masked_sum), correction);
        let (contributors, dropped) = self.ids.iter().zip(&self.contributors).partition::<Vec<_>, _>(|(_, &c)| c);
        Ok(UnmaskedSum {
            round: self.round,
            words,
            contributors: contributors.into_iter().map(|(id, _)| *id).collect(),
            dropped: dropped.into_iter().map(|(id, _)| *id).collect(),
            rejected: self.rejected.clone(),
            quantizer: self.quantizer,
        })
    }
}

/// `a + b` word by word modulo 2^32, in `a`'s buffer.
fn add_into(mut a: Vec<u32>, b: Vec<u32>) -> Vec<u32> {
    for (x, y) in a.iter_mut().zip(&b) {
        *x = x.wrapping_add(*y);
    }
    a
}
