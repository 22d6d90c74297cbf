//! One writer per output file. Two runs on the same `--output` (two workers a scheduler resumed
//! at once) would interleave and duplicate lines, so every command that writes `--output` holds an
//! exclusive advisory lock (flock) on it for the whole run; a second run fails at once and says
//! which process holds the file. The lock goes with the process, `kill -9` included.

use std::fs::{File, OpenOptions};
use std::path::Path;

use crate::error::{KpgError, Result};

/// Held while the output is written; dropping it (or the process ending) releases the lock.
pub(crate) struct OutputLock {
    _file: File,
}

impl OutputLock {
    /// Locks `path`, creating it empty when missing (its content is not touched: `--resume`
    /// reads it after).
    pub fn acquire(path: &Path) -> Result<OutputLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| KpgError::io(path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(OutputLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(KpgError::InvalidArgument(format!(
                "{}: another run is writing this output ({}); two runs on one --output would \
                 interleave their lines: wait for it to end, or give this run another --output",
                path.display(),
                holder(&file).unwrap_or_else(|| "its process is unknown".into())
            ))),
            Err(std::fs::TryLockError::Error(e)) => Err(KpgError::io(path, e)),
        }
    }
}

/// "process 1234: kpg tag --input ...", from the kernel's lock table, where the OS has one.
#[cfg(target_os = "linux")]
fn holder(file: &File) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let inode = file.metadata().ok()?.ino();
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    // "1: FLOCK  ADVISORY  WRITE 12345 fd:01:123456 0 EOF"
    let pid = locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let lock_inode = fields.get(5)?.rsplit(':').next()?.parse::<u64>().ok()?;
        (fields.get(1) == Some(&"FLOCK") && lock_inode == inode)
            .then(|| fields.get(4)?.parse::<u32>().ok())
            .flatten()
    })?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let command: Vec<String> = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(if command.is_empty() {
        format!("process {pid}")
    } else {
        format!("process {pid}: {}", command.join(" "))
    })
}

#[cfg(not(target_os = "linux"))]
fn holder(_file: &File) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.jsonl");
        std::fs::write(&out, "kept\n").unwrap();
        let first = OutputLock::acquire(&out).unwrap();
        let msg = OutputLock::acquire(&out).err().unwrap().to_string();
        assert!(msg.contains("another run is writing this output"), "{msg}");
        #[cfg(target_os = "linux")]
        assert!(
            msg.contains(&format!("process {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        OutputLock::acquire(&out).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "kept\n");
    }
}
