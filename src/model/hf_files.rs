//! The files transformers' `AutoProcessor` needs beside a LLaVA checkpoint, besides
//! `tokenizer.json` and `preprocessor_config.json`: `processor_config.json` (without
//! `patch_size`, `LlavaProcessor` cannot count image tokens and fails) and `chat_template.jinja`
//! (llava-hf's LLaVA-1.5 template, which mkedsl's template resolution recognises as the
//! `USER: <image>\n{question} ASSISTANT:` it uses anyway).

use std::path::Path;

use serde_json::json;

use crate::model::atomic::write_atomic;
use crate::model::config::{FeatureSelect, LlavaConfig};
use crate::model::error::{ModelError, Result};

/// `processor_config.json`.
pub const PROCESSOR_CONFIG: &str = "processor_config.json";
/// `chat_template.jinja`.
pub const CHAT_TEMPLATE: &str = "chat_template.jinja";

/// llava-hf/llava-1.5-7b-hf's chat template, verbatim.
pub const LLAVA_15_CHAT_TEMPLATE: &str = "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}";

/// Writes `processor_config.json` and `chat_template.jinja` for `config` into `dir`.
pub fn write_processor_files(dir: &Path, config: &LlavaConfig) -> Result<()> {
    let (strategy, extra) = match config.vision_feature_select_strategy {
        FeatureSelect::Default => ("default", 1),
        FeatureSelect::Full => ("full", 1),
    };
    let processor = json!({
        "processor_class": "LlavaProcessor",
        "image_token": "<image>",
        "patch_size": config.vision_config.patch_size,
        "vision_feature_select_strategy": strategy,
        "num_additional_image_tokens": extra,
    });
    let mut text = serde_json::to_string_pretty(&processor).map_err(|e| ModelError::Save {
        path: dir.join(PROCESSOR_CONFIG).display().to_string(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    write_atomic(&dir.join(PROCESSOR_CONFIG), text.as_bytes())?;
    write_atomic(&dir.join(CHAT_TEMPLATE), LLAVA_15_CHAT_TEMPLATE.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_model_ships_what_a_trained_model_gets() {
        let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/model");
        let config = LlavaConfig::from_path(&model).expect("config");
        let dir = tempfile::tempdir().expect("temp dir");
        write_processor_files(dir.path(), &config).expect("writes");
        for name in [PROCESSOR_CONFIG, CHAT_TEMPLATE] {
            assert_eq!(
                std::fs::read_to_string(dir.path().join(name)).expect("written"),
                std::fs::read_to_string(model.join(name)).expect("shipped"),
                "{name}"
            );
        }
    }
}
