//! SecAgg+ secure aggregation (Bell, Bonawitz, Gascón, Lepoint and Raykova 2020, "Secure
//! Single-Server Aggregation with (Poly)Logarithmic Overhead", <https://eprint.iacr.org/2020/704>)
//! as sans-IO client and server state machines.
//!
//! The server learns the example-weighted sum of the surviving clients' quantised updates and
//! nothing about any single one; clients talk only to the server, and each does work in the
//! number of its neighbours k, not in the number of participants n. Neither side reads a
//! clock, opens a socket or draws ambient randomness: time is an argument, messages are plain
//! Rust values ([`ServerMessage`], [`ClientMessage`]), and all randomness comes from 32-byte
//! seeds the caller passes in (the same seeds give the same bytes).
//!
//! - [`SecAggServer`] routes keys and envelopes, sums masked inputs, unmasks the sum.
//! - [`SecAggClient`] quantises and masks one input and answers the server's four requests.
//! - [`field`] (Shamir over GF(2^127 − 1)), [`crypto`] (X25519, HKDF-SHA256,
//!   ChaCha20-Poly1305, the AES-128-CTR mask generator), [`quantize`] (fixed point with
//!   counted clipping), [`graph`] (the k-regular Harary graph) are the parts.
//!
//! # Protocol
//! Setup. The server knows the n participants, the round number r and the configuration
//! ([`SecAggConfig`]: k = `num_shares` − 1 neighbours, threshold t = `reconstruction_threshold`).
//! From its seed it draws the communication graph G = H_{k,n}: the participants on a shuffled
//! ring, each joined to the k/2 nearest on either side ([`graph::Graph`]; with `num_shares` =
//! n, G is complete and the protocol is classic SecAgg, Bonawitz et al. 2017). Each client i
//! draws, from its own seed, two X25519 key pairs (c_i for encryption, s_i for masking) and a
//! 32-byte self-mask seed b_i, and quantises its input (see *Weights and quantisation*).
//! Every stage below opens with one server message per live client and closes as soon as
//! every live client has answered, or at its deadline (`stage_timeout_ms` after it opened)
//! with whoever answered: a client that has not answered by then has dropped out.
//!
//! 1. **Advertise keys.** The server sends [`ServerMessage::AdvertiseKeysRequest`]; client i
//!    answers [`ClientMessage::AdvertiseKeys`] with (c_pk_i, s_pk_i). Low-order keys are
//!    refused. Let U1 be those who answered.
//! 2. **Share keys.** The server sends each i ∈ U1 the keys of its neighbours in U1
//!    ([`ServerMessage::ShareKeysRequest`]). Client i Shamir-shares b_i and s_sk_i with
//!    threshold t among those neighbours and itself (holder j's x-coordinate is j + 1),
//!    encrypts each neighbour j's pair of shares under the key agreed from c_sk_i and c_pk_j,
//!    and answers [`ClientMessage::ShareKeys`] with one envelope per neighbour. Let U2 be
//!    those who answered.
//! 3. **Collect masked inputs.** The server routes to each i ∈ U2 the envelopes its
//!    neighbours in U2 wrote to it ([`ServerMessage::MaskedInputRequest`]). Client i opens
//!    them (an envelope that fails to open is counted as [`SecAggError::Decryption`] and
//!    skipped: i then holds no share of that neighbour), and for each listed neighbour j agrees
//!    s_ij from s_sk_i and s_pk_j. It answers [`ClientMessage::MaskedInput`] with
//!    `y_i = p_i + PRG(b_i) + Σ_{j>i} PRG(s_ij) − Σ_{j<i} PRG(s_ij)  (mod 2^32)`, where p_i
//!    is its quantised plaintext and j runs over its neighbours in U2. The server adds y_i to
//!    a running sum at once and keeps no copy. Let U3 be those who answered.
//! 4. **Unmask.** The server sends each i ∈ U3 the lists of its neighbours that survived
//!    (in U3, with i itself) and that dropped (in U2 but not U3)
//!    ([`ServerMessage::UnmaskRequest`]). Client i answers [`ClientMessage::Unmask`] with its
//!    shares of b_j for the survivors and of s_sk_j for the dropped, and refuses
//!    ([`SecAggError::UnmaskConflict`], leaving the round) a request that names a participant
//!    in both lists, or itself as dropped. When the stage closes, the server reconstructs b_i
//!    for every i ∈ U3 and s_sk_j for every dropped j (checking it against s_pk_j), and
//!    outputs Σ_{i∈U3} y_i − Σ_{i∈U3} PRG(b_i) ∓ Σ_{j dropped, k∈N(j)∩U3} PRG(s_jk) =
//!    Σ_{i∈U3} p_i (the pairwise masks between survivors cancel), as an [`UnmaskedSum`].
//!
//! At the close of stages 1 and 2 the server also removes, repeatedly, every client with fewer
//! than t − 1 live neighbours (its secrets could never be reconstructed). A round aborts,
//! with the reason in [`SecAggServer::poll_result`], if a stage leaves fewer than t clients
//! ([`SecAggError::TooFewSurvivors`]: in particular a single client's input is never
//! unmasked) or a secret lacks t shares ([`SecAggError::Reconstruction`]).
//!
//! # Weights and quantisation
//! Client i's plaintext is `p_i = [w_i, clipped_i, w_i·ℓ_i1, …, w_i·ℓ_id]` (d + 2 words,
//! [`HEADER_WORDS`] = 2): the weight w_i (its number of examples, an exact integer in
//! `1 ..= max_weight`, not quantised), the number of its input values that lay outside the
//! clipping range, and its quantised input levels ℓ_ij times w_i. With clipping range c and
//! quantisation range q, the step is Δ = 2c/(q − 1) and ℓ_ij ∈ [0, q − 1] is
//! (clip(x_ij) + c)/Δ rounded stochastically (up with probability equal to the fraction,
//! from the client's seeded RNG), so `|ℓ_ij·Δ − c − clip(x_ij)| < Δ`.
//!
//! The sum is exact (no wrap modulo 2^32) because the configuration requires
//! n · `max_weight` · (q − 1) < 2^32 (and n · d < 2^32 for the clip counts). The server
//! divides: with W = Σ_{i∈U3} w_i and S_j = Σ w_i ℓ_ij,
//!
//! ```text
//! m_j = S_j·Δ/W − c = Σ_i w_i (ℓ_ij·Δ − c) / W,   so   |m_j − Σ_i w_i clip(x_ij) / W| < Δ
//! ```
//!
//! (a weighted mean of errors each below Δ). This is [`UnmaskedSum::error_bound`]; the `f32`
//! result of [`UnmaskedSum::weighted_mean`] adds at most half an ulp. The rounding is
//! unbiased, so the typical error is far smaller (standard deviation at most
//! Δ·√(Σw_i²)/(2W)). Inputs outside [−c, c] are clipped, never silently: each client counts
//! them ([`SecAggClient::clipped`]) and the server learns only the total over U3
//! ([`UnmaskedSum::clipped`]), masked like the rest.
//!
//! # Threat model and guarantees
//! - **Honest-but-curious server** (it follows the protocol but tries to learn inputs),
//!   possibly colluding with clients. It learns Σ_{i∈U3} p_i with |U3| ≥ t and nothing else
//!   about the inputs: each y_i is uniform on Z_{2^32}^{d+2} to anyone without b_i
//!   (tested statistically), and it never gets both b_i and s_sk_i of a client. By type the
//!   server cannot do otherwise: it receives only [`MaskedInput`]s, folds each into a running
//!   sum, and its only output is the [`UnmaskedSum`]; no method takes or returns one
//!   client's plaintext. Fewer than t colluding holders learn nothing about a shared secret.
//! - **Dropouts.** Clients may drop at any stage. With the complete graph, up to n − t may
//!   drop (before or after uploading) and the sum of the survivors is still exact. In SecAgg+
//!   the condition is per neighbourhood: every survivor, and every client that shared keys
//!   but did not upload, needs t holders of its shares (its neighbours in U2 and itself)
//!   among those who answer stage 4. Bell et al. show k = O(log n) keeps this true with
//!   high probability for a bounded dropout rate.
//! - **Bad messages** (wrong round or stage, replays, duplicates, unknown senders, wrong
//!   lengths, malformed lists or shares, low-order keys, envelopes that fail to decrypt) are
//!   refused with a typed [`SecAggError`] and counted by [`SecAggError::kind`]
//!   ([`SecAggServer::rejected`], [`UnmaskedSum::rejected`], [`SecAggClient::rejected`]);
//!   the round goes on with the honest clients.
//!
//! What is **not** protected:
//! - A **malicious server** can lie about dropouts: tell some of i's neighbours that i
//!   dropped and others that it survived, and so collect t shares of both b_i and s_sk_i
//!   from different clients. Each client refuses only a request that asks *it* for both.
//!   Bell et al.'s defences (signed keys under a PKI and the consistency-check round of
//!   Bonawitz et al.'s malicious-secure variant, and clients aborting when too many
//!   neighbours are reported dropped) are **not implemented**. Choosing t > `num_shares`/2
//!   limits the damage but does not remove it. A malicious server can also substitute public
//!   keys (there is no PKI) or choose the graph.
//! - **Malicious clients** can send any input in range (there are no range proofs: combine
//!   with clipping-aware robust aggregation or DP outside this module), and wrong shares,
//!   which are detected only when more than t shares of a secret arrive (they must lie on one
//!   polynomial) or, for s_sk, when the result does not match s_pk; detection aborts the
//!   round, it does not correct.
//! - Transport authenticity between each client and the server is assumed (the messages are
//!   not signed), and the seeds must be secret and fresh per round (from a real CSPRNG in
//!   production; the simulator derives them from its task seed).
//!
//! # Parameters
//! | name | meaning |
//! |---|---|
//! | `num_shares` | k + 1: each secret's shares, one per neighbour plus one kept. Odd, or n. |
//! | `reconstruction_threshold` | t: shares that reconstruct; least clients per stage. |
//! | `clipping_range` | c: inputs are clipped (and counted) to [−c, c]. |
//! | `quantization_range` | q: levels 0 ..= q − 1; step Δ = 2c/(q − 1) bounds the error. |
//! | `modulus_range` | 2^32, the only value implemented (masks are `u32` arithmetic). |
//! | `max_weight` | the largest w; n · `max_weight` · (q − 1) < 2^32 is required. |
//! | `dimension` | d, the input length (masked vectors have d + 2 words). |
//! | `stage_timeout_ms` | how long each stage waits before closing with whoever answered. |
//!
//! # Deviations from Flower and from the papers
//! - **Cryptographic mask generator.** Every mask (self and pairwise) is the AES-128-CTR
//!   keystream of a 32-byte seed (key = its first 16 bytes, initial counter block = the
//!   last 16; [`crypto::prg_apply`]), as Google's production secure aggregation expands masks
//!   with AES-CTR (AES-256 there); Flower folds its seeds to 32 bits for NumPy's Mersenne
//!   Twister.
//! - **Counted clipping.** Flower clips silently; here clipped values are counted and the
//!   total travels, masked, in the vector's header.
//! - **Exact integer weights.** Flower quantises the ratio w/`max_weight` and w·x/`max_weight`;
//!   here w is an exact integer and the update is w·ℓ, which makes the error bound on the
//!   weighted mean Δ whatever the weights, at the price of the n · `max_weight` · (q − 1) <
//!   2^32 constraint (hence the smaller default q = 2^16).
//! - **Modulus fixed at 2^32** (Flower's default). Other moduli are refused by validation.
//! - **Shamir over GF(2^127 − 1)** with 32-byte secrets cut into 15, 15 and 2-byte chunks; extra
//!   shares beyond t are checked for consistency.
//! - **Envelopes** are ChaCha20-Poly1305 with the round, sender and recipient as associated
//!   data, opened in stage 3 (Bonawitz et al. open them in stage 4); failures are counted and
//!   skipped instead of aborting the client.
//! - **Pruning:** clients left with fewer than t − 1 live neighbours are excluded at the close
//!   of stages 1 and 2.
//! - **Timers** live in the server only; clients keep no deadlines.
//!
//! # Cost
//! A client agrees 2k keys, evaluates 6 polynomials of degree t − 1 at k + 1 points, and
//! expands k + 1 masks of d + 2 words: O(k·d + k·t) ⊆ O(k·d + k²), independent of n. The
//! server routes O(n·k) envelopes, interpolates O(n) secrets (O(t²) each, plus O(t) per extra
//! share), and expands |U3| + k·|dropped| masks of d + 2 words, in parallel with rayon
//! (addition mod 2^32 commutes, so the result does not depend on the thread count). The mask
//! generator writes the AES-CTR keystream (AES-NI/VAES where the CPU has them) through a
//! 4 KiB stack buffer straight into the `u32` words (no allocation per element). A client
//! agrees each of its 2k keys once, in stage 2, and keeps them for stage 3.
//!
//! # Driving a round
//! ```
//! use dainet_privacy::secagg::{ParticipantId, SecAggClient, SecAggConfig, SecAggServer, Time};
//! use std::collections::BTreeMap;
//!
//! let config = SecAggConfig::new(3, 2, 4); // num_shares = n = 3 (complete graph), t = 2, d = 4
//! let ids: Vec<ParticipantId> = (0..3).map(ParticipantId).collect();
//! let mut server = SecAggServer::new(config.clone(), ids.clone(), 1, [0; 32]).unwrap();
//! let mut clients: BTreeMap<_, _> = ids
//!     .iter()
//!     .map(|&id| {
//!         let input = [0.5, -0.25, 1.0, 0.0];
//!         let seed = [id.0 as u8 + 1; 32]; // secret and fresh in real use
//!         (id, SecAggClient::new(config.clone(), id, 1, &input, 10, seed).unwrap())
//!     })
//!     .collect();
//! let now = Time(0);
//! server.handle_start(now);
//! let result = loop {
//!     while let Some((to, msg)) = server.poll_message() {
//!         if let Some(reply) = clients.get_mut(&to).unwrap().handle_message(now, msg).unwrap() {
//!             server.handle_message(now, to, reply).unwrap();
//!         }
//!     }
//!     if let Some(result) = server.poll_result() {
//!         break result.unwrap();
//!     }
//!     // Nothing in flight: wait for the stage deadline (`server.poll_timeout()`).
//!     server.handle_timeout(server.poll_timeout().unwrap());
//! };
//! assert_eq!(result.total_weight(), 30);
//! let mean = result.weighted_mean().unwrap();
//! assert!((mean[0] - 0.5).abs() < 1e-3);
//! ```

pub mod client;
pub mod crypto;
pub mod field;
pub mod graph;
pub mod quantize;
pub mod server;

#[cfg(test)]
mod network;
#[cfg(test)]
mod tests;

pub use client::SecAggClient;
pub use server::{SecAggServer, UnmaskedSum};

use field::{ShamirError, SHARE_BYTES};
use quantize::QuantizeError;

/// Words of the masked vector before the update itself: the weight w and the clip count.
pub const HEADER_WORDS: usize = 2;

/// The only modulus implemented: masked vectors live in Z_{2^32}.
pub const MODULUS_2_32: u64 = 1 << 32;

/// Bytes of a share envelope: two shares and the Poly1305 tag.
pub const ENVELOPE_BYTES: usize = 2 * SHARE_BYTES + crypto::TAG_BYTES;

pub use dainet_core::Time;

/// A participant of a SecAgg+ round (a client). Shamir x-coordinates are `id + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ParticipantId(pub u32);

impl std::fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "participant {}", self.0)
    }
}

impl ParticipantId {
    /// The participant's Shamir x-coordinate, `id + 1` (never zero).
    pub fn share_x(self) -> field::Fe {
        field::Fe::new(u128::from(self.0) + 1)
    }
}

/// Whom a server message is for.
pub type Recipient = ParticipantId;

/// A share as it travels: 48 bytes, see [`field::Share::to_bytes`].
pub type ShareBytes = [u8; SHARE_BYTES];

/// The stages of a round, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Not started (server only).
    Setup,
    /// Stage 1: clients advertise their two public keys.
    AdvertiseKeys,
    /// Stage 2: clients send their secrets' shares, encrypted, to their neighbours.
    ShareKeys,
    /// Stage 3: clients send their masked inputs.
    CollectMaskedInputs,
    /// Stage 4: survivors send the shares that unmask the sum.
    Unmask,
    /// The round is over (a result, an abort, or a client that has sent its last message).
    Done,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Stage::Setup => "setup",
            Stage::AdvertiseKeys => "advertise_keys",
            Stage::ShareKeys => "share_keys",
            Stage::CollectMaskedInputs => "collect_masked_inputs",
            Stage::Unmask => "unmask",
            Stage::Done => "done",
        };
        f.write_str(name)
    }
}

/// SecAgg+ settings, named as in Flower's `SecAggPlusWorkflow`. Server and clients must use
/// the same values.
#[derive(Clone, Debug, PartialEq)]
pub struct SecAggConfig {
    /// Shares each secret is split into: the client's k neighbours plus itself (k + 1).
    /// `num_shares − 1` must be even, or `num_shares` must equal the number of participants
    /// (then the graph is complete: classic SecAgg). Bell et al. take k = O(log n); the
    /// tests use k ≈ 2·log2(n).
    pub num_shares: u32,
    /// Shares needed to reconstruct a secret (t), `2 ..= num_shares`. It is also the least
    /// number of participants a stage may end with. Choose t > `num_shares` / 2: then no
    /// two disjoint sets of holders can each reconstruct, which is what stops a server that
    /// lies about dropouts from learning both secrets of one client (not checked here).
    pub reconstruction_threshold: u32,
    /// Inputs are clipped to [−c, c] (each clipped value is counted). Flower's default: 8.0.
    pub clipping_range: f32,
    /// Quantised values lie in `[0, quantization_range)`: q levels, step Δ = 2c/(q − 1).
    /// Defaults to 2^16 (Flower: 2^22, but Flower scales weights down to [0, 1] first; see
    /// the module docs on weights).
    pub quantization_range: u32,
    /// The modulus of the masked vectors. Only 2^32 is implemented ([`MODULUS_2_32`], the
    /// default, as in Flower); other values are refused.
    pub modulus_range: u64,
    /// The largest weight (number of examples) a client may contribute. The sum of weighted
    /// quantised values must not wrap: n · `max_weight` · (q − 1) < 2^32 is checked.
    /// Defaults to 64.
    pub max_weight: u32,
    /// The length d of every client's input vector.
    pub dimension: usize,
    /// Milliseconds each stage waits for answers before closing with whoever answered.
    /// Defaults to 30 000.
    pub stage_timeout_ms: u64,
}

impl SecAggConfig {
    /// A configuration with the given graph and threshold for inputs of length `dimension`,
    /// and the defaults: `clipping_range` 8.0, `quantization_range` 2^16, `modulus_range`
    /// 2^32, `max_weight` 64, `stage_timeout_ms` 30 000.
    pub fn new(num_shares: u32, reconstruction_threshold: u32, dimension: usize) -> Self {
        Self {
            num_shares,
            reconstruction_threshold,
            clipping_range: 8.0,
            quantization_range: 1 << 16,
            modulus_range: MODULUS_2_32,
            max_weight: 64,
            dimension,
            stage_timeout_ms: 30_000,
        }
    }

    /// The degree k = `num_shares − 1` of the graph.
    pub fn degree(&self) -> usize {
        self.num_shares.saturating_sub(1) as usize
    }

    /// The quantiser of this configuration.
    pub fn quantizer(&self) -> Result<quantize::Quantizer, ConfigError> {
        quantize::Quantizer::new(self.clipping_range, self.quantization_range).map_err(ConfigError::Quantization)
    }

    /// Checks what a client can check alone (everything that does not involve n).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let t = self.reconstruction_threshold;
        if self.num_shares < 2 {
            return Err(ConfigError::NumShares { num_shares: self.num_shares, participants: None });
        }
        if t < 2 || t > self.num_shares {
            return Err(ConfigError::Threshold { threshold: t, num_shares: self.num_shares });
        }
        self.quantizer()?;
        if self.modulus_range != MODULUS_2_32 {
            return Err(ConfigError::Modulus(self.modulus_range));
        }
        if self.max_weight == 0 {
            return Err(ConfigError::MaxWeight);
        }
        if self.dimension == 0 {
            return Err(ConfigError::Dimension);
        }
        if self.stage_timeout_ms == 0 {
            return Err(ConfigError::StageTimeout);
        }
        self.check_no_wrap(1)
    }

    /// Checks everything, for a round of `participants` clients.
    pub fn validate_for(&self, participants: usize) -> Result<(), ConfigError> {
        self.validate()?;
        let k = self.degree();
        if participants < self.num_shares as usize || (k + 1 < participants && k % 2 == 1) {
            return Err(ConfigError::NumShares { num_shares: self.num_shares, participants: Some(participants) });
        }
        self.check_no_wrap(participants)
    }

    fn check_no_wrap(&self, n: usize) -> Result<(), ConfigError> {
        let per_client = u128::from(self.max_weight) * u128::from(self.quantization_range - 1);
        let clips = self.dimension as u128;
        if (n as u128) * per_client.max(clips) > u128::from(u32::MAX) {
            return Err(ConfigError::Overflow {
                participants: n,
                max_weight: self.max_weight,
                quantization_range: self.quantization_range,
                dimension: self.dimension,
            });
        }
        Ok(())
    }
}

/// A configuration SecAgg+ cannot run.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `num_shares` does not fit the participants.
    #[error(
        "num_shares ({num_shares}) must be at least 2, at most the number of participants ({participants:?}), \
         and odd unless it equals it"
    )]
    NumShares {
        /// The value.
        num_shares: u32,
        /// The number of participants, when known.
        participants: Option<usize>,
    },
    /// `reconstruction_threshold` outside `2 ..= num_shares`.
    #[error("reconstruction_threshold ({threshold}) must be between 2 and num_shares ({num_shares})")]
    Threshold {
        /// The threshold.
        threshold: u32,
        /// The shares.
        num_shares: u32,
    },
    /// The clipping or quantisation range.
    #[error(transparent)]
    Quantization(QuantizeError),
    /// Only the modulus 2^32 is implemented.
    #[error("modulus_range ({0}) must be 4294967296 (2^32); other moduli are not implemented")]
    Modulus(u64),
    /// `max_weight` is 0.
    #[error("max_weight must be at least 1")]
    MaxWeight,
    /// `dimension` is 0.
    #[error("dimension must be at least 1")]
    Dimension,
    /// `stage_timeout_ms` is 0.
    #[error("stage_timeout_ms must be at least 1")]
    StageTimeout,
    /// The sum could wrap modulo 2^32.
    #[error(
        "participants ({participants}) * max(max_weight ({max_weight}) * (quantization_range ({quantization_range}) - 1), \
         dimension ({dimension})) must be below 2^32; consider a smaller quantization_range or max_weight"
    )]
    Overflow {
        /// Participants.
        participants: usize,
        /// Largest weight.
        max_weight: u32,
        /// Levels.
        quantization_range: u32,
        /// Vector length.
        dimension: usize,
    },
    /// The participants list is empty or has a duplicate.
    #[error("participants must be non-empty and distinct")]
    Participants,
}

/// A client's two public keys (stage 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PublicKeys {
    /// The encryption key `c_pk`: envelopes of shares are encrypted under keys agreed from it.
    pub c_pk: [u8; 32],
    /// The masking key `s_pk`: pairwise mask seeds are agreed from it.
    pub s_pk: [u8; 32],
}

/// A client's masked input y = x_q + PRG(b) ± Σ PRG(s_ij) (mod 2^32): `[w, clipped, w·x_q]`
/// masked word by word.
///
/// There is deliberately no way to unmask one: the server only adds these into its running
/// sum, and only that sum is ever unmasked ([`UnmaskedSum`]).
#[derive(Clone, PartialEq, Eq)]
pub struct MaskedInput(Vec<u32>);

impl std::fmt::Debug for MaskedInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MaskedInput({} words)", self.0.len())
    }
}

impl MaskedInput {
    /// The masked vector received from the wire.
    pub fn from_words(words: Vec<u32>) -> Self {
        Self(words)
    }

    /// The masked words (to put on the wire).
    pub fn words(&self) -> &[u32] {
        &self.0
    }

    /// Words, `dimension + HEADER_WORDS` when well formed.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it has no words.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What the server sends a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerMessage {
    /// Stage 1 opens: send your public keys.
    AdvertiseKeysRequest {
        /// The round.
        round: u32,
    },
    /// Stage 2 opens: your live neighbours' public keys, ascending by id; share your secrets
    /// with them.
    ShareKeysRequest {
        /// The round.
        round: u32,
        /// Neighbours and their keys.
        neighbours: Vec<(ParticipantId, PublicKeys)>,
    },
    /// Stage 3 opens: the envelopes your neighbours who finished stage 2 sent you (sender,
    /// ciphertext), ascending by sender; mask with exactly these neighbours.
    MaskedInputRequest {
        /// The round.
        round: u32,
        /// Sender and envelope.
        envelopes: Vec<(ParticipantId, Vec<u8>)>,
    },
    /// Stage 4 opens: send the self-mask share of each survivor and the masking-key share
    /// of each dropped neighbour.
    UnmaskRequest {
        /// The round.
        round: u32,
        /// Neighbours (and you) whose masked input is in the sum.
        survivors: Vec<ParticipantId>,
        /// Neighbours who shared keys but sent no masked input.
        dropped: Vec<ParticipantId>,
    },
}

impl ServerMessage {
    /// The round it belongs to.
    pub fn round(&self) -> u32 {
        match self {
            ServerMessage::AdvertiseKeysRequest { round }
            | ServerMessage::ShareKeysRequest { round, .. }
            | ServerMessage::MaskedInputRequest { round, .. }
            | ServerMessage::UnmaskRequest { round, .. } => *round,
        }
    }

    /// The stage it opens.
    pub fn stage(&self) -> Stage {
        match self {
            ServerMessage::AdvertiseKeysRequest { .. } => Stage::AdvertiseKeys,
            ServerMessage::ShareKeysRequest { .. } => Stage::ShareKeys,
            ServerMessage::MaskedInputRequest { .. } => Stage::CollectMaskedInputs,
            ServerMessage::UnmaskRequest { .. } => Stage::Unmask,
        }
    }
}

/// What a client sends the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientMessage {
    /// Stage 1: my public keys.
    AdvertiseKeys {
        /// The round.
        round: u32,
        /// The keys.
        keys: PublicKeys,
    },
    /// Stage 2: one envelope per neighbour (recipient, ciphertext), holding that neighbour's
    /// shares of my self-mask seed b and of my masking secret key s_sk.
    ShareKeys {
        /// The round.
        round: u32,
        /// Recipient and envelope.
        envelopes: Vec<(ParticipantId, Vec<u8>)>,
    },
    /// Stage 3: my masked input.
    MaskedInput {
        /// The round.
        round: u32,
        /// The masked vector.
        input: MaskedInput,
    },
    /// Stage 4: the shares asked for, by owner.
    Unmask {
        /// The round.
        round: u32,
        /// Shares of survivors' self-mask seeds b.
        self_mask_shares: Vec<(ParticipantId, ShareBytes)>,
        /// Shares of dropped neighbours' masking secret keys s_sk.
        secret_key_shares: Vec<(ParticipantId, ShareBytes)>,
    },
}

impl ClientMessage {
    /// The round it claims.
    pub fn round(&self) -> u32 {
        match self {
            ClientMessage::AdvertiseKeys { round, .. }
            | ClientMessage::ShareKeys { round, .. }
            | ClientMessage::MaskedInput { round, .. }
            | ClientMessage::Unmask { round, .. } => *round,
        }
    }

    /// The stage it answers.
    pub fn stage(&self) -> Stage {
        match self {
            ClientMessage::AdvertiseKeys { .. } => Stage::AdvertiseKeys,
            ClientMessage::ShareKeys { .. } => Stage::ShareKeys,
            ClientMessage::MaskedInput { .. } => Stage::CollectMaskedInputs,
            ClientMessage::Unmask { .. } => Stage::Unmask,
        }
    }
}

/// Why a message, a stage or a round failed. Every refusal names its reason; the state
/// machines count refusals by [`SecAggError::kind`].
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum SecAggError {
    /// The configuration cannot run.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The message is for another round.
    #[error("message for round {got} in round {expected}")]
    WrongRound {
        /// This round.
        expected: u32,
        /// The message's round.
        got: u32,
    },
    /// The message is for another stage than the open one (and not a replay of a past one).
    #[error("message for stage {got} while stage {expected} is open")]
    WrongStage {
        /// The open stage.
        expected: Stage,
        /// The message's stage.
        got: Stage,
    },
    /// A message for a stage this side already answered or closed (a replay or a late one).
    #[error("replayed or late message for past stage {stage}")]
    Replayed {
        /// The message's stage.
        stage: Stage,
    },
    /// The sender is not a participant of this round.
    #[error("{0} is not a participant of this round")]
    UnknownParticipant(ParticipantId),
    /// The sender was dropped or excluded at an earlier stage.
    #[error("{from} is no longer live (dropped before stage {stage})")]
    NotLive {
        /// The sender.
        from: ParticipantId,
        /// The open stage.
        stage: Stage,
    },
    /// The sender already answered this stage.
    #[error("{from} already answered stage {stage}")]
    Duplicate {
        /// The sender.
        from: ParticipantId,
        /// The stage.
        stage: Stage,
    },
    /// A vector or envelope of the wrong length.
    #[error("{from}: length {got}, expected {expected}")]
    WrongLength {
        /// The sender.
        from: ParticipantId,
        /// Expected length.
        expected: usize,
        /// Received length.
        got: usize,
    },
    /// A public key of low order (it would make agreed keys predictable).
    #[error("{from} advertised a low-order public key")]
    BadPublicKey {
        /// The owner.
        from: ParticipantId,
    },
    /// A message lists participants it should not (not a neighbour, twice, missing one).
    #[error("bad participant list ({reason}): {about}")]
    BadList {
        /// The participant at fault.
        about: ParticipantId,
        /// What is wrong.
        reason: &'static str,
    },
    /// An envelope failed to decrypt: altered, or bound to another round or pair.
    #[error("envelope from {from} failed to decrypt (tampered or misrouted)")]
    Decryption {
        /// Its sender.
        from: ParticipantId,
    },
    /// A share's bytes are malformed.
    #[error("{from}: malformed share of {owner}'s secret")]
    BadShare {
        /// The holder that sent it.
        from: ParticipantId,
        /// The secret's owner.
        owner: ParticipantId,
    },
    /// The server asked for both secrets of one participant (or for its own key as dropped);
    /// the client refuses and leaves the round.
    #[error("refused unmask request: it asks for both secrets of {neighbour}")]
    UnmaskConflict {
        /// The participant both secrets were asked for.
        neighbour: ParticipantId,
    },
    /// A client has fewer live neighbours than its secrets need.
    #[error("{got} live neighbours, at least {needed} needed")]
    TooFewNeighbours {
        /// Live neighbours.
        got: usize,
        /// Needed (t − 1).
        needed: usize,
    },
    /// A stage closed with fewer participants than the threshold.
    #[error("stage {stage} closed with {alive} participants, at least {needed} needed")]
    TooFewSurvivors {
        /// The stage.
        stage: Stage,
        /// Participants left.
        alive: usize,
        /// The threshold.
        needed: usize,
    },
    /// A secret could not be reconstructed from the shares received.
    #[error("cannot reconstruct {owner}'s {secret}: {source}")]
    Reconstruction {
        /// The owner.
        owner: ParticipantId,
        /// `"self-mask seed"` or `"masking key"`.
        secret: &'static str,
        /// Why.
        source: ShamirError,
    },
    /// A reconstructed masking key does not match the public key its owner advertised.
    #[error("reconstructed masking key of {owner} does not match its public key")]
    KeyMismatch {
        /// The owner.
        owner: ParticipantId,
    },
    /// The client's input cannot be quantised.
    #[error("input: {0}")]
    Input(QuantizeError),
    /// The client's weight is outside `1 ..= max_weight`.
    #[error("weight {weight} outside 1..={max_weight}")]
    Weight {
        /// The weight.
        weight: u32,
        /// The configured maximum.
        max_weight: u32,
    },
    /// The state machine has finished (or aborted) and takes no more messages.
    #[error("the round is over")]
    Finished,
}

impl SecAggError {
    /// A short stable name for counting (`wrong_round`, `duplicate`, `decryption`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            SecAggError::Config(_) => "config",
            SecAggError::WrongRound { .. } => "wrong_round",
            SecAggError::WrongStage { .. } => "wrong_stage",
            SecAggError::Replayed { .. } => "replayed",
            SecAggError::UnknownParticipant(_) => "unknown_participant",
            SecAggError::NotLive { .. } => "not_live",
            SecAggError::Duplicate { .. } => "duplicate",
            SecAggError::WrongLength { .. } => "wrong_length",
            SecAggError::BadPublicKey { .. } => "bad_public_key",
            SecAggError::BadList { .. } => "bad_list",
            SecAggError::Decryption { .. } => "decryption",
            SecAggError::BadShare { .. } => "bad_share",
            SecAggError::UnmaskConflict { .. } => "unmask_conflict",
            SecAggError::TooFewNeighbours { .. } => "too_few_neighbours",
            SecAggError::TooFewSurvivors { .. } => "too_few_survivors",
            SecAggError::Reconstruction { .. } => "reconstruction",
            SecAggError::KeyMismatch { .. } => "key_mismatch",
            SecAggError::Input(_) => "input",
            SecAggError::Weight { .. } => "weight",
            SecAggError::Finished => "finished",
        }
    }
}

/// Adds one to the count of `kind` in `counts` (kept in first-seen order).
fn count(counts: &mut Vec<(&'static str, u32)>, kind: &'static str) {
    match counts.iter_mut().find(|(k, _)| *k == kind) {
        Some((_, n)) => *n += 1,
        None => counts.push((kind, 1)),
    }
}
