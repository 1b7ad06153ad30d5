//! Prompts and images into token ids and pixels, as Hugging Face's `LlavaProcessor` does it.
//!
//! The prompt is used verbatim (no chat template is applied); the tokenizer's post-processor
//! decides about BOS; each `<image>` becomes as many image-token ids as the vision tower yields
//! features. Expanding after tokenisation is equivalent to the processor's string expansion
//! because `<image>` is an added special token, and it does not depend on how a tokenizer would
//! merge a run of repeated markers.

use std::path::Path;

use candle_core::Tensor;
use image::DynamicImage;
use tokenizers::Tokenizer;

use crate::model::atomic::write_atomic;
use crate::model::batch::Encoded;
use crate::model::config::LlavaConfig;
use crate::model::error::{ModelError, Result};
use crate::model::preprocess::{ImageProcessor, PREPROCESSOR_FILE};

/// Name of the tokenizer in a checkpoint folder.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Tokenizer, image preprocessing and the image-token bookkeeping of a LLaVA checkpoint.
#[derive(Clone)]
pub struct LlavaProcessor {
    tokenizer: Tokenizer,
    tokenizer_path: String,
    pub image: ImageProcessor,
    image_token_id: u32,
    image_token: String,
    tokens_per_image: usize,
    eos_token_id: Option<u32>,
    /// The decoder's context (`max_position_embeddings`): no encoded prompt may be longer.
    max_positions: usize,
}

/// Bytes of text per position of context beyond which a prompt is refused before it is
/// tokenised: every token of a real vocabulary spells fewer bytes than this, so a longer text
/// cannot fit the context, and tokenising megabytes only to say so would take memory and time.
const MAX_BYTES_PER_POSITION: usize = 64;

impl std::fmt::Debug for LlavaProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlavaProcessor")
            .field("tokenizer", &self.tokenizer_path)
            .field("image", &self.image)
            .field("image_token", &self.image_token)
            .field("tokens_per_image", &self.tokens_per_image)
            .finish()
    }
}

impl LlavaProcessor {
    /// Reads `tokenizer.json` and `preprocessor_config.json` from a checkpoint folder.
    pub fn load(dir: &Path, cfg: &LlavaConfig) -> Result<Self> {
        let path = dir.join(TOKENIZER_FILE);
        let shown = path.display().to_string();
        if !path.is_file() {
            return Err(ModelError::MissingFile {
                path: shown,
                what: "tokenizer",
                help: "a LLaVA checkpoint folder holds tokenizer.json next to config.json".into(),
            });
        }
        let tokenizer = Tokenizer::from_file(&path).map_err(|e| ModelError::Tokenizer {
            path: shown.clone(),
            reason: format!("cannot parse it: {e}"),
            help: "tokenizer.json must be a Hugging Face `tokenizers` file (the fast-tokenizer format)".into(),
        })?;
        let image = ImageProcessor::from_path(&dir.join(PREPROCESSOR_FILE))?;
        Self::new(tokenizer, &shown, image, cfg)
    }

    /// Assembles a processor from parts (the trainer builds its own tokenizer); `tokenizer_path`
    /// is only used in messages.
    pub fn new(
        tokenizer: Tokenizer,
        tokenizer_path: &str,
        image: ImageProcessor,
        cfg: &LlavaConfig,
    ) -> Result<Self> {
        let image_token_id = cfg.image_token_index;
        let image_token =
            tokenizer
                .id_to_token(image_token_id)
                .ok_or_else(|| ModelError::Tokenizer {
                    path: tokenizer_path.to_string(),
                    reason: format!(
                    "it has no token with id {image_token_id} (config.json's image_token_index)"
                ),
                    help: "add `<image>` as a special token with that id, or fix image_token_index"
                        .into(),
                })?;
        let eos_token_id = cfg
            .text_config
            .eos_token_id
            .or_else(|| tokenizer.token_to_id("</s>"));
        let expected = cfg.vision_config.image_size;
        if let Some((h, w)) = image.crop {
            if (h, w) != (expected, expected) {
                return Err(ModelError::Preprocessor {
                    path: PREPROCESSOR_FILE.into(),
                    reason: format!(
                        "crop_size {h}×{w} does not match the vision tower's image_size {expected}"
                    ),
                });
            }
        }
        Ok(Self {
            tokenizer,
            tokenizer_path: tokenizer_path.to_string(),
            image,
            image_token_id,
            image_token,
            tokens_per_image: cfg.image_tokens(),
            eos_token_id,
            max_positions: cfg.text_config.max_position_embeddings,
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn image_token_id(&self) -> u32 {
        self.image_token_id
    }

    /// The end-of-sequence id generation stops at (config, else the tokenizer's `</s>`).
    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos_token_id
    }

    fn tokenizer_error(&self, e: impl std::fmt::Display) -> ModelError {
        ModelError::Tokenizer {
            path: self.tokenizer_path.clone(),
            reason: format!("tokenisation failed: {e}"),
            help: "check that the prompt is valid UTF-8 text".into(),
        }
    }

    /// Token ids of `text`; `special` adds what the post-processor adds (BOS).
    pub fn tokenize(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        self.check_text_length(text)?;
        let enc = guarded(&self.tokenizer_path, || {
            self.tokenizer.encode(text, special)
        })?
        .map_err(|e| self.tokenizer_error(e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of token ids, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        guarded(&self.tokenizer_path, || self.tokenizer.decode(ids, true))?
            .map_err(|e| self.tokenizer_error(e))
    }

    /// The id unknown words become (`<unk>`), when the tokenizer has one.
    pub fn unk_token_id(&self) -> Option<u32> {
        self.tokenizer.token_to_id("<unk>")
    }

    /// Refuses a text that cannot fit the context before any tokenisation work.
    fn check_text_length(&self, text: &str) -> Result<()> {
        let limit = self.max_positions.saturating_mul(MAX_BYTES_PER_POSITION);
        if text.len() > limit {
            return Err(ModelError::Prompt {
                reason: format!(
                    "a text of {} bytes cannot fit the model's context of {} positions (max_position_embeddings)",
                    text.len(),
                    self.max_positions
                ),
                help: format!(
                    "shorten it: texts over {limit} bytes ({MAX_BYTES_PER_POSITION} per position) are refused before tokenisation"
                ),
            });
        }
        Ok(())
    }

    /// Tokenises a prompt, expands its `<image>` markers and preprocesses the images (one per
    /// marker, in order).
    pub fn encode(&self, prompt: &str, images: &[DynamicImage]) -> Result<Encoded> {
        let ids = self.tokenize(prompt, true)?;
        let markers = ids.iter().filter(|&&i| i == self.image_token_id).count();
        if markers != images.len() {
            return Err(ModelError::Prompt {
                reason: format!(
                    "the prompt holds {markers} `{}` token(s) but {} image(s) were given",
                    self.image_token,
                    images.len()
                ),
                help: format!(
                    "write `{}` in the prompt once per image, where the image belongs",
                    self.image_token
                ),
            });
        }
        let mut input_ids = Vec::with_capacity(ids.len() + markers * self.tokens_per_image);
        let mut image_positions = Vec::with_capacity(markers * self.tokens_per_image);
        for id in ids {
            if id == self.image_token_id {
                image_positions.extend(input_ids.len()..input_ids.len() + self.tokens_per_image);
                input_ids.extend(std::iter::repeat_n(id, self.tokens_per_image));
            } else {
                input_ids.push(id);
            }
        }
        if input_ids.len() > self.max_positions {
            return Err(ModelError::Prompt {
                reason: format!(
                    "the prompt is {} tokens (image tokens included) but the model's context is {} positions (max_position_embeddings)",
                    input_ids.len(),
                    self.max_positions
                ),
                help: "shorten the prompt or its answer; a model attends over at most max_position_embeddings positions".into(),
            });
        }
        let pixel_values = if images.is_empty() {
            None
        } else {
            let pixels = images
                .iter()
                .map(|img| self.image.preprocess(img))
                .collect::<Result<Vec<_>>>()?;
            Some(Tensor::stack(&pixels, 0)?)
        };
        Ok(Encoded {
            input_ids,
            image_positions,
            pixel_values,
        })
    }

    /// Writes `tokenizer.json` and `preprocessor_config.json` into `dir` (temp file + rename).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let tokenizer = self
            .tokenizer
            .to_string(true)
            .map_err(|e| ModelError::Save {
                path: dir.join(TOKENIZER_FILE).display().to_string(),
                reason: e.to_string(),
            })?;
        write_atomic(&dir.join(TOKENIZER_FILE), tokenizer.as_bytes())?;
        let json = serde_json::to_string_pretty(&self.image.to_json()).unwrap_or_default();
        write_atomic(&dir.join(PREPROCESSOR_FILE), json.as_bytes())
    }
}

/// Runs a tokenizer call, turning a panic inside it into a diagnostic naming the tokenizer.
///
/// `tokenizers` runs the pre-tokenizer's regular expression through Oniguruma, whose search
/// gives up on catastrophic backtracking (its retry limit), and the binding panics when it does:
/// a `tokenizer.json` with a pattern such as `(a*)*b` would otherwise abort the program on a
/// long run of `a`. The panic message is kept off stderr while the call runs (a thread-local
/// flag the process-wide hook reads), so the user sees one diagnostic, not a backtrace.
fn guarded<T>(path: &str, call: impl FnOnce() -> T) -> Result<T> {
    use std::cell::Cell;
    use std::sync::Once;
    thread_local! {
        static QUIET: Cell<bool> = const { Cell::new(false) };
    }
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(call));
    QUIET.with(|q| q.set(false));
    result.map_err(|payload| {
        let what = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".into());
        ModelError::Tokenizer {
            path: path.to_string(),
            reason: format!("the tokenizer failed inside its library: {what}"),
            help: "the tokenizer's pattern (pre_tokenizer / normalizer regex) cannot handle this text — e.g. catastrophic backtracking; use the checkpoint's original tokenizer.json or shorten the text".into(),
        }
    })
}
