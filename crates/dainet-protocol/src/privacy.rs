//! Privacy accounting of a federated run under differential privacy: the coordinator composes
//! every round it runs and refuses to open one that would take ε past the budget.
//!
//! Each round samples m of K clients; the accountant (`dainet_privacy::accountant`, Rényi DP
//! of the subsampled Gaussian) assumes Poisson sampling with q = m/K, the usual approximation
//! for fixed-size sampling, and noise multiplier z. ε is reported at the run's δ with the
//! classic conversion (the budget's) and the tighter one of Balle et al. 2020.

use crate::config::{ConfigError, PrivacyConfig};
use dainet_agg::dp::DpConfig;
use dainet_privacy::accountant::{default_orders, Conversion, RdpAccountant};

/// The privacy spent by a run, as of one round.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PrivacySpent {
    /// ε spent by all rounds so far (classic conversion), at `delta`.
    pub epsilon: f64,
    /// The same with the tighter conversion.
    pub epsilon_tight: f64,
    /// What this round added to `epsilon` (classic): the rounds' values sum to the total.
    pub epsilon_round: f64,
    /// δ.
    pub delta: f64,
}

/// The accountant of a run: the RDP of every round so far, and the budget.
#[derive(Clone, Debug)]
pub(crate) struct PrivacyAccount {
    accountant: RdpAccountant,
    q: f64,
    z: f64,
    delta: f64,
    budget: Option<f64>,
    /// ε (classic) after the rounds composed so far.
    spent: f64,
}

impl PrivacyAccount {
    /// The account of a run with `dp` among `num_clients`, with the rounds before
    /// `first_round` already composed.
    pub(crate) fn new(
        config: &PrivacyConfig,
        dp: &DpConfig,
        num_clients: u32,
        first_round: u32,
    ) -> Result<Self, ConfigError> {
        if !(config.delta > 0.0 && config.delta < 1.0) {
            return Err(ConfigError::Delta(config.delta));
        }
        let err = |e: dainet_privacy::accountant::AccountantError| ConfigError::Accountant(e.to_string());
        let q = dp.clients_per_round as f64 / f64::from(num_clients.max(1));
        let mut accountant = RdpAccountant::new(default_orders()).map_err(err)?;
        let mut spent = 0.0;
        if first_round > 1 {
            accountant.compose(q, dp.noise_multiplier, u64::from(first_round - 1)).map_err(err)?;
            spent = accountant.epsilon(config.delta, Conversion::Classic).map_err(err)?;
        }
        Ok(Self { accountant, q, z: dp.noise_multiplier, delta: config.delta, budget: config.budget, spent })
    }

    /// `Some(ε)` if one more round would take ε past the budget (ε what it would reach).
    pub(crate) fn next_round_exceeds_budget(&self) -> Result<Option<f64>, ConfigError> {
        let Some(budget) = self.budget else { return Ok(None) };
        let next = self
            .accountant
            .epsilon_after(self.q, self.z, 1, self.delta, Conversion::Classic)
            .map_err(|e| ConfigError::Accountant(e.to_string()))?;
        Ok((next > budget).then_some(next))
    }

    /// The budget, if any.
    pub(crate) fn budget(&self) -> Option<f64> {
        self.budget
    }

    /// Composes one round; returns what has been spent.
    pub(crate) fn compose_round(&mut self) -> Result<PrivacySpent, ConfigError> {
        let err = |e: dainet_privacy::accountant::AccountantError| ConfigError::Accountant(e.to_string());
        self.accountant.compose(self.q, self.z, 1).map_err(err)?;
        let epsilon = self.accountant.epsilon(self.delta, Conversion::Classic).map_err(err)?;
        let epsilon_tight = self.accountant.epsilon(self.delta, Conversion::Tight).map_err(err)?;
        let epsilon_round = epsilon - self.spent;
        self.spent = epsilon;
        Ok(PrivacySpent { epsilon, epsilon_tight, epsilon_round, delta: self.delta })
    }
}
