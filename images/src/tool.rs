//! Running the host programs the image pipeline drives (mmdebstrap, mke2fs).
//!
//! The one place that turns "program missing" and "program failed" into
//! errors: a missing program names the apt command that installs it, a failed
//! one shows the command line and the end of its stderr. Every run has stdin
//! closed, a fixed locale and UTC, so a program never waits for input, its
//! messages (which some callers match) are the untranslated ones, and any time
//! it shows or stores in local time does not depend on the build host's zone.

use std::ffi::OsStr;
use std::io;
use std::process::{Command, ExitStatus, Output, Stdio};

/// How much of a failed program's stderr an error keeps: the end, where the
/// reason usually is.
const STDERR_TAIL: usize = 4000;

/// A host program and how to install it on Debian 12.
#[derive(Clone, Copy, Debug)]
pub struct Tool {
    pub program: &'static str,
    /// The command that installs it, e.g. `apt-get install mmdebstrap`.
    pub install: &'static str,
}

/// A host program could not be run, or ran and failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("`{program}` is not installed; install it with `{install}`")]
    Missing {
        program: &'static str,
        install: &'static str,
    },
    #[error("could not start `{program}`: {source}")]
    Spawn {
        program: &'static str,
        source: io::Error,
    },
    #[error("`{command}` failed ({status}):\n{stderr}")]
    Failed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
}

impl Tool {
    pub const fn new(program: &'static str, install: &'static str) -> Self {
        Tool { program, install }
    }

    /// A command for this program with stdin closed, the C locale and UTC.
    pub fn command(&self) -> Command {
        let mut command = Command::new(self.program);
        command
            .stdin(Stdio::null())
            .env("LC_ALL", "C.UTF-8")
            .env("TZ", "UTC")
            .env_remove("LANGUAGE");
        command
    }

    /// Runs `command` (made by [`Tool::command`]) to completion and returns
    /// its output if it exited 0.
    pub fn run(&self, command: &mut Command) -> Result<Output, ToolError> {
        let output = command.output().map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                ToolError::Missing {
                    program: self.program,
                    install: self.install,
                }
            } else {
                ToolError::Spawn {
                    program: self.program,
                    source,
                }
            }
        })?;
        if output.status.success() {
            return Ok(output);
        }
        Err(ToolError::Failed {
            command: command_line(command),
            status: output.status,
            stderr: tail(&output.stderr),
        })
    }
}

fn command_line(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim_end();
    match text.char_indices().rev().nth(STDERR_TAIL) {
        Some((start, _)) => format!("…{}", &text[start..]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_names_its_install_command() {
        let tool = Tool::new("waddle-no-such-program", "apt-get install waddle-tools");
        let error = tool.run(&mut tool.command()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`waddle-no-such-program` is not installed; install it with `apt-get install waddle-tools`"
        );
    }

    #[test]
    fn a_failure_shows_the_command_and_its_stderr() {
        let tool = Tool::new("sh", "apt-get install dash");
        let mut command = tool.command();
        command.args(["-c", "echo broken >&2; exit 3"]);
        let error = tool.run(&mut command).unwrap_err().to_string();
        assert!(
            error.starts_with("`sh -c echo broken >&2; exit 3` failed"),
            "{error}"
        );
        assert!(error.ends_with("\nbroken"), "{error}");
    }

    #[test]
    fn long_stderr_keeps_its_end() {
        let long = format!("{}the reason", "x".repeat(10_000));
        let kept = tail(long.as_bytes());
        assert!(kept.ends_with("the reason"));
        assert!(kept.chars().count() <= STDERR_TAIL + 2);
    }
}
