//! What a `kpg tag --output` run is, recorded beside its output (`<output>.kpg-job.json`) so that
//! `--resume` continues only the job that wrote the file: the same models (by content), the same
//! options that change the output, the same input. A mismatch is an error that names each
//! difference; options that only change speed (batch size, cache) may change between runs.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{KpgError, Result};

/// Files up to this size are fingerprinted by content; larger ones (LLM shards) by size and
/// modification time, so that resuming a run with a 14 GB selector does not read 14 GB first.
const HASHED_BYTES: u64 = 256 << 20;

/// The job's identity: named fields, compared one by one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub fields: BTreeMap<String, String>,
}

impl Job {
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.fields.insert(name.to_string(), value.into());
    }

    /// A model directory (or file) by its content: `none` for an absent optional model.
    pub fn set_model(&mut self, name: &str, dir: Option<&Path>) -> Result<()> {
        let value = match dir {
            Some(dir) => fingerprint(dir)?,
            None => "none".to_string(),
        };
        self.set(name, value);
        Ok(())
    }

    /// The input file by its size (stdin: unchecked; the last-id check still applies).
    pub fn set_input(&mut self, input: Option<&Path>) -> Result<()> {
        let value = match input {
            Some(p) if p.as_os_str() != "-" => {
                let len = std::fs::metadata(p).map_err(|e| KpgError::io(p, e))?.len();
                format!("{len} bytes")
            }
            _ => "stdin".to_string(),
        };
        self.set("input", value);
        Ok(())
    }

    /// Where the job of `output` is recorded.
    pub fn path_for(output: &Path) -> PathBuf {
        let mut name = output.file_name().unwrap_or_default().to_os_string();
        name.push(".kpg-job.json");
        output.with_file_name(name)
    }

    pub fn write(&self, output: &Path) -> Result<()> {
        let path = Job::path_for(output);
        let text = serde_json::to_string_pretty(self).expect("plain values");
        std::fs::write(&path, text + "\n").map_err(|e| KpgError::io(&path, e))
    }

    /// Refuses to continue `output` unless it was written by this same job.
    pub fn check_resumes(&self, output: &Path) -> Result<()> {
        let path = Job::path_for(output);
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => KpgError::InvalidArgument(format!(
                "--resume: {} has no job record ({} is missing), so kpg cannot tell whether this \
                 run would continue the same job; start over without --resume",
                output.display(),
                path.display()
            )),
            _ => KpgError::io(&path, e),
        })?;
        let recorded: Job =
            serde_json::from_str(&text).map_err(|e| KpgError::Json { path, source: e })?;
        let differences = self.differences(&recorded);
        if differences.is_empty() {
            return Ok(());
        }
        Err(KpgError::InvalidArgument(format!(
            "--resume: this is not the job that wrote {}: {}; rerun with what it was run with, \
             or start over without --resume",
            output.display(),
            differences.join("; ")
        )))
    }

    /// "generator: was X, now Y" for every field that differs.
    fn differences(&self, recorded: &Job) -> Vec<String> {
        let mut names: Vec<&String> = self.fields.keys().chain(recorded.fields.keys()).collect();
        names.sort();
        names.dedup();
        let missing = "(not recorded)".to_string();
        names
            .into_iter()
            .filter_map(|name| {
                let was = recorded.fields.get(name).unwrap_or(&missing);
                let now = self.fields.get(name).unwrap_or(&missing);
                (was != now).then(|| format!("{name} differs (was {was}, now {now})"))
            })
            .collect()
    }
}

/// A model by its content: every file of the directory (or the file), by name, size and a 64-bit
/// FNV-1a hash of its bytes (size and modification time above [`HASHED_BYTES`]). FNV because the
/// record must compare equal across kpg builds, which std's hashers do not promise.
pub fn fingerprint(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).map_err(|e| KpgError::io(path, e))?;
    let mut files: Vec<PathBuf> = if meta.is_dir() {
        std::fs::read_dir(path)
            .map_err(|e| KpgError::io(path, e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    files.sort();
    let mut hash = Fnv::default();
    let mut total = 0u64;
    for file in &files {
        let meta = std::fs::metadata(file).map_err(|e| KpgError::io(file, e))?;
        total += meta.len();
        hash.write(file.file_name().unwrap_or_default().as_encoded_bytes());
        hash.write(&meta.len().to_le_bytes());
        if meta.len() <= HASHED_BYTES {
            let mut reader = std::fs::File::open(file).map_err(|e| KpgError::io(file, e))?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = reader.read(&mut buf).map_err(|e| KpgError::io(file, e))?;
                if n == 0 {
                    break;
                }
                hash.write(&buf[..n]);
            }
        } else {
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            hash.write(&modified.to_le_bytes());
        }
    }
    Ok(format!(
        "{:016x} ({} files, {total} bytes)",
        hash.0,
        files.len()
    ))
}

/// 64-bit FNV-1a.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_its_reference_values() {
        // From the FNV reference test suite.
        let hash = |s: &[u8]| {
            let mut h = Fnv::default();
            h.write(s);
            h.0
        };
        assert_eq!(hash(b""), 0xcbf29ce484222325);
        assert_eq!(hash(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(hash(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn a_resume_names_what_differs() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.jsonl");
        std::fs::write(dir.path().join("w.bin"), b"weights").unwrap();
        let mut job = Job::default();
        job.set_model("generator", Some(dir.path())).unwrap();
        job.set("threshold", "0.05");
        assert!(job
            .check_resumes(&out)
            .unwrap_err()
            .to_string()
            .contains("no job record"));
        job.write(&out).unwrap();
        job.check_resumes(&out).unwrap();

        let mut other = job.clone();
        other.set("threshold", "0.5");
        std::fs::write(dir.path().join("w.bin"), b"weightz").unwrap();
        other.set_model("generator", Some(dir.path())).unwrap();
        let msg = other.check_resumes(&out).unwrap_err().to_string();
        assert!(msg.contains("generator differs"), "{msg}");
        assert!(
            msg.contains("threshold differs (was 0.05, now 0.5)"),
            "{msg}"
        );
    }
}
