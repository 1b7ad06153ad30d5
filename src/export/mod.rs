//! Handing edits to the Hugging Face ecosystem: PEFT LoRA adapters ([`peft`]) that
//! `PeftModel.from_pretrained` loads onto transformers' `LlavaForConditionalGeneration`, and the
//! reader `mkedsl infer --adapter` uses.

pub mod merged;
pub mod peft;

pub use merged::write_merged;
pub use peft::{read_adapter, write_adapter, ExportError};

/// Folder of the merged checkpoint inside an artefact folder.
pub const MERGED_DIR: &str = "merged";

/// Converts the mkedsl edit artefact in `dir` (`edit.json` + `edit.safetensors`) into a PEFT
/// adapter written beside it, for the checkpoint `base_model`.
pub fn artefact_to_peft(dir: &std::path::Path, base_model: &str) -> miette::Result<()> {
    let (artefact, _) = crate::exec::output::read(dir, &candle_core::Device::Cpu)?;
    write_adapter(
        dir,
        base_model,
        &artefact.loras,
        &artefact.deltas,
        artefact.neurons.len(),
    )?;
    Ok(())
}

/// Writes the merged checkpoint of the artefact in `dir` into `dir/merged/`.
pub fn artefact_to_merged(
    dir: &std::path::Path,
    base_model: &std::path::Path,
) -> miette::Result<()> {
    let (artefact, _) = crate::exec::output::read(dir, &candle_core::Device::Cpu)?;
    write_merged(
        base_model,
        &dir.join(MERGED_DIR),
        &artefact.loras,
        &artefact.deltas,
        artefact.neurons.len(),
    )
}
