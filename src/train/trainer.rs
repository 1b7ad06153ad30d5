//! The training loop: world examples → teacher-forced answer loss → AdamW, with periodic
//! held-out accuracy and resumable checkpoints.
//!
//! Every step draws its batch from its own seeded stream (seed, step), so a run resumed from a
//! checkpoint sees exactly the batches the uninterrupted run would have seen. Image and
//! text-only examples of a batch run as two forward passes: a text prompt is ~15 tokens, an
//! image prompt ~55, and padding one to the other would double the work of the text rows.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Tensor;
use serde::Serialize;

use crate::data::files::write_atomic;
use crate::data::prompt::PromptTemplate;
use crate::model::Llava;
use crate::world::rng::{mix64, WorldRng};
use crate::world::{train_tokenizer, Example, Family, FamilyMix, Split, World};

use super::checkpoint::{
    load_checkpoint, remove_checkpoints, save_checkpoint, EvalPoint, LossPoint, TrainState,
};
use super::conversation::{converse, Conversation};
use super::error::{Result, TrainError};
use super::knowledge::{measure_knowledge, KnowledgeReport};
use super::optim::{named_vars, AdamW, AdamWConfig};
use super::pretrain::{pretrain_vision, PretrainOptions, PretrainSummary};
use super::schedule::LrSchedule;
use super::sequence::answer_loss;
use super::spec::{parameter_count, ModelSpec};

/// Seed of the held-out sample the periodic evaluations use (fixed, so evaluations compare).
pub const EVAL_SEED: u64 = 1;

/// Name of the run record written next to the trained model.
pub const TRAINING_FILE: &str = "training.json";

/// Everything a training run needs.
#[derive(Debug, Clone, Serialize)]
pub struct TrainOptions {
    /// Folder the model (and checkpoints while training) is written to.
    pub out: PathBuf,
    /// Seed of the initial weights and of the batch order.
    pub seed: u64,
    /// Seed of the world the model learns.
    pub world_seed: u64,
    pub spec: ModelSpec,
    pub steps: usize,
    /// Conversations per step (each starts with one sampled example).
    pub batch: usize,
    /// Most questions per picture in one training conversation (1: single-turn only).
    pub max_turns: usize,
    pub schedule: LrSchedule,
    pub optimizer: AdamWConfig,
    pub mix: FamilyMix,
    /// Held-out evaluation every this many steps (0: only at the end).
    pub eval_every: usize,
    /// Held-out questions per family in each evaluation.
    pub eval_per_family: usize,
    /// Checkpoint every this many steps (0: never).
    pub checkpoint_every: usize,
    /// Loss logged every this many steps.
    pub log_every: usize,
    /// Stage 1 (vision pretraining) before the conversation training; `None` skips it.
    pub pretrain: Option<PretrainOptions>,
    /// Stage 2 leaves the vision tower as stage 1 left it (only the projector and decoder learn).
    pub freeze_vision: bool,
    /// Continue from the checkpoint in `out`, if one exists.
    pub resume: bool,
    /// The command line that started the run (recorded in training.json).
    pub command: String,
}

impl TrainOptions {
    /// The options of the embedded model's training with a given step budget.
    pub fn embedded(out: PathBuf, steps: usize) -> TrainOptions {
        TrainOptions {
            out,
            seed: 0,
            world_seed: 0,
            spec: ModelSpec::embedded(),
            steps,
            batch: 32,
            max_turns: 5,
            schedule: LrSchedule {
                peak: 2e-3,
                warmup: 100.min(steps / 10 + 1),
                total: steps,
                floor: 0.05,
            },
            optimizer: AdamWConfig::default(),
            mix: FamilyMix::uniform(),
            eval_every: 500,
            eval_per_family: 32,
            checkpoint_every: 250,
            log_every: 25,
            pretrain: None,
            freeze_vision: false,
            resume: false,
            command: String::new(),
        }
    }

    fn check(&self) -> Result<()> {
        let bad = |reason: &str, help: &str| {
            Err(TrainError::Option {
                reason: reason.into(),
                help: help.into(),
            })
        };
        if self.steps == 0 || self.batch == 0 {
            return bad(
                "steps and batch must be positive",
                "pass --steps N --batch B with N, B ≥ 1",
            );
        }
        if !(self.schedule.peak > 0.0 && self.schedule.peak.is_finite()) {
            return bad(
                "the learning rate must be a positive number",
                "pass e.g. --lr 2e-3",
            );
        }
        if !(0.0..=1.0).contains(&self.schedule.floor) {
            return bad(
                "the learning-rate floor is a fraction of the peak",
                "pass --lr-floor between 0 and 1",
            );
        }
        if Family::ALL.iter().all(|&f| self.mix.weight(f) == 0) {
            return bad(
                "every family has weight 0",
                "give at least one family a positive --family-weight",
            );
        }
        Ok(())
    }
}

/// What a finished run reports (also written to `training.json`).
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub command: String,
    pub options: TrainOptions,
    pub parameters: usize,
    /// Stage 1, when it ran in this invocation.
    pub vision: Option<PretrainSummary>,
    pub steps: usize,
    /// Training wall time, summed over resumed runs (final evaluation excluded).
    pub wall_seconds: f64,
    /// Cores the machine offered.
    pub cores: usize,
    pub history: Vec<LossPoint>,
    pub evals: Vec<EvalPoint>,
    /// The held-out accuracy of the saved model.
    pub knowledge: KnowledgeReport,
}

/// The sampled examples of step `step`: its own stream of the training split.
pub fn step_examples(world: &World, options: &TrainOptions, step: usize) -> Vec<Example> {
    world
        .sampler(
            Split::Train,
            step_stream(options, step),
            options.mix.clone(),
        )
        .take(options.batch)
        .collect()
}

/// The batch of step `step`: each sampled example opens a conversation about its picture.
pub fn step_conversations(world: &World, options: &TrainOptions, step: usize) -> Vec<Conversation> {
    let mut rng = WorldRng::derive(world.seed, "turns", step_stream(options, step));
    step_examples(world, options, step)
        .into_iter()
        .map(|e| converse(world, e, options.max_turns, &mut rng))
        .collect()
}

fn step_stream(options: &TrainOptions, step: usize) -> u64 {
    mix64(options.seed ^ mix64(step as u64))
}

/// Trains a model as `options` says, logging progress lines to `log`, and saves it (Hugging
/// Face layout plus `training.json`) into `options.out`.
pub fn train(options: &TrainOptions, log: &mut dyn FnMut(&str)) -> Result<TrainSummary> {
    options.check()?;
    let out = &options.out;
    std::fs::create_dir_all(out).map_err(|e| TrainError::Checkpoint {
        path: out.clone(),
        reason: e.to_string(),
    })?;
    let world = World::new(options.world_seed);
    let tokenizer = train_tokenizer(&world)?;
    let (llava, mut varmap) = options.spec.fresh(tokenizer, options.seed)?;
    let parameters = parameter_count(&varmap);
    // LLaVA keeps its CLIP tower frozen while the projector and the language model learn; with
    // stage 1 in place of CLIP's pretraining, `freeze_vision` does the same.
    let trained: Vec<_> = named_vars(&varmap)?
        .into_iter()
        .filter(|(name, _)| !(options.freeze_vision && name.starts_with("vision_tower.")))
        .collect();
    let mut optimizer = AdamW::over(trained, options.optimizer)?;
    let mut state = TrainState {
        seed: options.seed,
        world_seed: options.world_seed,
        batch: options.batch,
        ..TrainState::default()
    };
    let mut resumed = false;
    if options.resume {
        if let Some(saved) = load_checkpoint(out, &mut varmap, &mut optimizer)? {
            resumed = true;
            check_resumable(&saved, &state, out)?;
            log(&format!(
                "resumed at step {} ({:.0} s trained)",
                saved.step, saved.seconds
            ));
            state = saved;
        }
    }
    log(&format!(
        "training {parameters} parameters for {} steps, batch {}, world {}, seed {}",
        options.steps, options.batch, options.world_seed, options.seed
    ));

    let mut vision = None;
    if let (Some(pre), false) = (&options.pretrain, resumed) {
        log(&format!(
            "stage 1: vision pretraining, {} steps of {} pictures",
            pre.steps, pre.batch
        ));
        let summary = pretrain_vision(&llava, &varmap, &world, pre, options.seed, log)?;
        state.seconds += summary.seconds;
        vision = Some(summary);
    }

    let template = PromptTemplate::llava15();
    let started = Instant::now();
    let seconds_before = state.seconds;
    let mut window = Window::default();
    while state.step < options.steps {
        let step = state.step;
        let conversations = step_conversations(&world, options, step);
        let batch = batch_loss(&llava, &template, &conversations)?;
        let grads = batch.loss.backward()?;
        let lr = options.schedule.at(step);
        let stats = optimizer.step(&grads, lr)?;
        window.add(&batch, stats.grad_norm)?;
        state.step += 1;
        state.seconds = seconds_before + started.elapsed().as_secs_f64();

        let done = state.step == options.steps;
        if state.step.is_multiple_of(options.log_every.max(1)) || done {
            let point = window.take(state.step, lr);
            let families: Vec<String> = point
                .per_family
                .iter()
                .map(|(f, l)| format!("{f} {l:.3}"))
                .collect();
            log(&format!(
                "step {:>6}/{}  loss {:.4}  lr {:.2e}  |g| {:.3}  {:.0} s  [{}]",
                point.step,
                options.steps,
                point.loss,
                point.lr,
                point.grad_norm,
                state.seconds,
                families.join(", ")
            ));
            state.history.push(point);
        }
        if options.eval_every > 0 && state.step.is_multiple_of(options.eval_every) && !done {
            let report = measure_knowledge(&llava, &world, options.eval_per_family, EVAL_SEED)?;
            log(&format!("eval step {}: {}", state.step, report.line()));
            state
                .evals
                .push(eval_point(state.step, state.seconds, &report));
        }
        if options.checkpoint_every > 0
            && state.step.is_multiple_of(options.checkpoint_every)
            && !done
        {
            save_checkpoint(out, &llava, &optimizer, &state)?;
        }
    }

    llava.save(out)?;
    let knowledge = measure_knowledge(&llava, &world, options.eval_per_family, EVAL_SEED)?;
    log(&format!("final: {}", knowledge.line()));
    state
        .evals
        .push(eval_point(state.step, state.seconds, &knowledge));
    let summary = TrainSummary {
        command: options.command.clone(),
        options: options.clone(),
        parameters,
        vision,
        steps: state.step,
        wall_seconds: state.seconds,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        history: state.history,
        evals: state.evals,
        knowledge,
    };
    write_summary(out, &summary)?;
    remove_checkpoints(out)?;
    Ok(summary)
}

/// A batch's mean answer-token loss, and the (detached) summed loss and token count of each
/// family in it, for the log.
pub struct BatchLoss {
    pub loss: Tensor,
    pub per_family: Vec<(Family, f64, usize)>,
}

/// Mean answer-token loss of a batch; conversations with and without a picture run as separate
/// passes.
pub fn batch_loss(
    llava: &Llava,
    template: &PromptTemplate,
    conversations: &[Conversation],
) -> Result<BatchLoss> {
    let (with_image, text_only): (Vec<&Conversation>, Vec<&Conversation>) =
        conversations.iter().partition(|c| c.image.is_some());
    let mut total: Option<Tensor> = None;
    let mut tokens = 0;
    let mut per_family: Vec<(Family, f64, usize)> =
        Family::ALL.iter().map(|&f| (f, 0.0, 0)).collect();
    for group in [with_image, text_only] {
        if group.is_empty() {
            continue;
        }
        let sequences = group
            .iter()
            .map(|c| c.sequence(llava, template))
            .collect::<Result<Vec<_>>>()?;
        let loss = answer_loss(&llava.model, &sequences)?;
        for (&(row, turn), value) in loss.owners.iter().zip(loss.values()?) {
            let family = group
                .get(row)
                .and_then(|c| c.turns.get(turn))
                .map(|t| t.family);
            if let Some(entry) = per_family.iter_mut().find(|(f, _, _)| Some(*f) == family) {
                entry.1 += value;
                entry.2 += 1;
            }
        }
        tokens += loss.tokens();
        let sum = loss.sum()?;
        total = Some(match total {
            Some(t) => (t + sum)?,
            None => sum,
        });
    }
    let total = total.ok_or_else(|| TrainError::Option {
        reason: "a training batch came out empty".into(),
        help: "give at least one family a positive weight".into(),
    })?;
    Ok(BatchLoss {
        loss: (total / tokens.max(1) as f64)?,
        per_family,
    })
}

fn check_resumable(saved: &TrainState, now: &TrainState, out: &Path) -> Result<()> {
    if (saved.seed, saved.world_seed, saved.batch) != (now.seed, now.world_seed, now.batch) {
        return Err(TrainError::Checkpoint {
            path: out.to_path_buf(),
            reason: format!(
                "the checkpoint was trained with seed {}, world {}, batch {}; this run asks for seed {}, world {}, batch {}",
                saved.seed, saved.world_seed, saved.batch, now.seed, now.world_seed, now.batch
            ),
        });
    }
    Ok(())
}

fn eval_point(step: usize, seconds: f64, report: &KnowledgeReport) -> EvalPoint {
    EvalPoint {
        step,
        seconds,
        accuracy: report
            .families
            .iter()
            .map(|f| (f.family.name().to_string(), f.accuracy))
            .collect(),
    }
}

fn write_summary(out: &Path, summary: &TrainSummary) -> Result<()> {
    let path = out.join(TRAINING_FILE);
    let fail = |reason: String| TrainError::Checkpoint {
        path: path.clone(),
        reason,
    };
    let mut json = serde_json::to_string_pretty(summary).map_err(|e| fail(e.to_string()))?;
    json.push('\n');
    write_atomic(&path, json.as_bytes()).map_err(|e| fail(e.to_string()))
}

/// Running means of loss and gradient norm between log lines.
#[derive(Default)]
struct Window {
    loss: f64,
    grad_norm: f64,
    n: usize,
    per_family: Vec<(Family, f64, usize)>,
}

impl Window {
    fn add(&mut self, batch: &BatchLoss, grad_norm: f64) -> Result<()> {
        self.loss += f64::from(batch.loss.to_scalar::<f32>()?);
        self.grad_norm += grad_norm;
        self.n += 1;
        for &(family, sum, n) in &batch.per_family {
            match self.per_family.iter_mut().find(|(f, _, _)| *f == family) {
                Some(entry) => {
                    entry.1 += sum;
                    entry.2 += n;
                }
                None => self.per_family.push((family, sum, n)),
            }
        }
        Ok(())
    }

    fn take(&mut self, step: usize, lr: f64) -> LossPoint {
        let n = self.n.max(1) as f64;
        let point = LossPoint {
            step,
            loss: self.loss / n,
            lr,
            grad_norm: self.grad_norm / n,
            per_family: self
                .per_family
                .iter()
                .filter(|(_, _, n)| *n > 0)
                .map(|(f, sum, n)| (f.name().to_string(), sum / *n as f64))
                .collect(),
        };
        *self = Window::default();
        point
    }
}
