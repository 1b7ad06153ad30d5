//! `--model ORG/NAME`: a checkpoint already in the standard Hugging Face cache, found offline.
//!
//! huggingface_hub stores a repository `ORG/NAME` as
//! `HUB/models--ORG--NAME/{refs/main, snapshots/<commit>/…, blobs/…}`, where `refs/main` holds the
//! commit of the snapshot that `main` pointed at when it was downloaded. The hub folder `HUB` is,
//! as huggingface_hub decides it: `$HF_HUB_CACHE`, else `$HUGGINGFACE_HUB_CACHE` (its older
//! name), else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
//! `~/.cache/huggingface/hub`. Nothing is downloaded: a repository that is not there is an error
//! that lists every place looked at and what was missing.
//!
//! An argument that names an existing folder is always that folder; only a non-existing
//! `ORG/NAME` (two plain path parts), optionally `ORG/NAME@REVISION` (a ref name or a commit), is
//! looked up. mkedsl writes nothing inside a snapshot: [`own_cache_dir`] is where its caches go
//! for a model found here.

use std::path::{Component, Path, PathBuf};

use miette::Diagnostic;
use thiserror::Error;

/// A repository that is not in any hub folder looked at.
#[derive(Debug, Error, Diagnostic)]
#[error("`{repo}` is not a folder, and no snapshot of it is in the Hugging Face cache")]
#[diagnostic(
    code(mkedsl::model::hub),
    help("download it once with `huggingface-cli download {repo}` (mkedsl never downloads), point HF_HUB_CACHE or HF_HOME at the cache that holds it, or pass the checkpoint folder itself")
)]
pub struct HubError {
    pub repo: String,
    /// Each place looked at, with what was missing there.
    #[related]
    pub looked: Vec<Looked>,
}

/// One place looked at.
#[derive(Debug, Error, Diagnostic)]
#[error("looked in {}: {reason}", path.display())]
#[diagnostic(severity(Advice))]
pub struct Looked {
    pub path: PathBuf,
    pub reason: String,
}

/// The hub folders to search, in huggingface_hub's order of precedence, each with the variable
/// that named it. Only the first is where huggingface_hub itself would look; the others are
/// listed too, so a cache set up under another convention is still found.
pub fn hub_dirs() -> Vec<(PathBuf, &'static str)> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut out = Vec::new();
    if let Some(p) = var("HF_HUB_CACHE") {
        out.push((p, "HF_HUB_CACHE"));
    }
    if let Some(p) = var("HUGGINGFACE_HUB_CACHE") {
        out.push((p, "HUGGINGFACE_HUB_CACHE"));
    }
    if let Some(p) = var("HF_HOME") {
        out.push((p.join("hub"), "HF_HOME"));
    }
    if let Some(p) = var("XDG_CACHE_HOME") {
        out.push((p.join("huggingface/hub"), "XDG_CACHE_HOME"));
    }
    if let Some(p) = var("HOME") {
        out.push((p.join(".cache/huggingface/hub"), "the default"));
    }
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// `(org, name, revision)` when `arg` reads as a Hugging Face repository id.
fn repo_id(arg: &str) -> Option<(&str, &str, &str)> {
    let (id, revision) = arg.split_once('@').unwrap_or((arg, "main"));
    let (org, name) = id.split_once('/')?;
    let plain = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    (plain(org) && plain(name) && plain(revision)).then_some((org, name, revision))
}

/// The checkpoint folder `arg` names: itself when it exists (or does not read as `ORG/NAME`),
/// else the snapshot of that repository in the first hub folder that has one.
pub fn resolve_model(arg: &Path) -> Result<PathBuf, HubError> {
    let text = arg.to_string_lossy();
    let Some((org, name, revision)) = repo_id(&text).filter(|_| !arg.exists()) else {
        return Ok(arg.to_path_buf());
    };
    let mut looked = Vec::new();
    for (hub, source) in hub_dirs() {
        let repo = hub.join(format!("models--{org}--{name}"));
        match snapshot(&repo, revision) {
            Ok(dir) => return Ok(dir),
            Err(reason) => looked.push(Looked {
                path: repo,
                reason: format!("{reason} (hub folder from {source})"),
            }),
        }
    }
    if looked.is_empty() {
        looked.push(Looked {
            path: PathBuf::from("~/.cache/huggingface/hub"),
            reason: "neither HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME nor HOME is set".into(),
        });
    }
    Err(HubError {
        repo: text.into_owned(),
        looked,
    })
}

/// The snapshot of `revision` in a repository folder: `refs/REVISION` names its commit; a
/// revision that is itself a commit with a snapshot is taken directly.
fn snapshot(repo: &Path, revision: &str) -> Result<PathBuf, String> {
    if !repo.is_dir() {
        return Err("no such folder".into());
    }
    let direct = repo.join("snapshots").join(revision);
    let commit = if direct.is_dir() {
        revision.to_string()
    } else {
        let refs = repo.join("refs").join(revision);
        let text = std::fs::read_to_string(&refs)
            .map_err(|_| format!("no `refs/{revision}` naming a snapshot"))?;
        text.trim().to_string()
    };
    let dir = repo.join("snapshots").join(&commit);
    if !dir.is_dir() {
        return Err(format!(
            "`refs/{revision}` names commit {commit}, whose snapshot folder is missing"
        ));
    }
    if !dir.join("config.json").is_file() {
        return Err(format!(
            "snapshot {commit} has no config.json (an incomplete download?)"
        ));
    }
    Ok(dir)
}

/// Whether `dir` lies inside a hub cache's snapshot (`…/models--…/snapshots/<commit>/…`).
pub fn in_snapshot(dir: &Path) -> bool {
    let parts: Vec<Component> = dir.components().collect();
    parts.windows(3).any(|w| {
        matches!(
            (w[0], w[1]),
            (Component::Normal(repo), Component::Normal(snaps))
                if repo.to_string_lossy().starts_with("models--") && snaps == "snapshots"
        )
    })
}

/// mkedsl's own cache folder for a model inside a hub cache, so nothing is written into the
/// snapshot (or beside it, where huggingface_hub would take it for another snapshot):
/// `$XDG_CACHE_HOME/mkedsl`, else `~/.cache/mkedsl`. `None` for any other model folder.
pub fn own_cache_dir(model_dir: &Path) -> Option<PathBuf> {
    if !in_snapshot(model_dir) {
        return None;
    }
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    Some(match (var("XDG_CACHE_HOME"), var("HOME")) {
        (Some(x), _) => x.join("mkedsl"),
        (None, Some(h)) => h.join(".cache/mkedsl"),
        (None, None) => std::env::temp_dir().join("mkedsl-cache"),
    })
}

/// `--model`'s value parser: resolves `ORG/NAME` through the cache; the error lists where it
/// looked.
pub fn model_arg(text: &str) -> Result<PathBuf, String> {
    resolve_model(Path::new(text)).map_err(|e| {
        let mut msg = e.to_string();
        for l in &e.looked {
            msg.push_str(&format!("\n  - {l}"));
        }
        msg.push_str("\n  help: download it once with `huggingface-cli download ");
        msg.push_str(&e.repo);
        msg.push_str("` (mkedsl never downloads), set HF_HUB_CACHE or HF_HOME to the cache that holds it, or pass the checkpoint folder");
        msg
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_are_two_plain_parts() {
        assert_eq!(
            repo_id("llava-hf/llava-1.5-7b-hf"),
            Some(("llava-hf", "llava-1.5-7b-hf", "main"))
        );
        assert_eq!(repo_id("a/b@v1.0"), Some(("a", "b", "v1.0")));
        for not in ["model", "./a/b", "/a/b", "a/b/c", "../a", "a/", "a b/c"] {
            assert_eq!(repo_id(not), None, "{not}");
        }
    }

    #[test]
    fn snapshots_are_recognised_by_their_layout() {
        assert!(in_snapshot(Path::new(
            "/h/.cache/huggingface/hub/models--a--b/snapshots/abc"
        )));
        assert!(!in_snapshot(Path::new("/work/examples/model")));
        assert!(!in_snapshot(Path::new("/x/snapshots/abc")));
    }
}
