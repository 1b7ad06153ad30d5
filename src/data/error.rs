//! Errors reading and writing MMEdit-format datasets.

use std::path::PathBuf;
use std::sync::Arc;

use miette::{NamedSource, SourceSpan};

/// The error an answer function (the model's greedy answer) may return.
pub type AnswerError = Box<dyn std::error::Error + Send + Sync>;

/// What can go wrong with a dataset file.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum DataError {
    #[error("cannot read dataset `{}`: {source}", path.display())]
    #[diagnostic(
        code(mkedsl::data::read),
        help("pass --data the path of an MMEdit JSON file")
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("dataset `{}` is not valid JSON: {message}", path.display())]
    #[diagnostic(
        code(mkedsl::data::json),
        help("an MMEdit file is one JSON array of record objects")
    )]
    Json {
        path: PathBuf,
        message: String,
        #[source_code]
        src: Arc<NamedSource<String>>,
        #[label("here")]
        span: SourceSpan,
    },
    #[error("dataset `{}` is not a JSON array of records", path.display())]
    #[diagnostic(
        code(mkedsl::data::not_array),
        help("an MMEdit file is one JSON array of record objects (JSON Lines is not supported)")
    )]
    NotAnArray { path: PathBuf },
    #[error("record {index} of `{}` is malformed: {reason}", path.display())]
    #[diagnostic(
        code(mkedsl::data::record),
        help("every record needs the string fields src, pred, rephrase, alt, image, image_rephrase, loc, loc_ans, m_loc, m_loc_q, m_loc_a")
    )]
    Record {
        path: PathBuf,
        index: usize,
        reason: String,
    },
    #[error("record {index} of `{}`: its `{field}` image `{}` does not exist", path.display(), image.display())]
    #[diagnostic(
        code(mkedsl::data::missing_image),
        help("image and m_loc are resolved against the image root, image_rephrase against the rephrase-image root; check both")
    )]
    MissingImage {
        path: PathBuf,
        index: usize,
        field: &'static str,
        image: PathBuf,
    },
    #[error("record {index} of `{}`: its `{field}` is {len} bytes long, above the {max} mkedsl reads", path.display())]
    #[diagnostic(
        code(mkedsl::data::field_too_long),
        help("MMEdit fields are a question, an answer or an image path; no text this long fits a model's context")
    )]
    FieldTooLong {
        path: PathBuf,
        index: usize,
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("record {index} of `{}`: its `{field}` image `{image}` lies outside the image root `{}`", path.display(), root.display())]
    #[diagnostic(
        code(mkedsl::data::image_outside_root),
        help("image paths are relative to --image-root / --rephrase-root and may not leave them (`..`, absolute paths); pass --images-anywhere to allow it")
    )]
    OutsideRoot {
        path: PathBuf,
        index: usize,
        field: &'static str,
        image: String,
        root: PathBuf,
    },
    #[error("cannot decode image `{}`: {reason}", path.display())]
    #[diagnostic(
        code(mkedsl::data::image),
        help("mkedsl decodes PNG and JPEG images; check that the file is one of those and not truncated")
    )]
    Image { path: PathBuf, reason: String },
    #[error("cannot write `{}`: {reason}", path.display())]
    #[diagnostic(
        code(mkedsl::data::write),
        help("check that the output folder is writable and the disk is not full")
    )]
    Write { path: PathBuf, reason: String },
    #[error("the answer function failed on case {case} (`{question}`): {source}")]
    #[diagnostic(
        code(mkedsl::data::answer),
        help("the model must answer every edit question to fill `pred`")
    )]
    Answer {
        case: usize,
        question: String,
        #[source]
        source: AnswerError,
    },
    #[error("the model gave an empty answer on case {case} (`{question}`)")]
    #[diagnostic(
        code(mkedsl::data::empty_answer),
        help("an empty `pred` would make EasyEdit-style loaders drop the record; train the model further")
    )]
    EmptyAnswer { case: usize, question: String },
    #[error("case {case}: no edit target differs from the model's answer `{pred}`")]
    #[diagnostic(
        code(mkedsl::data::no_target),
        help("this is a bug in the world's counterfactual answers; please report it")
    )]
    NoTarget { case: usize, pred: String },
}
