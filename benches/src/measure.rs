//! Process measurements from `/proc` (Linux).

/// A field of `/proc/{pid}/status` in kB (e.g. `VmRSS`), or a count (e.g. `Threads`).
pub fn status_field(pid: Option<u32>, field: &str) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Resident memory in kB.
pub fn rss_kb(pid: Option<u32>) -> u64 {
    status_field(pid, "VmRSS").unwrap_or(0)
}

/// Thread count.
pub fn threads(pid: Option<u32>) -> u64 {
    status_field(pid, "Threads").unwrap_or(0)
}

/// Raises the open-file limit to the hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

/// CPU time (user + system) a process has used so far, in seconds; from `/proc/{pid}/stat`.
/// With other work on the machine, CPU time per operation is steadier than operations per
/// second: it counts only this process's cycles.
pub fn cpu_seconds(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let Ok(text) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let Some(rest) = text.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command name.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // /proc reports in USER_HZ, which Linux fixes at 100 for user space.
    (ticks(11) + ticks(12)) / 100.0
}
