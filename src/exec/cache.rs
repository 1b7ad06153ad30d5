//! The on-disk cache of prepare results: covariances, spaces and LoRA initialisations that do not
//! depend on the edit case.
//!
//! An entry is stored under `sha256(model hash + "\n" + step recipe + "\n" + data identity)`:
//! the plan's cache recipe spells out the operation, resolved site, data set and seed; the model
//! hash covers the checkpoint folder ([`model_hash`]); the data identity says where preserved
//! samples come from (world seed or preserve files) and the prompt template that formats them.
//! Each entry is `KEY.safetensors` (the tensors) and `KEY.json` (what it is, written last, so a
//! JSON file always names a complete tensor file); both are written atomically (temp + rename).
//! A second run with the same inputs reuses an entry and says so on stderr.
//!
//! The default folder is `$MKEDSL_CACHE`, else `.mkedsl-cache/` beside the model folder
//! (`examples/.mkedsl-cache/` for the embedded model; git-ignored). `--no-cache` neither reads nor
//! writes; `--cache-dir DIR` chooses the folder. A cache that cannot be written is reported and
//! the run goes on without it.
//!
//! Concurrent runs (the shards of `mkedsl run --shard`, started at the same moment) share entries
//! safely: a run holds an exclusive file lock ([`Cache::lock`], `KEYS.lock` named by its entries'
//! keys) while it looks its entries up and computes the missing ones, so the first run computes
//! them and the others wait, then load them. Runs with other entries (another seed, recipe or
//! model) take other locks and go on in parallel.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::files::{self, write_atomic};
use crate::exec::error::{ExecError, Result};
use crate::exec::preserve::hex;
use crate::model::checkpoint::weight_files;

/// The environment variable naming the cache folder.
pub const CACHE_ENV: &str = "MKEDSL_CACHE";
/// The folder name used beside the model when the variable is not set.
pub const CACHE_DIR: &str = ".mkedsl-cache";

/// Weight files up to this size are hashed completely; larger ones by header and samples.
const FULL_HASH_LIMIT: u64 = 512 << 20;
/// Bytes read at each of the sampled offsets of a large weight file.
const SAMPLE_BYTES: usize = 1 << 20;
/// Sampled offsets of a large weight file.
const SAMPLES: u64 = 64;

/// The folder a run caches in when none is given.
pub fn default_dir(model_dir: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    // A model found in the Hugging Face cache gets a cache of mkedsl's own, never a folder
    // inside (or beside) its snapshot.
    if let Some(dir) = crate::model::hub::own_cache_dir(model_dir) {
        return dir;
    }
    let parent = model_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    parent.join(CACHE_DIR)
}

/// A SHA-256 of what makes a checkpoint folder compute what it computes: `config.json`,
/// `tokenizer.json`, `preprocessor_config.json`, `prompt_template.txt` (when present) and every
/// weight file. Weight files up to 512 MiB are hashed whole. For larger files (a 7B shard) we
/// hash the file size, the safetensors header (every tensor's name, dtype, shape and offsets)
/// and 64 evenly spaced 1 MiB samples of the data: a retrained or differently converted
/// checkpoint changes these, and hashing 14 GB on every run would cost more than the cache saves.
pub fn model_hash(model_dir: &Path) -> Result<String> {
    let mut h = Sha256::new();
    let read = |path: &Path| -> Result<Vec<u8>> {
        std::fs::read(path).map_err(|e| ExecError::Write {
            path: path.to_path_buf(),
            reason: format!("cannot read it to hash the model: {e}"),
        })
    };
    for name in [
        "config.json",
        "tokenizer.json",
        "preprocessor_config.json",
        "prompt_template.txt",
    ] {
        let path = model_dir.join(name);
        if path.is_file() {
            h.update(name.as_bytes());
            h.update(read(&path)?);
        }
    }
    for file in weight_files(model_dir)? {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        h.update(name.unwrap_or_default().as_bytes());
        hash_weight_file(&file, &mut h).map_err(|e| ExecError::Write {
            path: file.clone(),
            reason: format!("cannot read it to hash the model: {e}"),
        })?;
    }
    Ok(hex(&h.finalize()))
}

fn hash_weight_file(path: &Path, h: &mut Sha256) -> std::io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    h.update(len.to_le_bytes());
    if len <= FULL_HASH_LIMIT {
        let mut bytes = Vec::with_capacity(len as usize);
        file.read_to_end(&mut bytes)?;
        h.update(&bytes);
        return Ok(());
    }
    // The safetensors header: an 8-byte little-endian length, then that much JSON.
    let mut n = [0u8; 8];
    file.read_exact(&mut n)?;
    let header_len = u64::from_le_bytes(n).min(len.saturating_sub(8));
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)?;
    h.update(&header);
    let mut chunk = vec![0u8; SAMPLE_BYTES];
    for i in 0..SAMPLES {
        let offset = (len - SAMPLE_BYTES as u64) / (SAMPLES - 1) * i;
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut chunk)?;
        h.update(&chunk);
    }
    Ok(())
}

/// What an entry's JSON says about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryInfo {
    /// `covariance`, `space` or `lora_init`.
    pub kind: String,
    /// The step's cache recipe.
    pub recipe: String,
    pub model_hash: String,
    pub data: String,
    pub mkedsl: String,
    /// The full key the entry was made for (its file name): an entry copied or renamed to
    /// another key is refused.
    #[serde(default)]
    pub key: String,
    /// SHA-256 of the entry's safetensors file: an entry whose tensors were changed after it
    /// was written (a damaged disk, a hand edit, a truncated copy) is refused.
    #[serde(default)]
    pub sha256: String,
}

/// An open cache (or a disabled one).
#[derive(Debug, Clone)]
pub struct Cache {
    dir: Option<PathBuf>,
    model_hash: String,
    data: String,
    /// Entries found damaged since the last [`Cache::take_reports`], by path, with the reason.
    damaged: std::sync::Arc<std::sync::Mutex<Vec<(PathBuf, String)>>>,
}

impl Cache {
    /// A cache in `dir`; `dir = None` disables it. `model_hash` and `data` are folded into every key.
    pub fn new(dir: Option<PathBuf>, model_hash: String, data: String) -> Cache {
        Cache {
            dir,
            model_hash,
            data,
            damaged: Default::default(),
        }
    }

    /// One line per damaged entry found since the last call: its path, what is wrong with it,
    /// and that it is recomputed (and overwritten).
    pub fn take_reports(&self) -> Vec<String> {
        let Ok(mut damaged) = self.damaged.lock() else {
            return Vec::new();
        };
        damaged
            .drain(..)
            .map(|(path, reason)| {
                format!(
                    "cache entry {} is damaged ({reason}); recomputing it",
                    path.display()
                )
            })
            .collect()
    }

    fn report(&self, path: &Path, reason: String) {
        if let Ok(mut damaged) = self.damaged.lock() {
            if !damaged.iter().any(|(p, _)| p == path) {
                damaged.push((path.to_path_buf(), reason));
            }
        }
    }

    /// A cache that never hits and never writes.
    pub fn disabled() -> Cache {
        Cache::new(None, String::new(), String::new())
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The full key of a step recipe.
    pub fn key(&self, recipe: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.model_hash.as_bytes());
        h.update(b"\n");
        h.update(recipe.as_bytes());
        h.update(b"\n");
        h.update(self.data.as_bytes());
        hex(&h.finalize())
    }

    fn paths(&self, key: &str) -> Option<(PathBuf, PathBuf)> {
        let dir = self.dir.as_ref()?;
        Some((
            dir.join(format!("{key}.safetensors")),
            dir.join(format!("{key}.json")),
        ))
    }

    /// The tensors stored for `recipe` as `kind`, if a complete, matching entry exists. An
    /// absent entry is a miss; an entry that exists but does not check out — unreadable JSON, a
    /// key, kind, model or data that is not this one's, tensors whose checksum differs from
    /// the one recorded, tensors that do not parse — is reported by path ([`Cache::take_reports`])
    /// and treated as a miss, so it is recomputed and overwritten.
    pub fn load(
        &self,
        kind: &str,
        recipe: &str,
        device: &Device,
    ) -> Option<HashMap<String, Tensor>> {
        let key = self.key(recipe);
        let (tensors, json) = self.paths(&key)?;
        let text = match std::fs::read(&json) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                self.report(&json, format!("cannot read it: {e}"));
                return None;
            }
        };
        let info: EntryInfo = match serde_json::from_slice(&text) {
            Ok(i) => i,
            Err(e) => {
                self.report(&json, format!("not a cache entry description: {e}"));
                return None;
            }
        };
        let expected = self.info(kind, recipe);
        for (what, found, want) in [
            ("key", &info.key, &key),
            ("kind", &info.kind, &expected.kind),
            ("recipe", &info.recipe, &expected.recipe),
            ("model hash", &info.model_hash, &expected.model_hash),
            ("data", &info.data, &expected.data),
        ] {
            if found != want {
                self.report(
                    &json,
                    format!("it records {what} `{found}`, this step needs `{want}`"),
                );
                return None;
            }
        }
        let bytes = match std::fs::read(&tensors) {
            Ok(b) => b,
            Err(e) => {
                self.report(&tensors, format!("cannot read it: {e}"));
                return None;
            }
        };
        let sum = hex(&Sha256::digest(&bytes));
        if sum != info.sha256 {
            self.report(
                &tensors,
                format!(
                    "its checksum {}… differs from the {}… recorded in {}",
                    short(&sum),
                    short(&info.sha256),
                    json.display()
                ),
            );
            return None;
        }
        match candle_core::safetensors::load_buffer(&bytes, device) {
            Ok(t) => Some(t),
            Err(e) => {
                self.report(&tensors, format!("not a readable safetensors file: {e}"));
                None
            }
        }
    }

    fn info(&self, kind: &str, recipe: &str) -> EntryInfo {
        EntryInfo {
            kind: kind.to_string(),
            recipe: recipe.to_string(),
            model_hash: self.model_hash.clone(),
            data: self.data.clone(),
            mkedsl: env!("CARGO_PKG_VERSION").to_string(),
            key: self.key(recipe),
            sha256: String::new(),
        }
    }

    /// Takes the exclusive lock of the entries of `recipes` (blocking until no other process
    /// holds it; `waiting` is called first if one does). `None` when the cache is disabled or
    /// there is no entry. The lock is released when the returned value is dropped, or when the
    /// process dies. It is an advisory `flock`: every mkedsl takes it, other programs do not.
    pub fn lock(
        &self,
        recipes: &[String],
        waiting: impl FnOnce(&Path),
    ) -> Result<Option<CacheLock>> {
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        if recipes.is_empty() {
            return Ok(None);
        }
        let mut keys: Vec<String> = recipes.iter().map(|r| self.key(r)).collect();
        keys.sort();
        keys.dedup();
        let path = dir.join(format!(
            "{}.lock",
            short(&hex(&Sha256::digest(keys.join("\n"))))
        ));
        let fail = |e: std::io::Error| ExecError::Write {
            path: path.clone(),
            reason: format!("cannot lock it: {e}"),
        };
        std::fs::create_dir_all(dir).map_err(fail)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(fail)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                waiting(&path);
                file.lock().map_err(fail)?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(fail(e)),
        }
        Ok(Some(CacheLock { _file: file }))
    }

    /// Stores tensors for `recipe`; returns the JSON file written (`None` when disabled).
    pub fn store(
        &self,
        kind: &str,
        recipe: &str,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<Option<PathBuf>> {
        let Some((tensor_path, json_path)) = self.paths(&self.key(recipe)) else {
            return Ok(None);
        };
        let fail = |path: &Path, reason: String| ExecError::Write {
            path: path.to_path_buf(),
            reason,
        };
        save_tensors_atomic(&tensor_path, tensors)?;
        let written = std::fs::read(&tensor_path).map_err(|e| fail(&tensor_path, e.to_string()))?;
        let info = EntryInfo {
            sha256: hex(&Sha256::digest(&written)),
            ..self.info(kind, recipe)
        };
        let mut json =
            serde_json::to_string_pretty(&info).map_err(|e| fail(&json_path, e.to_string()))?;
        json.push('\n');
        write_atomic(&json_path, json.as_bytes()).map_err(|e| fail(&json_path, e.to_string()))?;
        Ok(Some(json_path))
    }
}

/// A held [`Cache::lock`]; dropping it releases the lock.
#[derive(Debug)]
pub struct CacheLock {
    _file: std::fs::File,
}

/// Writes tensors as a safetensors file atomically: a temp file in the same folder, renamed
/// (under the output policy of [`crate::data::files`]).
pub fn save_tensors_atomic(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let fail = |reason: String| ExecError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    let target = files::replaceable(path).map_err(|e| fail(e.to_string()))?;
    let cpu: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<Result<_>>()?;
    let target_dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = files::temp_in(target_dir).map_err(|e| fail(e.to_string()))?;
    candle_core::safetensors::save(&cpu, tmp.path()).map_err(|e| fail(e.to_string()))?;
    files::persist_temp(tmp, &target).map_err(|e| fail(e.to_string()))?;
    Ok(())
}

/// The first 12 hex digits of a key, for messages.
pub fn short(key: &str) -> &str {
    key.get(..12).unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    #[test]
    fn entries_round_trip_and_keys_fold_in_model_and_data() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(Some(dir.path().to_path_buf()), "m1".into(), "d1".into());
        let t = Tensor::arange(0f64, 6.0, &Device::Cpu)
            .unwrap()
            .reshape((2, 3))
            .unwrap();
        let mut map = HashMap::new();
        map.insert("layer.1".to_string(), t.clone());
        assert!(cache.load("space", "null_space(x)", &Device::Cpu).is_none());
        cache.store("space", "null_space(x)", &map).unwrap();
        let back = cache.load("space", "null_space(x)", &Device::Cpu).unwrap();
        assert_eq!(back["layer.1"].dtype(), DType::F64);
        assert_eq!(
            back["layer.1"].to_vec2::<f64>().unwrap(),
            t.to_vec2::<f64>().unwrap()
        );
        // The same recipe under another kind, model or data source is a miss.
        assert!(cache
            .load("covariance", "null_space(x)", &Device::Cpu)
            .is_none());
        let other_model = Cache::new(Some(dir.path().to_path_buf()), "m2".into(), "d1".into());
        assert!(other_model
            .load("space", "null_space(x)", &Device::Cpu)
            .is_none());
        let other_data = Cache::new(Some(dir.path().to_path_buf()), "m1".into(), "d2".into());
        assert!(other_data
            .load("space", "null_space(x)", &Device::Cpu)
            .is_none());
        assert_ne!(cache.key("a"), other_model.key("a"));
        // A disabled cache never hits and never writes.
        let off = Cache::disabled();
        assert_eq!(off.store("space", "null_space(x)", &map).unwrap(), None);
        assert!(off.load("space", "null_space(x)", &Device::Cpu).is_none());
    }

    #[test]
    fn a_changed_or_moved_entry_is_reported_by_path_and_missed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(Some(dir.path().to_path_buf()), "m".into(), "d".into());
        let t = Tensor::arange(0f32, 4.0, &Device::Cpu).unwrap();
        let map = HashMap::from([("x".to_string(), t)]);
        cache.store("space", "r", &map).unwrap();
        let (tensors, json) = cache.paths(&cache.key("r")).unwrap();
        // Same format, different content: one value scaled.
        let good = std::fs::read(&tensors).unwrap();
        let mut bytes = good.clone();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&tensors, &bytes).unwrap();
        assert!(cache.load("space", "r", &Device::Cpu).is_none());
        let reports = cache.take_reports();
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert!(
            reports[0].contains(&tensors.display().to_string()),
            "{reports:?}"
        );
        assert!(reports[0].contains("checksum"), "{reports:?}");
        // An entry copied under another key is refused as well.
        std::fs::write(&tensors, &good).unwrap();
        assert!(cache.load("space", "r", &Device::Cpu).is_some());
        let (other_t, other_j) = cache.paths(&cache.key("other")).unwrap();
        std::fs::copy(&tensors, other_t).unwrap();
        std::fs::copy(&json, &other_j).unwrap();
        assert!(cache.load("space", "other", &Device::Cpu).is_none());
        let reports = cache.take_reports();
        assert!(reports[0].contains("key"), "{reports:?}");
        // A recomputed entry replaces the bad one.
        cache.store("space", "other", &map).unwrap();
        assert!(cache.load("space", "other", &Device::Cpu).is_some());
        assert!(cache.take_reports().is_empty());
    }

    #[test]
    fn a_second_holder_of_the_same_entries_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(Some(dir.path().to_path_buf()), "m".into(), "d".into());
        let recipes = vec!["covariance(x)".to_string(), "null_space(x)".to_string()];
        let first = cache
            .lock(&recipes, |_| panic!("nobody holds it yet"))
            .unwrap();
        assert!(first.is_some());
        // Other entries take another lock: no wait.
        let other = cache
            .lock(&["top_space(y)".to_string()], |_| panic!("another lock"))
            .unwrap();
        assert!(other.is_some());
        let (tx, rx) = std::sync::mpsc::channel();
        let (c, r) = (cache.clone(), recipes.clone());
        // The same entries in another order: the same lock, held by `first`.
        let waiter = std::thread::spawn(move || {
            let reversed: Vec<String> = r.into_iter().rev().collect();
            c.lock(&reversed, |_| tx.send(()).unwrap())
                .unwrap()
                .is_some()
        });
        rx.recv().expect("the second holder reports that it waits");
        drop(first);
        assert!(waiter.join().unwrap(), "and gets the lock once it is free");
        assert!(Cache::disabled().lock(&recipes, |_| {}).unwrap().is_none());
    }

    #[test]
    fn the_model_hash_changes_with_the_weights() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-llava");
        let a = model_hash(&src).unwrap();
        assert_eq!(a, model_hash(&src).unwrap());
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(&src).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
        assert_eq!(a, model_hash(dir.path()).unwrap());
        let weights = dir.path().join("model.safetensors");
        let mut bytes = std::fs::read(&weights).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&weights, bytes).unwrap();
        assert_ne!(a, model_hash(dir.path()).unwrap());
        assert_eq!(
            default_dir(Path::new("examples/model")),
            if std::env::var_os(CACHE_ENV).is_some_and(|d| !d.is_empty()) {
                PathBuf::from(std::env::var_os(CACHE_ENV).unwrap())
            } else {
                PathBuf::from("examples/.mkedsl-cache")
            }
        );
    }
}
