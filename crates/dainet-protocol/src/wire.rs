//! The byte form of every message of the federated round: what crosses a process boundary.
//!
//! A frame is [`WIRE_VERSION`], then the postcard encoding of one message ([`dainet_core::codec`]).
//! The message types of [`crate::message`] are the state machines' in-memory values; this
//! module maps them to and from a wire schema declared here, so the format changes only when
//! this file does (its bytes are pinned in `tests/wire_format.rs`).
//!
//! What travels:
//! - to a trainer ([`encode_to_trainer`], [`decode_to_trainer`]): a train request that names the
//!   global model by its hash ([`ModelRef`]) instead of carrying it, the secure session's
//!   settings, each SecAgg+ server message, and a refusal of something the trainer sent
//!   ([`RejectionNotice`]);
//! - to the coordinator ([`encode_to_coordinator`], [`decode_to_coordinator`]): a plain update,
//!   "ready to mask", each SecAgg+ client message;
//! - the global model itself as a content-addressed blob ([`encode_model`], [`decode_model`]):
//!   a trainer fetches it once per round and checks it against the request's [`ModelRef`].
//!
//! Guarantees:
//! - Decoding never panics and never allocates from a length it has not bounded: a frame over
//!   [`WireLimits::max_frame_bytes`] is refused before it is parsed, so no length field inside it
//!   can claim more than the frame holds.
//! - A decoded message carries only settings its receiver can run: a secure session's
//!   configuration and a trainer's differential-privacy settings are validated here, and every
//!   count that becomes a `usize` is range-checked.
//! - Every refusal is a [`WireError`] with a short stable [`WireError::kind`], which the
//!   coordinator counts among a round's rejections ([`crate::Coordinator::handle_frame`]).
//! - Vectors of `f32` and `u32` travel as their little-endian bytes, so a value crosses the wire
//!   bit for bit (a NaN's payload included).

use crate::message::{SecureUpload, ToCoordinator, ToTrainer, TrainRequest, Update, Upload};
use crate::record::update_digest;
use crate::ClientId;
use dainet_agg::dp::{Clipping, DpConfig, NoisePlacement};
use dainet_core::codec::{self, CodecError};
use dainet_core::{Layout, Params};
use dainet_privacy::secagg::{
    ClientMessage, MaskedInput, ParticipantId, PublicKeys, SecAggConfig, ServerMessage, ShareBytes, HEADER_WORDS,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::sync::Arc;

/// The version byte of every frame and model blob this build writes and reads.
pub const WIRE_VERSION: u8 = 1;

/// No frame is ever larger than this (1 GiB), whatever the model.
pub const MAX_FRAME_BYTES: usize = 1 << 30;

/// Bytes a frame may take beyond its vector and its per-client lists (tags, rounds, counts).
const FRAME_OVERHEAD: usize = 4096;
/// Bytes one client adds at most to a frame's lists: a neighbour's id and two public keys, or
/// an envelope, or two shares, with their length prefixes.
const PER_CLIENT_BYTES: usize = 160;

/// How large a frame a receiver accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireLimits {
    /// Frames over this many bytes are refused unread.
    pub max_frame_bytes: usize,
}

impl WireLimits {
    /// The limits of a round of a model of `values` parameters among `clients` clients: the
    /// largest message is an update or a masked input (4 bytes a value) or a list with an entry
    /// per client.
    pub fn for_round(values: usize, clients: usize) -> Self {
        let vector = values.saturating_add(HEADER_WORDS).saturating_mul(4);
        let lists = clients.saturating_mul(PER_CLIENT_BYTES);
        let max = vector.saturating_add(lists).saturating_add(FRAME_OVERHEAD);
        Self { max_frame_bytes: max.min(MAX_FRAME_BYTES) }
    }
}

/// Why a frame or a model blob was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The bytes are not a frame of this version and size (see [`CodecError`]).
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The frame decodes, but a value in it is out of range.
    #[error("{record}: {reason}")]
    Invalid {
        /// What was being decoded.
        record: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A model blob is not the model its request named.
    #[error("the model blob does not match its reference: expected {expected} values hashing to {}…, got {got} values hashing to {}…", hex8(.expected_hash), hex8(.got_hash))]
    ModelMismatch {
        /// Values the reference names.
        expected: u64,
        /// Its hash.
        expected_hash: [u8; 32],
        /// Values of the blob.
        got: u64,
        /// Their hash.
        got_hash: [u8; 32],
    },
}

impl WireError {
    /// A short stable name for counting: `frame_empty`, `frame_too_large`, `frame_version`,
    /// `frame_truncated`, `frame_malformed`, `frame_trailing`, `frame_invalid`, `model_mismatch`.
    pub fn kind(&self) -> &'static str {
        match self {
            WireError::Codec(CodecError::Empty { .. }) => "frame_empty",
            WireError::Codec(CodecError::TooLarge { .. }) => "frame_too_large",
            WireError::Codec(CodecError::Version { .. }) => "frame_version",
            WireError::Codec(CodecError::Truncated { .. }) => "frame_truncated",
            WireError::Codec(CodecError::Trailing { .. }) => "frame_trailing",
            WireError::Codec(_) => "frame_malformed",
            WireError::Invalid { .. } => "frame_invalid",
            WireError::ModelMismatch { .. } => "model_mismatch",
        }
    }
}

fn hex8(hash: &[u8; 32]) -> String {
    hash[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn invalid(record: &'static str, reason: impl Into<String>) -> WireError {
    WireError::Invalid { record, reason: reason.into() }
}

const TO_TRAINER: &str = "message to a trainer";
const TO_COORDINATOR: &str = "message to the coordinator";
const MODEL: &str = "model blob";

/// Names a global model: the blake3 commitment of its values ([`update_digest`]) and their
/// count. A train request carries this; the model travels apart, once, as a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelRef {
    /// [`update_digest`] of the values.
    pub hash: [u8; 32],
    /// How many values.
    pub values: u64,
}

impl ModelRef {
    /// The reference of `params`.
    pub fn of(params: &Params) -> Self {
        Self { hash: update_digest(params.values()), values: params.values().len() as u64 }
    }

    /// `Ok` if `got` is this reference, else the mismatch.
    fn check(&self, got: ModelRef) -> Result<(), WireError> {
        if got == *self {
            return Ok(());
        }
        Err(WireError::ModelMismatch {
            expected: self.values,
            expected_hash: self.hash,
            got: got.values,
            got_hash: got.hash,
        })
    }
}

/// The blob of a global model: [`WIRE_VERSION`], then its values as little-endian `f32`s (with
/// postcard's length prefix). Its layout is the task's, which every party already has.
pub fn encode_model(params: &Params) -> Vec<u8> {
    codec::encode(WIRE_VERSION, &Words(Cow::Borrowed(params.values())))
}

/// The length of [`encode_model`]'s blob of `values` values, without encoding it.
pub fn model_blob_len(values: usize) -> usize {
    let bytes = values.saturating_mul(4);
    // postcard's length prefix: a varint, 7 bits a byte.
    let prefix = (usize::BITS - bytes.leading_zeros()).div_ceil(7).max(1) as usize;
    1 + prefix + bytes
}

/// The model in `bytes`, if it is the one `expected` names and fits `layout`.
pub fn decode_model(bytes: &[u8], expected: &ModelRef, layout: &Arc<Layout>) -> Result<Params, WireError> {
    let max = usize::try_from(expected.values)
        .ok()
        .and_then(|n| n.checked_mul(4))
        .and_then(|n| n.checked_add(16))
        .filter(|&n| n <= MAX_FRAME_BYTES)
        .ok_or_else(|| invalid(MODEL, format!("a model of {} values is larger than any frame", expected.values)))?;
    let Words(values) = codec::decode::<F32s<'static>>(MODEL, WIRE_VERSION, max, bytes)?;
    let values = values.into_owned();
    expected.check(ModelRef { hash: update_digest(&values), values: values.len() as u64 })?;
    Params::new(Arc::clone(layout), values).map_err(|e| invalid(MODEL, e.to_string()))
}

/// A train request as it arrives: the model it names still has to be fetched
/// ([`decode_model`]) and attached ([`TrainAnnouncement::with_model`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainAnnouncement {
    /// The round.
    pub round: u32,
    /// The client asked to train.
    pub client: ClientId,
    /// The global model to start from.
    pub model: ModelRef,
    /// How the update must come back.
    pub upload: Upload,
}

impl TrainAnnouncement {
    /// The request, with the fetched model; refused if `params` is not the model named.
    pub fn with_model(self, params: Arc<Params>) -> Result<TrainRequest, WireError> {
        self.model.check(ModelRef::of(&params))?;
        Ok(TrainRequest { round: self.round, client: self.client, params, upload: self.upload })
    }
}

/// The coordinator refused something a trainer sent: the round, the refusal's stable kind
/// ([`crate::Rejection::kind`]) and its text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionNotice {
    /// The round the refused message claimed.
    pub round: u32,
    /// `wrong_round`, `duplicate`, `frame_truncated`, ….
    pub kind: String,
    /// What the coordinator said, at most [`RejectionNotice::MAX_DETAIL`] bytes.
    pub detail: String,
}

impl RejectionNotice {
    /// The longest detail text a notice carries.
    pub const MAX_DETAIL: usize = 512;

    /// The notice of `rejection` of a message for `round`.
    pub fn new(round: u32, rejection: &crate::Rejection) -> Self {
        let mut detail = rejection.to_string();
        if detail.len() > Self::MAX_DETAIL {
            let mut end = Self::MAX_DETAIL;
            while !detail.is_char_boundary(end) {
                end -= 1;
            }
            detail.truncate(end);
        }
        Self { round, kind: rejection.kind().to_string(), detail }
    }
}

/// What a frame to a trainer holds.
#[derive(Clone, Debug)]
pub enum ToTrainerFrame {
    /// A train request, whose model the trainer fetches before training.
    Train(TrainAnnouncement),
    /// Any other message, ready for [`crate::Trainer::handle_message`].
    Message(ToTrainer),
    /// The coordinator refused something this trainer sent.
    Rejected(RejectionNotice),
}

/// The frame of `message` to a trainer (a train request names its model, see [`ModelRef`]).
pub fn encode_to_trainer(message: &ToTrainer) -> Vec<u8> {
    let frame = match message {
        ToTrainer::Train(request) => return encode_train_request(request, ModelRef::of(&request.params)),
        ToTrainer::SecureSession { round, config } => {
            TrainerBound::SecureSession { round: *round, config: WireSecAggConfig::from(config.as_ref()) }
        }
        ToTrainer::SecAgg { round, message } => {
            TrainerBound::SecAgg { round: *round, message: WireServerMessage::from(message) }
        }
    };
    codec::encode(WIRE_VERSION, &frame)
}

/// The frame of a train request whose model's reference the caller has already computed
/// (`model` must be [`ModelRef::of`] the request's parameters): one hash of the model for all
/// the round's requests.
pub fn encode_train_request(request: &TrainRequest, model: ModelRef) -> Vec<u8> {
    let frame = TrainerBound::Train {
        round: request.round,
        client: request.client.0,
        model,
        upload: WireUpload::from(&request.upload),
    };
    codec::encode(WIRE_VERSION, &frame)
}

/// The frame of a refusal notice to a trainer.
pub fn encode_rejection(notice: &RejectionNotice) -> Vec<u8> {
    codec::encode(WIRE_VERSION, &TrainerBound::Rejected(notice.clone()))
}

/// The message in a frame to a trainer.
pub fn decode_to_trainer(bytes: &[u8], limits: WireLimits) -> Result<ToTrainerFrame, WireError> {
    let frame: TrainerBound = codec::decode(TO_TRAINER, WIRE_VERSION, limits.max_frame_bytes, bytes)?;
    Ok(match frame {
        TrainerBound::Train { round, client, model, upload } => ToTrainerFrame::Train(TrainAnnouncement {
            round,
            client: ClientId(client),
            model,
            upload: upload.into_upload()?,
        }),
        TrainerBound::SecureSession { round, config } => {
            ToTrainerFrame::Message(ToTrainer::SecureSession { round, config: Arc::new(config.into_config()?) })
        }
        TrainerBound::SecAgg { round, message } => {
            ToTrainerFrame::Message(ToTrainer::SecAgg { round, message: message.into_message() })
        }
        TrainerBound::Rejected(notice) => {
            if notice.detail.len() > RejectionNotice::MAX_DETAIL || notice.kind.len() > 64 {
                return Err(invalid(TO_TRAINER, "a rejection notice longer than a notice may be"));
            }
            ToTrainerFrame::Rejected(notice)
        }
    })
}

/// The frame of `message` to the coordinator.
pub fn encode_to_coordinator(message: &ToCoordinator) -> Vec<u8> {
    let frame = match message {
        ToCoordinator::Update { round, update } => CoordinatorBound::Update {
            round: *round,
            params: Words(Cow::Borrowed(&update.params)),
            num_examples: update.num_examples,
            train_loss: update.train_loss,
        },
        ToCoordinator::Ready { round } => CoordinatorBound::Ready { round: *round },
        ToCoordinator::SecAgg { round, message } => {
            CoordinatorBound::SecAgg { round: *round, message: WireClientMessage::from(message) }
        }
    };
    codec::encode(WIRE_VERSION, &frame)
}

/// The message in a frame to the coordinator.
pub fn decode_to_coordinator(bytes: &[u8], limits: WireLimits) -> Result<ToCoordinator, WireError> {
    let frame: CoordinatorBound<'static> = codec::decode(TO_COORDINATOR, WIRE_VERSION, limits.max_frame_bytes, bytes)?;
    Ok(match frame {
        CoordinatorBound::Update { round, params, num_examples, train_loss } => {
            ToCoordinator::Update { round, update: Update { params: params.0.into_owned(), num_examples, train_loss } }
        }
        CoordinatorBound::Ready { round } => ToCoordinator::Ready { round },
        CoordinatorBound::SecAgg { round, message } => ToCoordinator::SecAgg { round, message: message.into_message() },
    })
}

// The schema. Variant order is the format: append, never reorder.

#[derive(Serialize, Deserialize)]
enum TrainerBound {
    Train { round: u32, client: u32, model: ModelRef, upload: WireUpload },
    SecureSession { round: u32, config: WireSecAggConfig },
    SecAgg { round: u32, message: WireServerMessage },
    Rejected(RejectionNotice),
}

#[derive(Serialize, Deserialize)]
enum CoordinatorBound<'a> {
    Update { round: u32, params: F32s<'a>, num_examples: u64, train_loss: f64 },
    Ready { round: u32 },
    SecAgg { round: u32, message: WireClientMessage<'a> },
}

#[derive(Serialize, Deserialize)]
enum WireUpload {
    Plain,
    Secure { dp: Option<(WireDp, f64)>, max_weight: u32 },
}

impl From<&Upload> for WireUpload {
    fn from(upload: &Upload) -> Self {
        match upload {
            Upload::Plain => WireUpload::Plain,
            Upload::Secure(secure) => WireUpload::Secure {
                dp: secure.dp.as_ref().map(|(dp, clip)| (WireDp::from(dp), *clip)),
                max_weight: secure.max_weight,
            },
        }
    }
}

impl WireUpload {
    fn into_upload(self) -> Result<Upload, WireError> {
        Ok(match self {
            WireUpload::Plain => Upload::Plain,
            WireUpload::Secure { dp, max_weight } => {
                let dp = match dp {
                    Some((dp, clip)) => {
                        if !(clip.is_finite() && clip > 0.0) {
                            return Err(invalid(TO_TRAINER, format!("clipping norm {clip} is not positive")));
                        }
                        Some((dp.into_config()?, clip))
                    }
                    None => None,
                };
                Upload::Secure(Arc::new(SecureUpload { dp, max_weight }))
            }
        })
    }
}

#[derive(Serialize, Deserialize)]
struct WireDp {
    noise_multiplier: f64,
    clipping: WireClipping,
    distributed: bool,
    clients_per_round: u64,
}

#[derive(Serialize, Deserialize)]
enum WireClipping {
    Fixed { norm: f64 },
    Adaptive { initial_norm: f64, target_quantile: f64, learning_rate: f64, count_stddev: Option<f64> },
}

impl From<&DpConfig> for WireDp {
    fn from(dp: &DpConfig) -> Self {
        Self {
            noise_multiplier: dp.noise_multiplier,
            clipping: match dp.clipping {
                Clipping::Fixed { norm } => WireClipping::Fixed { norm },
                Clipping::Adaptive { initial_norm, target_quantile, learning_rate, count_stddev } => {
                    WireClipping::Adaptive { initial_norm, target_quantile, learning_rate, count_stddev }
                }
            },
            distributed: dp.placement == NoisePlacement::Distributed,
            clients_per_round: dp.clients_per_round as u64,
        }
    }
}

impl WireDp {
    fn into_config(self) -> Result<DpConfig, WireError> {
        let clients_per_round = usize::try_from(self.clients_per_round)
            .map_err(|_| invalid(TO_TRAINER, "clients per round out of range"))?;
        let config = DpConfig {
            noise_multiplier: self.noise_multiplier,
            clipping: match self.clipping {
                WireClipping::Fixed { norm } => Clipping::Fixed { norm },
                WireClipping::Adaptive { initial_norm, target_quantile, learning_rate, count_stddev } => {
                    Clipping::Adaptive { initial_norm, target_quantile, learning_rate, count_stddev }
                }
            },
            placement: if self.distributed { NoisePlacement::Distributed } else { NoisePlacement::Central },
            clients_per_round,
        };
        config.validate().map_err(|e| invalid(TO_TRAINER, e.to_string()))?;
        Ok(config)
    }
}

#[derive(Serialize, Deserialize)]
struct WireSecAggConfig {
    num_shares: u32,
    reconstruction_threshold: u32,
    clipping_range: f32,
    quantization_range: u32,
    modulus_range: u64,
    max_weight: u32,
    dimension: u64,
    stage_timeout_ms: u64,
}

impl From<&SecAggConfig> for WireSecAggConfig {
    fn from(c: &SecAggConfig) -> Self {
        Self {
            num_shares: c.num_shares,
            reconstruction_threshold: c.reconstruction_threshold,
            clipping_range: c.clipping_range,
            quantization_range: c.quantization_range,
            modulus_range: c.modulus_range,
            max_weight: c.max_weight,
            dimension: c.dimension as u64,
            stage_timeout_ms: c.stage_timeout_ms,
        }
    }
}

impl WireSecAggConfig {
    fn into_config(self) -> Result<SecAggConfig, WireError> {
        // A dimension no frame could carry is refused here, before anyone allocates for it.
        let dimension = usize::try_from(self.dimension)
            .ok()
            .filter(|&d| d <= MAX_FRAME_BYTES / 4)
            .ok_or_else(|| invalid(TO_TRAINER, format!("secure session of dimension {}", self.dimension)))?;
        let mut config = SecAggConfig::new(self.num_shares, self.reconstruction_threshold, dimension);
        config.clipping_range = self.clipping_range;
        config.quantization_range = self.quantization_range;
        config.modulus_range = self.modulus_range;
        config.max_weight = self.max_weight;
        config.stage_timeout_ms = self.stage_timeout_ms;
        config.validate().map_err(|e| invalid(TO_TRAINER, e.to_string()))?;
        Ok(config)
    }
}

#[derive(Serialize, Deserialize)]
enum WireServerMessage {
    AdvertiseKeys { round: u32 },
    ShareKeys { round: u32, neighbours: Vec<(u32, [u8; 32], [u8; 32])> },
    MaskedInput { round: u32, envelopes: Vec<(u32, Vec<u8>)> },
    Unmask { round: u32, survivors: Vec<u32>, dropped: Vec<u32> },
}

impl From<&ServerMessage> for WireServerMessage {
    fn from(message: &ServerMessage) -> Self {
        match message {
            ServerMessage::AdvertiseKeysRequest { round } => WireServerMessage::AdvertiseKeys { round: *round },
            ServerMessage::ShareKeysRequest { round, neighbours } => WireServerMessage::ShareKeys {
                round: *round,
                neighbours: neighbours.iter().map(|(id, keys)| (id.0, keys.c_pk, keys.s_pk)).collect(),
            },
            ServerMessage::MaskedInputRequest { round, envelopes } => WireServerMessage::MaskedInput {
                round: *round,
                envelopes: envelopes.iter().map(|(id, envelope)| (id.0, envelope.clone())).collect(),
            },
            ServerMessage::UnmaskRequest { round, survivors, dropped } => WireServerMessage::Unmask {
                round: *round,
                survivors: survivors.iter().map(|id| id.0).collect(),
                dropped: dropped.iter().map(|id| id.0).collect(),
            },
        }
    }
}

impl WireServerMessage {
    fn into_message(self) -> ServerMessage {
        let ids = |ids: Vec<u32>| ids.into_iter().map(ParticipantId).collect();
        match self {
            WireServerMessage::AdvertiseKeys { round } => ServerMessage::AdvertiseKeysRequest { round },
            WireServerMessage::ShareKeys { round, neighbours } => ServerMessage::ShareKeysRequest {
                round,
                neighbours: neighbours
                    .into_iter()
                    .map(|(id, c_pk, s_pk)| (ParticipantId(id), PublicKeys { c_pk, s_pk }))
                    .collect(),
            },
            WireServerMessage::MaskedInput { round, envelopes } => ServerMessage::MaskedInputRequest {
                round,
                envelopes: envelopes.into_iter().map(|(id, envelope)| (ParticipantId(id), envelope)).collect(),
            },
            WireServerMessage::Unmask { round, survivors, dropped } => {
                ServerMessage::UnmaskRequest { round, survivors: ids(survivors), dropped: ids(dropped) }
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
enum WireClientMessage<'a> {
    AdvertiseKeys { round: u32, c_pk: [u8; 32], s_pk: [u8; 32] },
    ShareKeys { round: u32, envelopes: Vec<(u32, Vec<u8>)> },
    MaskedInput { round: u32, words: U32s<'a> },
    Unmask { round: u32, self_mask_shares: Vec<(u32, Share)>, secret_key_shares: Vec<(u32, Share)> },
}

impl<'a> From<&'a ClientMessage> for WireClientMessage<'a> {
    fn from(message: &'a ClientMessage) -> Self {
        let shares = |shares: &[(ParticipantId, ShareBytes)]| shares.iter().map(|(id, s)| (id.0, Share(*s))).collect();
        match message {
            ClientMessage::AdvertiseKeys { round, keys } => {
                WireClientMessage::AdvertiseKeys { round: *round, c_pk: keys.c_pk, s_pk: keys.s_pk }
            }
            ClientMessage::ShareKeys { round, envelopes } => WireClientMessage::ShareKeys {
                round: *round,
                envelopes: envelopes.iter().map(|(id, envelope)| (id.0, envelope.clone())).collect(),
            },
            ClientMessage::MaskedInput { round, input } => {
                WireClientMessage::MaskedInput { round: *round, words: Words(Cow::Borrowed(input.words())) }
            }
            ClientMessage::Unmask { round, self_mask_shares, secret_key_shares } => WireClientMessage::Unmask {
                round: *round,
                self_mask_shares: shares(self_mask_shares),
                secret_key_shares: shares(secret_key_shares),
            },
        }
    }
}

impl WireClientMessage<'_> {
    fn into_message(self) -> ClientMessage {
        let shares = |shares: Vec<(u32, Share)>| shares.into_iter().map(|(id, s)| (ParticipantId(id), s.0)).collect();
        match self {
            WireClientMessage::AdvertiseKeys { round, c_pk, s_pk } => {
                ClientMessage::AdvertiseKeys { round, keys: PublicKeys { c_pk, s_pk } }
            }
            WireClientMessage::ShareKeys { round, envelopes } => ClientMessage::ShareKeys {
                round,
                envelopes: envelopes.into_iter().map(|(id, envelope)| (ParticipantId(id), envelope)).collect(),
            },
            WireClientMessage::MaskedInput { round, words } => {
                ClientMessage::MaskedInput { round, input: MaskedInput::from_words(words.0.into_owned()) }
            }
            WireClientMessage::Unmask { round, self_mask_shares, secret_key_shares } => ClientMessage::Unmask {
                round,
                self_mask_shares: shares(self_mask_shares),
                secret_key_shares: shares(secret_key_shares),
            },
        }
    }
}

/// `f32`s or `u32`s as one byte string of their little-endian bytes.
struct Words<'a, T: Clone>(Cow<'a, [T]>);
type F32s<'a> = Words<'a, f32>;
type U32s<'a> = Words<'a, u32>;
/// A Shamir share (48 bytes; serde's arrays stop at 32).
struct Share(ShareBytes);

impl<T: Clone + codec::LeWord> Serialize for Words<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&codec::le_bytes(&self.0))
    }
}

impl Serialize for Share {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de, T: Clone + codec::LeWord> Deserialize<'de> for Words<'_, T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_bytes(WordsVisitor(std::marker::PhantomData)).map(|v| Words(Cow::Owned(v)))
    }
}

impl<'de> Deserialize<'de> for Share {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ShareVisitor;
        impl serde::de::Visitor<'_> for ShareVisitor {
            type Value = Share;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "a share of {} bytes", std::mem::size_of::<ShareBytes>())
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Share, E> {
                ShareBytes::try_from(bytes).map(Share).map_err(|_| E::invalid_length(bytes.len(), &self))
            }
        }
        deserializer.deserialize_bytes(ShareVisitor)
    }
}

/// A byte string read as 4-byte little-endian words (its length must be a multiple of 4).
struct WordsVisitor<T>(std::marker::PhantomData<T>);

impl<T: codec::LeWord> serde::de::Visitor<'_> for WordsVisitor<T> {
    type Value = Vec<T>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a byte string of 4-byte words")
    }
    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Vec<T>, E> {
        codec::from_le_bytes(bytes).ok_or_else(|| E::invalid_length(bytes.len(), &self))
    }
}
