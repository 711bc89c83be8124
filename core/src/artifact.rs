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
    /// Where this file goes inside a VM, if it does: the VM's cloud-init
    /// seed carries it there (`write_files`).
    pub guest: Option<GuestFile>,
}

/// A file a Debian VM receives through its seed, owned by root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestFile {
    pub vm: String,
    pub path: &'static str,
    /// Octal permissions, e.g. `0o644`.
    pub mode: u32,
}

impl Artifact {
    pub fn file(path: impl Into<String>, kind: &'static str, contents: String) -> Self {
        Artifact {
            path: path.into(),
            kind,
            contents: contents.into_bytes(),
            executable: false,
            secret: false,
            guest: None,
        }
    }

    /// Marks a file that `vm` receives at `path` with `mode`.
    pub fn for_guest(mut self, vm: &str, path: &'static str, mode: u32) -> Self {
        self.guest = Some(GuestFile {
            vm: vm.to_string(),
            path,
            mode,
        });
        self
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
