//! The few kernel calls the Linux runtime makes that nix does not wrap: process file
//! descriptors (pidfd_open, pidfd_send_signal, waitid on a pidfd), poll, the child
//! subreaper flag and a thread's niceness; and the helper's fork and its messages with
//! a descriptor attached. Every `unsafe` block of the runtime lives here.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

use nix::libc;

/// Opens a pidfd for `pid`, so later signals and waits cannot hit a recycled pid.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no memory is
    // shared with the kernel.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sends `signal` to the process behind `pidfd`.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: a null siginfo pointer is allowed (the kernel fills in a default) and the
    // fd is borrowed for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How a waited-for process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reaped {
    /// The exit code, 128 + signal number when a signal killed it.
    Code(i32),
    /// Not our child (adopted from an earlier agent process): the code is lost.
    NotOurs,
    /// Still running (only with `nohang`).
    Running,
}

/// Reaps the process behind `pidfd` if it is our child.
pub(crate) fn waitid_pidfd(pidfd: BorrowedFd<'_>, nohang: bool) -> io::Result<Reaped> {
    loop {
        // SAFETY: siginfo_t is plain data; zeroed is a valid value and waitid writes it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | if nohang { libc::WNOHANG } else { 0 };
        // SAFETY: `info` is a valid, writable siginfo_t for the duration of the call.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                flags,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => return Ok(Reaped::NotOurs),
                _ => return Err(e),
            }
        }
        // SAFETY: waitid succeeded, so `info` holds SIGCHLD data (or zeroes with WNOHANG).
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(Reaped::Running);
        }
        let code = match info.si_code {
            libc::CLD_EXITED => status,
            _ => 128 + status,
        };
        return Ok(Reaped::Code(code));
    }
}

/// Waits until one of `fds` is readable (or hung up); returns which ones are.
pub(crate) fn poll_readable(fds: &[BorrowedFd<'_>], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `pfds` is a valid array of pollfd of the length passed.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        return Ok(pfds.iter().map(|p| p.revents != 0).collect());
    }
}

/// Makes this process the reaper of its orphaned descendants: container init processes
/// outlive the helper that created them and are handed to the agent, which then learns
/// their exact exit status.
pub(crate) fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the niceness of the calling thread alone (Linux applies setpriority to a
/// thread id).
pub(crate) fn set_thread_nice(nice: i32) -> io::Result<()> {
    set_nice(nix::unistd::gettid().as_raw(), nice)
}

/// Sets the niceness of thread `tid`.
fn set_nice(tid: i32, nice: i32) -> io::Result<()> {
    // SAFETY: setpriority takes plain integers and touches no memory.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the loopback interface of the calling thread's network namespace up, as every
/// pod expects 127.0.0.1 to work.
pub(crate) fn set_loopback_up() -> io::Result<()> {
    // SAFETY: socket() takes plain integers and returns a new fd or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd was just created and is owned here only.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq that outlives the call; SIOCGIFFLAGS fills ifru_flags.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: reading and writing the flags member of the union SIOCGIFFLAGS filled in.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: as above; SIOCSIFFLAGS reads the ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Installs a seccomp filter (a `struct sock_filter` array as libseccomp exports it) on
/// the calling thread. Needs no_new_privs set or CAP_SYS_ADMIN.
pub(crate) fn load_seccomp_filter(program: &[u8]) -> io::Result<()> {
    const INSN: usize = std::mem::size_of::<libc::sock_filter>();
    if program.is_empty()
        || !program.len().is_multiple_of(INSN)
        || program.len() / INSN > u16::MAX as usize
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a seccomp program of {} bytes", program.len()),
        ));
    }
    let mut insns: Vec<libc::sock_filter> = program
        .chunks_exact(INSN)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let prog = libc::sock_fprog {
        len: insns.len() as u16,
        filter: insns.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `insns`, a valid array of `len` instructions that lives
    // until the call returns; the kernel copies the program.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The mount points at or under `dir` in this process's mount namespace, deepest first
/// (so that each can be unmounted before the one it sits on).
pub(crate) fn mounts_under(dir: &std::path::Path) -> io::Result<Vec<std::path::PathBuf>> {
    let table = std::fs::read("/proc/self/mountinfo")?;
    let mut found: Vec<std::path::PathBuf> = table
        .split(|b| *b == b'\n')
        .filter_map(|line| line.split(|b| *b == b' ').nth(4))
        .map(|field| std::path::PathBuf::from(std::ffi::OsString::from_vec(unescape(field))))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    Ok(found)
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |v, c| v.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

/// A connected pair of unix sequenced-packet sockets, close-on-exec: each message sent
/// is received whole, by one receive.
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io::Error::from)
}

/// Sends `bytes` as one message on `sock`, with `fd` attached when there is one.
pub(crate) fn send_message(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let iov = [io::IoSlice::new(bytes)];
    let fds: Vec<i32> = fd.iter().map(|f| f.as_raw_fd()).collect();
    let rights = [ControlMessage::ScmRights(&fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(n) => {
                return Err(io::Error::other(format!(
                    "sent {n} of a message of {} bytes",
                    bytes.len()
                )));
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one message on `sock` into `buf`: its length (0 once the peer has closed
/// its end) and the descriptor attached to it, if any (close-on-exec). A message that
/// does not fit `buf` is an error.
pub(crate) fn recv_message(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, Option<OwnedFd>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    loop {
        let mut iov = [io::IoSliceMut::new(buf)];
        let msg = match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => m,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut received = Vec::new();
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                received.extend(fds);
            }
        }
        // SAFETY: the kernel just installed these descriptors in this process for this
        // message; nothing else owns them.
        let mut owned: Vec<OwnedFd> = received
            .into_iter()
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
            .collect();
        if msg.flags.contains(MsgFlags::MSG_TRUNC) || msg.flags.contains(MsgFlags::MSG_CTRUNC) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a message longer than expected",
            ));
        }
        let n = msg.bytes;
        // One descriptor per message is the protocol; any more are closed here.
        let fd = (!owned.is_empty()).then(|| owned.swap_remove(0));
        return Ok((n, fd));
    }
}

/// Forks the calling process; returns the child's pid in the parent and `None` in the
/// child.
///
/// Only for a single-threaded process (the container helper): the child of a
/// multi-threaded one could find a lock held by a thread that did not come along.
pub(crate) fn fork_single_threaded() -> io::Result<Option<i32>> {
    // SAFETY: the callers are single-threaded processes (see above), so the child starts
    // with every lock and allocator state consistent.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(Some(child.as_raw())),
        Ok(nix::unistd::ForkResult::Child) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(br"/a\040b\011c\134d"), b"/a b\tc\\d");
        // Not an escape: kept as it is.
        assert_eq!(unescape(br"/a\09x\"), br"/a\09x\");
    }

    #[test]
    fn the_mounts_under_a_directory_are_listed_deepest_first() {
        let dir = tempfile::tempdir().unwrap();
        let outer = dir.path().join("with space");
        let inner = outer.join("inner");
        std::fs::create_dir(&outer).unwrap();
        let tmpfs = |p: &std::path::Path| {
            nix::mount::mount(
                Some("tmpfs"),
                p,
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
            .expect("mounting a tmpfs (the tests run as root)")
        };
        tmpfs(&outer);
        std::fs::create_dir(&inner).unwrap();
        tmpfs(&inner);
        let found = mounts_under(dir.path()).unwrap();
        for p in [&inner, &outer] {
            nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH).unwrap();
        }
        assert_eq!(found, vec![inner.clone(), outer.clone()]);
        assert!(mounts_under(dir.path()).unwrap().is_empty());
        // A sibling whose name merely begins the same is not under it.
        assert!(mounts_under(&dir.path().join("with")).unwrap().is_empty());
    }
}
