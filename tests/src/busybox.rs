//! A busybox-static root filesystem, the content of every test image: `/bin/busybox`
//! from Debian's `busybox-static` with a symlink per applet (`sh`, `true`, `sleep`, ...),
//! plus the few files containers expect (`/etc/passwd`, `/tmp`).

use std::io;
use std::path::Path;

/// Where Debian's `busybox-static` installs its binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Fills `dir` with a busybox root filesystem. Panics with a clear message when
/// busybox-static is missing (the test command installs it).
pub fn populate_rootfs(dir: &Path) -> io::Result<()> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy(BUSYBOX, bin.join("busybox")).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("copying {BUSYBOX} (apt-get install busybox-static): {e}"),
        )
    })?;
    for applet in applets()? {
        let link = bin.join(&applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", &link)?;
        }
    }
    for d in ["etc", "tmp", "proc", "sys", "dev", "root", "var", "usr/bin"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    Ok(())
}

/// The applets this busybox was built with.
pub fn applets() -> io::Result<Vec<String>> {
    let out = std::process::Command::new(BUSYBOX).arg("--list").output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!("{BUSYBOX} --list failed")));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && !a.contains('/') && *a != "busybox")
        .map(String::from)
        .collect())
}
