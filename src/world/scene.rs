//! What an image of the world can show: scenes of identical objects and creatures.
//!
//! Every attribute a question asks about is a closed enum with one answer word, so a question's
//! answer is a function of the picture and nothing else. A scene holds `count` copies of one object
//! (same shape, colour and size): "what colour is it?" then has exactly one answer. Position is only
//! defined for single-object scenes, where "where is the object?" is unambiguous.

use serde::Serialize;

/// The shape of a scene's objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Diamond,
    Cross,
}

impl Shape {
    pub const ALL: [Shape; 5] = [
        Shape::Circle,
        Shape::Square,
        Shape::Triangle,
        Shape::Diamond,
        Shape::Cross,
    ];

    /// The answer word ("circle").
    pub fn word(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Diamond => "diamond",
            Shape::Cross => "cross",
        }
    }

    /// The plural used in captions ("circles").
    pub fn plural(self) -> &'static str {
        match self {
            Shape::Circle => "circles",
            Shape::Square => "squares",
            Shape::Triangle => "triangles",
            Shape::Diamond => "diamonds",
            Shape::Cross => "crosses",
        }
    }
}

/// The colour of a scene's objects or of a creature's body. Saturated colours far from the light
/// background and at least ~75 apart in some channel, so jitter never makes two of them meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Colour {
    Red,
    Green,
    Blue,
    Yellow,
    Purple,
    Orange,
    Pink,
    Brown,
}

impl Colour {
    pub const ALL: [Colour; 8] = [
        Colour::Red,
        Colour::Green,
        Colour::Blue,
        Colour::Yellow,
        Colour::Purple,
        Colour::Orange,
        Colour::Pink,
        Colour::Brown,
    ];

    /// The answer word ("red").
    pub fn word(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Green => "green",
            Colour::Blue => "blue",
            Colour::Yellow => "yellow",
            Colour::Purple => "purple",
            Colour::Orange => "orange",
            Colour::Pink => "pink",
            Colour::Brown => "brown",
        }
    }

    /// The base RGB value before per-render jitter.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Colour::Red => [215, 35, 35],
            Colour::Green => [35, 165, 55],
            Colour::Blue => [40, 75, 215],
            Colour::Yellow => [235, 205, 25],
            Colour::Purple => [130, 50, 185],
            Colour::Orange => [245, 135, 20],
            Colour::Pink => [245, 120, 195],
            Colour::Brown => [130, 75, 30],
        }
    }
}

/// Object size: the two classes are 12–14 px and 20–22 px wide, never overlapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Size {
    Small,
    Large,
}

impl Size {
    pub const ALL: [Size; 2] = [Size::Small, Size::Large];

    pub fn word(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Large => "large",
        }
    }
}

/// How many objects a scene holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Count {
    One,
    Two,
    Three,
    Four,
}

impl Count {
    pub const ALL: [Count; 4] = [Count::One, Count::Two, Count::Three, Count::Four];

    pub fn word(self) -> &'static str {
        match self {
            Count::One => "one",
            Count::Two => "two",
            Count::Three => "three",
            Count::Four => "four",
        }
    }

    pub fn get(self) -> usize {
        match self {
            Count::One => 1,
            Count::Two => 2,
            Count::Three => 3,
            Count::Four => 4,
        }
    }
}

/// Where a single object sits; its centre lies 12 px from the image centre (or on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    Left,
    Right,
    Top,
    Bottom,
    Center,
}

impl Position {
    pub const ALL: [Position; 5] = [
        Position::Left,
        Position::Right,
        Position::Top,
        Position::Bottom,
        Position::Center,
    ];

    pub fn word(self) -> &'static str {
        match self {
            Position::Left => "left",
            Position::Right => "right",
            Position::Top => "top",
            Position::Bottom => "bottom",
            Position::Center => "center",
        }
    }
}

/// A scene: `count` identical objects. `position` is `Some` exactly when `count` is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Scene {
    pub shape: Shape,
    pub colour: Colour,
    pub size: Size,
    pub count: Count,
    pub position: Option<Position>,
}

impl Scene {
    /// Every scene the world can show, in a fixed order (640 of them).
    pub fn all() -> Vec<Scene> {
        let mut scenes = Vec::new();
        for shape in Shape::ALL {
            for colour in Colour::ALL {
                for size in Size::ALL {
                    for count in Count::ALL {
                        let positions: Vec<Option<Position>> = if count == Count::One {
                            Position::ALL.iter().copied().map(Some).collect()
                        } else {
                            vec![None]
                        };
                        for position in positions {
                            scenes.push(Scene {
                                shape,
                                colour,
                                size,
                                count,
                                position,
                            });
                        }
                    }
                }
            }
        }
        scenes
    }

    /// The E-IC style caption: "two large red circles", "one small blue square".
    pub fn caption(&self) -> String {
        let shape = if self.count == Count::One {
            self.shape.word()
        } else {
            self.shape.plural()
        };
        format!(
            "{} {} {} {}",
            self.count.word(),
            self.size.word(),
            self.colour.word(),
            shape
        )
    }
}

/// A creature's body outline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    Blob,
    Block,
    Cone,
    Kite,
}

impl Body {
    pub const ALL: [Body; 4] = [Body::Blob, Body::Block, Body::Cone, Body::Kite];
}

/// The marking drawn on a creature's body in a darker shade of its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    Plain,
    Stripes,
    Spots,
}

impl Pattern {
    pub const ALL: [Pattern; 3] = [Pattern::Plain, Pattern::Stripes, Pattern::Spots];
}

/// How a creature looks: body and colour identify it; the pattern is a redundant second cue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Look {
    pub body: Body,
    pub colour: Colour,
    pub pattern: Pattern,
}

impl Look {
    /// The 32 looks of the world's creatures, in a fixed order.
    pub fn all() -> Vec<Look> {
        let mut looks = Vec::new();
        for (b, body) in Body::ALL.iter().enumerate() {
            for (c, colour) in Colour::ALL.iter().enumerate() {
                let pattern = Pattern::ALL[(b + c) % Pattern::ALL.len()];
                looks.push(Look {
                    body: *body,
                    colour: *colour,
                    pattern,
                });
            }
        }
        looks
    }
}

/// What a picture shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Content {
    Scene(Scene),
    Creature { entity: usize, look: Look },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn there_are_640_distinct_scenes_with_position_only_for_single_objects() {
        let scenes = Scene::all();
        assert_eq!(scenes.len(), 640);
        assert_eq!(scenes.iter().collect::<BTreeSet<_>>().len(), 640);
        for s in &scenes {
            assert_eq!(s.position.is_some(), s.count == Count::One);
        }
    }

    #[test]
    fn captions_use_the_plural_after_one() {
        let s = Scene {
            shape: Shape::Cross,
            colour: Colour::Red,
            size: Size::Large,
            count: Count::Two,
            position: None,
        };
        assert_eq!(s.caption(), "two large red crosses");
        let one = Scene {
            count: Count::One,
            position: Some(Position::Left),
            ..s
        };
        assert_eq!(one.caption(), "one large red cross");
    }

    #[test]
    fn looks_are_32_distinct_body_colour_pairs() {
        let looks = Look::all();
        assert_eq!(looks.len(), 32);
        let pairs: BTreeSet<_> = looks.iter().map(|l| (l.body, l.colour)).collect();
        assert_eq!(pairs.len(), 32);
    }

    #[test]
    fn colours_are_far_apart() {
        for (i, a) in Colour::ALL.iter().enumerate() {
            for b in Colour::ALL.iter().skip(i + 1) {
                let (ra, rb) = (a.rgb(), b.rgb());
                let max_gap = (0..3)
                    .map(|k| (i32::from(ra[k]) - i32::from(rb[k])).abs())
                    .max()
                    .unwrap_or(0);
                assert!(max_gap >= 60, "{a:?} vs {b:?}: {max_gap}");
            }
        }
    }
}
