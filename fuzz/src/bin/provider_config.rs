//! Fuzz target `provider_config`: see [`cri_resmgr_fuzz::provider_config`].

#[cfg(feature = "afl")]
fn main() {
    afl::fuzz!(|data: &[u8]| cri_resmgr_fuzz::provider_config(data));
}

#[cfg(not(feature = "afl"))]
fn main() -> std::process::ExitCode {
    cri_resmgr_fuzz::replay_command_line(cri_resmgr_fuzz::provider_config)
}
