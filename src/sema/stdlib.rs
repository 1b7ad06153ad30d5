//! The standard library: modules written in the recipe language, embedded in the binary.
//!
//! `use std.NAME` loads `stdlib/NAME.edit` as an ordinary source, so its diagnostics point into
//! that file. Tests may check against another [`Library`] (one with a faulty module, say).

/// A set of importable modules: `(name, text)` pairs, imported as `use std.NAME`.
#[derive(Debug, Clone)]
pub struct Library {
    pub modules: Vec<(String, String)>,
}

const STD: &[(&str, &str)] = &[
    ("asam", include_str!("../../stdlib/asam.edit")),
    ("elora", include_str!("../../stdlib/elora.edit")),
    ("lora", include_str!("../../stdlib/lora.edit")),
    ("spaces", include_str!("../../stdlib/spaces.edit")),
    ("unike", include_str!("../../stdlib/unike.edit")),
];

impl Library {
    /// The standard library shipped with mkedsl.
    pub fn std() -> Self {
        Library {
            modules: STD
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.modules
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.modules.iter().map(|(n, _)| n.as_str())
    }
}
