//! The SecAgg+ client: answers each of the server's four requests with one message.
//!
//! A client holds its input from construction; it quantises it at once (`[w, clipped,
//! w·x_q]`, see the module docs) and draws its keys and self-mask seed from its seeded
//! CSPRNG. It sees only its k neighbours, so its work is O(k·d) for the masks (k + 1 AES-CTR
//! expansions of d + 2 words) plus O(k·t) for the shares and 2k key agreements, independent
//! of n.
//!
//! # Driving it
//! Hand every [`ServerMessage`] to [`SecAggClient::handle_message`]; send back the
//! [`ClientMessage`] it returns, if any. A refused message returns the reason and changes
//! nothing, except the refusals that end the client's part in the round (an unmask request
//! asking for both secrets of one participant, too few neighbours or survivors): after
//! those, and after the last answer, [`SecAggClient::stage`] is [`Stage::Done`].

use super::crypto::{self, KeyPair, LABEL_ENVELOPE, LABEL_MASK};
use super::field::{self, Share, SHARE_BYTES};
use super::{
    ClientMessage, MaskedInput, ParticipantId, PublicKeys, SecAggConfig, SecAggError, ServerMessage, Stage, Time,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use std::collections::BTreeMap;

/// The two keys a client agrees with one neighbour in stage 2 and uses again in stage 3.
///
/// Agreeing each key once is half the client's X25519 cost: an agreement is a scalar
/// multiplication (~40 µs), and the masking key's agreement doubles as the check that the
/// neighbour's `s_pk` is not of low order, so no separate check is needed.
struct AgreedKeys {
    /// The envelope key, from `c_sk` and the neighbour's `c_pk`.
    envelope: [u8; 32],
    /// The pairwise mask seed s_ij, from `s_sk` and the neighbour's `s_pk`.
    mask: [u8; 32],
}

/// One client of a SecAgg+ round, as a state machine.
pub struct SecAggClient {
    config: SecAggConfig,
    id: ParticipantId,
    round: u32,
    /// The stage whose request it waits for.
    stage: Stage,
    rng: ChaCha20Rng,
    c_key: KeyPair,
    s_key: KeyPair,
    self_mask_seed: [u8; 32],
    /// `[w, clipped, w·x_q]`, emptied once masked.
    pub(super) plaintext: Vec<u32>,
    clipped: u32,
    /// Neighbours announced in stage 2, with the keys agreed with them.
    neighbours: BTreeMap<ParticipantId, AgreedKeys>,
    /// The shares held, by owner: (share of b, share of s_sk). Includes its own.
    held: BTreeMap<ParticipantId, (Share, Share)>,
    /// Neighbours that finished stage 2: the masks are agreed with exactly these.
    maskers: Vec<ParticipantId>,
    rejected: Vec<SecAggError>,
}

impl std::fmt::Debug for SecAggClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecAggClient")
            .field("id", &self.id)
            .field("round", &self.round)
            .field("stage", &self.stage)
            .finish_non_exhaustive()
    }
}

impl SecAggClient {
    /// The client `id` of `round`, contributing `input` with `weight` (its number of
    /// examples, `1 ..= config.max_weight`). All its randomness (key pairs, self-mask seed,
    /// stochastic rounding, share polynomials) comes from a ChaCha20 CSPRNG seeded with
    /// `rng_seed`, which must be secret and fresh per round.
    pub fn new(
        config: SecAggConfig,
        id: ParticipantId,
        round: u32,
        input: &[f32],
        weight: u32,
        rng_seed: [u8; 32],
    ) -> Result<Self, SecAggError> {
        config.validate()?;
        if input.len() != config.dimension {
            return Err(SecAggError::WrongLength { from: id, expected: config.dimension, got: input.len() });
        }
        if weight == 0 || weight > config.max_weight {
            return Err(SecAggError::Weight { weight, max_weight: config.max_weight });
        }
        let mut rng = ChaCha20Rng::from_seed(rng_seed);
        let c_key = KeyPair::generate(&mut rng);
        let s_key = KeyPair::generate(&mut rng);
        let mut self_mask_seed = [0u8; 32];
        rng.fill_bytes(&mut self_mask_seed);
        let mut dither_seed = [0u8; 32];
        rng.fill_bytes(&mut dither_seed);
        let quantized = config.quantizer()?.quantize(input, &dither_seed).map_err(SecAggError::Input)?;
        let mut plaintext = Vec::with_capacity(super::HEADER_WORDS + input.len());
        plaintext.extend([weight, quantized.clipped]);
        // weight · (q − 1) < 2^32 is checked by `validate`.
        plaintext.extend(quantized.values.iter().map(|&v| weight * v));
        Ok(Self {
            config,
            id,
            round,
            stage: Stage::AdvertiseKeys,
            rng,
            c_key,
            s_key,
            self_mask_seed,
            plaintext,
            clipped: quantized.clipped,
            neighbours: BTreeMap::new(),
            held: BTreeMap::new(),
            maskers: Vec::new(),
            rejected: Vec::new(),
        })
    }

    /// Its id.
    pub fn id(&self) -> ParticipantId {
        self.id
    }

    /// Its round.
    pub fn round(&self) -> u32 {
        self.round
    }

    /// The stage whose request it waits for; [`Stage::Done`] once it has nothing more to say.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Input values that lay outside [−`clipping_range`, `clipping_range`] and were clipped.
    pub fn clipped(&self) -> u32 {
        self.clipped
    }

    /// Its public keys.
    pub fn public_keys(&self) -> PublicKeys {
        PublicKeys { c_pk: self.c_key.public(), s_pk: self.s_key.public() }
    }

    /// Everything it refused, in order: rejected messages, and envelopes that failed to
    /// decrypt (those are skipped while the rest of the message is used).
    pub fn rejected(&self) -> &[SecAggError] {
        &self.rejected
    }

    /// Hands in a message from the server; returns the answer to send, if any.
    ///
    /// `now` is not used yet (the server's stage deadlines detect dropouts); it is taken
    /// so that drivers treat both sides alike.
    pub fn handle_message(&mut self, now: Time, msg: ServerMessage) -> Result<Option<ClientMessage>, SecAggError> {
        let _ = now;
        let result = self.step(msg);
        if let Err(e) = &result {
            self.rejected.push(e.clone());
            if matches!(
                e,
                SecAggError::UnmaskConflict { .. }
                    | SecAggError::TooFewNeighbours { .. }
                    | SecAggError::TooFewSurvivors { .. }
            ) {
                self.stage = Stage::Done;
            }
        }
        result.map(Some)
    }

    fn step(&mut self, msg: ServerMessage) -> Result<ClientMessage, SecAggError> {
        if self.stage == Stage::Done {
            return Err(SecAggError::Finished);
        }
        if msg.round() != self.round {
            return Err(SecAggError::WrongRound { expected: self.round, got: msg.round() });
        }
        let got = msg.stage();
        if got < self.stage {
            return Err(SecAggError::Replayed { stage: got });
        }
        if got > self.stage {
            return Err(SecAggError::WrongStage { expected: self.stage, got });
        }
        let reply = match msg {
            ServerMessage::AdvertiseKeysRequest { .. } => {
                ClientMessage::AdvertiseKeys { round: self.round, keys: self.public_keys() }
            }
            ServerMessage::ShareKeysRequest { neighbours, .. } => self.share_keys(neighbours)?,
            ServerMessage::MaskedInputRequest { envelopes, .. } => self.masked_input(envelopes)?,
            ServerMessage::UnmaskRequest { survivors, dropped, .. } => self.unmask(&survivors, &dropped)?,
        };
        self.stage = match self.stage {
            Stage::AdvertiseKeys => Stage::ShareKeys,
            Stage::ShareKeys => Stage::CollectMaskedInputs,
            Stage::CollectMaskedInputs => Stage::Unmask,
            _ => Stage::Done,
        };
        Ok(reply)
    }

    fn bad_list(&self, about: ParticipantId, reason: &'static str) -> SecAggError {
        SecAggError::BadList { about, reason }
    }

    /// Checks that `ids` ascend strictly and avoid this client.
    fn check_ascending<'a>(&self, ids: impl IntoIterator<Item = &'a ParticipantId>) -> Result<(), SecAggError> {
        let mut last: Option<ParticipantId> = None;
        for &id in ids {
            if id == self.id {
                return Err(self.bad_list(id, "lists the client itself"));
            }
            if last.is_some_and(|l| l >= id) {
                return Err(self.bad_list(id, "not strictly ascending"));
            }
            last = Some(id);
        }
        Ok(())
    }

    /// Stage 2: split b and s_sk among the neighbours and itself, and encrypt each
    /// neighbour's pair of shares.
    fn share_keys(&mut self, neighbours: Vec<(ParticipantId, PublicKeys)>) -> Result<ClientMessage, SecAggError> {
        self.check_ascending(neighbours.iter().map(|(id, _)| id))?;
        if neighbours.len() > self.config.degree() {
            let extra = neighbours[self.config.degree()].0;
            return Err(self.bad_list(extra, "more neighbours than num_shares - 1"));
        }
        // Both agreements now, before anything changes: an agreement with a low-order key is
        // refused (it is not contributory), which is the check the keys need.
        let mut agreed = BTreeMap::new();
        for (id, keys) in &neighbours {
            let agree = |key: &KeyPair, their: &[u8; 32], label| {
                key.agree(their, label, self.round, self.id.0, id.0).ok_or(SecAggError::BadPublicKey { from: *id })
            };
            let envelope = agree(&self.c_key, &keys.c_pk, LABEL_ENVELOPE)?;
            let mask = agree(&self.s_key, &keys.s_pk, LABEL_MASK)?;
            agreed.insert(*id, AgreedKeys { envelope, mask });
        }
        let t = self.config.reconstruction_threshold as usize;
        if neighbours.len() + 1 < t {
            return Err(SecAggError::TooFewNeighbours { got: neighbours.len(), needed: t - 1 });
        }
        let mut holders: Vec<ParticipantId> = neighbours.iter().map(|(id, _)| *id).collect();
        holders.push(self.id);
        holders.sort_unstable();
        let xs: Vec<field::Fe> = holders.iter().map(|h| h.share_x()).collect();
        let b_shares = field::split(&self.self_mask_seed, t, &xs, &mut self.rng);
        let sk_shares = field::split(&self.s_key.secret_bytes(), t, &xs, &mut self.rng);
        self.neighbours = agreed;
        let mut envelopes = Vec::with_capacity(self.neighbours.len());
        for ((&holder, b), sk) in holders.iter().zip(b_shares).zip(sk_shares) {
            if holder == self.id {
                self.held.insert(holder, (b, sk));
                continue;
            }
            let key = self.neighbours[&holder].envelope;
            let mut plain = [0u8; 2 * SHARE_BYTES];
            plain[..SHARE_BYTES].copy_from_slice(&b.to_bytes());
            plain[SHARE_BYTES..].copy_from_slice(&sk.to_bytes());
            envelopes.push((holder, crypto::seal(&key, self.round, self.id.0, holder.0, &plain)));
        }
        Ok(ClientMessage::ShareKeys { round: self.round, envelopes })
    }

    /// Stage 3: open the neighbours' envelopes, mask the input, send it.
    fn masked_input(&mut self, envelopes: Vec<(ParticipantId, Vec<u8>)>) -> Result<ClientMessage, SecAggError> {
        self.check_ascending(envelopes.iter().map(|(id, _)| id))?;
        if let Some((id, _)) = envelopes.iter().find(|(id, _)| !self.neighbours.contains_key(id)) {
            return Err(self.bad_list(*id, "not a neighbour"));
        }
        let t = self.config.reconstruction_threshold as usize;
        if envelopes.len() + 1 < t {
            return Err(SecAggError::TooFewNeighbours { got: envelopes.len(), needed: t - 1 });
        }
        let x = self.id.share_x();
        for (from, ciphertext) in &envelopes {
            let key = &self.neighbours[from].envelope;
            let opened = crypto::open(key, self.round, from.0, self.id.0, ciphertext)
                .filter(|plain| plain.len() == 2 * SHARE_BYTES)
                .and_then(|plain| {
                    let b = Share::from_bytes(x, &plain[..SHARE_BYTES]).ok()?;
                    let sk = Share::from_bytes(x, &plain[SHARE_BYTES..]).ok()?;
                    Some((b, sk))
                });
            match opened {
                Some(pair) => {
                    self.held.insert(*from, pair);
                }
                // Counted and skipped: the pairwise mask does not depend on the envelope, so
                // the client still masks with `from`; it just holds no share of its secrets.
                None => self.rejected.push(SecAggError::Decryption { from: *from }),
            }
        }
        self.maskers = envelopes.iter().map(|(id, _)| *id).collect();
        let mut y = std::mem::take(&mut self.plaintext);
        crypto::prg_apply(&self.self_mask_seed, &mut y, false);
        for &j in &self.maskers {
            // y_i = x_i + PRG(b_i) + Σ_{j>i} PRG(s_ij) − Σ_{j<i} PRG(s_ij).
            crypto::prg_apply(&self.neighbours[&j].mask, &mut y, j < self.id);
        }
        Ok(ClientMessage::MaskedInput { round: self.round, input: MaskedInput(y) })
    }

    /// Stage 4: reveal b shares of survivors and s_sk shares of dropped neighbours, never
    /// both for one participant.
    fn unmask(&mut self, survivors: &[ParticipantId], dropped: &[ParticipantId]) -> Result<ClientMessage, SecAggError> {
        for list in [survivors, dropped] {
            let mut last: Option<ParticipantId> = None;
            for &id in list {
                if last.is_some_and(|l| l >= id) {
                    return Err(self.bad_list(id, "not strictly ascending"));
                }
                last = Some(id);
                if id != self.id && !self.maskers.contains(&id) {
                    return Err(self.bad_list(id, "not a neighbour that shared keys"));
                }
            }
        }
        if let Some(&both) = dropped.iter().find(|id| **id == self.id || survivors.binary_search(id).is_ok()) {
            return Err(SecAggError::UnmaskConflict { neighbour: both });
        }
        let t = self.config.reconstruction_threshold as usize;
        if survivors.len() < t {
            return Err(SecAggError::TooFewSurvivors { stage: Stage::Unmask, alive: survivors.len(), needed: t });
        }
        let pick = |ids: &[ParticipantId], second: bool| {
            ids.iter()
                .filter_map(|id| self.held.get(id).map(|(b, sk)| (*id, if second { sk } else { b }.to_bytes())))
                .collect()
        };
        Ok(ClientMessage::Unmask {
            round: self.round,
            self_mask_shares: pick(survivors, false),
            secret_key_shares: pick(dropped, true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client no longer checks neighbours' keys separately: agreeing with a low-order
    /// key must still refuse the request, before the client shares anything.
    #[test]
    fn a_low_order_neighbour_key_is_refused_in_stage_2() {
        let config = SecAggConfig::new(3, 2, 4);
        let mut client = SecAggClient::new(config, ParticipantId(0), 1, &[0.5; 4], 1, [3; 32]).unwrap();
        let msg = client.handle_message(Time(0), ServerMessage::AdvertiseKeysRequest { round: 1 }).unwrap();
        let Some(ClientMessage::AdvertiseKeys { keys: good, .. }) = msg else { panic!("keys expected, got {msg:?}") };
        let low_order = PublicKeys { c_pk: good.c_pk, s_pk: [0; 32] };
        let request = ServerMessage::ShareKeysRequest {
            round: 1,
            neighbours: vec![(ParticipantId(1), good), (ParticipantId(2), low_order)],
        };
        let refused = client.handle_message(Time(0), request);
        assert_eq!(refused, Err(SecAggError::BadPublicKey { from: ParticipantId(2) }));
        assert_eq!(client.stage(), Stage::ShareKeys, "nothing changed: it still waits for stage 2");
        assert!(client.neighbours.is_empty() && client.held.is_empty());
    }
}
