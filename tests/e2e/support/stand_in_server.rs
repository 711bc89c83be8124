//! A Python stand-in server from `tests/support/` that keeps its state in a
//! JSON file and prints its port once listening: Cloudflare's API
//! (`cloudflare_stand_in.py`, TCP) and a DNS resolver (`dns_stand_in.py`,
//! UDP). The test writes the state, may change it between runs, and reads
//! what the server was asked from `STATE.log`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::repo_root;

pub struct StandInServer {
    child: Child,
    state: PathBuf,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl StandInServer {
    /// Starts `tests/support/SCRIPT` with `state` as its state.
    pub fn start(script: &str, state: &serde_json::Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, state.to_string()).unwrap();
        let mut child = Command::new(repo_root().join("tests/support").join(script))
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{script} said {line:?}"));
        StandInServer {
            child,
            state: path,
            port,
            _dir: dir,
        }
    }

    /// Replaces the state.
    pub fn set(&self, state: &serde_json::Value) {
        std::fs::write(&self.state, state.to_string()).unwrap();
    }

    /// What it was asked, one line per request.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.with_extension("json.log")).unwrap_or_default()
    }
}

impl Drop for StandInServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
