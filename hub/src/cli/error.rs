//! The CLI's error type, how each error is shown (one line on stderr) and which exit code
//! it maps to: the one place where failures become process outcomes.

use std::path::PathBuf;

use skiff_api::{ManifestError, UnknownKind, ValidationErrors};

use super::client::ApiError;
use super::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("{0}")]
    UnknownKind(#[from] UnknownKind),
    #[error("cannot read {path}: {source}")]
    ReadInput {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Manifest {
        path: PathBuf,
        #[source]
        source: ManifestError,
    },
    #[error("{path}: {object} is invalid: {errors}")]
    Invalid {
        path: PathBuf,
        object: String,
        errors: ValidationErrors,
    },
    #[error("{path}: no objects found (expected YAML or JSON manifests)")]
    NoObjects { path: PathBuf },
    /// The arguments make no sense together or one of them cannot be parsed; clap
    /// could not tell, so this is reported like clap's own usage errors.
    #[error("{0}")]
    Usage(String),
    /// A check against the live object failed, e.g. a label that already has a value.
    #[error("{0}")]
    Refused(String),
    #[error("timed out after {after} waiting for {what}")]
    Timeout { what: String, after: String },
    #[error("cannot write output: {0}")]
    Output(#[source] std::io::Error),
    #[error("cannot encode output as YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("{what}: {source}")]
    Stream {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The command run by `skiff exec` exited with this code (nothing more is printed).
    #[error("command terminated with exit code {0}")]
    RemoteExit(i32),
    /// Several objects failed; each failure was already printed as it happened.
    #[error("{count} operations failed")]
    Several { count: usize },
}

impl CliError {
    /// Usage errors exit with 2, as clap's own do; every other failure with 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            CliError::RemoteExit(code) => *code,
            _ => 1,
        }
    }

    /// The line printed on stderr, or `None` when nothing more should be said: the
    /// reader went away (broken pipe), or every failure was already reported.
    pub fn render(&self) -> Option<String> {
        match self {
            CliError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe => None,
            CliError::Several { .. } | CliError::RemoteExit(_) => None,
            // kubectl's own prefix for failures the server reported.
            CliError::Api(ApiError::Status(_)) => Some(self.to_string()),
            _ => Some(format!("error: {self}")),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        CliError::Output(e)
    }
}

/// Keeps going over several objects, printing each failure as it happens, and turns
/// the outcome into one result at the end: the single failure itself, or
/// [`CliError::Several`] when more than one was printed.
#[derive(Debug, Default)]
pub(crate) struct Failures {
    count: usize,
    last: Option<CliError>,
}

impl Failures {
    pub(crate) fn push(&mut self, err: &mut dyn std::io::Write, e: CliError) {
        // The previous failure is printed now; the newest is kept so that a lone failure
        // is reported by the caller exactly like any other error.
        if let Some(prev) = self.last.take()
            && let Some(line) = prev.render()
        {
            let _ = writeln!(err, "{line}");
        }
        self.count += 1;
        self.last = Some(e);
    }

    /// Records a failure about one object and goes on; a failure of the connection
    /// itself (unreachable hub, rejected token) would repeat for every object, so it
    /// ends the command at once.
    pub(crate) fn push_api(
        &mut self,
        err: &mut dyn std::io::Write,
        e: ApiError,
    ) -> Result<(), CliError> {
        if e.status().is_some() {
            self.push(err, e.into());
            Ok(())
        } else {
            Err(e.into())
        }
    }

    pub(crate) fn finish(self, err: &mut dyn std::io::Write) -> Result<(), CliError> {
        match (self.count, self.last) {
            (_, None) => Ok(()),
            (1, Some(e)) => Err(e),
            (count, Some(e)) => {
                if let Some(line) = e.render() {
                    let _ = writeln!(err, "{line}");
                }
                Err(CliError::Several { count })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_exit_2_and_others_1() {
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        assert_eq!(CliError::Refused("x".into()).exit_code(), 1);
        assert_eq!(
            CliError::Several { count: 2 }.exit_code(),
            1,
            "partial failure still fails"
        );
    }

    #[test]
    fn one_failure_is_returned_and_several_are_printed() {
        let mut err = Vec::new();
        let f = Failures::default();
        assert!(f.finish(&mut err).is_ok());

        let mut f = Failures::default();
        f.push(&mut err, CliError::Refused("first".into()));
        let e = f.finish(&mut err).unwrap_err();
        assert_eq!(e.render().as_deref(), Some("error: first"));
        assert!(err.is_empty());

        let mut f = Failures::default();
        f.push(&mut err, CliError::Refused("first".into()));
        f.push(&mut err, CliError::Refused("second".into()));
        let e = f.finish(&mut err).unwrap_err();
        assert!(matches!(e, CliError::Several { count: 2 }));
        assert_eq!(e.render(), None);
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "error: first\nerror: second\n"
        );
    }
}
