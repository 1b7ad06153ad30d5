//! mkedsl: a declarative language and interpreter for knowledge editing of multimodal LLMs.

pub mod cli;
pub mod linalg;
pub mod model;
