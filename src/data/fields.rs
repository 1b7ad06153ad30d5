//! Per-field prompt templates: which wrapper each question of a record goes through.
//!
//! EasyEdit does not format every field alike. Its `VQADataset` wraps `src`, `rephrase` and
//! `m_loc_q` in `Question: {} Short answer:` and feeds `loc` raw; its `CaptionDataset` (BLIP-2 /
//! MiniGPT-4 path) feeds `src`, `rephrase` and `loc` raw and wraps only `m_loc_q`. A user lining
//! up numbers with EasyEdit's must be able to ask for the same text, field by field; mkedsl's own
//! default stays the model's chat template on every field.
//!
//! A [`FieldTemplates`] names one [`FieldStyle`] per field; [`FieldTemplates::resolve`] turns
//! the styles into [`PromptTemplate`]s given the model's chat template.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::prompt::{PromptTemplate, IMAGE_PLACEHOLDER};

/// EasyEdit's question wrapper (`self.prompt` of its VQA and caption datasets).
pub const EASYEDIT_QUESTION: &str = "Question: {question} Short answer:";

/// How one field's question becomes a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FieldStyle {
    /// The model's chat template (e.g. `USER: <image>\n{question} ASSISTANT:`).
    Chat,
    /// No template: `<image>\n{question}` with an image, `{question}` without.
    Raw,
    /// EasyEdit's `Question: {question} Short answer:` inside the model's chat template.
    Easyedit,
    /// EasyEdit's `Question: {question} Short answer:` alone (after `<image>\n`).
    EasyeditRaw,
}

impl FieldStyle {
    const NAMES: [(&'static str, FieldStyle); 4] = [
        ("chat", FieldStyle::Chat),
        ("raw", FieldStyle::Raw),
        ("easyedit", FieldStyle::Easyedit),
        ("easyedit-raw", FieldStyle::EasyeditRaw),
    ];

    fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("chat", |(n, _)| n)
    }

    /// The template this style gives, from the model's chat template.
    fn template(self, chat: &PromptTemplate) -> PromptTemplate {
        let wrap = |outer: &str| {
            PromptTemplate::new(&outer.replace("{question}", EASYEDIT_QUESTION))
                .unwrap_or_else(|| chat.clone())
        };
        let raw = format!("{IMAGE_PLACEHOLDER}\n{{question}}");
        match self {
            FieldStyle::Chat => chat.clone(),
            FieldStyle::Raw => PromptTemplate::new(&raw).unwrap_or_else(|| chat.clone()),
            FieldStyle::Easyedit => wrap(chat.as_str()),
            FieldStyle::EasyeditRaw => wrap(&raw),
        }
    }
}

/// The style of each formatted field of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldTemplates {
    pub src: FieldStyle,
    pub rephrase: FieldStyle,
    pub loc: FieldStyle,
    pub m_loc_q: FieldStyle,
}

impl Default for FieldTemplates {
    fn default() -> Self {
        FieldTemplates::all(FieldStyle::Chat)
    }
}

/// The formatted fields' names, as `--field-template FIELD=STYLE` spells them.
pub const TEMPLATED_FIELDS: [&str; 4] = ["src", "rephrase", "loc", "m_loc_q"];

/// Named sets of styles: EasyEdit's two datasets.
pub const PRESETS: [(&str, FieldTemplates); 2] = [
    (
        "easyedit-vqa",
        FieldTemplates {
            src: FieldStyle::EasyeditRaw,
            rephrase: FieldStyle::EasyeditRaw,
            loc: FieldStyle::Raw,
            m_loc_q: FieldStyle::EasyeditRaw,
        },
    ),
    (
        "easyedit-caption",
        FieldTemplates {
            src: FieldStyle::Raw,
            rephrase: FieldStyle::Raw,
            loc: FieldStyle::Raw,
            m_loc_q: FieldStyle::EasyeditRaw,
        },
    ),
];

/// One `--field-template` argument: a preset name, or `FIELD=STYLE` (FIELD may be `all`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldTemplateArg {
    Preset(FieldTemplates),
    Field(&'static str, FieldStyle),
    All(FieldStyle),
}

impl FromStr for FieldTemplateArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Some((_, preset)) = PRESETS.iter().find(|(n, _)| *n == text) {
            return Ok(FieldTemplateArg::Preset(*preset));
        }
        let styles = || {
            FieldStyle::NAMES
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let presets = || {
            PRESETS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some((field, style)) = text.split_once('=') else {
            return Err(format!(
                "`{text}` is neither a preset ({}) nor FIELD=STYLE",
                presets()
            ));
        };
        let style = FieldStyle::NAMES
            .iter()
            .find(|(n, _)| *n == style.trim())
            .map(|(_, s)| *s)
            .ok_or_else(|| format!("`{style}` is not a style; use one of {}", styles()))?;
        let field = field.trim();
        if field == "all" {
            return Ok(FieldTemplateArg::All(style));
        }
        TEMPLATED_FIELDS
            .iter()
            .find(|f| **f == field)
            .map(|f| FieldTemplateArg::Field(f, style))
            .ok_or_else(|| {
                format!(
                    "`{field}` is not a templated field; use one of {}, or all",
                    TEMPLATED_FIELDS.join(", ")
                )
            })
    }
}

impl FieldTemplates {
    /// Every field in `style`.
    pub fn all(style: FieldStyle) -> Self {
        FieldTemplates {
            src: style,
            rephrase: style,
            loc: style,
            m_loc_q: style,
        }
    }

    /// The styles after applying `args` in order (later ones win), from the default.
    pub fn from_args(args: &[FieldTemplateArg]) -> Self {
        let mut t = FieldTemplates::default();
        for arg in args {
            match arg {
                FieldTemplateArg::Preset(p) => t = *p,
                FieldTemplateArg::All(s) => t = FieldTemplates::all(*s),
                FieldTemplateArg::Field(f, s) => match *f {
                    "src" => t.src = *s,
                    "rephrase" => t.rephrase = *s,
                    "loc" => t.loc = *s,
                    _ => t.m_loc_q = *s,
                },
            }
        }
        t
    }

    /// Whether every field uses the model's chat template (mkedsl's default).
    pub fn is_default(&self) -> bool {
        *self == FieldTemplates::default()
    }

    /// The four templates, given the model's chat template.
    pub fn resolve(&self, chat: &PromptTemplate) -> ResolvedFields {
        ResolvedFields {
            src: self.src.template(chat),
            rephrase: self.rephrase.template(chat),
            loc: self.loc.template(chat),
            m_loc_q: self.m_loc_q.template(chat),
        }
    }
}

impl fmt::Display for FieldTemplates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((name, _)) = PRESETS.iter().find(|(_, p)| p == self) {
            return f.write_str(name);
        }
        write!(
            f,
            "src={} rephrase={} loc={} m_loc_q={}",
            self.src.name(),
            self.rephrase.name(),
            self.loc.name(),
            self.m_loc_q.name()
        )
    }
}

/// The template of each formatted field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedFields {
    pub src: PromptTemplate,
    pub rephrase: PromptTemplate,
    pub loc: PromptTemplate,
    pub m_loc_q: PromptTemplate,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styles_give_easyedits_texts() {
        let chat = PromptTemplate::llava15();
        let vqa = FieldTemplates::from_args(&["easyedit-vqa".parse().expect("preset")]);
        let r = vqa.resolve(&chat);
        assert_eq!(
            r.src.prompt("what is it?", true),
            "<image>\nQuestion: what is it? Short answer:"
        );
        assert_eq!(r.loc.prompt("who wrote hamlet", false), "who wrote hamlet");
        let t = FieldTemplates::from_args(&[
            "easyedit-caption".parse().expect("preset"),
            "m_loc_q=easyedit".parse().expect("field"),
        ]);
        assert_eq!(t.src, FieldStyle::Raw);
        assert_eq!(
            t.resolve(&chat).m_loc_q.prompt("what sport?", true),
            "USER: <image>\nQuestion: what sport? Short answer: ASSISTANT:"
        );
        assert_eq!(
            t.to_string(),
            "src=raw rephrase=raw loc=raw m_loc_q=easyedit"
        );
        assert_eq!(vqa.to_string(), "easyedit-vqa");
        assert!(FieldTemplates::default().is_default());
    }

    #[test]
    fn bad_arguments_say_what_is_accepted() {
        let err = "answer=raw".parse::<FieldTemplateArg>().expect_err("field");
        assert!(err.contains("src, rephrase, loc, m_loc_q"), "{err}");
        let err = "src=jinja".parse::<FieldTemplateArg>().expect_err("style");
        assert!(err.contains("easyedit-raw"), "{err}");
        let err = "vqa".parse::<FieldTemplateArg>().expect_err("preset");
        assert!(err.contains("easyedit-vqa"), "{err}");
        assert_eq!(
            "all=raw".parse::<FieldTemplateArg>(),
            Ok(FieldTemplateArg::All(FieldStyle::Raw))
        );
    }
}
