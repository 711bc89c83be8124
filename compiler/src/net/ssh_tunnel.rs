//! Local TCP forwards through the Proxmox host. The cluster's nodes have no
//! public address; the operator reaches them through the host with their
//! own `ssh` (so `~/.ssh/config`, agents, jump hosts and Teleport's
//! generated ssh config all work, as in `deploy::host_setup`): one
//! `ssh -N -L 127.0.0.1:<local>:<node>:<port> …` for all forwards, alive as
//! long as the [`SshTunnel`] value.
//!
//! Local ports are picked free by binding port 0 and letting go, so another
//! program can take one before ssh binds it. ssh then exits
//! (`ExitOnForwardFailure`) and the tunnel is opened once more with new
//! ports; twice in a row is reported.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::net::ssh::{KnownHost, TeleportProxy};

/// How long ssh may take to log in and open every forward.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the local ports are tried meanwhile.
const POLL: Duration = Duration::from_millis(100);

/// A running `ssh -N` with local forwards; ssh is killed on drop.
#[derive(Debug)]
pub struct SshTunnel {
    child: Child,
    locals: Vec<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("cannot pick a free local port: {0}")]
    LocalPort(std::io::Error),
    #[error("cannot run ssh: {0}")]
    Spawn(std::io::Error),
    #[error("ssh to {target} exited ({status}) before its forwards were open; check that `ssh {target}` logs in without a prompt:\n{stderr}")]
    Exited {
        target: String,
        status: String,
        stderr: String,
    },
    #[error("ssh to {target} did not open its forwards within {waited:?}; check that the host is reachable and `ssh {target}` logs in without a prompt:\n{stderr}")]
    Timeout {
        target: String,
        waited: Duration,
        stderr: String,
    },
}

impl SshTunnel {
    /// Forwards a free local port to each `(host, port)`, as seen from
    /// `target` (`user@host` or a `Host` of the ssh config; `config` is used
    /// instead of the user's, as `ssh -F`). Returns once every local port
    /// accepts connections.
    pub fn open(
        target: &str,
        config: Option<&Path>,
        known_host: Option<&KnownHost<'_>>,
        teleport: Option<&TeleportProxy>,
        forwards: &[(String, u16)],
    ) -> Result<SshTunnel, TunnelError> {
        match Self::open_once(target, config, known_host, teleport, forwards) {
            Err(TunnelError::Exited { ref stderr, .. }) if lost_a_port(stderr) => {
                tracing::info!(target, "a picked local port was taken; new ports");
                Self::open_once(target, config, known_host, teleport, forwards)
            }
            result => result,
        }
    }

    /// The local end of the `i`th forward given to [`SshTunnel::open`].
    ///
    /// # Panics
    /// If there was no `i`th forward.
    pub fn local_addr(&self, i: usize) -> SocketAddr {
        self.locals[i]
    }

    fn open_once(
        target: &str,
        config: Option<&Path>,
        known_host: Option<&KnownHost<'_>>,
        teleport: Option<&TeleportProxy>,
        forwards: &[(String, u16)],
    ) -> Result<SshTunnel, TunnelError> {
        let locals = free_ports(forwards.len()).map_err(TunnelError::LocalPort)?;
        // A file, not a pipe: nobody has to drain it while ssh runs.
        let mut stderr = tempfile::tempfile().map_err(TunnelError::Spawn)?;
        let mut command = Command::new("ssh");
        if let Some(config) = config {
            command.arg("-F").arg(config);
        }
        // Never stop to ask for a password, never trust a host key on first
        // use; fail when a forward cannot be set up instead of running
        // without it.
        command
            .args(["-N", "-o", "ExitOnForwardFailure=yes"])
            .args(crate::net::ssh::STRICT);
        for option in known_host.iter().flat_map(|known| known.options()) {
            command.arg("-o").arg(option);
        }
        if let Some(teleport) = teleport {
            command.args(teleport.options());
        }
        for ((host, port), local) in forwards.iter().zip(&locals) {
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.clone()
            };
            command.arg("-L").arg(format!("{local}:{host}:{port}"));
        }
        command
            .arg("--")
            .arg(target)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr.try_clone().map_err(TunnelError::Spawn)?);
        tracing::info!(target, forwards = forwards.len(), "ssh tunnel");
        let child = command.spawn().map_err(TunnelError::Spawn)?;
        // Killed and reaped by drop on every early return from here on.
        let mut tunnel = SshTunnel { child, locals };

        let start = Instant::now();
        loop {
            if let Some(status) = tunnel.child.try_wait().map_err(TunnelError::Spawn)? {
                return Err(TunnelError::Exited {
                    target: target.to_string(),
                    status: status.to_string(),
                    stderr: tail(&mut stderr),
                });
            }
            // Still running after every port answered: the ports are ssh's
            // (had another program held one, ssh would have exited).
            if tunnel.all_accept() && tunnel.child.try_wait().ok().flatten().is_none() {
                return Ok(tunnel);
            }
            if start.elapsed() >= READY_TIMEOUT {
                drop(tunnel);
                return Err(TunnelError::Timeout {
                    target: target.to_string(),
                    waited: start.elapsed(),
                    stderr: tail(&mut stderr),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    fn all_accept(&self) -> bool {
        self.locals
            .iter()
            .all(|local| TcpStream::connect_timeout(local, POLL).is_ok())
    }
}

impl Drop for SshTunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` distinct ports on 127.0.0.1 that were free a moment ago.
fn free_ports(n: usize) -> std::io::Result<Vec<SocketAddr>> {
    // All bound at once, so the kernel hands out different ones.
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners.iter().map(TcpListener::local_addr).collect()
}

/// ssh could not bind a local port (OpenSSH: "bind [127.0.0.1]:N: Address
/// already in use", "cannot listen to port: N").
fn lost_a_port(stderr: &str) -> bool {
    stderr.contains("Address already in use") || stderr.contains("cannot listen to port")
}

/// The last lines ssh wrote.
fn tail(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_string(&mut text));
    let lines: Vec<&str> = text.lines().rev().take(30).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_loopback() {
        let ports = free_ports(3).unwrap();
        assert_eq!(ports.len(), 3);
        assert!(ports.iter().all(|p| p.ip().is_loopback() && p.port() != 0));
        assert_ne!(ports[0], ports[1]);
        assert_ne!(ports[1], ports[2]);
        assert_ne!(ports[0], ports[2]);
    }

    #[test]
    fn a_lost_port_is_told_from_other_failures() {
        assert!(lost_a_port(
            "bind [127.0.0.1]:40000: Address already in use\r\n\
             channel_setup_fwd_listener_tcpip: cannot listen to port: 40000\r\n\
             Could not request local forwarding."
        ));
        assert!(!lost_a_port("ssh: Could not resolve hostname nowhere"));
    }
}
