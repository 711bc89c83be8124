//! `Artifact`: one generated file, as renderers produce it and `emit` writes it.

/// A rendered file. `path` is relative and `/`-separated; the mode is fixed
/// (0644, 0755 when executable, 0600 when it carries secrets — in the review
/// tree too, where they are placeholders) so output never depends on the
/// umask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    pub path: String,
    pub kind: &'static str,
    pub contents: Vec<u8>,
    pub executable: bool,
    pub secret: bool,
}

impl Artifact {
    pub fn file(path: impl Into<String>, kind: &'static str, contents: String) -> Self {
        Artifact {
            path: path.into(),
            kind,
            contents: contents.into_bytes(),
            executable: false,
            secret: false,
        }
    }

    /// Marks a file that holds secret values (when built with secrets).
    pub fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    pub fn executable(mut self) -> Self {
        self.executable = true;
        self
    }

    pub fn mode(&self) -> u32 {
        if self.secret {
            0o600
        } else if self.executable {
            0o755
        } else {
            0o644
        }
    }
}
