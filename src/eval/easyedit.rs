//! EasyEdit's result names for mkedsl's scores, so a user can line the two up by name.
//!
//! EasyEdit's multimodal editor reports, per case, `pre` and `post` dictionaries with
//! `rewrite_acc`, `rephrase_acc`, `image_rephrase_acc`, `locality_acc` and
//! `multimodal_locality_acc`. Each one below equals one of our scores exactly (the mapping is
//! also written into every JSON report as [`KEYS`]):
//!
//! | EasyEdit                  | mkedsl                                | how                                  |
//! |---------------------------|---------------------------------------|--------------------------------------|
//! | `rewrite_acc`             | `metrics.rel`                         | teacher-forced accuracy of `alt` after `src` on `image` |
//! | `rephrase_acc`            | `metrics.t_gen`                       | the same after `rephrase`            |
//! | `image_rephrase_acc`      | `metrics.m_gen`                       | the same after `src` on `image_rephrase` |
//! | `locality_acc`            | `locality_all_positions.t_loc`        | top-1 agreement with the unedited model at every position of `loc` + `loc_ans` |
//! | `multimodal_locality_acc` | `locality_all_positions.m_loc`        | top-10 agreement at every position of `m_loc_q` + `m_loc_a` on `m_loc` |
//!
//! `pre` holds the unedited model's `rewrite_acc` / `rephrase_acc` / `image_rephrase_acc`
//! (`pre_edit.metrics`); its locality is 1 by construction and is not repeated.

use serde::{Deserialize, Serialize};

use crate::eval::metrics::MetricSet;
use crate::eval::score::{EditScores, LocalityScores};

/// The unedited model's scores under EasyEdit's names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EasyEditPre {
    pub rewrite_acc: f64,
    pub rephrase_acc: f64,
    pub image_rephrase_acc: f64,
}

/// The edited model's scores under EasyEdit's names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EasyEditPost {
    pub rewrite_acc: f64,
    pub rephrase_acc: f64,
    pub image_rephrase_acc: f64,
    pub locality_acc: f64,
    pub multimodal_locality_acc: f64,
}

/// `pre` and `post`, as EasyEdit's per-case result dictionaries hold them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EasyEditScores {
    pub pre: EasyEditPre,
    pub post: EasyEditPost,
}

impl EasyEditScores {
    /// The names for one case's (or the mean's) scores.
    pub fn of(post: &MetricSet, all_positions: &LocalityScores, pre: &EditScores) -> Self {
        EasyEditScores {
            pre: EasyEditPre {
                rewrite_acc: pre.rel,
                rephrase_acc: pre.t_gen,
                image_rephrase_acc: pre.m_gen,
            },
            post: EasyEditPost {
                rewrite_acc: post.rel,
                rephrase_acc: post.t_gen,
                image_rephrase_acc: post.m_gen,
                locality_acc: all_positions.t_loc,
                multimodal_locality_acc: all_positions.m_loc,
            },
        }
    }
}

/// Which of our scores each EasyEdit name equals, written into every report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EasyEditKeys {
    pub rewrite_acc: &'static str,
    pub rephrase_acc: &'static str,
    pub image_rephrase_acc: &'static str,
    pub locality_acc: &'static str,
    pub multimodal_locality_acc: &'static str,
}

/// The mapping of the module doc.
pub const KEYS: EasyEditKeys = EasyEditKeys {
    rewrite_acc: "metrics.rel (pre: pre_edit.metrics.rel)",
    rephrase_acc: "metrics.t_gen (pre: pre_edit.metrics.t_gen)",
    image_rephrase_acc: "metrics.m_gen (pre: pre_edit.metrics.m_gen)",
    locality_acc: "locality_all_positions.t_loc (top-1, every position)",
    multimodal_locality_acc: "locality_all_positions.m_loc (top-10, every position)",
};
