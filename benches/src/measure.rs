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
