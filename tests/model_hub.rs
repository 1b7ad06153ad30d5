//! `--model ORG/NAME` through a fake Hugging Face cache laid out as huggingface_hub writes it
//! (`models--ORG--NAME/refs/main` → `snapshots/<commit>/`), in a temporary folder: the snapshot
//! is found offline under HF_HUB_CACHE and HF_HOME, a missing repository lists every place
//! looked at, and mkedsl's prepare cache is written to a folder of its own, never inside (or
//! beside) the snapshot.

mod exec_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use exec_common::{dataset, embedded_model, recipe, s, ELORA};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// A hub folder holding `acme/tiny-llava` (the tiny fixture with its world) at [`COMMIT`].
fn fake_hub(root: &Path) -> (PathBuf, PathBuf) {
    let hub = root.join("hub");
    let repo = hub.join("models--acme--tiny-llava");
    std::fs::create_dir_all(repo.join("refs")).expect("refs");
    std::fs::write(repo.join("refs/main"), COMMIT).expect("refs/main");
    let staging = root.join("staging");
    let model = embedded_model(&staging);
    let snapshot = repo.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(snapshot.parent().expect("parent")).expect("snapshots");
    std::fs::rename(model, &snapshot).expect("move into the snapshot");
    (hub, snapshot)
}

/// mkedsl with a clean environment for the hub variables, then `env`.
fn mkedsl(args: &[&str], env: &[(&str, &Path)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mkedsl"));
    cmd.args(args).env("NO_COLOR", "1");
    for var in [
        "MKEDSL_CACHE",
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_HOME",
        "XDG_CACHE_HOME",
        "HOME",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run mkedsl")
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("list").flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).expect("inside").to_path_buf());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_repo_id_resolves_to_its_snapshot_in_the_hub_cache() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (hub, snapshot) = fake_hub(dir.path());
    let prompt = [
        "--prompt",
        "USER: what is the capital of drovania? ASSISTANT:",
    ];
    let by_path = mkedsl(
        &[
            &[
                "infer",
                "--model",
                s(&snapshot),
                "--max-new-tokens",
                "3",
                "--json",
            ][..],
            &prompt[..],
        ]
        .concat(),
        &[],
    );
    assert!(
        by_path.status.success(),
        "{}",
        String::from_utf8_lossy(&by_path.stderr)
    );
    // HF_HUB_CACHE, and HF_HOME (whose hub folder is HF_HOME/hub).
    let home = dir.path();
    for env in [[("HF_HUB_CACHE", hub.as_path())], [("HF_HOME", home)]] {
        let by_id = mkedsl(
            &[
                &[
                    "infer",
                    "--model",
                    "acme/tiny-llava",
                    "--max-new-tokens",
                    "3",
                    "--json",
                ][..],
                &prompt[..],
            ]
            .concat(),
            &env,
        );
        assert!(
            by_id.status.success(),
            "{}",
            String::from_utf8_lossy(&by_id.stderr)
        );
        assert_eq!(by_id.stdout, by_path.stdout);
    }
    // A revision that is the commit itself.
    let at = format!("acme/tiny-llava@{COMMIT}");
    let by_commit = mkedsl(
        &[
            &["infer", "--model", &at, "--max-new-tokens", "3", "--json"][..],
            &prompt[..],
        ]
        .concat(),
        &[("HF_HUB_CACHE", &hub)],
    );
    assert_eq!(by_commit.stdout, by_path.stdout);
}

#[test]
fn a_missing_repo_lists_where_it_looked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (hub, _) = fake_hub(dir.path());
    // refs/main naming a commit without a snapshot.
    let broken = hub.join("models--acme--broken");
    std::fs::create_dir_all(broken.join("refs")).expect("refs");
    std::fs::write(broken.join("refs/main"), "feedface").expect("refs/main");
    let home = dir.path().join("home");
    for (repo, expect) in [
        ("acme/nope", "no such folder"),
        (
            "acme/broken",
            "names commit feedface, whose snapshot folder is missing",
        ),
    ] {
        let out = mkedsl(
            &["plan", "recipes/ft_l.edit", "--model", repo],
            &[("HF_HUB_CACHE", hub.as_path()), ("HOME", home.as_path())],
        );
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr).replace(s(dir.path()), "[TMP]");
        assert!(err.contains(expect), "{err}");
        assert!(err.contains("huggingface-cli download"), "{err}");
        if repo == "acme/nope" {
            insta::assert_snapshot!(err);
        }
    }
}

#[test]
fn the_prepare_cache_of_a_hub_model_lives_outside_the_hub() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (hub, snapshot) = fake_hub(dir.path());
    let before = files_under(&hub);
    let data = dataset(dir.path(), 1);
    let r = recipe(dir.path(), "elora.edit", ELORA);
    let xdg = dir.path().join("xdg");
    let out = mkedsl(
        &[
            "run",
            s(&r),
            "--model",
            "acme/tiny-llava",
            "--data",
            s(&data),
            "--limit",
            "1",
            "--max-new-tokens",
            "2",
        ],
        &[
            ("HF_HUB_CACHE", hub.as_path()),
            ("XDG_CACHE_HOME", xdg.as_path()),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(s(&snapshot)), "{stdout}");
    assert!(stdout.contains(s(&xdg.join("mkedsl"))), "{stdout}");
    assert!(xdg.join("mkedsl").is_dir());
    // The hub folder is exactly as it was.
    assert_eq!(files_under(&hub), before);
}
