//! The world itself: which creature is called what, where it lives and what it eats, which city
//! is each country's capital, and which subjects the edit datasets may touch.
//!
//! Roles keep the parts of an evaluation apart. Edit cases are drawn only from `Edit` subjects,
//! locality probes only from `Probe` subjects, and the preserve pool and hallucination triplets only
//! from `Preserve` subjects: a null space computed on the preserve pool never contains the very
//! probes locality is measured on, and never the fact being edited.

use serde::Serialize;

use super::lexicon::{CAPITALS, COUNTRIES, CREATURE_NAMES, FOODS, HABITATS};
use super::rng::WorldRng;
use super::scene::{Look, Scene};

/// What a subject may be used for when building datasets and pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May be the subject of an edit case.
    Edit,
    /// Used for locality probes (`loc`, `m_loc`).
    Probe,
    /// Used for the preserve pool and hallucination triplets.
    Preserve,
}

/// A visual entity: a creature with a name and two text facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Creature {
    pub id: usize,
    pub name: &'static str,
    pub look: Look,
    pub habitat: &'static str,
    pub food: &'static str,
    pub role: Role,
}

/// A country and its capital: knowledge that never involves an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Country {
    pub id: usize,
    pub name: &'static str,
    pub capital: &'static str,
    pub role: Role,
}

/// A scene the world can show, with its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SceneEntry {
    pub id: usize,
    pub scene: Scene,
    pub role: Role,
}

/// A seeded world. Same seed, same world, on every machine.
#[derive(Debug, Clone, Serialize)]
pub struct World {
    pub seed: u64,
    pub creatures: Vec<Creature>,
    pub countries: Vec<Country>,
    pub scenes: Vec<SceneEntry>,
}

/// How many creatures get each role (the rest are `Edit`).
const PROBE_CREATURES: usize = 6;
const PRESERVE_CREATURES: usize = 6;

/// Splits `n` items into roles: the first `probe` indices of a seeded permutation are `Probe`,
/// the next `preserve` are `Preserve`, the rest `Edit`.
fn assign_roles(n: usize, probe: usize, preserve: usize, rng: &mut WorldRng) -> Vec<Role> {
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let mut roles = vec![Role::Edit; n];
    for (rank, &i) in order.iter().enumerate() {
        if let Some(role) = roles.get_mut(i) {
            *role = if rank < probe {
                Role::Probe
            } else if rank < probe + preserve {
                Role::Preserve
            } else {
                Role::Edit
            };
        }
    }
    roles
}

/// `items` repeated so that each appears `n / items.len()` times, then shuffled: a balanced
/// assignment (every habitat is home to exactly four creatures).
fn balanced<T: Copy>(items: &[T], n: usize, rng: &mut WorldRng) -> Vec<T> {
    let mut out: Vec<T> = items.iter().copied().cycle().take(n).collect();
    rng.shuffle(&mut out);
    out
}

impl World {
    /// Builds the world for `seed`.
    pub fn new(seed: u64) -> World {
        let looks = Look::all();
        let mut names: Vec<&'static str> = CREATURE_NAMES.to_vec();
        WorldRng::derive(seed, "creature-names", 0).shuffle(&mut names);
        let habitats = balanced(
            &HABITATS,
            looks.len(),
            &mut WorldRng::derive(seed, "habitats", 0),
        );
        let foods = balanced(&FOODS, looks.len(), &mut WorldRng::derive(seed, "foods", 0));
        let creature_roles = assign_roles(
            looks.len(),
            PROBE_CREATURES,
            PRESERVE_CREATURES,
            &mut WorldRng::derive(seed, "creature-roles", 0),
        );
        let creatures = looks
            .iter()
            .zip(names)
            .zip(habitats.iter().zip(&foods))
            .zip(&creature_roles)
            .enumerate()
            .map(|(id, (((look, name), (habitat, food)), role))| Creature {
                id,
                name,
                look: *look,
                habitat,
                food,
                role: *role,
            })
            .collect();

        let mut capitals: Vec<&'static str> = CAPITALS.to_vec();
        WorldRng::derive(seed, "capitals", 0).shuffle(&mut capitals);
        let half = COUNTRIES.len() / 2;
        let country_roles = assign_roles(
            COUNTRIES.len(),
            half,
            COUNTRIES.len() - half,
            &mut WorldRng::derive(seed, "country-roles", 0),
        );
        let countries = COUNTRIES
            .iter()
            .zip(capitals)
            .zip(&country_roles)
            .enumerate()
            .map(|(id, ((name, capital), role))| Country {
                id,
                name,
                capital,
                role: *role,
            })
            .collect();

        let all = Scene::all();
        let fifth = all.len() / 5;
        let scene_roles = assign_roles(
            all.len(),
            fifth,
            fifth,
            &mut WorldRng::derive(seed, "scene-roles", 0),
        );
        let scenes = all
            .into_iter()
            .zip(scene_roles)
            .enumerate()
            .map(|(id, (scene, role))| SceneEntry { id, scene, role })
            .collect();

        World {
            seed,
            creatures,
            countries,
            scenes,
        }
    }

    /// The creature with this id, if any.
    pub fn creature(&self, id: usize) -> Option<&Creature> {
        self.creatures.get(id)
    }

    /// The scene with this id, if any.
    pub fn scene(&self, id: usize) -> Option<&SceneEntry> {
        self.scenes.get(id)
    }

    /// The country with this id, if any.
    pub fn country(&self, id: usize) -> Option<&Country> {
        self.countries.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn name_pools_are_distinct_words() {
        let mut all = BTreeSet::new();
        for word in CREATURE_NAMES
            .iter()
            .chain(&HABITATS)
            .chain(&FOODS)
            .chain(&COUNTRIES)
            .chain(&CAPITALS)
        {
            assert!(word.chars().all(|c| c.is_ascii_lowercase()), "{word}");
            assert!(all.insert(*word), "{word} appears twice");
        }
    }

    #[test]
    fn same_seed_same_world_other_seed_other_world() {
        let a = World::new(1);
        assert_eq!(
            serde_json::to_string(&a).ok(),
            serde_json::to_string(&World::new(1)).ok()
        );
        let b = World::new(2);
        assert_ne!(
            a.creatures.iter().map(|c| c.name).collect::<Vec<_>>(),
            b.creatures.iter().map(|c| c.name).collect::<Vec<_>>()
        );
    }

    #[test]
    fn facts_are_balanced_and_roles_sized() {
        let w = World::new(3);
        let mut per_habitat = BTreeMap::new();
        for c in &w.creatures {
            *per_habitat.entry(c.habitat).or_insert(0) += 1;
        }
        assert!(per_habitat.values().all(|&n| n == 4), "{per_habitat:?}");
        let count = |role| w.creatures.iter().filter(|c| c.role == role).count();
        assert_eq!(
            (count(Role::Edit), count(Role::Probe), count(Role::Preserve)),
            (20, 6, 6)
        );
        let scene_count = |role| w.scenes.iter().filter(|s| s.role == role).count();
        assert_eq!(
            (
                scene_count(Role::Edit),
                scene_count(Role::Probe),
                scene_count(Role::Preserve)
            ),
            (384, 128, 128)
        );
        assert!(w.countries.iter().all(|c| c.role != Role::Edit));
        let capitals: BTreeSet<_> = w.countries.iter().map(|c| c.capital).collect();
        assert_eq!(capitals.len(), 24);
    }
}
