//! Acceptance tests of SecAgg+ (one server, n clients, through [`Network`]).
//!
//! References are to Bell et al. 2020 (<https://eprint.iacr.org/2020/704>) and Bonawitz et
//! al. 2017 (<https://eprint.iacr.org/2017/281>).

use super::network::{Network, Traced};
use super::*;
use dainet_core::SplitMix64;
use std::cell::RefCell;
use std::rc::Rc;

/// `n` random inputs of length `d` in [−`scale`, `scale`] with weights `1..=max_weight`.
fn random_inputs(n: usize, d: usize, scale: f32, max_weight: u32, seed: u64) -> Vec<(Vec<f32>, u32)> {
    let mut g = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let x = (0..d).map(|_| ((g.next_f64() * 2.0 - 1.0) * f64::from(scale)) as f32).collect();
            (x, 1 + (g.next_u64() % u64::from(max_weight)) as u32)
        })
        .collect()
}

fn ids(v: impl IntoIterator<Item = u32>) -> Vec<ParticipantId> {
    v.into_iter().map(ParticipantId).collect()
}

/// Asserts that the round produced exactly the sum of `contributors`' plaintexts.
fn assert_exact(net: &Network, sum: &UnmaskedSum, contributors: &[ParticipantId]) {
    assert_eq!(sum.contributors(), contributors);
    assert_eq!(sum.words(), &net.plaintext_sum(contributors)[..], "unmasked sum is not the survivors' sum");
}

// ---------------------------------------------------------------------------------------
// Privacy: masked vectors look uniform whatever the input (Bell et al. §3, Bonawitz §4).
// ---------------------------------------------------------------------------------------

/// Uniformity statistics of words that should be uniform on Z_{2^32}.
struct Uniformity {
    /// (mean − 2^31) / standard error.
    mean_z: f64,
    /// sample variance / (2^64 / 12) − 1.
    variance_rel: f64,
    /// Pearson χ² of the top byte over 256 bins (255 degrees of freedom).
    chi2: f64,
}

/// χ² with 255 degrees of freedom exceeds this with probability about 10^-6 (Wilson–Hilferty).
const CHI2_255_P1E6: f64 = 377.0;

fn histogram(words: &[u32]) -> [f64; 256] {
    let mut h = [0.0; 256];
    for &w in words {
        h[(w >> 24) as usize] += 1.0;
    }
    h
}

fn uniformity(words: &[u32]) -> Uniformity {
    let n = words.len() as f64;
    let mean = words.iter().map(|&w| f64::from(w)).sum::<f64>() / n;
    let var = words.iter().map(|&w| (f64::from(w) - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let var_u = 2f64.powi(64) / 12.0;
    let expected = n / 256.0;
    let chi2 = histogram(words).iter().map(|&c| (c - expected).powi(2) / expected).sum();
    Uniformity { mean_z: (mean - 2f64.powi(31)) / (var_u / n).sqrt(), variance_rel: var / var_u - 1.0, chi2 }
}

/// Whether the statistics are consistent with uniform: the mean within 5 standard errors,
/// the variance within 1.5% (5 standard errors for n = 10^5: sd of s²/σ² is √(0.8/n)), the
/// χ² below its 10^-6 critical value.
fn looks_uniform(u: &Uniformity) -> bool {
    u.mean_z.abs() < 5.0 && u.variance_rel.abs() < 0.015 && u.chi2 < CHI2_255_P1E6
}

/// Two-sample χ² homogeneity statistic over the 256 top-byte bins (255 d.o.f.).
fn two_sample_chi2(a: &[u32], b: &[u32]) -> f64 {
    let (ha, hb) = (histogram(a), histogram(b));
    let (ka, kb) = ((b.len() as f64 / a.len() as f64).sqrt(), (a.len() as f64 / b.len() as f64).sqrt());
    ha.iter().zip(&hb).filter(|(x, y)| **x + **y > 0.0).map(|(x, y)| (ka * x - kb * y).powi(2) / (x + y)).sum()
}

/// Runs a 3-client round with every client's input constant `value` and returns
/// (client 0's masked vector, client 0's plaintext).
fn masked_vector_of(value: f32, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let d = 100_000;
    let mut config = SecAggConfig::new(3, 2, d);
    config.clipping_range = 1.0;
    // The largest weight that cannot wrap: 3 · w · (2^16 − 1) < 2^32.
    config.max_weight = 21_845;
    let inputs = vec![(vec![value; d], 21_845); 3];
    let mut net = Network::new(&config, &inputs, 1, seed);
    let captured = Rc::new(RefCell::new(Vec::new()));
    let sink = captured.clone();
    net.on_upload = Some(Box::new(move |from, msg| {
        if let (ParticipantId(0), ClientMessage::MaskedInput { input, .. }) = (from, &msg) {
            *sink.borrow_mut() = input.words().to_vec();
        }
        vec![(from, msg)]
    }));
    let plaintext = net.plaintexts[&ParticipantId(0)].clone();
    net.run().unwrap();
    let masked = captured.borrow().clone();
    (masked, plaintext)
}

// The server sees y = x + masks; with the masks, y is uniform on Z_{2^32} for any x, so the
// all-minimum and all-maximum inputs give indistinguishable vectors. Without the masks the
// same statistics reject uniformity outright (the negative control below).
#[test]
fn masked_vectors_of_opposite_inputs_are_indistinguishable() {
    let (low, low_plain) = masked_vector_of(-1.0, 11); // every level 0
    let (high, high_plain) = masked_vector_of(1.0, 12); // every level q − 1, times w = 21845
    assert_eq!(low.len(), 100_002);
    assert!(low_plain[2..].iter().all(|&v| v == 0));
    assert!(high_plain[2..].iter().all(|&v| v == 21_845 * 65_535));
    for (name, words) in [("all-min", &low), ("all-max", &high)] {
        let u = uniformity(&words[2..]);
        println!("{name}: mean z {:.2}, variance {:+.4}, chi2 {:.1}", u.mean_z, u.variance_rel, u.chi2);
        assert!(looks_uniform(&u), "{name}: mean z {:.2}, var {:+.4}, chi2 {:.1}", u.mean_z, u.variance_rel, u.chi2);
    }
    let chi2 = two_sample_chi2(&low[2..], &high[2..]);
    println!("two-sample chi2 {chi2:.1}");
    assert!(chi2 < CHI2_255_P1E6, "two-sample chi2 {chi2:.1}");
    // Negative control: the unmasked plaintexts fail every check.
    for plain in [&low_plain, &high_plain] {
        let u = uniformity(&plain[2..]);
        assert!(u.mean_z.abs() > 5.0 && u.chi2 > CHI2_255_P1E6);
    }
    assert!(two_sample_chi2(&low_plain[2..], &high_plain[2..]) > CHI2_255_P1E6);
}

// With t ≥ 2 the server never unmasks fewer than t inputs: a round whose masked-input stage
// ends with one client aborts instead of revealing that client's input (Bonawitz §4).
#[test]
fn a_single_survivor_is_never_unmasked() {
    let config = SecAggConfig::new(3, 2, 8);
    let mut net = Network::new(&config, &random_inputs(3, 8, 1.0, 10, 1), 1, 1);
    net.silence(&[1, 2], Stage::CollectMaskedInputs);
    let err = net.run().unwrap_err();
    assert_eq!(err, SecAggError::TooFewSurvivors { stage: Stage::CollectMaskedInputs, alive: 1, needed: 2 });
}

// ---------------------------------------------------------------------------------------
// Correctness: the weighted mean within the quantisation bound.
// ---------------------------------------------------------------------------------------

// 20 clients, k = 8 ≈ 2·log2(20) neighbours, t = 5: the aggregate is the example-weighted
// mean of the inputs within Δ = 2c/(q − 1) per coordinate (module docs, "Quantisation").
#[test]
fn weighted_mean_matches_plaintext_within_the_quantisation_bound() {
    let (n, d) = (20, 1_000);
    let mut config = SecAggConfig::new(9, 5, d);
    config.clipping_range = 4.0;
    config.quantization_range = 1 << 20;
    config.max_weight = 64;
    let inputs = random_inputs(n, d, 3.0, 64, 7);
    let mut net = Network::new(&config, &inputs, 3, 7);
    let sum = net.run().unwrap();
    assert_eq!(sum.contributors().len(), n);
    assert_eq!(sum.clipped(), 0);
    let total: u64 = inputs.iter().map(|(_, w)| u64::from(*w)).sum();
    assert_eq!(sum.total_weight(), total);
    let bound = sum.error_bound();
    assert!((bound - 8.0 / f64::from((1u32 << 20) - 1)).abs() < 1e-15);
    let mean = sum.weighted_mean_f64().unwrap();
    let mean32 = sum.weighted_mean().unwrap();
    let mut worst = 0.0f64;
    for j in 0..d {
        let plain = inputs.iter().map(|(x, w)| f64::from(*w) * f64::from(x[j])).sum::<f64>() / total as f64;
        worst = worst.max((mean[j] - plain).abs());
        assert!((f64::from(mean32[j]) - plain).abs() < bound + 3.0 * f64::from(f32::EPSILON));
    }
    println!("weighted mean: worst error {worst:e}, bound {bound:e}");
    assert!(worst < bound, "worst error {worst:e} ≥ bound {bound:e}");
    // Stochastic rounding is unbiased: the typical error is far below the bound.
    assert!(worst < bound / 2.0, "worst error {worst:e}");
    // Every client saw only its k = 8 neighbours (O(k) keys and envelopes, not O(n)).
    for t in &net.trace {
        if let Traced::Down(_, ServerMessage::ShareKeysRequest { neighbours, .. }) = t {
            assert_eq!(neighbours.len(), 8);
        }
        if let Traced::Down(_, ServerMessage::MaskedInputRequest { envelopes, .. }) = t {
            assert_eq!(envelopes.len(), 8);
        }
    }
}

// Inputs beyond the clipping range are clipped and counted, never silently saturated.
#[test]
fn clipped_values_are_counted_in_the_sum() {
    let mut config = SecAggConfig::new(3, 2, 4);
    config.clipping_range = 1.0;
    let inputs = vec![(vec![0.5, 2.0, -3.0, 1.0], 1), (vec![9.0, 0.0, 0.0, 0.0], 1), (vec![0.0; 4], 1)];
    let mut net = Network::new(&config, &inputs, 1, 5);
    assert_eq!(net.clients[&ParticipantId(0)].clipped(), 2);
    let sum = net.run().unwrap();
    assert_eq!(sum.clipped(), 3);
    let mean = sum.weighted_mean_f64().unwrap();
    assert!((mean[0] - (0.5 + 1.0) / 3.0).abs() < sum.error_bound(), "9.0 counts as 1.0: {}", mean[0]);
}

// ---------------------------------------------------------------------------------------
// Dropouts (Bell et al. §4, Bonawitz §4: survivors' b and dropped clients' s_sk).
// ---------------------------------------------------------------------------------------

fn complete_graph(n: usize, t: u32) -> SecAggConfig {
    let mut config = SecAggConfig::new(n as u32, t, 16);
    config.max_weight = 16;
    config
}

// n − t clients drop after uploading: their inputs are in the sum, their self masks are
// reconstructed from the t remaining holders' shares.
#[test]
fn n_minus_t_dropouts_after_upload_still_unmask_exactly() {
    let (n, t) = (10, 4);
    let mut net = Network::new(&complete_graph(n, t), &random_inputs(n, 16, 2.0, 16, 3), 1, 3);
    net.silence(&[0, 2, 4, 6, 8, 9], Stage::Unmask);
    let sum = net.run().unwrap();
    assert_exact(&net, &sum, &ids(0..10));
    assert!(sum.dropped().is_empty());
}

// n − t clients drop after sharing their keys but before uploading: their pairwise masks stay
// in the survivors' vectors, and the server removes them with the masking keys it
// reconstructs from shares.
#[test]
fn n_minus_t_dropouts_before_upload_are_unmasked_from_reconstructed_keys() {
    let (n, t) = (10, 4);
    let mut net = Network::new(&complete_graph(n, t), &random_inputs(n, 16, 2.0, 16, 4), 1, 4);
    net.silence(&[1, 2, 3, 5, 7, 8], Stage::CollectMaskedInputs);
    let sum = net.run().unwrap();
    assert_exact(&net, &sum, &ids([0, 4, 6, 9]));
    assert_eq!(sum.dropped(), &ids([1, 2, 3, 5, 7, 8])[..]);
}

// One more dropout than n − t: the round aborts with the reason rather than output garbage.
#[test]
fn more_than_n_minus_t_dropouts_abort_with_a_reason() {
    let (n, t) = (10, 4);
    let mut net = Network::new(&complete_graph(n, t), &random_inputs(n, 16, 2.0, 16, 4), 1, 4);
    net.silence(&[1, 2, 3, 5, 7, 8], Stage::CollectMaskedInputs);
    net.silence(&[0], Stage::Unmask);
    let err = net.run().unwrap_err();
    let source = field::ShamirError::TooFewShares { got: 3, threshold: 4 };
    assert_eq!(err, SecAggError::Reconstruction { owner: ParticipantId(0), secret: "self-mask seed", source });
}

// SecAgg+ (k = 8 of n = 20, t = 5) with dropouts at every stage: before advertising keys,
// before sharing them, before uploading (pairwise masks reconstructed) and after uploading
// (self masks reconstructed).
#[test]
fn secagg_plus_survives_dropouts_at_every_stage() {
    let n = 20;
    let mut config = SecAggConfig::new(9, 5, 32);
    config.max_weight = 32;
    let mut net = Network::new(&config, &random_inputs(n, 32, 2.0, 32, 9), 2, 9);
    net.silence(&[3], Stage::AdvertiseKeys);
    net.silence(&[7], Stage::ShareKeys);
    net.silence(&[11, 15], Stage::CollectMaskedInputs);
    net.silence(&[19], Stage::Unmask);
    let sum = net.run().unwrap();
    let contributors: Vec<ParticipantId> = ids((0..20).filter(|i| ![3, 7, 11, 15].contains(i)));
    assert_exact(&net, &sum, &contributors);
    assert_eq!(sum.dropped(), &ids([3, 7, 11, 15])[..]);
    assert!(sum.rejected().is_empty());
}

// ---------------------------------------------------------------------------------------
// Bad input: refused with a typed reason, counted, and the round goes on.
// ---------------------------------------------------------------------------------------

// An envelope altered in transit fails to decrypt at its recipient (ChaCha20-Poly1305 with
// the round and pair as associated data); the recipient counts it, masks as usual, and the
// server reconstructs the sender's secrets from the other holders.
#[test]
fn a_tampered_envelope_is_refused_and_the_round_completes() {
    let n = 6;
    let mut net = Network::new(&complete_graph(n, 3), &random_inputs(n, 16, 2.0, 16, 5), 1, 5);
    net.on_download = Some(Box::new(|to, mut msg| {
        if let (ParticipantId(2), ServerMessage::MaskedInputRequest { envelopes, .. }) = (to, &mut msg) {
            envelopes[0].1[5] ^= 0x40; // the envelope from participant 0
        }
        vec![(to, msg)]
    }));
    net.silence(&[4], Stage::CollectMaskedInputs); // 2 must still help unmask 4's key
    let sum = net.run().unwrap();
    assert_eq!(net.clients[&ParticipantId(2)].rejected(), &[SecAggError::Decryption { from: ParticipantId(0) }]);
    assert_exact(&net, &sum, &ids([0, 1, 2, 3, 5]));
}

// An envelope moved to another recipient (a misrouting server) fails too: the associated
// data binds sender and recipient.
#[test]
fn a_misrouted_envelope_is_refused() {
    let n = 5;
    let mut net = Network::new(&complete_graph(n, 3), &random_inputs(n, 16, 2.0, 16, 6), 1, 6);
    net.on_upload = Some(Box::new(|from, mut msg| {
        if let (ParticipantId(1), ClientMessage::ShareKeys { envelopes, .. }) = (from, &mut msg) {
            let first = envelopes[0].1.clone();
            envelopes[1].1 = first; // 1's envelope for 0 now also goes to 2
        }
        vec![(from, msg)]
    }));
    let sum = net.run().unwrap();
    assert_eq!(net.clients[&ParticipantId(2)].rejected(), &[SecAggError::Decryption { from: ParticipantId(1) }]);
    assert_exact(&net, &sum, &ids(0..5));
}

// A masked vector of the wrong length is refused; its sender counts as dropped before upload.
#[test]
fn a_masked_vector_of_the_wrong_length_is_refused() {
    let n = 5;
    let mut net = Network::new(&complete_graph(n, 3), &random_inputs(n, 16, 2.0, 16, 7), 1, 7);
    net.on_upload = Some(Box::new(|from, msg| match (from, msg) {
        (ParticipantId(3), ClientMessage::MaskedInput { round, input }) => {
            let short = MaskedInput::from_words(input.words()[1..].to_vec());
            vec![(from, ClientMessage::MaskedInput { round, input: short })]
        }
        (from, msg) => vec![(from, msg)],
    }));
    let sum = net.run().unwrap();
    assert_eq!(
        net.server_errors,
        vec![(ParticipantId(3), SecAggError::WrongLength { from: ParticipantId(3), expected: 18, got: 17 })]
    );
    assert_eq!(sum.rejected(), &[("wrong_length", 1)]);
    assert_exact(&net, &sum, &ids([0, 1, 2, 4]));
}

// A duplicate is refused while its stage is open, a replay once it has closed; a client
// refuses a replayed request the same way.
#[test]
fn duplicate_and_replayed_messages_are_refused() {
    let n = 5;
    let mut net = Network::new(&complete_graph(n, 3), &random_inputs(n, 16, 2.0, 16, 8), 1, 8);
    let mut kept: Option<ClientMessage> = None;
    net.on_upload = Some(Box::new(move |from, msg| {
        if from != ParticipantId(1) {
            return vec![(from, msg)];
        }
        match &msg {
            ClientMessage::AdvertiseKeys { .. } => {
                kept = Some(msg.clone());
                vec![(from, msg.clone()), (from, msg)]
            }
            ClientMessage::ShareKeys { .. } => vec![(from, kept.clone().unwrap()), (from, msg)],
            _ => vec![(from, msg)],
        }
    }));
    let mut replayed: Option<ServerMessage> = None;
    net.on_download = Some(Box::new(move |to, msg| {
        if to != ParticipantId(0) {
            return vec![(to, msg)];
        }
        match &msg {
            ServerMessage::AdvertiseKeysRequest { .. } => {
                replayed = Some(msg.clone());
                vec![(to, msg)]
            }
            ServerMessage::ShareKeysRequest { .. } => vec![(to, msg), (to, replayed.clone().unwrap())],
            _ => vec![(to, msg)],
        }
    }));
    let sum = net.run().unwrap();
    assert_eq!(
        net.server_errors,
        vec![
            (ParticipantId(1), SecAggError::Duplicate { from: ParticipantId(1), stage: Stage::AdvertiseKeys }),
            (ParticipantId(1), SecAggError::Replayed { stage: Stage::AdvertiseKeys }),
        ]
    );
    assert_eq!(net.client_errors, vec![(ParticipantId(0), SecAggError::Replayed { stage: Stage::AdvertiseKeys })]);
    assert_eq!(sum.rejected(), &[("duplicate", 1), ("replayed", 1)]);
    assert_exact(&net, &sum, &ids(0..5));
}

// Messages for another round, for a stage not yet open, or from a stranger are refused.
#[test]
fn messages_for_another_round_or_stage_are_refused() {
    let n = 5;
    let mut net = Network::new(&complete_graph(n, 3), &random_inputs(n, 16, 2.0, 16, 9), 4, 9);
    net.on_upload = Some(Box::new(|from, msg| match (from, msg) {
        (ParticipantId(2), ClientMessage::ShareKeys { envelopes, .. }) => {
            vec![(from, ClientMessage::ShareKeys { round: 5, envelopes })]
        }
        (ParticipantId(3), msg @ ClientMessage::AdvertiseKeys { .. }) => {
            let early = ClientMessage::MaskedInput { round: 4, input: MaskedInput::from_words(vec![0; 18]) };
            vec![(from, early), (ParticipantId(99), msg.clone()), (from, msg)]
        }
        (from, msg) => vec![(from, msg)],
    }));
    let sum = net.run().unwrap();
    assert_eq!(
        net.server_errors,
        vec![
            (
                ParticipantId(3),
                SecAggError::WrongStage { expected: Stage::AdvertiseKeys, got: Stage::CollectMaskedInputs }
            ),
            (ParticipantId(99), SecAggError::UnknownParticipant(ParticipantId(99))),
            (ParticipantId(2), SecAggError::WrongRound { expected: 4, got: 5 }),
        ]
    );
    assert_eq!(sum.rejected(), &[("wrong_stage", 1), ("unknown_participant", 1), ("wrong_round", 1)]);
    // 2's shares never arrived: it is dropped, and nobody masks with it.
    assert_exact(&net, &sum, &ids([0, 1, 3, 4]));

    // A client refuses a request for another round and stays where it was.
    let config = complete_graph(3, 2);
    let mut client = SecAggClient::new(config, ParticipantId(0), 4, &[0.0; 16], 1, [1; 32]).unwrap();
    let wrong = ServerMessage::AdvertiseKeysRequest { round: 3 };
    assert_eq!(client.handle_message(Time(0), wrong), Err(SecAggError::WrongRound { expected: 4, got: 3 }));
    let early = ServerMessage::UnmaskRequest { round: 4, survivors: vec![], dropped: vec![] };
    assert_eq!(
        client.handle_message(Time(0), early),
        Err(SecAggError::WrongStage { expected: Stage::AdvertiseKeys, got: Stage::Unmask })
    );
    assert_eq!(client.stage(), Stage::AdvertiseKeys);
    assert!(client.handle_message(Time(0), ServerMessage::AdvertiseKeysRequest { round: 4 }).is_ok());
}

// A client never reveals both the self-mask share and the masking-key share of one
// participant (that would unmask its input): it refuses and leaves; the round completes
// without it because the others hold enough shares.
#[test]
fn a_client_refuses_to_reveal_both_secrets_of_a_neighbour() {
    let n = 6;
    let mut net = Network::new(&complete_graph(n, 3), &random_inputs(n, 16, 2.0, 16, 10), 1, 10);
    net.on_download = Some(Box::new(|to, mut msg| {
        if let (ParticipantId(0), ServerMessage::UnmaskRequest { dropped, .. }) = (to, &mut msg) {
            dropped.push(ParticipantId(5)); // 5 is also listed as a survivor
        }
        vec![(to, msg)]
    }));
    let sum = net.run().unwrap();
    assert_eq!(
        net.client_errors,
        vec![(ParticipantId(0), SecAggError::UnmaskConflict { neighbour: ParticipantId(5) })]
    );
    assert_eq!(net.clients[&ParticipantId(0)].stage(), Stage::Done);
    assert_exact(&net, &sum, &ids(0..6));
}

// A low-order public key would make agreed keys public; the server refuses it.
#[test]
fn a_low_order_public_key_is_refused() {
    let n = 4;
    let mut net = Network::new(&complete_graph(n, 2), &random_inputs(n, 16, 2.0, 16, 11), 1, 11);
    net.on_upload = Some(Box::new(|from, mut msg| {
        if let (ParticipantId(1), ClientMessage::AdvertiseKeys { keys, .. }) = (from, &mut msg) {
            keys.s_pk = [0; 32];
        }
        vec![(from, msg)]
    }));
    let sum = net.run().unwrap();
    assert_eq!(net.server_errors, vec![(ParticipantId(1), SecAggError::BadPublicKey { from: ParticipantId(1) })]);
    assert_exact(&net, &sum, &ids([0, 2, 3]));
}

// ---------------------------------------------------------------------------------------
// Determinism and configuration.
// ---------------------------------------------------------------------------------------

// Everything comes from the seeds: the same seeds give the same messages, byte for byte, and
// the same result; another seed gives other bytes and the same sum.
#[test]
fn the_same_seeds_give_the_same_bytes() {
    let mut config = SecAggConfig::new(5, 3, 64);
    config.max_weight = 8;
    let inputs = random_inputs(12, 64, 1.0, 8, 13);
    let run = |seed| {
        let mut net = Network::new(&config, &inputs, 6, seed);
        net.silence(&[4], Stage::CollectMaskedInputs);
        net.silence(&[9], Stage::Unmask);
        let sum = net.run().unwrap();
        (net.trace, sum)
    };
    let (trace_a, sum_a) = run(1);
    let (trace_b, sum_b) = run(1);
    assert_eq!(trace_a, trace_b);
    assert_eq!(sum_a, sum_b);
    let (trace_c, sum_c) = run(2);
    assert_ne!(trace_a, trace_c);
    assert_eq!(sum_a.contributors(), sum_c.contributors());
}

#[test]
fn configurations_are_validated_with_the_relation_that_failed() {
    let ok = SecAggConfig::new(5, 3, 10);
    assert_eq!(ok.validate_for(12), Ok(()));
    assert!(matches!(SecAggConfig::new(5, 6, 10).validate(), Err(ConfigError::Threshold { .. })));
    assert!(matches!(SecAggConfig::new(5, 1, 10).validate(), Err(ConfigError::Threshold { .. })));
    assert!(matches!(SecAggConfig::new(4, 3, 10).validate_for(12), Err(ConfigError::NumShares { .. })));
    assert_eq!(SecAggConfig::new(4, 3, 10).validate_for(4), Ok(()), "complete graph, odd degree");
    assert!(matches!(SecAggConfig::new(5, 3, 10).validate_for(4), Err(ConfigError::NumShares { .. })));
    let mut big = ok.clone();
    big.modulus_range = 1 << 31;
    assert_eq!(big.validate(), Err(ConfigError::Modulus(1 << 31)));
    // 2^16 levels and weight 64: 1024 · 64 · 65535 < 2^32 ≤ 1025 · 64 · 65535.
    assert!(matches!(ok.validate_for(1025), Err(ConfigError::Overflow { .. })));
    assert_eq!(ok.validate_for(1024), Ok(()));
    let dup = SecAggServer::new(ok.clone(), ids([1, 2, 2, 3, 4]), 1, [0; 32]);
    assert_eq!(dup.unwrap_err(), SecAggError::Config(ConfigError::Participants));
    let client = SecAggClient::new(ok.clone(), ParticipantId(0), 1, &[0.0; 10], 65, [0; 32]);
    assert_eq!(client.unwrap_err(), SecAggError::Weight { weight: 65, max_weight: 64 });
    let client = SecAggClient::new(ok, ParticipantId(0), 1, &[0.0; 9], 1, [0; 32]);
    assert!(matches!(client.unwrap_err(), SecAggError::WrongLength { expected: 10, got: 9, .. }));
}

// ---------------------------------------------------------------------------------------
// Cost (run with `--ignored --nocapture`).
// ---------------------------------------------------------------------------------------

#[test]
#[ignore = "timing; run with --ignored --nocapture"]
fn bench_secagg_plus() {
    use std::time::Instant;
    let d = 1 << 20;
    let seed = [3u8; 32];
    let mut v = vec![0u32; d];
    let start = Instant::now();
    for _ in 0..10 {
        crypto::prg_apply(&seed, &mut v, false);
    }
    let secs = start.elapsed().as_secs_f64() / 10.0;
    println!("secagg::prg_apply/d=2^20: {:.2} ms ({:.2} GB/s)", secs * 1e3, 4.0 * d as f64 / secs / 1e9);
    for (n, num_shares, t, d) in
        [(20, 9, 5, 100_000), (100, 9, 5, 100_000), (400, 9, 5, 100_000), (100, 15, 8, 1_000_000)]
    {
        let mut config = SecAggConfig::new(num_shares, t, d);
        config.max_weight = 8;
        let inputs = random_inputs(n, d, 1.0, 8, 1);
        let start = Instant::now();
        let mut net = Network::new(&config, &inputs, 1, 1);
        let setup = start.elapsed().as_secs_f64();
        net.silence(&[0, 1], Stage::CollectMaskedInputs);
        net.run().unwrap();
        let per_client: Vec<f64> = net.client_time.values().map(|t| t.as_secs_f64() * 1e3).collect();
        let mean = per_client.iter().sum::<f64>() / per_client.len() as f64;
        let max = per_client.iter().copied().fold(0.0, f64::max);
        println!(
            "secagg::round/n={n},k={},d={d}: client new {:.1} ms, client messages mean {mean:.1} ms max {max:.1} ms; \
             server {:.1} ms",
            num_shares - 1,
            setup * 1e3 / n as f64,
            net.server_time.as_secs_f64() * 1e3,
        );
    }
}
