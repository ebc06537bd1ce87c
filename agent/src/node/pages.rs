//! Giving back code pages. Most of an idle agent's resident memory is its own
//! executable: the code and read-only data that start-up ran through once (argument
//! parsing, the database's schema checks, joining, the first sync), plus whatever the
//! kernel mapped around each of those faults (it maps up to 64 KiB of cached pages
//! around every page touched). Once the agent is up, and again whenever it has been quiet
//! after a burst of work, it asks the kernel to reclaim those pages (`madvise(MADV_PAGEOUT)`
//! on its own read-only file mappings): pages no other process maps are freed, and the
//! agent faults back only what it runs from then on.
//! Pages another process shares (a container helper re-executing this binary) stay.

use std::io;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, info};

/// Bumped by [`note_activity`]; watched by [`give_back_when_quiet`].
static ACTIVITY: OnceLock<watch::Sender<u64>> = OnceLock::new();

/// Marks a burst of work (desired state applied, pods started or stopped): once the
/// agent has been quiet for a while after it, the pages that work faulted in are given
/// back too. A no-op unless [`give_back_when_quiet`] runs.
pub fn note_activity() {
    if let Some(tx) = ACTIVITY.get() {
        tx.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Gives back the executable's pages each time the agent has been quiet for `quiet`
/// after start-up or after a burst of work; sleeps while nothing happens.
pub async fn give_back_when_quiet(quiet: Duration) {
    let (tx, mut rx) = watch::channel(0u64);
    if ACTIVITY.set(tx).is_err() {
        return;
    }
    loop {
        // Wait until nothing has happened for `quiet`.
        loop {
            match tokio::time::timeout(quiet, rx.changed()).await {
                Err(_) => break,
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return,
            }
        }
        match tokio::task::spawn_blocking(give_back_code_pages).await {
            Ok(Ok(bytes)) => debug!(mapped_kib = bytes / 1024, "idle: code pages given back"),
            Ok(Err(e)) => {
                info!(error = %e, "cannot give back code pages; keeping them");
                return;
            }
            Err(_) => return,
        }
        // Sleep until the next burst of work.
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// One mapping of the executable to give back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub len: usize,
}

/// The read-only (never writable) mappings of `exe` in a `/proc/<pid>/maps` text: the
/// code, the read-only data and the headers. Writable mappings hold relocated or
/// modified data that reclaim would have to write to swap; they are left alone.
pub fn read_only_spans(maps: &str, exe: &Path) -> Vec<Span> {
    let exe = exe.to_string_lossy();
    maps.lines()
        .filter_map(|line| {
            let mut f = line.split_ascii_whitespace();
            let range = f.next()?;
            let perms = f.next()?;
            let path = f.nth(3)?;
            if path != exe || perms.as_bytes().get(1) != Some(&b'-') {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            let start = usize::from_str_radix(a, 16).ok()?;
            let end = usize::from_str_radix(b, 16).ok()?;
            (end > start).then_some(Span {
                start,
                len: end - start,
            })
        })
        .collect()
}

/// Gives back this process's code pages (see the module); returns how many bytes of
/// mappings were advised.
pub fn give_back_code_pages() -> io::Result<usize> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut advised = 0;
    for span in read_only_spans(&maps, &exe) {
        // SAFETY: the span is a whole mapping of this process, taken from its own maps
        // and never unmapped (it is the running executable). MADV_PAGEOUT only drops
        // clean, file-backed pages, which fault back from the file on their next use;
        // it never changes what the memory holds.
        let r = unsafe {
            nix::libc::madvise(
                span.start as *mut nix::libc::c_void,
                span.len,
                nix::libc::MADV_PAGEOUT,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        advised += span.len;
    }
    Ok(advised)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
5600a0000000-5600a0300000 r--p 00000000 fe:00 123 /usr/bin/skiff-agent
5600a0300000-5600a0db0000 r-xp 00300000 fe:00 123 /usr/bin/skiff-agent
5600a0db0000-5600a0e1a000 r--p 00db0000 fe:00 123 /usr/bin/skiff-agent
5600a0e1a000-5600a0e22000 rw-p 00e1a000 fe:00 123 /usr/bin/skiff-agent
5600a1000000-5600a1100000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000100000 r-xp 00000000 fe:00 99 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000200000-7f0000201000 r--p 00000000 fe:00 123 /usr/bin/skiff-agent-old
";

    #[test]
    fn only_the_executables_read_only_mappings_are_taken() {
        let spans = read_only_spans(MAPS, Path::new("/usr/bin/skiff-agent"));
        assert_eq!(
            spans,
            vec![
                Span {
                    start: 0x5600a0000000,
                    len: 0x300000
                },
                Span {
                    start: 0x5600a0300000,
                    len: 0xab0000
                },
                Span {
                    start: 0x5600a0db0000,
                    len: 0x6a000
                },
            ]
        );
    }

    /// The tests that give pages back measure the same mappings: one at a time.
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// Faults in every page of the executable's read-only mappings, so that what is
    /// resident before a test's trim does not depend on what ran before it.
    fn fault_in_all() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let mut sum = 0u8;
        for span in read_only_spans(&maps, &exe) {
            for off in (0..span.len).step_by(4096) {
                // SAFETY: the address lies inside a readable mapping of this process's
                // own executable, which stays mapped while it runs.
                sum = sum.wrapping_add(unsafe {
                    std::ptr::read_volatile((span.start + off) as *const u8)
                });
            }
        }
        std::hint::black_box(sum);
    }

    /// Resident KiB of this process's mappings of its own executable.
    fn exe_rss_kib() -> u64 {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let exe = exe.to_string_lossy().into_owned();
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut ours = false;
        let mut kib = 0;
        for line in smaps.lines() {
            if let Some(rss) = line.strip_prefix("Rss:") {
                if ours {
                    kib += rss
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .unwrap();
                }
            } else if line.contains('-') && line.split_ascii_whitespace().count() >= 5 {
                ours = line.ends_with(exe.as_str());
            }
        }
        kib
    }

    #[test]
    fn the_running_test_binary_gives_back_its_pages_and_keeps_working() {
        let _one = SERIAL.blocking_lock();
        fault_in_all();
        let before = exe_rss_kib();
        let advised = give_back_code_pages().unwrap();
        let after = exe_rss_kib();
        assert!(advised > 0);
        assert!(
            after < before,
            "resident KiB of the executable: {before} before, {after} after"
        );
        // The code still runs: what it needs faults back in from the file.
        assert_eq!(read_only_spans(MAPS, Path::new("/nowhere")), vec![]);
    }

    #[tokio::test]
    async fn pages_are_given_back_once_the_agent_is_quiet() {
        let _one = SERIAL.lock().await;
        fault_in_all();
        let before = exe_rss_kib();
        let task = tokio::spawn(give_back_when_quiet(Duration::from_millis(100)));
        // Activity keeps it waiting; quiet lets it run.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(30)).await;
            note_activity();
        }
        // Quiet now: the pages go within a few hundred milliseconds.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut after = exe_rss_kib();
        while after >= before && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            after = exe_rss_kib();
        }
        assert!(
            after < before,
            "resident KiB of the executable: {before} before, {after} after"
        );
        assert!(!task.is_finished(), "it waits for the next burst of work");
        task.abort();
    }
}
