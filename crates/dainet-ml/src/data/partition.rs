//! Seeded partitions of a training set among clients: IID, label shards, Dirichlet label
//! skew, and natural ids.
//!
//! This module owns how training examples are dealt to clients. It guarantees that:
//! - every partition covers each training row exactly once (each index in `0..n` appears in
//!   exactly one client, once);
//! - a partition depends only on the labels, the scheme, the client count and the task
//!   seed, drawing all randomness from the named [`SplitMix64`] streams, so the same inputs
//!   give the same partition on every machine;
//! - the IID and shard schemes reproduce fedtask-v1 (`shared/bench/fedtask-v1.md`, section
//!   Partitions) bit for bit;
//! - invalid requests (more clients than examples, a bad `alpha`, ...) are a
//!   [`PartitionError`], never a panic.

use std::collections::BTreeMap;

use dainet_core::{Purpose, SplitMix64};

/// How many times the Dirichlet scheme redraws before giving up on `min_size`.
pub const DIRICHLET_MAX_ATTEMPTS: usize = 1000;

/// Training-set row indices per client: client `k` holds `clients()[k]`, in a fixed order
/// (the order local training refers to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    clients: Vec<Vec<usize>>,
}

impl Partition {
    /// A partition with the given row indices per client.
    pub fn from_clients(clients: Vec<Vec<usize>>) -> Self {
        Self { clients }
    }

    /// The row indices of every client.
    pub fn clients(&self) -> &[Vec<usize>] {
        &self.clients
    }

    /// The number of clients.
    pub fn num_clients(&self) -> usize {
        self.clients.len()
    }

    /// The row indices of client `k`.
    ///
    /// # Panics
    /// If `k >= self.num_clients()`.
    pub fn client(&self, k: usize) -> &[usize] {
        &self.clients[k]
    }

    /// How many examples of each class each client holds: `result[k][c]`.
    ///
    /// # Panics
    /// If an index is not below `labels.len()` or a label is not below `num_classes`.
    pub fn label_counts(&self, labels: &[u32], num_classes: usize) -> Vec<Vec<usize>> {
        self.clients
            .iter()
            .map(|rows| {
                let mut counts = vec![0; num_classes];
                for &i in rows {
                    counts[labels[i] as usize] += 1;
                }
                counts
            })
            .collect()
    }
}

/// A way of dealing training examples to clients.
#[derive(Clone, Debug, PartialEq)]
pub enum PartitionScheme {
    /// Shuffle all rows, then cut them into equal consecutive chunks (fedtask-v1 IID).
    Iid,
    /// Sort rows by label, cut them into `clients * shards_per_client` shards, and deal each
    /// client `shards_per_client` random shards (fedtask-v1 non-IID, McMahan et al. 2017).
    Shards {
        /// Shards per client (fedtask-v1: 2).
        shards_per_client: usize,
    },
    /// Split each class among the clients in proportions drawn from Dir(`alpha`), redrawn
    /// until every client has at least `min_size` examples (Hsu et al. 2019). Smaller
    /// `alpha` means more label skew.
    Dirichlet {
        /// The concentration; must be positive and finite.
        alpha: f64,
        /// The fewest examples any client may get.
        min_size: usize,
    },
    /// One client per distinct natural id (e.g. a user or writer column).
    Natural,
}

/// An error partitioning a training set.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PartitionError {
    /// The training set has no examples.
    #[error("cannot partition an empty training set")]
    EmptyTrainingSet,
    /// Zero clients were asked for.
    #[error("--clients must be at least 1")]
    ZeroClients,
    /// More clients than examples.
    #[error("--clients {clients} but the training set has {examples} examples; every client needs at least one")]
    TooManyClients {
        /// Clients asked for.
        clients: usize,
        /// Training examples.
        examples: usize,
    },
    /// `shards_per_client` is zero.
    #[error("shards per client must be at least 1")]
    ZeroShards,
    /// More shards than examples.
    #[error("{clients} clients x {shards_per_client} shards per client is more shards than the {examples} training examples")]
    TooManyShards {
        /// Clients asked for.
        clients: usize,
        /// Shards per client.
        shards_per_client: usize,
        /// Training examples.
        examples: usize,
    },
    /// `alpha` is not positive and finite.
    #[error("Dirichlet alpha must be positive and finite, got {alpha}")]
    BadAlpha {
        /// The value given.
        alpha: f64,
    },
    /// `min_size * clients` exceeds the training set.
    #[error("Dirichlet min size {min_size} x {clients} clients exceeds the {examples} training examples")]
    MinSizeImpossible {
        /// The minimum asked for.
        min_size: usize,
        /// Clients asked for.
        clients: usize,
        /// Training examples.
        examples: usize,
    },
    /// No Dirichlet draw gave every client `min_size` examples.
    #[error("Dirichlet partition (alpha {alpha}) gave some client fewer than {min_size} examples in all {attempts} attempts; use a larger alpha or a smaller min size")]
    DirichletGaveUp {
        /// The concentration.
        alpha: f64,
        /// The minimum asked for.
        min_size: usize,
        /// Draws made.
        attempts: usize,
    },
    /// A label is not below the class count.
    #[error("label {label} at row {row} is not below the number of classes ({num_classes})")]
    Label {
        /// The label.
        label: u32,
        /// Its row.
        row: usize,
        /// The class count.
        num_classes: usize,
    },
    /// The natural scheme was asked for without ids.
    #[error("the natural partition needs a client id per example, but the data has no client id column")]
    MissingNaturalIds,
    /// There is not one natural id per example.
    #[error("the natural partition got {ids} client ids for {examples} examples")]
    NaturalIdCount {
        /// Ids given.
        ids: usize,
        /// Training examples.
        examples: usize,
    },
}

/// The distinct natural ids in `ids`, sorted (byte-wise string order): natural client `k`
/// of [`partition`] holds the rows whose id is `natural_client_ids(ids)[k]`.
pub fn natural_client_ids(ids: &[String]) -> Vec<String> {
    let mut distinct: Vec<String> = ids.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    distinct
}

/// Deals the rows `0..labels.len()` of a training set (row `i` has class `labels[i]`) to
/// clients by `scheme`, drawing randomness from the streams of `task_seed`.
///
/// - [`PartitionScheme::Iid`]: `idx = [0..n)` shuffled with the stream
///   ([`Purpose::IidPartition`], 0, 0); client `k` gets the `k`-th consecutive chunk. When
///   `n` is not a multiple of `num_clients`, the first `n % num_clients` clients get one
///   example more than the others.
/// - [`PartitionScheme::Shards`]: rows stably sorted by label, cut into
///   `S = num_clients * shards_per_client` consecutive shards (the first `n % S` one
///   longer); `perm = [0..S)` shuffled with ([`Purpose::ShardAssignment`], 0, 0); client `k`
///   gets shards `perm[k*s .. (k+1)*s]`, in that order.
/// - [`PartitionScheme::Dirichlet`]: one generator ([`Purpose::DirichletPartition`], 0, 0)
///   for all attempts. Each attempt, for each class in turn, shuffles the class's rows
///   (ascending first), draws `p ~ Dir(alpha)` over the clients (normalised
///   `next_gamma(alpha)` draws) and cuts the rows at `floor(cumsum(p) * count)`, appending
///   piece `k` to client `k`. It stops at the first attempt where every client has at least
///   `min_size` rows, and gives up after [`DIRICHLET_MAX_ATTEMPTS`].
/// - [`PartitionScheme::Natural`]: one client per distinct id of `natural_ids` (one id per
///   row), in the order of [`natural_client_ids`], each holding its rows in ascending
///   order. `num_clients` is ignored.
pub fn partition(
    scheme: &PartitionScheme,
    labels: &[u32],
    num_classes: usize,
    num_clients: usize,
    task_seed: u64,
    natural_ids: Option<&[String]>,
) -> Result<Partition, PartitionError> {
    let n = labels.len();
    if n == 0 {
        return Err(PartitionError::EmptyTrainingSet);
    }
    if let Some((row, &label)) = labels.iter().enumerate().find(|&(_, &l)| l as usize >= num_classes) {
        return Err(PartitionError::Label { label, row, num_classes });
    }
    if let PartitionScheme::Natural = scheme {
        return natural(labels, natural_ids);
    }
    if num_clients == 0 {
        return Err(PartitionError::ZeroClients);
    }
    if num_clients > n {
        return Err(PartitionError::TooManyClients { clients: num_clients, examples: n });
    }
    match *scheme {
        PartitionScheme::Iid => Ok(iid(n, num_clients, task_seed)),
        PartitionScheme::Shards { shards_per_client } => shards(labels, num_clients, shards_per_client, task_seed),
        PartitionScheme::Dirichlet { alpha, min_size } => {
            dirichlet(labels, num_classes, num_clients, alpha, min_size, task_seed)
        }
        PartitionScheme::Natural => natural(labels, natural_ids),
    }
}

/// The start of chunk `k` when `n` items are cut into `parts` chunks, the first `n % parts`
/// one longer.
fn chunk_start(n: usize, parts: usize, k: usize) -> usize {
    k * (n / parts) + k.min(n % parts)
}

fn iid(n: usize, num_clients: usize, task_seed: u64) -> Partition {
    let mut idx: Vec<usize> = (0..n).collect();
    SplitMix64::stream(task_seed, Purpose::IidPartition, 0, 0).shuffle(&mut idx);
    let clients = (0..num_clients)
        .map(|k| idx[chunk_start(n, num_clients, k)..chunk_start(n, num_clients, k + 1)].to_vec())
        .collect();
    Partition { clients }
}

fn shards(
    labels: &[u32],
    num_clients: usize,
    shards_per_client: usize,
    task_seed: u64,
) -> Result<Partition, PartitionError> {
    let n = labels.len();
    if shards_per_client == 0 {
        return Err(PartitionError::ZeroShards);
    }
    let too_many = PartitionError::TooManyShards { clients: num_clients, shards_per_client, examples: n };
    let num_shards = match num_clients.checked_mul(shards_per_client) {
        Some(s) if s <= n => s,
        _ => return Err(too_many),
    };
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| labels[i]); // stable
    let mut perm: Vec<usize> = (0..num_shards).collect();
    SplitMix64::stream(task_seed, Purpose::ShardAssignment, 0, 0).shuffle(&mut perm);
    let clients = perm
        .chunks_exact(shards_per_client)
        .map(|shard_ids| {
            shard_ids
                .iter()
                .flat_map(|&s| &order[chunk_start(n, num_shards, s)..chunk_start(n, num_shards, s + 1)])
                .copied()
                .collect()
        })
        .collect();
    Ok(Partition { clients })
}

fn dirichlet(
    labels: &[u32],
    num_classes: usize,
    num_clients: usize,
    alpha: f64,
    min_size: usize,
    task_seed: u64,
) -> Result<Partition, PartitionError> {
    let n = labels.len();
    if !(alpha.is_finite() && alpha > 0.0) {
        return Err(PartitionError::BadAlpha { alpha });
    }
    if min_size.checked_mul(num_clients).is_none_or(|total| total > n) {
        return Err(PartitionError::MinSizeImpossible { min_size, clients: num_clients, examples: n });
    }
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); num_classes];
    for (i, &label) in labels.iter().enumerate() {
        by_class[label as usize].push(i);
    }
    let mut gen = SplitMix64::stream(task_seed, Purpose::DirichletPartition, 0, 0);
    let mut proportions = vec![0.0f64; num_clients];
    for _ in 0..DIRICHLET_MAX_ATTEMPTS {
        let mut clients: Vec<Vec<usize>> = vec![Vec::new(); num_clients];
        for class_rows in &by_class {
            let mut rows = class_rows.clone();
            gen.shuffle(&mut rows);
            for p in proportions.iter_mut() {
                *p = gen.next_gamma(alpha);
            }
            let total: f64 = proportions.iter().sum();
            if !(total > 0.0 && total.is_finite()) {
                // Every draw underflowed (tiny alpha): the whole class goes to one client.
                proportions.fill(0.0);
                proportions[(gen.next_u64() % num_clients as u64) as usize] = 1.0;
            }
            let total: f64 = proportions.iter().sum();
            let count = rows.len();
            let mut cumulative = 0.0;
            let mut start = 0;
            for (k, (client, &p)) in clients.iter_mut().zip(&proportions).enumerate() {
                cumulative += p / total;
                let end = if k + 1 == num_clients {
                    count
                } else {
                    ((cumulative * count as f64).floor() as usize).clamp(start, count)
                };
                client.extend_from_slice(&rows[start..end]);
                start = end;
            }
        }
        if clients.iter().all(|c| c.len() >= min_size) {
            return Ok(Partition { clients });
        }
    }
    Err(PartitionError::DirichletGaveUp { alpha, min_size, attempts: DIRICHLET_MAX_ATTEMPTS })
}

fn natural(labels: &[u32], natural_ids: Option<&[String]>) -> Result<Partition, PartitionError> {
    let ids = natural_ids.ok_or(PartitionError::MissingNaturalIds)?;
    if ids.len() != labels.len() {
        return Err(PartitionError::NaturalIdCount { ids: ids.len(), examples: labels.len() });
    }
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        groups.entry(id.as_str()).or_default().push(i);
    }
    Ok(Partition { clients: groups.into_values().collect() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::idx::{load_idx_dataset, mnist_default_paths};
    use std::path::Path;
    use std::sync::OnceLock;

    const MNIST_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist/");

    /// The fedtask-v1 training pool's labels (the first 8,000 of the bundled MNIST).
    fn pool_labels() -> &'static [u32] {
        static LABELS: OnceLock<Vec<u32>> = OnceLock::new();
        LABELS.get_or_init(|| {
            let (images, labels) = mnist_default_paths(Path::new(MNIST_DIR));
            let d = load_idx_dataset(&images, &labels).expect("bundled MNIST loads");
            d.labels()[..8000].to_vec()
        })
    }

    fn run(scheme: &PartitionScheme, k: usize, seed: u64) -> Partition {
        partition(scheme, pool_labels(), 10, k, seed, None).unwrap()
    }

    fn assert_covers_once(p: &Partition, n: usize) {
        let mut seen = vec![0u32; n];
        for &i in p.clients().iter().flatten() {
            seen[i] += 1;
        }
        assert!(seen.iter().all(|&c| c == 1), "some index is missing or repeated");
    }

    fn distinct_labels(p: &Partition) -> Vec<usize> {
        p.label_counts(pool_labels(), 10).iter().map(|counts| counts.iter().filter(|&&c| c > 0).count()).collect()
    }

    // fedtask-v1, Test vectors: IID client 0 first 8 and client 99 last 4 pool indices.
    #[test]
    fn iid_matches_fedtask_v1() {
        let p = run(&PartitionScheme::Iid, 100, 1);
        assert_eq!(p.num_clients(), 100);
        assert!(p.clients().iter().all(|c| c.len() == 80));
        assert_eq!(&p.client(0)[..8], &[6670, 5963, 2902, 5515, 651, 6988, 7347, 1727]);
        assert_eq!(&p.client(99)[76..], &[6876, 3323, 891, 12]);
        assert_covers_once(&p, 8000);
    }

    // fedtask-v1, Test vectors: non-IID client 0 and the label-count histogram.
    #[test]
    fn shards_match_fedtask_v1() {
        let p = run(&PartitionScheme::Shards { shards_per_client: 2 }, 100, 1);
        assert!(p.clients().iter().all(|c| c.len() == 80));
        assert_eq!(&p.client(0)[..4], &[629, 632, 634, 641]);
        // "non-IID shards of client 0: 104, 175": shard s is order[40s .. 40s + 40) of the
        // stable sort by label.
        let mut order: Vec<usize> = (0..8000).collect();
        order.sort_by_key(|&i| pool_labels()[i]);
        let shards: Vec<usize> = [104, 175].iter().flat_map(|&s| order[40 * s..40 * s + 40].to_vec()).collect();
        assert_eq!(p.client(0), shards.as_slice());
        let counts = p.label_counts(pool_labels(), 10);
        let held: Vec<usize> = (0..10).filter(|&c| counts[0][c] > 0).collect();
        assert_eq!(held, vec![5, 8]);
        let distinct = distinct_labels(&p);
        let hist = |m: usize| distinct.iter().filter(|&&d| d == m).count();
        assert_eq!((hist(1), hist(2), hist(3)), (4, 88, 8));
        assert_covers_once(&p, 8000);
    }

    #[test]
    fn uneven_sizes_go_to_the_first_clients_and_shards() {
        let labels: Vec<u32> = (0..103).map(|i| (i % 3) as u32).collect();
        let p = partition(&PartitionScheme::Iid, &labels, 3, 10, 5, None).unwrap();
        let sizes: Vec<usize> = p.clients().iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![11, 11, 11, 10, 10, 10, 10, 10, 10, 10]);
        assert_covers_once(&p, 103);
        // 7 shards over 103 rows: sizes 15 x5 then 14 x2, so the total stays 103.
        let p = partition(&PartitionScheme::Shards { shards_per_client: 1 }, &labels, 3, 7, 5, None).unwrap();
        let mut sizes: Vec<usize> = p.clients().iter().map(Vec::len).collect();
        sizes.sort_unstable();
        assert_eq!(sizes, vec![14, 14, 15, 15, 15, 15, 15]);
        assert_covers_once(&p, 103);
    }

    #[test]
    fn every_scheme_covers_once_and_is_deterministic() {
        let ids: Vec<String> = (0..8000).map(|i| format!("w{}", i % 37)).collect();
        let schemes = [
            PartitionScheme::Iid,
            PartitionScheme::Shards { shards_per_client: 3 },
            PartitionScheme::Dirichlet { alpha: 0.5, min_size: 10 },
            PartitionScheme::Natural,
        ];
        for scheme in &schemes {
            let go = |seed| partition(scheme, pool_labels(), 10, 50, seed, Some(&ids)).unwrap();
            let (a, b, c) = (go(1), go(1), go(2));
            assert_covers_once(&a, 8000);
            assert_eq!(a, b, "{scheme:?} is not deterministic");
            if *scheme == PartitionScheme::Natural {
                assert_eq!(a, c, "the natural partition does not depend on the seed");
            } else {
                assert_ne!(a, c, "{scheme:?} ignores the seed");
            }
        }
    }

    #[test]
    fn dirichlet_respects_min_size_and_alpha_controls_skew() {
        let k = 20;
        let skewed = run(&PartitionScheme::Dirichlet { alpha: 0.1, min_size: 20 }, k, 1);
        let even = run(&PartitionScheme::Dirichlet { alpha: 100.0, min_size: 20 }, k, 1);
        for p in [&skewed, &even] {
            assert_eq!(p.num_clients(), k);
            assert!(p.clients().iter().all(|c| c.len() >= 20));
            assert_covers_once(p, 8000);
        }
        // Mean share of a client's most common label: ~0.1 when balanced, large when skewed.
        let top_share = |p: &Partition| {
            let counts = p.label_counts(pool_labels(), 10);
            counts.iter().map(|c| *c.iter().max().unwrap() as f64 / c.iter().sum::<usize>() as f64).sum::<f64>()
                / counts.len() as f64
        };
        let (s, e) = (top_share(&skewed), top_share(&even));
        assert!(s > 0.5, "alpha 0.1 top-label share {s}");
        assert!(e < 0.25, "alpha 100 top-label share {e}");
        let mean_distinct = |p: &Partition| distinct_labels(p).iter().sum::<usize>() as f64 / k as f64;
        let (ds, de) = (mean_distinct(&skewed), mean_distinct(&even));
        assert!(ds + 3.0 < de, "distinct labels: alpha 0.1 {ds}, alpha 100 {de}");
    }

    #[test]
    fn dirichlet_gives_up_with_advice() {
        // One class of 40 rows, 4 clients of at least 10: only an exactly even draw works.
        let labels = vec![0u32; 40];
        let scheme = PartitionScheme::Dirichlet { alpha: 0.01, min_size: 10 };
        let err = partition(&scheme, &labels, 1, 4, 1, None).unwrap_err();
        assert!(matches!(err, PartitionError::DirichletGaveUp { attempts: 1000, .. }), "{err:?}");
        assert!(err.to_string().contains("larger alpha"), "{err}");
    }

    #[test]
    fn tiny_alpha_does_not_produce_nan_cuts() {
        let labels: Vec<u32> = (0..200).map(|i| (i % 2) as u32).collect();
        let scheme = PartitionScheme::Dirichlet { alpha: 1e-4, min_size: 0 };
        let p = partition(&scheme, &labels, 2, 5, 3, None).unwrap();
        assert_covers_once(&p, 200);
    }

    #[test]
    fn natural_groups_rows_by_sorted_id() {
        let ids: Vec<String> = ["b", "a", "b", "c", "a"].iter().map(|s| s.to_string()).collect();
        let labels = [0, 1, 0, 1, 1];
        let p = partition(&PartitionScheme::Natural, &labels, 2, 0, 1, Some(&ids)).unwrap();
        assert_eq!(p.clients(), &[vec![1, 4], vec![0, 2], vec![3]]);
        assert_eq!(natural_client_ids(&ids), vec!["a", "b", "c"]);
        assert_eq!(p.label_counts(&labels, 2), vec![vec![0, 2], vec![2, 0], vec![0, 1]]);
    }

    #[test]
    fn invalid_requests_are_errors() {
        let labels = vec![0u32; 400];
        let p = |scheme: PartitionScheme, k: usize| partition(&scheme, &labels, 1, k, 1, None);
        let err = p(PartitionScheme::Iid, 500).unwrap_err();
        assert!(matches!(err, PartitionError::TooManyClients { clients: 500, examples: 400 }));
        assert!(err.to_string().contains("--clients 500 but the training set has 400 examples"));
        assert!(matches!(p(PartitionScheme::Iid, 0), Err(PartitionError::ZeroClients)));
        assert!(matches!(p(PartitionScheme::Shards { shards_per_client: 0 }, 10), Err(PartitionError::ZeroShards)));
        assert!(matches!(
            p(PartitionScheme::Shards { shards_per_client: 5 }, 100),
            Err(PartitionError::TooManyShards { .. })
        ));
        assert!(matches!(
            p(PartitionScheme::Shards { shards_per_client: usize::MAX }, 2),
            Err(PartitionError::TooManyShards { .. })
        ));
        for alpha in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                p(PartitionScheme::Dirichlet { alpha, min_size: 1 }, 10),
                Err(PartitionError::BadAlpha { .. })
            ));
        }
        assert!(matches!(
            p(PartitionScheme::Dirichlet { alpha: 1.0, min_size: 41 }, 10),
            Err(PartitionError::MinSizeImpossible { .. })
        ));
        assert!(matches!(
            p(PartitionScheme::Dirichlet { alpha: 1.0, min_size: usize::MAX }, 10),
            Err(PartitionError::MinSizeImpossible { .. })
        ));
        assert!(matches!(p(PartitionScheme::Natural, 10), Err(PartitionError::MissingNaturalIds)));
        let ids = vec!["a".to_string(); 3];
        assert!(matches!(
            partition(&PartitionScheme::Natural, &labels, 1, 1, 1, Some(&ids)),
            Err(PartitionError::NaturalIdCount { ids: 3, examples: 400 })
        ));
        assert!(matches!(partition(&PartitionScheme::Iid, &[], 1, 1, 1, None), Err(PartitionError::EmptyTrainingSet)));
        assert!(matches!(
            partition(&PartitionScheme::Iid, &[0, 3], 2, 1, 1, None),
            Err(PartitionError::Label { label: 3, row: 1, num_classes: 2 })
        ));
    }
}
