//! The embedded model: a tiny LLaVA-1.5 trained from scratch on the procedural world, the check
//! that it knows the world, and the MMEdit datasets carrying its real answers.
//!
//! ```text
//! World ──sampler(Train, per-step seed)──▶ Example ─▶ Conversation (more questions, same picture)
//!   ─▶ Sequence (LLaVA-1.5 turns: "USER: <image>\n{q} ASSISTANT: {a}</s>USER: …")
//!   ModelSpec::fresh ─▶ Llava (every weight a Var) ─▶ answer_loss (logits at answer rows only)
//!   ─▶ AdamW (warmup + cosine) ─▶ checkpoint/ (resumable) ─▶ Llava::save(out) + training.json
//! measure_knowledge(llava, world): held-out greedy exact match per family (`mkedsl knowledge`)
//! write_world_datasets(llava, world): evqa.json / eic.json with `pred` = greedy answer
//! ```
//!
//! `examples/model/` is the model this trains with `mkedsl train` (see its README.md), and
//! `examples/data/` the datasets `mkedsl dataset` writes with it.

pub mod answer;
pub mod checkpoint;
pub mod conversation;
pub mod dataset;
pub mod error;
pub mod knowledge;
pub mod optim;
pub mod pretrain;
pub mod schedule;
pub mod sequence;
pub mod spec;
pub mod trainer;

pub use answer::{greedy_answer, greedy_answers, Question, MAX_ANSWER_TOKENS};
pub use conversation::{converse, Conversation, ConversationTurn};
pub use dataset::{write_world_datasets, DatasetPlan};
pub use error::TrainError;
pub use knowledge::{measure_knowledge, FamilyScore, KnowledgeReport, Miss};
pub use optim::{AdamW, AdamWConfig};
pub use pretrain::{pretrain_vision, PretrainOptions, PretrainSummary};
pub use schedule::LrSchedule;
pub use sequence::{answer_loss, AnswerLoss, Sequence, Turn};
pub use spec::{parameter_count, ModelSpec};
pub use trainer::{
    batch_loss, step_conversations, step_examples, train, BatchLoss, TrainOptions, TrainSummary,
};
