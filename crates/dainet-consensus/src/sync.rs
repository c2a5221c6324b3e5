//! Catching up by ranges, sans I/O: a validator that is behind fetches the finalized chain from
//! its peers in bounded steps, verifying as it goes.
//!
//! A validator learns that it is behind when consensus reports a finalized block whose ancestry
//! it lacks (after a restart, a partition, a long pause). Fetching that ancestry one hash at a
//! time from the top holds every block in memory until the walk reaches the local tip, costs a
//! round trip per block, and stalls once the cache is full — a validator 10,000 blocks behind
//! never caught up that way. [`RangeSync`] instead runs one *job* towards the finalized hash:
//!
//! 1. **Headers**, from the target down: ask a peer for up to [`SyncConfig::headers_per_request`]
//!    headers ending at the lowest hash still unknown ([`WireMessage::HeadersRequest`]). Each
//!    answer must end at exactly that hash and link by `prev_hash` and height, so every header
//!    is authenticated by the target — which a finalization certificate named — before it is
//!    kept. Only the hashes are kept (40 bytes a height), until a header's parent is the local
//!    tip. A chain that reaches the tip's height without joining the tip contradicts the
//!    finalized chain here: the job fails loudly ([`SyncEvent::Failed`]).
//! 2. **Blocks**, from the tip up: ask for the next [`SyncConfig::blocks_per_request`] hashes
//!    ([`WireMessage::BlocksRequest`]); an answer's blocks are taken in order while each one's
//!    hash is the one expected, and handed to the caller to check in full and append
//!    ([`crate::core::Core::append_synced`]). At most one answer's blocks are held at a time.
//!
//! **Pacing.** Checking synced blocks is the costly part (every signature, every state
//! transition), and a validator catching up often shares a machine, or at least its uplinks, with
//! work that matters more. So after each appended batch the job rests for as long as the batch
//! took to check, scaled by [`SyncConfig::busy_percent`] (default 50: it rests as long as it
//! worked): a catch-up takes at most about that share of a core, and the time it needs is
//! bounded by that share of its full speed. It still far outpaces finalization: measured in
//! `tests/ledger_catch_up.rs`.
//!
//! One request is outstanding at a time, to one peer; peers take turns, and a peer that does not
//! answer within [`SyncConfig::timeout`], answers empty ("not held") or answers wrong loses its
//! turn. So a syncing validator costs each peer at most one bounded read per round trip, and a
//! Byzantine peer can delay a job but not corrupt it. Time is an argument; nothing here sends.
//!
//! [`WireMessage::HeadersRequest`]: crate::wire::WireMessage::HeadersRequest
//! [`WireMessage::BlocksRequest`]: crate::wire::WireMessage::BlocksRequest

use std::collections::VecDeque;
use std::time::Duration;

use dainet_ledger::block::{Block, BlockHeader};
use dainet_ledger::hash::BlockHash;

use crate::wire::{MAX_SYNC_BLOCKS, MAX_SYNC_HEADERS};

/// Tuning of [`RangeSync`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncConfig {
    /// Most headers asked for at once (at most [`MAX_SYNC_HEADERS`]).
    pub headers_per_request: usize,
    /// Most blocks asked for at once (at most [`MAX_SYNC_BLOCKS`]).
    pub blocks_per_request: usize,
    /// How long a peer has to answer before the next peer is asked.
    pub timeout: Duration,
    /// The most of its time a job spends checking blocks, in percent (1 to 100): after a batch
    /// that took `t` to check, the next request waits `t × (100 − p) / p`. 100 never waits.
    pub busy_percent: u32,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            headers_per_request: MAX_SYNC_HEADERS,
            blocks_per_request: 64,
            timeout: Duration::from_secs(2),
            busy_percent: 50,
        }
    }
}

/// A request to send to one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncRequest {
    /// Headers ending at `end`, above height `above`, at most `max`.
    Headers {
        /// The highest header wanted.
        end: BlockHash,
        /// The local finalized height.
        above: u64,
        /// The most headers wanted.
        max: u32,
    },
    /// These blocks, in order.
    Blocks(Vec<BlockHash>),
}

/// What an answer did to the job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncEvent {
    /// Nothing asked for (no job, another phase, or a late answer already superseded).
    Ignored,
    /// Headers kept; more are needed, or the blocks phase begins.
    Progress,
    /// Blocks to check and append, in height order; report the result with
    /// [`RangeSync::appended`] or [`RangeSync::fail`].
    Append(Vec<Block>),
    /// The peer's answer was wrong; it lost its turn. The reason says why.
    BadAnswer(String),
    /// The job cannot succeed: the finalized chain the peers serve contradicts this validator's.
    Failed(String),
}

/// Where a job is, for status and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncProgress {
    /// The finalized hash the job is fetching up to.
    pub target: BlockHash,
    /// Its height, once a header of it arrived.
    pub target_height: Option<u64>,
    /// The local finalized height.
    pub height: u64,
    /// Headers still to fetch before the blocks phase (0 once it began).
    pub headers_known: u64,
    /// Whether the blocks phase has begun.
    pub fetching_blocks: bool,
}

impl SyncProgress {
    /// How many blocks this validator is behind the target, once its height is known.
    pub fn behind(&self) -> Option<u64> {
        self.target_height.map(|t| t.saturating_sub(self.height))
    }
}

#[derive(Debug)]
enum Phase {
    /// Fetching headers down from the target; `hashes` holds those known, highest first.
    Headers { hashes: Vec<BlockHash> },
    /// Fetching blocks up from the tip; `hashes` holds those still to fetch, lowest first.
    Blocks { hashes: VecDeque<BlockHash> },
}

#[derive(Debug)]
struct Outstanding {
    peer: usize,
    sent_ms: u64,
    request: SyncRequest,
}

#[derive(Debug)]
struct Job {
    target: BlockHash,
    target_height: Option<u64>,
    /// The local finalized tip (height, hash) the fetched chain must join.
    tip: (u64, BlockHash),
    /// The height of the lowest header kept (headers phase), for the link check.
    lowest: Option<(u64, BlockHash)>,
    phase: Phase,
    outstanding: Option<Outstanding>,
    /// No request before this time (ms): the rest after checking a batch.
    rest_until_ms: u64,
}

/// The catch-up state machine. See the module docs.
#[derive(Debug)]
pub struct RangeSync<P> {
    config: SyncConfig,
    peers: Vec<P>,
    next_peer: usize,
    job: Option<Job>,
    /// Requests that went unanswered in time.
    pub timeouts: u64,
}

impl<P: Clone + Eq> RangeSync<P> {
    /// A state machine that asks `peers` (not including this validator) in turn.
    pub fn new(peers: Vec<P>, config: SyncConfig) -> RangeSync<P> {
        let config = SyncConfig {
            headers_per_request: config.headers_per_request.clamp(1, MAX_SYNC_HEADERS),
            blocks_per_request: config.blocks_per_request.clamp(1, MAX_SYNC_BLOCKS),
            busy_percent: config.busy_percent.clamp(1, 100),
            ..config
        };
        RangeSync { config, peers, next_peer: 0, job: None, timeouts: 0 }
    }

    /// Whether a job is running.
    pub fn active(&self) -> bool {
        self.job.is_some()
    }

    /// Start a job towards the finalized `target` from the local finalized `tip` (height, hash),
    /// unless one is running (it finishes first; the caller starts the next one from the new
    /// tip). Returns whether a job started.
    pub fn start(&mut self, target: BlockHash, tip: (u64, BlockHash)) -> bool {
        if self.job.is_some() || self.peers.is_empty() || target == tip.1 {
            return false;
        }
        self.job = Some(Job {
            target,
            target_height: None,
            tip,
            lowest: None,
            phase: Phase::Headers { hashes: Vec::new() },
            outstanding: None,
            rest_until_ms: 0,
        });
        true
    }

    /// The request to send now, and to whom: the next one if nothing is outstanding, or the same
    /// one to the next peer if the outstanding one timed out.
    pub fn poll(&mut self, now_ms: u64) -> Option<(P, SyncRequest)> {
        let timeout_ms = u64::try_from(self.config.timeout.as_millis()).unwrap_or(u64::MAX);
        let job = self.job.as_mut()?;
        if let Some(out) = &job.outstanding {
            if now_ms < out.sent_ms.saturating_add(timeout_ms) {
                return None;
            }
            self.timeouts += 1;
            self.next_peer = out.peer + 1;
            job.outstanding = None;
        } else if now_ms < job.rest_until_ms {
            return None;
        }
        let request = match &job.phase {
            Phase::Headers { hashes } => SyncRequest::Headers {
                end: if hashes.is_empty() { job.target } else { job.lowest.map_or(job.target, |(_, prev)| prev) },
                above: job.tip.0,
                max: u32::try_from(self.config.headers_per_request).unwrap_or(u32::MAX),
            },
            Phase::Blocks { hashes } => {
                SyncRequest::Blocks(hashes.iter().take(self.config.blocks_per_request).copied().collect())
            }
        };
        let peer = self.next_peer % self.peers.len();
        job.outstanding = Some(Outstanding { peer, sent_ms: now_ms, request: request.clone() });
        Some((self.peers[peer].clone(), request))
    }

    /// Whether `from` is the peer the outstanding request went to.
    fn asked(&self, from: &P) -> bool {
        let out = self.job.as_ref().and_then(|job| job.outstanding.as_ref());
        out.is_some_and(|out| self.peers.get(out.peer) == Some(from))
    }

    /// The outstanding request lost: the next poll asks the next peer at once.
    fn pass_turn(&mut self) {
        if let Some(out) = self.job.as_mut().and_then(|job| job.outstanding.take()) {
            self.next_peer = out.peer + 1;
        }
    }

    /// A [`crate::wire::WireMessage::Headers`] answer from `from`.
    pub fn on_headers(&mut self, from: &P, headers: Vec<BlockHeader>) -> SyncEvent {
        let expected_end = match self.job.as_ref().and_then(|j| j.outstanding.as_ref()).map(|o| &o.request) {
            Some(SyncRequest::Headers { end, .. }) if self.asked(from) => *end,
            _ => return SyncEvent::Ignored,
        };
        if headers.is_empty() {
            self.pass_turn();
            return SyncEvent::BadAnswer(format!("headers not held: end={expected_end}"));
        }
        if let Err(reason) = check_links(&headers, expected_end) {
            self.pass_turn();
            return SyncEvent::BadAnswer(reason);
        }
        let Some(job) = self.job.as_mut() else { return SyncEvent::Ignored };
        job.outstanding = None;
        let Phase::Headers { hashes } = &mut job.phase else { return SyncEvent::Ignored };
        if job.target_height.is_none() {
            job.target_height = headers.last().map(|h| h.height);
        }
        let (tip_height, tip_hash) = job.tip;
        // Highest first; stop at the first header at or below the tip's height + 1.
        for header in headers.iter().rev() {
            if header.height <= tip_height {
                let reason = format!(
                    "the finalized chain served does not join this validator's tip: tip_height={tip_height} \
                     tip={tip_hash} served_height={} served={}",
                    header.height,
                    header.hash()
                );
                self.job = None;
                return SyncEvent::Failed(reason);
            }
            hashes.push(header.hash());
            job.lowest = Some((header.height, header.prev_hash));
            if header.height == tip_height + 1 {
                if header.prev_hash != tip_hash {
                    let reason = format!(
                        "the finalized chain served forks below this validator's tip: height={} prev_hash={} \
                         tip={tip_hash}",
                        header.height, header.prev_hash
                    );
                    self.job = None;
                    return SyncEvent::Failed(reason);
                }
                let ascending: VecDeque<BlockHash> = hashes.iter().rev().copied().collect();
                job.phase = Phase::Blocks { hashes: ascending };
                return SyncEvent::Progress;
            }
        }
        SyncEvent::Progress
    }

    /// A [`crate::wire::WireMessage::Blocks`] answer from `from`: the prefix of the expected
    /// blocks it holds, to append.
    pub fn on_blocks(&mut self, from: &P, blocks: Vec<Block>) -> SyncEvent {
        let asked_blocks = matches!(
            self.job.as_ref().and_then(|j| j.outstanding.as_ref()).map(|o| &o.request),
            Some(SyncRequest::Blocks(_))
        );
        if !asked_blocks || !self.asked(from) {
            return SyncEvent::Ignored;
        }
        let Some(Job { phase: Phase::Blocks { hashes }, .. }) = self.job.as_mut() else { return SyncEvent::Ignored };
        let mut take = Vec::new();
        for (block, expected) in blocks.into_iter().zip(hashes.iter()) {
            let hash = block.hash();
            if hash != *expected {
                break;
            }
            if block.compute_tx_root() != block.tx_root {
                self.pass_turn();
                return SyncEvent::BadAnswer(format!("block body does not match its header: block={hash}"));
            }
            take.push(block);
        }
        if take.is_empty() {
            let first = hashes.front().copied().unwrap_or_default();
            self.pass_turn();
            return SyncEvent::BadAnswer(format!("blocks not held or not the ones asked: first={first}"));
        }
        SyncEvent::Append(take)
    }

    /// The blocks of the last [`SyncEvent::Append`] are appended; the local tip is now `tip`.
    /// Checking them took `took_ms` and ended at `now_ms`: the next request rests accordingly
    /// (see [`SyncConfig::busy_percent`]). Returns true when the job is done (the target is
    /// appended).
    pub fn appended(&mut self, tip: (u64, BlockHash), took_ms: u64, now_ms: u64) -> bool {
        let busy = u64::from(self.config.busy_percent);
        let Some(job) = self.job.as_mut() else { return false };
        job.outstanding = None;
        job.tip = tip;
        job.rest_until_ms = now_ms.saturating_add(took_ms.saturating_mul(100 - busy) / busy);
        if let Phase::Blocks { hashes } = &mut job.phase {
            // Everything up to the new tip is in.
            if let Some(at) = hashes.iter().position(|h| *h == tip.1) {
                hashes.drain(..=at);
            }
            if hashes.is_empty() {
                self.job = None;
                return true;
            }
        }
        false
    }

    /// Give up the job (the fetched blocks did not check, or the store failed).
    pub fn fail(&mut self) {
        self.job = None;
    }

    /// Where the job is, if one runs.
    pub fn progress(&self) -> Option<SyncProgress> {
        let job = self.job.as_ref()?;
        let (headers_known, fetching_blocks) = match &job.phase {
            Phase::Headers { hashes } => (hashes.len() as u64, false),
            Phase::Blocks { .. } => (0, true),
        };
        Some(SyncProgress {
            target: job.target,
            target_height: job.target_height,
            height: job.tip.0,
            headers_known,
            fetching_blocks,
        })
    }
}

/// `headers` are consecutive (each one's `prev_hash` is the one below's hash, heights one apart)
/// and the last is `end`.
fn check_links(headers: &[BlockHeader], end: BlockHash) -> Result<(), String> {
    let last = headers.last().map(BlockHeader::hash);
    if last != Some(end) {
        return Err(format!("headers do not end at the hash asked: end={end} last={}", last.unwrap_or_default()));
    }
    for pair in headers.windows(2) {
        let (low, high) = (&pair[0], &pair[1]);
        if high.prev_hash != low.hash() || high.height != low.height.saturating_add(1) {
            return Err(format!(
                "headers do not link: height={} prev_hash={} below={} below_height={}",
                high.height,
                high.prev_hash,
                low.hash(),
                low.height
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dainet_ledger::hash::Digest;

    /// Blocks 0..=n, each linked to the one below (the state roots are arbitrary: the catch-up
    /// checks links and hashes; the ledger rules are [`crate::core::Core::append_synced`]'s).
    fn chain(n: u64) -> Vec<Block> {
        chain_from(b"genesis", n)
    }

    fn chain_from(genesis: &[u8], n: u64) -> Vec<Block> {
        let mut blocks = vec![Block::seal(0, Digest::of(genesis), Digest::ZERO, 0, vec![])];
        for height in 1..=n {
            let prev = blocks.last().map(Block::hash).unwrap_or_default();
            blocks.push(Block::seal(height, prev, Digest::of(&height.to_le_bytes()), height, vec![]));
        }
        blocks
    }

    fn headers(blocks: &[Block]) -> Vec<BlockHeader> {
        blocks.iter().map(Block::header).collect()
    }

    fn config(headers: usize, blocks: usize) -> SyncConfig {
        SyncConfig {
            headers_per_request: headers,
            blocks_per_request: blocks,
            timeout: Duration::from_millis(100),
            busy_percent: 100,
        }
    }

    /// Serve `request` from `chain` like an honest peer (Core::headers_ending_at / blocks_by_hash).
    fn serve_headers(chain: &[Block], end: BlockHash, above: u64, max: u32) -> Vec<BlockHeader> {
        let Some(top) = chain.iter().position(|b| b.hash() == end) else { return vec![] };
        let low = top.saturating_sub(max as usize - 1).max(above as usize + 1);
        headers(&chain[low..=top])
    }

    #[test]
    fn fetches_headers_down_then_blocks_up_and_ends_at_the_target() {
        let blocks = chain(10);
        let mut sync = RangeSync::new(vec!["a", "b"], config(4, 3));
        assert!(sync.start(blocks[10].hash(), (2, blocks[2].hash())));
        assert!(!sync.start(blocks[9].hash(), (2, blocks[2].hash())), "one job at a time");
        let mut header_requests = 0;
        let mut appended = Vec::new();
        let mut now = 0;
        while sync.active() {
            now += 1;
            let (peer, request) = sync.poll(now).expect("a request is due");
            assert_eq!(sync.poll(now), None, "one request outstanding");
            let event = match request {
                SyncRequest::Headers { end, above, max } => {
                    header_requests += 1;
                    assert_eq!(above, 2);
                    sync.on_headers(&peer, serve_headers(&blocks, end, above, max))
                }
                SyncRequest::Blocks(hashes) => {
                    assert!(hashes.len() <= 3);
                    let answer = hashes.iter().map(|h| blocks.iter().find(|b| b.hash() == *h).unwrap().clone());
                    sync.on_blocks(&peer, answer.collect())
                }
            };
            match event {
                SyncEvent::Progress => {}
                SyncEvent::Append(got) => {
                    let top = got.last().unwrap();
                    let tip = (top.height, top.hash());
                    appended.extend(got.iter().map(|b| b.height));
                    let done = sync.appended(tip, 0, now);
                    assert_eq!(done, tip.0 == 10);
                }
                other => panic!("unexpected {other:?}"),
            }
            assert!(now < 100, "the job does not end");
        }
        assert_eq!(header_requests, 2, "8 headers above the tip, 4 per request");
        assert_eq!(appended, (3..=10).collect::<Vec<_>>());
        assert_eq!(sync.progress(), None);
    }

    #[test]
    fn wrong_empty_or_unasked_answers_never_advance_the_job() {
        let blocks = chain(6);
        let other = chain_from(b"another genesis", 6); // the same heights, other hashes
        let mut sync = RangeSync::new(vec!["a", "b"], config(8, 8));
        sync.start(blocks[6].hash(), (0, blocks[0].hash()));
        let (peer, _) = sync.poll(0).unwrap();
        assert_eq!(peer, "a");
        // From a peer not asked: ignored, the request stays with "a".
        assert_eq!(sync.on_headers(&"b", headers(&blocks[1..=6])), SyncEvent::Ignored);
        // Headers of another chain: they do not end at the hash asked.
        assert!(matches!(sync.on_headers(&"a", headers(&other[1..=6])), SyncEvent::BadAnswer(_)));
        // The turn passed to "b", at once.
        let (peer, _) = sync.poll(1).unwrap();
        assert_eq!(peer, "b");
        // Unlinked: the right end, a gap below it.
        let mut gapped = headers(&blocks[1..=6]);
        gapped.remove(2);
        assert!(
            matches!(sync.on_headers(&"b", gapped), SyncEvent::BadAnswer(reason) if reason.contains("do not link"))
        );
        // Not held.
        let (peer, _) = sync.poll(2).unwrap();
        assert!(matches!(sync.on_headers(&peer, vec![]), SyncEvent::BadAnswer(_)));
        let (peer, _) = sync.poll(3).unwrap();
        assert_eq!(sync.on_headers(&peer, headers(&blocks[1..=6])), SyncEvent::Progress);
        assert_eq!(sync.progress().unwrap().target_height, Some(6));
        assert_eq!(sync.progress().unwrap().behind(), Some(6));
        // Blocks: a wrong first block is a bad answer; a right prefix is taken.
        let (peer, request) = sync.poll(4).unwrap();
        assert_eq!(request, SyncRequest::Blocks(blocks[1..=6].iter().map(Block::hash).collect()));
        assert!(matches!(sync.on_blocks(&peer, other[1..=2].to_vec()), SyncEvent::BadAnswer(_)));
        let (peer, _) = sync.poll(5).unwrap();
        let SyncEvent::Append(got) = sync.on_blocks(&peer, blocks[1..=2].to_vec()) else { panic!() };
        assert_eq!(got, blocks[1..=2].to_vec());
        assert!(!sync.appended((2, blocks[2].hash()), 0, 5));
        let (_, request) = sync.poll(6).unwrap();
        assert_eq!(request, SyncRequest::Blocks(blocks[3..=6].iter().map(Block::hash).collect()));
    }

    #[test]
    fn after_checking_a_batch_the_job_rests_in_proportion() {
        let blocks = chain(6);
        let mut sync = RangeSync::new(vec!["a"], SyncConfig { busy_percent: 25, ..config(8, 2) });
        sync.start(blocks[6].hash(), (0, blocks[0].hash()));
        let (peer, _) = sync.poll(0).unwrap();
        sync.on_headers(&peer, headers(&blocks[1..=6]));
        let (peer, _) = sync.poll(0).unwrap();
        let SyncEvent::Append(got) = sync.on_blocks(&peer, blocks[1..=2].to_vec()) else { panic!() };
        assert_eq!(got.len(), 2);
        // Checking took 40 ms, ending at t = 1,000: at 25 % busy it rests 120 ms.
        assert!(!sync.appended((2, blocks[2].hash()), 40, 1_000));
        assert_eq!(sync.poll(1_119), None, "resting");
        let (_, request) = sync.poll(1_120).expect("rested");
        assert_eq!(request, SyncRequest::Blocks(blocks[3..=4].iter().map(Block::hash).collect()));
        // A timeout is not delayed by resting.
        assert!(sync.poll(1_120 + 99).is_none());
        assert!(sync.poll(1_120 + 100).is_some());
    }

    #[test]
    fn a_body_that_does_not_match_its_header_is_refused() {
        let blocks = chain(2);
        let mut sync = RangeSync::new(vec!["a"], config(8, 8));
        sync.start(blocks[2].hash(), (0, blocks[0].hash()));
        let (peer, _) = sync.poll(0).unwrap();
        sync.on_headers(&peer, headers(&blocks[1..=2]));
        let (peer, _) = sync.poll(1).unwrap();
        let mut forged = blocks[1].clone();
        forged.txs.push(some_tx());
        assert!(matches!(sync.on_blocks(&peer, vec![forged]), SyncEvent::BadAnswer(r) if r.contains("body")));
    }

    fn some_tx() -> dainet_ledger::tx::Transaction {
        use dainet_ledger::identity::Keypair;
        use dainet_ledger::tx::{ChainId, Transaction, TxBody};
        use rand_core::SeedableRng;
        let kp = Keypair::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(1));
        Transaction::sign(&kp, &ChainId::from_name("t"), 1, TxBody::Reward { node: kp.node_id(), amount: 1 })
    }

    #[test]
    fn a_served_chain_that_does_not_join_the_tip_fails_the_job() {
        let blocks = chain(5);
        // Our block 2 is another child of block 1 than theirs.
        let ours = Block::seal(2, blocks[1].hash(), Digest::of(b"our own block 2"), 2, vec![]);
        let fork = [blocks[0].clone(), blocks[1].clone(), ours];
        let mut sync = RangeSync::new(vec!["a"], config(8, 8));
        sync.start(blocks[5].hash(), (2, fork[2].hash()));
        let (peer, _) = sync.poll(0).unwrap();
        let event = sync.on_headers(&peer, headers(&blocks[3..=5]));
        assert!(matches!(event, SyncEvent::Failed(ref r) if r.contains("forks below")), "{event:?}");
        assert!(!sync.active());
        // A peer that serves headers at or below the tip's height (ignoring `above`): also a
        // chain that cannot join.
        sync.start(blocks[5].hash(), (2, fork[2].hash()));
        let (peer, _) = sync.poll(0).unwrap();
        assert!(matches!(sync.on_headers(&peer, headers(&blocks[1..=5])), SyncEvent::Failed(_)));
    }

    #[test]
    fn an_unanswered_request_goes_to_the_next_peer_after_the_timeout() {
        let blocks = chain(3);
        let mut sync = RangeSync::new(vec!["a", "b", "c"], config(8, 8));
        sync.start(blocks[3].hash(), (0, blocks[0].hash()));
        assert_eq!(sync.poll(1_000).unwrap().0, "a");
        assert_eq!(sync.poll(1_099), None);
        assert_eq!(sync.poll(1_100).unwrap().0, "b");
        assert_eq!(sync.timeouts, 1);
        // A late answer from "a" is not the one awaited now.
        assert_eq!(sync.on_headers(&"a", headers(&blocks[1..=3])), SyncEvent::Ignored);
        assert_eq!(sync.on_headers(&"b", headers(&blocks[1..=3])), SyncEvent::Progress);
    }
}
