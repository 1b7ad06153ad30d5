//! Plans the edit cases of the world's MMEdit-format datasets (E-VQA and E-IC).
//!
//! A case is planned from world facts alone; the model's pre-edit answer (`pred`) and the final
//! choice of the counterfactual target (`alt`, which must differ from `pred`) are filled in when the
//! dataset is written ([`crate::data::write_dataset`]). Every part of a case follows MMEdit:
//! `rephrase` is a held-out phrasing built on a different core question than `src`,
//! `image_rephrase` another render of the same content, `loc` a text-only fact and `m_loc` another
//! picture with its question. Edit subjects, probe subjects and pool subjects never overlap.

use serde::Serialize;

use super::corpus::{Example, FactKey, RenderSpace, Split, Subject, Visual};
use super::error::WorldError;
use super::facts::{Role, World};
use super::phrasing::{Ask, Family, Phrasing};
use super::rng::WorldRng;

/// Which MMEdit dataset a case belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseKind {
    /// Visual question answering edits, attribute and entity questions mixed.
    Evqa,
    /// Image caption edits.
    Eic,
}

impl CaseKind {
    /// The file stem EasyEdit users know ("evqa", "eic").
    pub fn name(self) -> &'static str {
        match self {
            CaseKind::Evqa => "evqa",
            CaseKind::Eic => "eic",
        }
    }

    fn families(self) -> &'static [Family] {
        match self {
            CaseKind::Evqa => &EVQA_FAMILIES,
            CaseKind::Eic => &[Family::Caption],
        }
    }
}

/// The E-VQA families, drawn round-robin so the dataset mixes them evenly until a family runs out.
const EVQA_FAMILIES: [Family; 7] = [
    Family::Colour,
    Family::Shape,
    Family::Count,
    Family::Size,
    Family::Position,
    Family::EntityName,
    Family::EntityFact,
];

/// One planned edit case: everything of an MMEdit record except `pred` and the final `alt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EditCase {
    pub family: Family,
    pub ask: Ask,
    pub fact: FactKey,
    pub image: Visual,
    pub src: String,
    /// The world's true answer (what a perfect model would give as `pred`).
    pub truth: String,
    /// Counterfactual targets in order of preference; the writer takes the first that differs
    /// from the model's `pred`.
    pub alternatives: Vec<String>,
    pub rephrase: String,
    pub image_rephrase: Visual,
    pub loc: String,
    pub loc_ans: String,
    pub loc_fact: FactKey,
    pub m_loc: Visual,
    pub m_loc_q: String,
    pub m_loc_a: String,
    pub m_loc_fact: FactKey,
}

const PROBE: &[Role] = &[Role::Probe];
const EDIT: &[Role] = &[Role::Edit];

impl World {
    /// How many distinct edit cases of `kind` the world can provide.
    pub fn available_cases(&self, kind: CaseKind) -> usize {
        kind.families()
            .iter()
            .flat_map(|f| f.asks())
            .map(|&ask| self.subjects(ask, Some(EDIT)).len())
            .sum()
    }

    /// Plans `n` distinct edit cases of `kind`, reproducible from `seed`.
    pub fn edit_cases(
        &self,
        kind: CaseKind,
        n: usize,
        seed: u64,
    ) -> Result<Vec<EditCase>, WorldError> {
        let available = self.available_cases(kind);
        if n > available {
            return Err(WorldError::TooManyCases {
                kind: kind.name(),
                requested: n,
                available,
            });
        }
        let mut rng = WorldRng::derive(self.seed, kind.name(), seed);
        // One shuffled queue of (ask, subject) pairs per family, drawn round-robin.
        let mut queues: Vec<Vec<(Ask, Subject)>> = kind
            .families()
            .iter()
            .map(|family| {
                let mut pairs: Vec<(Ask, Subject)> = family
                    .asks()
                    .iter()
                    .flat_map(|&ask| {
                        self.subjects(ask, Some(EDIT))
                            .into_iter()
                            .map(move |s| (ask, s))
                    })
                    .collect();
                rng.shuffle(&mut pairs);
                pairs.reverse();
                pairs
            })
            .collect();
        let mut cases = Vec::with_capacity(n);
        while cases.len() < n {
            let mut drew = false;
            for queue in queues.iter_mut() {
                if cases.len() == n {
                    break;
                }
                if let Some((ask, subject)) = queue.pop() {
                    drew = true;
                    if let Some(case) = self.plan_case(ask, subject, &mut rng) {
                        cases.push(case);
                    }
                }
            }
            if !drew {
                break;
            }
        }
        Ok(cases)
    }

    fn plan_case(&self, ask: Ask, subject: Subject, rng: &mut WorldRng) -> Option<EditCase> {
        let src_phrasing = *rng.pick(&ask.phrasings(Split::Train))?;
        let rephrasings: Vec<Phrasing> = ask
            .phrasings(Split::HeldOut)
            .into_iter()
            .filter(|p| p.core != src_phrasing.core)
            .collect();
        let rephrasing = *rng.pick(&rephrasings)?;
        let edit = self.example(ask, subject, src_phrasing, RenderSpace::Dataset, rng)?;
        let image = edit.image?;
        let rephrased = self.example(ask, subject, rephrasing, RenderSpace::Dataset, rng)?;
        let image_rephrase = Visual {
            content: image.content,
            variant: RenderSpace::Dataset.variant(rng),
        };
        let loc = self.probe(Family::TextFact, rng)?;
        let m_family = *rng.pick(&EVQA_FAMILIES)?;
        let m_loc = self.probe(m_family, rng)?;
        let alternatives = self.wrong_answers(ask, &edit.answer, rng);
        Some(EditCase {
            family: edit.family,
            ask,
            fact: edit.fact,
            image,
            src: edit.question,
            truth: edit.answer,
            alternatives,
            rephrase: rephrased.question,
            image_rephrase,
            loc: loc.question,
            loc_ans: loc.answer,
            loc_fact: loc.fact,
            m_loc: m_loc.image?,
            m_loc_q: m_loc.question,
            m_loc_a: m_loc.answer,
            m_loc_fact: m_loc.fact,
        })
    }

    /// A locality probe: a known fact of a `Probe` subject in a training phrasing.
    fn probe(&self, family: Family, rng: &mut WorldRng) -> Option<Example> {
        self.sample_in(family, Split::Train, RenderSpace::Dataset, Some(PROBE), rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn evqa_cases_are_distinct_mixed_and_role_separated() {
        let world = World::new(4);
        let cases = world.edit_cases(CaseKind::Evqa, 300, 0).unwrap_or_default();
        assert_eq!(cases.len(), 300);
        let facts: BTreeSet<FactKey> = cases.iter().map(|c| c.fact).collect();
        assert_eq!(facts.len(), 300, "an edit fact repeats");
        let mut per_family = BTreeMap::new();
        for c in &cases {
            *per_family.entry(c.family).or_insert(0) += 1;
            assert_eq!(world.role(c.fact.subject), Some(Role::Edit));
            assert_eq!(world.role(c.loc_fact.subject), Some(Role::Probe));
            assert_eq!(world.role(c.m_loc_fact.subject), Some(Role::Probe));
            assert_eq!(c.image.content, c.image_rephrase.content);
            assert_ne!(c.image.variant, c.image_rephrase.variant);
            assert_ne!(c.src, c.rephrase);
            assert!(!c.alternatives.contains(&c.truth) && !c.alternatives.is_empty());
            assert_eq!(world.answer(c.ask, c.fact.subject).as_ref(), Some(&c.truth));
        }
        assert_eq!(per_family.len(), 7, "{per_family:?}");
        assert_eq!(per_family.get(&Family::EntityName), Some(&20));
        assert_eq!(per_family.get(&Family::EntityFact), Some(&40));
    }

    #[test]
    fn eic_cases_are_captions() {
        let world = World::new(4);
        let cases = world.edit_cases(CaseKind::Eic, 150, 0).unwrap_or_default();
        assert_eq!(cases.len(), 150);
        assert!(cases.iter().all(|c| c.family == Family::Caption));
    }

    #[test]
    fn too_many_cases_is_an_error() {
        let world = World::new(4);
        let available = world.available_cases(CaseKind::Eic);
        assert_eq!(available, 384);
        assert!(matches!(
            world.edit_cases(CaseKind::Eic, available + 1, 0),
            Err(WorldError::TooManyCases { .. })
        ));
    }

    #[test]
    fn planning_is_reproducible() {
        let world = World::new(4);
        assert_eq!(
            world.edit_cases(CaseKind::Evqa, 20, 3).ok(),
            world.edit_cases(CaseKind::Evqa, 20, 3).ok()
        );
    }
}
