//! Everything that can go wrong in the model runtime, as miette diagnostics.
//!
//! Checkpoint problems name the file and the tensor (expected vs found shape) because a user
//! pointing `--model` at a real checkpoint needs to know which of a dozen shards is wrong. Errors
//! inside tensor arithmetic after loading succeeded are internal and say so.

use crate::model::config::ConfigError;

/// Errors of the model runtime.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ModelError {
    /// `config.json` is missing, unreadable or inconsistent.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Config(#[from] ConfigError),

    /// A file the checkpoint layout requires is absent.
    #[error("missing {what} `{path}`")]
    #[diagnostic(code(mkedsl::model::missing_file))]
    MissingFile {
        path: String,
        what: &'static str,
        #[help]
        help: String,
    },

    /// A file exists but cannot be read.
    #[error("cannot read `{path}`: {cause}")]
    #[diagnostic(
        code(mkedsl::model::io),
        help("check that the file exists and is readable")
    )]
    Io { path: String, cause: std::io::Error },

    /// A weight file is not a well-formed safetensors file (bad header, truncated data).
    #[error("`{path}` is not a readable safetensors file: {reason}")]
    #[diagnostic(
        code(mkedsl::model::safetensors),
        help("the file is damaged or incomplete; download or save the checkpoint again")
    )]
    Safetensors { path: String, reason: String },

    /// `model.safetensors.index.json` is malformed or points at nothing.
    #[error("`{path}` is not a valid safetensors index: {reason}")]
    #[diagnostic(
        code(mkedsl::model::index),
        help("a sharded checkpoint's index maps every tensor name to a shard file in the same folder")
    )]
    Index { path: String, reason: String },

    /// A tensor that `config.json` implies is absent from the weight files.
    #[error("tensor `{tensor}` is missing from {path}")]
    #[diagnostic(
        code(mkedsl::model::missing_tensor),
        help("the weights do not match config.json: compare num_hidden_layers, tie_word_embeddings and the projector")
    )]
    MissingTensor { path: String, tensor: String },

    /// A tensor's stored shape disagrees with `config.json`.
    #[error(
        "tensor `{tensor}` in `{path}` has shape {found:?}, but config.json implies {expected:?}"
    )]
    #[diagnostic(
        code(mkedsl::model::tensor_shape),
        help("the weights do not match config.json: check the sizes in text_config and vision_config")
    )]
    ShapeMismatch {
        path: String,
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    /// A weight holds NaN or infinite values.
    #[error("tensor `{tensor}` of the checkpoint `{path}` holds NaN or infinite values")]
    #[diagnostic(
        code(mkedsl::model::non_finite_weight),
        help("the checkpoint is damaged (or was saved from a diverged run); download or save it again")
    )]
    NonFinite { path: String, tensor: String },

    /// A forward pass over finite weights produced NaN or infinite outputs (an overflow).
    #[error("the model's {what} are not finite (an overflow inside the forward pass)")]
    #[diagnostic(
        code(mkedsl::model::non_finite_output),
        help("the weights are finite but too large for the dtype; check how the checkpoint was produced")
    )]
    NonFiniteOutput { what: String },

    /// A tensor is stored in a dtype the runtime does not convert.
    #[error("tensor `{tensor}` in `{path}` is stored as {dtype}")]
    #[diagnostic(
        code(mkedsl::model::tensor_dtype),
        help(
            "the runtime loads F32, F16, BF16 and F64 weights; convert quantised checkpoints first"
        )
    )]
    UnsupportedDType {
        path: String,
        tensor: String,
        dtype: String,
    },

    /// `tokenizer.json` is unreadable or lacks a token the model needs.
    #[error("tokenizer `{path}`: {reason}")]
    #[diagnostic(code(mkedsl::model::tokenizer))]
    Tokenizer {
        path: String,
        reason: String,
        #[help]
        help: String,
    },

    /// `preprocessor_config.json` is unreadable or inconsistent.
    #[error("image processor config `{path}`: {reason}")]
    #[diagnostic(
        code(mkedsl::model::preprocessor),
        help("compare it with a published CLIPImageProcessor preprocessor_config.json")
    )]
    Preprocessor { path: String, reason: String },

    /// An input image cannot be decoded.
    #[error("image `{path}`: {reason}")]
    #[diagnostic(code(mkedsl::model::image), help("pass a PNG file"))]
    Image { path: String, reason: String },

    /// A prompt and its images do not fit together.
    #[error("prompt: {reason}")]
    #[diagnostic(code(mkedsl::model::prompt))]
    Prompt {
        reason: String,
        #[help]
        help: String,
    },

    /// The requested device cannot be opened.
    #[error("device `{requested}` is not available: {reason}")]
    #[diagnostic(code(mkedsl::model::device))]
    Device {
        requested: String,
        reason: String,
        #[help]
        help: String,
    },

    /// A hook or adapter does not fit the site it is attached to.
    #[error("at `{site}`: {reason}")]
    #[diagnostic(
        code(mkedsl::model::site),
        help("site widths come from config.json; `Site::width` gives the expected size")
    )]
    Site { site: String, reason: String },

    /// Writing a checkpoint failed.
    #[error("cannot write `{path}`: {reason}")]
    #[diagnostic(
        code(mkedsl::model::save),
        help("check that the folder exists and is writable")
    )]
    Save { path: String, reason: String },

    /// Tensor arithmetic failed after the inputs were checked: a bug or an exhausted device.
    #[error("tensor computation failed: {0}")]
    #[diagnostic(
        code(mkedsl::model::tensor),
        help("this is an internal error of the model runtime (or the device ran out of memory); please report it with the command that caused it")
    )]
    Tensor(#[from] candle_core::Error),
}

/// Shorthand used throughout `src/model`.
pub type Result<T> = std::result::Result<T, ModelError>;
