//! The settings of a federated run that every party agrees on, and the one place they are
//! checked.
//!
//! [`RoundConfig::validate`] runs every feasibility check of the round protocol: the round
//! size against the federation, `min_updates` against the round size and the strategy's own
//! minimum, secure aggregation against the strategy and the round size (and SecAgg+'s
//! no-overflow condition), and the privacy budget against the first round. The binary calls
//! it when it plans a run, before any output exists, and [`crate::Coordinator::new`] calls it
//! again, so a coordinator never runs a configuration that cannot work.

use crate::privacy::PrivacyAccount;
use dainet_agg::dp::{Clipping, DpConfig};
use dainet_agg::strategy::{Rule, StrategyConfig};
use dainet_privacy::secagg::SecAggConfig;

/// Settings of a federated training run.
#[derive(Clone, Debug, PartialEq)]
pub struct RoundConfig {
    /// The task seed naming every random stream.
    pub task_seed: u64,
    /// Clients in the federation (K).
    pub num_clients: u32,
    /// Clients sampled per round (`max(1, round(C·K))`).
    pub clients_per_round: u32,
    /// The last round to run (rounds are numbered from 1).
    pub rounds: u32,
    /// Milliseconds a round waits for updates (under secure aggregation: for trainers to be
    /// ready to mask); `None` waits for every sampled client.
    pub round_timeout_ms: Option<u64>,
    /// Updates needed to aggregate a round that closes at its deadline.
    pub min_updates: u32,
    /// Aggregate every round with SecAgg+ (the coordinator then learns only the sum).
    pub secure: Option<SecureConfig>,
    /// Account for the privacy spent (with a strategy that has differential privacy).
    pub privacy: Option<PrivacyConfig>,
}

/// SecAgg+ settings of a federation, resolved for its round size by [`SecureConfig::new`].
#[derive(Clone, Debug, PartialEq)]
pub struct SecureConfig {
    /// Shares of each secret (k neighbours + 1), for a round of `clients_per_round`.
    pub num_shares: u32,
    /// Shares needed to reconstruct a secret (t).
    pub reconstruction_threshold: u32,
    /// Input values are clipped to ±this (and counted).
    pub clipping_range: f32,
    /// Quantisation levels.
    pub quantization_range: u32,
    /// The largest weight (example count) a trainer's input may carry; larger counts are
    /// clamped to it. It bounds the masked sum: n · max_weight · (q − 1) < 2^32.
    pub max_weight: u32,
    /// Milliseconds a SecAgg+ stage waits for answers.
    pub stage_timeout_ms: u64,
}

impl SecureConfig {
    /// Milliseconds a stage waits by default.
    pub const STAGE_TIMEOUT_MS: u64 = 1_000;

    /// Rounds of at most this many clients use the complete graph by default (`num_shares` =
    /// m: every client masks with every other, classic SecAgg).
    ///
    /// Why: with few clients the log2 rule leaves each client a handful of neighbours, and
    /// a round is lost as soon as one neighbourhood keeps fewer than t of its shares. At
    /// m = 5 it gives k = 2 and t = 2 on a ring of 5, so two neighbours dropping after
    /// masking lose the round although three sites remain (14 of 50 rounds at a 0.2 dropout
    /// rate), and t = 2 is already the least threshold there is. On the complete graph a
    /// round is aggregated exactly when at least t = ⌊m/2⌋ + 1 clients survive, and t is
    /// higher (3 of 5 rather than 2), so no coalition of two learns a secret. It costs each
    /// client m masks instead of k + 1: at most 16, against 9 in a round of 100.
    pub const COMPLETE_GRAPH_UP_TO: u32 = 16;

    /// The settings for rounds of `per_round` clients (m). `num_shares` defaults to m (the
    /// complete graph) up to [`SecureConfig::COMPLETE_GRAPH_UP_TO`] clients, and above that to
    /// k + 1 with k ≈ log2 m neighbours, even (Bell et al.: O(log n)); the threshold defaults
    /// to just over half the shares, ⌊shares/2⌋ + 1.
    pub fn new(
        per_round: u32,
        num_shares: Option<u32>,
        reconstruction_threshold: Option<u32>,
        clipping_range: f32,
        quantization_range: u32,
        max_weight: u32,
    ) -> Self {
        let k = {
            let k = f64::from(per_round.max(1)).log2().round() as u32;
            k + k % 2
        };
        let default_shares = if per_round <= Self::COMPLETE_GRAPH_UP_TO { per_round } else { k + 1 };
        let shares = num_shares.unwrap_or(default_shares).min(per_round);
        let threshold = reconstruction_threshold.unwrap_or(shares / 2 + 1);
        Self {
            num_shares: shares,
            reconstruction_threshold: threshold,
            clipping_range,
            quantization_range,
            max_weight,
            stage_timeout_ms: Self::STAGE_TIMEOUT_MS,
        }
    }

    /// The SecAgg+ settings of one session among `participants` trainers with inputs of
    /// `dimension` values; `unit_weights` under differential privacy (every weight is 1).
    /// The shares are capped at the participants and kept at an even k, the threshold within
    /// `2 ..= shares`.
    pub fn session(&self, participants: usize, dimension: usize, unit_weights: bool) -> SecAggConfig {
        let n = u32::try_from(participants).unwrap_or(u32::MAX);
        let mut shares = self.num_shares.min(n).max(1);
        if shares < n && (shares - 1) % 2 == 1 {
            shares -= 1;
        }
        let threshold = self.reconstruction_threshold.clamp(2, shares.max(2));
        let mut config = SecAggConfig::new(shares, threshold, dimension);
        config.clipping_range = self.clipping_range;
        config.quantization_range = self.quantization_range;
        config.stage_timeout_ms = self.stage_timeout_ms;
        config.max_weight = if unit_weights { 1 } else { self.max_weight.max(1) };
        config
    }
}

/// What the coordinator accounts for under differential privacy.
#[derive(Clone, Debug, PartialEq)]
pub struct PrivacyConfig {
    /// δ of the (ε, δ) it reports.
    pub delta: f64,
    /// Stop before a round that would take ε (classic conversion) past this.
    pub budget: Option<f64>,
}

/// A configuration the coordinator cannot run.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No clients, or none per round.
    #[error("clients_per_round ({per_round}) must be between 1 and num_clients ({num_clients})")]
    ClientsPerRound {
        /// Sampled per round.
        per_round: u32,
        /// In the federation.
        num_clients: u32,
    },
    /// `min_updates` outside `1..=clients_per_round`.
    #[error(
        "min_updates = {min} is more than the {per_round} clients sampled per round, so no round could \
         aggregate; lower --min-updates or raise --fraction"
    )]
    MinUpdates {
        /// The minimum.
        min: u32,
        /// Sampled per round.
        per_round: u32,
    },
    /// `min_updates` is 0.
    #[error("min_updates must be at least 1")]
    NoMinUpdates,
    /// The strategy's rule needs more updates than a round can bring.
    #[error(
        "strategy {strategy} needs at least {needs} updates per round, but only {per_round} clients are sampled \
         (raise --fraction or lower --robust-f)"
    )]
    StrategyMinimum {
        /// The strategy, described.
        strategy: String,
        /// Updates it needs.
        needs: usize,
        /// Sampled per round.
        per_round: u32,
    },
    /// The first round is past the last.
    #[error("first round {first} is past the last round {last}")]
    FirstRound {
        /// The first round.
        first: u32,
        /// The last.
        last: u32,
    },
    /// Secure aggregation with a rule that needs the individual updates.
    #[error(
        "secure aggregation reveals only the sum, so it works with mean-based strategies \
         (fedavg, fedavgm, fedprox, fedadam, fedyogi, fedadagrad), not {0}"
    )]
    SecureNeedsMean(String),
    /// Secure aggregation with no round deadline: a trainer that never becomes ready would
    /// hold the round forever.
    #[error("secure aggregation needs a round deadline (--round-timeout-ms): a trainer that fails would hold the round forever")]
    SecureNeedsDeadline,
    /// Secure aggregation in rounds of one client.
    #[error("secure aggregation needs at least 2 clients per round (raise --fraction)")]
    SecureRoundTooSmall,
    /// Adaptive clipping needs the count of unclipped updates, which secure aggregation hides.
    #[error(
        "adaptive clipping needs the count of unclipped updates, which secure aggregation hides; \
         use fixed clipping (--dp-adaptive-clip false) with --secagg"
    )]
    SecureAdaptiveClipping,
    /// SecAgg+ settings that cannot work for this round size.
    #[error("secure aggregation: {0}")]
    Secure(String),
    /// Privacy accounting without differential privacy in the strategy.
    #[error("privacy accounting needs a strategy with differential privacy")]
    PrivacyWithoutDp,
    /// δ outside (0, 1).
    #[error("dp_delta = {0} must be in (0, 1)")]
    Delta(f64),
    /// The accountant refused the settings.
    #[error("privacy accounting: {0}")]
    Accountant(String),
    /// The budget does not cover the first round to run.
    #[error(
        "the privacy budget ε = {budget} does not cover round {round} (it would reach ε = {would_reach:.4} \
         at δ = {delta}); raise --dp-epsilon or --dp-noise-multiplier"
    )]
    BudgetTooSmall {
        /// The budget.
        budget: f64,
        /// The first round to run.
        round: u32,
        /// ε after it.
        would_reach: f64,
        /// δ.
        delta: f64,
    },
}

impl RoundConfig {
    /// Checks that a run of rounds `first_round ..= rounds` with `strategy` can work. See the
    /// module docs.
    pub fn validate(&self, strategy: &StrategyConfig, first_round: u32) -> Result<(), ConfigError> {
        let (per_round, num_clients) = (self.clients_per_round, self.num_clients);
        if per_round == 0 || per_round > num_clients {
            return Err(ConfigError::ClientsPerRound { per_round, num_clients });
        }
        if self.min_updates == 0 {
            return Err(ConfigError::NoMinUpdates);
        }
        if self.min_updates > per_round {
            return Err(ConfigError::MinUpdates { min: self.min_updates, per_round });
        }
        let needs = strategy.min_updates();
        if needs > per_round as usize {
            return Err(ConfigError::StrategyMinimum { strategy: strategy.describe(), needs, per_round });
        }
        let first_round = first_round.max(1);
        if first_round > self.rounds {
            return Err(ConfigError::FirstRound { first: first_round, last: self.rounds });
        }
        if let Some(secure) = &self.secure {
            if strategy.rule != Rule::Mean || strategy.bucket_size.is_some() {
                return Err(ConfigError::SecureNeedsMean(strategy.describe()));
            }
            if per_round < 2 {
                return Err(ConfigError::SecureRoundTooSmall);
            }
            if self.round_timeout_ms.is_none() {
                return Err(ConfigError::SecureNeedsDeadline);
            }
            let (t, shares) = (secure.reconstruction_threshold, secure.num_shares);
            if t < 2 || t > shares {
                return Err(ConfigError::Secure(format!(
                    "the reconstruction threshold {t} must be between 2 and the {shares} shares of a secret"
                )));
            }
            if matches!(strategy.dp, Some(DpConfig { clipping: Clipping::Adaptive { .. }, .. })) {
                return Err(ConfigError::SecureAdaptiveClipping);
            }
            // The largest session a round can open: every sampled client ready.
            secure
                .session(per_round as usize, 1, strategy.dp.is_some())
                .validate_for(per_round as usize)
                .map_err(|e| ConfigError::Secure(e.to_string()))?;
        }
        if let Some(privacy) = &self.privacy {
            let dp = strategy.dp.as_ref().ok_or(ConfigError::PrivacyWithoutDp)?;
            let account = PrivacyAccount::new(privacy, dp, num_clients, first_round)?;
            if let Some(would_reach) = account.next_round_exceeds_budget()? {
                return Err(ConfigError::BudgetTooSmall {
                    budget: privacy.budget.unwrap_or(f64::INFINITY),
                    round: first_round,
                    would_reach,
                    delta: privacy.delta,
                });
            }
        }
        Ok(())
    }
}
