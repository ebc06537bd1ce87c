//! Serving a container's log: the whole log or its last N lines across the rotated files
//! and the current one, the previous instance's file, and following the current file
//! (reopened when it is rotated away or truncated) until the client closes the session
//! or the instance ends and everything it wrote has been sent.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use skiff_api::protocol::stream::{CHUNK_SIZE, Fd};

use super::out::{Out, OutError};
use crate::runtime::{ContainerRuntime, RunState};

/// How often a followed file is looked at again.
const POLL: Duration = Duration::from_millis(200);
/// How often the runtime is asked whether the followed instance still runs.
const INSTANCE_EVERY: u32 = 5;
/// Blocks read backwards when looking for line starts.
const BLOCK: u64 = 64 * 1024;

/// Why a log could not be served; the text goes to the client as is.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("container {container:?} has no log on this node (not started yet, or removed)")]
    NoLog { container: String },
    #[error("previous terminated container {container:?} in pod {pod:?} not found")]
    NoPrevious { container: String, pod: String },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What to serve.
#[derive(Debug, Clone)]
pub(crate) struct LogRequest {
    /// The pod's name, for messages.
    pub pod: String,
    pub uid: String,
    pub container: String,
    pub follow: bool,
    pub tail_lines: Option<u64>,
    pub previous: bool,
    pub limit_bytes: Option<u64>,
}

/// Where the last `want` lines of `r` (of length `len`) start, and how many lines were
/// found there (fewer than `want` only when the whole file is taken). A final line
/// without a newline counts as a line.
fn last_lines<R: Read + Seek>(r: &mut R, len: u64, want: u64) -> std::io::Result<(u64, u64)> {
    if want == 0 || len == 0 {
        return Ok((len, 0));
    }
    let mut end = len;
    let mut newlines = 0u64;
    let mut first = true;
    let mut buf = vec![0u8; BLOCK as usize];
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let n = (end - start) as usize;
        r.seek(SeekFrom::Start(start))?;
        r.read_exact(&mut buf[..n])?;
        for i in (0..n).rev() {
            if buf[i] != b'\n' {
                continue;
            }
            // The newline ending the file ends the last line; it starts none.
            if first && start + i as u64 == len - 1 {
                continue;
            }
            newlines += 1;
            if newlines == want {
                return Ok((start + i as u64 + 1, want));
            }
        }
        first = false;
        end = start;
    }
    Ok((0, newlines + 1))
}

/// Where to start reading each file to get the last `want` lines of the log made of
/// `files` (newest first: the current file, then the rotated ones). Returns one offset
/// per file, oldest first, files not needed left out (as `None` offsets are).
pub fn tail_start(files: &[PathBuf], want: Option<u64>) -> Result<Vec<(PathBuf, u64)>, LogError> {
    let read_err = |path: &Path, source| LogError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut starts = Vec::new();
    let mut left = want;
    for path in files {
        if left == Some(0) {
            break;
        }
        let mut f = match File::open(path) {
            Ok(f) => f,
            // A rotated piece may be removed while we look.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(read_err(path, e)),
        };
        let len = f.metadata().map_err(|e| read_err(path, e))?.len();
        match left {
            None => starts.push((path.clone(), 0)),
            Some(n) => {
                let (start, found) = last_lines(&mut f, len, n).map_err(|e| read_err(path, e))?;
                starts.push((path.clone(), start));
                left = Some(n.saturating_sub(found));
            }
        }
    }
    starts.reverse();
    Ok(starts)
}

/// Sends the rest of `f` from where it stands; false when `budget` ran out first.
async fn drain(
    f: &mut File,
    path: &Path,
    out: &mut Out,
    budget: &mut Option<u64>,
) -> Result<bool, Stop> {
    let mut buf = vec![0u8; CHUNK_SIZE];
    loop {
        if *budget == Some(0) {
            return Ok(false);
        }
        let n = f.read(&mut buf).map_err(|source| {
            Stop::Log(LogError::Read {
                path: path.to_path_buf(),
                source,
            })
        })?;
        if n == 0 {
            return Ok(true);
        }
        let n = match budget {
            Some(b) => {
                let n = n.min(*b as usize);
                *b -= n as u64;
                n
            }
            None => n,
        };
        out.data(Fd::Stdout, &buf[..n]).await.map_err(Stop::Out)?;
    }
}

#[derive(Debug)]
enum Stop {
    Log(LogError),
    Out(OutError),
}

/// Serves one log session and ends it.
pub(crate) async fn serve(rt: Arc<dyn ContainerRuntime>, mut out: Out, req: LogRequest) {
    let result = run(rt, &mut out, &req).await;
    match result {
        Ok(()) | Err(Stop::Out(OutError::Closed)) => out.end(None, None).await,
        Err(Stop::Log(e)) => out.end(None, Some(e.to_string())).await,
        Err(Stop::Out(e)) => out.end(None, Some(e.to_string())).await,
    }
}

/// The id of the container's running instance, `None` when it is not running.
fn running_instance(rt: &dyn ContainerRuntime, uid: &str, container: &str) -> Option<String> {
    let pods = rt.list().ok()?;
    let c = pods
        .iter()
        .find(|p| p.uid == uid)?
        .containers
        .iter()
        .find(|c| c.name == container)?;
    matches!(c.state, RunState::Running { .. }).then(|| c.container_id.clone())
}

async fn run(rt: Arc<dyn ContainerRuntime>, out: &mut Out, req: &LogRequest) -> Result<(), Stop> {
    let paths = rt.log_paths(&req.uid, &req.container).ok_or_else(|| {
        Stop::Log(LogError::NoLog {
            container: req.container.clone(),
        })
    })?;
    let instance = running_instance(rt.as_ref(), &req.uid, &req.container);
    let files: Vec<PathBuf> = if req.previous {
        let prev = paths.previous.clone().ok_or_else(|| {
            Stop::Log(LogError::NoPrevious {
                container: req.container.clone(),
                pod: req.pod.clone(),
            })
        })?;
        vec![prev]
    } else {
        std::iter::once(paths.current.clone())
            .chain(paths.rotated.iter().cloned())
            .collect()
    };
    let starts = tail_start(&files, req.tail_lines).map_err(Stop::Log)?;
    out.accept().await.map_err(Stop::Out)?;
    let mut budget = req.limit_bytes;
    let followed = files[0].clone();
    let mut current: Option<File> = None;
    for (path, start) in starts {
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(Stop::Log(LogError::Read { path, source })),
        };
        f.seek(SeekFrom::Start(start)).map_err(|source| {
            Stop::Log(LogError::Read {
                path: path.clone(),
                source,
            })
        })?;
        if !drain(&mut f, &path, out, &mut budget).await? {
            return Ok(());
        }
        if path == followed {
            current = Some(f);
        }
    }
    if !req.follow || req.previous || instance.is_none() {
        return Ok(());
    }
    let mut f = match current {
        Some(f) => f,
        // Created after we looked: follow it from its start.
        None => match File::open(&followed) {
            Ok(f) => f,
            Err(source) => {
                return Err(Stop::Log(LogError::Read {
                    path: followed,
                    source,
                }));
            }
        },
    };
    let mut polls = 0u32;
    loop {
        tokio::select! {
            () = out.closed() => return Ok(()),
            () = tokio::time::sleep(POLL) => {}
        }
        polls += 1;
        let ended = polls.is_multiple_of(INSTANCE_EVERY)
            && running_instance(rt.as_ref(), &req.uid, &req.container) != instance;
        if !drain(&mut f, &followed, out, &mut budget).await? {
            return Ok(());
        }
        if ended {
            // Everything the instance wrote to the handle we hold is out.
            return Ok(());
        }
        let pos = f.stream_position().unwrap_or(0);
        let held = f.metadata().map(|m| m.ino()).ok();
        match std::fs::metadata(&followed) {
            // Rotated away (renamed, a new file in its place): the old one is drained.
            Ok(m) if Some(m.ino()) != held => {
                if let Ok(next) = File::open(&followed) {
                    f = next;
                }
            }
            // Truncated in place: start again from its beginning.
            Ok(m) if m.len() < pos => {
                let _ = f.seek(SeekFrom::Start(0));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        File::create(&p)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        p
    }

    fn read_from(starts: &[(PathBuf, u64)]) -> String {
        let mut s = String::new();
        for (p, off) in starts {
            let text = std::fs::read_to_string(p).unwrap();
            s.push_str(&text[*off as usize..]);
        }
        s
    }

    #[test]
    fn tail_counts_lines_across_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let current = write(d, "c.log", "e\nf\n");
        let r1 = write(d, "c.log.1", "c\nd\n");
        let r2 = write(d, "c.log.2", "a\nb\n");
        let files = vec![current, r1, r2];
        assert_eq!(
            read_from(&tail_start(&files, None).unwrap()),
            "a\nb\nc\nd\ne\nf\n"
        );
        assert_eq!(read_from(&tail_start(&files, Some(1)).unwrap()), "f\n");
        assert_eq!(read_from(&tail_start(&files, Some(2)).unwrap()), "e\nf\n");
        assert_eq!(
            read_from(&tail_start(&files, Some(3)).unwrap()),
            "d\ne\nf\n"
        );
        assert_eq!(
            read_from(&tail_start(&files, Some(5)).unwrap()),
            "b\nc\nd\ne\nf\n"
        );
        assert_eq!(
            read_from(&tail_start(&files, Some(99)).unwrap()),
            "a\nb\nc\nd\ne\nf\n"
        );
        assert_eq!(read_from(&tail_start(&files, Some(0)).unwrap()), "");
        // A missing rotated piece is skipped.
        let gone = vec![files[0].clone(), d.join("c.log.9")];
        assert_eq!(read_from(&tail_start(&gone, Some(5)).unwrap()), "e\nf\n");
    }

    #[test]
    fn tail_handles_unterminated_and_long_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "x.log", "one\ntwo\nthree");
        assert_eq!(
            read_from(&tail_start(std::slice::from_ref(&p), Some(1)).unwrap()),
            "three"
        );
        assert_eq!(read_from(&tail_start(&[p], Some(2)).unwrap()), "two\nthree");
        let empty = write(dir.path(), "e.log", "");
        assert_eq!(read_from(&tail_start(&[empty], Some(3)).unwrap()), "");
        // Lines spanning the backwards read blocks.
        let mut big = String::new();
        for i in 0..50_000 {
            big.push_str(&format!("line {i}\n"));
        }
        let p = write(dir.path(), "big.log", &big);
        let got = read_from(&tail_start(&[p], Some(20_000)).unwrap());
        assert_eq!(got.lines().count(), 20_000);
        assert!(got.starts_with("line 30000\n"));
        assert!(got.ends_with("line 49999\n"));
    }
}
