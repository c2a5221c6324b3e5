//! `dainet ledger show | verify | export | node | genesis`: read a ledger folder
//! (`DIR/ledger.redb` and `DIR/blobs/`, see [`dainet_ledger::folder`]), or run a validator that
//! writes one (`node` and `genesis` live in [`crate::node`]).
//!
//! `show` replays the chain (so it shows only a ledger that checks out) and prints aligned text;
//! `verify` audits the bytes and lists every problem (exit 1 if any); `export` dumps the genesis
//! and the stored blocks as JSON without judging them. These three only read: nothing here writes
//! a block or a blob.

use anyhow::{bail, Context, Result};
use dainet_engine::record::kept_commitments;
use dainet_ledger::blob::{BlobStore, DirBlobs};
use dainet_ledger::block::Block;
use dainet_ledger::chain::Chain;
use dainet_ledger::export::ExportError;
use dainet_ledger::folder::{is_unfinished, LedgerDir, UNFINISHED_FILE};
use dainet_ledger::hash::Digest;
use dainet_ledger::identity::NodeId;
use dainet_ledger::state::State;
use dainet_ledger::store::{BlockStore, RedbStore};
use dainet_ledger::tx::{EvidenceProof, Metric, Transaction, TxBody};
use dainet_ledger::verify::verify_with_updates;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Hex characters of an id or hash shown where the full 64 would not fit.
const SHORT: usize = 16;
/// Width of the label column in `show` and `verify`.
const LABEL: usize = 14;

/// The `dainet ledger` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum LedgerCommand {
    /// Print a ledger's summary, or one block, round or node.
    Show(ShowArgs),
    /// Check every hash, link, signature, state root and referenced blob; exit 1 on any problem.
    Verify(VerifyArgs),
    /// Write the genesis and every stored block, transactions decoded, as one JSON document.
    Export(ExportArgs),
    /// Run a validator on the network: consensus, authenticated p2p, its ledger folder.
    Node(crate::node::NodeArgs),
    /// Write a genesis file: the chain's name, its validators and other founding members.
    Genesis(crate::node::GenesisArgs),
}

/// Arguments of `dainet ledger show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The ledger folder (holds ledger.redb and blobs/).
    pub dir: PathBuf,
    /// Show the block at this height: header and one line per transaction.
    #[arg(long, value_name = "N", conflicts_with_all = ["round", "node"])]
    pub block: Option<u64>,
    /// Show this training round: plan, updates, aggregate, contributions, privacy, and the blocks
    /// that hold them.
    #[arg(long, value_name = "R", conflicts_with = "node")]
    pub round: Option<u64>,
    /// Show this member or device (its 64-hex node id, or a unique prefix of it).
    #[arg(long, value_name = "ID")]
    pub node: Option<String>,
}

/// Arguments of `dainet ledger verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The ledger folder (holds ledger.redb and blobs/).
    pub dir: PathBuf,
    /// Also check every update commitment against the trainers' own stores under this folder
    /// (searched recursively: `*.safetensors` updates and `*.masked` masked inputs, as
    /// `simulate --keep-updates` writes them to OUT/clients). Without it, update commitments
    /// are counted but not checked: the shared ledger folder never holds a trainer's update.
    #[arg(long, value_name = "DIR")]
    pub updates: Option<PathBuf>,
}

/// Arguments of `dainet ledger export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The ledger folder (holds ledger.redb and blobs/).
    pub dir: PathBuf,
    /// Write JSON (the one format so far; required so a later format is a choice, not a change).
    #[arg(long, required = true)]
    pub json: bool,
    /// The file to write (replaced if it exists) [default: stdout].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs a `dainet ledger` subcommand. `Ok` carries the exit code: `verify` exits 1 when it finds
/// problems; bad input is an `Err` (exit 2).
pub fn ledger(command: LedgerCommand) -> Result<ExitCode> {
    match command {
        LedgerCommand::Show(args) => show(args),
        LedgerCommand::Verify(args) => verify(args),
        LedgerCommand::Export(args) => export(args).map(|()| ExitCode::SUCCESS),
        LedgerCommand::Node(args) => crate::node::node(args).map(|()| ExitCode::SUCCESS),
        LedgerCommand::Genesis(args) => crate::node::genesis(args).map(|()| ExitCode::SUCCESS),
    }
}

// ---------------------------------------------------------------------------------------------
// show

fn show(args: ShowArgs) -> Result<ExitCode> {
    let (store, blobs) = LedgerDir::open_read_only(&args.dir)?.into_parts();
    let chain = Chain::open(store).with_context(|| {
        format!(
            "{}: the ledger does not replay; `dainet ledger verify {}` lists every problem",
            args.dir.display(),
            args.dir.display()
        )
    })?;
    let mut check = BlobCheck { blobs: &blobs, faults: 0 };
    let text = if let Some(height) = args.block {
        show_block(&chain, height, &mut check)?
    } else if let Some(round) = args.round {
        show_round(&chain, round, &mut check)?
    } else if let Some(node) = &args.node {
        show_node(&chain, node)?
    } else {
        show_summary(&chain, &args.dir, &mut check)?
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    if check.faults > 0 {
        eprintln!(
            "error: {} shown above {} not check out; `dainet ledger verify {}` lists every problem",
            count(check.faults, "blob"),
            if check.faults == 1 { "does" } else { "do" },
            args.dir.display()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks the blobs `show` displays, and counts those that are missing or changed: what is
/// shown must check out, or the exit status says it does not.
struct BlobCheck<'a> {
    blobs: &'a DirBlobs,
    faults: usize,
}

impl BlobCheck<'_> {
    /// What is wrong with the blob `hash` names, if anything (then it is counted).
    fn problem(&mut self, hash: &Digest) -> Option<String> {
        let problem = match self.blobs.get(hash) {
            Ok(Some(bytes)) if Digest::of(&bytes) == *hash => return None,
            Ok(Some(bytes)) => format!("CHANGED: its bytes hash to {}", Digest::of(&bytes)),
            Ok(None) => format!("MISSING from {}", self.blobs.dir().display()),
            Err(e) => format!("UNREADABLE: {e}"),
        };
        self.faults += 1;
        Some(problem)
    }

    /// The blob's status as `show` prints it.
    fn status(&mut self, hash: &Digest) -> String {
        self.problem(hash).unwrap_or_else(|| "present, bytes hash to its name".to_string())
    }
}

/// Where a transaction sits: block height and index in the block.
#[derive(Clone, Copy, Debug)]
struct At {
    height: u64,
    index: usize,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "block {} tx {}", self.height, self.index)
    }
}

/// Every block of a replayed chain, in height order, with each transaction's position.
fn each_tx(chain: &Chain<RedbStore>, mut visit: impl FnMut(At, &Transaction)) -> Result<()> {
    for height in 0..=chain.head().height {
        let block = stored_block(chain, height)?;
        for (index, tx) in block.txs.iter().enumerate() {
            visit(At { height, index }, tx);
        }
    }
    Ok(())
}

fn stored_block(chain: &Chain<RedbStore>, height: u64) -> Result<Block> {
    chain.block(height)?.with_context(|| format!("block {height} is missing from the store"))
}

fn show_summary(chain: &Chain<RedbStore>, dir: &Path, check: &mut BlobCheck<'_>) -> Result<String> {
    let state = chain.state();
    let head = chain.head();
    let mut txs = 0u64;
    each_tx(chain, |_, _| txs += 1)?;
    let devices = devices(chain)?;
    let open = state.rounds().values().filter(|r| r.is_open()).count();
    let closed = state.rounds().len() - open;
    let genesis = chain.genesis();

    let mut out = String::new();
    line(&mut out, "ledger", dir.display());
    if is_unfinished(dir) {
        line(
            &mut out,
            "status",
            "UNFINISHED: the run writing it stopped before its end; its last rounds may be missing",
        );
    }
    line(&mut out, "chain id", genesis.chain_id().0);
    line(&mut out, "genesis", format!("{} (time {} ms)", genesis.hash(), genesis.timestamp_ms));
    line(&mut out, "height", head.height);
    line(&mut out, "tip", head.hash);
    line(&mut out, "time", format!("{} ms", head.timestamp_ms));
    line(&mut out, "transactions", txs);
    line(&mut out, "members", state.members().len());
    let mut rows = vec![row(["name", "id", "validator", "founder"])];
    for (id, m) in state.members() {
        rows.push(vec![clean(&m.name), id.to_string(), yes_no(m.validator), yes_no(m.founder)]);
    }
    table(&mut out, &rows);
    line(&mut out, "devices", devices.len());
    line(&mut out, "rounds", format!("{} ({open} open, {closed} closed)", state.rounds().len()));
    let policy = match state.policy() {
        Some(hash) => format!("{hash} ({} deployed)", state.policies().len()),
        None => "none".to_string(),
    };
    line(&mut out, "policy", policy);
    line(&mut out, "data uses", state.data_use_count());
    line(&mut out, "evidence", state.evidence().len());
    let majority = format!("{} of {} members", state.approvals_needed(), state.members().len());
    line(&mut out, "proposals", format!("{} pending (a change takes effect with {majority})", state.proposals().len()));
    // The summary stands for the whole ledger: every aggregate it references is checked.
    let mut aggregates = 0;
    let mut bad = Vec::new();
    for (number, round) in state.rounds() {
        let Some(aggregate) = &round.aggregate else { continue };
        aggregates += 1;
        if let Some(problem) = check.problem(&aggregate.aggregate_hash) {
            bad.push(format!("round {number}, {}: {problem}", aggregate.aggregate_hash));
        }
    }
    if bad.is_empty() {
        line(&mut out, "aggregates", format!("{}, present, bytes hash to their names", count(aggregates, "blob")));
    } else {
        line(&mut out, "aggregates", format!("{}, {} NOT checking out:", count(aggregates, "blob"), bad.len()));
        for problem in bad {
            sub(&mut out, "", problem);
        }
    }
    Ok(out)
}

fn show_block(chain: &Chain<RedbStore>, height: u64, check: &mut BlobCheck<'_>) -> Result<String> {
    let tip = chain.head().height;
    if height > tip {
        bail!("no block at height {height}: the ledger's blocks are 0 to {tip}");
    }
    let block = stored_block(chain, height)?;
    let names = Names { state: chain.state() };
    let mut out = String::new();
    line(&mut out, "block", block.height);
    line(&mut out, "hash", block.hash());
    line(&mut out, "prev", block.prev_hash);
    line(&mut out, "tx root", block.tx_root);
    line(&mut out, "state root", block.state_root);
    line(&mut out, "time", format!("{} ms", block.timestamp_ms));
    line(&mut out, "transactions", block.txs.len());
    if !block.txs.is_empty() {
        let mut rows = vec![row(["#", "kind", "signer", "nonce", "fields"])];
        for (index, tx) in block.txs.iter().enumerate() {
            rows.push(vec![
                index.to_string(),
                tx.body.kind().to_string(),
                names.short(&tx.signer),
                tx.nonce.to_string(),
                tx_fields(&tx.body),
            ]);
        }
        table(&mut out, &rows);
        for (index, tx) in block.txs.iter().enumerate() {
            if let TxBody::CommitAggregate { aggregate_hash, .. } = &tx.body {
                if let Some(problem) = check.problem(aggregate_hash) {
                    line(&mut out, "blob", format!("tx {index}: aggregate {aggregate_hash} {problem}"));
                }
            }
        }
    }
    Ok(out)
}

/// Where each of one round's transactions sits.
#[derive(Default)]
struct RoundTxs {
    opened: Option<At>,
    updates: BTreeMap<NodeId, At>,
    aggregate: Option<At>,
    contributions: BTreeMap<NodeId, At>,
    privacy: Vec<At>,
}

fn show_round(chain: &Chain<RedbStore>, number: u64, check: &mut BlobCheck<'_>) -> Result<String> {
    let state = chain.state();
    let Some(round) = state.round(number) else {
        let known: Vec<String> = state.rounds().keys().map(u64::to_string).collect();
        match known.is_empty() {
            true => bail!("no round {number}: no round has been opened in this ledger"),
            false => bail!("no round {number}: the ledger's rounds are {}", known.join(", ")),
        }
    };
    let mut at = RoundTxs::default();
    each_tx(chain, |pos, tx| match &tx.body {
        TxBody::OpenRound { round, .. } if *round == number => at.opened = Some(pos),
        TxBody::CommitUpdate { round, node, .. } if *round == number => {
            at.updates.insert(*node, pos);
        }
        TxBody::CommitAggregate { round, .. } if *round == number => at.aggregate = Some(pos),
        TxBody::Contribution { round, node, .. } if *round == number => {
            at.contributions.insert(*node, pos);
        }
        TxBody::PrivacySpend { round, .. } if *round == number => at.privacy.push(pos),
        _ => {}
    })?;
    let names = Names { state: chain.state() };
    let place = |pos: Option<&At>| pos.map_or_else(|| "?".to_string(), At::to_string);

    let mut out = String::new();
    line(&mut out, "round", number);
    line(&mut out, "status", if round.is_open() { "open" } else { "closed" });
    line(&mut out, "coordinator", names.long(&round.coordinator));
    line(&mut out, "task", clean(&round.task));
    line(&mut out, "strategy", clean(&round.strategy));
    line(&mut out, "opened", format!("{} ms, {}", round.opened_ms, place(at.opened.as_ref())));
    line(&mut out, "deadline", format!("{} ms", round.deadline_ms));
    line(&mut out, "participants", round.participants.len());
    let mut rows = vec![row(["name", "id"])];
    rows.extend(round.participants.iter().map(|id| vec![names.name(id), id.to_string()]));
    table(&mut out, &rows);

    line(&mut out, "updates", format!("{} of {}", round.updates.len(), round.participants.len()));
    if !round.updates.is_empty() {
        let mut rows = vec![row(["node", "update hash", "examples", "norm", "where"])];
        for (node, u) in &round.updates {
            rows.push(vec![
                names.short(node),
                u.update_hash.to_string(),
                u.examples.to_string(),
                f64::from_bits(u.norm_bits).to_string(),
                place(at.updates.get(node)),
            ]);
        }
        table(&mut out, &rows);
    }

    match &round.aggregate {
        Some(agg) => {
            line(&mut out, "aggregate", format!("{}, {}", agg.aggregate_hash, place(at.aggregate.as_ref())));
            sub(&mut out, "blob", check.status(&agg.aggregate_hash));
            let who: Vec<String> = agg.participants.iter().map(|id| names.short(id)).collect();
            sub(&mut out, "participants", format!("{}: {}", who.len(), who.join(", ")));
            sub(&mut out, "metrics", if agg.metrics.is_empty() { "none".to_string() } else { metrics(&agg.metrics) });
        }
        None => line(&mut out, "aggregate", "none yet (the round is open)"),
    }

    line(&mut out, "contributions", round.contributions.len());
    if !round.contributions.is_empty() {
        let mut rows = vec![row(["node", "score", "where"])];
        for (node, score) in &round.contributions {
            rows.push(vec![names.short(node), score.to_string(), place(at.contributions.get(node))]);
        }
        table(&mut out, &rows);
    }

    if round.privacy.is_empty() {
        // `epsilon_spent` of no spends is -0.0 (an empty f64 sum), which prints as "-0".
        line(&mut out, "privacy", "no spend recorded");
    } else {
        line(
            &mut out,
            "privacy",
            format!("{}, ε total {}", count(round.privacy.len(), "spend"), round.epsilon_spent()),
        );
        let mut rows = vec![row(["signer", "epsilon", "delta", "where"])];
        for (i, p) in round.privacy.iter().enumerate() {
            rows.push(vec![
                names.short(&p.signer),
                f64::from_bits(p.epsilon_bits).to_string(),
                f64::from_bits(p.delta_bits).to_string(),
                place(at.privacy.get(i)),
            ]);
        }
        table(&mut out, &rows);
    }
    Ok(out)
}

fn show_node(chain: &Chain<RedbStore>, query: &str) -> Result<String> {
    let state = chain.state();
    let devices = devices(chain)?;
    let id = resolve_node(state, &devices, query)?;
    let mut registered = devices.get(&id).map(|(_, at)| *at);
    each_tx(chain, |pos, tx| {
        if matches!(&tx.body, TxBody::RegisterMember { member, .. } if *member == id) {
            registered = Some(pos);
        }
    })?;
    let names = Names { state: chain.state() };
    let mut out = String::new();
    line(&mut out, "node", id);
    if let Some(member) = state.member(&id) {
        let mut role = vec![if member.founder { "founder" } else { "admitted" }];
        if member.validator {
            role.push("validator");
        }
        line(&mut out, "role", format!("member ({})", role.join(", ")));
        line(&mut out, "name", clean(&member.name));
        line(&mut out, "owner", "itself (a member)");
        let owned: Vec<String> =
            devices.iter().filter(|(_, (owner, _))| *owner == id).map(|(device, _)| names.short(device)).collect();
        line(&mut out, "devices", if owned.is_empty() { "none".to_string() } else { owned.join(", ") });
        let last = state.next_nonce(&id).saturating_sub(1);
        line(&mut out, "nonce", format!("{last} (next transaction signs {})", last.saturating_add(1)));
    } else if let Some(owner) = state.device_owner(&id) {
        line(&mut out, "role", "device");
        line(&mut out, "owner", names.long(owner));
        line(&mut out, "nonce", "none (devices do not sign; their member signs for them)");
    }
    let registered = match registered {
        Some(pos) => pos.to_string(),
        None => "genesis (a founder)".to_string(),
    };
    line(&mut out, "registered", registered);
    line(&mut out, "balance", state.balance(&id));

    let updates: Vec<_> =
        state.rounds().iter().filter_map(|(number, r)| r.updates.get(&id).map(|u| (number, r, u))).collect();
    line(&mut out, "updates", count(updates.len(), "round"));
    if !updates.is_empty() {
        let mut rows = vec![row(["round", "update hash", "examples", "norm", "aggregated", "score"])];
        for (number, round, u) in updates {
            let aggregated = round.aggregate.as_ref().map(|a| yes_no(a.participants.contains(&id)));
            rows.push(vec![
                number.to_string(),
                u.update_hash.to_string(),
                u.examples.to_string(),
                f64::from_bits(u.norm_bits).to_string(),
                aggregated.unwrap_or_else(|| "open".to_string()),
                round.contributions.get(&id).map_or_else(|| "-".to_string(), i64::to_string),
            ]);
        }
        table(&mut out, &rows);
    }
    let coordinated: Vec<String> =
        state.rounds().iter().filter(|(_, r)| r.coordinator == id).map(|(n, _)| n.to_string()).collect();
    if !coordinated.is_empty() {
        line(&mut out, "coordinated", format!("rounds {}", coordinated.join(", ")));
    }
    Ok(out)
}

/// Every registered device, with its member and the transaction that registered it. (The state
/// answers "whose device is this?" but does not list devices.)
fn devices(chain: &Chain<RedbStore>) -> Result<BTreeMap<NodeId, (NodeId, At)>> {
    let mut devices = BTreeMap::new();
    each_tx(chain, |at, tx| {
        if let TxBody::RegisterDevice { device, member } = &tx.body {
            devices.insert(*device, (*member, at));
        }
    })?;
    Ok(devices)
}

/// The member or device `query` names: a full node id, or a prefix of exactly one known id.
fn resolve_node(state: &State, devices: &BTreeMap<NodeId, (NodeId, At)>, query: &str) -> Result<NodeId> {
    let query = query.trim().to_ascii_lowercase();
    if query.is_empty() || !query.chars().all(|c| c.is_ascii_hexdigit()) || query.len() > 64 {
        bail!("--node {query:?}: expected a node id, 64 hex characters (or a unique prefix of one)");
    }
    let known = state.members().keys().chain(devices.keys());
    let matches: BTreeSet<NodeId> = known.filter(|id| id.to_string().starts_with(&query)).copied().collect();
    match Vec::from_iter(matches).as_slice() {
        [id] => Ok(*id),
        [] => bail!(
            "no member or device {query} in this ledger (it has {} and {}; `dainet ledger show DIR` lists the members)",
            count(state.members().len(), "member"),
            count(devices.len(), "device")
        ),
        many => bail!("--node {query}: {} members and devices start with it; give more characters", many.len()),
    }
}

/// Names for node ids: a member's name, or "device of NAME".
struct Names<'a> {
    state: &'a State,
}

impl Names<'_> {
    fn name(&self, id: &NodeId) -> String {
        if let Some(m) = self.state.member(id) {
            return clean(&m.name);
        }
        match self.state.device_owner(id).and_then(|owner| self.state.member(owner)) {
            Some(owner) => format!("device of {}", clean(&owner.name)),
            None => "unknown".to_string(),
        }
    }

    /// `name (0123456789abcdef)`.
    fn short(&self, id: &NodeId) -> String {
        format!("{} ({})", self.name(id), short(id))
    }

    /// `name (full id)`.
    fn long(&self, id: &NodeId) -> String {
        format!("{} ({id})", self.name(id))
    }
}

fn short(id: &impl std::fmt::Display) -> String {
    id.to_string().chars().take(SHORT).collect()
}

/// The key fields of a transaction body, `key=value` separated by spaces.
fn tx_fields(body: &TxBody) -> String {
    match body {
        TxBody::RegisterMember { member, name, validator } => {
            format!("member={} name={name:?} validator={}", short(member), yes_no(*validator))
        }
        TxBody::RegisterDevice { device, member } => format!("device={} member={}", short(device), short(member)),
        TxBody::DeployPolicy { code_hash } => format!("code={}", short(code_hash)),
        TxBody::OpenRound { round, task, participants, strategy, deadline_ms } => format!(
            "round={round} task={task:?} strategy={strategy:?} participants={} deadline_ms={deadline_ms}",
            participants.len()
        ),
        TxBody::CommitUpdate { round, node, update_hash, examples, norm_bits } => format!(
            "round={round} node={} update={} examples={examples} norm={}",
            short(node),
            short(update_hash),
            f64::from_bits(*norm_bits)
        ),
        TxBody::CommitAggregate { round, aggregate_hash, participants, metrics: m } => format!(
            "round={round} aggregate={} participants={} {}",
            short(aggregate_hash),
            participants.len(),
            metrics(m)
        )
        .trim_end()
        .to_string(),
        TxBody::Contribution { round, node, score } => format!("round={round} node={} score={score}", short(node)),
        TxBody::Reward { node, amount } => format!("node={} amount={amount}", short(node)),
        TxBody::DataUse { dataset_id, purpose, consent_ref } => {
            format!("dataset={dataset_id:?} purpose={purpose:?} consent={consent_ref:?}")
        }
        TxBody::PrivacySpend { round, epsilon_bits, delta_bits } => {
            format!("round={round} epsilon={} delta={}", f64::from_bits(*epsilon_bits), f64::from_bits(*delta_bits))
        }
        TxBody::RemoveMember { member } => format!("member={}", short(member)),
        TxBody::Evidence { node, proof } => match proof {
            EvidenceProof::DoubleSign { first, second } => {
                match (Transaction::decode(first), Transaction::decode(second)) {
                    (Ok(first), Ok(second)) => format!(
                        "node={} proof=double_sign nonce={} first={} second={}",
                        short(node),
                        first.nonce,
                        short(&first.hash()),
                        short(&second.hash())
                    ),
                    _ => format!("node={} proof=double_sign (undecodable)", short(node)),
                }
            }
            _ => format!("node={}", short(node)),
        },
        // `TxBody` may gain kinds; `kind` still names them.
        _ => String::new(),
    }
}

fn metrics(metrics: &[Metric]) -> String {
    metrics.iter().map(|m| format!("{}={}", clean(&m.name), m.value())).collect::<Vec<_>>().join(" ")
}

/// Text from the ledger with control characters escaped, so a name cannot break the layout.
fn clean(text: &str) -> String {
    text.chars().flat_map(|c| if c.is_control() { c.escape_default().collect() } else { vec![c] }).collect()
}

/// `1 round`, `2 rounds`.
fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// `label         value`, the label column [`LABEL`] wide.
fn line(out: &mut String, label: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{label:<LABEL$}{value}");
}

/// A second-level `label: value` under the previous line.
fn sub(out: &mut String, label: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "  {label:<w$}{value}", w = LABEL);
}

/// Rows as columns padded to their widest cell, two spaces apart, indented two spaces.
fn table(out: &mut String, rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let mut text = String::new();
        for (cell, width) in r.iter().zip(&widths) {
            let _ = write!(text, "  {cell:<width$}");
        }
        let _ = writeln!(out, "{}", text.trim_end());
    }
}

// ---------------------------------------------------------------------------------------------
// verify

/// One round's commitments as the stored blocks carry them.
#[derive(Default)]
struct RoundCommitments {
    updates: Vec<(NodeId, Digest, At)>,
    aggregate: Option<(Digest, At)>,
}

fn verify(args: VerifyArgs) -> Result<ExitCode> {
    let ledger = LedgerDir::open_read_only(&args.dir).map_err(|e| {
        let error = anyhow::Error::new(e);
        match is_unfinished(&args.dir) {
            true => error.context(format!(
                "{}: unfinished: the run writing this ledger stopped before its end",
                args.dir.display()
            )),
            false => error,
        }
    })?;
    let held = args.updates.as_deref().map(kept_commitments).transpose()?;
    let report = verify_with_updates(ledger.store(), ledger.blobs(), held.as_ref().map(|(set, _)| set));
    // What was checked, by round, from the blocks that decode (a block that does not is a finding).
    let mut rounds: BTreeMap<u64, RoundCommitments> = BTreeMap::new();
    let heights = ledger.store().heights().unwrap_or_default();
    for &height in &heights {
        let Some(block) = ledger.store().block(height).ok().flatten().and_then(|b| Block::decode(&b).ok()) else {
            continue;
        };
        for (index, tx) in block.txs.iter().enumerate() {
            let at = At { height, index };
            match &tx.body {
                TxBody::OpenRound { round, .. } => {
                    rounds.entry(*round).or_default();
                }
                TxBody::CommitUpdate { round, node, update_hash, .. } => {
                    rounds.entry(*round).or_default().updates.push((*node, *update_hash, at));
                }
                TxBody::CommitAggregate { round, aggregate_hash, .. } => {
                    rounds.entry(*round).or_default().aggregate = Some((*aggregate_hash, at));
                }
                _ => {}
            }
        }
    }

    let mut out = String::new();
    line(&mut out, "ledger", args.dir.display());
    line(&mut out, "genesis", report.genesis_hash.map_or_else(|| "unreadable".to_string(), |h| h.to_string()));
    let span = match (heights.first(), heights.last()) {
        (Some(first), Some(last)) => format!(" (stored heights {first} to {last})"),
        _ => String::new(),
    };
    line(&mut out, "blocks", format!("{} checked{span}: hashes, links, times, tx roots", report.blocks_checked));
    line(&mut out, "transactions", format!("{} checked: signatures, nonces, rules", report.txs_checked));
    line(&mut out, "blobs", format!("{} aggregates checked: present, bytes hash to their name", report.blobs_checked));
    let updates = match (&held, &args.updates) {
        (Some((_, files)), Some(dir)) => {
            format!("{} commitments checked against {files} files under {}", report.updates_checked, dir.display())
        }
        _ => format!(
            "{} commitments not checked: the trainers keep their updates (--updates DIR checks them)",
            report.updates_unchecked
        ),
    };
    line(&mut out, "updates", updates);
    let state = match report.state_verified_through {
        Some(h) => format!("replayed; state roots confirmed through block {h}"),
        None => "not replayed (see the problems below)".to_string(),
    };
    line(&mut out, "state", state);
    let tip = report.tip.map_or_else(|| "none recorded".to_string(), |t| format!("height {}, {}", t.height, t.hash));
    line(&mut out, "tip", tip);
    line(&mut out, "rounds", rounds.len());
    for (number, round) in &rounds {
        let aggregate = match &round.aggregate {
            Some((hash, at)) => format!("aggregate {hash} ({at})"),
            None => "no aggregate (open)".to_string(),
        };
        let _ = writeln!(out, "  round {number}  {aggregate}");
        for (node, hash, at) in &round.updates {
            let _ = writeln!(out, "    update {hash} node {} ({at})", short(node));
        }
    }
    // A ledger whose writer never finished may verify and still not be the whole record.
    let unfinished = is_unfinished(&args.dir).then(|| {
        format!(
            "unfinished: the run writing this ledger stopped before its end ({} is still there); \
             its last rounds may be missing",
            args.dir.join(UNFINISHED_FILE).display()
        )
    });
    let n = report.findings.len() + usize::from(unfinished.is_some());
    line(&mut out, "problems", n);
    for problem in report.findings.iter().map(ToString::to_string).chain(unfinished) {
        let _ = writeln!(out, "  {problem}");
    }
    let verdict = if n == 0 { "ledger ok" } else { "ledger FAILED verification" };
    let _ = writeln!(out, "{verdict}");
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    if n == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("ledger verify: {n} problem{}", if n == 1 { "" } else { "s" });
    Ok(ExitCode::from(1))
}

// ---------------------------------------------------------------------------------------------
// export

fn export(args: ExportArgs) -> Result<()> {
    let ledger = LedgerDir::open_read_only(&args.dir)?;
    let dir = args.dir.display();
    let doc = dainet_ledger::export::export(ledger.store()).map_err(|e| match e {
        e @ ExportError::Block { .. } => {
            anyhow::anyhow!("{dir}: {e}; `dainet ledger verify {dir}` lists every problem")
        }
        e => anyhow::anyhow!("{dir}: {e}"),
    })?;
    let mut text = serde_json::to_string_pretty(&doc)?;
    text.push('\n');
    match &args.out {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("{}: cannot write", path.display()))?;
            eprintln!("wrote {} blocks of {dir} to {}", doc.block_count(), path.display());
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
        }
    }
    Ok(())
}
