//! A real S3 server for the artifact-store tests: `s3s-fs` 0.14.1 (crates.io,
//! Apache-2.0), installed by `tests/run-all.sh` with a pinned `cargo install
//! --locked`. Chosen because it is a server, not a mock library: it checks
//! every request's AWS Signature Version 4 (headers and presigned URLs),
//! answers S3's XML errors, and keeps each
//! object as a plain file under its root (`ROOT/BUCKET/KEY`), so a test can
//! read what the store holds and corrupt an object as a broken disk or a
//! hostile writer would. It is Rust from the registry CI already uses
//! (MinIO is not packaged in Debian, and moto, PyPI's usual S3 server, is
//! a mock library). 0.14.1 is the newest release whose `rust-version`
//! (1.92) the machines' Rust 1.95 meets: 0.15 and later need 1.96.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_addr;

pub const ACCESS_KEY: &str = "WADDLETESTACCESSKEY";
pub const SECRET_KEY: &str = "waddle-test-secret-key-0123456789abcdef";
pub const BUCKET: &str = "waddle-artifacts";
pub const ACCESS_KEY_ENV: &str = "WADDLE_TEST_S3_ACCESS_KEY";
pub const SECRET_KEY_ENV: &str = "WADDLE_TEST_S3_SECRET_KEY";

pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    root: tempfile::TempDir,
    child: Child,
}

/// The server binary: `$S3S_FS`, else `s3s-fs` on the PATH or in cargo's bin.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("S3S_FS") {
        return path.into();
    }
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .map(|home| home.join("bin/s3s-fs"));
    match cargo_bin {
        Some(path) if path.is_file() => path,
        _ => PathBuf::from("s3s-fs"),
    }
}

impl S3Server {
    /// Serves an empty bucket [`BUCKET`].
    pub fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let addr = free_addr("127.0.0.1");
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &addr.port().to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start s3s-fs ({e}); run tests/run-all.sh, which installs it")
            });
        let started = Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "s3s-fs did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        S3Server {
            url: format!("http://{addr}"),
            root,
            child,
        }
    }

    /// The `[artifacts]` table pointing at this server, credentials from
    /// [`ACCESS_KEY_ENV`] and [`SECRET_KEY_ENV`].
    pub fn table(&self, prefix: &str) -> toml::Table {
        let mut table = toml::Table::new();
        table.insert("endpoint".into(), self.url.clone().into());
        table.insert("region".into(), "fr-par".into());
        table.insert("bucket".into(), BUCKET.into());
        table.insert("prefix".into(), prefix.into());
        table.insert(
            "access_key_id".into(),
            format!("env:{ACCESS_KEY_ENV}").into(),
        );
        table.insert(
            "secret_access_key".into(),
            format!("env:{SECRET_KEY_ENV}").into(),
        );
        table
    }

    /// The credentials' environment for a waddlec run.
    pub fn env(command: &mut Command) -> &mut Command {
        command
            .env(ACCESS_KEY_ENV, ACCESS_KEY)
            .env(SECRET_KEY_ENV, SECRET_KEY)
    }

    /// The file holding object `key`.
    pub fn object(&self, key: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(key)
    }

    /// Every object's key, sorted (the server's own bookkeeping files,
    /// named with a leading `.`, left out).
    pub fn keys(&self) -> Vec<String> {
        let bucket = self.root.path().join(BUCKET);
        let mut keys = Vec::new();
        let mut dirs = vec![bucket.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                if name.starts_with('.') {
                    continue;
                }
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    keys.push(path.strip_prefix(&bucket).unwrap().display().to_string());
                }
            }
        }
        keys.sort();
        keys
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
