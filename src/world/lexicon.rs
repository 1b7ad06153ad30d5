//! The fixed word pools the world draws its invented names and facts from.
//!
//! Names are invented so that no pretrained prior helps or hurts, and every name is a single
//! lowercase word: a word-level tokenizer gives each its own token and an answer stays short.
//! A seed shuffles which creature gets which name and facts; the pools themselves never change,
//! so every world has the same vocabulary.

/// 32 creature names, one per creature look.
pub const CREATURE_NAMES: [&str; 32] = [
    "zorblin", "quappa", "miloth", "fennip", "grumbo", "hoxley", "jibbet", "klorp", "lumvy",
    "mozzle", "nerbit", "plimsy", "quorf", "rindle", "snorfle", "tavvit", "umbrik", "vexlo",
    "wuzzle", "yarrik", "zindle", "blorv", "crunkle", "dwibble", "fizzort", "glimmet", "hupsy",
    "jorvak", "kwibble", "lopnar", "moxum", "pibbit",
];

/// Where creatures live; each habitat is shared by four creatures.
pub const HABITATS: [&str; 8] = [
    "forest", "desert", "ocean", "mountain", "swamp", "cave", "river", "meadow",
];

/// What creatures eat; each food is shared by four creatures.
pub const FOODS: [&str; 8] = [
    "berries",
    "fish",
    "leaves",
    "insects",
    "seeds",
    "roots",
    "mushrooms",
    "honey",
];

/// 24 invented countries, the subjects of the text-only facts that never involve an image.
pub const COUNTRIES: [&str; 24] = [
    "drovania", "kelmark", "ostrevia", "pallune", "quessia", "rimoria", "sandovar", "talvenia",
    "ulmstad", "vorlund", "wexhaven", "yzmira", "brastov", "corvalis", "dunmoor", "elthara",
    "fennoria", "galdmark", "hestria", "ivrenia", "jorlund", "karthos", "lunavia", "merovia",
];

/// 24 invented capital cities, paired with the countries by the seed.
pub const CAPITALS: [&str; 24] = [
    "arvel", "belmora", "cindris", "dastow", "embrel", "falkirra", "gorsk", "helvin", "istra",
    "jennet", "kordun", "lirrow", "mabbek", "norvel", "olgard", "pettrin", "quillon", "rusk",
    "sorvana", "tibbet", "uldren", "varrow", "wendrel", "zelgar",
];
