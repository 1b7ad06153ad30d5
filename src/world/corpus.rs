//! The training corpus: seeded streams of (image, question, answer, family) examples.
//!
//! The trainer draws an endless [`Sampler`] over the `Train` split; the accuracy check draws
//! [`World::held_out`] sets. Held-out examples differ from training ones in two ways: their
//! phrasings are never used in training (see [`super::phrasing`]) and their images are renders
//! nobody trained on, because every image's `variant` carries its render space in its top two
//! bits (train, held-out, dataset, pool) and the spaces never overlap. The facts are the same:
//! a model is asked what it was taught, in words and pictures it has not seen.

use image::RgbImage;
use serde::Serialize;

use super::facts::{Role, World};
use super::phrasing::{Ask, Family, Phrasing};
use super::render::render;
use super::rng::WorldRng;
use super::scene::{Content, Count};

/// Which half of the corpus to draw from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    HeldOut,
}

/// Disjoint ranges of render variants, so an image used for one purpose is never reused for
/// another by accident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RenderSpace {
    Train = 0,
    HeldOut = 1,
    Dataset = 2,
    Pool = 3,
}

impl RenderSpace {
    /// A fresh variant in this space.
    pub fn variant(self, rng: &mut WorldRng) -> u64 {
        ((self as u64) << 62) | (rng.next_u64() >> 2)
    }

    /// The space a variant belongs to.
    pub fn of(variant: u64) -> RenderSpace {
        match variant >> 62 {
            0 => RenderSpace::Train,
            1 => RenderSpace::HeldOut,
            2 => RenderSpace::Dataset,
            _ => RenderSpace::Pool,
        }
    }
}

impl From<Split> for RenderSpace {
    fn from(split: Split) -> RenderSpace {
        match split {
            Split::Train => RenderSpace::Train,
            Split::HeldOut => RenderSpace::HeldOut,
        }
    }
}

/// A picture to draw: what it shows and which rendering of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Visual {
    pub content: Content,
    pub variant: u64,
}

impl Visual {
    /// The 48×48 RGB image.
    pub fn render(&self) -> RgbImage {
        render(&self.content, self.variant)
    }
}

/// What a fact is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum Subject {
    Scene(usize),
    Creature(usize),
    Country(usize),
}

/// Which property of the subject a question asks for. A creature's habitat asked with its picture
/// and asked by its name is the same fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attribute {
    Colour,
    Shape,
    Count,
    Size,
    Position,
    Caption,
    Name,
    Habitat,
    Food,
    Capital,
}

/// One fact of the world: used to keep edit cases, probes and pools apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct FactKey {
    pub subject: Subject,
    pub attribute: Attribute,
}

/// One question with its answer; `image` is `None` for text-only questions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Example {
    pub family: Family,
    pub ask: Ask,
    pub image: Option<Visual>,
    pub question: String,
    pub answer: String,
    pub fact: FactKey,
}

impl Ask {
    /// The attribute this kind of question asks for.
    pub fn attribute(self) -> Attribute {
        match self {
            Ask::Colour => Attribute::Colour,
            Ask::Shape => Attribute::Shape,
            Ask::Count => Attribute::Count,
            Ask::Size => Attribute::Size,
            Ask::Position => Attribute::Position,
            Ask::Caption => Attribute::Caption,
            Ask::CreatureName => Attribute::Name,
            Ask::CreatureHabitat | Ask::NamedHabitat => Attribute::Habitat,
            Ask::CreatureFood | Ask::NamedFood => Attribute::Food,
            Ask::Capital => Attribute::Capital,
        }
    }
}

impl World {
    /// The subjects `ask` applies to, restricted to `roles` when given, in a fixed order.
    pub fn subjects(&self, ask: Ask, roles: Option<&[Role]>) -> Vec<Subject> {
        let allowed = |role: Role| roles.is_none_or(|r| r.contains(&role));
        match ask {
            Ask::Colour | Ask::Shape | Ask::Count | Ask::Size | Ask::Caption => self
                .scenes
                .iter()
                .filter(|s| allowed(s.role))
                .map(|s| Subject::Scene(s.id))
                .collect(),
            Ask::Position => self
                .scenes
                .iter()
                .filter(|s| allowed(s.role) && s.scene.count == Count::One)
                .map(|s| Subject::Scene(s.id))
                .collect(),
            Ask::CreatureName
            | Ask::CreatureHabitat
            | Ask::CreatureFood
            | Ask::NamedHabitat
            | Ask::NamedFood => self
                .creatures
                .iter()
                .filter(|c| allowed(c.role))
                .map(|c| Subject::Creature(c.id))
                .collect(),
            Ask::Capital => self
                .countries
                .iter()
                .filter(|c| allowed(c.role))
                .map(|c| Subject::Country(c.id))
                .collect(),
        }
    }

    /// The role of a subject.
    pub fn role(&self, subject: Subject) -> Option<Role> {
        match subject {
            Subject::Scene(id) => self.scene(id).map(|s| s.role),
            Subject::Creature(id) => self.creature(id).map(|c| c.role),
            Subject::Country(id) => self.country(id).map(|c| c.role),
        }
    }

    /// The true answer of `ask` about `subject`, or `None` when the ask does not apply to it.
    pub fn answer(&self, ask: Ask, subject: Subject) -> Option<String> {
        match (ask, subject) {
            (Ask::Colour, Subject::Scene(id)) => {
                self.scene(id).map(|s| s.scene.colour.word().to_string())
            }
            (Ask::Shape, Subject::Scene(id)) => {
                self.scene(id).map(|s| s.scene.shape.word().to_string())
            }
            (Ask::Count, Subject::Scene(id)) => {
                self.scene(id).map(|s| s.scene.count.word().to_string())
            }
            (Ask::Size, Subject::Scene(id)) => {
                self.scene(id).map(|s| s.scene.size.word().to_string())
            }
            (Ask::Position, Subject::Scene(id)) => self
                .scene(id)
                .and_then(|s| s.scene.position)
                .map(|p| p.word().to_string()),
            (Ask::Caption, Subject::Scene(id)) => self.scene(id).map(|s| s.scene.caption()),
            (Ask::CreatureName, Subject::Creature(id)) => {
                self.creature(id).map(|c| c.name.to_string())
            }
            (Ask::CreatureHabitat | Ask::NamedHabitat, Subject::Creature(id)) => {
                self.creature(id).map(|c| c.habitat.to_string())
            }
            (Ask::CreatureFood | Ask::NamedFood, Subject::Creature(id)) => {
                self.creature(id).map(|c| c.food.to_string())
            }
            (Ask::Capital, Subject::Country(id)) => self.country(id).map(|c| c.capital.to_string()),
            _ => None,
        }
    }

    /// What a picture of `subject` shows, or `None` for subjects without pictures (countries).
    pub fn content(&self, subject: Subject) -> Option<Content> {
        match subject {
            Subject::Scene(id) => self.scene(id).map(|s| Content::Scene(s.scene)),
            Subject::Creature(id) => self.creature(id).map(|c| Content::Creature {
                entity: c.id,
                look: c.look,
            }),
            Subject::Country(_) => None,
        }
    }

    /// The name a text-only question uses for `subject` ("zorblin", "drovania"); empty for scenes.
    fn subject_name(&self, subject: Subject) -> &'static str {
        match subject {
            Subject::Creature(id) => self.creature(id).map_or("", |c| c.name),
            Subject::Country(id) => self.country(id).map_or("", |c| c.name),
            Subject::Scene(_) => "",
        }
    }

    /// Builds the example asking `ask` about `subject` in `phrasing`, with a fresh render from
    /// `space` when the question needs an image. `None` when the ask does not apply.
    pub fn example(
        &self,
        ask: Ask,
        subject: Subject,
        phrasing: Phrasing,
        space: RenderSpace,
        rng: &mut WorldRng,
    ) -> Option<Example> {
        let answer = self.answer(ask, subject)?;
        let family = ask.family();
        let image = if family.has_image() {
            Some(Visual {
                content: self.content(subject)?,
                variant: space.variant(rng),
            })
        } else {
            None
        };
        Some(Example {
            family,
            ask,
            image,
            question: ask.question(phrasing, self.subject_name(subject)),
            answer,
            fact: FactKey {
                subject,
                attribute: ask.attribute(),
            },
        })
    }

    /// One example of `family` from `split`, restricted to subjects with one of `roles` when given.
    /// Each ask of the family is drawn in proportion to its number of subjects (so every text fact
    /// is equally likely), then a subject (count-balanced for scenes) and a phrasing.
    pub fn sample(
        &self,
        family: Family,
        split: Split,
        roles: Option<&[Role]>,
        rng: &mut WorldRng,
    ) -> Option<Example> {
        self.sample_in(family, split, split.into(), roles, rng)
    }

    /// [`World::sample`] with an explicit render space (pools and datasets use their own).
    pub(crate) fn sample_in(
        &self,
        family: Family,
        split: Split,
        space: RenderSpace,
        roles: Option<&[Role]>,
        rng: &mut WorldRng,
    ) -> Option<Example> {
        let per_ask: Vec<(Ask, Vec<Subject>)> = family
            .asks()
            .iter()
            .map(|&ask| (ask, self.subjects(ask, roles)))
            .collect();
        let total: usize = per_ask.iter().map(|(_, s)| s.len()).sum();
        let mut k = rng.below(total);
        for (ask, subjects) in &per_ask {
            if k < subjects.len() {
                let subject = self.pick_subject(*ask, subjects, rng)?;
                let phrasing = *rng.pick(&ask.phrasings(split))?;
                return self.example(*ask, subject, phrasing, space, rng);
            }
            k -= subjects.len();
        }
        None
    }

    /// A subject of `ask` from `subjects`. Scenes are drawn count-balanced: one-object scenes are
    /// 400 of the 640 (they also vary in position), so a uniform draw would make "one" the answer
    /// of five count questions in eight.
    fn pick_subject(&self, ask: Ask, subjects: &[Subject], rng: &mut WorldRng) -> Option<Subject> {
        let scene_ask = matches!(
            ask,
            Ask::Colour | Ask::Shape | Ask::Count | Ask::Size | Ask::Caption
        );
        if !scene_ask {
            return rng.pick(subjects).copied();
        }
        let count_of = |s: &Subject| match s {
            Subject::Scene(id) => self.scene(*id).map(|e| e.scene.count),
            _ => None,
        };
        let counts: Vec<Count> = Count::ALL
            .iter()
            .copied()
            .filter(|c| subjects.iter().any(|s| count_of(s) == Some(*c)))
            .collect();
        let count = *rng.pick(&counts)?;
        let group: Vec<Subject> = subjects
            .iter()
            .copied()
            .filter(|s| count_of(s) == Some(count))
            .collect();
        rng.pick(&group).copied()
    }

    /// An endless seeded stream of examples from `split`, families mixed by `mix`.
    pub fn sampler(&self, split: Split, seed: u64, mix: FamilyMix) -> Sampler<'_> {
        Sampler {
            world: self,
            split,
            rng: WorldRng::derive(self.seed, &format!("corpus-{}", split_name(split)), seed),
            mix,
        }
    }

    /// `n` examples of one family from `split`, reproducible from `seed`. Each family has its own
    /// stream, so the colour and shape sets of one seed do not show the same pictures.
    pub fn examples(&self, split: Split, family: Family, n: usize, seed: u64) -> Vec<Example> {
        let label = format!("examples-{}-{}", split_name(split), family.name());
        let mut rng = WorldRng::derive(self.seed, &label, seed);
        (0..n)
            .filter_map(|_| self.sample(family, split, None, &mut rng))
            .collect()
    }

    /// `n` held-out examples of one family, reproducible from `seed`: the accuracy check's input.
    pub fn held_out(&self, family: Family, n: usize, seed: u64) -> Vec<Example> {
        self.examples(Split::HeldOut, family, n, seed)
    }
}

fn split_name(split: Split) -> &'static str {
    match split {
        Split::Train => "train",
        Split::HeldOut => "held-out",
    }
}

/// Relative sampling weights of the families.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FamilyMix {
    weights: Vec<(Family, u32)>,
}

impl FamilyMix {
    /// Every family equally often.
    pub fn uniform() -> FamilyMix {
        FamilyMix {
            weights: Family::ALL.iter().map(|&f| (f, 1)).collect(),
        }
    }

    /// Only `family`.
    pub fn only(family: Family) -> FamilyMix {
        FamilyMix {
            weights: vec![(family, 1)],
        }
    }

    /// Sets one family's weight (0 removes it).
    pub fn with_weight(mut self, family: Family, weight: u32) -> FamilyMix {
        match self.weights.iter_mut().find(|(f, _)| *f == family) {
            Some(entry) => entry.1 = weight,
            None => self.weights.push((family, weight)),
        }
        self
    }

    /// The weight of one family.
    pub fn weight(&self, family: Family) -> u32 {
        self.weights
            .iter()
            .find(|(f, _)| *f == family)
            .map_or(0, |(_, w)| *w)
    }

    fn draw(&self, rng: &mut WorldRng) -> Option<Family> {
        let total: u64 = self.weights.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut k = rng.below(total as usize) as u64;
        for (family, weight) in &self.weights {
            if k < u64::from(*weight) {
                return Some(*family);
            }
            k -= u64::from(*weight);
        }
        None
    }
}

/// An endless, seeded iterator of corpus examples; ends only if the mix has no positive weight.
#[derive(Debug, Clone)]
pub struct Sampler<'w> {
    world: &'w World,
    split: Split,
    rng: WorldRng,
    mix: FamilyMix,
}

impl Iterator for Sampler<'_> {
    type Item = Example;

    fn next(&mut self) -> Option<Example> {
        let family = self.mix.draw(&mut self.rng)?;
        self.world.sample(family, self.split, None, &mut self.rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn sampler_is_reproducible_and_covers_every_family() {
        let world = World::new(5);
        let a: Vec<Example> = world
            .sampler(Split::Train, 1, FamilyMix::uniform())
            .take(400)
            .collect();
        let b: Vec<Example> = world
            .sampler(Split::Train, 1, FamilyMix::uniform())
            .take(400)
            .collect();
        assert_eq!(a, b);
        let mut per_family = BTreeMap::new();
        for e in &a {
            *per_family.entry(e.family).or_insert(0) += 1;
            assert_eq!(e.image.is_some(), e.family.has_image());
            assert_eq!(
                world.answer(e.ask, e.fact.subject).as_ref(),
                Some(&e.answer)
            );
        }
        assert_eq!(per_family.len(), Family::ALL.len());
        assert!(per_family.values().all(|&n| n > 20), "{per_family:?}");
    }

    #[test]
    fn held_out_uses_held_out_phrasings_and_renders() {
        let world = World::new(5);
        for family in Family::ALL {
            for e in world.held_out(family, 30, 2) {
                assert_eq!(e.family, family);
                let held: Vec<String> = e
                    .ask
                    .phrasings(Split::HeldOut)
                    .iter()
                    .map(|p| {
                        let name = match e.fact.subject {
                            Subject::Creature(id) => world.creatures[id].name,
                            Subject::Country(id) => world.countries[id].name,
                            Subject::Scene(_) => "",
                        };
                        e.ask.question(*p, name)
                    })
                    .collect();
                assert!(held.contains(&e.question), "{}", e.question);
                if let Some(v) = e.image {
                    assert_eq!(RenderSpace::of(v.variant), RenderSpace::HeldOut);
                }
            }
        }
        for e in world
            .sampler(Split::Train, 0, FamilyMix::uniform())
            .take(100)
        {
            if let Some(v) = e.image {
                assert_eq!(RenderSpace::of(v.variant), RenderSpace::Train);
            }
        }
    }

    #[test]
    fn families_draw_from_their_own_streams() {
        let world = World::new(5);
        let colour = world.held_out(Family::Colour, 5, 0);
        let shape = world.held_out(Family::Shape, 5, 0);
        assert_eq!(colour.len(), 5);
        let renders = |es: &[Example]| es.iter().map(|e| e.image).collect::<Vec<_>>();
        assert_ne!(renders(&colour), renders(&shape));
        assert_eq!(colour, world.held_out(Family::Colour, 5, 0));
    }

    #[test]
    fn scene_questions_are_count_balanced() {
        let world = World::new(5);
        let mut per_answer = BTreeMap::new();
        for e in world.held_out(Family::Count, 800, 0) {
            *per_answer.entry(e.answer).or_insert(0) += 1;
        }
        assert_eq!(per_answer.len(), 4);
        assert!(
            per_answer.values().all(|&n| (150..=250).contains(&n)),
            "{per_answer:?}"
        );
    }

    #[test]
    fn position_is_asked_only_of_single_objects() {
        let world = World::new(5);
        for e in world.held_out(Family::Position, 50, 0) {
            let Subject::Scene(id) = e.fact.subject else {
                panic!("position about a non-scene")
            };
            assert_eq!(world.scenes[id].scene.count, Count::One);
        }
    }

    #[test]
    fn mix_weights_steer_the_stream() {
        let world = World::new(5);
        let mix = FamilyMix::uniform()
            .with_weight(Family::Caption, 0)
            .with_weight(Family::Count, 10);
        let examples: Vec<Example> = world.sampler(Split::Train, 3, mix).take(300).collect();
        assert!(examples.iter().all(|e| e.family != Family::Caption));
        let counts = examples
            .iter()
            .filter(|e| e.family == Family::Count)
            .count();
        assert!(counts > 120, "{counts}");
        let empty = FamilyMix::only(Family::Colour).with_weight(Family::Colour, 0);
        assert_eq!(world.sampler(Split::Train, 0, empty).next(), None);
    }
}
