//! Which prompt template a model folder asks for.
//!
//! The rule, first match wins:
//!
//! 1. `prompt_template.txt` in the model folder: mkedsl's own declaration, used as written (one
//!    trailing newline dropped). It must hold exactly one `{question}` and one `<image>`; the
//!    image placeholder (and the newline after it) is removed for text-only prompts.
//! 2. A Hugging Face chat template — `chat_template.jinja`, else `chat_template.json`'s
//!    `chat_template`, else `tokenizer_config.json`'s `chat_template`. mkedsl does not execute
//!    Jinja, so the template is recognised by its literal markers: `USER`…`ASSISTANT:`
//!    (llava-hf's LLaVA-1.5 template) gives LLaVA-1.5's prompt, `[INST]`…`[/INST]` (LLaVA-1.6
//!    Mistral) gives `[INST] <image>\n{question} [/INST]`. Any other chat template is an error
//!    asking for a `prompt_template.txt`, never a silent fallback: a wrong template changes every
//!    score.
//! 3. Otherwise LLaVA-1.5's `USER: <image>\n{question} ASSISTANT:`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::data::prompt::IMAGE_PLACEHOLDER;
use crate::data::PromptTemplate;
use crate::eval::error::{EvalError, Result};

/// mkedsl's own template file in a model folder.
pub const TEMPLATE_FILE: &str = "prompt_template.txt";

/// Hugging Face's chat-template locations, in the order they are consulted.
const CHAT_TEMPLATE_JINJA: &str = "chat_template.jinja";
const CHAT_TEMPLATE_JSON: &str = "chat_template.json";
const TOKENIZER_CONFIG: &str = "tokenizer_config.json";

/// Where the template in use came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TemplateSource {
    /// `prompt_template.txt`.
    File { path: PathBuf },
    /// A recognised Hugging Face chat template.
    ChatTemplate { path: PathBuf, family: String },
    /// No declaration: LLaVA-1.5.
    Default,
}

impl fmt::Display for TemplateSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateSource::File { path } => write!(f, "{}", path.display()),
            TemplateSource::ChatTemplate { path, family } => {
                write!(f, "{family}, recognised in {}", path.display())
            }
            TemplateSource::Default => f.write_str("LLaVA-1.5 default"),
        }
    }
}

/// The template every question of an evaluation (and `mkedsl infer --question`) goes through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ResolvedTemplate {
    #[serde(serialize_with = "template_text", deserialize_with = "text_template")]
    pub template: PromptTemplate,
    pub source: TemplateSource,
}

fn template_text<S: serde::Serializer>(
    t: &PromptTemplate,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(t.as_str())
}

/// Reads a template back from a report (`mkedsl merge`).
fn text_template<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<PromptTemplate, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(d)?;
    PromptTemplate::new(&text)
        .ok_or_else(|| serde::de::Error::custom("a template holds `{question}` once"))
}

impl ResolvedTemplate {
    /// LLaVA-1.5's template, not read from any folder.
    pub fn llava15() -> Self {
        Self {
            template: PromptTemplate::llava15(),
            source: TemplateSource::Default,
        }
    }
}

/// A recognised chat-template family: its name, how to recognise it, and the prompt it renders.
struct KnownChatTemplate {
    family: &'static str,
    recognise: fn(&str) -> bool,
    template: &'static str,
}

const KNOWN_CHAT_TEMPLATES: [KnownChatTemplate; 2] = [
    // llava-hf writes the role as `message['role'].upper() + ': '`, so "USER" may not be literal.
    KnownChatTemplate {
        family: "LLaVA-1.5",
        recognise: |t| t.contains("ASSISTANT:") && (t.contains("USER") || t.contains(".upper()")),
        template: crate::data::LLAVA_15_TEMPLATE,
    },
    KnownChatTemplate {
        family: "LLaVA-1.6 Mistral",
        recognise: |t| t.contains("[INST]") && t.contains("[/INST]"),
        template: "[INST] <image>\n{question} [/INST]",
    },
];

/// The template `model_dir` declares (see the module doc for the rule).
pub fn resolve_template(model_dir: &Path) -> Result<ResolvedTemplate> {
    let own = model_dir.join(TEMPLATE_FILE);
    if own.is_file() {
        let text = read(&own)?;
        let text = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text);
        return Ok(ResolvedTemplate {
            template: parse_template(&own, text)?,
            source: TemplateSource::File { path: own },
        });
    }
    let Some((path, chat)) = chat_template(model_dir)? else {
        return Ok(ResolvedTemplate::llava15());
    };
    for known in KNOWN_CHAT_TEMPLATES {
        if (known.recognise)(&chat) {
            return Ok(ResolvedTemplate {
                template: parse_template(&path, known.template)?,
                source: TemplateSource::ChatTemplate {
                    path,
                    family: known.family.to_string(),
                },
            });
        }
    }
    Err(EvalError::Template {
        path,
        reason: "this chat template is not one mkedsl recognises (it does not execute Jinja)".into(),
        help: format!(
            "write the prompt the model expects into `{}` in the model folder, with `{{question}}` and `<image>`, e.g. `USER: <image>\\n{{question}} ASSISTANT:`",
            model_dir.join(TEMPLATE_FILE).display()
        ),
    })
}

/// A template text checked for one `{question}` and one `<image>`.
fn parse_template(path: &Path, text: &str) -> Result<PromptTemplate> {
    let bad = |reason: String| {
        EvalError::Template {
        path: path.to_path_buf(),
        reason,
        help: "a template holds `{question}` once and `<image>` once, e.g. `USER: <image>\\n{question} ASSISTANT:`".into(),
    }
    };
    let images = text.matches(IMAGE_PLACEHOLDER).count();
    if images != 1 {
        return Err(bad(format!(
            "it holds `{IMAGE_PLACEHOLDER}` {images} times, not once"
        )));
    }
    PromptTemplate::new(text).ok_or_else(|| {
        bad(format!(
            "it holds `{{question}}` {} times, not once",
            text.matches("{question}").count()
        ))
    })
}

/// The first chat template found in the folder, with the file it came from.
fn chat_template(dir: &Path) -> Result<Option<(PathBuf, String)>> {
    let jinja = dir.join(CHAT_TEMPLATE_JINJA);
    if jinja.is_file() {
        return Ok(Some((jinja.clone(), read(&jinja)?)));
    }
    for name in [CHAT_TEMPLATE_JSON, TOKENIZER_CONFIG] {
        let path = dir.join(name);
        if !path.is_file() {
            continue;
        }
        let text = read(&path)?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| EvalError::Template {
                path: path.clone(),
                reason: format!("not valid JSON: {e}"),
                help: "fix the file or remove it".into(),
            })?;
        match value.get("chat_template") {
            None | Some(serde_json::Value::Null) => continue,
            Some(serde_json::Value::String(s)) => return Ok(Some((path, s.clone()))),
            // transformers also allows a list of named templates; the "default" one applies.
            Some(serde_json::Value::Array(list)) => {
                let default = list.iter().find_map(|t| {
                    (t.get("name")?.as_str()? == "default")
                        .then(|| t.get("template")?.as_str().map(str::to_string))
                        .flatten()
                });
                if let Some(s) = default {
                    return Ok(Some((path, s)));
                }
                return Err(EvalError::Template {
                    path,
                    reason: "`chat_template` lists named templates but none is called \"default\""
                        .into(),
                    help: format!("declare the prompt in `{TEMPLATE_FILE}` in the model folder"),
                });
            }
            Some(_) => {
                return Err(EvalError::Template {
                    path,
                    reason: "`chat_template` is neither a string nor a list of named templates"
                        .into(),
                    help: format!("declare the prompt in `{TEMPLATE_FILE}` in the model folder"),
                })
            }
        }
    }
    Ok(None)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| EvalError::Template {
        path: path.to_path_buf(),
        reason: format!("cannot read it: {e}"),
        help: "check that the file is readable UTF-8 text".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llava-hf/llava-1.5-7b-hf's chat template (chat_template.json), verbatim.
    const LLAVA_HF: &str = "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}";

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        dir
    }

    #[test]
    fn an_empty_folder_gets_llava_15() {
        let dir = folder(&[]);
        let t = resolve_template(dir.path()).expect("resolves");
        assert_eq!(t, ResolvedTemplate::llava15());
        assert_eq!(t.source.to_string(), "LLaVA-1.5 default");
    }

    #[test]
    fn prompt_template_txt_wins_and_loses_one_trailing_newline() {
        let dir = folder(&[
            (TEMPLATE_FILE, "Q: <image>\n{question}\nA:\n"),
            (CHAT_TEMPLATE_JINJA, "anything"),
        ]);
        let t = resolve_template(dir.path()).expect("resolves");
        assert_eq!(t.template.as_str(), "Q: <image>\n{question}\nA:");
        assert_eq!(t.template.prompt("why?", false), "Q: why?\nA:");
        assert!(matches!(t.source, TemplateSource::File { .. }));
    }

    #[test]
    fn templates_need_one_question_and_one_image() {
        for text in [
            "USER: {question} ASSISTANT:",
            "<image><image>{question}",
            "<image> {q}",
        ] {
            let dir = folder(&[(TEMPLATE_FILE, text)]);
            let err = resolve_template(dir.path()).expect_err(text);
            assert!(matches!(err, EvalError::Template { .. }), "{err}");
        }
    }

    #[test]
    fn llava_hf_chat_templates_are_recognised_in_each_location() {
        let json = serde_json::json!({ "chat_template": LLAVA_HF }).to_string();
        let listed = serde_json::json!({ "chat_template": [
            { "name": "tool_use", "template": "x" },
            { "name": "default", "template": LLAVA_HF },
        ]})
        .to_string();
        for (name, text) in [
            (CHAT_TEMPLATE_JINJA, LLAVA_HF.to_string()),
            (CHAT_TEMPLATE_JSON, json.clone()),
            (TOKENIZER_CONFIG, json),
            (TOKENIZER_CONFIG, listed),
        ] {
            let dir = folder(&[(name, &text)]);
            let t = resolve_template(dir.path()).expect(name);
            assert_eq!(t.template, PromptTemplate::llava15(), "{name}");
            assert!(
                matches!(&t.source, TemplateSource::ChatTemplate { family, .. } if family == "LLaVA-1.5"),
                "{name}"
            );
        }
        let mistral = "{{ bos_token }}{% for m in messages %}[INST] ... [/INST]{% endfor %}";
        let dir = folder(&[(CHAT_TEMPLATE_JINJA, mistral)]);
        let t = resolve_template(dir.path()).expect("mistral");
        assert_eq!(
            t.template.prompt("what?", true),
            "[INST] <image>\nwhat? [/INST]"
        );
    }

    #[test]
    fn unknown_chat_templates_are_rejected_not_guessed() {
        let dir = folder(&[(
            CHAT_TEMPLATE_JINJA,
            "<|im_start|>user\n{{ content }}<|im_end|>",
        )]);
        let err = resolve_template(dir.path()).expect_err("unknown");
        let EvalError::Template { help, .. } = &err else {
            panic!("{err}")
        };
        assert!(help.contains(TEMPLATE_FILE), "{help}");

        // A tokenizer_config.json without a chat template is not a declaration.
        let dir = folder(&[(TOKENIZER_CONFIG, r#"{"model_max_length": 2048}"#)]);
        assert_eq!(
            resolve_template(dir.path()).expect("no template"),
            ResolvedTemplate::llava15()
        );
        let dir = folder(&[(TOKENIZER_CONFIG, "{not json")]);
        assert!(resolve_template(dir.path()).is_err());
    }
}
