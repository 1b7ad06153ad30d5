//! Samples an editing method prepares once per model: the preserve pool (ELoRA's and LPEdit's
//! null spaces, AlphaEdit-style) and hallucination triplets (UniKE's contrastive encoders).
//!
//! Both come only from `Preserve` subjects, so they share no fact with any edit case or any
//! locality probe (see [`super::facts::Role`]), and their images come from the `Pool` render space.
//! Phrasings are training phrasings: these samples stand for what the model already knows.

use serde::Serialize;

use super::corpus::{Example, FactKey, RenderSpace, Split, Visual};
use super::facts::{Role, World};
use super::phrasing::{Ask, Family};
use super::rng::WorldRng;
use super::scene::{Colour, Count, Position, Scene, Shape, Size};

/// How many samples of each kind the preserve pool holds (ELoRA: 2048 text, 512 VQA, 512 caption).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PoolSizes {
    pub text: usize,
    pub vqa: usize,
    pub caption: usize,
}

/// Known-knowledge samples whose outputs an edit should leave alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreservePool {
    /// Text-only facts (the world's stand-in for NQ questions).
    pub text: Vec<Example>,
    /// Image questions of every VQA family (the stand-in for E-VQA samples).
    pub vqa: Vec<Example>,
    /// Captions (the stand-in for E-IC samples).
    pub caption: Vec<Example>,
}

/// A question with its true answer and a plausible wrong one, for truthfulness training.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Triplet {
    pub family: Family,
    pub image: Option<Visual>,
    pub question: String,
    pub truth: String,
    pub hallucination: String,
    pub fact: FactKey,
}

const VQA_FAMILIES: [Family; 7] = [
    Family::Colour,
    Family::Shape,
    Family::Count,
    Family::Size,
    Family::Position,
    Family::EntityName,
    Family::EntityFact,
];

const PRESERVE: &[Role] = &[Role::Preserve];

impl World {
    /// The preserve pool, reproducible from `seed`. Samples may repeat a fact with a different
    /// phrasing or render: the pool is larger than the number of preserve facts.
    pub fn preserve_pool(&self, sizes: PoolSizes, seed: u64) -> PreservePool {
        let mut rng = WorldRng::derive(self.seed, "preserve-pool", seed);
        let draw = |family: Family, rng: &mut WorldRng| {
            self.sample_in(family, Split::Train, RenderSpace::Pool, Some(PRESERVE), rng)
        };
        let text = (0..sizes.text)
            .filter_map(|_| draw(Family::TextFact, &mut rng))
            .collect();
        let vqa = (0..sizes.vqa)
            .filter_map(|_| {
                let family = *rng.pick(&VQA_FAMILIES)?;
                draw(family, &mut rng)
            })
            .collect();
        let caption = (0..sizes.caption)
            .filter_map(|_| draw(Family::Caption, &mut rng))
            .collect();
        PreservePool { text, vqa, caption }
    }

    /// `n` hallucination triplets over every family, reproducible from `seed`.
    pub fn hallucination_triplets(&self, n: usize, seed: u64) -> Vec<Triplet> {
        let mut rng = WorldRng::derive(self.seed, "triplets", seed);
        (0..n)
            .filter_map(|_| {
                let family = *rng.pick(&Family::ALL)?;
                let e = self.sample_in(
                    family,
                    Split::Train,
                    RenderSpace::Pool,
                    Some(PRESERVE),
                    &mut rng,
                )?;
                let wrong = self.wrong_answers(e.ask, &e.answer, &mut rng);
                let hallucination = wrong.into_iter().next()?;
                Some(Triplet {
                    family: e.family,
                    image: e.image,
                    question: e.question,
                    truth: e.answer,
                    hallucination,
                    fact: e.fact,
                })
            })
            .collect()
    }

    /// Every answer `ask` can have other than `truth`, shuffled: the counterfactual targets of an
    /// edit and the hallucinations of a triplet. Captions change colour and shape but keep count
    /// and size, so the wrong caption is plausible for the picture's layout.
    pub fn wrong_answers(&self, ask: Ask, truth: &str, rng: &mut WorldRng) -> Vec<String> {
        let mut out: Vec<String> = match ask {
            Ask::Colour => Colour::ALL.iter().map(|c| c.word().to_string()).collect(),
            Ask::Shape => Shape::ALL.iter().map(|s| s.word().to_string()).collect(),
            Ask::Count => Count::ALL.iter().map(|c| c.word().to_string()).collect(),
            Ask::Size => Size::ALL.iter().map(|s| s.word().to_string()).collect(),
            Ask::Position => Position::ALL.iter().map(|p| p.word().to_string()).collect(),
            Ask::CreatureName => self.creatures.iter().map(|c| c.name.to_string()).collect(),
            Ask::CreatureHabitat | Ask::NamedHabitat => super::lexicon::HABITATS
                .iter()
                .map(|h| h.to_string())
                .collect(),
            Ask::CreatureFood | Ask::NamedFood => super::lexicon::FOODS
                .iter()
                .map(|f| f.to_string())
                .collect(),
            Ask::Capital => self
                .countries
                .iter()
                .map(|c| c.capital.to_string())
                .collect(),
            Ask::Caption => match self.scenes.iter().find(|s| s.scene.caption() == truth) {
                Some(entry) => {
                    let base = entry.scene;
                    let mut alts = Vec::new();
                    for colour in Colour::ALL {
                        for shape in Shape::ALL {
                            if colour != base.colour && shape != base.shape {
                                alts.push(
                                    Scene {
                                        colour,
                                        shape,
                                        ..base
                                    }
                                    .caption(),
                                );
                            }
                        }
                    }
                    alts
                }
                None => Vec::new(),
            },
        };
        out.retain(|a| a != truth);
        out.sort();
        out.dedup();
        rng.shuffle(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preserve_only(world: &World, e: &Example) {
        assert_eq!(world.role(e.fact.subject), Some(Role::Preserve), "{e:?}");
        if let Some(v) = e.image {
            assert_eq!(RenderSpace::of(v.variant), RenderSpace::Pool);
        }
    }

    #[test]
    fn preserve_pool_has_the_requested_sizes_and_only_preserve_subjects() {
        let world = World::new(9);
        let sizes = PoolSizes {
            text: 64,
            vqa: 32,
            caption: 16,
        };
        let pool = world.preserve_pool(sizes, 0);
        assert_eq!(
            (pool.text.len(), pool.vqa.len(), pool.caption.len()),
            (64, 32, 16)
        );
        assert!(pool.text.iter().all(|e| e.family == Family::TextFact));
        assert!(pool.caption.iter().all(|e| e.family == Family::Caption));
        assert!(pool
            .vqa
            .iter()
            .all(|e| e.image.is_some() && e.family != Family::Caption));
        for e in pool.text.iter().chain(&pool.vqa).chain(&pool.caption) {
            preserve_only(&world, e);
        }
        assert_eq!(pool, world.preserve_pool(sizes, 0));
    }

    #[test]
    fn triplets_pair_the_truth_with_a_wrong_answer_of_the_same_kind() {
        let world = World::new(9);
        let triplets = world.hallucination_triplets(200, 1);
        assert_eq!(triplets.len(), 200);
        for t in &triplets {
            assert_ne!(t.truth, t.hallucination);
            assert_eq!(world.role(t.fact.subject), Some(Role::Preserve));
            assert_eq!(
                t.truth.split(' ').count(),
                t.hallucination.split(' ').count()
            );
        }
    }

    #[test]
    fn wrong_caption_keeps_count_and_size() {
        let world = World::new(9);
        let mut rng = WorldRng::new(0);
        let wrong = world.wrong_answers(Ask::Caption, "two large red circles", &mut rng);
        assert_eq!(wrong.len(), 7 * 4);
        assert!(wrong.iter().all(|w| w.starts_with("two large ")));
        assert!(!wrong
            .iter()
            .any(|w| w.contains("red") || w.contains("circle")));
        let names = world.wrong_answers(Ask::CreatureName, world.creatures[0].name, &mut rng);
        assert_eq!(names.len(), 31);
    }
}
