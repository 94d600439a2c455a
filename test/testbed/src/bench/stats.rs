//! The pure arithmetic of `make bench`: latency percentiles, throughput, ratios against the limit, and the peak
//! resident memory read from `/proc/<pid>/status`.

use std::time::Duration;

/// What one load level measured against one server.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Completed requests in the measured window (of all rounds, in a merged summary).
    pub requests: usize,
    /// Requests that failed (connection errors, non-2xx answers).
    pub errors: usize,
    pub requests_per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// CPU time the server process spent per request of the measured window (user + system, all threads), when its
    /// pid was known: unlike throughput and latency, it hardly depends on what else the machine is doing.
    pub server_cpu_per_request: Option<Duration>,
    /// Every request's latency, ascending: what the percentiles of several rounds together are taken from.
    pub latencies: Vec<Duration>,
}

impl Summary {
    /// The summary of `latencies` (any order) completed within `window`.
    pub fn of(mut latencies: Vec<Duration>, errors: usize, window: Duration) -> Summary {
        latencies.sort_unstable();
        let seconds = window.as_secs_f64();
        Summary {
            requests: latencies.len(),
            errors,
            requests_per_second: if seconds > 0.0 { latencies.len() as f64 / seconds } else { 0.0 },
            p50: percentile(&latencies, 50.0),
            p99: percentile(&latencies, 99.0),
            max: latencies.last().copied().unwrap_or_default(),
            server_cpu_per_request: None,
            latencies,
        }
    }

    /// Several rounds against one server as one: the percentiles of all their requests together, the mean
    /// throughput and the mean CPU per request (`None` when a round's is unknown). A moment when the machine did
    /// something else weighs by the requests it slowed, as it would in one long round; taking the worst round's
    /// percentile instead would make one such moment the figure.
    pub fn merged(runs: &[Summary]) -> Summary {
        let rounds = runs.len().max(1) as f64;
        let latencies = runs.iter().flat_map(|run| run.latencies.iter().copied()).collect();
        // The throughput is the rounds' mean, not the requests over a window.
        let mut merged = Summary::of(latencies, runs.iter().map(|run| run.errors).sum(), Duration::ZERO);
        merged.requests_per_second = runs.iter().map(|run| run.requests_per_second).sum::<f64>() / rounds;
        merged.server_cpu_per_request = mean(runs.iter().map(|run| run.server_cpu_per_request));
        merged
    }
}

/// The mean of durations that are all known; `None` when one is not, or there are none.
fn mean(durations: impl Iterator<Item = Option<Duration>>) -> Option<Duration> {
    let known = durations.collect::<Option<Vec<_>>>()?;
    let count = u32::try_from(known.len()).ok().filter(|&n| n > 0)?;
    Some(known.iter().sum::<Duration>() / count)
}

/// The nearest-rank percentile `p` (0 < p ≤ 100) of `sorted` (ascending); zero for no samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank: the smallest value with at least p% of the samples at or below it.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Ours next to the limit: throughput as a fraction of the limit's, p99 as a multiple of the limit's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratios {
    pub throughput: f64,
    pub p99: f64,
}

impl Ratios {
    pub fn of(ours: &Summary, limit: &Summary) -> Ratios {
        let throughput =
            if limit.requests_per_second > 0.0 { ours.requests_per_second / limit.requests_per_second } else { 0.0 };
        let limit_p99 = limit.p99.as_secs_f64();
        let p99 = if limit_p99 > 0.0 { ours.p99.as_secs_f64() / limit_p99 } else { f64::INFINITY };
        Ratios { throughput, p99 }
    }
}

/// CPU time process `pid` has used so far (user + system time of all its threads, from `/proc/<pid>/stat`).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    cpu_time_of_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?, clock_ticks_per_second())
}

/// `utime` + `stime` (fields 14 and 15, in clock ticks) of a `/proc/<pid>/stat` line. The command name (field 2) is
/// in parentheses and may itself contain spaces and parentheses, so fields are counted after its last `)`.
pub fn cpu_time_of_stat(stat: &str, ticks_per_second: u64) -> Option<Duration> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11); // field 3 is the first after the name
    let (user, system) = (fields.next()?.parse::<u64>().ok()?, fields.next()?.parse::<u64>().ok()?);
    Some(Duration::from_secs_f64((user + system) as f64 / ticks_per_second.max(1) as f64))
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// A field of `/proc/<pid>/status` given in kB (e.g. `VmHWM`, the peak resident set), in bytes.
pub fn status_field_bytes(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        let kib = value.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
        Some(kib * 1024)
    })
}

/// Peak resident memory of process `pid` (`VmHWM`), in bytes; `None` once the process is gone.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    status_field_bytes(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?, "VmHWM")
}

/// Current resident memory of process `pid` (`VmRSS`), in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    status_field_bytes(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?, "VmRSS")
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A latency in milliseconds with two decimals.
pub fn ms(latency: Duration) -> String {
    format!("{:.2}", latency.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|v| Duration::from_micros(*v)).collect()
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted = micros(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&sorted, 50.0), Duration::from_micros(50));
        assert_eq!(percentile(&sorted, 99.0), Duration::from_micros(99));
        assert_eq!(percentile(&sorted, 100.0), Duration::from_micros(100));
        let few = micros(&[10, 20, 30]);
        assert_eq!(percentile(&few, 50.0), Duration::from_micros(20));
        assert_eq!(percentile(&few, 99.0), Duration::from_micros(30));
        assert_eq!(percentile(&few, 1.0), Duration::from_micros(10));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn a_summary_sorts_and_counts_per_second() {
        let summary = Summary::of(micros(&[400, 100, 300, 200]), 1, Duration::from_secs(2));
        assert_eq!(summary.requests, 4);
        assert_eq!(summary.errors, 1);
        assert!((summary.requests_per_second - 2.0).abs() < 1e-9);
        assert_eq!(summary.p50, Duration::from_micros(200));
        assert_eq!(summary.p99, Duration::from_micros(400));
        assert_eq!(summary.max, Duration::from_micros(400));
    }

    #[test]
    fn rounds_merge_into_the_percentiles_of_all_their_requests() {
        let steady = |cpu| {
            let mut run = Summary::of(micros(&[100; 200]), 0, Duration::from_secs(1));
            run.server_cpu_per_request = Some(Duration::from_micros(cpu));
            run
        };
        // One round had a slow moment: 3 of its 200 requests took 5 ms, more than 1 % of that round.
        let mut hiccup = Summary::of([micros(&[100; 197]), micros(&[5000; 3])].concat(), 2, Duration::from_secs(1));
        hiccup.server_cpu_per_request = Some(Duration::from_micros(30));
        assert_eq!(hiccup.p99, Duration::from_micros(5000));

        let merged = Summary::merged(&[steady(10), hiccup.clone(), steady(20)]);
        assert_eq!((merged.requests, merged.errors), (600, 2));
        assert!((merged.requests_per_second - 200.0).abs() < 1e-9, "{}", merged.requests_per_second);
        assert_eq!(merged.p50, Duration::from_micros(100));
        assert_eq!(merged.p99, Duration::from_micros(100), "3 of 600 requests are within the slowest 1 %");
        assert_eq!(merged.max, Duration::from_micros(5000));
        assert_eq!(merged.server_cpu_per_request, Some(Duration::from_micros(20)));

        let mut unknown = steady(10);
        unknown.server_cpu_per_request = None;
        assert_eq!(Summary::merged(&[steady(10), unknown]).server_cpu_per_request, None);
        assert_eq!(Summary::merged(std::slice::from_ref(&hiccup)), hiccup, "one round is itself");
    }

    #[test]
    fn ratios_put_ours_against_the_limit() {
        let ours = Summary::of(micros(&[300; 10]), 0, Duration::from_secs(1));
        let limit = Summary::of(micros(&[100; 40]), 0, Duration::from_secs(1));
        let ratios = Ratios::of(&ours, &limit);
        assert!((ratios.throughput - 0.25).abs() < 1e-9, "{ratios:?}");
        assert!((ratios.p99 - 3.0).abs() < 1e-9, "{ratios:?}");
    }

    #[test]
    fn memory_fields_of_proc_status_are_read_in_bytes() {
        let status =
            "Name:\tgardener-ext\nVmPeak:\t  123456 kB\nVmHWM:\t   40960 kB\nVmRSS:\t   20480 kB\nThreads:\t5\n";
        assert_eq!(status_field_bytes(status, "VmHWM"), Some(40 * 1024 * 1024));
        assert_eq!(status_field_bytes(status, "VmRSS"), Some(20 * 1024 * 1024));
        assert_eq!(status_field_bytes(status, "VmSwap"), None);
        assert_eq!(status_field_bytes(status, "Threads"), None, "not a kB field");
        assert_eq!(mib(40 * 1024 * 1024), "40.0 MiB");
        assert!(peak_rss_bytes(std::process::id()).is_some_and(|bytes| bytes > 0), "this process has a peak");
    }

    #[test]
    fn cpu_time_is_user_plus_system_time_counted_after_the_command_name() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 7 9 20 0 4 0 12345 0 0";
        assert_eq!(cpu_time_of_stat(stat, 100), Some(Duration::from_secs(3)));
        assert_eq!(cpu_time_of_stat(stat, 1000), Some(Duration::from_millis(300)));
        assert_eq!(cpu_time_of_stat("4242 (cut) S 1 2", 100), None, "too few fields");
        assert_eq!(cpu_time_of_stat("no name here", 100), None);
    }
}
