//! Crash-safe persistence in `--state-dir`: every file is written to a temporary name, fsynced,
//! renamed over its final name, and the directory fsynced, so a reader (or a restarted server)
//! sees either the old file or the new one, never a torn one.
//!
//! Layout of the state directory:
//!
//! ```text
//! state.json                      the commit point: version, round, clients, history
//! models/v000042.safetensors      every global model ever committed
//! optimizer/v000042.safetensors   FedAdam/FedYogi moments belonging to that version
//! updates/v000042/c000007.safetensors   accepted updates of the open round (base version 42)
//! ```
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

fn io<T>(path: &Path, r: std::io::Result<T>) -> Result<T, StoreError> {
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

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
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
        for sub in ["models", "optimizer", "updates"] {
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

    /// Persists an accepted update of the round on `base_version`.
    pub fn save_update(
        &self,
        base_version: u64,
        client: u64,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let dir = self.updates_dir(base_version);
        if !dir.exists() {
            io(&dir, fs::create_dir_all(&dir))?;
            sync_dir(&self.dir.join("updates"))?;
        }
        write_atomic(&dir.join(format!("c{client:06}.safetensors")), bytes)
    }

    /// The accepted updates of the round on `base_version`, as `(client id, bytes)`.
    pub fn load_updates(&self, base_version: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let dir = self.updates_dir(base_version);
        let mut out = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return io(&dir, Err(e)),
        };
        for entry in entries {
            let path = io(&dir, entry)?.path();
            let id = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix('c'))
                .and_then(|n| n.strip_suffix(".safetensors"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(id) = id {
                out.push((id, io(&path, fs::read(&path))?));
            }
        }
        out.sort_by_key(|(id, _)| *id);
        Ok(out)
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
                .and_then(|n| n.parse::<u64>().ok());
            if v.is_some_and(|v| v < version) {
                io(&path, fs::remove_dir_all(&path))?;
            }
        }
        Ok(())
    }
}
