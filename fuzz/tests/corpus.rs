//! Every committed seed input runs through its target without a finding, in plain mode (no fuzz engine needed), so
//! that the targets keep compiling and their invariants keep holding on known inputs.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    let files = cri_resmgr_fuzz::inputs(&directory).expect("the target's corpus directory");
    assert!(!files.is_empty(), "no seed inputs for {target}");
    for file in files {
        let data = std::fs::read(&file).expect("seed input");
        println!("{}", file.display());
        run(&data);
    }
}

#[test]
fn provider_config_seeds() {
    replay("provider_config", cri_resmgr_fuzz::provider_config);
}

#[test]
fn osc_mutation_seeds() {
    replay("osc_mutation", cri_resmgr_fuzz::osc_mutation);
}

#[test]
fn admission_review_seeds() {
    replay("admission_review", cri_resmgr_fuzz::admission_review);
}

/// gardenlet's write of an OSC it wrote before, with another timestamp, versions and times, gets the kept answer
/// (which the target checks against a fresh one): the kept-answer check is not vacuous.
#[test]
fn gardenlets_write_of_an_osc_it_wrote_before_gets_the_kept_answer() {
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/admission_review/osc-written-again.json");
    let data = std::fs::read(seed).expect("seed input");
    assert!(cri_resmgr_fuzz::kept_osc_answers(&data) >= 1);
}

#[test]
fn image_vector_seeds() {
    replay("image_vector", cri_resmgr_fuzz::image_vector);
}
