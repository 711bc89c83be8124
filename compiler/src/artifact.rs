//! `Artifact`: one generated file, as renderers produce it and `emit` writes it.

/// A rendered file. `path` is relative and `/`-separated; the mode is fixed
/// (0644, or 0755 when executable) so output never depends on the umask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    pub path: String,
    pub kind: &'static str,
    pub contents: Vec<u8>,
    pub executable: bool,
}

impl Artifact {
    pub fn file(path: impl Into<String>, kind: &'static str, contents: String) -> Self {
        Artifact {
            path: path.into(),
            kind,
            contents: contents.into_bytes(),
            executable: false,
        }
    }

    pub fn executable(mut self) -> Self {
        self.executable = true;
        self
    }

    pub fn mode(&self) -> u32 {
        if self.executable {
            0o755
        } else {
            0o644
        }
    }
}
