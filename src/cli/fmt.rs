//! `mkedsl fmt [--check] FILES…`: rewrites recipes and stdlib modules in the canonical layout
//! ([`crate::fmt`]), or with `--check` only says which ones are not in it (non-zero exit).

use std::path::{Path, PathBuf};

use clap::Args;

#[derive(Debug, Args)]
pub struct FmtArgs {
    /// `.edit` files, or folders whose `.edit` files (at any depth) are formatted.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Change nothing; list the files that formatting would change and exit non-zero if any.
    #[arg(long)]
    pub check: bool,
}

pub fn run(args: FmtArgs) -> miette::Result<()> {
    let files = expand(&args.files)?;
    let mut changed = Vec::new();
    let mut failed = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| {
            miette::miette!(
                help = "give a readable .edit file",
                "cannot read `{}`: {e}",
                file.display()
            )
        })?;
        let formatted = match crate::fmt::format_text(&file.display().to_string(), &text) {
            Ok(f) => f,
            Err(failure) => {
                eprintln!("{:?}", failure.into_report());
                failed += 1;
                continue;
            }
        };
        if formatted == text {
            continue;
        }
        if args.check {
            let line = first_difference(&text, &formatted);
            println!("would reformat {} (from line {line})", file.display());
        } else {
            crate::data::files::write_atomic(file, formatted.as_bytes())
                .map_err(|e| miette::miette!("cannot write `{}`: {e}", file.display()))?;
            println!("formatted {}", file.display());
        }
        changed.push(file);
    }
    if failed > 0 {
        return Err(miette::miette!(
            help = "fix the syntax errors above; a file that does not parse is left as it is",
            "{failed} of {} file(s) could not be formatted",
            files.len()
        ));
    }
    if args.check && !changed.is_empty() {
        return Err(miette::miette!(
            help = "run `mkedsl fmt` on them",
            "{} of {} file(s) are not formatted",
            changed.len(),
            files.len()
        ));
    }
    Ok(())
}

/// The 1-based number of the first line where `a` and `b` differ.
fn first_difference(a: &str, b: &str) -> usize {
    let mut n = 1;
    for (x, y) in a.lines().zip(b.lines()) {
        if x != y {
            return n;
        }
        n += 1;
    }
    n
}

/// The files named, with each folder replaced by its `.edit` files, sorted.
fn expand(paths: &[PathBuf]) -> miette::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found)?;
            found.sort();
            out.extend(found);
        } else if path.is_file() {
            out.push(path.clone());
        } else {
            return Err(miette::miette!(
                help = "name .edit files or folders holding them",
                "`{}` does not exist",
                path.display()
            ));
        }
    }
    Ok(out)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> miette::Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| miette::miette!("cannot read the folder `{}`: {e}", dir.display()))?;
    for entry in entries {
        let path = entry
            .map_err(|e| miette::miette!("cannot read the folder `{}`: {e}", dir.display()))?
            .path();
        if path.is_dir() {
            walk(&path, found)?;
        } else if path.extension().is_some_and(|e| e == "edit") {
            found.push(path);
        }
    }
    Ok(())
}
