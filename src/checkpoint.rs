//! The files of a resumable run, written so that a run killed at any moment (even `kill -9`) can
//! be resumed by running the same command again: every file is written beside its final name and
//! renamed into place, and a checkpoint is a whole directory renamed at once, so a reader sees the
//! old version or the new one, never half of one. Both trainings use it (`kpg train generator`,
//! `kpg train selector`); each says what goes in its checkpoint.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{KpgError, Result};

/// Writes `bytes` to `path` through a temporary file in the same directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let mut f = fs::File::create(&tmp).map_err(|e| KpgError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| KpgError::io(&tmp, e))?;
    f.sync_all().map_err(|e| KpgError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| KpgError::io(path, e))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// The checkpoint directory of a run.
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

/// Replaces `out/checkpoint` by a directory that `fill` writes. The old checkpoint stays in
/// `checkpoint.old` until the new one is in place.
pub fn save_checkpoint(out: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = checkpoint_dir(out);
    let tmp = out.join("checkpoint.tmp");
    let old = out.join("checkpoint.old");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| KpgError::io(&tmp, e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| KpgError::io(&tmp, e))?;
    fill(&tmp)?;
    if dir.exists() {
        if old.exists() {
            fs::remove_dir_all(&old).map_err(|e| KpgError::io(&old, e))?;
        }
        fs::rename(&dir, &old).map_err(|e| KpgError::io(&dir, e))?;
    }
    fs::rename(&tmp, &dir).map_err(|e| KpgError::io(&dir, e))?;
    if old.exists() {
        fs::remove_dir_all(&old).map_err(|e| KpgError::io(&old, e))?;
    }
    Ok(())
}

/// The checkpoint to resume from, if any: `checkpoint`, or `checkpoint.old` when a kill came
/// between the two renames of [`save_checkpoint`].
pub fn find_checkpoint(out: &Path) -> Option<PathBuf> {
    [checkpoint_dir(out), out.join("checkpoint.old")]
        .into_iter()
        .find(|d| d.join("state.json").is_file())
}

/// The first option that differs between two fingerprints, for the refusal message.
pub fn fingerprint_difference(
    saved: &serde_json::Value,
    now: &serde_json::Value,
) -> Option<String> {
    let (Some(a), Some(b)) = (saved.as_object(), now.as_object()) else {
        return (saved != now).then(|| "options".to_string());
    };
    a.keys()
        .chain(b.keys())
        .find(|k| a.get(*k) != b.get(*k))
        .map(|k| k.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_name_the_option_that_changed() {
        let a = serde_json::json!({"seed": 1, "assign": "ot"});
        let b = serde_json::json!({"seed": 1, "assign": "hungarian"});
        assert_eq!(fingerprint_difference(&a, &b).as_deref(), Some("assign"));
        assert_eq!(fingerprint_difference(&a, &a), None);
    }
}
