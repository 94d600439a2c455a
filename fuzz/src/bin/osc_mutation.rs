//! Fuzz target `osc_mutation`: see [`cri_resmgr_fuzz::osc_mutation`].

#[cfg(feature = "afl")]
fn main() {
    afl::fuzz!(|data: &[u8]| cri_resmgr_fuzz::osc_mutation(data));
}

#[cfg(not(feature = "afl"))]
fn main() -> std::process::ExitCode {
    cri_resmgr_fuzz::replay_command_line(cri_resmgr_fuzz::osc_mutation)
}
