//! Question families and the several phrasings of every question.
//!
//! A phrasing is a *core* question ("what colour are the objects?") inside a *framing*
//! ("quick question: {core}"). Each question kind has five cores and four framings; for core `i`
//! the framing `i mod 4` is held out. So every held-out phrasing is a string the model never saw in
//! training, yet each of its words and each core and framing was seen with other partners: a tiny
//! model can generalise to it, and a T-Gen rephrase is a real rewording, not a new language.

use serde::Serialize;

use super::corpus::Split;

/// What a question asks about; the unit the ≥ 95% accuracy target is measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Colour of a scene's objects.
    Colour,
    /// Shape of a scene's objects.
    Shape,
    /// Number of objects in a scene.
    Count,
    /// Size class of a scene's objects.
    Size,
    /// Where the single object of a one-object scene is.
    Position,
    /// The name of the creature in the picture.
    EntityName,
    /// Where the pictured creature lives or what it eats.
    EntityFact,
    /// Text-only facts: a named creature's habitat or food, a country's capital.
    TextFact,
    /// An E-IC style caption of a scene ("two large red circles").
    Caption,
}

impl Family {
    pub const ALL: [Family; 9] = [
        Family::Colour,
        Family::Shape,
        Family::Count,
        Family::Size,
        Family::Position,
        Family::EntityName,
        Family::EntityFact,
        Family::TextFact,
        Family::Caption,
    ];

    /// The snake_case name used in files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Family::Colour => "colour",
            Family::Shape => "shape",
            Family::Count => "count",
            Family::Size => "size",
            Family::Position => "position",
            Family::EntityName => "entity_name",
            Family::EntityFact => "entity_fact",
            Family::TextFact => "text_fact",
            Family::Caption => "caption",
        }
    }

    /// Parses a name given by [`Family::name`].
    pub fn from_name(name: &str) -> Option<Family> {
        Family::ALL.iter().copied().find(|f| f.name() == name)
    }

    /// The question kinds that make up this family.
    pub fn asks(self) -> &'static [Ask] {
        match self {
            Family::Colour => &[Ask::Colour],
            Family::Shape => &[Ask::Shape],
            Family::Count => &[Ask::Count],
            Family::Size => &[Ask::Size],
            Family::Position => &[Ask::Position],
            Family::EntityName => &[Ask::CreatureName],
            Family::EntityFact => &[Ask::CreatureHabitat, Ask::CreatureFood],
            Family::TextFact => &[Ask::NamedHabitat, Ask::NamedFood, Ask::Capital],
            Family::Caption => &[Ask::Caption],
        }
    }

    /// Whether questions of this family come with an image.
    pub fn has_image(self) -> bool {
        self != Family::TextFact
    }
}

/// One kind of question, with its own phrasings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ask {
    Colour,
    Shape,
    Count,
    Size,
    Position,
    CreatureName,
    CreatureHabitat,
    CreatureFood,
    NamedHabitat,
    NamedFood,
    Capital,
    Caption,
}

/// A phrasing: indices into an ask's cores and framings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Phrasing {
    pub core: usize,
    pub framing: usize,
}

const QUESTION_FRAMINGS: [&str; 4] = [
    "{q}",
    "{q} answer briefly.",
    "tell me, {q}",
    "quick question: {q}",
];

const CAPTION_FRAMINGS: [&str; 4] = [
    "{q}",
    "caption: {q}",
    "describe the picture. {q}",
    "write a caption. {q}",
];

impl Ask {
    pub const ALL: [Ask; 12] = [
        Ask::Colour,
        Ask::Shape,
        Ask::Count,
        Ask::Size,
        Ask::Position,
        Ask::CreatureName,
        Ask::CreatureHabitat,
        Ask::CreatureFood,
        Ask::NamedHabitat,
        Ask::NamedFood,
        Ask::Capital,
        Ask::Caption,
    ];

    /// The family this kind of question belongs to.
    pub fn family(self) -> Family {
        match self {
            Ask::Colour => Family::Colour,
            Ask::Shape => Family::Shape,
            Ask::Count => Family::Count,
            Ask::Size => Family::Size,
            Ask::Position => Family::Position,
            Ask::CreatureName => Family::EntityName,
            Ask::CreatureHabitat | Ask::CreatureFood => Family::EntityFact,
            Ask::NamedHabitat | Ask::NamedFood | Ask::Capital => Family::TextFact,
            Ask::Caption => Family::Caption,
        }
    }

    /// The core questions; `{}` stands for the subject's name in text-only questions.
    pub fn cores(self) -> &'static [&'static str] {
        match self {
            Ask::Colour => &[
                "what colour are the objects?",
                "which colour do the shapes have?",
                "what is the colour of the objects in the picture?",
                "what color are the shapes shown?",
                "name the colour you see.",
            ],
            Ask::Shape => &[
                "what shape are the objects?",
                "which shape is shown?",
                "what kind of shape do you see?",
                "name the shape in the picture.",
                "what is the shape of the objects?",
            ],
            Ask::Count => &[
                "how many objects are there?",
                "how many shapes do you see?",
                "what is the number of objects?",
                "count the shapes in the picture.",
                "how many things are shown?",
            ],
            Ask::Size => &[
                "are the objects small or large?",
                "what size are the shapes?",
                "how big are the objects?",
                "are the shapes large or small?",
                "what is the size of the objects?",
            ],
            Ask::Position => &[
                "where is the object?",
                "where is the shape placed?",
                "in which part of the picture is the shape?",
                "what is the position of the object?",
                "where in the image is the shape?",
            ],
            Ask::CreatureName => &[
                "what creature is this?",
                "what is the name of this creature?",
                "which creature is shown?",
                "name the creature in the picture.",
                "what do you call this creature?",
            ],
            Ask::CreatureHabitat => &[
                "where does this creature live?",
                "what is the habitat of this creature?",
                "where can this creature be found?",
                "in which place does this creature live?",
                "where is the home of this creature?",
            ],
            Ask::CreatureFood => &[
                "what does this creature eat?",
                "what is the food of this creature?",
                "what food does this creature like?",
                "what does this creature feed on?",
                "which food does this creature eat?",
            ],
            Ask::NamedHabitat => &[
                "where does the {} live?",
                "what is the habitat of the {}?",
                "where can the {} be found?",
                "in which place does the {} live?",
                "where is the home of the {}?",
            ],
            Ask::NamedFood => &[
                "what does the {} eat?",
                "what is the food of the {}?",
                "what food does the {} like?",
                "what does the {} feed on?",
                "which food does the {} eat?",
            ],
            Ask::Capital => &[
                "what is the capital of {}?",
                "which city is the capital of {}?",
                "name the capital of {}.",
                "in which city is the government of {}?",
                "what is the capital city of {}?",
            ],
            Ask::Caption => &[
                "a photo of",
                "a picture of",
                "an image of",
                "this picture shows",
                "a drawing of",
            ],
        }
    }

    /// The framings that wrap a core.
    pub fn framings(self) -> &'static [&'static str] {
        if self == Ask::Caption {
            &CAPTION_FRAMINGS
        } else {
            &QUESTION_FRAMINGS
        }
    }

    /// Whether a phrasing is held out of training.
    pub fn is_held_out(self, phrasing: Phrasing) -> bool {
        let n = self.framings().len();
        n > 0 && phrasing.framing == phrasing.core % n
    }

    /// Every phrasing of this kind in `split`, in a fixed order.
    pub fn phrasings(self, split: Split) -> Vec<Phrasing> {
        let mut out = Vec::new();
        for core in 0..self.cores().len() {
            for framing in 0..self.framings().len() {
                let p = Phrasing { core, framing };
                if self.is_held_out(p) == (split == Split::HeldOut) {
                    out.push(p);
                }
            }
        }
        out
    }

    /// The question text for `phrasing`, with `subject` filled in where the core names one.
    /// Out-of-range indices fall back to the first core or framing.
    pub fn question(self, phrasing: Phrasing, subject: &str) -> String {
        let cores = self.cores();
        let framings = self.framings();
        let core = cores
            .get(phrasing.core)
            .or(cores.first())
            .copied()
            .unwrap_or("");
        let framing = framings
            .get(phrasing.framing)
            .or(framings.first())
            .copied()
            .unwrap_or("{q}");
        framing.replace("{q}", &core.replace("{}", subject))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_ask_has_at_least_four_phrasings_per_split_and_they_differ() {
        for ask in Ask::ALL {
            let train = ask.phrasings(Split::Train);
            let held = ask.phrasings(Split::HeldOut);
            assert!(train.len() >= 4 && held.len() >= 4, "{ask:?}");
            let train_text: BTreeSet<String> =
                train.iter().map(|p| ask.question(*p, "zorblin")).collect();
            let held_text: BTreeSet<String> =
                held.iter().map(|p| ask.question(*p, "zorblin")).collect();
            assert_eq!(train_text.len(), train.len());
            assert!(train_text.is_disjoint(&held_text), "{ask:?}");
        }
    }

    #[test]
    fn held_out_phrasings_use_only_cores_and_framings_seen_in_training() {
        for ask in Ask::ALL {
            let train = ask.phrasings(Split::Train);
            for p in ask.phrasings(Split::HeldOut) {
                assert!(train.iter().any(|t| t.core == p.core));
                assert!(train.iter().any(|t| t.framing == p.framing));
            }
        }
    }

    #[test]
    fn questions_fill_in_the_subject() {
        let q = Ask::Capital.question(
            Phrasing {
                core: 0,
                framing: 3,
            },
            "drovania",
        );
        assert_eq!(q, "quick question: what is the capital of drovania?");
        let c = Ask::Caption.question(
            Phrasing {
                core: 1,
                framing: 1,
            },
            "",
        );
        assert_eq!(c, "caption: a picture of");
    }

    #[test]
    fn family_names_round_trip() {
        for f in Family::ALL {
            assert_eq!(Family::from_name(f.name()), Some(f));
            assert!(f.asks().iter().all(|a| a.family() == f));
        }
        assert_eq!(Family::from_name("colour_x"), None);
    }
}
