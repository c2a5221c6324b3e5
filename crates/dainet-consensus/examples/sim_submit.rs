//! Wall time of `SimulatedLedger::submit`: 50 calls of 12 transactions each, 4 validators over
//! 20±5 ms links that drop 1% of messages; once with all validators up and once with one down.
//! Prints one JSON line per case, with the blocks finalized per call (every block costs votes,
//! certificates and a state root, so fewer is cheaper).
//!
//! ```sh
//! cargo run --release -p dainet-consensus --example sim_submit
//! ```

// Measuring wall time is the point of this program.
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use dainet_consensus::sim::{SimulatedLedger, SimulatedLedgerConfig};

// The integration tests' genesis and transaction fixtures, the same ones.
#[path = "../tests/common/mod.rs"]
mod common;

const CALLS: u64 = 50;
const TXS: u64 = 12;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for down in [vec![], vec![3]] {
        let (genesis, keys, user) = common::genesis(4);
        let config = SimulatedLedgerConfig {
            seed: 1,
            latency_ms: 20,
            jitter_ms: 5,
            success_rate: 0.99,
            down: down.clone(),
            ..Default::default()
        };
        let live: Vec<usize> = (0..4).filter(|v| !down.contains(v)).collect();
        let mut ledger = SimulatedLedger::start(genesis.clone(), keys, config)?;
        let start_ms = ledger.now_ms()?;
        let start_height = ledger.statuses()?[live[0]].height();
        let mut walls = Vec::new();
        for call in 0..CALLS {
            let txs = common::rewards(&user, &genesis, 1 + call * TXS, TXS);
            let started = Instant::now();
            let out = ledger.submit(live[call as usize % live.len()], txs)?;
            walls.push(started.elapsed().as_secs_f64() * 1e3);
            assert!(out.iter().all(|c| c.height().is_some()), "not committed: {out:?}");
        }
        let virtual_ms = ledger.now_ms()? - start_ms;
        let finished = ledger.finish()?;
        walls.sort_by(f64::total_cmp);
        let mean = walls.iter().sum::<f64>() / walls.len() as f64;
        println!(
            "{{\"bench\":\"sim_submit\",\"validators\":4,\"down\":{},\"calls\":{CALLS},\"txs_per_call\":{TXS},\
             \"wall_ms_mean\":{mean:.2},\"wall_ms_p50\":{:.2},\"wall_ms_max\":{:.2},\"virtual_ms_per_call\":{:.0},\
             \"height\":{},\"blocks_per_call\":{:.2},\"agree\":{}}}",
            down.len(),
            walls[walls.len() / 2],
            walls[walls.len() - 1],
            virtual_ms as f64 / CALLS as f64,
            finished.chain.head().height,
            (finished.statuses[live[0]].height() - start_height) as f64 / CALLS as f64,
            finished.agree
        );
    }
    Ok(())
}
