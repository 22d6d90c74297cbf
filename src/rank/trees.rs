//! Gradient-boosted decision trees for binary classification, evaluated natively: the model that
//! `tools/train_ranker.py` trains with LightGBM (Ke et al. 2017) and exports as flat node arrays.
//!
//! A tree's internal nodes are numbered in pre-order; a child index `c >= 0` is an internal node
//! (always after its parent, which the loader checks, so evaluation always ends) and `c < 0` is
//! leaf `!c`. A node sends a sample left when `x[feature] <= threshold`, LightGBM's numerical
//! split with no missing values (kpg's features are never NaN). P(keyphrase) is the logistic of
//! the sum of the trees' leaves (LightGBM's `binary` objective, which folds the initial score into
//! the first tree).

use serde::Deserialize;

/// One tree as stored.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Tree {
    pub feature: Vec<usize>, // [internal nodes]
    pub threshold: Vec<f64>, // [internal nodes]
    pub left: Vec<i32>,      // [internal nodes]
    pub right: Vec<i32>,     // [internal nodes]
    pub leaf: Vec<f64>,      // [leaves]
}

impl Tree {
    /// Checks that every index is in range and every child comes after its parent.
    pub fn validate(&self, num_features: usize) -> Result<(), String> {
        let n = self.feature.len();
        if self.threshold.len() != n || self.left.len() != n || self.right.len() != n {
            return Err("node arrays of different lengths".into());
        }
        if self.leaf.len() != n + 1 {
            return Err(format!(
                "{} internal nodes need {} leaves, not {}",
                n,
                n + 1,
                self.leaf.len()
            ));
        }
        for i in 0..n {
            if self.feature[i] >= num_features {
                return Err(format!(
                    "node {i} splits on feature {}, of {num_features}",
                    self.feature[i]
                ));
            }
            if !self.threshold[i].is_finite() {
                return Err(format!("node {i} has a non-finite threshold"));
            }
            for child in [self.left[i], self.right[i]] {
                let ok = if child >= 0 {
                    (child as usize) > i && (child as usize) < n
                } else {
                    ((!child) as usize) < self.leaf.len()
                };
                if !ok {
                    return Err(format!("node {i} has an invalid child {child}"));
                }
            }
        }
        if self.leaf.iter().any(|v| !v.is_finite()) {
            return Err("a leaf value is not finite".into());
        }
        Ok(())
    }

    /// The leaf value `x` reaches.
    pub fn predict(&self, x: &[f64]) -> f64 {
        if self.feature.is_empty() {
            return self.leaf[0];
        }
        let mut node = 0usize;
        loop {
            let child = if x[self.feature[node]] <= self.threshold[node] {
                self.left[node]
            } else {
                self.right[node]
            };
            if child < 0 {
                return self.leaf[(!child) as usize];
            }
            node = child as usize;
        }
    }
}

/// The raw score (log-odds) of `x`.
pub fn raw_score(trees: &[Tree], x: &[f64]) -> f64 {
    trees.iter().map(|t| t.predict(x)).sum()
}

/// P(keyphrase) of `x`.
pub fn probability(trees: &[Tree], x: &[f64]) -> f64 {
    1.0 / (1.0 + (-raw_score(trees, x)).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x0 <= 1 ? (x1 <= 0 ? 1 : 2) : -3
    fn tree() -> Tree {
        Tree {
            feature: vec![0, 1],
            threshold: vec![1.0, 0.0],
            left: vec![1, !0],
            right: vec![!2, !1],
            leaf: vec![1.0, 2.0, -3.0],
        }
    }

    #[test]
    fn walks_to_the_right_leaf() {
        let t = tree();
        t.validate(2).unwrap();
        assert_eq!(t.predict(&[1.0, 0.0]), 1.0, "<= goes left");
        assert_eq!(t.predict(&[0.5, 0.1]), 2.0);
        assert_eq!(t.predict(&[1.5, 0.0]), -3.0);
        let single = Tree {
            feature: vec![],
            threshold: vec![],
            left: vec![],
            right: vec![],
            leaf: vec![0.5],
        };
        assert_eq!(raw_score(&[t, single], &[2.0, 0.0]), -2.5);
    }

    #[test]
    fn cycles_and_bad_indices_are_refused() {
        let mut t = tree();
        t.left[1] = 0;
        assert!(t.validate(2).unwrap_err().contains("invalid child"));
        let mut t = tree();
        t.feature[0] = 5;
        assert!(t.validate(2).unwrap_err().contains("feature 5"));
        let mut t = tree();
        t.leaf.pop();
        assert!(t.validate(2).is_err());
    }
}
