//! `skiff image import|ls|rm`: the hub's image registry from the command line. Imports
//! stream the archive with a progress bar (plain progress lines when stderr is not a
//! terminal, so logs of scripts stay readable).

use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::client::ApiError;
use super::error::CliError;
use super::table::{Table, age_of};
use super::{Ctx, client::encode_segment};
use crate::registry::{ImageRef, TagOverride};

const IMAGES: &str = "/skiff/v1/images";

#[derive(Debug, Subcommand)]
pub(crate) enum ImageCommand {
    /// Import an OCI image layout or `docker save` tarball (plain or gzip)
    #[command(after_help = "\
The archive's own names are used (org.opencontainers.image.ref.name in an OCI layout,
RepoTags in a docker archive) unless --tag gives one. --tag NAME keeps the archive's tags
under another repository name.

Examples:
  skiff image import busybox.tar
  skiff image import app.oci.tar.gz --tag app:1.4
  docker save app:1.4 | skiff image import -")]
    Import(ImportArgs),
    /// List the images of the hub's registry
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Remove image tags; blobs no remaining image uses are deleted
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The archive, or `-` for standard input
    #[arg(value_name = "FILE|-")]
    file: String,
    /// Name the image NAME:TAG (or the repository NAME, keeping the archive's tags)
    #[arg(long, value_name = "NAME[:TAG]")]
    tag: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// Show whole digests
    #[arg(long)]
    no_trunc: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RmArgs {
    /// Images to remove, as NAME:TAG
    #[arg(value_name = "NAME:TAG", required = true)]
    images: Vec<String>,
}

pub(crate) fn run(ctx: &mut Ctx<'_>, cmd: &ImageCommand) -> Result<(), CliError> {
    match cmd {
        ImageCommand::Import(a) => import(ctx, a),
        ImageCommand::Ls(a) => list(ctx, a),
        ImageCommand::Rm(a) => remove(ctx, a),
    }
}

/// `1.5 MiB`: binary units, one decimal above a KiB.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Reports how much of the archive has been read: an indicatif bar on a terminal,
/// otherwise a line at every quarter (or every 64 MiB when the size is unknown).
struct Progress<'a> {
    inner: &'a mut dyn Read,
    bar: Option<indicatif::ProgressBar>,
    lines: &'a mut dyn Write,
    total: Option<u64>,
    read: u64,
    next_line: u64,
    /// Where the last line was printed, so the end is not told twice.
    printed: u64,
}

const LINE_STEP_UNKNOWN: u64 = 64 << 20;

impl Progress<'_> {
    fn step(&self) -> u64 {
        self.total.map_or(LINE_STEP_UNKNOWN, |t| (t / 4).max(1))
    }

    fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Read for Progress<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if let Some(bar) = &self.bar {
            bar.set_position(self.read);
        } else if self.read >= self.next_line || (n == 0 && self.read > self.printed) {
            let line = match self.total {
                Some(t) if t > 0 => format!(
                    "uploaded {} of {} ({}%)",
                    human_size(self.read),
                    human_size(t),
                    self.read * 100 / t
                ),
                _ => format!("uploaded {}", human_size(self.read)),
            };
            // Progress lines are a courtesy: a closed stderr must not fail the upload.
            let _ = writeln!(self.lines, "{line}");
            self.printed = self.read;
            while self.next_line <= self.read {
                self.next_line += self.step();
            }
            if n == 0 {
                self.next_line = u64::MAX;
            }
        }
        Ok(n)
    }
}

fn import(ctx: &mut Ctx<'_>, args: &ImportArgs) -> Result<(), CliError> {
    let mut query = Vec::new();
    if let Some(t) = &args.tag {
        TagOverride::parse(t).map_err(|e| CliError::Usage(format!("--tag: {e}")))?;
        query.push(("tag", t.clone()));
    }
    // The hub refuses a wrong token before reading the body, which a client still
    // sending sees as a broken pipe: check the token first for a clear answer.
    ctx.client.get_path(IMAGES)?;
    let mut file;
    let (source, total): (&mut dyn Read, Option<u64>) = if args.file == "-" {
        (&mut *ctx.stdin, None)
    } else {
        let path = PathBuf::from(&args.file);
        let read_err = |source| CliError::ReadInput {
            path: path.clone(),
            source,
        };
        file = File::open(&path).map_err(read_err)?;
        let meta = file.metadata().map_err(read_err)?;
        if meta.is_dir() {
            return Err(CliError::Usage(format!(
                "{} is a directory; pack an OCI layout first (tar -C DIR -cf image.tar .)",
                path.display()
            )));
        }
        (&mut file, Some(meta.len()))
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = match total {
            Some(t) => indicatif::ProgressBar::new(t),
            None => indicatif::ProgressBar::no_length(),
        };
        let style = indicatif::ProgressStyle::with_template(
            "{spinner} uploading [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar
    });
    let mut progress = Progress {
        inner: source,
        bar,
        lines: &mut *ctx.err,
        total,
        read: 0,
        next_line: 0,
        printed: 0,
    };
    let result = ctx
        .client
        .upload(&format!("{IMAGES}/import"), &query, &mut progress);
    progress.finish();
    let answer = result.map_err(|e| match e {
        // The hub stops reading an archive over its size limit and answers 413, which
        // a client still sending only sees as a closed connection.
        ApiError::Transport {
            source: ureq::Error::Io(io),
            ..
        } if matches!(
            io.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        ) =>
        {
            CliError::Refused(format!(
                "the hub closed the connection during the upload ({io}); the archive may be over its size limit (skiff-hub serve --image-import-limit); see the hub's log"
            ))
        }
        other => other.into(),
    })?;
    for img in answer["images"].as_array().into_iter().flatten() {
        writeln!(
            ctx.out,
            "imported {}:{} {} ({})",
            str_of(img, "name"),
            str_of(img, "tag"),
            str_of(img, "digest"),
            human_size(img["size"].as_u64().unwrap_or(0))
        )?;
    }
    Ok(())
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn list(ctx: &mut Ctx<'_>, args: &LsArgs) -> Result<(), CliError> {
    let answer = ctx.client.get_path(IMAGES)?;
    let images = answer["images"].as_array().cloned().unwrap_or_default();
    if images.is_empty() {
        writeln!(ctx.err, "No images found.")?;
        return Ok(());
    }
    let mut t = Table::new(["NAME", "TAG", "DIGEST", "SIZE", "CREATED", "IMPORTED"]);
    for img in &images {
        let digest = str_of(img, "digest");
        let digest = if args.no_trunc {
            digest.to_string()
        } else {
            digest.chars().take("sha256:".len() + 12).collect()
        };
        t.push(vec![
            str_of(img, "name").to_string(),
            str_of(img, "tag").to_string(),
            digest,
            human_size(img["size"].as_u64().unwrap_or(0)),
            age_of(img.get("created").and_then(Value::as_str), ctx.now),
            age_of(img.get("imported").and_then(Value::as_str), ctx.now),
        ]);
    }
    ctx.out.write_all(t.render().as_bytes())?;
    Ok(())
}

fn remove(ctx: &mut Ctx<'_>, args: &RmArgs) -> Result<(), CliError> {
    let refs = args
        .images
        .iter()
        .map(|s| ImageRef::parse(s).map_err(|e| CliError::Usage(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let mut failed = 0;
    for r in refs {
        // Names keep their slashes: the hub reads the rest of the path as NAME:TAG.
        let path = format!(
            "{IMAGES}/{}:{}",
            r.name
                .split('/')
                .map(encode_segment)
                .collect::<Vec<_>>()
                .join("/"),
            encode_segment(&r.tag)
        );
        match ctx.client.delete_path(&path) {
            Ok(v) => {
                let blobs = v["blobsRemoved"].as_u64().unwrap_or(0);
                let freed = v["bytesFreed"].as_u64().unwrap_or(0);
                writeln!(
                    ctx.out,
                    "deleted {r} ({blobs} blobs, {} freed)",
                    human_size(freed)
                )?;
            }
            Err(e) if args.images.len() > 1 => {
                writeln!(
                    ctx.err,
                    "{}",
                    CliError::from(e).render().unwrap_or_default()
                )?;
                failed += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if failed > 0 {
        return Err(CliError::Several { count: failed });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(5 << 20), "5.0 MiB");
    }

    #[test]
    fn plain_progress_lines_at_each_quarter() {
        let data = vec![7u8; 1000];
        let mut src = &data[..];
        let mut lines = Vec::new();
        let mut p = Progress {
            inner: &mut src,
            bar: None,
            lines: &mut lines,
            total: Some(1000),
            read: 0,
            next_line: 0,
            printed: 0,
        };
        let mut buf = [0u8; 100];
        while p.read(&mut buf).unwrap() > 0 {}
        let text = String::from_utf8(lines).unwrap();
        let shown: Vec<&str> = text.lines().collect();
        assert_eq!(shown.first().unwrap(), &"uploaded 100 B of 1000 B (10%)");
        assert_eq!(shown.last().unwrap(), &"uploaded 1000 B of 1000 B (100%)");
        assert_eq!(
            shown.iter().filter(|l| l.contains("(100%)")).count(),
            1,
            "{shown:?}"
        );
        assert!(shown.len() <= 6, "{shown:?}");
    }
}
