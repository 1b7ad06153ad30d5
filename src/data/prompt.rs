//! How a question becomes model input: LLaVA-1.5's template, unless a model declares another.
//!
//! The trainer, the evaluator and `mkedsl infer --question` all format through this one place,
//! so a user can ask the model exactly what the evaluator asks.

/// LLaVA-1.5's conversation template (`llava-hf/llava-1.5-7b-hf`).
pub const LLAVA_15_TEMPLATE: &str = "USER: <image>\n{question} ASSISTANT:";

/// The image placeholder each template holds once.
pub const IMAGE_PLACEHOLDER: &str = "<image>";

/// The end-of-sequence text appended to training answers.
pub const EOS_TEXT: &str = "</s>";

/// A prompt template with a `{question}` slot and optionally an `<image>` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptTemplate {
    template: String,
}

impl Default for PromptTemplate {
    fn default() -> Self {
        PromptTemplate::llava15()
    }
}

impl PromptTemplate {
    /// LLaVA-1.5's template.
    pub fn llava15() -> PromptTemplate {
        PromptTemplate {
            template: LLAVA_15_TEMPLATE.to_string(),
        }
    }

    /// A custom template; `None` unless it contains exactly one `{question}`.
    pub fn new(template: &str) -> Option<PromptTemplate> {
        (template.matches("{question}").count() == 1).then(|| PromptTemplate {
            template: template.to_string(),
        })
    }

    /// The template text.
    pub fn as_str(&self) -> &str {
        &self.template
    }

    /// The prompt for `question`. Text-only prompts drop the image placeholder and the newline
    /// that follows it ("USER: {question} ASSISTANT:").
    pub fn prompt(&self, question: &str, with_image: bool) -> String {
        let template = if with_image {
            self.template.clone()
        } else {
            self.template
                .replace(&format!("{IMAGE_PLACEHOLDER}\n"), "")
                .replace(IMAGE_PLACEHOLDER, "")
        };
        template.replace("{question}", question.trim())
    }
}

/// The training continuation of a prompt: `" {answer}</s>"`.
pub fn answer_continuation(answer: &str) -> String {
    format!(" {}{EOS_TEXT}", answer.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llava_prompt_with_and_without_image() {
        let t = PromptTemplate::llava15();
        assert_eq!(
            t.prompt("what colour are the objects?", true),
            "USER: <image>\nwhat colour are the objects? ASSISTANT:"
        );
        assert_eq!(
            t.prompt(" what is the capital of drovania? ", false),
            "USER: what is the capital of drovania? ASSISTANT:"
        );
        assert_eq!(answer_continuation("red"), " red</s>");
    }

    #[test]
    fn custom_templates_need_one_question_slot() {
        assert!(PromptTemplate::new("Question: {} Short answer:").is_none());
        assert!(PromptTemplate::new("{question}{question}").is_none());
        let t = PromptTemplate::new("<image>Question: {question} Short answer:");
        assert_eq!(
            t.map(|t| t.prompt("why?", false)),
            Some("Question: why? Short answer:".to_string())
        );
    }
}
