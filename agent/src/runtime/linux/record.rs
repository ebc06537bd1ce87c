//! The runtime's records: one file per pod under `<state>/records/`, written atomically
//! and durably before the runtime acts on it, so a restarted agent finds every container
//! it started and adopts it.
//!
//! A record file holds two slots of equal size; each slot is a header (magic, sequence
//! number, length, digest) and the pod's JSON. The first write makes the file whole
//! (temp file with both slots allocated, fsync, rename, fsync of the directory); every
//! later write overwrites the slot that does not hold the newest version and ends with
//! one fdatasync. The blocks are already allocated, so that flush commits no metadata,
//! and a write torn by a crash leaves a slot whose digest fails: the reader takes the
//! valid slot with the highest sequence number, the old version or the new one, never a
//! mix. A record that outgrows its slots is rewritten whole, as the first time. Plain
//! JSON files (written by earlier agents) are read as they are.
//!
//! A pod's first record is written to the page cache as `<uid>.new` before its
//! containers start and is made durable on a thread of its own while they start
//! (fsync, rename to `<uid>.json`, fsync of the directory); the runtime waits for that
//! before it reports the pod started or writes the record again. An agent killed in
//! between finds the `.new` file intact in the page cache and adopts the pod from it;
//! one torn by a power loss (which no container outlives) was never reported, and is
//! dropped.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::runtime::{ObservedPod, RuntimeError, records};

/// Marks a slot (and the slotted format).
const MAGIC: &[u8; 8] = b"SKIFFRC1";
/// magic, sequence number (u64), payload length (u64), digest (16 bytes).
const HEADER: usize = 8 + 8 + 8 + 16;
/// Slots are whole pages, so overwriting one never touches the other's page.
const PAGE: usize = 4096;

/// What the runtime remembers of a pod.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PodRecord {
    pub observed: ObservedPod,
    pub host_network: bool,
    pub grace_secs: u64,
    /// tmpfs mounts of emptyDir volumes with medium Memory.
    #[serde(default)]
    pub tmpfs: Vec<PathBuf>,
    /// By container name (init and app containers).
    pub containers: BTreeMap<String, ContainerRecord>,
}

/// What the runtime remembers of one container beyond what it reports.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContainerRecord {
    /// libcontainer's id.
    pub id: String,
    pub cgroups_path: String,
    /// The image's layers, bottom first, for mounting a fresh rootfs on restart.
    pub layers: Vec<PathBuf>,
    /// The init process while it runs (or ran, until its exit is recorded).
    pub pid: Option<i32>,
    /// The pid's start time (clock ticks after boot), telling it from a recycled pid.
    pub pid_start: Option<u64>,
}

pub(crate) fn record_dir(state: &Path) -> PathBuf {
    state.join("records")
}

pub(crate) use crate::runtime::records::safe_name;

pub(crate) fn path_for(state: &Path, uid: &str) -> PathBuf {
    record_dir(state).join(format!("{}.json", safe_name(uid)))
}

/// Where a pod's first record waits until it is durable.
fn new_path_for(state: &Path, uid: &str) -> PathBuf {
    path_for(state, uid).with_extension(NEW)
}

const NEW: &str = "new";

/// Writes a record and makes it durable before returning.
pub(crate) fn write(state: &Path, rec: &PodRecord) -> Result<(), RuntimeError> {
    write_slot(state, rec, true)
}

/// Writes a record for facts that mean nothing after a power loss, such as which
/// process runs a container (no process survives one): an update of an existing record
/// goes to the page cache without a flush, so a restarted agent reads it (the page
/// cache outlives the agent), while after a power loss the slot is either intact or
/// fails its digest and the reader takes the last flushed version. A record's first
/// write is always made durable.
pub(crate) fn write_cached(state: &Path, rec: &PodRecord) -> Result<(), RuntimeError> {
    write_slot(state, rec, false)
}

fn write_slot(state: &Path, rec: &PodRecord, flush: bool) -> Result<(), RuntimeError> {
    let path = path_for(state, &rec.observed.uid);
    let json = serde_json::to_vec(rec).expect("record serializes");
    let io = |source| RuntimeError::Io {
        path: path.clone(),
        source,
    };
    match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(mut f) => {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).map_err(io)?;
            if let Some(newest) = newest_slot(&bytes) {
                let slot_size = bytes.len() / 2;
                if HEADER + json.len() <= slot_size {
                    let target = 1 - newest.index;
                    let buf = encode_slot(newest.seq + 1, &json);
                    f.write_all_at(&buf, (target * slot_size) as u64)
                        .map_err(io)?;
                    return if flush {
                        f.sync_data().map_err(io)
                    } else {
                        Ok(())
                    };
                }
                return write_whole(&record_dir(state), &path, newest.seq + 1, &json);
            }
            write_whole(&record_dir(state), &path, 1, &json)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_whole(&record_dir(state), &path, 1, &json)
        }
        Err(e) => Err(io(e)),
    }
}

/// A slot's header and payload.
fn encode_slot(seq: u64, json: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER + json.len());
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&(json.len() as u64).to_le_bytes());
    buf.extend_from_slice(&digest(seq, json));
    buf.extend_from_slice(json);
    buf
}

fn digest(seq: u64, json: &[u8]) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(seq.to_le_bytes());
    h.update((json.len() as u64).to_le_bytes());
    h.update(json);
    let full = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// The newest valid slot of a slotted record file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Newest {
    index: usize,
    seq: u64,
}

/// The payload of slot `index` when its header and digest are intact.
fn slot_payload(bytes: &[u8], index: usize) -> Option<(u64, &[u8])> {
    let size = bytes.len() / 2;
    let slot = bytes.get(index * size..(index + 1) * size)?;
    if slot.len() < HEADER || &slot[..8] != MAGIC {
        return None;
    }
    let seq = u64::from_le_bytes(slot[8..16].try_into().ok()?);
    let len = usize::try_from(u64::from_le_bytes(slot[16..24].try_into().ok()?)).ok()?;
    let json = slot.get(HEADER..HEADER.checked_add(len)?)?;
    (slot[24..40] == digest(seq, json)).then_some((seq, json))
}

fn newest_slot(bytes: &[u8]) -> Option<Newest> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(2) {
        return None;
    }
    (0..2)
        .filter_map(|index| slot_payload(bytes, index).map(|(seq, _)| Newest { index, seq }))
        .max_by_key(|n| n.seq)
}

/// A whole record file: two slots, the first holding `json`, the second zeros.
fn whole_file(seq: u64, json: &[u8]) -> Vec<u8> {
    // Room for the record to grow to twice its size before a whole rewrite is needed.
    let slot_size = (HEADER + json.len()) * 2;
    let slot_size = slot_size.div_ceil(PAGE) * PAGE;
    let mut buf = vec![0u8; slot_size * 2];
    let slot = encode_slot(seq, json);
    buf[..slot.len()].copy_from_slice(&slot);
    buf
}

/// Writes a fresh record file: both slots allocated (zeros in the second), made durable
/// under a temporary name and renamed into place.
fn write_whole(dir: &Path, path: &Path, seq: u64, json: &[u8]) -> Result<(), RuntimeError> {
    crate::runtime::records::write_atomic(dir, path, &whole_file(seq, json))
}

/// A pod's first record on its way to the disk (see the module's notes). Dropping it
/// waits for the flush, so no rename happens after its pod was given up.
#[derive(Debug)]
pub(crate) struct Flushing {
    thread: Option<std::thread::JoinHandle<Result<(), RuntimeError>>>,
}

impl Flushing {
    /// Waits until the record is durable under its name.
    pub fn wait(mut self) -> Result<(), RuntimeError> {
        self.join()
    }

    fn join(&mut self) -> Result<(), RuntimeError> {
        match self.thread.take().map(|t| t.join()) {
            None => Ok(()),
            Some(Ok(res)) => res,
            Some(Err(_)) => Err(RuntimeError::Io {
                path: PathBuf::from("records"),
                source: std::io::Error::other("the thread flushing a record panicked"),
            }),
        }
    }
}

impl Drop for Flushing {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

/// Writes a pod's first record to the page cache, where a restarted agent finds it, and
/// makes it durable on a thread of its own. `spare`, an empty file made ahead on the
/// same filesystem, becomes the record's file when given (no inode is allocated).
pub(crate) fn write_first(
    state: &Path,
    rec: &PodRecord,
    spare: Option<PathBuf>,
) -> Result<Flushing, RuntimeError> {
    let path = path_for(state, &rec.observed.uid);
    let new = new_path_for(state, &rec.observed.uid);
    let json = serde_json::to_vec(rec).expect("record serializes");
    let io = |source| RuntimeError::Io {
        path: new.clone(),
        source,
    };
    if let Some(spare) = spare
        && std::fs::rename(&spare, &new).is_err()
    {
        let _ = std::fs::remove_file(&spare);
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&new)
        .map_err(io)?;
    std::io::Write::write_all(&mut f, &whole_file(1, &json)).map_err(io)?;
    let dir = record_dir(state);
    let thread = std::thread::Builder::new()
        .name("skiff-rt-flush".into())
        .stack_size(64 * 1024)
        .spawn(move || promote(&f, &new, &path, &dir))
        .map_err(|e| RuntimeError::Io {
            path: record_dir(state),
            source: e,
        })?;
    Ok(Flushing {
        thread: Some(thread),
    })
}

/// Makes a `.new` record durable under its final name.
fn promote(f: &std::fs::File, new: &Path, path: &Path, dir: &Path) -> Result<(), RuntimeError> {
    let io = |p: &Path, source| RuntimeError::Io {
        path: p.to_path_buf(),
        source,
    };
    f.sync_all().map_err(|e| io(new, e))?;
    std::fs::rename(new, path).map_err(|e| io(new, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

/// The JSON of a record file: the newest valid slot, or the whole file when it is
/// plain JSON.
fn decode(bytes: &[u8]) -> Option<&[u8]> {
    match newest_slot(bytes) {
        Some(n) => slot_payload(bytes, n.index).map(|(_, json)| json),
        None => bytes.starts_with(b"{").then_some(bytes),
    }
}

pub(crate) fn remove(state: &Path, uid: &str) -> Result<(), RuntimeError> {
    records::remove(&new_path_for(state, uid))?;
    records::remove(&path_for(state, uid))
}

/// The files a pod's record may be in (for taking them away whole).
pub(crate) fn files_of(state: &Path, uid: &str) -> [PathBuf; 2] {
    [new_path_for(state, uid), path_for(state, uid)]
}

/// Settles what a crash left among the records: a first record still waiting to be
/// made durable is promoted when intact (an agent was killed while its containers
/// started, and they may run) and dropped when torn (only a power loss tears one, and
/// no container outlives that); a temp file of an unfinished whole write is dropped.
fn settle_leftovers(dir: &Path) -> Result<(), RuntimeError> {
    let io = |p: &Path, source| RuntimeError::Io {
        path: p.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let path = entry.map_err(|e| io(dir, e))?.path();
        match path.extension().and_then(|e| e.to_str()) {
            Some(NEW) => {
                let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
                let intact = newest_slot(&bytes).is_some();
                if intact {
                    let f = std::fs::File::open(&path).map_err(|e| io(&path, e))?;
                    promote(&f, &path, &path.with_extension("json"), dir)?;
                } else {
                    tracing::warn!(record = %path.display(), "dropping a torn first record (its pod never started)");
                    records::remove(&path)?;
                }
            }
            Some("tmp") => records::remove(&path)?,
            _ => {}
        }
    }
    Ok(())
}

pub(crate) fn read_all(state: &Path) -> Result<Vec<PodRecord>, RuntimeError> {
    let dir = record_dir(state);
    let io = |source| RuntimeError::Io {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    settle_leftovers(&dir)?;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|source| RuntimeError::Io {
            path: path.clone(),
            source,
        })?;
        let json = decode(&bytes).ok_or_else(|| RuntimeError::Corrupt {
            path: path.clone(),
            message: "no intact slot".to_string(),
        })?;
        let rec: PodRecord = serde_json::from_slice(json).map_err(|e| RuntimeError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        out.push(rec);
    }
    Ok(out)
}

/// Field 22 of /proc/<pid>/stat: when the process started, in clock ticks after boot.
pub(crate) fn pid_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Exit, ExitReason, RunState};

    fn rec(uid: &str, restarts: i32) -> PodRecord {
        let now = chrono::Utc::now();
        let containers = vec![crate::runtime::ObservedContainer {
            name: "c".into(),
            image: "busybox".into(),
            container_id: format!("{uid}-c"),
            restart_count: restarts,
            state: RunState::Exited(Exit {
                exit_code: 0,
                started_at: now,
                finished_at: now,
                reason: ExitReason::Plain,
            }),
            last_exit: None,
        }];
        PodRecord {
            observed: ObservedPod {
                uid: uid.into(),
                namespace: "default".into(),
                name: "p".into(),
                revision: 1,
                spec_hash: 1,
                started_at: now,
                pod_ip: None,
                init_containers: Vec::new(),
                containers,
            },
            host_network: false,
            grace_secs: 30,
            tmpfs: Vec::new(),
            containers: BTreeMap::new(),
        }
    }

    fn restarts(state: &Path) -> Vec<i32> {
        read_all(state)
            .unwrap()
            .iter()
            .map(|r| r.observed.containers[0].restart_count)
            .collect()
    }

    #[test]
    fn updates_alternate_slots_and_the_newest_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(record_dir(dir.path())).unwrap();
        write(dir.path(), &rec("u", 0)).unwrap();
        let len = std::fs::metadata(path_for(dir.path(), "u")).unwrap().len();
        for n in 1..5 {
            write(dir.path(), &rec("u", n)).unwrap();
            assert_eq!(restarts(dir.path()), vec![n]);
        }
        // Updates that fit are made in place: the file keeps its size.
        assert_eq!(
            std::fs::metadata(path_for(dir.path(), "u")).unwrap().len(),
            len
        );
        assert!(!path_for(dir.path(), "u").with_extension("tmp").exists());
    }

    #[test]
    fn cached_updates_are_read_back_and_a_flushed_one_follows_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(record_dir(dir.path())).unwrap();
        // A first write is always whole and flushed, even when asked to be cached.
        write_cached(dir.path(), &rec("u", 0)).unwrap();
        let len = std::fs::metadata(path_for(dir.path(), "u")).unwrap().len();
        write_cached(dir.path(), &rec("u", 1)).unwrap();
        assert_eq!(restarts(dir.path()), vec![1]);
        write(dir.path(), &rec("u", 2)).unwrap();
        write_cached(dir.path(), &rec("u", 3)).unwrap();
        assert_eq!(restarts(dir.path()), vec![3]);
        assert_eq!(
            std::fs::metadata(path_for(dir.path(), "u")).unwrap().len(),
            len
        );
    }

    #[test]
    fn a_torn_slot_leaves_the_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(record_dir(dir.path())).unwrap();
        write(dir.path(), &rec("u", 1)).unwrap();
        write(dir.path(), &rec("u", 2)).unwrap();
        let path = path_for(dir.path(), "u");
        let mut bytes = std::fs::read(&path).unwrap();
        let newest = newest_slot(&bytes).unwrap();
        assert_eq!(newest.seq, 2);
        // A crash half-way through writing the newest slot's payload.
        let at = newest.index * bytes.len() / 2 + HEADER + 10;
        bytes[at] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(restarts(dir.path()), vec![1]);
        // The next write goes over the torn slot and is read back.
        write(dir.path(), &rec("u", 3)).unwrap();
        assert_eq!(restarts(dir.path()), vec![3]);
    }

    #[test]
    fn a_record_that_outgrows_its_slots_is_rewritten_whole() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(record_dir(dir.path())).unwrap();
        write(dir.path(), &rec("u", 0)).unwrap();
        let small = std::fs::metadata(path_for(dir.path(), "u")).unwrap().len();
        let mut big = rec("u", 7);
        big.tmpfs = (0..400)
            .map(|i| PathBuf::from(format!("/a/rather/long/volume/path/{i}")))
            .collect();
        write(dir.path(), &big).unwrap();
        let len = std::fs::metadata(path_for(dir.path(), "u")).unwrap().len();
        assert!(len > small, "{len} <= {small}");
        let back = read_all(dir.path()).unwrap();
        assert_eq!(back[0].tmpfs.len(), 400);
        assert_eq!(restarts(dir.path()), vec![7]);
    }

    #[test]
    fn plain_json_records_of_earlier_agents_are_read_and_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(record_dir(dir.path())).unwrap();
        let path = path_for(dir.path(), "u");
        std::fs::write(&path, serde_json::to_vec(&rec("u", 4)).unwrap()).unwrap();
        assert_eq!(restarts(dir.path()), vec![4]);
        write(dir.path(), &rec("u", 5)).unwrap();
        assert!(std::fs::read(&path).unwrap().starts_with(MAGIC));
        assert_eq!(restarts(dir.path()), vec![5]);
    }

    #[test]
    fn a_first_record_is_durable_under_its_name_once_its_flush_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(record_dir(dir.path())).unwrap();
        write_first(dir.path(), &rec("u", 2), None)
            .unwrap()
            .wait()
            .unwrap();
        assert!(path_for(dir.path(), "u").exists());
        assert!(!new_path_for(dir.path(), "u").exists());
        assert_eq!(restarts(dir.path()), vec![2]);
        // Later writes go to its slots in place.
        let len = std::fs::metadata(path_for(dir.path(), "u")).unwrap().len();
        write(dir.path(), &rec("u", 3)).unwrap();
        assert_eq!(restarts(dir.path()), vec![3]);
        assert_eq!(
            std::fs::metadata(path_for(dir.path(), "u")).unwrap().len(),
            len
        );
    }

    #[test]
    fn a_spare_empty_file_becomes_the_first_records_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(record_dir(dir.path())).unwrap();
        let spare = dir.path().join("spare-record");
        std::fs::write(&spare, b"").unwrap();
        let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&spare).unwrap());
        write_first(dir.path(), &rec("u", 6), Some(spare.clone()))
            .unwrap()
            .wait()
            .unwrap();
        assert!(!spare.exists());
        let meta = std::fs::metadata(path_for(dir.path(), "u")).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::ino(&meta), ino);
        assert_eq!(restarts(dir.path()), vec![6]);
        // A spare that went missing is no loss: the file is made.
        write_first(dir.path(), &rec("v", 1), Some(dir.path().join("gone")))
            .unwrap()
            .wait()
            .unwrap();
        assert!(path_for(dir.path(), "v").exists());
    }

    #[test]
    fn an_intact_first_record_left_unflushed_is_adopted_and_a_torn_one_dropped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(record_dir(dir.path())).unwrap();
        // An agent killed while its flush thread ran: the page cache holds the file.
        let json = serde_json::to_vec(&rec("kept", 5)).unwrap();
        std::fs::write(new_path_for(dir.path(), "kept"), whole_file(1, &json)).unwrap();
        // A power loss in the same window: the name made it to the disk, the data not.
        std::fs::write(new_path_for(dir.path(), "torn"), vec![0u8; 8192]).unwrap();
        // An older record of the same pod, whose removal the power loss undid.
        std::fs::write(
            path_for(dir.path(), "kept"),
            whole_file(1, &serde_json::to_vec(&rec("kept", 1)).unwrap()),
        )
        .unwrap();
        // A whole write cut short before its rename.
        std::fs::write(path_for(dir.path(), "x").with_extension("tmp"), b"{").unwrap();
        assert_eq!(restarts(dir.path()), vec![5]);
        let mut left: Vec<String> = std::fs::read_dir(record_dir(dir.path()))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, vec!["kept.json".to_string()]);
    }

    #[test]
    fn removing_a_record_removes_an_unflushed_first_one_too() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(record_dir(dir.path())).unwrap();
        std::fs::write(new_path_for(dir.path(), "u"), b"x").unwrap();
        write(dir.path(), &rec("u", 0)).unwrap();
        remove(dir.path(), "u").unwrap();
        assert!(!new_path_for(dir.path(), "u").exists());
        assert!(!path_for(dir.path(), "u").exists());
        remove(dir.path(), "u").unwrap();
    }

    #[test]
    fn garbage_is_reported_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(record_dir(dir.path())).unwrap();
        std::fs::write(path_for(dir.path(), "u"), b"\0\0garbage\0\0").unwrap();
        assert!(matches!(
            read_all(dir.path()),
            Err(RuntimeError::Corrupt { .. })
        ));
    }
}
