//! Host setup over SSH, with the operator's own `ssh` (so `~/.ssh/config`,
//! agents, jump hosts and Teleport's generated ssh config all work): the
//! tree's `host/` files go over as one tar on stdin, and `host/setup.sh`
//! runs on the host as root. Nothing is left behind but what the script
//! installs; the script is idempotent and has a `--check` mode, which is
//! how the plan shows what would change. The EMERGENCY lines the console's
//! `waddlec-emergency` added to the firewall are reported apart from the
//! changes: kept, unless the deploy is told to close them.
//!
//! A host of a `[cluster]` gets its own `hosts/NODE/` files the same way
//! ([`HostFiles::of_cluster_host`]), through its own `ssh_target`
//! ([`Ssh::to_cluster_host`]).

use std::path::{Path, PathBuf};

use crate::net::ssh::{self, SshError};

/// The files of the tree's `host/` directory the script needs.
const HOST_FILES: &[&str] = &[
    "setup.sh",
    "network/90-waddlec.conf",
    "network/host-network.rules",
    "network/waddlec-host-network",
    "network/waddlec-host-network.service",
    "firewall/host.fw",
    "emergency-recovery.sh",
];

/// democratic-csi's side of the host, in the tree when the blueprint has a
/// platform (all of them, or none).
const CSI_FILES: &[&str] = &[
    "democratic-csi/waddlec-csi-gate",
    "democratic-csi/sudoers",
    "democratic-csi/authorized_keys",
];

/// The sshd drop-in of the host as Teleport's node, in the tree when the
/// blueprint has Teleport.
const TELEPORT_FILES: &[&str] = &["ssh/teleport-node.conf"];

/// The IPv6 ruleset, in the tree when the public bridge has IPv6.
const IPV6_FILES: &[&str] = &["network/host-network6.rules"];

/// Where `cluster.fw` goes in the stage: a lone host's `host/` has it there.
const CLUSTER_FW: &str = "firewall/cluster.fw";

/// The files one host's setup is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFiles {
    /// The host's own files: the tree's `host/`, or a cluster's
    /// `hosts/NODE/`.
    pub dir: PathBuf,
    /// `cluster.fw`, staged as `firewall/cluster.fw`; `None` for a host of
    /// a cluster whose setup leaves the cluster's one file to another's.
    pub cluster_fw: Option<PathBuf>,
}

impl HostFiles {
    /// A lone host's: the tree's `host/`, `cluster.fw` in it.
    pub fn of_host(tree: &Path) -> HostFiles {
        let dir = tree.join("host");
        HostFiles {
            cluster_fw: Some(dir.join(CLUSTER_FW)),
            dir,
        }
    }

    /// A cluster host's: the tree's `hosts/NODE/`, with the cluster's
    /// `hosts/cluster.fw` when `with_cluster_fw`.
    pub fn of_cluster_host(tree: &Path, node: &str, with_cluster_fw: bool) -> HostFiles {
        HostFiles {
            dir: tree.join("hosts").join(node),
            cluster_fw: with_cluster_fw.then(|| tree.join("hosts/cluster.fw")),
        }
    }
}

/// How to reach the host.
#[derive(Clone, Debug)]
pub struct Ssh {
    /// `user@host` (or a `Host` of the ssh config).
    pub target: String,
    /// An ssh config file to use instead of the user's (`ssh -F`).
    pub config: Option<PathBuf>,
    /// Install under this directory instead of `/` (tests).
    pub root: Option<String>,
    /// The host's pinned key `(node, key)`, from the host record; without
    /// one, the operator's own known_hosts must know the host. Never used
    /// through Teleport, whose proxy speaks for the host with a certificate
    /// from Teleport's host CA.
    pub host_key: Option<(String, String)>,
    /// Every host record's key `(node, key)`: where a cluster's other
    /// hosts find theirs ([`Ssh::to_cluster_host`]).
    pub recorded_keys: Vec<(String, String)>,
    /// `host.ssh = "teleport:…"`: `target` is `login@node.CLUSTER`, reached
    /// through Teleport's proxy.
    pub teleport: Option<ssh::TeleportProxy>,
}

impl Ssh {
    /// How `model`'s `host.ssh` reaches the host: through Teleport, the
    /// destination `login@node.CLUSTER` by the proxy's public address (the
    /// `public_addr` of the rendered `teleport.yaml`), with tsh's
    /// known_hosts at `tsh_known_hosts`; pinned to the first host's key
    /// among `recorded_keys` (the host records', `(node, key)`).
    pub fn to_host(
        model: &crate::model::Model,
        config: Option<PathBuf>,
        root: Option<String>,
        recorded_keys: Vec<(String, String)>,
        tsh_known_hosts: PathBuf,
    ) -> Ssh {
        let target = model.host().ssh_target.to_string();
        let host_key = recorded_keys
            .iter()
            .find(|(node, _)| *node == model.host().node)
            .cloned();
        let teleport = Ssh::teleport_proxy(model, tsh_known_hosts)
            .filter(|_| model.host().ssh_route == crate::model::SshRoute::Teleport);
        Ssh {
            target: match &teleport {
                Some(proxy) => proxy.destination(&target),
                None => target,
            },
            config,
            root,
            host_key,
            recorded_keys,
            teleport,
        }
    }

    /// The proxy of `model`'s `[teleport]`, as `to_host` reaches a host
    /// through it: the cluster and proxy its `public_host` names, tsh's
    /// known_hosts at `tsh_known_hosts`.
    pub fn teleport_proxy(
        model: &crate::model::Model,
        tsh_known_hosts: PathBuf,
    ) -> Option<ssh::TeleportProxy> {
        model.teleport.as_ref().map(|teleport| ssh::TeleportProxy {
            cluster: teleport.public_host.clone(),
            proxy: format!("{}:443", teleport.public_host),
            known_hosts: tsh_known_hosts,
        })
    }

    /// How to reach `host`, a host of a `[cluster]`, given how the first
    /// is reached: [`Ssh::to_cluster_host_through`] the first host's
    /// Teleport proxy, if it has one.
    pub fn to_cluster_host(&self, host: &crate::model::Host) -> Ssh {
        self.to_cluster_host_through(host, self.teleport.as_ref())
    }

    /// How to reach `host`, a host of a `[cluster]`: its own `ssh_target`,
    /// through `teleport` (the blueprint's proxy, [`Ssh::teleport_proxy`])
    /// as `login@node.CLUSTER` when its `ssh` goes through Teleport (never
    /// pinned to its record's key then, as a lone host), else straight and
    /// pinned to its own record's key; the same ssh config; under
    /// `ROOT/NODE` with a test's root (the hosts' filesystems are apart).
    pub fn to_cluster_host_through(
        &self,
        host: &crate::model::Host,
        teleport: Option<&ssh::TeleportProxy>,
    ) -> Ssh {
        let teleport = teleport
            .filter(|_| host.ssh_route == crate::model::SshRoute::Teleport)
            .cloned();
        let target = host.ssh_target.to_string();
        Ssh {
            target: match &teleport {
                Some(proxy) => proxy.destination(&target),
                None => target,
            },
            config: self.config.clone(),
            root: self
                .root
                .as_ref()
                .map(|root| format!("{root}/{}", host.node)),
            host_key: self
                .recorded_keys
                .iter()
                .find(|(node, _)| *node == host.node)
                .filter(|_| teleport.is_none())
                .cloned(),
            recorded_keys: self.recorded_keys.clone(),
            teleport,
        }
    }

    /// The connection to the host, with `pinned` (the host record's key)
    /// when it is direct.
    pub fn remote<'a>(&'a self, pinned: Option<&'a ssh::PinnedHost>) -> ssh::Remote<'a> {
        ssh::Remote {
            target: &self.target,
            config: self.config.as_deref(),
            jump: None,
            jump_known_host: None,
            known_host: pinned
                .filter(|_| self.teleport.is_none())
                .map(ssh::PinnedHost::known),
            teleport: self.teleport.as_ref(),
        }
    }
}

/// Logs in to the host (through Teleport, when `host` goes that way) on a
/// connection of its own, never one the operator's config shares, and runs
/// `true`: the proof the deploy guard needs before a firewall without a
/// direct SSH rule goes out.
pub fn log_in_through_teleport(host: &Ssh) -> Result<(), SshError> {
    tracing::info!(target = %host.target, "logging in through Teleport");
    ssh::run_fresh(&host.remote(None), "true").map(|_| ())
}

#[derive(Debug, thiserror::Error)]
pub enum HostSetupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run ssh: {0}")]
    Spawn(std::io::Error),
    #[error("host setup on {target} failed ({status}):\n{stderr}")]
    Failed {
        target: String,
        status: String,
        stderr: String,
    },
}

/// What one run of the setup said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// `changed: …` / `would change: …`, one per change.
    pub changes: Vec<String>,
    /// `kept …`, `closed …` / `would close …`: the firewall's EMERGENCY
    /// lines, which the plan shows apart, whether or not anything changes.
    pub emergency: Vec<String>,
}

/// Runs the setup (or, with `check`, only asks what it would change; with
/// `close_emergency`, removes the EMERGENCY lines instead of keeping them).
pub fn run(
    host: &Ssh,
    tree: &Path,
    check: bool,
    close_emergency: bool,
) -> Result<Report, HostSetupError> {
    run_with(host, &HostFiles::of_host(tree), check, close_emergency)
}

/// [`run`] with `files` staged: a cluster host's.
pub fn run_with(
    host: &Ssh,
    files: &HostFiles,
    check: bool,
    close_emergency: bool,
) -> Result<Report, HostSetupError> {
    let archive = archive(files)?;
    let mut script = String::from(
        "set -eu; stage=$(mktemp -d); trap 'rm -rf \"$stage\"' EXIT; \
         tar -x -C \"$stage\" -f -; bash \"$stage/setup.sh\" \"$stage\"",
    );
    if check {
        script.push_str(" --check");
    }
    if close_emergency {
        script.push_str(" --close-emergency");
    }
    if let Some(root) = &host.root {
        script.push_str(&format!(" --root {}", ssh::quote(root)));
    }
    tracing::info!(target = %host.target, check, "host setup over ssh");
    let pinned = ssh::PinnedHost::new(host.host_key.as_ref()).map_err(HostSetupError::Spawn)?;
    let remote = host.remote(pinned.as_ref());
    let stdout = ssh::run(&remote, &script, archive).map_err(|e| match e {
        SshError::Spawn(e) => HostSetupError::Spawn(e),
        SshError::Failed {
            target,
            status,
            stderr,
        } => HostSetupError::Failed {
            target,
            status,
            stderr,
        },
    })?;
    // Only the script's report lines: a login banner or a shell rc file
    // that prints must not count as a change.
    let mut report = Report::default();
    for line in stdout.lines().map(str::trim) {
        if line.starts_with("changed: ") || line.starts_with("would change: ") {
            report.changes.push(line.to_owned());
        } else if let Some(emergency) = line.strip_prefix("emergency: ") {
            report.emergency.push(emergency.to_owned());
        }
    }
    Ok(report)
}

/// The host files as a tar with fixed owners and times.
fn archive(files: &HostFiles) -> Result<Vec<u8>, HostSetupError> {
    let host = files.dir.as_path();
    let mut builder = tar::Builder::new(Vec::new());
    let csi = host.join("democratic-csi").is_dir();
    let teleport = host.join("ssh").is_dir();
    let ipv6 = host.join(IPV6_FILES[0]).is_file();
    let names = HOST_FILES
        .iter()
        .chain(CSI_FILES.iter().filter(|_| csi))
        .chain(TELEPORT_FILES.iter().filter(|_| teleport))
        .chain(IPV6_FILES.iter().filter(|_| ipv6))
        .map(|name| (*name, host.join(name)))
        .chain(files.cluster_fw.clone().map(|path| (CLUSTER_FW, path)));
    for (name, path) in names {
        let read_error = |source| HostSetupError::Read {
            path: path.display().to_string(),
            source,
        };
        let contents = std::fs::read(&path).map_err(read_error)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(
            if name.ends_with(".sh") || name.ends_with("host-network") || name.ends_with("-gate") {
                0o755
            } else {
                0o644
            },
        );
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        builder
            .append_data(&mut header, name, contents.as_slice())
            .map_err(read_error)?;
    }
    builder.into_inner().map_err(|source| HostSetupError::Read {
        path: host.display().to_string(),
        source,
    })
}
