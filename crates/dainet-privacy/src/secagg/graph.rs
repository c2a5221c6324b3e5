//! The communication graph of SecAgg+: a k-regular Harary graph H_{k,n} on a shuffled ring.
//!
//! The n participants are placed on a ring in an order drawn by a seeded Fisher–Yates shuffle
//! ([`SplitMix64::shuffle`]); each is joined to the k/2 nearest on each side (Harary 1962;
//! Bell et al. 2020 §3 use such a graph with k = O(log n) neighbours). With k = n − 1 the
//! graph is complete (classic SecAgg, Bonawitz et al. 2017) and k may be odd; otherwise k
//! must be even and below n − 1. Neighbourhood queries cost O(1) (`are_neighbours`) or O(k)
//! (`neighbours`), never O(n).

use dainet_core::SplitMix64;

/// Why a graph cannot be built.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GraphError {
    /// The degree does not fit the number of nodes.
    #[error("degree k={k} needs k = n − 1 or an even k < n − 1 (n={n})")]
    Degree {
        /// The degree asked for.
        k: usize,
        /// The number of nodes.
        n: usize,
    },
}

/// A k-regular graph on nodes `0..n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Graph {
    k: usize,
    /// Ring position → node.
    order: Vec<u32>,
    /// Node → ring position.
    position: Vec<u32>,
}

impl Graph {
    /// H_{k,n} on a ring shuffled with `seed`.
    pub fn harary(n: usize, k: usize, seed: u64) -> Result<Self, GraphError> {
        if n == 0 || k >= n || (k + 1 < n && k % 2 == 1) || n > u32::MAX as usize {
            return Err(GraphError::Degree { k, n });
        }
        let mut order: Vec<u32> = (0..n as u32).collect();
        SplitMix64::new(seed).shuffle(&mut order);
        let mut position = vec![0u32; n];
        for (p, &node) in order.iter().enumerate() {
            position[node as usize] = p as u32;
        }
        Ok(Self { k, order, position })
    }

    /// Nodes.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the graph has no nodes (never: [`Graph::harary`] refuses n = 0).
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The degree k.
    pub fn degree(&self) -> usize {
        self.k
    }

    /// Whether the graph is complete (k = n − 1).
    pub fn is_complete(&self) -> bool {
        self.k + 1 == self.len()
    }

    /// Whether distinct nodes `a` and `b` are joined.
    pub fn are_neighbours(&self, a: usize, b: usize) -> bool {
        if a == b {
            return false;
        }
        if self.is_complete() {
            return true;
        }
        let n = self.len();
        let (pa, pb) = (self.position[a] as usize, self.position[b] as usize);
        let d = pa.abs_diff(pb);
        d.min(n - d) <= self.k / 2
    }

    /// The k neighbours of `node`, ascending.
    pub fn neighbours(&self, node: usize) -> Vec<usize> {
        let n = self.len();
        let mut out: Vec<usize> = if self.is_complete() {
            (0..n).filter(|&j| j != node).collect()
        } else {
            let p = self.position[node] as usize;
            (1..=self.k / 2)
                .flat_map(|off| [(p + off) % n, (p + n - off) % n])
                .map(|q| self.order[q] as usize)
                .collect()
        };
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degrees_are_validated() {
        assert!(Graph::harary(10, 4, 1).is_ok());
        assert!(Graph::harary(10, 9, 1).is_ok(), "complete, odd k");
        assert_eq!(Graph::harary(10, 3, 1), Err(GraphError::Degree { k: 3, n: 10 }));
        assert_eq!(Graph::harary(10, 10, 1), Err(GraphError::Degree { k: 10, n: 10 }));
        assert!(Graph::harary(0, 0, 1).is_err());
        assert!(Graph::harary(1, 0, 1).unwrap().neighbours(0).is_empty());
    }

    #[test]
    fn graph_is_k_regular_symmetric_and_seeded() {
        for (n, k) in [(20, 8), (21, 4), (7, 6), (8, 7), (5, 2)] {
            let g = Graph::harary(n, k, 42).unwrap();
            for a in 0..n {
                let nb = g.neighbours(a);
                assert_eq!(nb.len(), k, "n={n} k={k} node {a}");
                assert!(!nb.contains(&a));
                for b in 0..n {
                    assert_eq!(g.are_neighbours(a, b), nb.contains(&b));
                    assert_eq!(g.are_neighbours(a, b), g.are_neighbours(b, a));
                }
            }
        }
        assert_eq!(Graph::harary(20, 8, 7), Graph::harary(20, 8, 7));
        assert_ne!(Graph::harary(20, 8, 7), Graph::harary(20, 8, 8));
    }
}
