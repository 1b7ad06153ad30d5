//! The world's tokenizer: word level, trained with the `tokenizers` crate on every sentence the
//! world can produce, saved as a Hugging Face `tokenizer.json`.
//!
//! Word level because the world has ~250 words: each answer word is one token, so an answer is one
//! or a few greedy steps and teacher-forced accuracy counts whole words. Text is lowercased and split
//! on whitespace and punctuation (`\w+|[^\w\s]+`); the five special tokens keep fixed ids 0–4 and are
//! matched before splitting, so `<image>` and `</s>` in a prompt are single tokens. The
//! post-processor prepends `<s>`, as Llama's does.

use std::path::Path;

use tokenizers::models::wordlevel::{WordLevel, WordLevelTrainer};
use tokenizers::normalizers::Lowercase;
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer, TokenizerImpl};

use super::corpus::{RenderSpace, Split};
use super::error::WorldError;
use super::facts::World;
use super::phrasing::Ask;
use super::rng::WorldRng;
use crate::data::files::write_atomic;
use crate::data::prompt::PromptTemplate;

pub const BOS: &str = "<s>";
pub const EOS: &str = "</s>";
pub const PAD: &str = "<pad>";
pub const UNK: &str = "<unk>";
pub const IMAGE: &str = "<image>";

/// The special tokens, in id order: `<s>` = 0, `</s>` = 1, `<pad>` = 2, `<unk>` = 3, `<image>` = 4.
pub const SPECIAL_TOKENS: [&str; 5] = [BOS, EOS, PAD, UNK, IMAGE];

/// Every sentence the world can produce, formatted as the model sees it (special tokens aside):
/// each phrasing of each question kind (with every subject name where the question names one),
/// and every answer, captions included.
pub fn corpus_text(world: &World) -> Vec<String> {
    let template = PromptTemplate::llava15();
    // Renders are never drawn here, but `example` needs a generator for their variants.
    let mut rng = WorldRng::new(0);
    let mut lines = Vec::new();
    for ask in Ask::ALL {
        let subjects = world.subjects(ask, None);
        let names_subject = ask.cores().iter().any(|c| c.contains("{}"));
        let chosen = if names_subject {
            &subjects[..]
        } else {
            &subjects[..subjects.len().min(1)]
        };
        for split in [Split::Train, Split::HeldOut] {
            for phrasing in ask.phrasings(split) {
                for &subject in chosen {
                    if let Some(e) =
                        world.example(ask, subject, phrasing, RenderSpace::Train, &mut rng)
                    {
                        let prompt = template.prompt(&e.question, false);
                        lines.push(format!("{prompt} {}", e.answer));
                    }
                }
            }
        }
        lines.extend(subjects.iter().filter_map(|&s| world.answer(ask, s)));
    }
    lines
}

/// Trains the world's tokenizer.
pub fn train_tokenizer(world: &World) -> Result<Tokenizer, WorldError> {
    let fail = |e: &dyn std::fmt::Display| WorldError::Tokenizer {
        reason: e.to_string(),
    };
    let model = WordLevel::builder()
        .unk_token(UNK.to_string())
        .build()
        .map_err(|e| fail(&e))?;
    let mut tokenizer: TokenizerImpl<
        WordLevel,
        Lowercase,
        Whitespace,
        TemplateProcessing,
        tokenizers::decoders::DecoderWrapper,
    > = TokenizerImpl::new(model);
    tokenizer
        .with_normalizer(Some(Lowercase))
        .map_err(|e| fail(&e))?;
    tokenizer.with_pre_tokenizer(Some(Whitespace));
    let specials: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|t| AddedToken::from(*t, true))
        .collect();
    let mut trainer = WordLevelTrainer::builder()
        .special_tokens(specials)
        .show_progress(false)
        .min_frequency(1)
        .vocab_size(10_000)
        .build()
        .map_err(|e| fail(&e))?;
    tokenizer
        .train(&mut trainer, corpus_text(world).iter())
        .map_err(|e| fail(&e))?;
    let post = TemplateProcessing::builder()
        .try_single(format!("{BOS} $A"))
        .map_err(|e| fail(&e))?
        .try_pair(format!("{BOS} $A {BOS}:1 $B:1"))
        .map_err(|e| fail(&e))?
        .special_tokens(vec![(BOS, 0)])
        .build()
        .map_err(|e| fail(&e))?;
    tokenizer.with_post_processor(Some(post));
    let tokenizer: Tokenizer = tokenizer.into();
    for (id, token) in SPECIAL_TOKENS.iter().enumerate() {
        if tokenizer.token_to_id(token) != Some(id as u32) {
            return Err(WorldError::Tokenizer {
                reason: format!("special token {token} did not get id {id}"),
            });
        }
    }
    Ok(tokenizer)
}

/// Saves `tokenizer` as `path` (pretty JSON, written atomically).
pub fn save_tokenizer(tokenizer: &Tokenizer, path: &Path) -> Result<(), WorldError> {
    let fail = |reason: String| WorldError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let mut json = tokenizer.to_string(true).map_err(|e| fail(e.to_string()))?;
    json.push('\n');
    write_atomic(path, json.as_bytes()).map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::prompt::answer_continuation;
    use crate::world::FamilyMix;

    fn trained() -> (World, Tokenizer) {
        let world = World::new(0);
        let tokenizer = train_tokenizer(&world).expect("tokenizer trains");
        (world, tokenizer)
    }

    fn tokens(tokenizer: &Tokenizer, text: &str, special: bool) -> Vec<String> {
        tokenizer
            .encode(text, special)
            .expect("encodes")
            .get_tokens()
            .to_vec()
    }

    #[test]
    fn special_tokens_have_fixed_ids_and_vocabulary_is_small() {
        let (_, tokenizer) = trained();
        for (id, token) in SPECIAL_TOKENS.iter().enumerate() {
            assert_eq!(tokenizer.token_to_id(token), Some(id as u32));
        }
        let size = tokenizer.get_vocab_size(true);
        assert!((150..=400).contains(&size), "vocabulary of {size}");
    }

    #[test]
    fn the_llava_template_tokenizes_sanely() {
        let (_, tokenizer) = trained();
        let prompt = PromptTemplate::llava15().prompt("What colour are the objects?", true);
        assert_eq!(
            tokens(&tokenizer, &prompt, true),
            [
                "<s>",
                "user",
                ":",
                "<image>",
                "what",
                "colour",
                "are",
                "the",
                "objects",
                "?",
                "assistant",
                ":"
            ]
        );
        assert_eq!(
            tokens(
                &tokenizer,
                &answer_continuation("two large red circles"),
                false
            ),
            ["two", "large", "red", "circles", "</s>"]
        );
        // Prompt + " " + target tokenizes as the prompt's tokens followed by the target's, which
        // teacher-forced scoring relies on.
        let joined = tokens(&tokenizer, &format!("{prompt} red"), true);
        assert_eq!(joined.last().map(String::as_str), Some("red"));
        assert_eq!(joined.len(), 13);
        let ids = tokenizer.encode("red blue", false).expect("encodes");
        assert_eq!(
            tokenizer.decode(ids.get_ids(), true).expect("decodes"),
            "red blue"
        );
    }

    #[test]
    fn no_world_text_is_unknown() {
        let (world, tokenizer) = trained();
        let unk = tokenizer.token_to_id(UNK);
        let mut checked = 0;
        for split in [Split::Train, Split::HeldOut] {
            for e in world.sampler(split, 0, FamilyMix::uniform()).take(500) {
                let prompt = PromptTemplate::llava15().prompt(&e.question, e.image.is_some());
                let text = format!("{prompt}{}", answer_continuation(&e.answer));
                let ids = tokenizer.encode(text.as_str(), true).expect("encodes");
                assert!(!ids.get_ids().iter().any(|&i| Some(i) == unk), "{text}");
                checked += 1;
            }
        }
        assert_eq!(checked, 1000);
    }

    #[test]
    fn training_is_deterministic_and_saves_as_json() {
        let (world, tokenizer) = trained();
        let again = train_tokenizer(&world).expect("tokenizer trains");
        assert_eq!(tokenizer.to_string(false).ok(), again.to_string(false).ok());
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tokenizer.json");
        save_tokenizer(&tokenizer, &path).expect("saves");
        let loaded = Tokenizer::from_file(&path).expect("loads");
        assert_eq!(loaded.token_to_id(IMAGE), Some(4));
        assert_eq!(loaded.get_vocab_size(true), tokenizer.get_vocab_size(true));
    }
}
