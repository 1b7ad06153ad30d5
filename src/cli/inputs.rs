//! The flags `eval` and `run` share: which model and dataset, where the images are, on which
//! device, and how the evaluation batches its prompts. One struct so both commands spell and
//! check them the same way.

use std::path::PathBuf;

use clap::Args;

use crate::eval::{ProbeOptions, SetupRequest};
use crate::model::device::DeviceKind;

#[derive(Debug, Args)]
pub struct EditDataArgs {
    /// Checkpoint folder in Hugging Face layout [default: examples/model].
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// MMEdit JSON file (E-VQA / E-IC schema) [default: examples/data/evqa.json].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Root of the `image` and `m_loc` paths [default: the data file's folder].
    #[arg(long)]
    pub image_root: Option<PathBuf>,
    /// Root of the `image_rephrase` paths [default: the image root].
    #[arg(long)]
    pub rephrase_root: Option<PathBuf>,
    /// Allow `image` / `image_rephrase` / `m_loc` paths that leave the image roots (`..`,
    /// absolute paths); refused by default.
    #[arg(long)]
    pub images_anywhere: bool,
    /// Device to run on: cpu or cuda.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceKind,
    /// Sequences per forward pass of the evaluation.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Most tokens a greedy generation may produce.
    #[arg(long, default_value_t = 16)]
    pub max_new_tokens: usize,
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
        let setup = SetupRequest {
            model: self.model,
            data: self.data,
            image_root: self.image_root,
            rephrase_root: self.rephrase_root,
            limit,
            device: self.device,
            images_anywhere: self.images_anywhere,
        };
        let probe = ProbeOptions {
            batch_size: self.batch_size,
            max_new_tokens: self.max_new_tokens,
        };
        Ok((setup, probe))
    }
}
