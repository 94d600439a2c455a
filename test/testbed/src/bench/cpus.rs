//! Which CPUs the servers and the load generator run on.
//!
//! The apiserver calls a webhook from other CPUs, usually from other machines. On one machine, a load generator that
//! shares the servers' CPUs preempts them: a server thread taken off its CPU while connections are queued on it holds
//! their answers back for a scheduler time slice, which is what a server costing a little more per request than
//! another meets more often (see `docs/performance.md`, "The tail at 64 connections"). Split, the servers (ours and
//! the limit alike) run on one part of the CPUs and the load generator on the other.

use std::io;

/// A set of CPUs, as the kernel's affinity calls take it.
#[derive(Clone, Copy)]
pub struct CpuSet(libc::cpu_set_t);

impl CpuSet {
    fn of(cpus: &[usize]) -> CpuSet {
        // SAFETY: cpu_set_t is a plain bit array, for which all zeros is the empty set; CPU_SET only writes within it
        // (CPU numbers come from CPU_ISSET over the same set size).
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for &cpu in cpus {
                libc::CPU_SET(cpu, &mut set);
            }
            CpuSet(set)
        }
    }

    /// The CPUs this thread may run on.
    pub fn allowed() -> io::Result<Vec<usize>> {
        // SAFETY: sched_getaffinity writes at most the size given into the set, which lives for the call.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok((0..libc::CPU_SETSIZE as usize).filter(|&cpu| libc::CPU_ISSET(cpu, &set)).collect())
        }
    }

    /// Confines the thread (or process) `tid` (0: the calling thread) to this set.
    fn apply_to(&self, tid: libc::pid_t) -> io::Result<()> {
        // SAFETY: sched_setaffinity reads the set, which lives for the call; it is async-signal-safe, so it may run
        // between fork and exec.
        let result = unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &self.0) };
        if result == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }

    /// Confines a child process, from its `pre_exec` hook, to this set; what it starts inherits it.
    pub fn apply_in_child(&self) -> io::Result<()> {
        self.apply_to(0)
    }

    /// Confines every thread of this process to this set; threads they start later inherit it from their creator.
    /// A thread not yet confined may start another while the threads are gone through, so they are gone through
    /// again until no new one appears.
    pub fn apply_to_this_process(&self) -> io::Result<()> {
        let mut confined = std::collections::BTreeSet::new();
        loop {
            let mut new = 0;
            for task in std::fs::read_dir("/proc/self/task")? {
                let Some(tid) = task?.file_name().to_str().and_then(|name| name.parse::<libc::pid_t>().ok()) else {
                    continue;
                };
                if !confined.insert(tid) {
                    continue;
                }
                new += 1;
                match self.apply_to(tid) {
                    // A thread that ended since the directory was read.
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                    other => other?,
                }
            }
            if new == 0 {
                return Ok(());
            }
        }
    }
}

/// The servers' CPUs and the load generator's, out of `allowed`: the servers get the upper half (rounded down), the
/// load generator the rest. `None` with fewer than two CPUs: nothing to split.
pub fn split(allowed: &[usize]) -> Option<(Vec<usize>, Vec<usize>)> {
    if allowed.len() < 2 {
        return None;
    }
    let (load, servers) = allowed.split_at(allowed.len() - allowed.len() / 2);
    Some((servers.to_vec(), load.to_vec()))
}

/// Where the servers and the load generator of the webhook bench run (see the module's documentation).
pub struct Placement {
    /// The servers' CPUs.
    pub servers: Vec<usize>,
    /// The load generator's CPUs.
    pub load: Vec<usize>,
    /// This process's CPUs before the split, given back when the placement is dropped.
    before: Vec<usize>,
}

impl Placement {
    /// Moves this process (the load generator) onto its part of the CPUs; `None` when there is nothing to split.
    pub fn split_this_process() -> io::Result<Option<Placement>> {
        let before = CpuSet::allowed()?;
        let Some((servers, load)) = split(&before) else { return Ok(None) };
        CpuSet::of(&load).apply_to_this_process()?;
        Ok(Some(Placement { servers, load, before }))
    }

    /// The set a server process is confined to.
    pub fn server_set(&self) -> CpuSet {
        CpuSet::of(&self.servers)
    }
}

impl Drop for Placement {
    /// Gives this process all the CPUs it had before, however the webhook bench ended.
    fn drop(&mut self) {
        if let Err(e) = CpuSet::of(&self.before).apply_to_this_process() {
            tracing::warn!(error = %e, "cannot give the bench its CPUs back");
        }
    }
}

/// CPU numbers as a list for people: `0-3,6`.
pub fn describe(cpus: &[usize]) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for &cpu in cpus {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == cpu => *end = cpu,
            _ => ranges.push((cpu, cpu)),
        }
    }
    let parts: Vec<String> = ranges
        .iter()
        .map(|&(start, end)| if start == end { start.to_string() } else { format!("{start}-{end}") })
        .collect();
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_get_the_upper_half_and_the_load_generator_the_rest() {
        assert_eq!(split(&[0]), None);
        assert_eq!(split(&[0, 1]), Some((vec![1], vec![0])));
        assert_eq!(split(&[0, 1, 2]), Some((vec![2], vec![0, 1])));
        assert_eq!(split(&[0, 2, 4, 6]), Some((vec![4, 6], vec![0, 2])));
    }

    #[test]
    fn cpu_lists_read_as_ranges() {
        assert_eq!(describe(&[0]), "0");
        assert_eq!(describe(&[0, 1, 2, 3, 6]), "0-3,6");
        assert_eq!(describe(&[1, 3]), "1,3");
    }

    #[test]
    fn a_child_confined_to_one_cpu_sees_only_it() {
        let allowed = CpuSet::allowed().expect("affinity");
        let last = *allowed.last().expect("at least one CPU");
        let set = CpuSet::of(&[last]);
        let mut command = std::process::Command::new("sh");
        command.args(["-c", "grep Cpus_allowed_list /proc/self/status"]);
        // SAFETY: the hook only makes the async-signal-safe sched_setaffinity call.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || set.apply_in_child());
        }
        let output = command.output().expect("sh runs");
        let text = String::from_utf8_lossy(&output.stdout);
        assert_eq!(text.split(':').nth(1).map(str::trim), Some(last.to_string().as_str()), "{text}");
    }
}
