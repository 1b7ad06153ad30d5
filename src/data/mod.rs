//! MMEdit-format data: the record schema EasyEdit reads, the loader for users' real E-VQA / E-IC
//! files, the writer of the embedded world's datasets, and the prompt template every question goes
//! through.
//!
//! ```text
//! World::edit_cases ──▶ write_dataset(answer fn) ──▶ evqa.json + images/ ──▶ load_dataset ──▶ evaluator
//!                                                   (or the user's MMEdit files) ──┘
//! ```

pub mod error;
pub mod fields;
pub mod files;
pub mod loader;
pub mod prompt;
pub mod record;
pub mod writer;

pub use error::{AnswerError, DataError};
pub use fields::{FieldStyle, FieldTemplateArg, FieldTemplates, ResolvedFields};
pub use loader::{
    load_dataset, load_dataset_with, Dataset, DroppedRecord, ImageRoots, LoadRules, LoadedCase,
    MissingImage, MAX_FIELD_BYTES,
};
pub use prompt::{answer_continuation, PromptTemplate, LLAVA_15_TEMPLATE};
pub use record::{MmeditRecord, FIELDS};
pub use writer::{write_dataset, WrittenDataset};

/// Reads an image of a dataset as RGB, with a diagnostic naming the file.
pub fn read_image(path: &std::path::Path) -> Result<image::RgbImage, DataError> {
    files::read_rgb(path).map_err(|e| DataError::Image {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}
