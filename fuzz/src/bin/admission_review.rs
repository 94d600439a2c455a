//! Fuzz target `admission_review`: see [`cri_resmgr_fuzz::admission_review`].

#[cfg(feature = "afl")]
fn main() {
    afl::fuzz!(|data: &[u8]| cri_resmgr_fuzz::admission_review(data));
}

#[cfg(not(feature = "afl"))]
fn main() -> std::process::ExitCode {
    cri_resmgr_fuzz::replay_command_line(cri_resmgr_fuzz::admission_review)
}
