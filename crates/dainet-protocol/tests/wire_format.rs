//! The wire format of the round's messages, pinned: these bytes change only when the format
//! changes, and a format change is a decision (bump `WIRE_VERSION`, re-pin here). Also: every
//! message survives a round trip, bad frames are refused with a reason (and counted by the
//! coordinator, whose round goes on), and no input makes a decoder panic.

use dainet_agg::dp::{Clipping, DpConfig, NoisePlacement};
use dainet_agg::strategy::{RobustParams, Strategy, StrategyConfig};
use dainet_core::codec::CodecError;
use dainet_core::{Layout, Params, TensorSpec};
use dainet_privacy::secagg::{ClientMessage, MaskedInput, ParticipantId, PublicKeys, SecAggConfig, ServerMessage};
use dainet_protocol::wire::{
    self, decode_model, decode_to_coordinator, decode_to_trainer, encode_model, encode_rejection,
    encode_to_coordinator, encode_to_trainer, ModelRef, RejectionNotice, ToTrainerFrame, WireError, WireLimits,
    WIRE_VERSION,
};
use dainet_protocol::{
    Action, ClientId, Coordinator, Rejection, RoundConfig, SecureUpload, Time, ToCoordinator, ToTrainer, TrainRequest,
    Update, Upload,
};
use proptest::prelude::*;
use std::sync::Arc;

fn params(values: Vec<f32>) -> Params {
    let layout = Layout::new(vec![TensorSpec { name: "w".into(), shape: vec![values.len()] }]).unwrap();
    Params::new(Arc::new(layout), values).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const LIMITS: WireLimits = WireLimits { max_frame_bytes: 1 << 20 };

fn dp() -> DpConfig {
    DpConfig {
        noise_multiplier: 1.0,
        clipping: Clipping::Fixed { norm: 0.5 },
        placement: NoisePlacement::Distributed,
        clients_per_round: 5,
    }
}

/// One message of every kind to a trainer.
fn to_trainer() -> Vec<(&'static str, ToTrainer)> {
    let model = Arc::new(params(vec![0.5, -1.0, 2.0]));
    let secure = Upload::Secure(Arc::new(SecureUpload { dp: Some((dp(), 0.5)), max_weight: 1 }));
    let keys = PublicKeys { c_pk: [1; 32], s_pk: [2; 32] };
    vec![
        (
            "train, plain",
            ToTrainer::Train(TrainRequest {
                round: 3,
                client: ClientId(7),
                params: model.clone(),
                upload: Upload::Plain,
            }),
        ),
        (
            "train, secure with DP",
            ToTrainer::Train(TrainRequest { round: 3, client: ClientId(7), params: model, upload: secure }),
        ),
        ("secure session", ToTrainer::SecureSession { round: 3, config: Arc::new(SecAggConfig::new(5, 3, 3)) }),
        (
            "advertise keys request",
            ToTrainer::SecAgg { round: 3, message: ServerMessage::AdvertiseKeysRequest { round: 3 } },
        ),
        (
            "share keys request",
            ToTrainer::SecAgg {
                round: 3,
                message: ServerMessage::ShareKeysRequest { round: 3, neighbours: vec![(ParticipantId(4), keys)] },
            },
        ),
        (
            "masked input request",
            ToTrainer::SecAgg {
                round: 3,
                message: ServerMessage::MaskedInputRequest {
                    round: 3,
                    envelopes: vec![(ParticipantId(4), vec![9; 4])],
                },
            },
        ),
        (
            "unmask request",
            ToTrainer::SecAgg {
                round: 3,
                message: ServerMessage::UnmaskRequest {
                    round: 3,
                    survivors: vec![ParticipantId(1), ParticipantId(4)],
                    dropped: vec![ParticipantId(2)],
                },
            },
        ),
    ]
}

/// One message of every kind to the coordinator.
fn to_coordinator() -> Vec<(&'static str, ToCoordinator)> {
    vec![
        (
            "update",
            ToCoordinator::Update {
                round: 3,
                update: Update { params: vec![0.5, f32::NAN, -0.0], num_examples: 60, train_loss: 0.25 },
            },
        ),
        ("ready", ToCoordinator::Ready { round: 3 }),
        (
            "advertise keys",
            ToCoordinator::SecAgg {
                round: 3,
                message: ClientMessage::AdvertiseKeys { round: 3, keys: PublicKeys { c_pk: [1; 32], s_pk: [2; 32] } },
            },
        ),
        (
            "share keys",
            ToCoordinator::SecAgg {
                round: 3,
                message: ClientMessage::ShareKeys { round: 3, envelopes: vec![(ParticipantId(4), vec![9; 4])] },
            },
        ),
        (
            "masked input",
            ToCoordinator::SecAgg {
                round: 3,
                message: ClientMessage::MaskedInput { round: 3, input: MaskedInput::from_words(vec![1, u32::MAX, 7]) },
            },
        ),
        (
            "unmask",
            ToCoordinator::SecAgg {
                round: 3,
                message: ClientMessage::Unmask {
                    round: 3,
                    self_mask_shares: vec![(ParticipantId(1), [5; 48])],
                    secret_key_shares: vec![(ParticipantId(2), [6; 48])],
                },
            },
        ),
    ]
}

fn notice() -> RejectionNotice {
    RejectionNotice::new(3, &Rejection::Duplicate(ClientId(7)))
}

/// Every frame of the suite: (name, bytes).
fn frames() -> Vec<(String, Vec<u8>)> {
    let mut frames: Vec<(String, Vec<u8>)> =
        to_trainer().iter().map(|(name, m)| (format!("to trainer: {name}"), encode_to_trainer(m))).collect();
    frames.push(("to trainer: rejection".into(), encode_rejection(&notice())));
    frames
        .extend(to_coordinator().iter().map(|(name, m)| (format!("to coordinator: {name}"), encode_to_coordinator(m))));
    frames.push(("model blob".into(), encode_model(&params(vec![0.5, -1.0, 2.0]))));
    frames
}

#[test]
fn frames_are_pinned() {
    let got: Vec<(String, String)> = frames().into_iter().map(|(name, bytes)| (name, hex(&bytes))).collect();
    let want: &[(&str, &str)] = &[
        ("to trainer: train, plain", "01000307274552c513b17c0b53260661448b2708ddb8d45c60fa068341a2e276526c30e80300"),
        ("to trainer: train, secure with DP", "01000307274552c513b17c0b53260661448b2708ddb8d45c60fa068341a2e276526c30e8030101000000000000f03f00000000000000e03f0105000000000000e03f01"),
        ("to trainer: secure session", "01010305030000004180800480808080104003b0ea01"),
        ("to trainer: advertise keys request", "0102030003"),
        ("to trainer: share keys request", "0102030103010401010101010101010101010101010101010101010101010101010101010101010202020202020202020202020202020202020202020202020202020202020202"),
        ("to trainer: masked input request", "010203020301040409090909"),
        ("to trainer: unmask request", "01020303030201040102"),
        ("to trainer: rejection", "010303096475706c69636174652a636c69656e74203720616c72656164792073656e7420616e20757064617465207468697320726f756e64"),
        ("to coordinator: update", "0100030c0000003f0000c07f000000803c000000000000d03f"),
        ("to coordinator: ready", "010103"),
        ("to coordinator: advertise keys", "010203000301010101010101010101010101010101010101010101010101010101010101010202020202020202020202020202020202020202020202020202020202020202"),
        ("to coordinator: share keys", "010203010301040409090909"),
        ("to coordinator: masked input", "01020302030c01000000ffffffff07000000"),
        ("to coordinator: unmask", "0102030303010130050505050505050505050505050505050505050505050505050505050505050505050505050505050505050505050505010230060606060606060606060606060606060606060606060606060606060606060606060606060606060606060606060606"),
        ("model blob", "010c0000003f000080bf00000040"),
    ];
    assert_eq!(got.len(), want.len());
    for ((name, got), (_, want)) in got.iter().zip(want) {
        assert_eq!(got, want, "{name}: the wire format changed: bump WIRE_VERSION and re-pin");
    }
}

/// Frames to a trainer compared by their re-encoding (the messages hold `Arc`s and configs
/// without `PartialEq`).
#[test]
fn every_message_survives_a_round_trip() {
    let model = Arc::new(params(vec![0.5, -1.0, 2.0]));
    for (name, message) in to_trainer() {
        let bytes = encode_to_trainer(&message);
        let back = match decode_to_trainer(&bytes, LIMITS).unwrap() {
            ToTrainerFrame::Train(announcement) => {
                assert_eq!(announcement.model, ModelRef::of(&model), "{name}");
                ToTrainer::Train(announcement.with_model(model.clone()).unwrap())
            }
            ToTrainerFrame::Message(message) => message,
            ToTrainerFrame::Rejected(notice) => panic!("{name}: decoded as {notice:?}"),
        };
        assert_eq!(encode_to_trainer(&back), bytes, "{name}");
    }
    for (name, message) in to_coordinator() {
        let bytes = encode_to_coordinator(&message);
        let back = decode_to_coordinator(&bytes, LIMITS).unwrap();
        assert_eq!(encode_to_coordinator(&back), bytes, "{name}");
    }
    // Values cross bit for bit, a NaN's payload included.
    let weird = [f32::from_bits(0x7fc0_1234), -0.0, f32::MIN_POSITIVE / 2.0, f32::INFINITY];
    let update =
        ToCoordinator::Update { round: 1, update: Update { params: weird.to_vec(), num_examples: 1, train_loss: 0.0 } };
    let ToCoordinator::Update { update, .. } = decode_to_coordinator(&encode_to_coordinator(&update), LIMITS).unwrap()
    else {
        panic!("an update decodes as an update");
    };
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&update.params), bits(&weird));
    let ToTrainerFrame::Rejected(back) = decode_to_trainer(&encode_rejection(&notice()), LIMITS).unwrap() else {
        panic!("a notice decodes as a notice");
    };
    assert_eq!(back, notice());
    assert_eq!(back.kind, "duplicate");
}

#[test]
fn a_model_blob_is_checked_against_its_reference() {
    let model = params(vec![0.5, -1.0, 2.0]);
    let reference = ModelRef::of(&model);
    let blob = encode_model(&model);
    let layout = model.layout().clone();
    assert_eq!(decode_model(&blob, &reference, &layout).unwrap().values(), model.values());
    // Another model of the same size, under the first one's reference.
    let other = encode_model(&params(vec![0.5, -1.0, 2.5]));
    let err = decode_model(&other, &reference, &layout).unwrap_err();
    assert_eq!(err.kind(), "model_mismatch", "{err}");
    // A request whose model is not the one fetched.
    let announcement = match decode_to_trainer(&to_trainer_frame(0), LIMITS).unwrap() {
        ToTrainerFrame::Train(a) => a,
        other => panic!("{other:?}"),
    };
    let err = announcement.with_model(Arc::new(params(vec![0.0; 3]))).unwrap_err();
    assert!(matches!(err, WireError::ModelMismatch { expected: 3, got: 3, .. }), "{err}");
    // A reference that claims more values than any frame may hold is refused before reading.
    let huge = ModelRef { hash: reference.hash, values: u64::MAX };
    assert_eq!(decode_model(&blob, &huge, &layout).unwrap_err().kind(), "frame_invalid");
}

fn to_trainer_frame(i: usize) -> Vec<u8> {
    encode_to_trainer(&to_trainer()[i].1)
}

#[test]
fn bad_frames_are_refused_with_a_reason() {
    let update = encode_to_coordinator(&to_coordinator()[0].1);
    let kind = |bytes: &[u8]| decode_to_coordinator(bytes, LIMITS).unwrap_err().kind();
    assert_eq!(kind(&[]), "frame_empty");
    // An unknown version.
    let mut future = update.clone();
    future[0] = WIRE_VERSION + 1;
    assert!(matches!(
        decode_to_coordinator(&future, LIMITS),
        Err(WireError::Codec(CodecError::Version { found: 2, supported: 1, .. }))
    ));
    // Cut short anywhere.
    for end in 1..update.len() {
        assert_eq!(kind(&update[..end]), "frame_truncated", "cut at {end}");
    }
    // Over the limit: refused unread.
    let limits = WireLimits { max_frame_bytes: update.len() - 1 };
    assert_eq!(decode_to_coordinator(&update, limits).unwrap_err().kind(), "frame_too_large");
    // A length field that claims more than the frame holds: the update's byte string (at
    // offset 3, a one-byte varint of 12) now claims 100 bytes.
    let mut lying = update.clone();
    assert_eq!(lying[3], 12);
    lying[3] = 100;
    assert_eq!(kind(&lying), "frame_truncated");
    // A length field that claims the most a varint can say.
    let mut huge = update[..3].to_vec();
    huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    huge.extend_from_slice(&update[4..]);
    assert_eq!(kind(&huge), "frame_truncated");
    // Bytes after the message.
    let mut trailing = update.clone();
    trailing.push(0);
    assert_eq!(kind(&trailing), "frame_trailing");
    // An unknown message tag.
    let mut tag = update.clone();
    tag[1] = 9;
    assert_eq!(kind(&tag), "frame_malformed");
    // A vector of values whose byte length is not a multiple of 4.
    let odd = [WIRE_VERSION, 0, 3, 3, 1, 2, 3, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(kind(&odd), "frame_malformed");
    // A secure session no client could run (threshold above the shares) is refused on arrival.
    let mut config = SecAggConfig::new(5, 3, 3);
    config.reconstruction_threshold = 9;
    let session = encode_to_trainer(&ToTrainer::SecureSession { round: 1, config: Arc::new(config) });
    assert_eq!(decode_to_trainer(&session, LIMITS).unwrap_err().kind(), "frame_invalid");
    // DP settings out of range likewise.
    let mut bad_dp = dp();
    bad_dp.noise_multiplier = f64::NAN;
    let request = ToTrainer::Train(TrainRequest {
        round: 1,
        client: ClientId(0),
        params: Arc::new(params(vec![0.0])),
        upload: Upload::Secure(Arc::new(SecureUpload { dp: Some((bad_dp, 0.5)), max_weight: 1 })),
    });
    assert_eq!(decode_to_trainer(&encode_to_trainer(&request), LIMITS).unwrap_err().kind(), "frame_invalid");
}

#[test]
fn the_coordinator_counts_bad_frames_and_the_round_goes_on() {
    let config = RoundConfig {
        task_seed: 1,
        num_clients: 2,
        clients_per_round: 2,
        rounds: 1,
        round_timeout_ms: Some(1_000),
        min_updates: 1,
        secure: None,
        privacy: None,
    };
    let strategy = Strategy::new(StrategyConfig::named("fedavg", &RobustParams::default()).unwrap(), 1).unwrap();
    let mut coordinator = Coordinator::new(config, strategy, params(vec![0.0; 3]), 1).unwrap();
    coordinator.handle_start(Time(0));
    let update = |v: f32| {
        encode_to_coordinator(&ToCoordinator::Update {
            round: 1,
            update: Update { params: vec![v; 3], num_examples: 10, train_loss: 0.5 },
        })
    };
    let good = update(1.0);
    let mut future = good.clone();
    future[0] = 7;
    let oversized = vec![WIRE_VERSION; coordinator.wire_limits().max_frame_bytes + 1];
    for bad in [future, good[..good.len() - 2].to_vec(), oversized, vec![]] {
        let err = coordinator.handle_frame(Time(10), ClientId(0), &bad).unwrap_err();
        assert!(matches!(err, Rejection::Frame { client: ClientId(0), .. }), "{err}");
    }
    // Both clients answer after all: the round aggregates them.
    coordinator.handle_frame(Time(20), ClientId(0), &good).unwrap();
    coordinator.handle_frame(Time(20), ClientId(1), &update(3.0)).unwrap();
    let outcome = std::iter::from_fn(|| coordinator.poll_action())
        .find_map(|action| match action {
            Action::RoundClosed(outcome) => Some(outcome),
            _ => None,
        })
        .expect("the round closes on its last update");
    assert_eq!(outcome.contributors, vec![ClientId(0), ClientId(1)]);
    let mut rejected = outcome.rejected.clone();
    rejected.sort();
    assert_eq!(
        rejected,
        vec![("frame_empty", 1), ("frame_too_large", 1), ("frame_truncated", 1), ("frame_version", 1)]
    );
    assert_eq!(coordinator.global().values(), &[2.0, 2.0, 2.0]);
}

fn all_frames() -> Vec<Vec<u8>> {
    frames().into_iter().map(|(_, bytes)| bytes).collect()
}

/// Runs every decoder of the wire on `bytes`; it must return, never panic.
fn decode_all(bytes: &[u8]) {
    let _ = decode_to_trainer(bytes, LIMITS);
    let _ = decode_to_coordinator(bytes, LIMITS);
    let model = params(vec![0.5, -1.0, 2.0]);
    let _ = decode_model(bytes, &ModelRef::of(&model), model.layout());
    let _ = wire::decode_model(bytes, &ModelRef { hash: [0; 32], values: 1 << 20 }, model.layout());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in dainet_hammer::arbitrary_bytes()) {
        decode_all(&bytes);
    }

    #[test]
    fn decoders_never_panic_on_mutated_frames(bytes in dainet_hammer::mutated(all_frames())) {
        decode_all(&bytes);
    }

    #[test]
    fn a_mutated_frame_that_decodes_re_encodes(bytes in dainet_hammer::mutated(all_frames())) {
        // Whatever decodes is a message the encoder writes back as a frame that decodes to it.
        if let Ok(message) = decode_to_coordinator(&bytes, LIMITS) {
            let again = encode_to_coordinator(&message);
            let twice = decode_to_coordinator(&again, LIMITS).unwrap();
            prop_assert_eq!(encode_to_coordinator(&twice), again);
        }
    }
}

#[test]
fn the_model_blob_length_is_known_without_encoding() {
    for n in [0usize, 1, 31, 32, 4_095, 4_096, 199_210, 1 << 20] {
        assert_eq!(wire::model_blob_len(n), encode_model(&params(vec![0.25; n])).len(), "{n} values");
    }
}

/// 10^6 arbitrary and mutated inputs per wire decoder (`DAINET_HAMMER_INPUTS` to change):
/// `cargo test --release -p dainet-protocol --test wire_format -- --ignored --nocapture`.
#[test]
#[ignore = "long run: 10^6 inputs per decoder"]
fn long_run() {
    let seeds = all_frames();
    let model = params(vec![0.5, -1.0, 2.0]);
    let reference = ModelRef::of(&model);
    dainet_hammer::long_run("wire: message to a trainer", &seeds, |b| decode_to_trainer(b, LIMITS).is_ok());
    dainet_hammer::long_run("wire: message to the coordinator", &seeds, |b| decode_to_coordinator(b, LIMITS).is_ok());
    dainet_hammer::long_run("wire: model blob", &seeds, |b| decode_model(b, &reference, model.layout()).is_ok());
}
