//! `dainet ledger genesis`, `dainet ledger node` and `dainet bench ledger` as processes: four
//! validators on loopback agree and leave ledger folders that `dainet ledger verify` accepts; a
//! node stops cleanly on SIGTERM and refuses a garbled folder; bad input is one `error:` line.

mod common;

use common::validators::{block_hash_at, finish, ok, report, serial, setup};
use common::{assert_clean_error, dainet, s, stderr};

use dainet_ledger::block::Block;
use dainet_ledger::folder::LedgerDir;
use dainet_ledger::store::BlockStore;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

#[test]
fn four_validator_processes_agree_and_every_ledger_folder_verifies() {
    let _serial = serial();
    let net = setup(4);
    let children: Vec<Child> =
        // Long enough that a slow start (connecting 4 processes on a busy 2-core machine took
        // 4.2 s once) still leaves seconds of load.
        (0..4).map(|i| net.node(i, &["--load", "50", "--duration", "10", "--drain", "1.5"]).spawn().unwrap()).collect();
    let outputs: Vec<Output> = children.into_iter().map(|c| finish(c, Duration::from_secs(60))).collect();
    let reports: Vec<Value> = outputs.iter().map(report).collect();

    let mut heights = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(r["node"].as_str().unwrap(), net.ids[i]);
        let height = r["height"].as_u64().unwrap();
        assert!(height >= 20, "node {i} finalized too little: {r}");
        assert_eq!(r["blocks_finalized"].as_u64(), Some(height), "a new ledger starts at 0: {r}");
        assert_eq!(r["finality_errors"].as_u64(), Some(0), "{r}");
        let load = &r["load"];
        assert!(load["committed"].as_u64().unwrap() > 50, "node {i}: {load}");
        assert_eq!(load["committed"], load["submitted"], "node {i}: every submission finalized: {load}");
        assert_eq!(load["rejected"].as_u64(), Some(0), "node {i}: {load}");
        assert_eq!(load["pending"].as_u64(), Some(0), "the drain let everything finalize: {load}");
        let p50 = load["latency_ms"]["p50"].as_f64().unwrap();
        assert!(p50 > 0.0 && p50 <= load["latency_ms"]["max"].as_f64().unwrap(), "{load}");
        // The tip reported is the tip persisted.
        assert_eq!(block_hash_at(&net.dir(i), height), r["tip"].as_str().unwrap());
        heights.push(height);
    }
    let common = *heights.iter().min().unwrap();
    let first = block_hash_at(&net.dir(0), common);
    for i in 1..4 {
        assert_eq!(block_hash_at(&net.dir(i), common), first, "node {i} differs at height {common}");
    }
    for i in 0..4 {
        let out = dainet(&["ledger", "verify", s(&net.dir(i))]);
        assert!(out.status.success(), "verify node {i}: {}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    }
}

#[test]
fn a_node_stops_cleanly_on_sigterm_and_refuses_its_folder_once_garbled() {
    let net = setup(1);
    let mut child = net.node(0, &["--load", "20"]).spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let dir = net.dir(0);
    // Wait until it has finalized a block holding one of its own transactions (it logs that),
    // then ask it to stop. Its stderr is read as it comes and kept for the checks below.
    let (lines, logged) = std::sync::mpsc::channel::<String>();
    let stderr_pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr_pipe)).map_while(Result::ok) {
            let _ = lines.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match logged.recv_timeout(left) {
            Ok(line) if line.contains("load: first transaction finalized") => break,
            Ok(_) => {}
            Err(e) => panic!("the node never finalized a transaction of its own within 60 s: {e}"),
        }
    }
    // SAFETY: kill sends a signal to the child this test started; no memory is touched.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let mut out = finish(child, Duration::from_secs(20));
    out.stderr = reader.join().unwrap().into_bytes();
    let r = report(&out);
    let height = r["height"].as_u64().unwrap();
    assert!(height >= 3, "a lone validator finalizes by itself: {r}");
    assert!(stderr(&out).contains("SIGTERM"), "{}", stderr(&out));
    assert!(dainet(&["ledger", "verify", s(&dir)]).status.success());

    // Its vote journal gone: it refuses to start (started over, it could equivocate, and a lone
    // validator restarted this way was measured to finalize nothing), and starts again once
    // the journal is back. Likewise a missing ledger under a journal.
    let (journal, aside) = (dir.join("consensus"), dir.with_extension("consensus-aside"));
    std::fs::rename(&journal, &aside).unwrap();
    let out = finish(net.node(0, &["--duration", "5"]).spawn().unwrap(), Duration::from_secs(20));
    assert_clean_error(&out, &format!("holds a ledger at height {height} but no consensus journal"));
    std::fs::rename(&aside, &journal).unwrap();
    let (ledger, aside) = (dir.join("ledger.redb"), dir.with_extension("ledger-aside"));
    std::fs::rename(&ledger, &aside).unwrap();
    let out = finish(net.node(0, &["--duration", "5"]).spawn().unwrap(), Duration::from_secs(20));
    assert_clean_error(&out, "holds a consensus journal but no ledger");
    std::fs::rename(&aside, &ledger).unwrap();
    assert!(dainet(&["ledger", "verify", s(&dir)]).status.success());

    // Truncate block 2 (keeping the tip): the node refuses to start and names the height.
    {
        let mut ledger = LedgerDir::open(&dir).unwrap();
        let bytes = ledger.store().block(2).unwrap().unwrap();
        let hash = Block::decode(&bytes).unwrap().hash();
        let tip = ledger.store().tip().unwrap().unwrap();
        let tip_bytes = ledger.store().block(tip.height).unwrap().unwrap();
        let store = ledger.store_mut();
        store.put_block(2, &hash, &bytes[..bytes.len() - 5]).unwrap();
        store.put_block(tip.height, &tip.hash, &tip_bytes).unwrap();
    }
    let out = finish(net.node(0, &["--duration", "5"]).spawn().unwrap(), Duration::from_secs(20));
    assert_clean_error(&out, "height=2");
    assert!(stderr(&out).contains("refuses to serve a bad chain"), "{}", stderr(&out));
}

#[test]
fn bad_input_to_node_and_genesis_is_one_error_line_and_exit_2() {
    let net = setup(2);
    let key = s(&net.keys[0]);
    let genesis = s(&net.genesis);
    let dir = net.tmp.path().join("dir");
    let dir = s(&dir);
    let listen = net.addrs[0].as_str();
    let node = |args: &[&str]| {
        let mut all = vec!["ledger", "node"];
        all.extend_from_slice(args);
        dainet(&all)
    };

    let out = node(&["--key", "/nonexistent/k", "--genesis", genesis, "--dir", dir, "--listen", listen]);
    assert_clean_error(&out, "cannot read the node key");
    let out = node(&["--key", key, "--genesis", key, "--dir", dir, "--listen", listen]);
    assert_clean_error(&out, "not a genesis file");
    let stranger = net.tmp.path().join("stranger.key");
    ok(&["keygen", "--out", s(&stranger)]);
    let out = node(&["--key", s(&stranger), "--genesis", genesis, "--dir", dir, "--listen", listen]);
    assert_clean_error(&out, "not a validator of the genesis");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&stranger, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = node(&["--key", s(&stranger), "--genesis", genesis, "--dir", dir, "--listen", listen]);
        assert_clean_error(&out, "is readable by group or others (mode 644)");
    }
    let out =
        node(&["--key", key, "--genesis", genesis, "--dir", dir, "--listen", listen, "--peer", "abc@127.0.0.1:1"]);
    assert_clean_error(&out, "bad peer");
    let out = node(&["--key", key, "--genesis", genesis, "--dir", dir, "--listen", "localhost"]);
    assert_clean_error(&out, "bad --listen");
    assert!(!Path::new(dir).exists(), "a refused node created its folder");

    let out =
        dainet(&["ledger", "genesis", "--chain", "x", "--validator", "zz", "--out", s(&net.tmp.path().join("g"))]);
    assert_clean_error(&out, "bad --validator");
    let out = dainet(&["ledger", "genesis", "--chain", "x", "--validator", &net.ids[0], "--out", genesis]);
    assert_clean_error(&out, "never overwritten");
}

#[test]
fn bench_ledger_prints_one_json_line_from_agreeing_validator_processes() {
    let _serial = serial();
    let out = dainet(&["bench", "ledger", "--rate", "200", "--duration", "9", "--drain", "1.5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let line: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(line["validators"].as_u64(), Some(4), "{line}");
    assert_eq!(line["processes"].as_bool(), Some(true), "{line}");
    assert_eq!(line["same_chain"].as_bool(), Some(true), "{line}");
    assert!(line["common_height"].as_u64().unwrap() >= 8, "{line}");
    let tx_per_s = line["tx_per_s"].as_f64().unwrap();
    assert!(tx_per_s > 100.0 && tx_per_s <= 210.0, "offered 200 tx/s: {line}");
    let latency = &line["latency_ms"];
    assert!(latency["p50"].as_u64().unwrap() > 0, "{line}");
    assert!(latency["p50"].as_u64() <= latency["p99"].as_u64(), "{line}");
    assert!(line["threads"].as_u64().unwrap() >= 1, "{line}");
}
