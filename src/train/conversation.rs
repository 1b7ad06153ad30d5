//! Training conversations: a sampled example, then more questions about the same picture.
//!
//! Almost all the compute of an image example goes into its 36 image tokens; a question adds
//! ~15 tokens. Asking several questions about one picture in one sequence (LLaVA-1.5's
//! multi-turn format) therefore gives the vision tower several labels per image for little more
//! than the price of one. The first turn is exactly a single-turn prompt, so every family still
//! trains the form the evaluator asks in. Follow-ups never repeat information: a caption names
//! every attribute of its scene, so captions get no follow-ups, and no follow-up is a caption.

use serde::Serialize;

use crate::data::prompt::PromptTemplate;
use crate::model::Llava;
use crate::world::rng::WorldRng;
use crate::world::{Ask, Example, Family, Split, Subject, Visual, World};

use super::error::Result;
use super::sequence::{Sequence, Turn};

/// One question and answer of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConversationTurn {
    pub family: Family,
    pub question: String,
    pub answer: String,
}

/// A picture (or none) and the questions asked about it, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conversation {
    pub image: Option<Visual>,
    pub turns: Vec<ConversationTurn>,
}

/// The asks that may follow `first` about the same picture.
fn follow_ups(world: &World, first: &Example) -> Vec<Ask> {
    let candidates: &[Ask] = match first.ask {
        Ask::Colour | Ask::Shape | Ask::Count | Ask::Size | Ask::Position => &[
            Ask::Colour,
            Ask::Shape,
            Ask::Count,
            Ask::Size,
            Ask::Position,
        ],
        Ask::CreatureName | Ask::CreatureHabitat | Ask::CreatureFood => {
            &[Ask::CreatureName, Ask::CreatureHabitat, Ask::CreatureFood]
        }
        Ask::Caption | Ask::NamedHabitat | Ask::NamedFood | Ask::Capital => &[],
    };
    candidates
        .iter()
        .copied()
        .filter(|&ask| ask != first.ask && world.answer(ask, first.fact.subject).is_some())
        .collect()
}

/// `first` followed by up to `max_turns - 1` other questions about its picture, in random
/// order, each in a random training phrasing.
pub fn converse(
    world: &World,
    first: Example,
    max_turns: usize,
    rng: &mut WorldRng,
) -> Conversation {
    let mut asks = if first.image.is_some() {
        follow_ups(world, &first)
    } else {
        Vec::new()
    };
    rng.shuffle(&mut asks);
    asks.truncate(max_turns.saturating_sub(1));
    let subject: Subject = first.fact.subject;
    let mut turns = vec![ConversationTurn {
        family: first.family,
        question: first.question,
        answer: first.answer,
    }];
    for ask in asks {
        let phrasings = ask.phrasings(Split::Train);
        let (Some(phrasing), Some(answer)) = (rng.pick(&phrasings), world.answer(ask, subject))
        else {
            continue;
        };
        turns.push(ConversationTurn {
            family: ask.family(),
            question: ask.question(*phrasing, ""),
            answer,
        });
    }
    Conversation {
        image: first.image,
        turns,
    }
}

impl Conversation {
    /// The conversation as a teacher-forced token sequence, its picture rendered.
    pub fn sequence(&self, llava: &Llava, template: &PromptTemplate) -> Result<Sequence> {
        let image = self.image.map(|v| v.render());
        let turns: Vec<Turn> = self
            .turns
            .iter()
            .map(|t| Turn {
                question: &t.question,
                answer: &t.answer,
            })
            .collect();
        Sequence::conversation(llava, template, image.as_ref(), &turns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn scene_questions_are_followed_by_the_other_attributes_of_the_same_scene() {
        let world = World::new(0);
        let mut rng = WorldRng::new(3);
        for first in world.held_out(Family::Shape, 20, 0) {
            let subject = first.fact.subject;
            let image = first.image;
            let conv = converse(&world, first, 9, &mut rng);
            assert_eq!(conv.image, image);
            assert_eq!(conv.turns[0].family, Family::Shape);
            let families: BTreeSet<Family> = conv.turns.iter().map(|t| t.family).collect();
            assert_eq!(families.len(), conv.turns.len(), "no attribute twice");
            assert!(!families.contains(&Family::Caption));
            let single_object = world.answer(Ask::Position, subject).is_some();
            assert_eq!(conv.turns.len(), if single_object { 5 } else { 4 });
            for turn in &conv.turns[1..] {
                let ask = turn.family.asks()[0];
                assert_eq!(world.answer(ask, subject).as_ref(), Some(&turn.answer));
                assert!(ask
                    .phrasings(Split::Train)
                    .iter()
                    .any(|p| ask.question(*p, "") == turn.question));
            }
        }
    }

    #[test]
    fn captions_and_text_facts_stay_single_turn_and_max_turns_caps() {
        let world = World::new(0);
        let mut rng = WorldRng::new(4);
        for family in [Family::Caption, Family::TextFact] {
            for first in world.held_out(family, 5, 0) {
                assert_eq!(converse(&world, first, 5, &mut rng).turns.len(), 1);
            }
        }
        for first in world.held_out(Family::EntityName, 5, 0) {
            let conv = converse(&world, first, 2, &mut rng);
            assert_eq!(conv.turns.len(), 2);
            assert_eq!(conv.turns[1].family, Family::EntityFact);
        }
        let first = world.held_out(Family::Colour, 1, 0).remove(0);
        assert_eq!(converse(&world, first, 1, &mut rng).turns.len(), 1);
    }
}
