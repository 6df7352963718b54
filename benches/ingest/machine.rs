//! What the processes of a run cost, read from `/proc`: CPU seconds of the service, of PostgreSQL
//! and of this load generator, and peak resident memory.

/// CPU seconds (user + system) used so far by the processes matching `select`, from /proc
/// (which counts in USER_HZ = 100 ticks a second on Linux).
fn cpu_seconds(select: impl Fn(u32, &str) -> bool) -> f64 {
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !select(pid, &stat[open + 1..close]) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        ticks += fields
            .get(11)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        ticks += fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    ticks as f64 / 100.0
}

/// CPU seconds so far of the service, of PostgreSQL (all its processes) and of this load generator.
pub fn cpu_split(service: u32) -> [f64; 3] {
    let me = std::process::id();
    [
        cpu_seconds(|pid, _| pid == service),
        cpu_seconds(|_, comm| comm == "postgres"),
        cpu_seconds(|pid, _| pid == me),
    ]
}

/// Peak and current resident memory of a process, in KiB.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}
