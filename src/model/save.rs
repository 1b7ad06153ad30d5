//! Writing a model back in the Hugging Face layout (`config.json` + `model.safetensors`).
//!
//! The safetensors header carries `{"format": "pt"}` like `save_pretrained` writes, which
//! transformers requires before it loads a file.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use candle_core::{CpuStorage, DType, Device, Storage, Tensor};
use safetensors::tensor::{Dtype, View};

use crate::model::atomic::{persist, temp_beside, write_atomic};
use crate::model::checkpoint::SINGLE_FILE;
use crate::model::error::{ModelError, Result};
use crate::model::llava::LlavaModel;

/// One tensor's bytes, ready for the safetensors writer.
struct Bytes {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Bytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Little-endian bytes of a tensor converted to `dtype` (F32, F16, BF16 or F64).
fn to_bytes(t: &Tensor, dtype: DType) -> candle_core::Result<Bytes> {
    let t = t
        .detach()
        .to_device(&Device::Cpu)?
        .to_dtype(dtype)?
        .contiguous()?;
    let shape = t.dims().to_vec();
    let (storage, layout) = t.storage_and_layout();
    let range = layout.start_offset()..layout.start_offset() + t.elem_count();
    let (st_dtype, data): (Dtype, Vec<u8>) = match &*storage {
        Storage::Cpu(CpuStorage::F32(v)) => (
            Dtype::F32,
            v[range].iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
        Storage::Cpu(CpuStorage::F64(v)) => (
            Dtype::F64,
            v[range].iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
        Storage::Cpu(CpuStorage::F16(v)) => (
            Dtype::F16,
            v[range]
                .iter()
                .flat_map(|x| x.to_bits().to_le_bytes())
                .collect(),
        ),
        Storage::Cpu(CpuStorage::BF16(v)) => (
            Dtype::BF16,
            v[range]
                .iter()
                .flat_map(|x| x.to_bits().to_le_bytes())
                .collect(),
        ),
        _ => candle_core::bail!("cannot save tensors as {dtype:?}"),
    };
    Ok(Bytes {
        dtype: st_dtype,
        shape,
        data,
    })
}

fn torch_dtype(dtype: DType) -> &'static str {
    match dtype {
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        DType::F64 => "float64",
        _ => "float32",
    }
}

impl LlavaModel {
    /// Saves `config.json` and `model.safetensors` (f32) into `dir`, creating it if needed.
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.save_as(dir, DType::F32)
    }

    /// Saves with the weights stored as `dtype` (F32, F16, BF16 or F64).
    pub fn save_as(&self, dir: &Path, dtype: DType) -> Result<()> {
        let err = |path: &Path, reason: String| ModelError::Save {
            path: path.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| err(dir, e.to_string()))?;
        let weights = dir.join(SINGLE_FILE);
        let tensors = self
            .named_tensors()
            .into_iter()
            .map(|(name, t)| Ok((name, to_bytes(&t, dtype)?)))
            .collect::<candle_core::Result<Vec<(String, Bytes)>>>()?;
        let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
        let (tmp, target) = temp_beside(&weights)?;
        safetensors::tensor::serialize_to_file(
            tensors.iter().map(|(n, b)| (n.as_str(), b)),
            Some(metadata),
            tmp.path(),
        )
        .map_err(|e| err(&weights, e.to_string()))?;
        persist(tmp, &target)?;

        let mut config = self.config().clone();
        config.text_config.torch_dtype = Some(torch_dtype(dtype).to_string());
        let mut json = serde_json::to_value(&config).map_err(|e| err(dir, e.to_string()))?;
        if let Some(obj) = json.as_object_mut() {
            obj.insert("torch_dtype".into(), torch_dtype(dtype).into());
        }
        let text = serde_json::to_string_pretty(&json).map_err(|e| err(dir, e.to_string()))?;
        write_atomic(&dir.join("config.json"), text.as_bytes())
    }
}
