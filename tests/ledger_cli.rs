//! End-to-end tests of `dainet keygen` and `dainet ledger show | verify | export` on a ledger
//! folder built here through the library, and of what each says when the ledger is damaged.

mod common;

use common::{assert_clean_error, dainet, s, stderr, stdout};

use dainet_ledger::blob::BlobStore;
use dainet_ledger::block::Block;
use dainet_ledger::chain::Chain;
use dainet_ledger::folder::LedgerDir;
use dainet_ledger::genesis::{Founder, Genesis};
use dainet_ledger::hash::Digest;
use dainet_ledger::identity::{Keypair, NodeId};
use dainet_ledger::store::{BlockStore, RedbStore};
use dainet_ledger::tx::{ChainId, Metric, Transaction, TxBody};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::path::{Path, PathBuf};
use std::process::Command;

const T0: u64 = 1_700_000_000_000;

/// Runs `dainet ARGS` and asserts it succeeded; returns stdout.
fn ok(args: &[&str]) -> String {
    let out = dainet(args);
    assert!(out.status.success(), "dainet {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// `label` padded to the show/verify label column, then `value`: one whole line of output.
fn labelled(label: &str, value: impl std::fmt::Display) -> String {
    format!("{label:<14}{value}")
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

fn short(id: &impl std::fmt::Display) -> String {
    id.to_string()[..16].to_string()
}

/// A ledger folder with three founders (carol does not validate; alice is the treasury), bob's
/// device `phone`, a closed round 1 (three updates, an aggregate, a contribution, a reward, a
/// privacy spend) and an open round 2:
/// - block 1: policy (alice's and bob's approvals: 2 of 3, a majority), device registration,
///   carol's lone approval of admitting `dave` (pending);
/// - block 2: round 1 opens, three updates;
/// - block 3: aggregate, contribution, reward, privacy spend, round 2 opens.
struct Ledger {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    alice: NodeId,
    bob: NodeId,
    carol: NodeId,
    phone: NodeId,
    chain_id: ChainId,
    policy: Digest,
    /// alice's, bob's and phone's update blobs.
    updates: [Digest; 3],
    aggregate: Digest,
}

fn build_ledger() -> Ledger {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let [alice_key, bob_key, carol_key, phone_key] = [(); 4].map(|()| Keypair::generate(&mut rng));
    let dave = Keypair::generate(&mut rng).node_id();
    let (alice, bob, carol, phone) = (alice_key.node_id(), bob_key.node_id(), carol_key.node_id(), phone_key.node_id());
    let founders = vec![
        Founder { id: alice, name: "alice".into(), validator: true },
        Founder { id: bob, name: "bob".into(), validator: true },
        Founder { id: carol, name: "carol".into(), validator: false },
    ];
    let genesis = Genesis { name: "ledger-cli-test".into(), timestamp_ms: T0, founders, treasury: Some(alice) };
    let chain_id = genesis.chain_id();
    let (store, mut blobs) = LedgerDir::create(&dir).unwrap().into_parts();
    let mut chain = Chain::create(store, genesis).unwrap();
    let mut put = |bytes: &[u8]| blobs.put(bytes).unwrap();
    let updates = [put(b"alice's update"), put(b"bob's update"), put(b"phone's update")];
    let aggregate = put(b"global model after round 1");
    let policy = Digest::of(b"policy contract source");

    let a = |nonce, body| Transaction::sign(&alice_key, &chain_id, nonce, body);
    let b = |nonce, body| Transaction::sign(&bob_key, &chain_id, nonce, body);
    let c = |nonce, body| Transaction::sign(&carol_key, &chain_id, nonce, body);
    let update = |node, i: usize, examples| TxBody::CommitUpdate {
        round: 1,
        node,
        update_hash: updates[i],
        examples,
        norm_bits: (1.5 + i as f64).to_bits(),
    };
    let blocks = vec![
        vec![
            a(1, TxBody::DeployPolicy { code_hash: policy }),
            b(1, TxBody::RegisterDevice { device: phone, member: bob }),
            b(2, TxBody::DeployPolicy { code_hash: policy }),
            c(1, TxBody::RegisterMember { member: dave, name: "dave".into(), validator: false }),
        ],
        vec![
            a(
                2,
                TxBody::OpenRound {
                    round: 1,
                    task: "mnist-2nn".into(),
                    participants: vec![alice, bob, phone],
                    strategy: "fedavg".into(),
                    deadline_ms: T0 + 60_000,
                },
            ),
            a(3, update(alice, 0, 600)),
            b(3, update(bob, 1, 500)),
            b(4, update(phone, 2, 40)),
        ],
        vec![
            a(
                4,
                TxBody::CommitAggregate {
                    round: 1,
                    aggregate_hash: aggregate,
                    participants: vec![alice, bob, phone],
                    metrics: vec![Metric::new("accuracy", 0.9375), Metric::new("loss", 0.25)],
                },
            ),
            a(5, TxBody::Contribution { round: 1, node: bob, score: 250_000 }),
            a(6, TxBody::Reward { node: bob, amount: 100 }),
            a(7, TxBody::PrivacySpend { round: 1, epsilon_bits: 0.5f64.to_bits(), delta_bits: 1e-5f64.to_bits() }),
            a(
                8,
                TxBody::OpenRound {
                    round: 2,
                    task: "mnist-2nn".into(),
                    participants: vec![alice, bob],
                    strategy: "fedavg".into(),
                    deadline_ms: T0 + 120_000,
                },
            ),
        ],
    ];
    for (i, txs) in blocks.into_iter().enumerate() {
        let n = txs.len();
        let proposal = chain.propose_block(txs, T0 + 1_000 * (i as u64 + 1)).unwrap();
        assert!(proposal.dropped.is_empty(), "{:?}", proposal.dropped);
        assert_eq!(proposal.block.txs.len(), n);
        chain.append(proposal.block).unwrap();
    }
    Ledger { _tmp: tmp, dir, alice, bob, carol, phone, chain_id, policy, updates, aggregate }
}

fn stored_block(store: &RedbStore, height: u64) -> Block {
    Block::decode(&store.block(height).unwrap().unwrap()).unwrap()
}

/// Replace the bytes of block `height` without moving the tip (put_block moves it; put it back).
fn rewrite_block_bytes(dir: &Path, height: u64, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut ledger = LedgerDir::open(dir).unwrap();
    let store = ledger.store_mut();
    let tip = store.tip().unwrap().unwrap();
    let mut bytes = store.block(height).unwrap().unwrap();
    let hash = Block::decode(&bytes).unwrap().hash();
    edit(&mut bytes);
    store.put_block(height, &hash, &bytes).unwrap();
    let tip_bytes = store.block(tip.height).unwrap().unwrap();
    store.put_block(tip.height, &tip.hash, &tip_bytes).unwrap();
}

// ---------------------------------------------------------------------------------------------
// keygen

#[test]
fn keygen_writes_an_owner_only_key_prints_its_id_and_never_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("node.key");
    let out = dainet(&["keygen", "--out", s(&path)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out);
    assert_eq!(id.len(), 65, "64 hex characters and a newline: {id:?}");
    assert_eq!(Keypair::load(&path).unwrap().node_id().to_string(), id.trim(), "stdout is the key's node id");
    assert!(stderr(&out).contains(s(&path)), "stderr says where the key went: {}", stderr(&out));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    let before = std::fs::read(&path).unwrap();
    assert_clean_error(&dainet(&["keygen", "--out", s(&path)]), "already exists");
    assert_eq!(std::fs::read(&path).unwrap(), before, "the key file is untouched");

    // The default path is dainet.key in the current folder, and each run draws a new key.
    let out = Command::new(env!("CARGO_BIN_EXE_dainet")).arg("keygen").current_dir(tmp.path()).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let other = Keypair::load(&tmp.path().join("dainet.key")).unwrap().node_id();
    assert_eq!(other.to_string(), stdout(&out).trim());
    assert_ne!(other.to_string(), id.trim(), "two keygens gave the same key");
}

#[test]
fn keygen_into_a_missing_folder_is_a_clean_error() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("no/such/folder/node.key");
    assert_clean_error(&dainet(&["keygen", "--out", s(&path)]), "node.key");
}

// ---------------------------------------------------------------------------------------------
// show

#[test]
fn show_summarises_the_ledger() {
    let l = build_ledger();
    let text = ok(&["ledger", "show", s(&l.dir)]);
    let store_tip = LedgerDir::open(&l.dir).unwrap().store().tip().unwrap().unwrap();
    for line in [
        labelled("chain id", l.chain_id.0),
        labelled("height", 3),
        labelled("tip", store_tip.hash),
        labelled("transactions", 13),
        labelled("members", 3),
        labelled("devices", 1),
        labelled("rounds", "2 (1 open, 1 closed)"),
        labelled("policy", format!("{} (1 deployed)", l.policy)),
        labelled("proposals", "1 pending (a change takes effect with 2 of 3 members)"),
    ] {
        assert!(has_line(&text, &line), "missing {line:?} in:\n{text}");
    }
    // The member table: name, full id, validator, founder, in aligned columns.
    let row = |id: &NodeId| {
        text.lines().find(|line| line.contains(&id.to_string())).unwrap_or_else(|| panic!("no {id} in:\n{text}"))
    };
    let (alice, carol) = (row(&l.alice), row(&l.carol));
    assert_eq!(carol.split_whitespace().collect::<Vec<_>>(), ["carol", &l.carol.to_string(), "no", "yes"]);
    assert_eq!(alice.split_whitespace().collect::<Vec<_>>(), ["alice", &l.alice.to_string(), "yes", "yes"]);
    assert_eq!(alice.find(&l.alice.to_string()), carol.find(&l.carol.to_string()), "id column aligned:\n{text}");
}

#[test]
fn show_block_prints_the_header_and_one_line_per_transaction() {
    let l = build_ledger();
    let (block2, block3) = {
        let ledger = LedgerDir::open(&l.dir).unwrap();
        (stored_block(ledger.store(), 2), stored_block(ledger.store(), 3))
    };
    let text = ok(&["ledger", "show", s(&l.dir), "--block", "3"]);
    for line in [
        labelled("block", 3),
        labelled("hash", block3.hash()),
        labelled("prev", block2.hash()),
        labelled("tx root", block3.tx_root),
        labelled("state root", block3.state_root),
        labelled("time", format!("{} ms", T0 + 3_000)),
        labelled("transactions", 5),
    ] {
        assert!(has_line(&text, &line), "missing {line:?} in:\n{text}");
    }
    let tx_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("  ") && !l.contains("kind")).collect();
    assert_eq!(tx_lines.len(), 5, "{text}");
    let kinds = ["commit_aggregate", "contribution", "reward", "privacy_spend", "open_round"];
    for (i, (line, kind)) in tx_lines.iter().zip(kinds).enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[0], i.to_string(), "{line}");
        assert_eq!(words[1], kind, "{line}");
        assert!(line.contains(&format!("alice ({})", short(&l.alice))), "signer: {line}");
    }
    assert!(tx_lines[0].contains("accuracy=0.9375 loss=0.25"), "{}", tx_lines[0]);
    assert!(tx_lines[1].contains(&format!("node={} score=250000", short(&l.bob))), "{}", tx_lines[1]);
    assert!(tx_lines[3].contains("epsilon=0.5 delta=0.00001"), "{}", tx_lines[3]);
    // Nonces 4 to 8, in the nonce column.
    let nonces: Vec<&str> = tx_lines.iter().map(|l| l.split_whitespace().nth(4).unwrap()).collect();
    assert_eq!(nonces, ["4", "5", "6", "7", "8"], "{text}");

    let block0 = ok(&["ledger", "show", s(&l.dir), "--block", "0"]);
    assert!(has_line(&block0, &labelled("transactions", 0)), "{block0}");
}

#[test]
fn show_round_lists_commitments_with_the_blocks_that_hold_them() {
    let l = build_ledger();
    let text = ok(&["ledger", "show", s(&l.dir), "--round", "1"]);
    for line in [
        labelled("round", 1),
        labelled("status", "closed"),
        labelled("coordinator", format!("alice ({})", l.alice)),
        labelled("task", "mnist-2nn"),
        labelled("strategy", "fedavg"),
        labelled("opened", format!("{} ms, block 2 tx 0", T0 + 2_000)),
        labelled("deadline", format!("{} ms", T0 + 60_000)),
        labelled("participants", 3),
        labelled("updates", "3 of 3"),
        labelled("aggregate", format!("{}, block 3 tx 0", l.aggregate)),
        labelled("contributions", 1),
        labelled("privacy", "1 spend, ε total 0.5"),
    ] {
        assert!(has_line(&text, &line), "missing {line:?} in:\n{text}");
    }
    let line_with = |needle: &str| {
        text.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
    };
    // Each update: its full hash, examples, norm and where it is.
    for (i, (hash, examples)) in [(l.updates[0], 600), (l.updates[1], 500), (l.updates[2], 40)].iter().enumerate() {
        let line = line_with(&hash.to_string());
        let words: Vec<&str> = line.split_whitespace().collect();
        let norm = (1.5 + i as f64).to_string();
        let tx = (i + 1).to_string();
        let expected = [&hash.to_string(), &examples.to_string(), &norm, "block", "2", "tx", &tx];
        assert_eq!(words[words.len() - 7..], expected, "{line}");
    }
    assert!(line_with(&format!("device of bob ({})", short(&l.phone))).contains(&l.updates[2].to_string()));
    assert!(line_with("metrics").ends_with("accuracy=0.9375 loss=0.25"), "{text}");
    assert!(line_with("250000").ends_with("block 3 tx 1"), "{text}");
    assert!(line_with("0.00001").ends_with("block 3 tx 3"), "{text}");

    let open = ok(&["ledger", "show", s(&l.dir), "--round", "2"]);
    assert!(has_line(&open, &labelled("status", "open")), "{open}");
    assert!(has_line(&open, &labelled("updates", "0 of 2")), "{open}");
    assert!(has_line(&open, &labelled("aggregate", "none yet (the round is open)")), "{open}");
    assert!(has_line(&open, &labelled("privacy", "no spend recorded")), "{open}");
}

#[test]
fn show_node_describes_members_and_devices() {
    let l = build_ledger();
    let bob = ok(&["ledger", "show", s(&l.dir), "--node", &l.bob.to_string()]);
    for line in [
        labelled("node", l.bob),
        labelled("role", "member (founder, validator)"),
        labelled("name", "bob"),
        labelled("devices", format!("device of bob ({})", short(&l.phone))),
        labelled("nonce", "4 (next transaction signs 5)"),
        labelled("registered", "genesis (a founder)"),
        labelled("balance", 100),
        labelled("updates", "1 round"),
    ] {
        assert!(has_line(&bob, &line), "missing {line:?} in:\n{bob}");
    }
    let round1 = bob.lines().find(|line| line.contains(&l.updates[1].to_string())).unwrap();
    assert_eq!(
        round1.split_whitespace().collect::<Vec<_>>(),
        ["1", &l.updates[1].to_string(), "500", "2.5", "yes", "250000"]
    );

    // A device, by a unique prefix of its id.
    let phone = ok(&["ledger", "show", s(&l.dir), "--node", &l.phone.to_string()[..10]]);
    for line in [
        labelled("node", l.phone),
        labelled("role", "device"),
        labelled("owner", format!("bob ({})", l.bob)),
        labelled("registered", "block 1 tx 1"),
        labelled("balance", 0),
    ] {
        assert!(has_line(&phone, &line), "missing {line:?} in:\n{phone}");
    }

    let carol = ok(&["ledger", "show", s(&l.dir), "--node", &l.carol.to_string()]);
    assert!(has_line(&carol, &labelled("role", "member (founder)")), "{carol}");
    assert!(has_line(&carol, &labelled("updates", "0 rounds")), "{carol}");
    let alice = ok(&["ledger", "show", s(&l.dir), "--node", &l.alice.to_string()]);
    assert!(has_line(&alice, &labelled("coordinated", "rounds 1, 2")), "{alice}");
}

#[test]
fn show_of_something_the_ledger_lacks_is_a_clean_error() {
    let l = build_ledger();
    let d = s(&l.dir);
    assert_clean_error(
        &dainet(&["ledger", "show", d, "--block", "9"]),
        "no block at height 9: the ledger's blocks are 0 to 3",
    );
    assert_clean_error(&dainet(&["ledger", "show", d, "--round", "7"]), "no round 7: the ledger's rounds are 1, 2");
    let stranger = Keypair::generate(&mut ChaCha20Rng::seed_from_u64(99)).node_id().to_string();
    assert_clean_error(&dainet(&["ledger", "show", d, "--node", &stranger]), "no member or device");
    assert_clean_error(&dainet(&["ledger", "show", d, "--node", "xyz"]), "expected a node id");
    // Two selectors at once is a usage error (clap's exit 2).
    let out = dainet(&["ledger", "show", d, "--block", "1", "--round", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn commands_on_a_folder_that_is_not_a_ledger_say_what_a_ledger_folder_holds() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("report.json"), b"{}").unwrap();
    let d = s(tmp.path());
    for args in [vec!["ledger", "show", d], vec!["ledger", "verify", d], vec!["ledger", "export", d, "--json"]] {
        let out = dainet(&args);
        assert_clean_error(&out, "has no ledger.redb");
        assert!(stderr(&out).contains("a ledger folder holds ledger.redb"), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1, "a command created something in the folder");
    assert_clean_error(&dainet(&["ledger", "show", s(&tmp.path().join("missing"))]), "does not exist");
}

#[test]
fn show_checks_the_blobs_it_displays() {
    let l = build_ledger();
    // Untouched: every view says the aggregate is there and intact, and exits 0.
    let summary = ok(&["ledger", "show", s(&l.dir)]);
    assert!(has_line(&summary, &labelled("aggregates", "1 blob, present, bytes hash to their names")), "{summary}");
    let round = ok(&["ledger", "show", s(&l.dir), "--round", "1"]);
    assert!(round.contains("blob          present, bytes hash to its name"), "{round}");

    // A changed aggregate: each view that shows it marks it, and exits 1 saying why.
    let path = l.dir.join("blobs").join(l.aggregate.to_string());
    std::fs::write(&path, b"another model").unwrap();
    for args in [
        vec!["ledger", "show", s(&l.dir)],
        vec!["ledger", "show", s(&l.dir), "--round", "1"],
        vec!["ledger", "show", s(&l.dir), "--block", "3"],
    ] {
        let out = dainet(&args);
        let (text, err) = (stdout(&out), stderr(&out));
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}
stdout:
{text}
stderr: {err}"
        );
        assert!(text.contains(&format!("CHANGED: its bytes hash to {}", Digest::of(b"another model"))), "{text}");
        assert!(err.contains("1 blob shown above does not check out") && err.contains("ledger verify"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // A view that shows no blob is unaffected.
    ok(&["ledger", "show", s(&l.dir), "--block", "2"]);

    // A missing aggregate likewise.
    std::fs::remove_file(&path).unwrap();
    let out = dainet(&["ledger", "show", s(&l.dir), "--round", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("MISSING from"), "{}", stdout(&out));
}

// ---------------------------------------------------------------------------------------------
// verify

/// Runs `dainet ledger verify` expecting findings: exit 1, the count on stderr; returns stdout.
fn verify_fails(dir: &Path) -> String {
    verify_fails_with(dir, &[])
}

/// [`verify_fails`] with extra arguments.
fn verify_fails_with(dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["ledger", "verify", s(dir)];
    args.extend_from_slice(extra);
    let out = dainet(&args);
    let (text, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "stdout:\n{text}\nstderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let problems = text.lines().find_map(|l| l.strip_prefix("problems")).unwrap().trim().parse::<usize>().unwrap();
    assert!(problems >= 1, "{text}");
    let plural = if problems == 1 { "" } else { "s" };
    assert_eq!(err.trim(), format!("ledger verify: {problems} problem{plural}"));
    assert!(has_line(&text, "ledger FAILED verification"), "{text}");
    text
}

#[test]
fn verify_passes_an_untouched_ledger_and_says_what_it_checked() {
    let l = build_ledger();
    let out = dainet(&["ledger", "verify", s(&l.dir)]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    for line in [
        labelled("blocks", "4 checked (stored heights 0 to 3): hashes, links, times, tx roots"),
        labelled("transactions", "13 checked: signatures, nonces, rules"),
        labelled("blobs", "1 aggregates checked: present, bytes hash to their name"),
        labelled("updates", "3 commitments not checked: the trainers keep their updates (--updates DIR checks them)"),
        labelled("state", "replayed; state roots confirmed through block 3"),
        labelled("rounds", 2),
        format!("  round 1  aggregate {} (block 3 tx 0)", l.aggregate),
        "  round 2  no aggregate (open)".to_string(),
        format!("    update {} node {} (block 2 tx 3)", l.updates[2], short(&l.phone)),
        labelled("problems", 0),
        "ledger ok".to_string(),
    ] {
        assert!(has_line(&text, &line), "missing {line:?} in:\n{text}");
    }
}

#[test]
fn verify_finds_a_flipped_byte_in_a_block() {
    let l = build_ledger();
    // Block 2's encoding: version, height (1 byte), prev_hash (32), tx_root (32), state_root (32), …
    rewrite_block_bytes(&l.dir, 2, |bytes| bytes[1 + 1 + 32 + 32 + 5] ^= 0x01);
    let text = verify_fails(&l.dir);
    assert!(text.contains("state root mismatch: height=2"), "{text}");
    // The block's hash changed, so block 3 no longer links to it.
    assert!(text.lines().any(|l| l.starts_with("  ") && l.contains("height=3")), "{text}");
    // And `show` refuses to present a ledger that does not replay.
    let out = dainet(&["ledger", "show", s(&l.dir)]);
    assert_clean_error(&out, "ledger verify");
}

#[test]
fn verify_finds_a_removed_block() {
    let l = build_ledger();
    // Rebuild ledger.redb with every record but block 2.
    let store_path = l.dir.join("ledger.redb");
    let rebuilt = l.dir.join("rebuilt.redb");
    {
        let old = RedbStore::open(&store_path).unwrap();
        let mut new = RedbStore::open(&rebuilt).unwrap();
        new.put_genesis(&old.genesis().unwrap().unwrap()).unwrap();
        let tip = old.tip().unwrap().unwrap();
        for h in old.heights().unwrap().into_iter().filter(|&h| h != 2) {
            let hash = stored_block(&old, h).hash();
            new.put_block(h, &hash, &old.block(h).unwrap().unwrap()).unwrap();
        }
        assert_eq!(new.tip().unwrap(), Some(tip));
        assert_eq!(new.heights().unwrap(), vec![0, 1, 3]);
    }
    std::fs::rename(&rebuilt, &store_path).unwrap();
    let text = verify_fails(&l.dir);
    assert!(text.contains("missing block: height=2"), "{text}");
}

#[test]
fn verify_finds_a_changed_blob_file() {
    let l = build_ledger();
    let path = l.dir.join("blobs").join(l.aggregate.to_string());
    assert!(path.is_file(), "blobs are files named by their hex hash");
    std::fs::write(&path, b"global model aftER round 1").unwrap();
    let text = verify_fails(&l.dir);
    let finding = text.lines().find(|l| l.contains("blob mismatch")).unwrap_or_else(|| panic!("{text}"));
    assert!(finding.contains("height=3") && finding.contains(&l.aggregate.to_string()), "{finding}");
    assert!(finding.contains(&Digest::of(b"global model aftER round 1").to_string()), "{finding}");
}

#[test]
fn verify_checks_update_commitments_only_against_the_owners_stores() {
    let l = build_ledger();
    // An update the shared folder happens to hold is neither needed nor checked there.
    std::fs::remove_file(l.dir.join("blobs").join(l.updates[1].to_string())).unwrap();
    assert_eq!(dainet(&["ledger", "verify", s(&l.dir)]).status.code(), Some(0));
    // Against a store that holds none of them, every commitment is missing.
    let empty = tempfile::tempdir().unwrap();
    let text = verify_fails_with(&l.dir, &["--updates", s(empty.path())]);
    assert_eq!(text.matches("update not in the owners' stores").count(), 3, "{text}");
    // A store that is not one is a clear error, not a finding.
    let out = dainet(&["ledger", "verify", s(&l.dir), "--updates", s(&empty.path().join("absent"))]);
    assert_clean_error(&out, "cannot read");
}

#[test]
fn verify_finds_a_transaction_with_a_bad_signature() {
    let l = build_ledger();
    // Re-sign nothing: flip a bit of the reward's signature in block 3 and re-seal the block
    // (tx root and hash recomputed, tip moved to it), so the signature is the only thing wrong.
    {
        let mut ledger = LedgerDir::open(&l.dir).unwrap();
        let store = ledger.store_mut();
        let mut block = stored_block(store, 3);
        assert_eq!(block.txs[2].body.kind(), "reward");
        block.txs[2].signature.0[10] ^= 0x40;
        block.tx_root = block.compute_tx_root();
        store.put_block(3, &block.hash(), &block.encode()).unwrap();
    }
    let text = verify_fails(&l.dir);
    let finding = text.lines().find(|l| l.contains("bad signature")).unwrap_or_else(|| panic!("{text}"));
    assert!(finding.contains("height=3") && finding.contains("index=2"), "{finding}");
    assert!(finding.contains(&l.alice.to_string()), "names the signer: {finding}");
}

// ---------------------------------------------------------------------------------------------
// export

#[test]
fn export_is_deterministic_json_of_the_genesis_and_every_block() {
    let l = build_ledger();
    let first = ok(&["ledger", "export", s(&l.dir), "--json"]);
    let second = ok(&["ledger", "export", s(&l.dir), "--json"]);
    assert_eq!(first, second, "same ledger, same bytes");
    let out_file = l.dir.parent().unwrap().join("export.json");
    let out = dainet(&["ledger", "export", s(&l.dir), "--json", "--out", s(&out_file)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "", "with --out nothing goes to stdout");
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), first, "--out writes what stdout gets");

    let doc: serde_json::Value = serde_json::from_str(&first).unwrap();
    let (genesis, block3) = {
        let ledger = LedgerDir::open(&l.dir).unwrap();
        let g = Genesis::decode(&ledger.store().genesis().unwrap().unwrap()).unwrap();
        (g, stored_block(ledger.store(), 3))
    };
    assert_eq!(doc["genesis"]["hash"], genesis.hash().to_string());
    assert_eq!(doc["genesis"]["chain_id"], l.chain_id.0.to_string());
    assert_eq!(doc["genesis"]["founders"][2]["name"], "carol");
    assert_eq!(doc["genesis"]["founders"][2]["validator"], false);
    let blocks = doc["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 4);
    assert_eq!(doc["tip"]["height"], 3);
    assert_eq!(doc["tip"]["hash"], block3.hash().to_string());
    assert_eq!(blocks[3]["hash"], block3.hash().to_string());
    assert_eq!(blocks[3]["prev_hash"], blocks[2]["hash"]);
    let counts: Vec<usize> = blocks.iter().map(|b| b["txs"].as_array().unwrap().len()).collect();
    assert_eq!(counts, [0, 4, 4, 5]);

    let update = &blocks[2]["txs"][2];
    assert_eq!(update["kind"], "commit_update");
    assert_eq!(update["signer"], l.bob.to_string());
    assert_eq!(update["nonce"], 3);
    assert_eq!(update["hash"], tx_hash(&l.dir, 2, 2));
    assert_eq!(update["signature"].as_str().unwrap().len(), 128);
    assert_eq!(update["body"]["update_hash"], l.updates[1].to_string());
    assert_eq!(update["body"]["norm"], 2.5);
    assert_eq!(update["body"]["norm_bits"], 2.5f64.to_bits());
    let aggregate = &blocks[3]["txs"][0]["body"];
    assert_eq!(aggregate["metrics"][0]["name"], "accuracy");
    assert_eq!(aggregate["metrics"][0]["value"], 0.9375);
    assert_eq!(aggregate["metrics"][0]["value_bits"], 0.9375f64.to_bits());
    let privacy = &blocks[3]["txs"][3]["body"];
    assert_eq!(privacy["delta"], 1e-5);
    assert_eq!(privacy["epsilon_bits"], 0.5f64.to_bits());
}

fn tx_hash(dir: &Path, height: u64, index: usize) -> String {
    let ledger = LedgerDir::open(dir).unwrap();
    stored_block(ledger.store(), height).txs[index].hash().to_string()
}
