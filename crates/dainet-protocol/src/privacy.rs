//! Privacy accounting of a federated run under differential privacy: the coordinator composes
//! every round it runs and refuses to open one that would take ε past the budget.
//!
//! Each round samples m of K clients; the accountant (`dainet_privacy::accountant`, Rényi DP
//! of the subsampled Gaussian) assumes Poisson sampling with q = m/K, the usual approximation
//! for fixed-size sampling, and noise multiplier z. ε is reported at the run's δ with the
//! classic conversion (the budget's) and the tighter one of Balle et al. 2020.
//!
//! With distributed noise each of the m trainers adds a share N(0, z²C²/m); a round whose sum
//! holds only n < m shares (dropouts, a deadline) carries noise z·√(n/m), and that is what is
//! composed (a lower bound on the true multiplier under adaptive clipping, so ε is never
//! under-reported). The budget check before a round assumes all m shares; the ε reported is
//! what the round actually spent.

use crate::config::{ConfigError, PrivacyConfig};
use dainet_agg::dp::{DpConfig, NoisePlacement};
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
    /// Whether the noise comes in shares from the trainers, and m, the shares of a full round.
    distributed: Option<usize>,
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
        let distributed = (dp.placement == NoisePlacement::Distributed).then_some(dp.clients_per_round);
        Ok(Self {
            accountant,
            q,
            z: dp.noise_multiplier,
            delta: config.delta,
            budget: config.budget,
            spent,
            distributed,
        })
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

    /// Composes one round whose released model (if `released`) holds the noise shares of
    /// `contributors` trainers; returns what has been spent. A round that released nothing new
    /// is composed at the full multiplier (conservatively).
    pub(crate) fn compose_round(&mut self, released: bool, contributors: usize) -> Result<PrivacySpent, ConfigError> {
        let err = |e: dainet_privacy::accountant::AccountantError| ConfigError::Accountant(e.to_string());
        let z = match self.distributed {
            Some(m) if released && contributors < m => self.z * (contributors as f64 / m as f64).sqrt(),
            _ => self.z,
        };
        self.accountant.compose(self.q, z, 1).map_err(err)?;
        let epsilon = self.accountant.epsilon(self.delta, Conversion::Classic).map_err(err)?;
        let epsilon_tight = self.accountant.epsilon(self.delta, Conversion::Tight).map_err(err)?;
        let epsilon_round = epsilon - self.spent;
        self.spent = epsilon;
        Ok(PrivacySpent { epsilon, epsilon_tight, epsilon_round, delta: self.delta })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dainet_agg::dp::Clipping;

    fn account(placement: NoisePlacement) -> PrivacyAccount {
        let dp = DpConfig {
            noise_multiplier: 1.0,
            clipping: Clipping::Fixed { norm: 1.0 },
            placement,
            clients_per_round: 10,
        };
        PrivacyAccount::new(&PrivacyConfig { delta: 1e-5, budget: None }, &dp, 100, 1).unwrap()
    }

    #[test]
    fn a_round_with_fewer_noise_shares_spends_more() {
        let full = account(NoisePlacement::Distributed).compose_round(true, 10).unwrap().epsilon;
        let short = account(NoisePlacement::Distributed).compose_round(true, 5).unwrap().epsilon;
        assert!(short > full, "5 of 10 noise shares: ε {short} should exceed {full}");
        // Central noise is the coordinator's, whoever answered; a round that released nothing
        // new is composed at the full multiplier.
        assert_eq!(account(NoisePlacement::Central).compose_round(true, 5).unwrap().epsilon, full);
        assert_eq!(account(NoisePlacement::Distributed).compose_round(false, 0).unwrap().epsilon, full);
        let mut two = account(NoisePlacement::Central);
        let (a, b) = (two.compose_round(true, 10).unwrap(), two.compose_round(true, 10).unwrap());
        assert!((a.epsilon_round + b.epsilon_round - b.epsilon).abs() < 1e-12);
    }
}
