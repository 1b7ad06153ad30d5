//! The VS Code extension in editors/vscode/ stays in step with the language: every keyword of
//! the grammar and the reference, every builtin of the registry, every stdlib function and the
//! metric names appear in the TextMate grammar's patterns.

use std::collections::BTreeSet;

use serde_json::Value;

const GRAMMAR: &str = "editors/vscode/syntaxes/mkedsl.tmLanguage.json";

fn json(path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect(path)).expect(path)
}

/// Every `match`/`begin` regex of the grammar.
fn regexes(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("match" | "begin", Value::String(s)) => out.push(s.clone()),
                    _ => regexes(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| regexes(i, out)),
        _ => {}
    }
}

/// The words the grammar's patterns name literally: the alternatives of every `(a|b|c)` group
/// and every bare word.
fn words(regexes: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for r in regexes {
        let mut rest = r.as_str();
        while let Some(open) = rest.find('(') {
            rest = &rest[open + 1..];
            let close = rest.find(')').unwrap_or(rest.len());
            let group = &rest[..close];
            let group = group.trim_start_matches("?<=\\b");
            if group
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '|')
            {
                out.extend(group.split('|').filter(|w| !w.is_empty()).map(String::from));
            }
        }
    }
    out
}

/// The words between double quotes on the pest rule `name = …` line.
fn pest_literals(grammar: &str, rule: &str) -> Vec<String> {
    let line = grammar
        .lines()
        .find(|l| l.split_whitespace().next() == Some(rule))
        .unwrap_or_else(|| panic!("no rule `{rule}` in the grammar"));
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

#[test]
fn every_keyword_builtin_stdlib_function_and_metric_is_highlighted() {
    let mut found = Vec::new();
    regexes(&json(GRAMMAR), &mut found);
    let known = words(&found);

    let pest = std::fs::read_to_string("grammar/mkedsl.pest").expect("grammar");
    let mut wanted: Vec<String> = pest_literals(&pest, "keyword");
    for line in pest.lines().filter(|l| l.starts_with("kw_")) {
        let rule = line.split_whitespace().next().unwrap();
        wanted.extend(pest_literals(&pest, rule));
    }
    wanted.extend(pest_literals(&pest, "project_kind"));
    // The reference's keyword row.
    let reference = std::fs::read_to_string("grammar/REFERENCE.md").expect("reference");
    let row = reference
        .lines()
        .find(|l| l.starts_with("| keyword |"))
        .expect("keyword row");
    let listed = row.split('`').nth(1).expect("keywords in backticks");
    wanted.extend(listed.split_whitespace().map(String::from));
    // Builtins: the registry, and every `### \`name\`` section of the reference.
    for (signature, _) in mkedsl::sema::builtin_signatures() {
        wanted.push(signature.split('(').next().unwrap().to_string());
    }
    for line in reference.lines().filter(|l| l.starts_with("### `")) {
        wanted.push(
            line.trim_start_matches("### `")
                .split('`')
                .next()
                .unwrap()
                .to_string(),
        );
    }
    // Standard-library functions, from the files.
    for entry in std::fs::read_dir("stdlib").expect("stdlib") {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for name in text.lines().filter_map(|l| l.strip_prefix("fn ")) {
            wanted.push(name.split('(').next().unwrap().trim().to_string());
        }
    }
    wanted.extend(
        [
            "target",
            "embed",
            "rel",
            "t_gen",
            "m_gen",
            "t_loc",
            "m_loc",
            "single",
            "sequential",
        ]
        .map(String::from),
    );

    let missing: BTreeSet<&String> = wanted
        .iter()
        .filter(|w| !w.chars().all(|c| c.is_ascii_punctuation()) && !known.contains(*w))
        .collect();
    assert!(missing.is_empty(), "not in {GRAMMAR}: {missing:?}");
    assert!(
        wanted.len() > 60,
        "the name lists came out short: {}",
        wanted.len()
    );
}

#[test]
fn the_extension_declares_the_language_comments_and_brackets() {
    let package = json("editors/vscode/package.json");
    let language = &package["contributes"]["languages"][0];
    assert_eq!(language["extensions"][0], ".edit");
    let grammar = &package["contributes"]["grammars"][0];
    assert_eq!(grammar["scopeName"], json(GRAMMAR)["scopeName"]);
    assert_eq!(grammar["path"], "./syntaxes/mkedsl.tmLanguage.json");
    let config = json("editors/vscode/language-configuration.json");
    assert_eq!(config["comments"]["lineComment"], "#");
    let brackets: Vec<String> = config["brackets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}{}", p[0].as_str().unwrap(), p[1].as_str().unwrap()))
        .collect();
    assert_eq!(brackets, ["{}", "[]", "()"]);
}

/// Every pattern compiles with Oniguruma, the engine VS Code runs TextMate grammars with, and
/// a sample recipe line is split into the scopes it should be.
#[test]
fn every_pattern_compiles_with_oniguruma_and_matches_what_it_names() {
    let mut found = Vec::new();
    regexes(&json(GRAMMAR), &mut found);
    for r in &found {
        onig::Regex::new(r).unwrap_or_else(|e| panic!("{r}: {e}"));
    }
    let repo = &json(GRAMMAR)["repository"];
    let first = |rule: &Value, text: &str| -> Option<String> {
        let re = onig::Regex::new(rule["match"].as_str()?).ok()?;
        let caps = re.captures(text)?;
        caps.at(if rule.get("captures").is_some() { 1 } else { 0 })
            .map(String::from)
    };
    assert_eq!(
        first(&repo["comment"], "loss nll(target)  # why").as_deref(),
        Some("# why")
    );
    assert_eq!(
        first(&repo["builtins"], "let c = covariance(x, over: d)").as_deref(),
        Some("covariance")
    );
    assert_eq!(
        first(&repo["builtins"], "let covariance_x = 1"),
        None,
        "a name is not a call"
    );
    assert_eq!(
        first(&repo["fn-definition"], "fn null_lora(site: Linear)").as_deref(),
        Some("fn")
    );
    assert_eq!(
        first(&repo["numbers"]["patterns"][0], "sgd(lr: 1e-3)").as_deref(),
        Some("1e-3")
    );
    assert_eq!(
        first(&repo["contextual-keywords"]["patterns"][0], "per edit {").as_deref(),
        Some("edit")
    );
    assert_eq!(
        first(&repo["contextual-keywords"]["patterns"][0], "let edit = 1"),
        None
    );
}
