//! `dainet bench secagg`: what secure aggregation costs.
//!
//! 1. **A round** of `--round-clients` clients (all sampled; 100 by default) training the MLP
//!    784-200-200-10 (199,210 parameters) on the bundled MNIST for one epoch, aggregated in
//!    plaintext and with SecAgg+, two runs of `--rounds` rounds each, alternated; the median
//!    round wall time of each, and their ratio. The same for McMahan's CNN (1,663,370 parameters), whose training costs far more
//!    per parameter masked; `--cnn-rounds 0` skips it.
//! 2. **Scaling**: a bare SecAgg+ session (random inputs of `--dimension` values, no training)
//!    for each n in `--clients` with k ≈ log2 n neighbours (even, so k + 1 shares) and
//!    threshold k/2 + 1, unit weights. Clients run one after another on one thread, each
//!    timed, so the per-client cost is measured directly; the server's time is what remains.

use super::median;
use anyhow::{anyhow, Result};
use dainet_core::SplitMix64;
use dainet_engine::config::{ModelKind, Settings, SimulationConfig, TaskConfig};
use dainet_engine::{execute, plan, Start};
use dainet_privacy::secagg::{ParticipantId, SecAggClient, SecAggConfig, SecAggServer, ServerMessage, Time};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Arguments of `dainet bench secagg`.
#[derive(Debug, clap::Args)]
pub struct SecaggArgs {
    /// Clients in the training-round comparison (all take part every round).
    #[arg(long, value_parser = super::bounds::count(1, 100_000), default_value_t = 100)]
    pub round_clients: usize,
    /// Rounds per run in the comparison; each variant runs twice, alternated, and the median
    /// round is reported.
    #[arg(long, value_parser = super::bounds::count32(1, 1_000), default_value_t = 3)]
    pub rounds: u32,
    /// Rounds per run in the CNN comparison (0 skips it).
    #[arg(long, value_parser = super::bounds::count32(0, 1_000), default_value_t = 2)]
    pub cnn_rounds: u32,
    /// Session sizes of the scaling measurement.
    #[arg(long, value_parser = super::bounds::count(1, 1_000_000), value_delimiter = ',', default_value = "100,1000,10000")]
    pub clients: Vec<usize>,
    /// Input length of the scaling measurement.
    #[arg(long, value_parser = super::bounds::count(1, 1 << 26), default_value_t = 1000)]
    pub dimension: usize,
}

/// What one variant of the round comparison measured.
struct RoundTime {
    /// Round wall times, seconds.
    walls: Vec<f64>,
    /// Test accuracy after the last round.
    accuracy: f64,
    /// The model's parameters.
    params: usize,
}

/// A run of `rounds` rounds of `model` (one epoch, the default) with every client each round.
fn run_rounds(model: ModelKind, clients: usize, rounds: u32, secagg: bool) -> Result<RoundTime> {
    let settings = Settings {
        task: TaskConfig { model, fraction: 1.0, rounds, secagg, ..TaskConfig::default() },
        simulation: SimulationConfig { clients, ..SimulationConfig::default() },
        ..Settings::default()
    };
    let plan = plan(settings)?;
    let initial = plan.model.init(plan.settings.task.seed);
    let params = initial.len();
    let mut walls = Vec::new();
    let mut accuracy = 0.0;
    execute(&plan, Start::fresh(initial), |record, _| {
        walls.push(record.wall_s);
        accuracy = record.accuracy;
        Ok(())
    })?;
    Ok(RoundTime { walls, accuracy, params })
}

/// Two runs of each variant, alternated (plaintext, SecAgg+, plaintext, SecAgg+) so that a
/// change in the machine's load weighs on both alike; the median over both runs' rounds.
fn round_time(model: ModelKind, clients: usize, rounds: u32) -> Result<(RoundTime, RoundTime)> {
    let mut walls = [Vec::new(), Vec::new()];
    let mut last = [None, None];
    for _ in 0..2 {
        for (variant, secagg) in [false, true].into_iter().enumerate() {
            let run = run_rounds(model, clients, rounds, secagg)?;
            walls[variant].extend(run.walls.iter().copied());
            last[variant] = Some(run);
        }
    }
    let [plain, secure] = last.map(|run| run.expect("two runs of each variant"));
    let [plain_walls, secure_walls] = walls;
    Ok((RoundTime { walls: plain_walls, ..plain }, RoundTime { walls: secure_walls, ..secure }))
}

/// The plaintext and SecAgg+ rounds of `model`, as JSON fields named with `prefix`.
fn compare(model: ModelKind, clients: usize, rounds: u32, prefix: &str) -> Result<Vec<(String, serde_json::Value)>> {
    let (plain, secure) = round_time(model, clients, rounds)?;
    let (plain_s, secure_s) = (median(plain.walls), median(secure.walls));
    eprintln!("{prefix}round: plaintext {:.3} s, SecAgg+ {:.3} s ({:.2}x)", plain_s, secure_s, secure_s / plain_s);
    Ok(vec![
        (format!("{prefix}params"), plain.params.into()),
        (format!("{prefix}plaintext_round_s"), plain_s.into()),
        (format!("{prefix}secagg_round_s"), secure_s.into()),
        (format!("{prefix}secagg_over_plaintext"), (secure_s / plain_s).into()),
        (format!("{prefix}plaintext_accuracy_after"), plain.accuracy.into()),
        (format!("{prefix}secagg_accuracy_after"), secure.accuracy.into()),
    ])
}

/// Client time (summed over clients) and server time of one bare session.
fn session(n: usize, d: usize) -> Result<(Duration, Duration, usize)> {
    let k = {
        let k = (n as f64).log2().round() as u32;
        k + k % 2
    };
    let shares = (k + 1).min(n as u32);
    let mut config = SecAggConfig::new(shares, shares / 2 + 1, d);
    // Unit weights: n · max_weight · (q − 1) < 2^32 must hold up to n = 10,000.
    config.max_weight = 1;
    let ids: Vec<ParticipantId> = (0..n as u32).map(ParticipantId).collect();
    let mut client_time = Duration::ZERO;
    let mut g = SplitMix64::new(3);
    let mut clients = BTreeMap::new();
    for &id in &ids {
        let input: Vec<f32> = (0..d).map(|_| g.next_f64() as f32 - 0.5).collect();
        let mut seed = [0u8; 32];
        seed[..4].copy_from_slice(&id.0.to_le_bytes());
        let t = Instant::now();
        let client = SecAggClient::new(config.clone(), id, 1, &input, 1, seed).map_err(|e| anyhow!("{e}"))?;
        client_time += t.elapsed();
        clients.insert(id, client);
    }
    let started = Instant::now();
    let mut server = SecAggServer::new(config, ids, 1, [9; 32]).map_err(|e| anyhow!("{e}"))?;
    let now = Time(0);
    server.handle_start(now);
    let result = loop {
        let mut outbox: Vec<(ParticipantId, ServerMessage)> = Vec::new();
        while let Some(m) = server.poll_message() {
            outbox.push(m);
        }
        if outbox.is_empty() {
            match server.poll_result() {
                Some(r) => break r.map_err(|e| anyhow!("{e}"))?,
                None => return Err(anyhow!("the session stalled")),
            }
        }
        for (to, msg) in outbox {
            let client = clients.get_mut(&to).ok_or_else(|| anyhow!("message for unknown {to}"))?;
            let t = Instant::now();
            let reply = client.handle_message(now, msg).map_err(|e| anyhow!("{e}"))?;
            client_time += t.elapsed();
            if let Some(reply) = reply {
                server.handle_message(now, to, reply).map_err(|e| anyhow!("{e}"))?;
            }
        }
    };
    if result.contributors().len() != n {
        return Err(anyhow!("{} of {n} clients contributed", result.contributors().len()));
    }
    let server_time = started.elapsed().saturating_sub(client_time);
    Ok((client_time, server_time, k as usize))
}

/// Runs the benchmark and prints its JSON line.
pub fn secagg(args: SecaggArgs) -> Result<()> {
    let mut line = serde_json::Map::new();
    line.insert("benchmark".into(), "secagg".into());
    line.insert("round_clients".into(), args.round_clients.into());
    line.extend(compare(ModelKind::Mlp, args.round_clients, args.rounds, "")?);
    if args.cnn_rounds > 0 {
        line.extend(compare(ModelKind::Cnn, args.round_clients, args.cnn_rounds, "cnn_")?);
    }
    let mut scaling = Vec::new();
    for &n in &args.clients {
        let (client, server, k) = session(n, args.dimension)?;
        eprintln!(
            "n = {n}: k = {k}, client {:.3} ms each, server {:.3} s",
            client.as_secs_f64() * 1e3 / n as f64,
            server.as_secs_f64()
        );
        scaling.push(serde_json::json!({
            "clients": n,
            "neighbours_k": k,
            "dimension": args.dimension,
            "client_ms_mean": client.as_secs_f64() * 1e3 / n as f64,
            "server_s": server.as_secs_f64(),
        }));
    }
    let growth = match (scaling.first(), scaling.last()) {
        (Some(a), Some(b)) => b["client_ms_mean"].as_f64().zip(a["client_ms_mean"].as_f64()).map(|(b, a)| b / a),
        _ => None,
    };
    line.insert("scaling".into(), scaling.into());
    line.insert("client_cost_growth_first_to_last".into(), growth.into());
    line.insert("threads".into(), rayon::current_num_threads().into());
    line.insert("loadavg".into(), super::loadavg().into());
    println!("{}", serde_json::Value::Object(line));
    Ok(())
}
