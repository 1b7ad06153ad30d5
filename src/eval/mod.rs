//! Scoring edits. `metrics` holds the pure primitives (token accuracy, locality agreement, exact
//! match, aggregation); the evaluator that runs a model over a dataset builds on them.

pub mod metrics;
