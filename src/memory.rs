//! Sizes checked against the machine before they are allocated: an absurd value in a config or
//! an option (a position table of 10^12 rows, a KV cache of 10^11 tokens) is an error that names
//! it, not an allocation failure that aborts the process.

use crate::error::{KpgError, Result};

/// The memory this process may use, in bytes, where the OS says: the machine's physical memory
/// (`/proc/meminfo`), or a container's limit (cgroup v2 `memory.max`) when lower.
pub fn physical_bytes() -> Option<u128> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    let limit = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<u128>().ok());
    Some(limit.map_or(kib * 1024, |l| l.min(kib * 1024)))
}

/// `bytes` as "12.3 GiB".
pub fn gib(bytes: u128) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u128 << 30) as f64)
}

/// Refuses an allocation of `bytes` larger than this machine's memory; `what` says what it is
/// and which value asked for it ("the KV cache (--cache-tokens 100000000000)"). Where the OS does
/// not say, anything past 2^48 bytes is refused.
pub fn check_fits(bytes: u128, what: impl FnOnce() -> String) -> Result<()> {
    let total = physical_bytes().unwrap_or(1 << 48);
    if bytes > total {
        return Err(KpgError::InvalidArgument(format!(
            "{} needs {}, more than this machine's memory ({})",
            what(),
            gib(bytes),
            gib(total)
        )));
    }
    Ok(())
}

/// `a * b * ...` without overflow, for sizes.
pub fn product(factors: &[usize]) -> u128 {
    factors
        .iter()
        .fold(1u128, |acc, &f| acc.saturating_mul(f as u128))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_sizes_are_named_errors() {
        let msg = check_fits(product(&[1 << 40, 1 << 20, 4]), || {
            "the table (rows = 2^40)".into()
        })
        .unwrap_err()
        .to_string();
        assert!(msg.starts_with("the table (rows = 2^40) needs"), "{msg}");
        check_fits(1 << 20, || unreachable!()).unwrap();
        assert_eq!(product(&[usize::MAX, usize::MAX, 4]), u128::MAX);
    }
}
