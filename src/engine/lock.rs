//! One run at a time per runbook and environment: a lock file held for the whole run.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Held while a run is going; dropping it releases the lock.
pub struct RunLock {
    _file: File,
    pub path: PathBuf,
}

/// Where locks live: `RUNBOOK_LOCK_DIR`, else a folder in the system's temporary directory, so
/// two operators on one machine see each other's runs whatever their working folders.
pub fn lock_dir() -> PathBuf {
    std::env::var_os("RUNBOOK_LOCK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("runbook-locks"))
}

/// Takes the lock for `runbook` in `environment`, or says who holds it.
pub fn acquire(runbook: &Path, environment: &str, holder: &str) -> Result<RunLock, String> {
    let dir = lock_dir();
    std::fs::create_dir_all(&dir)
        .map_err(|err| format!("cannot create lock folder {}: {err}", dir.display()))?;
    let canonical = std::fs::canonicalize(runbook).unwrap_or_else(|_| runbook.to_owned());
    let digest = hex::encode(Sha256::digest(canonical.to_string_lossy().as_bytes()));
    let stem = runbook
        .file_stem()
        .map_or("runbook".into(), |s| s.to_string_lossy().into_owned());
    let path = dir.join(format!("{stem}.{environment}.{}.lock", &digest[..12]));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|err| format!("cannot open lock file {}: {err}", path.display()))?;
    if file.try_lock().is_err() {
        let mut who = String::new();
        let _ = file.read_to_string(&mut who);
        let who = who.trim();
        let who = if who.is_empty() {
            "another process"
        } else {
            who
        };
        return Err(format!(
            "{} is already running in `{environment}` ({who}); wait for it to finish",
            runbook.display()
        ));
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{holder}");
    let _ = file.flush();
    Ok(RunLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_run_of_the_same_runbook_and_environment_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: tests in this module are the only readers of RUNBOOK_LOCK_DIR.
        unsafe { std::env::set_var("RUNBOOK_LOCK_DIR", dir.path()) };
        let runbook = dir.path().join("rollback.rhai");
        std::fs::write(&runbook, "").unwrap();
        let first = acquire(&runbook, "prod", "pid 1 by alice").unwrap();
        let refused = acquire(&runbook, "prod", "pid 2 by bob").err().unwrap();
        assert!(
            refused.contains("already running in `prod` (pid 1 by alice)"),
            "{refused}"
        );
        assert!(acquire(&runbook, "staging", "pid 3").is_ok());
        drop(first);
        assert!(acquire(&runbook, "prod", "pid 4").is_ok());
    }
}
