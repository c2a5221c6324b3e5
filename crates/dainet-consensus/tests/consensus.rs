//! Fault scenarios as deterministic simulations: four validators on a simulated network, with
//! crashes, lossy links and Byzantine peers (simplex's own equivocator and conflicter mocks).
//! Each test asserts agreement (no two validators finalize different blocks at one height) and
//! progress (or, without a quorum, its absence).

mod common;

use std::sync::Arc;
use std::time::Duration;

use commonware_consensus::simplex::elector::RoundRobin;
use commonware_consensus::simplex::mocks;
use commonware_consensus::types::Epoch;
use commonware_cryptography::Blake3;
use commonware_p2p::{Receiver as _, Recipients, Sender as _};
use commonware_runtime::{deterministic, Clock, Runner as _, Spawner as _, Supervisor as _};
use commonware_utils::ordered::Set;
use dainet_consensus::mempool::TxOutcome;
use dainet_consensus::sim;
use dainet_consensus::types::{consensus_key, namespace, node_id, Payload, PublicKey, Scheme};
use dainet_consensus::wire::{block_message, WireMessage, TAG_BLOCK, TAG_REQUEST, TAG_TRANSACTIONS};
use dainet_ledger::hash::Digest;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use common::{assert_all_committed, assert_no_fork, link, outcomes, wait_until, Net};

/// Starts the honest validators `ids`, submits 10 transactions through the `via`-th of them,
/// and asserts that all commit and that every started validator reaches `height`; returns
/// their statuses then. The shared second half of every Byzantine scenario.
async fn honest_validators_progress(
    context: &deterministic::Context,
    net: &Net,
    ids: std::ops::Range<usize>,
    via: usize,
    height: u64,
) -> Vec<dainet_consensus::application::Status> {
    let mut honest = Vec::new();
    for i in ids {
        honest.push(net.start(context, i).await);
    }
    let statuses: Vec<_> = honest.iter().map(|v| v.status().clone()).collect();
    let txs: Vec<_> = common::rewards(&net.user, &net.genesis, 1, 10)
        .into_iter()
        .map(|tx| honest[via].mailbox().submit(tx))
        .collect();
    assert_all_committed(&outcomes(context, txs, Duration::from_secs(30)).await);
    assert!(wait_until(context, Duration::from_secs(30), || statuses.iter().all(|s| s.height() >= height)).await);
    statuses.iter().map(|s| s.snapshot()).collect()
}

fn runner(seed: u64) -> deterministic::Runner {
    // The timeout is a safety net against a hung test, in virtual time.
    deterministic::Runner::new(
        deterministic::Config::new().with_seed(seed).with_timeout(Some(Duration::from_secs(600))),
    )
}

/// Four validators over links that lose 1% of messages; validator 3 crashes mid-run. Returns the
/// runtime's audit digest and the tips, for the determinism test.
fn crash_with_lossy_links(seed: u64) -> (String, Vec<Option<Digest>>) {
    runner(seed).start(|context| async move {
        let net = Net::new(&context, 4, link(20, 5, 0.99)).await;
        let mut validators = Vec::new();
        for i in 0..4 {
            validators.push(net.start(&context, i).await);
        }
        let statuses: Vec<_> = validators.iter().map(|v| v.status().clone()).collect();

        // Before the crash: 10 transactions through validator 0.
        let first: Vec<_> = common::rewards(&net.user, &net.genesis, 1, 10)
            .into_iter()
            .map(|tx| validators[0].mailbox().submit(tx))
            .collect();
        let first = outcomes(&context, first, Duration::from_secs(20)).await;
        assert_all_committed(&first);

        // Crash validator 3; 10 more through validator 1.
        validators[3].abort();
        let at_crash = statuses[0].height();
        let second: Vec<_> = common::rewards(&net.user, &net.genesis, 11, 10)
            .into_iter()
            .map(|tx| validators[1].mailbox().submit(tx))
            .collect();
        let second = outcomes(&context, second, Duration::from_secs(30)).await;
        assert_all_committed(&second);
        let live = &statuses[..3];
        assert!(
            wait_until(&context, Duration::from_secs(30), || live.iter().all(|s| s.height() >= at_crash + 10)).await,
            "chain stopped growing after the crash: {:?}",
            live.iter().map(|s| s.height()).collect::<Vec<_>>()
        );

        let snapshots: Vec<_> = statuses.iter().map(|s| s.snapshot()).collect();
        assert_no_fork(&snapshots);
        // The transactions are in the chain, in nonce order.
        let heights: Vec<u64> = first
            .iter()
            .chain(&second)
            .map(|o| match o {
                Some(TxOutcome::Committed(i)) => i.height,
                other => panic!("{other:?}"),
            })
            .collect();
        assert!(heights.windows(2).all(|w| w[0] <= w[1]), "{heights:?}");
        for s in &snapshots[..3] {
            assert_eq!(s.finality_errors, 0);
            assert_eq!(s.rejected_blocks, 0, "honest proposals are never rejected");
        }
        (context.auditor().state(), snapshots.iter().map(|s| s.tip()).collect())
    })
}

#[test]
fn one_crash_and_lossy_links_still_finalize_everything() {
    crash_with_lossy_links(7);
}

#[test]
fn same_seed_same_run_other_seed_other_run() {
    let (a, tips_a) = crash_with_lossy_links(11);
    let (b, tips_b) = crash_with_lossy_links(11);
    assert_eq!(a, b, "audit digests differ for one seed");
    assert_eq!(tips_a, tips_b);
    let (c, _) = crash_with_lossy_links(12);
    assert_ne!(a, c, "a different seed should schedule differently");
}

#[test]
fn two_of_four_down_halts_without_forking() {
    runner(3).start(|context| async move {
        let net = Net::new(&context, 4, link(10, 2, 0.99)).await;
        let mut validators = Vec::new();
        for i in 0..4 {
            validators.push(net.start(&context, i).await);
        }
        let statuses: Vec<_> = validators.iter().map(|v| v.status().clone()).collect();
        assert!(wait_until(&context, Duration::from_secs(20), || statuses.iter().all(|s| s.height() >= 5)).await);

        validators[2].abort();
        validators[3].abort();
        // Let whatever was in flight settle, then watch for a while: nothing new may finalize.
        context.sleep(Duration::from_secs(3)).await;
        let settled: Vec<u64> = statuses.iter().map(|s| s.height()).collect();
        let pending: Vec<_> = common::rewards(&net.user, &net.genesis, 1, 3)
            .into_iter()
            .map(|tx| validators[0].mailbox().submit(tx))
            .collect();
        let results = outcomes(&context, pending, Duration::from_secs(15)).await;
        assert!(results.iter().all(Option::is_none), "committed without a quorum: {results:?}");
        let after: Vec<u64> = statuses.iter().map(|s| s.height()).collect();
        assert_eq!(settled, after, "a block was finalized by 2 of 4 validators");
        assert_no_fork(&statuses.iter().map(|s| s.snapshot()).collect::<Vec<_>>());
    });
}

#[test]
fn equivocating_leader_cannot_fork_the_honest_validators() {
    runner(5).start(|context| async move {
        let net = Net::new(&context, 4, link(10, 2, 0.99)).await;
        let participants = Set::from_iter_dedup(net.publics.clone());

        // Validator 0 is simplex's equivocator: as leader it notarizes two payloads, one for a
        // victim and one for the rest, and relays their bytes through the mock relay.
        let relay = Arc::new(mocks::relay::Relay::<Payload, PublicKey>::new());
        let scheme = Scheme::signer(&namespace(&net.genesis), participants, consensus_key(&net.keys[0])).unwrap();
        let equivocator = mocks::equivocator::Equivocator::new(
            context.child("equivocator"),
            mocks::equivocator::Config::<_, _, Blake3> {
                scheme,
                elector: RoundRobin::<commonware_cryptography::Sha256>::default(),
                epoch: Epoch::new(0),
                relay: relay.clone(),
            },
        );
        let channels = sim::register(&net.oracle, net.publics[0].clone()).await.unwrap();
        equivocator.start(channels.votes, channels.certificates);

        // Its payloads are not ledger blocks; forward them onto the block channel anyway, as a
        // Byzantine peer would, so the honest validators must reject them.
        let mut relayed = relay.register(net.publics[1].clone());
        let (mut block_sender, _) = channels.blocks;
        context.child("bridge").spawn(move |_| async move {
            while let Some((_, bytes)) = relayed.recv().await {
                block_sender.send(Recipients::All, block_message(&bytes), false);
            }
        });

        let snapshots = honest_validators_progress(&context, &net, 1..4, 0, 20).await;
        assert_no_fork(&snapshots);
        assert!(snapshots.iter().any(|s| s.rejected_messages > 0), "the equivocator's payloads were never rejected");
        for s in &snapshots {
            assert_eq!(s.finality_errors, 0);
        }
    });
}

#[test]
fn conflicting_voter_cannot_fork_and_is_reported() {
    runner(9).start(|context| async move {
        let net = Net::new(&context, 4, link(10, 2, 0.99)).await;
        let participants = Set::from_iter_dedup(net.publics.clone());

        // Validator 0 is simplex's conflicter: for every vote it sees, it signs the same vote
        // and one for a random payload.
        let scheme = Scheme::signer(&namespace(&net.genesis), participants, consensus_key(&net.keys[0])).unwrap();
        let conflicter = mocks::conflicter::Conflicter::<_, _, Blake3>::new(
            context.child("conflicter"),
            mocks::conflicter::Config { scheme },
        );
        let channels = sim::register(&net.oracle, net.publics[0].clone()).await.unwrap();
        conflicter.start(channels.votes);

        let snapshots = honest_validators_progress(&context, &net, 1..4, 1, 20).await;
        assert_no_fork(&snapshots);
        let byzantine = node_id(&net.publics[0]);
        assert!(
            snapshots.iter().any(|s| s.faults.get(&byzantine).copied().unwrap_or(0) > 0),
            "no fault reported for the conflicter: {:?}",
            snapshots.iter().map(|s| &s.faults).collect::<Vec<_>>()
        );
        for s in &snapshots {
            assert!(s.faults.keys().all(|k| *k == byzantine), "an honest validator was accused: {:?}", s.faults);
        }
    });
}

#[test]
fn garbage_from_a_peer_is_rejected_and_counted() {
    runner(13).start(|context| async move {
        let net = Net::new(&context, 4, link(30, 2, 1.0)).await;
        // Validator 3 runs no consensus: it only sprays the block channel with junk — random
        // bytes, truncated and corrupted copies of the blocks it hears, malformed requests. Its
        // links are fast, so its copy of a block with another body arrives before the real one.
        for i in 0..3 {
            for (a, b) in [(i, 3), (3, i)] {
                net.oracle.remove_link(net.publics[a].clone(), net.publics[b].clone()).await.unwrap();
                net.oracle.add_link(net.publics[a].clone(), net.publics[b].clone(), link(1, 0, 1.0)).await.unwrap();
            }
        }
        let junk_tx = common::rewards(&net.user, &net.genesis, 1_000, 1).remove(0);
        let channels = sim::register(&net.oracle, net.publics[3].clone()).await.unwrap();
        let (mut sender, mut receiver) = channels.blocks;
        context.child("spammer").spawn(move |context| async move {
            let mut rng = ChaCha20Rng::seed_from_u64(1);
            loop {
                let mut junk = vec![0u8; (rng.next_u32() % 300) as usize];
                rng.fill_bytes(&mut junk);
                sender.send(Recipients::All, junk.clone(), false);
                if let Some(first) = junk.first_mut() {
                    *first = TAG_BLOCK;
                }
                sender.send(Recipients::All, junk, false);
                sender.send(Recipients::All, vec![TAG_REQUEST, 1, 2, 3], false);
                commonware_macros::select! {
                    received = receiver.recv() => {
                        let Ok((_, bytes)) = received else { return };
                        let bytes = bytes.as_ref().to_vec();
                        if let Ok(WireMessage::Block(mut block)) = WireMessage::decode(&bytes) {
                            // Same header, another body: must not displace the real block.
                            if block.txs.is_empty() {
                                block.txs.push(junk_tx.clone());
                            } else {
                                block.txs.clear();
                            }
                            sender.send(Recipients::All, WireMessage::Block(block).encode(), false);
                        }
                        sender.send(Recipients::All, bytes[..bytes.len() / 2].to_vec(), false);
                    },
                    _ = context.sleep(Duration::from_millis(30)) => {},
                }
            }
        });

        let snapshots = honest_validators_progress(&context, &net, 0..3, 2, 20).await;
        assert_no_fork(&snapshots);
        for s in &snapshots {
            assert!(s.rejected_messages > 10, "junk not counted: {}", s.rejected_messages);
            assert_eq!(s.rejected_blocks, 0, "an honest block was rejected: {:?}", s.last_error);
            assert_eq!(s.finality_errors, 0);
        }
    });
}

#[test]
fn gossiped_transactions_are_proposed_and_forged_ones_are_counted() {
    runner(23).start(|context| async move {
        let net = Net::new(&context, 4, link(10, 2, 1.0)).await;
        // Validator 3 runs no consensus (so it never proposes): it only gossips, once the three
        // honest validators are finalizing — a batch with a forged signature, an undecodable
        // batch, then the user's transactions with nonces 1 to 5 — and ignores what it hears.
        let mut forged = common::rewards(&net.user, &net.genesis, 1, 1).remove(0);
        forged.body = dainet_ledger::tx::TxBody::Reward { node: net.user.node_id(), amount: 1_000_000 };
        let valid = common::rewards(&net.user, &net.genesis, 1, 5);
        let channels = sim::register(&net.oracle, net.publics[3].clone()).await.unwrap();
        let (mut sender, mut receiver) = channels.blocks;
        let mut validators = Vec::new();
        for i in 0..3 {
            validators.push(net.start(&context, i).await);
        }
        let statuses: Vec<_> = validators.iter().map(|v| v.status().clone()).collect();
        assert!(wait_until(&context, Duration::from_secs(20), || statuses.iter().all(|s| s.height() >= 3)).await);
        sender.send(Recipients::All, WireMessage::Transactions(vec![valid[0].clone(), forged]).encode(), false);
        sender.send(Recipients::All, vec![TAG_TRANSACTIONS, 2, 0, 0, 0, 9], false);
        sender.send(Recipients::All, WireMessage::Transactions(valid).encode(), false);
        context.child("listener").spawn(move |_| async move { while receiver.recv().await.is_ok() {} });

        // Nonce 6, submitted to validator 1, can commit only once nonces 1 to 5 have: they were
        // never submitted to an honest validator, only gossiped to them.
        let six = validators[1].mailbox().submit(common::rewards(&net.user, &net.genesis, 6, 1).remove(0));
        assert_all_committed(&outcomes(&context, vec![six], Duration::from_secs(20)).await);
        let at = statuses[0].height();
        assert!(wait_until(&context, Duration::from_secs(20), || statuses.iter().all(|s| s.height() >= at + 5)).await);

        let snapshots: Vec<_> = statuses.iter().map(|s| s.snapshot()).collect();
        assert_no_fork(&snapshots);
        for (i, s) in snapshots.iter().enumerate() {
            assert_eq!(s.rejected_messages, 2, "validator {i}: forged and undecodable batches: {:?}", s.last_error);
            assert!(s.gossip_received >= 5, "validator {i} admitted {} gossiped transactions", s.gossip_received);
            assert_eq!(s.rejected_blocks, 0, "{:?}", s.last_error);
            assert_eq!(s.finality_errors, 0);
        }
        let chain = validators.swap_remove(0).stop().await.unwrap();
        let balance = chain.state().balance(&net.user.node_id());
        assert_eq!(balance, (1..=6).sum::<u64>(), "each valid reward once, the forged one never");
    });
}

#[test]
fn cut_off_validator_catches_up_by_ranges() {
    runner(21).start(|context| async move {
        let net = Net::new(&context, 4, link(10, 2, 1.0)).await;
        let mut validators = Vec::new();
        for i in 0..4 {
            validators.push(net.start(&context, i).await);
        }
        let statuses: Vec<_> = validators.iter().map(|v| v.status().clone()).collect();
        assert!(wait_until(&context, Duration::from_secs(20), || statuses.iter().all(|s| s.height() >= 5)).await);

        // Validator 3 hears nothing for a while (it can still talk): the other three go on.
        for i in 0..3 {
            net.oracle.remove_link(net.publics[i].clone(), net.publics[3].clone()).await.unwrap();
        }
        let cut_at = statuses[3].height();
        let txs: Vec<_> = common::rewards(&net.user, &net.genesis, 1, 10)
            .into_iter()
            .map(|tx| validators[0].mailbox().submit(tx))
            .collect();
        assert_all_committed(&outcomes(&context, txs, Duration::from_secs(30)).await);
        assert!(wait_until(&context, Duration::from_secs(30), || statuses[0].height() >= cut_at + 30).await);
        assert!(statuses[3].height() <= cut_at + 1, "validator 3 was not cut off");

        // Reconnect: it learns of finalizations for blocks it never received, and must fetch
        // them (and their ancestors) from its peers: headers down from the finalized block, then
        // the blocks, in ranges.
        for i in 0..3 {
            net.oracle.add_link(net.publics[i].clone(), net.publics[3].clone(), link(10, 2, 1.0)).await.unwrap();
        }
        let target = statuses[0].height();
        assert!(
            wait_until(&context, Duration::from_secs(30), || statuses[3].height() >= target).await,
            "validator 3 stuck at {} (target {target})",
            statuses[3].height()
        );
        let snapshots: Vec<_> = statuses.iter().map(|s| s.snapshot()).collect();
        assert_no_fork(&snapshots);
        assert!(snapshots[3].sync_jobs >= 1);
        assert!(snapshots[3].synced_blocks >= target - cut_at - 1, "synced {}", snapshots[3].synced_blocks);
        // Ranges, not one block per request: a header range and a few block ranges per job.
        let served = snapshots[..3].iter().map(|s| s.ranges_served).sum::<u64>();
        assert!(served >= 2 && served < target - cut_at, "ranges served: {served}");
        assert_eq!(snapshots[3].sync, None, "the catch-up ended");
        assert_eq!(snapshots[3].finality_errors, 0);
    });
}

/// A Byzantine leader that equivocates with two *valid* ledger blocks: on each view it leads, it
/// builds two blocks on the same parent (different timestamps), sends block A and a notarize
/// vote for it to one victim, and block B and a vote for B to the other two. It follows the
/// chain through the blocks it hears, answers no requests and casts no other votes.
#[test]
fn ledger_equivocator_with_two_valid_blocks_cannot_fork() {
    use commonware_codec::{Decode, Encode as _};
    use commonware_consensus::simplex::elector::{Config as _, Elector as _};
    use commonware_consensus::simplex::types::{Certificate, Notarize, Proposal, Vote};
    use commonware_consensus::types::Round;
    use commonware_consensus::Viewable as _;
    use commonware_cryptography::certificate::Verifier as CertificateVerifier;
    use commonware_macros::select;
    use dainet_consensus::core::{Core, Proposed};
    use dainet_consensus::types::{block_hash, payload};
    use dainet_ledger::chain::Chain;
    use dainet_ledger::store::MemStore;
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    runner(17).start(|context| async move {
        let net = Net::new(&context, 4, link(10, 2, 0.99)).await;
        let participants = Set::from_iter_dedup(net.publics.clone());
        let me = participants.position(&net.publics[0]).unwrap();
        let scheme =
            Scheme::signer(&namespace(&net.genesis), participants.clone(), consensus_key(&net.keys[0])).unwrap();
        let elector: commonware_consensus::simplex::elector::RoundRobinElector<Scheme> =
            RoundRobin::<commonware_cryptography::Sha256>::default().build(&participants);
        let victim = net.publics[1].clone();
        let others: Vec<PublicKey> = net.publics[2..].to_vec();
        let channels = sim::register(&net.oracle, net.publics[0].clone()).await.unwrap();
        let (mut votes, _) = channels.votes;
        let (_, mut certificates) = channels.certificates;
        let (mut blocks_out, mut blocks_in) = channels.blocks;
        let mut core = Core::new(Chain::create(MemStore::new(), net.genesis.clone()).unwrap(), 10, 100_000).unwrap();
        let b_blocks = Arc::new(Mutex::new(BTreeSet::new()));
        let b_record = b_blocks.clone();
        context.child("ledger_equivocator").spawn(move |context| async move {
            let mut done = BTreeSet::new();
            loop {
                select! {
                    received = blocks_in.recv() => {
                        let Ok((_, bytes)) = received else { return };
                        if let Ok(WireMessage::Block(block)) = WireMessage::decode(bytes.as_ref()) {
                            core.insert_block(block);
                        }
                    },
                    received = certificates.recv() => {
                        let Ok((_, bytes)) = received else { return };
                        let config = <Scheme as CertificateVerifier>::certificate_codec_config(&scheme);
                        let Ok(certificate) = <Certificate<Scheme, Payload> as Decode>::decode_cfg(bytes, &config)
                        else {
                            continue;
                        };
                        let (view, parent) = match certificate {
                            Certificate::Notarization(n) => (n.view(), n.proposal.payload),
                            Certificate::Finalization(f) => (f.view(), f.proposal.payload),
                            Certificate::Nullification(_) => continue,
                        };
                        if !done.insert(view) {
                            continue;
                        }
                        let round = Round::new(Epoch::new(0), view.next());
                        if elector.elect(round, ()).get() as usize != me {
                            continue;
                        }
                        let now = context.current().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
                        let Proposed::Block(a) = core.propose(block_hash(&parent), now) else { continue };
                        let later = core.pending_block(&a).unwrap().timestamp_ms + 1;
                        let Proposed::Block(b) = core.propose(block_hash(&parent), later) else { continue };
                        assert_ne!(a, b);
                        b_record.lock().unwrap().insert(b);
                        for (hash, to) in [(a, vec![victim.clone()]), (b, others.clone())] {
                            let block = core.pending_block(&hash).unwrap().clone();
                            blocks_out.send(Recipients::Some(to.clone()), WireMessage::Block(block).encode(), false);
                            let proposal = Proposal::new(round, view, payload(&hash));
                            let vote = Notarize::<Scheme, Payload>::sign(&scheme, proposal).unwrap();
                            votes.send(Recipients::Some(to), Vote::Notarize(vote).encode(), true);
                        }
                    },
                }
            }
        });

        let snapshots = honest_validators_progress(&context, &net, 1..4, 2, 30).await;
        assert_no_fork(&snapshots);
        let equivocations = b_blocks.lock().unwrap().clone();
        assert!(!equivocations.is_empty(), "the equivocator never led");
        let finalized: BTreeSet<_> = snapshots[0].finalized.iter().copied().collect();
        assert!(
            equivocations.iter().any(|b| finalized.contains(b)),
            "no equivocated block was finalized: {} equivocations",
            equivocations.len()
        );
        for s in &snapshots {
            assert_eq!(s.finality_errors, 0);
            assert_eq!(s.rejected_blocks, 0, "{:?}", s.last_error);
        }
    });
}
