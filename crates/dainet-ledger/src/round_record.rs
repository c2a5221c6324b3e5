//! The ledger's rules for recording a federated round that a coordinator must follow.
//!
//! What a round writes, and in which order, is the round protocol's decision
//! (`dainet_protocol::record`): `OpenRound` naming every sampled participant before anyone
//! trains, a `CommitUpdate` per update (or masked input) the coordinator accepted,
//! `CommitAggregate` naming the contributors, and `PrivacySpend` with the ε the round spent.
//! This module holds what the ledger itself requires of them: how long a round stays open for
//! commitments ([`deadline_ms`]).

/// Slack added to a round's own timeout for its `OpenRound` deadline: commitments reach the
/// ledger after the round closes, through consensus, so the deadline must outlast the round.
pub const DEADLINE_SLACK_MS: u64 = 60_000;

/// The `OpenRound` deadline for a round recorded at block time `opened_ms` whose coordinator
/// waits at most `round_timeout_ms` for updates (none: no timeout of its own).
pub fn deadline_ms(opened_ms: u64, round_timeout_ms: Option<u64>) -> u64 {
    opened_ms.saturating_add(round_timeout_ms.unwrap_or(0)).saturating_add(DEADLINE_SLACK_MS)
}
