//! Crash-safe persistence in `--state-dir`: every file is written to a temporary name, fsynced,
//! renamed over its final name, and the directory fsynced, so a reader (or a restarted server)
//! sees either the old file or the new one, never a torn one.
//!
//! Layout of the state directory:
//!
//! ```text
//! state.json                      the commit point: version, round, selection, history
//! clients.log                     one line per join: id, SHA-256 of the token, issue time
//! models/v000042.safetensors      every global model ever committed
//! optimizer/v000042.safetensors   FedAdam/FedYogi moments belonging to that version
//! updates/v000042.log             accepted updates of the open round (base version 42),
//!                                 group-committed ([`crate::update_log`])
//! quarantine/v000042-<ms>.log     a round whose aggregate was not finite, set aside
//! ```
//!
//! Nothing is rewritten in proportion to the number of clients: a join appends one line, an
//! update one record. (Servers before the log kept clients in `state.json` and each update in
//! `updates/v000042/c000007.safetensors`; both are still read.)
//!
//! A round commits by writing the new model (and optimizer state), then `state.json`. A crash
//! before `state.json` leaves the old version current and its accepted updates on disk, so the
//! restarted server re-runs the same round. Updates of a committed round are deleted afterwards.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct StoreError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// `r` with `path` attached to its error.
pub(crate) fn io<T>(path: &Path, r: std::io::Result<T>) -> Result<T, StoreError> {
    r.map_err(|source| StoreError {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to `path` atomically (temp file + fsync + rename + directory fsync).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = io(&tmp, File::create(&tmp))?;
        io(&tmp, f.write_all(bytes))?;
        io(&tmp, f.sync_all())?;
    }
    io(path, fs::rename(&tmp, path))?;
    sync_dir(dir)
}

/// Makes a folder's entries (a created or renamed file) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    io(dir, File::open(dir).and_then(|d| d.sync_all()))
}

/// The files of one state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating if needed) a state directory and removes half-written temporary files.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        for sub in ["models", "optimizer", "updates", "quarantine"] {
            let p = dir.join(sub);
            io(&p, fs::create_dir_all(&p))?;
        }
        let store = Self { dir };
        store.remove_temp_files(&store.dir.clone())?;
        Ok(store)
    }

    fn remove_temp_files(&self, dir: &Path) -> Result<(), StoreError> {
        for entry in io(dir, fs::read_dir(dir))? {
            let path = io(dir, entry)?.path();
            if path.is_dir() {
                self.remove_temp_files(&path)?;
            } else if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"))
            {
                io(&path, fs::remove_file(&path))?;
            }
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    pub fn model_path(&self, version: u64) -> PathBuf {
        self.dir
            .join("models")
            .join(format!("v{version:06}.safetensors"))
    }

    pub fn optimizer_path(&self, version: u64) -> PathBuf {
        self.dir
            .join("optimizer")
            .join(format!("v{version:06}.safetensors"))
    }

    fn updates_dir(&self, version: u64) -> PathBuf {
        self.dir.join("updates").join(format!("v{version:06}"))
    }

    /// The group-committed log of the round on `base_version`.
    pub fn update_log_path(&self, base_version: u64) -> PathBuf {
        self.dir
            .join("updates")
            .join(format!("v{base_version:06}.log"))
    }

    fn clients_path(&self) -> PathBuf {
        self.dir.join("clients.log")
    }

    /// Records a join durably: one appended line, one `fdatasync`.
    pub fn append_client(
        &self,
        id: u64,
        token_sha256: &str,
        issued_ms: u64,
    ) -> Result<(), StoreError> {
        let path = self.clients_path();
        let existed = path.exists();
        let mut f = io(
            &path,
            fs::OpenOptions::new().append(true).create(true).open(&path),
        )?;
        io(
            &path,
            f.write_all(format!("{id} {token_sha256} {issued_ms}\n").as_bytes()),
        )?;
        io(&path, f.sync_data())?;
        if !existed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Every joined client as `(id, token SHA-256, issued ms)`. A torn last line (a crash during
    /// a join that was never answered) is skipped.
    pub fn read_clients(&self) -> Result<Vec<(u64, String, u64)>, StoreError> {
        let path = self.clients_path();
        let Some(bytes) = self.read(&path)? else {
            return Ok(Vec::new());
        };
        let text = String::from_utf8_lossy(&bytes);
        Ok(text
            .split_terminator('\n')
            .filter_map(|line| {
                let mut parts = line.split(' ');
                let id = parts.next()?.parse().ok()?;
                let hash = parts.next().filter(|h| h.len() == 64)?.to_string();
                let issued = parts.next()?.parse().ok()?;
                parts.next().is_none().then_some((id, hash, issued))
            })
            .collect())
    }

    /// Moves the round's updates aside (its aggregate was not finite), keeping them for a look.
    pub fn quarantine_updates(&self, base_version: u64, now_ms: u64) -> Result<(), StoreError> {
        let log = self.update_log_path(base_version);
        if log.exists() {
            let to = self
                .dir
                .join("quarantine")
                .join(format!("v{base_version:06}-{now_ms}.log"));
            io(&log, fs::rename(&log, &to))?;
        }
        let dir = self.updates_dir(base_version);
        if dir.exists() {
            let to = self
                .dir
                .join("quarantine")
                .join(format!("v{base_version:06}-{now_ms}"));
            io(&dir, fs::rename(&dir, &to))?;
        }
        sync_dir(&self.dir.join("updates"))?;
        sync_dir(&self.dir.join("quarantine"))
    }

    pub fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
        match fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => io(path, Err(e)),
        }
    }

    pub fn write_model(&self, version: u64, bytes: &[u8]) -> Result<(), StoreError> {
        write_atomic(&self.model_path(version), bytes)
    }

    pub fn write_optimizer(&self, version: u64, bytes: &[u8]) -> Result<(), StoreError> {
        write_atomic(&self.optimizer_path(version), bytes)
    }

    /// Calls `visit(client id, body)` for every accepted update of the round on `base_version`,
    /// one body in memory at a time: the round's log, then the one-file-per-update folder of
    /// older servers (in client order).
    pub fn visit_updates(
        &self,
        base_version: u64,
        mut visit: impl FnMut(u64, &[u8]),
    ) -> Result<(), StoreError> {
        crate::update_log::visit_log(&self.update_log_path(base_version), &mut visit)?;
        let dir = self.updates_dir(base_version);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return io(&dir, Err(e)),
        };
        let mut files = Vec::new();
        for entry in entries {
            let path = io(&dir, entry)?.path();
            let id = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix('c'))
                .and_then(|n| n.strip_suffix(".safetensors"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(id) = id {
                files.push((id, path));
            }
        }
        files.sort();
        for (id, path) in files {
            visit(id, &io(&path, fs::read(&path))?);
        }
        Ok(())
    }

    /// Deletes the updates of every round before `version` (they are folded into the model).
    pub fn prune_updates(&self, version: u64) -> Result<(), StoreError> {
        let root = self.dir.join("updates");
        for entry in io(&root, fs::read_dir(&root))? {
            let path = io(&root, entry)?.path();
            let v = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix('v'))
                .map(|n| n.strip_suffix(".log").unwrap_or(n))
                .and_then(|n| n.parse::<u64>().ok());
            if v.is_some_and(|v| v < version) {
                if path.is_dir() {
                    io(&path, fs::remove_dir_all(&path))?;
                } else {
                    io(&path, fs::remove_file(&path))?;
                }
            }
        }
        Ok(())
    }
}
