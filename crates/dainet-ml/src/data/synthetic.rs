//! The Synthetic(α, β) federated dataset of FedProx.
//!
//! This module owns the generator of Li et al. 2020 ("Federated Optimization in
//! Heterogeneous Networks", <https://arxiv.org/abs/1812.06127>, section 5.1), after the
//! `generate_synthetic.py` script of the FedProx repository
//! (<https://github.com/litian96/FedProx>, `data/synthetic_*`). With `K` devices, `d`
//! features and `C` classes (the paper: 30, 60, 10), device `k`:
//!
//! - holds `n_k = ⌊exp(4 + 2·z)⌋ + 50` rows, `z ~ N(0, 1)` (a log-normal(4, 2) size plus 50),
//!   capped at [`MAX_DEVICE_ROWS`];
//! - draws `u_k ~ N(0, α)` and `B_k ~ N(0, β)`;
//! - draws its model `W_k` (`C × d`) and `b_k` (`C`) with entries `~ N(u_k, 1)`, and its
//!   feature mean `v_k` (`d`) with entries `~ N(B_k, 1)`;
//! - draws each row `x ~ N(v_k, Σ)`, `Σ` diagonal with `Σ_jj = j^(−1.2)` (`j = 1..d`),
//!   labelled `y = argmax softmax(W_k x + b_k)` (the first class on a tie).
//!
//! **`N(m, s)` means mean `m` and *variance* `s`** (standard deviation `√s`), as the paper
//! writes it. The FedProx script passes `α` and `β` to `np.random.normal` as standard
//! deviations instead; the two agree for the paper's settings α, β ∈ {0, 1} and differ for
//! (0.5, 0.5), where this generator's `u_k` and `B_k` have standard deviation `√0.5 ≈ 0.71`
//! rather than `0.5`.
//!
//! Note that `u_k` adds the same `u_k · (Σ_j x_j + 1)` to every class's logit, so `α` never
//! changes a label: the label heterogeneity across devices comes from each device's own
//! `W_k`, `b_k` and from `β` moving the features. (For a fixed seed, two `α`s give the same
//! labels up to rounding.)
//!
//! Guarantees:
//! - all randomness comes from the caller's [`SplitMix64`], drawn in a fixed order: the `K`
//!   sizes, the `K` values `u_k`, the `K` values `B_k`, then `v_1 .. v_K`, then per device
//!   `W_k` (class-major), `b_k` and its rows (feature-major within a row); so the data is a
//!   function of the seed and the configuration;
//! - rows are grouped by device, device 0's first, and each row's label is computed from
//!   its stored (`f32`) features;
//! - every device has at least 50 rows and at most [`MAX_DEVICE_ROWS`], and the whole
//!   dataset at most [`MAX_TOTAL_VALUES`] feature values (the paper's configuration always
//!   fits); a configuration that cannot fit, or is otherwise invalid, is a
//!   [`SyntheticError`], never a panic.

use std::collections::BTreeMap;

use dainet_core::SplitMix64;

use super::{Dataset, DatasetError, Partition};

/// The fewest rows a device gets (the `+ 50` of the size formula).
pub const MIN_DEVICE_ROWS: usize = 50;

/// The most rows a device gets: log-normal sizes are unbounded (`exp(4 + 2z)` passes
/// 100,000 for `z > 3.76`, about one device in 12,000), so larger draws are cut to this.
pub const MAX_DEVICE_ROWS: usize = 100_000;

/// The most feature values (rows × features) one generated dataset may hold: 2^28, 1 GiB of
/// `f32`. Thirty devices of 60 features fit even at [`MAX_DEVICE_ROWS`] each.
pub const MAX_TOTAL_VALUES: usize = 1 << 28;

/// The largest `alpha` or `beta` accepted (a standard deviation of 1,000), which keeps every
/// feature and logit far inside the range of `f32`.
pub const MAX_VARIANCE: f64 = 1e6;

/// The settings of Synthetic(α, β).
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticConfig {
    /// The variance of `u_k`, how far devices' models differ; in `[0, MAX_VARIANCE]`.
    pub alpha: f64,
    /// The variance of `B_k`, how far devices' feature means differ; in `[0, MAX_VARIANCE]`.
    pub beta: f64,
    /// The number of devices (the paper: 30).
    pub devices: usize,
    /// Features per row (the paper: 60).
    pub features: usize,
    /// Classes (the paper: 10).
    pub classes: usize,
}

impl Default for SyntheticConfig {
    /// Synthetic(1, 1) at the paper's sizes: 30 devices, 60 features, 10 classes.
    fn default() -> Self {
        Self { alpha: 1.0, beta: 1.0, devices: 30, features: 60, classes: 10 }
    }
}

impl SyntheticConfig {
    /// Checks the settings: `alpha` and `beta` finite in `[0, MAX_VARIANCE]`, every size
    /// positive, and even the smallest possible dataset (50 rows per device) and one
    /// device's model (`classes × features`) within [`MAX_TOTAL_VALUES`].
    pub fn validate(&self) -> Result<(), SyntheticError> {
        for (name, value) in [("alpha", self.alpha), ("beta", self.beta)] {
            if !(0.0..=MAX_VARIANCE).contains(&value) {
                return Err(SyntheticError::BadParameter { name, value });
            }
        }
        for (name, value) in [("devices", self.devices), ("features", self.features), ("classes", self.classes)] {
            if value == 0 {
                return Err(SyntheticError::ZeroSize { name });
            }
        }
        let smallest = self.devices as u128 * MIN_DEVICE_ROWS as u128 * self.features as u128;
        let model = self.classes as u128 * self.features as u128;
        for values in [smallest, model] {
            if values > MAX_TOTAL_VALUES as u128 {
                return Err(SyntheticError::TooLarge { values, max: MAX_TOTAL_VALUES });
            }
        }
        Ok(())
    }
}

/// An error generating or splitting synthetic data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyntheticError {
    /// `alpha` or `beta` is negative, too large or not finite.
    #[error("{name} must be finite and in [0, {MAX_VARIANCE}], got {value}")]
    BadParameter {
        /// `alpha` or `beta`.
        name: &'static str,
        /// The value given.
        value: f64,
    },
    /// A size is zero.
    #[error("{name} must be at least 1")]
    ZeroSize {
        /// `devices`, `features` or `classes`.
        name: &'static str,
    },
    /// The data would hold too many values.
    #[error("synthetic data would hold {values} values, more than the limit of {max}; use fewer devices or features")]
    TooLarge {
        /// Values needed.
        values: u128,
        /// The limit, [`MAX_TOTAL_VALUES`].
        max: usize,
    },
    /// The test fraction is not in `[0, 1]`.
    #[error("test fraction must be in [0, 1], got {0}")]
    BadTestFraction(f64),
    /// `device_of_row` does not have one entry per row.
    #[error("{ids} device ids for {rows} rows")]
    DeviceIdCount {
        /// Entries in `device_of_row`.
        ids: usize,
        /// Rows in the dataset.
        rows: usize,
    },
    /// Building the dataset failed (an internal invariant; not expected).
    #[error(transparent)]
    Dataset(#[from] DatasetError),
}

/// Generated data: the rows of all devices and the device of each row.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticData {
    /// All rows, grouped by device.
    pub dataset: Dataset,
    /// `device_of_row[i]` is the device of row `i`.
    pub device_of_row: Vec<usize>,
}

impl SyntheticData {
    /// One client per distinct device id, in ascending id order, holding that device's row
    /// indices in ascending order. For [`generate`]'s output and the training half of
    /// [`SyntheticData::split_per_device`], client `k` is device `k`.
    pub fn device_partition(&self) -> Partition {
        Partition::from_clients(self.rows_by_device().into_values().collect())
    }

    /// Splits every device's rows: its last `⌊test_fraction · m⌋` rows (of `m`) go to the
    /// test set, but at least one row stays for training; FedProx uses 20% (its script:
    /// 10%). Rows are i.i.d. within a device, so the last ones are a random sample. Both
    /// halves keep the device ids and are grouped by device in ascending id order.
    ///
    /// Errors if `test_fraction` is not in `[0, 1]` or `device_of_row` does not have one
    /// entry per row.
    pub fn split_per_device(&self, test_fraction: f64) -> Result<(SyntheticData, SyntheticData), SyntheticError> {
        if !(0.0..=1.0).contains(&test_fraction) {
            return Err(SyntheticError::BadTestFraction(test_fraction));
        }
        if self.device_of_row.len() != self.dataset.len() {
            return Err(SyntheticError::DeviceIdCount { ids: self.device_of_row.len(), rows: self.dataset.len() });
        }
        let (mut train_rows, mut train_ids, mut test_rows, mut test_ids) = (vec![], vec![], vec![], vec![]);
        for (device, rows) in self.rows_by_device() {
            let m = rows.len();
            let test = ((test_fraction * m as f64).floor() as usize).min(m.saturating_sub(1));
            let (train, held_out) = rows.split_at(m - test);
            train_rows.extend_from_slice(train);
            train_ids.extend(std::iter::repeat_n(device, train.len()));
            test_rows.extend_from_slice(held_out);
            test_ids.extend(std::iter::repeat_n(device, held_out.len()));
        }
        let train = SyntheticData { dataset: self.dataset.select(&train_rows), device_of_row: train_ids };
        let test = SyntheticData { dataset: self.dataset.select(&test_rows), device_of_row: test_ids };
        Ok((train, test))
    }

    /// Row indices per device id, ascending. Only indices below the dataset's length.
    fn rows_by_device(&self) -> BTreeMap<usize, Vec<usize>> {
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, &device) in self.device_of_row.iter().enumerate().take(self.dataset.len()) {
            groups.entry(device).or_default().push(i);
        }
        groups
    }
}

/// The rows of a device whose size draw is `z ~ N(0, 1)`: `⌊exp(4 + 2z)⌋ + 50`, at most
/// [`MAX_DEVICE_ROWS`].
fn device_rows(z: f64) -> usize {
    // `as` saturates: an infinite exponential becomes usize::MAX, then the cap.
    ((4.0 + 2.0 * z).exp().floor() as usize).saturating_add(MIN_DEVICE_ROWS).min(MAX_DEVICE_ROWS)
}

/// Generates Synthetic(α, β) as described in the [module documentation](self).
///
/// ```
/// use dainet_core::SplitMix64;
/// use dainet_ml::data::synthetic::{generate, SyntheticConfig};
/// let data = generate(&SyntheticConfig::default(), &mut SplitMix64::new(1)).unwrap();
/// assert_eq!(data.device_partition().num_clients(), 30);
/// assert_eq!(data.dataset.dim(), 60);
/// ```
///
/// Errors if the configuration is invalid ([`SyntheticConfig::validate`]) or the drawn
/// sizes would exceed [`MAX_TOTAL_VALUES`].
pub fn generate(config: &SyntheticConfig, rng: &mut SplitMix64) -> Result<SyntheticData, SyntheticError> {
    config.validate()?;
    let SyntheticConfig { alpha, beta, devices, features, classes } = *config;
    let sizes: Vec<usize> = (0..devices).map(|_| device_rows(rng.next_normal())).collect();
    let total_rows: u128 = sizes.iter().map(|&n| n as u128).sum();
    let values = total_rows * features as u128;
    if values > MAX_TOTAL_VALUES as u128 {
        return Err(SyntheticError::TooLarge { values, max: MAX_TOTAL_VALUES });
    }
    let total_rows = total_rows as usize;
    let model_shift: Vec<f64> = (0..devices).map(|_| alpha.sqrt() * rng.next_normal()).collect();
    let feature_shift: Vec<f64> = (0..devices).map(|_| beta.sqrt() * rng.next_normal()).collect();
    let feature_means: Vec<Vec<f64>> =
        feature_shift.iter().map(|&b| (0..features).map(|_| b + rng.next_normal()).collect()).collect();
    // Standard deviations sqrt(j^-1.2) = j^-0.6.
    let feature_sd: Vec<f64> = (1..=features).map(|j| (j as f64).powf(-0.6)).collect();

    let mut x = Vec::with_capacity(total_rows * features);
    let mut labels = Vec::with_capacity(total_rows);
    let mut device_of_row = Vec::with_capacity(total_rows);
    let mut weights = vec![0.0f64; classes * features];
    let mut bias = vec![0.0f64; classes];
    for (k, (&rows, &u)) in sizes.iter().zip(&model_shift).enumerate() {
        for w in weights.iter_mut().chain(bias.iter_mut()) {
            *w = u + rng.next_normal();
        }
        for _ in 0..rows {
            let start = x.len();
            x.extend(feature_means[k].iter().zip(&feature_sd).map(|(&m, &sd)| (m + sd * rng.next_normal()) as f32));
            let row = &x[start..];
            let mut best = (0usize, f64::NEG_INFINITY);
            for (c, (w, &b)) in weights.chunks_exact(features).zip(&bias).enumerate() {
                let logit = b + w.iter().zip(row).map(|(&w, &v)| w * f64::from(v)).sum::<f64>();
                if logit > best.1 {
                    best = (c, logit);
                }
            }
            labels.push(best.0 as u32);
            device_of_row.push(k);
        }
    }
    Ok(SyntheticData { dataset: Dataset::new(x, labels, features, classes)?, device_of_row })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(alpha: f64, beta: f64) -> SyntheticConfig {
        SyntheticConfig { alpha, beta, ..SyntheticConfig::default() }
    }

    fn gen(alpha: f64, beta: f64, seed: u64) -> SyntheticData {
        generate(&config(alpha, beta), &mut SplitMix64::new(seed)).unwrap()
    }

    /// Mean feature vector of each device.
    fn device_means(data: &SyntheticData) -> Vec<Vec<f64>> {
        let d = data.dataset.dim();
        data.device_partition()
            .clients()
            .iter()
            .map(|rows| {
                let mut mean = vec![0.0; d];
                for &i in rows {
                    for (m, &v) in mean.iter_mut().zip(data.dataset.row(i)) {
                        *m += f64::from(v) / rows.len() as f64;
                    }
                }
                mean
            })
            .collect()
    }

    #[test]
    fn paper_sizes_and_row_grouping() {
        let data = gen(1.0, 1.0, 1);
        let ds = &data.dataset;
        assert_eq!((ds.dim(), ds.num_classes()), (60, 10));
        assert_eq!(data.device_of_row.len(), ds.len());
        assert!(data.device_of_row.windows(2).all(|w| w[0] <= w[1]), "rows are grouped by device");
        let p = data.device_partition();
        assert_eq!(p.num_clients(), 30);
        assert!(p.clients().iter().all(|c| (MIN_DEVICE_ROWS..=MAX_DEVICE_ROWS).contains(&c.len())));
        for (k, rows) in p.clients().iter().enumerate() {
            assert!(rows.windows(2).all(|w| w[1] == w[0] + 1));
            assert!(rows.iter().all(|&i| data.device_of_row[i] == k));
        }
        assert!(ds.labels().iter().all(|&y| y < 10));
        assert!(ds.features().iter().all(|v| v.is_finite()));
        // Log-normal sizes: the median device is small (~55 + 50) while some are large.
        let mut sizes: Vec<usize> = p.clients().iter().map(Vec::len).collect();
        sizes.sort_unstable();
        assert!(sizes[15] < 400 && sizes[29] > 200, "{sizes:?}");
        // More than one class overall.
        assert!(ds.label_counts(0..ds.len()).iter().filter(|&&c| c > 0).count() >= 3);
    }

    #[test]
    fn generation_is_deterministic_for_a_seed() {
        assert_eq!(gen(0.5, 0.5, 7), gen(0.5, 0.5, 7));
        assert_ne!(gen(0.5, 0.5, 7).dataset, gen(0.5, 0.5, 8).dataset);
    }

    #[test]
    fn labels_follow_each_devices_model() {
        // With beta = 0 and alpha = 0 every device has its own W_k, so most devices have a
        // clear majority class and devices disagree on it.
        let data = gen(0.0, 0.0, 3);
        let counts = data.device_partition().label_counts(data.dataset.labels(), 10);
        let majorities: Vec<usize> =
            counts.iter().map(|c| (0..10).max_by_key(|&j| (c[j], std::cmp::Reverse(j))).unwrap()).collect();
        let mut distinct = majorities.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() >= 4, "majority classes {majorities:?}");
    }

    #[test]
    fn alpha_shifts_every_logit_equally_and_leaves_labels_alone() {
        // u_k adds u_k * (sum x + 1) to every class's logit: the argmax cannot change.
        let (a, b) = (gen(0.0, 1.0, 5), gen(4.0, 1.0, 5));
        assert_eq!(a.dataset.features(), b.dataset.features());
        let same = a.dataset.labels().iter().zip(b.dataset.labels()).filter(|(x, y)| x == y).count();
        assert!(same as f64 >= 0.999 * a.dataset.len() as f64, "{same} of {}", a.dataset.len());
    }

    #[test]
    fn beta_spreads_the_devices_feature_means() {
        // E|v_k - v_l|^2 = 2d(1 + beta): 120 for beta = 0, 240 for beta = 1 (d = 60).
        let spread = |data: &SyntheticData| {
            let means = device_means(data);
            let mut total = 0.0;
            let mut pairs = 0;
            for i in 0..means.len() {
                for j in i + 1..means.len() {
                    total += means[i].iter().zip(&means[j]).map(|(a, b)| (a - b).powi(2)).sum::<f64>();
                    pairs += 1;
                }
            }
            total / pairs as f64
        };
        for seed in 1..=3 {
            let (s0, s1) = (spread(&gen(0.0, 0.0, seed)), spread(&gen(1.0, 1.0, seed)));
            assert!((90.0..150.0).contains(&s0), "seed {seed}: beta 0 spread {s0}");
            assert!(s1 > 1.3 * s0, "seed {seed}: beta 1 spread {s1} vs beta 0 {s0}");
        }
    }

    #[test]
    fn within_device_variance_follows_the_covariance() {
        let data = gen(0.0, 0.0, 2);
        let means = device_means(&data);
        let (n, d) = (data.dataset.len() as f64, data.dataset.dim());
        let mut var = vec![0.0; d];
        for i in 0..data.dataset.len() {
            let m = &means[data.device_of_row[i]];
            for (j, &v) in data.dataset.row(i).iter().enumerate() {
                var[j] += (f64::from(v) - m[j]).powi(2) / n;
            }
        }
        // Sigma_jj = j^-1.2: 1 for j = 1, 60^-1.2 ≈ 0.0074 for j = 60.
        assert!((var[0] - 1.0).abs() < 0.1, "var_1 {}", var[0]);
        let want = 60f64.powf(-1.2);
        assert!((var[59] / want - 1.0).abs() < 0.15, "var_60 {} want {want}", var[59]);
        assert!(var[0] > var[9] && var[9] > var[29] && var[29] > var[59], "{var:?}");
    }

    #[test]
    fn device_sizes_are_floored_offset_and_capped() {
        assert_eq!(device_rows(0.0), 54 + 50); // floor(e^4) = 54
        assert_eq!(device_rows(-10.0), 50);
        assert_eq!(device_rows(3.7), 89_321 + 50); // floor(e^11.4)
        assert_eq!(device_rows(3.8), MAX_DEVICE_ROWS);
        assert_eq!(device_rows(f64::INFINITY), MAX_DEVICE_ROWS);
    }

    #[test]
    fn split_per_device_takes_each_devices_last_rows() {
        let data = gen(1.0, 1.0, 4);
        let (train, test) = data.split_per_device(0.2).unwrap();
        assert_eq!(train.dataset.len() + test.dataset.len(), data.dataset.len());
        let (whole, tr, te) = (data.device_partition(), train.device_partition(), test.device_partition());
        assert_eq!((tr.num_clients(), te.num_clients()), (30, 30));
        for k in 0..30 {
            let rows = whole.client(k);
            let m = rows.len();
            let n_test = (0.2 * m as f64).floor() as usize;
            assert_eq!(te.client(k).len(), n_test, "device {k}");
            assert_eq!(tr.client(k).len(), m - n_test);
            for (p, &i) in tr.client(k).iter().chain(te.client(k)).enumerate() {
                assert_eq!(
                    if p < m - n_test { train.dataset.row(i) } else { test.dataset.row(i) },
                    data.dataset.row(rows[p])
                );
            }
            assert!(train.device_of_row.iter().filter(|&&d| d == k).count() == m - n_test);
        }
        // Everything to test still leaves one training row per device; nothing to test
        // leaves the data as it was.
        let (train, test) = data.split_per_device(1.0).unwrap();
        assert_eq!(train.dataset.len(), 30);
        assert_eq!(test.dataset.len(), data.dataset.len() - 30);
        let (train, test) = data.split_per_device(0.0).unwrap();
        assert_eq!(train, data);
        assert!(test.dataset.is_empty() && test.device_partition().num_clients() == 0);
    }

    #[test]
    fn invalid_settings_are_errors() {
        let rng = &mut SplitMix64::new(1);
        for (alpha, beta) in [(-0.1, 1.0), (f64::NAN, 1.0), (1.0, f64::INFINITY), (1.0, 2e6)] {
            let err = generate(&config(alpha, beta), rng).unwrap_err();
            assert!(matches!(err, SyntheticError::BadParameter { .. }), "{err:?}");
        }
        for (devices, features, classes, name) in
            [(0, 60, 10, "devices"), (30, 0, 10, "features"), (30, 60, 0, "classes")]
        {
            let c = SyntheticConfig { devices, features, classes, ..SyntheticConfig::default() };
            assert!(matches!(generate(&c, rng), Err(SyntheticError::ZeroSize { name: n }) if n == name));
        }
        let huge = SyntheticConfig { devices: usize::MAX, ..SyntheticConfig::default() };
        assert!(matches!(generate(&huge, rng), Err(SyntheticError::TooLarge { .. })));
        let wide = SyntheticConfig { features: 1 << 20, classes: 1 << 10, devices: 1, ..SyntheticConfig::default() };
        assert!(matches!(generate(&wide, rng), Err(SyntheticError::TooLarge { .. })));
        // Nothing was drawn by the refused configurations.
        assert_eq!(rng.next_u64(), SplitMix64::new(1).next_u64());

        let data = gen(0.0, 0.0, 1);
        for f in [-0.5, 1.5, f64::NAN] {
            assert!(matches!(data.split_per_device(f), Err(SyntheticError::BadTestFraction(_))));
        }
        let broken = SyntheticData { device_of_row: vec![0; 3], ..data };
        assert!(matches!(broken.split_per_device(0.2), Err(SyntheticError::DeviceIdCount { ids: 3, .. })));
    }
}
