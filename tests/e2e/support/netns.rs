//! The network lab's pieces: a network namespace that is deleted (its
//! processes killed) when the value drops, and a child process that is
//! killed when its guard drops. Tests build their topologies (veth pairs,
//! bridges, routes) from these.

use std::process::{Child, Command, Output};

use super::{require, run, sh, shell_quote, text};

/// A network namespace that exists for the life of the value.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        require("ip");
        // Unique in the process too: tests run in parallel threads.
        static SERIAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("wdlc-{tag}-{}-{serial}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&format!(
            "ip netns add {name} && ip -n {name} link set lo up"
        ));
        Netns { name }
    }

    /// Runs a shell command line inside the namespace.
    pub fn sh(&self, script: &str) -> String {
        sh(&format!(
            "ip netns exec {} bash -c {}",
            self.name,
            shell_quote(script)
        ))
    }

    /// Whether a TCP socket in the namespace listens on `port`.
    pub fn listens(&self, port: u16) -> bool {
        text(&self.try_sh(&format!("ss -Hltn 'sport = :{port}'")).stdout).contains("LISTEN")
    }

    /// Like `sh`, but returns the output whatever the exit status.
    pub fn try_sh(&self, script: &str) -> Output {
        run(Command::new("ip").args(["netns", "exec", &self.name, "bash", "-c", script]))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                for pid in text(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").arg(pid).output();
                }
            });
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A child process (a listener, haproxy, a lab peer), killed and reaped
/// when the value drops.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
