//! mkedsl: a declarative language and interpreter for knowledge editing of multimodal LLMs.

pub mod cli;
pub mod data;
pub mod eval;
pub mod linalg;
pub mod model;
pub mod train;
pub mod world;
