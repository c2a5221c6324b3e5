//! A validator that was down while the others finalized 10,000 blocks comes back and catches up
//! by ranges, as a process among processes on loopback, without slowing the others.

mod common;

use common::validators::{block_hash_at, serial, setup, wait_until, Watched};
use common::{dainet, s, stderr};

use dainet_ledger::folder::LedgerDir;
use dainet_ledger::store::BlockStore;
use std::time::{Duration, Instant};

/// How far behind the restarted validator is, at least.
const GAP: u64 = 10_000;

// Not yet passing end to end (issue 12 stays open). Measured: under a build load of 9-12 the
// others' pace during a catch-up was 0.41 of before, below the bound; on a quieter machine
// (load ~2) 49 -> 34 blocks/s (0.69) with 10,014 blocks caught up in 36.7 s, but that run
// stopped before the second, shorter job had caught up on the blocks finalized meanwhile (now
// waited for; not yet re-run). Run it with
// `cargo test --release --test ledger_catch_up -- --ignored --nocapture`.
#[test]
#[ignore = "issue 12 acceptance test, not yet passing reliably: run with --ignored"]
fn a_validator_ten_thousand_blocks_behind_catches_up_and_the_others_keep_their_pace() {
    let _serial = serial();
    let net = setup(4);
    // Load keeps every proposal non-empty, so blocks come as fast as consensus allows (an idle
    // ledger adds one block per 500 ms).
    let load = ["--load", "200", "--status-every", "0.5", "--drain", "1"];
    let mut nodes: Vec<Option<Watched>> = (0..4).map(|i| Some(Watched::spawn(net.node(i, &load)))).collect();
    let height = |nodes: &[Option<Watched>], i: usize| nodes[i].as_ref().map_or(0, Watched::height);
    assert!(
        wait_until(Duration::from_secs(120), || (0..4).all(|i| height(&nodes, i) >= 20)),
        "four validators did not reach height 20 in 120 s: {:?}",
        (0..4).map(|i| height(&nodes, i)).collect::<Vec<_>>()
    );

    // Crash validator 3: the other three are exactly a quorum and go on.
    let crashed = nodes[3].take().unwrap().stop(libc::SIGKILL, Duration::from_secs(20));
    assert!(!crashed.status.success(), "SIGKILL ends it");
    // Its height as persisted (opening for writing repairs what the crash left, as the node would).
    let behind_from = LedgerDir::open(net.dir(3)).unwrap().store().tip().unwrap().expect("a tip").height;
    let others = [0, 1, 2];
    let lowest = |nodes: &[Option<Watched>]| others.iter().map(|&i| height(nodes, i)).min().unwrap();
    let limit = Duration::from_secs(900);
    assert!(
        wait_until(limit, || lowest(&nodes) >= behind_from + GAP),
        "the three did not get {GAP} blocks ahead of height {behind_from} in {limit:?}: at {}",
        lowest(&nodes)
    );

    // Their pace before the restart, over the last 10 s.
    let restart = Instant::now();
    let before: Vec<f64> = others
        .iter()
        .map(|&i| nodes[i].as_ref().unwrap().rate(restart - Duration::from_secs(10), restart).unwrap())
        .collect();
    let tip_at_restart = lowest(&nodes);

    // Restart it from its folder, without load (its own old transactions are in the chain it
    // has not seen yet). It must reach the others' tip.
    nodes[3] = Some(Watched::spawn(net.node(3, &["--status-every", "0.5"])));
    assert!(
        wait_until(Duration::from_secs(600), || height(&nodes, 3) >= tip_at_restart),
        "validator 3 did not catch up from {behind_from} to {tip_at_restart} in 600 s: at {}",
        height(&nodes, 3)
    );
    let caught_up = Instant::now();
    let catch_up_s = caught_up.duration_since(restart).as_secs_f64();
    // The others' pace while it caught up (a window of at least 3 s, so that a quick catch-up
    // is not judged on one status line).
    let window_end = caught_up.max(restart + Duration::from_secs(3));
    assert!(wait_until(Duration::from_secs(30), || Instant::now() > window_end + Duration::from_millis(600)));
    let during: Vec<f64> =
        others.iter().map(|&i| nodes[i].as_ref().unwrap().rate(restart, window_end).unwrap()).collect();
    eprintln!(
        "caught up {} blocks in {catch_up_s:.1} s; the others' blocks/s before {before:.0?}, during {during:.0?}",
        tip_at_restart - behind_from
    );
    for (k, &i) in others.iter().enumerate() {
        assert!(
            during[k] >= before[k] / 2.0,
            "validator {i} slowed from {:.0} to {:.0} blocks/s while validator 3 caught up",
            before[k],
            during[k]
        );
    }
    // Meanwhile the others went on: it catches up on those blocks too (a second, shorter job),
    // until it is within a few blocks of their tip.
    assert!(
        wait_until(Duration::from_secs(300), || height(&nodes, 3) + 20 >= lowest(&nodes)),
        "validator 3 did not reach the others' tip: at {}, they at {}",
        height(&nodes, 3),
        lowest(&nodes)
    );
    // It caught up by ranges, and said so while it did.
    let statuses = nodes[3].as_ref().unwrap().statuses();
    let most_behind = statuses.iter().filter_map(|(_, st)| st["sync"]["behind"].as_u64()).max().unwrap_or(0);
    assert!(most_behind >= GAP, "its status never reported being {GAP} behind: {most_behind}");

    // Stop all; every folder verifies and they share one chain.
    let stopped: Vec<_> = nodes.into_iter().map(|n| n.unwrap().stop(libc::SIGTERM, Duration::from_secs(60))).collect();
    let reports: Vec<_> = stopped.iter().map(|st| st.report()).collect();
    let restarted = &reports[3];
    assert!(restarted["synced_blocks"].as_u64().unwrap() >= GAP, "{restarted}");
    assert_eq!(restarted["finality_errors"].as_u64(), Some(0), "{restarted}");
    let served: u64 = reports[..3].iter().map(|r| r["ranges_served"].as_u64().unwrap()).sum();
    assert!(served >= 2, "the others served the ranges: {served}");
    let heights: Vec<u64> = reports.iter().map(|r| r["height"].as_u64().unwrap()).collect();
    let common = *heights.iter().min().unwrap();
    assert!(heights[3] + 100 >= *heights.iter().max().unwrap(), "validator 3 fell behind again: {heights:?}");
    let first = block_hash_at(&net.dir(0), common);
    for i in 0..4 {
        assert_eq!(block_hash_at(&net.dir(i), common), first, "validator {i} differs at height {common}");
        let out = dainet(&["ledger", "verify", s(&net.dir(i))]);
        assert!(out.status.success(), "verify validator {i}: {}", stderr(&out));
    }
}
