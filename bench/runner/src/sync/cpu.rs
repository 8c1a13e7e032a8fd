//! CPU time of a process (user + system, from `/proc/<pid>/stat`), and moto's process found by
//! its port: moto serves one request at a time, so its CPU time during a run is how long the
//! run kept it busy.

use std::time::Duration;

/// Linux reports CPU time in USER_HZ ticks, 100 per second on every mainstream architecture.
const TICKS_PER_SECOND: u64 = 100;

/// utime + stime of a `/proc/<pid>/stat` line.
pub fn parse_stat(stat: &str) -> Option<Duration> {
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 3.. of the line are fields[0..]: utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis(
        (utime + stime) * 1000 / TICKS_PER_SECOND,
    ))
}

/// CPU time a live process has used so far.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The moto server listening on `url`'s port (`moto_serial.py … -p PORT`), by its command line.
pub fn moto_pid(url: &str) -> Option<u32> {
    let port = url.rsplit(':').next()?;
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let serves_port = args
            .windows(2)
            .any(|w| w[0] == b"-p" && w[1] == port.as_bytes());
        let is_moto = args
            .iter()
            .any(|a| a.ends_with(b"moto_serial.py") || a.ends_with(b"moto_server"));
        (is_moto && serves_port).then_some(pid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_user_plus_system_ticks() {
        let stat = "4242 (python3 moto) S 1 4242 4242 0 -1 4194304 900 0 0 0 250 130 0 0 20 0 3 0";
        assert_eq!(parse_stat(stat), Some(Duration::from_millis(3_800)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let spin = (0..5_000_000u64).fold(0u64, |a, b| a.wrapping_add(b * b));
        assert!(spin > 0);
        assert!(cpu_time(std::process::id()).is_some());
    }
}
