//! Who uses an embedded PostgreSQL. Every process that runs on it (`serve`, `migrate`, `psql`, a
//! second `serve`) holds a shared `flock` on `<data folder>.users` for as long as it does. Starting
//! and stopping take turns on `<data folder>.lock`, so two processes never start the server twice
//! or stop it under each other. A process leaving stops the server only when it can lock
//! `.users` exclusively, that is when no other live process uses it. A killed process's locks go
//! with it, so a server left running by a killed run is adopted by the next one, which stops it in
//! turn when it is the last to leave.

use std::{
    fs::{File, TryLockError},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;

/// How long starting or stopping waits for another process that is starting or stopping the
/// same server.
const WAIT: Duration = Duration::from_secs(180);

/// A lock file beside the data folder, `<folder name>.<suffix>`.
fn open(data_dir: &Path, suffix: &str) -> anyhow::Result<(File, PathBuf)> {
    let mut name = data_dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    let path = data_dir.with_file_name(name);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| {
            format!(
                "opening the embedded PostgreSQL's lock file {}",
                path.display()
            )
        })?;
    Ok((file, path))
}

/// Takes the exclusive lock of `file`, waiting up to [`WAIT`].
async fn exclusive(file: &File, path: &Path) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(TryLockError::WouldBlock) => anyhow::bail!(
                "another process has held {} for {} s while starting or stopping the embedded \
                 PostgreSQL; is one stuck?",
                path.display(),
                WAIT.as_secs()
            ),
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
    }
}

/// The exclusive right to start or stop the server (`<folder>.lock`), held while doing so.
#[derive(Debug)]
pub(super) struct Turn {
    file: File,
}

impl Turn {
    /// Waits for this process's turn.
    pub async fn take(data_dir: &Path) -> anyhow::Result<Self> {
        let (file, path) = open(data_dir, "lock")?;
        exclusive(&file, &path).await?;
        Ok(Self { file })
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.file.unlock().ok();
    }
}

/// This process's use of the server (`<folder>.users`, shared) for as long as it runs on it.
#[derive(Debug)]
pub(super) struct Users {
    file: File,
    data_dir: PathBuf,
}

impl Users {
    /// Joins the users of the server; call during a [`Turn`].
    pub fn join(data_dir: &Path, _turn: &Turn) -> anyhow::Result<Self> {
        let (file, path) = open(data_dir, "users")?;
        file.lock_shared()
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(Self {
            file,
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// Takes the turn to leave and says whether this process is the last user (then it may stop
    /// the server while it holds the returned turn).
    pub async fn leave(&self) -> anyhow::Result<(Turn, bool)> {
        let turn = Turn::take(&self.data_dir).await?;
        let last = self.file.try_lock().is_ok();
        Ok((turn, last))
    }
}
