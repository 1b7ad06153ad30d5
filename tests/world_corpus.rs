//! The world as the trainer and the evaluator will use it: prompts that tokenize, held-out sets
//! that never repeat training material, answers the picture determines, and reproducible streams.

use std::collections::{BTreeMap, BTreeSet};

use mkedsl::data::{answer_continuation, PromptTemplate};
use mkedsl::world::{
    train_tokenizer, Content, Example, Family, FamilyMix, PoolSizes, RenderSpace, Split, World,
};

#[test]
fn every_family_has_short_answers_and_prompts() {
    let world = World::new(1);
    let tokenizer = train_tokenizer(&world).expect("tokenizer");
    let template = PromptTemplate::llava15();
    for family in Family::ALL {
        let mut longest_prompt = 0;
        let mut longest_answer = 0;
        for e in world.held_out(family, 200, 0) {
            let prompt = template.prompt(&e.question, e.image.is_some());
            let p = tokenizer.encode(prompt.as_str(), true).expect("encodes");
            let a = tokenizer
                .encode(answer_continuation(&e.answer).as_str(), false)
                .expect("encodes");
            longest_prompt = longest_prompt.max(p.len());
            longest_answer = longest_answer.max(a.len());
        }
        // `<image>` is one token before the runtime expands it to 36 patch tokens.
        assert!(
            longest_prompt <= 20,
            "{family:?}: prompt of {longest_prompt}"
        );
        let answer_limit = if family == Family::Caption { 5 } else { 2 };
        assert!(
            longest_answer <= answer_limit,
            "{family:?}: answer of {longest_answer} tokens incl. </s>"
        );
    }
}

#[test]
fn held_out_examples_never_repeat_a_training_question_with_its_render() {
    let world = World::new(1);
    let train: BTreeSet<(String, Option<u64>)> = world
        .sampler(Split::Train, 0, FamilyMix::uniform())
        .take(3000)
        .map(|e| (e.question, e.image.map(|v| v.variant)))
        .collect();
    let train_questions: BTreeSet<&String> = train.iter().map(|(q, _)| q).collect();
    for family in Family::ALL {
        for e in world.held_out(family, 100, 0) {
            assert!(
                !train_questions.contains(&e.question),
                "held-out question seen in training: {}",
                e.question
            );
            if let Some(v) = e.image {
                assert_eq!(RenderSpace::of(v.variant), RenderSpace::HeldOut);
            }
        }
    }
}

#[test]
fn answers_are_a_function_of_the_picture_and_question_kind() {
    // Across many examples, the same (content, ask) never gets two answers, so no question's
    // answer depends on anything the image cannot show.
    let world = World::new(2);
    let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
    for e in world
        .sampler(Split::Train, 5, FamilyMix::uniform())
        .take(5000)
    {
        let Some(visual) = e.image else { continue };
        let key = (
            serde_json::to_string(&visual.content).expect("json"),
            format!("{:?}", e.ask),
        );
        if let Some(previous) = seen.insert(key, e.answer.clone()) {
            assert_eq!(previous, e.answer);
        }
    }
    assert!(seen.len() > 1000);
}

#[test]
fn creature_facts_asked_with_and_without_a_picture_agree() {
    let world = World::new(3);
    let by_picture: Vec<Example> = world.held_out(Family::EntityFact, 200, 0);
    let by_name: Vec<Example> = world.held_out(Family::TextFact, 400, 0);
    let mut facts = BTreeMap::new();
    for e in by_picture.iter().chain(&by_name) {
        if let Some(previous) = facts.insert(e.fact, e.answer.clone()) {
            assert_eq!(previous, e.answer, "{:?}", e.fact);
        }
    }
    // Pictured creatures are creatures.
    for e in &by_picture {
        assert!(matches!(
            e.image.map(|v| v.content),
            Some(Content::Creature { .. })
        ));
    }
}

#[test]
fn a_trainer_can_build_reproducible_batches() {
    let world = World::new(4);
    let batch = |seed| -> Vec<(Option<image::RgbImage>, String, String)> {
        world
            .sampler(Split::Train, seed, FamilyMix::uniform())
            .take(16)
            .map(|e| (e.image.map(|v| v.render()), e.question, e.answer))
            .collect()
    };
    assert_eq!(batch(1), batch(1));
    assert_ne!(batch(1), batch(2));
}

#[test]
fn pools_and_triplets_are_disjoint_from_edit_cases_and_probes() {
    let world = World::new(5);
    let cases = world
        .edit_cases(mkedsl::world::CaseKind::Evqa, 300, 0)
        .expect("cases");
    let edited: BTreeSet<_> = cases.iter().map(|c| c.fact.subject).collect();
    let probes: BTreeSet<_> = cases
        .iter()
        .flat_map(|c| [c.loc_fact.subject, c.m_loc_fact.subject])
        .collect();
    assert!(edited.is_disjoint(&probes));
    let pool = world.preserve_pool(
        PoolSizes {
            text: 256,
            vqa: 128,
            caption: 128,
        },
        0,
    );
    for e in pool.text.iter().chain(&pool.vqa).chain(&pool.caption) {
        assert!(!edited.contains(&e.fact.subject) && !probes.contains(&e.fact.subject));
    }
    for t in world.hallucination_triplets(500, 0) {
        assert!(!edited.contains(&t.fact.subject) && !probes.contains(&t.fact.subject));
    }
}
