//! Fuzz target `image_vector`: see [`cri_resmgr_fuzz::image_vector`].

#[cfg(feature = "afl")]
fn main() {
    afl::fuzz!(|data: &[u8]| cri_resmgr_fuzz::image_vector(data));
}

#[cfg(not(feature = "afl"))]
fn main() -> std::process::ExitCode {
    cri_resmgr_fuzz::replay_command_line(cri_resmgr_fuzz::image_vector)
}
