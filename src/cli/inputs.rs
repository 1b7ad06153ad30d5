//! The flags `eval` and `run` share: which model and datasets, where the images are, how fields
//! are templated, on which device, and how the evaluation batches its prompts. One struct so both commands spell and
//! check them the same way.

use std::path::PathBuf;

use clap::Args;

use crate::data::{FieldTemplateArg, FieldTemplates};
use crate::eval::{ProbeOptions, SetupRequest};
use crate::model::device::DeviceKind;
use crate::model::Precision;

#[derive(Debug, Args)]
pub struct EditDataArgs {
    /// Checkpoint folder in Hugging Face layout [default: examples/model].
    /// `ORG/NAME[@REVISION]` names a snapshot in the Hugging Face cache (offline).
    #[arg(long, value_parser = crate::model::hub::model_arg)]
    pub model: Option<PathBuf>,
    /// MMEdit JSON file (E-VQA / E-IC schema); repeat the flag to run several files as one
    /// sequence (their cases one file after another, or alternating with --interleave)
    /// [default: examples/data/evqa.json].
    #[arg(long)]
    pub data: Vec<PathBuf>,
    /// With several --data files: take their cases in turn (cross-task sequences that mix
    /// E-VQA and E-IC edits in every group) instead of one file after another.
    #[arg(long)]
    pub interleave: bool,
    #[command(flatten)]
    pub images: ImageArgs,
    /// How each field's question becomes a prompt: a preset (easyedit-vqa, easyedit-caption)
    /// or FIELD=STYLE with FIELD one of src, rephrase, loc, m_loc_q, all and STYLE one of chat
    /// (the model's template), raw, easyedit (`Question: … Short answer:` in the chat
    /// template), easyedit-raw; repeat it, later ones win [default: all=chat].
    #[arg(long, value_name = "PRESET|FIELD=STYLE")]
    pub field_template: Vec<FieldTemplateArg>,
    /// Device to run on: cpu or cuda.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceKind,
    /// Precision of the frozen weights: f32, bf16 or f16 (half the memory). Trained tensors,
    /// optimiser state, logits and linear algebra stay f32.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: Precision,
    /// Sequences per forward pass of the evaluation.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Most tokens a greedy generation may produce (evaluation also stops each one after its
    /// answer's length + 1 tokens).
    #[arg(long, default_value_t = 16)]
    pub max_new_tokens: usize,
}

/// Where a dataset's images are and what a missing one does: shared by every command that reads
/// MMEdit data (eval, run, compare, bench).
#[derive(Debug, Clone, Args)]
pub struct ImageArgs {
    /// Root of the `image` and `m_loc` paths (EasyEdit's `coco_image`) [default: the data
    /// file's folder].
    #[arg(long)]
    pub image_root: Option<PathBuf>,
    /// Root of the `image_rephrase` paths (EasyEdit's `rephrase_image`) [default: the image
    /// root].
    #[arg(long)]
    pub rephrase_root: Option<PathBuf>,
    /// Allow `image` / `image_rephrase` / `m_loc` paths that leave the image roots (`..`,
    /// absolute paths); refused by default.
    #[arg(long)]
    pub images_anywhere: bool,
    /// Make a record whose image is missing an error; by default it is skipped and counted.
    #[arg(long)]
    pub strict: bool,
}

impl ImageArgs {
    /// These settings on a setup request.
    pub fn apply(self, setup: SetupRequest) -> SetupRequest {
        SetupRequest {
            image_root: self.image_root,
            rephrase_root: self.rephrase_root,
            images_anywhere: self.images_anywhere,
            strict: self.strict,
            ..setup
        }
    }
}

impl EditDataArgs {
    /// The setup request for the first `limit` cases, after checking the batch flags.
    pub fn into_request(
        self,
        limit: Option<usize>,
    ) -> miette::Result<(SetupRequest, ProbeOptions)> {
        for (flag, value) in [
            ("--batch-size", Some(self.batch_size)),
            ("--max-new-tokens", Some(self.max_new_tokens)),
            ("--limit", limit),
        ] {
            if value == Some(0) {
                return Err(miette::miette!(
                    help = "give it a value of at least 1",
                    "{flag} must be positive"
                ));
            }
        }
        let mut data = self.data.into_iter();
        if self.interleave && data.len() < 2 {
            return Err(miette::miette!(
                help = "give --data at least twice, or drop --interleave",
                "--interleave mixes several data files; only {} was given",
                data.len()
            ));
        }
        let setup = self.images.apply(SetupRequest {
            model: self.model,
            data: data.next(),
            extra_data: data.collect(),
            interleave: self.interleave,
            limit,
            device: self.device,
            dtype: self.dtype,
            fields: FieldTemplates::from_args(&self.field_template),
            ..SetupRequest::default()
        });
        let probe = ProbeOptions {
            batch_size: self.batch_size,
            max_new_tokens: self.max_new_tokens,
        };
        Ok((setup, probe))
    }
}
