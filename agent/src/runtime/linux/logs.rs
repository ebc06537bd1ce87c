//! A container's log files: the running instance writes `current.log` (opened O_APPEND,
//! so it keeps logging while no agent runs), the agent rotates it by size (copy, then
//! truncate: the writer's O_APPEND offset follows the truncation) into `current.log.1`
//! (newest) .. `current.log.<keep>`, and a restart moves the last instance's log to
//! `previous.log` for `logs --previous`.

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};

use crate::runtime::LogPaths;

/// When to rotate and how many rotated pieces to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRotation {
    pub max_bytes: u64,
    pub keep: usize,
}

impl Default for LogRotation {
    fn default() -> Self {
        LogRotation {
            max_bytes: 10 * 1024 * 1024,
            keep: 3,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct LogFiles {
    dir: PathBuf,
}

impl LogFiles {
    pub fn at(dir: &Path) -> LogFiles {
        LogFiles {
            dir: dir.to_path_buf(),
        }
    }

    pub fn current(&self) -> PathBuf {
        self.dir.join("current.log")
    }

    fn rotated(&self, n: usize) -> PathBuf {
        self.dir.join(format!("current.log.{n}"))
    }

    fn previous(&self) -> PathBuf {
        self.dir.join("previous.log")
    }

    pub fn create_dir(&self) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)
    }

    /// The files as [`LogPaths`] reports them (only those that exist).
    pub fn paths(&self, keep: usize) -> LogPaths {
        let previous = self.previous();
        LogPaths {
            current: self.current(),
            rotated: (1..=keep)
                .map(|n| self.rotated(n))
                .filter(|p| p.exists())
                .collect(),
            previous: previous.exists().then_some(previous),
        }
    }

    /// Rotates `current.log` when it has grown past the limit. Returns whether it did.
    pub fn rotate_if_needed(&self, rotation: LogRotation) -> io::Result<bool> {
        let current = self.current();
        let len = match std::fs::metadata(&current) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if len <= rotation.max_bytes {
            return Ok(false);
        }
        if rotation.keep == 0 {
            OpenOptions::new().write(true).open(&current)?.set_len(0)?;
            return Ok(true);
        }
        let _ = std::fs::remove_file(self.rotated(rotation.keep));
        for n in (1..rotation.keep).rev() {
            let from = self.rotated(n);
            if from.exists() {
                std::fs::rename(&from, self.rotated(n + 1))?;
            }
        }
        std::fs::copy(&current, self.rotated(1))?;
        OpenOptions::new().write(true).open(&current)?.set_len(0)?;
        Ok(true)
    }

    /// Before a restart: the ended instance's log becomes `previous.log` and its rotated
    /// pieces go.
    pub fn start_new_instance(&self, keep: usize) -> io::Result<()> {
        let current = self.current();
        if current.exists() {
            std::fs::rename(&current, self.previous())?;
        }
        for n in 1..=keep.max(1) {
            let _ = std::fs::remove_file(self.rotated(n));
        }
        Ok(())
    }
}
