//! The embedded world: a seeded, procedural multimodal world small enough for a model of a few
//! million parameters to learn completely, so edits have real knowledge to change and to damage.
//!
//! ```text
//! World::new(seed) ─┬─ sampler(split) / held_out(family)  → Example {image?, question, answer, family}
//!                   ├─ edit_cases(kind)                   → EditCase → data::write_dataset → evqa.json / eic.json
//!                   ├─ preserve_pool / hallucination_triplets
//!                   └─ train_tokenizer / export_world     → tokenizer.json, world.json (`mkedsl world`)
//! ```
//!
//! Scenes hold 1–4 identical objects (5 shapes, 8 colours, 2 sizes; one object also has one of 5
//! positions); 32 creatures, each a body/colour pair with markings and eyes, have invented names, a
//! habitat and a food; 24 invented countries have capitals. Questions come in 9 families (see
//! [`Family`]), each answered by one word except captions ("two large red circles"). Every picture
//! is 48×48 and can be re-rendered with new jitter, tint and noise without changing any answer.

pub mod cases;
pub mod corpus;
pub mod error;
pub mod export;
pub mod facts;
pub mod lexicon;
pub mod phrasing;
pub mod pools;
pub mod render;
pub mod rng;
pub mod scene;
pub mod tokenizer;

pub use cases::{CaseKind, EditCase};
pub use corpus::{
    Attribute, Example, FactKey, FamilyMix, RenderSpace, Sampler, Split, Subject, Visual,
};
pub use error::WorldError;
pub use export::{export_world, ExportOptions, ExportSummary};
pub use facts::{Country, Creature, Role, SceneEntry, World};
pub use phrasing::{Ask, Family, Phrasing};
pub use pools::{PoolSizes, PreservePool, Triplet};
pub use render::{render, IMAGE_SIZE};
pub use scene::{Body, Colour, Content, Count, Look, Pattern, Position, Scene, Shape, Size};
pub use tokenizer::{corpus_text, save_tokenizer, train_tokenizer, SPECIAL_TOKENS};
