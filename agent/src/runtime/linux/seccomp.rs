//! The default seccomp profile of unprivileged containers, kept as data: an allow-list
//! modelled on Docker's default profile (everything a normal program needs) with every
//! other system call failing with EPERM. Names the running kernel or architecture does
//! not know are skipped by libcontainer, so one list serves x86_64, aarch64 and armv7.
//!
//! Left out on purpose, as Docker does for containers without CAP_SYS_ADMIN and friends:
//! mount, umount2, unshare, setns, pivot_root, bpf, perf_event_open, keyctl, add_key,
//! request_key, ptrace, process_vm_*, kexec_*, init_module, delete_module, reboot,
//! swapon/off, acct, settimeofday, clock_settime, quotactl, open_by_handle_at,
//! userfaultfd, fanotify_init, lookup_dcookie, vm86, nfsservctl, iopl/ioperm.

use std::path::Path;

use libseccomp::{ScmpAction, ScmpFilterContext, ScmpSyscall};
use serde_json::{Value, json};

/// Marks a container whose default profile the helper loads from the precompiled filter
/// in its bundle ([`FILTER_FILE`]) instead of libcontainer compiling it at every start.
/// A container so marked does not start without that filter.
pub(crate) const PRECOMPILED: &str = "io.skiff.seccomp.precompiled";
/// The precompiled filter's file in a bundle: the kernel's `struct sock_filter` array.
pub(crate) const FILTER_FILE: &str = "seccomp.bpf";

/// EPERM: what a denied call returns.
const EPERM: u32 = 1;
/// ENOSYS for clone3, so C libraries fall back to clone (as Docker does).
const ENOSYS: u32 = 38;

/// System calls a default container may make.
pub(crate) const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "arch_prctl",
    "bind",
    "brk",
    "cacheflush",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "clone",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_getfd",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "riscv_flush_icache",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socket",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "sync_file_range2",
    "breakpoint",
    "set_tls",
    "personality",
    "sethostname",
    "setdomainname",
    "chroot",
];

/// The OCI `linux.seccomp` section of the default profile.
pub(crate) fn default_profile() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": architectures(),
        "syscalls": [
            { "names": ALLOWED, "action": "SCMP_ACT_ALLOW" },
            { "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS },
        ]
    })
}

/// The native architecture only: libseccomp kills a process that makes a system call
/// of any other architecture (32-bit compat calls), and compiling the filter for one
/// architecture instead of three keeps container starts fast.
fn architectures() -> Vec<&'static str> {
    if cfg!(target_arch = "x86_64") {
        vec!["SCMP_ARCH_X86_64"]
    } else if cfg!(target_arch = "aarch64") {
        vec!["SCMP_ARCH_AARCH64"]
    } else if cfg!(target_arch = "arm") {
        vec!["SCMP_ARCH_ARM"]
    } else {
        vec![]
    }
}

/// Compiles the default profile once, with libseccomp, into the BPF program the kernel
/// loads, and writes it to `path` (replacing the file, so bundles that link the earlier
/// one keep it). Compiling takes libseccomp about a millisecond and a half, which every
/// container start would otherwise spend.
pub(crate) fn compile_default(path: &Path) -> Result<(), String> {
    let e = |what: &str, err: libseccomp::error::SeccompError| format!("{what}: {err}");
    let mut ctx = ScmpFilterContext::new(ScmpAction::Errno(EPERM as i32))
        .map_err(|err| e("new filter", err))?;
    // The runtime sets no_new_privs itself, as the spec says.
    ctx.set_ctl_nnp(false).map_err(|err| e("nnp", err))?;
    // A binary tree of the allowed calls rather than a chain of ~350 comparisons: the
    // kernel checks (and caches the verdicts of) a filter at load time and runs it on
    // every system call, and the tree makes both several times shorter. libseccomp
    // older than 2.5 cannot build one and keeps the chain.
    if let Err(err) = ctx.set_ctl_optimize(2) {
        tracing::debug!(error = %err, "seccomp: no binary-tree optimization");
    }
    for name in ALLOWED {
        // Names this architecture does not have are skipped, as libcontainer does.
        if let Ok(sc) = ScmpSyscall::from_name(name) {
            ctx.add_rule(ScmpAction::Allow, sc)
                .map_err(|err| e(&format!("rule for {name}"), err))?;
        }
    }
    if let Ok(sc) = ScmpSyscall::from_name("clone3") {
        ctx.add_rule(ScmpAction::Errno(ENOSYS as i32), sc)
            .map_err(|err| e("rule for clone3", err))?;
    }
    let tmp = path.with_extension("tmp");
    let file = std::fs::File::create(&tmp).map_err(|err| format!("{}: {err}", tmp.display()))?;
    ctx.export_bpf(&file).map_err(|err| e("export", err))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|err| format!("{}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_precompiled_default_profile_allows_what_it_lists_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("default.bpf");
        compile_default(&path).unwrap();
        let program = std::fs::read(&path).unwrap();
        assert!(!program.is_empty() && program.len().is_multiple_of(8));
        // Recompiling replaces the file rather than rewriting it: a bundle's hard link
        // to the earlier filter keeps it whole.
        let linked = dir.path().join("linked.bpf");
        std::fs::hard_link(&path, &linked).unwrap();
        compile_default(&path).unwrap();
        assert_eq!(std::fs::read(&linked).unwrap(), program);

        // Seccomp filters bind one thread: load it on a thread of its own.
        let outcome = std::thread::spawn(move || {
            nix::sys::prctl::set_no_new_privs().unwrap();
            crate::runtime::linux::sys::load_seccomp_filter(&program).unwrap();
            let pid = nix::unistd::getpid();
            let unshare = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUTS);
            // SAFETY: clone3 with a null argument fails before doing anything; only the
            // filter's answer (ENOSYS) or the kernel's (EFAULT/EINVAL) is looked at.
            let clone3 = unsafe { nix::libc::syscall(nix::libc::SYS_clone3, 0usize, 0usize) };
            let clone3_errno = nix::errno::Errno::last();
            (pid, unshare, clone3, clone3_errno)
        })
        .join()
        .unwrap();
        assert_eq!(outcome.0, nix::unistd::getpid(), "getpid is allowed");
        assert_eq!(
            outcome.1,
            Err(nix::errno::Errno::EPERM),
            "unshare is refused"
        );
        assert_eq!((outcome.2, outcome.3), (-1, nix::errno::Errno::ENOSYS));
        // Only that thread was filtered.
        assert!(
            std::fs::read_to_string("/proc/thread-self/status")
                .unwrap()
                .contains("Seccomp:\t0")
        );
    }

    #[test]
    fn a_program_that_is_not_whole_instructions_is_refused() {
        let e = crate::runtime::linux::sys::load_seccomp_filter(&[0u8; 12]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(crate::runtime::linux::sys::load_seccomp_filter(&[]).is_err());
    }
}
