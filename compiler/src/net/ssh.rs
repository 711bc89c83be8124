//! One command on a remote host over the operator's own `ssh` (their
//! config, keys and agent), its stdin fed from memory: the host setup's
//! archive, Teleport's kubeconfig. Never interactive (`BatchMode`: a
//! missing key fails instead of prompting) and never trusting a host key on
//! first use (`StrictHostKeyChecking yes`, whatever the operator's config
//! says: an `accept-new` there would hand the first connection to whoever
//! answers), the jump host included (a `ProxyCommand` carrying the same
//! options, since `-J` passes them on to nobody), with an optional config
//! file (`-F`), and, for a machine
//! whose host key waddlec made, that key pinned: only it is accepted
//! (`StrictHostKeyChecking yes` against a known_hosts of that one entry,
//! looked up by its alias whatever address or jump reaches it, and its
//! algorithm the only one negotiated: ssh would otherwise prefer a host
//! certificate the host also presents, as Teleport's node does).
//!
//! A host reached through Teleport (`host.ssh = "teleport:…"`) gets the
//! options `tsh config` writes for a cluster's nodes (Teleport's
//! `lib/config/openssh/openssh.go`): `ProxyCommand tsh proxy ssh
//! --cluster=CLUSTER --proxy=PROXY:PORT %r@%h:%p`, the destination
//! `login@node.CLUSTER` (tsh drops the cluster suffix to find the node), and
//! tsh's own known_hosts, where `tsh login` writes Teleport's host CA as a
//! `@cert-authority` line: the proxy speaks for the node with a certificate
//! from that CA, so no key of waddlec's is pinned. Port 22, an agentless
//! node's sshd, instead of the 3022 of Teleport's own SSH service. The
//! user's certificate comes from the agent `tsh login` loads it into, or the
//! operator's ssh config.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Where to run.
pub struct Remote<'a> {
    /// `user@host`, or a `Host` of the ssh config.
    pub target: &'a str,
    pub config: Option<&'a Path>,
    pub jump: Option<&'a str>,
    /// The only host key to accept from the jump host.
    pub jump_known_host: Option<KnownHost<'a>>,
    /// The only host key to accept from the target.
    pub known_host: Option<KnownHost<'a>>,
    /// Reach `target` through Teleport's proxy (no `jump` then).
    pub teleport: Option<&'a TeleportProxy>,
}

/// Teleport's proxy, as `tsh config` names it for a cluster's nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TeleportProxy {
    /// The cluster's name (our `teleport.public_host`).
    pub cluster: String,
    /// `HOST:PORT` of the proxy's web listener, as `tsh login --proxy`.
    pub proxy: String,
    /// tsh's known_hosts (`$TELEPORT_HOME/known_hosts`, `~/.tsh/known_hosts`).
    pub known_hosts: std::path::PathBuf,
}

impl TeleportProxy {
    /// The destination for `login@node`: `login@node.CLUSTER`, the names
    /// `tsh config`'s `Host *.CLUSTER` block covers.
    pub fn destination(&self, login_at_node: &str) -> String {
        format!("{login_at_node}.{}", self.cluster)
    }

    /// The ssh arguments that reach a node through this proxy.
    pub fn options(&self) -> [String; 8] {
        let literal = |text: &str| quote(&text.replace('%', "%%"));
        [
            "-o".into(),
            format!(
                "ProxyCommand=tsh proxy ssh --cluster={} --proxy={} %r@%h:%p",
                literal(&self.cluster),
                literal(&self.proxy)
            ),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o".into(),
            "GlobalKnownHostsFile=/dev/null".into(),
            "-p".into(),
            "22".into(),
        ]
    }

    /// tsh's known_hosts under `teleport_home` (`$TELEPORT_HOME`), else
    /// under `home` (`~/.tsh`).
    pub fn known_hosts_in(teleport_home: Option<&Path>, home: Option<&Path>) -> std::path::PathBuf {
        match (teleport_home, home) {
            (Some(dir), _) => dir.join("known_hosts"),
            (None, Some(home)) => home.join(".tsh/known_hosts"),
            (None, None) => std::path::PathBuf::from(".tsh/known_hosts"),
        }
    }

    /// tsh's known_hosts, where `tsh login` writes Teleport's host CA:
    /// `$TELEPORT_HOME/known_hosts`, else `~/.tsh/known_hosts` (tsh's own
    /// `TELEPORT_HOME` and default profile directory).
    pub fn tsh_known_hosts() -> std::path::PathBuf {
        let teleport_home = std::env::var_os("TELEPORT_HOME").map(std::path::PathBuf::from);
        let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
        TeleportProxy::known_hosts_in(teleport_home.as_deref(), home.as_deref())
    }
}

/// A pinned host key: a known_hosts file, the name its entry has, and the
/// key's type when known.
pub struct KnownHost<'a> {
    pub file: &'a Path,
    pub alias: &'a str,
    /// `ssh-ed25519`…: the only host key algorithm to negotiate. A host
    /// that also presents a certificate (the Teleport node's drop-in) would
    /// otherwise have the client pick the certificate's algorithm first and
    /// fail against the plain pinned key.
    pub key_type: Option<&'a str>,
}

/// A known_hosts file of pinned keys (`ALIAS KEY` lines), removed when
/// dropped: ssh reads host keys only from files.
pub struct PinnedKeys {
    file: tempfile::NamedTempFile,
    /// `(alias, key type)` of every entry.
    types: Vec<(String, String)>,
}

impl PinnedKeys {
    /// A file holding `(alias, key)` entries.
    pub fn new<'k>(keys: impl IntoIterator<Item = (&'k str, &'k str)>) -> std::io::Result<Self> {
        let mut file = tempfile::NamedTempFile::new()?;
        let mut types = Vec::new();
        for (alias, key) in keys {
            writeln!(file, "{alias} {key}")?;
            if let Some(kind) = key.split_whitespace().next() {
                types.push((alias.to_string(), kind.to_string()));
            }
        }
        file.flush()?;
        Ok(PinnedKeys { file, types })
    }

    /// The entry named `alias` of this file, to pin a connection with.
    pub fn known<'a>(&'a self, alias: &'a str) -> KnownHost<'a> {
        KnownHost {
            file: self.file.path(),
            alias,
            key_type: self
                .types
                .iter()
                .find(|(name, _)| name == alias)
                .map(|(_, kind)| kind.as_str()),
        }
    }
}

/// One host's key `(alias, key)` pinned, when there is one to pin: the
/// file, and the entry a connection to that host uses.
pub struct PinnedHost {
    keys: PinnedKeys,
    alias: String,
}

impl PinnedHost {
    pub fn new(pin: Option<&(String, String)>) -> std::io::Result<Option<Self>> {
        pin.map(|(alias, key)| {
            Ok(PinnedHost {
                keys: PinnedKeys::new([(alias.as_str(), key.as_str())])?,
                alias: alias.clone(),
            })
        })
        .transpose()
    }

    pub fn known(&self) -> KnownHost<'_> {
        self.keys.known(&self.alias)
    }
}

impl KnownHost<'_> {
    /// The `-o` values that accept this key and no other.
    pub fn options(&self) -> Vec<String> {
        let mut options = vec![
            format!("UserKnownHostsFile={}", self.file.display()),
            "GlobalKnownHostsFile=/dev/null".to_string(),
            format!("HostKeyAlias={}", self.alias),
        ];
        if let Some(kind) = self.key_type {
            // An RSA key signs with SHA-2 (`ssh-rsa` alone is SHA-1).
            let algorithms = match kind {
                "ssh-rsa" => "rsa-sha2-512,rsa-sha2-256",
                other => other,
            };
            options.push(format!("HostKeyAlgorithms={algorithms}"));
        }
        options
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot run ssh: {0}")]
    Spawn(std::io::Error),
    /// The command (or ssh itself) failed; the end of its stderr.
    #[error("{target}: {status}:\n{stderr}")]
    Failed {
        target: String,
        status: String,
        stderr: String,
    },
}

/// What kind of failure an [`SshError`] is, from ssh's own exit status
/// (255) and message: the cases an operator fixes differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No connection (refused, timed out, no route, unknown name).
    Unreachable,
    /// The host refused every key offered.
    KeyRefused,
    /// The host's key is unknown or not the trusted one.
    HostKey,
    /// The connection worked; the remote command failed.
    Command,
}

impl SshError {
    pub fn failure(&self) -> Failure {
        let SshError::Failed { status, stderr, .. } = self else {
            return Failure::Unreachable;
        };
        if !status.contains("255") {
            return Failure::Command;
        }
        if stderr.contains("Host key verification failed")
            || stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        {
            Failure::HostKey
        } else if stderr.contains("Permission denied") {
            Failure::KeyRefused
        } else if stderr.contains("Connection refused")
            || stderr.contains("Connection timed out")
            || stderr.contains("No route to host")
            || stderr.contains("Could not resolve hostname")
            || stderr.contains("Network is unreachable")
            || stderr.contains("Connection closed")
        {
            Failure::Unreachable
        } else {
            Failure::Command
        }
    }
}

/// The ssh options every connection gets: no prompt, no trust on first use.
pub const STRICT: [&str; 4] = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"];

/// The `ssh` command running `command` on `remote`.
fn ssh_command(remote: &Remote<'_>, command: &str) -> Command {
    let mut ssh = Command::new("ssh");
    ssh_args(&mut ssh, remote, command);
    ssh
}

fn ssh_args(ssh: &mut Command, remote: &Remote<'_>, command: &str) {
    if let Some(config) = remote.config {
        ssh.arg("-F").arg(config);
    }
    if let Some(jump) = remote.jump {
        // ssh expands `%` tokens in a ProxyCommand: ours are literal.
        let literal = |text: &str| quote(&text.replace('%', "%%"));
        let mut proxy = String::from("ssh");
        if let Some(config) = remote.config {
            proxy.push_str(&format!(" -F {}", literal(&config.display().to_string())));
        }
        if let Some(known) = &remote.jump_known_host {
            for option in known.options() {
                proxy.push_str(&format!(" -o {}", literal(&option)));
            }
        }
        proxy.push_str(&format!(
            " {} -W %h:%p -- {}",
            STRICT.join(" "),
            literal(jump)
        ));
        ssh.arg("-o").arg(format!("ProxyCommand={proxy}"));
    }
    if let Some(teleport) = remote.teleport {
        ssh.args(teleport.options());
    }
    if let Some(known) = &remote.known_host {
        for option in known.options() {
            ssh.arg("-o").arg(option);
        }
    }
    ssh.args(STRICT).arg("--").arg(remote.target).arg(command);
}

/// Runs `command` (a remote shell line) on `remote` with `stdin` as its
/// input; returns its stdout.
pub fn run(remote: &Remote<'_>, command: &str, stdin: Vec<u8>) -> Result<String, SshError> {
    output(ssh_command(remote, command), remote, stdin)
}

/// Like [`run`], over a connection of its own that really logs in: never
/// through a connection the operator's config shares (`ControlMaster`),
/// which would prove nothing about authentication.
pub fn run_fresh(remote: &Remote<'_>, command: &str) -> Result<String, SshError> {
    let mut ssh = Command::new("ssh");
    ssh.args(["-o", "ControlMaster=no", "-o", "ControlPath=none"]);
    ssh_args(&mut ssh, remote, command);
    output(ssh, remote, Vec::new())
}

/// Like [`run`] with no stdin, bounded in time: ssh gives up connecting
/// after `timeout` (`ConnectTimeout`), and a command still running after
/// twice that is killed and reported as a timeout (which [`Failure`] calls
/// unreachable). For read-only looks (`waddlec status`).
pub fn run_within(
    remote: &Remote<'_>,
    command: &str,
    timeout: std::time::Duration,
) -> Result<String, SshError> {
    let mut ssh = Command::new("ssh");
    ssh.arg("-o")
        .arg(format!("ConnectTimeout={}", timeout.as_secs().max(1)));
    ssh_args(&mut ssh, remote, command);
    ssh.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = ssh.spawn().map_err(SshError::Spawn)?;
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = std::time::Instant::now() + timeout * 2;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(SshError::Spawn)? {
            break Some(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
    let tail = |text: &str| {
        let lines: Vec<&str> = text.lines().rev().take(30).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    };
    match status {
        Some(status) if status.success() => Ok(String::from_utf8_lossy(&stdout).into_owned()),
        Some(status) => Err(SshError::Failed {
            target: remote.target.to_string(),
            status: status.to_string(),
            stderr: tail(&stderr),
        }),
        None => Err(SshError::Failed {
            target: remote.target.to_string(),
            status: format!(
                "exit status: 255 (killed: no end within {} s)",
                (timeout * 2).as_secs()
            ),
            stderr: format!("{}\nConnection timed out", tail(&stderr)),
        }),
    }
}

fn output(mut ssh: Command, remote: &Remote<'_>, stdin: Vec<u8>) -> Result<String, SshError> {
    ssh.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = ssh.spawn().map_err(SshError::Spawn)?;
    let mut input = child.stdin.take().expect("stdin is piped");
    // Written from a thread while wait_with_output drains stdout and stderr
    // together, so a chatty remote cannot deadlock the pipes.
    let writer = std::thread::spawn(move || input.write_all(&stdin));
    let output = child.wait_with_output().map_err(SshError::Spawn)?;
    let _ = writer.join();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        return Err(SshError::Failed {
            target: remote.target.to_string(),
            status: output.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `text` as one word for the remote shell.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(quote("it's"), r"'it'\''s'");
    }

    fn args(remote: &Remote<'_>) -> Vec<String> {
        ssh_command(remote, "true")
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn every_connection_refuses_unknown_host_keys() {
        let remote = Remote {
            target: "root@host",
            config: None,
            jump: None,
            jump_known_host: None,
            known_host: None,
            teleport: None,
        };
        assert_eq!(
            args(&remote),
            [
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "--",
                "root@host",
                "true"
            ]
        );
    }

    #[test]
    fn the_jump_host_is_as_strict_and_a_pinned_key_is_looked_up_by_its_alias() {
        let config = Path::new("/tmp/my ssh%config");
        let file = Path::new("/tmp/known");
        let remote = Remote {
            target: "admin@10.10.0.2",
            config: Some(config),
            jump: Some("root@203.0.113.10"),
            jump_known_host: Some(KnownHost {
                file,
                alias: "pve1",
                key_type: None,
            }),
            known_host: Some(KnownHost {
                file,
                alias: "teleport",
                key_type: Some("ssh-ed25519"),
            }),
            teleport: None,
        };
        let args = args(&remote);
        let proxy = "ProxyCommand=ssh -F '/tmp/my ssh%%config' -o 'UserKnownHostsFile=/tmp/known' \
                     -o 'GlobalKnownHostsFile=/dev/null' -o 'HostKeyAlias=pve1' -o BatchMode=yes \
                     -o StrictHostKeyChecking=yes -W %h:%p -- 'root@203.0.113.10'";
        assert!(args.contains(&proxy.to_string()), "{args:?}");
        for option in [
            "UserKnownHostsFile=/tmp/known",
            "GlobalKnownHostsFile=/dev/null",
            "HostKeyAlias=teleport",
            "HostKeyAlgorithms=ssh-ed25519",
            "StrictHostKeyChecking=yes",
        ] {
            assert!(args.contains(&option.to_string()), "{option}: {args:?}");
        }
        assert!(!args.contains(&"-J".to_string()), "{args:?}");
    }

    #[test]
    fn through_teleport_ssh_gets_what_tsh_config_writes() {
        let proxy = TeleportProxy {
            cluster: "teleport.waddle.social".into(),
            proxy: "teleport.waddle.social:443".into(),
            known_hosts: "/home/op/.tsh/known_hosts".into(),
        };
        let target = proxy.destination("root@waddle-proxmox01");
        assert_eq!(target, "root@waddle-proxmox01.teleport.waddle.social");
        let remote = Remote {
            target: &target,
            config: None,
            jump: None,
            jump_known_host: None,
            known_host: None,
            teleport: Some(&proxy),
        };
        let args = args(&remote);
        assert_eq!(
            args[..8],
            [
                "-o",
                "ProxyCommand=tsh proxy ssh --cluster='teleport.waddle.social' \
                 --proxy='teleport.waddle.social:443' %r@%h:%p",
                "-o",
                "UserKnownHostsFile=/home/op/.tsh/known_hosts",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-p",
                "22"
            ]
        );
        assert!(args.ends_with(&["--".to_string(), target.clone(), "true".to_string()]));
        assert_eq!(
            TeleportProxy::known_hosts_in(None, Some(Path::new("/home/op"))),
            Path::new("/home/op/.tsh/known_hosts")
        );
        assert_eq!(
            TeleportProxy::known_hosts_in(Some(Path::new("/t")), Some(Path::new("/home/op"))),
            Path::new("/t/known_hosts")
        );
    }
}
