//! `host/setup.sh`: the one script that sets the Proxmox host up from the
//! tree's `host/` files (sysctl, forwards and NAT, Proxmox firewall, storage
//! content types, and with a platform democratic-csi's side: its ZFS
//! datasets and delegation, LIO, and a user of its own whose key runs only a
//! forced command), idempotent and with a `--check` mode, so `waddlec
//! deploy` can show what it would change and a reviewer can read exactly
//! what runs as root on the host.
//!
//! With Teleport, the setup also copies the host's keys as Teleport's
//! OpenSSH node from the Teleport VM, through its guest agent, and
//! installs the sshd drop-in once they are there: with `qm guest exec` on
//! the host that runs the VM (as root on this host: the private host key
//! never crosses a network), and on a cluster's other hosts through the
//! cluster's API as root (`pvesh create /nodes/NODE/qemu/VMID/agent/exec`,
//! then `…/agent/exec-status`; both `proxyto: node` in the API schema, so
//! pvesh runs them on the VM's node over the cluster's own channel between
//! its nodes: the key leaves no node but for another of the cluster).
//!
//! `host/emergency-recovery.sh`: the way back in from the out-of-band
//! console (EMERGENCY rules admitting one address, or the firewall off),
//! installed by the setup as [`EMERGENCY_COMMAND`]; the setup keeps what it
//! opened until the deploy is told to close it (`--close-emergency`).
//!
//! With Teleport, the setup installs the host's sshd drop-in
//! (`host/ssh/teleport-node.conf`, `teleport_node`) once the keys it names
//! are on the host, and only if `sshd -t` loads every one of them.
//!
//! democratic-csi's files (`host/democratic-csi/`): the forced command
//! (`waddlec-csi-gate`: the driver's commands and nothing else, see the
//! template), the sudoers rule for `targetcli` alone, and the user's
//! `authorized_keys`: on the storage host only (`Model::storage_host`, a
//! cluster's first host).

use serde::Serialize;

use super::{RenderError, Templates};
use crate::artifact::Artifact;
use crate::model::{Host, Model};

#[derive(Serialize)]
struct Data<'a> {
    project: &'a str,
    node: &'a str,
    file_storage: &'a str,
    disk_storage: &'a str,
    /// democratic-csi's side of the host, with a platform.
    csi: Option<Csi>,
    /// Where the emergency script is installed.
    installed: &'static str,
    /// Its name on the console's PATH.
    command: &'static str,
    /// democratic-csi's files a host without its volumes must not have:
    /// what an earlier setup may have left (its key, forced command, sudo
    /// rule), removed.
    csi_leftovers: [String; 3],
    /// With Teleport: where the host's sshd keys for it live, and the
    /// Teleport VM they are fetched from.
    teleport_keys: Option<TeleportKeys<'a>>,
    /// The public bridge has IPv6: the host network has its IPv6 ruleset.
    ipv6: bool,
    /// A host of a `[cluster]`: `cluster.fw` is the cluster's one file, in
    /// the stage of one host's setup only (`deploy::cluster_hosts`), and
    /// installed only where it is staged.
    cluster: bool,
}

/// The host's keys as Teleport's OpenSSH node: `dir` on the host, copied
/// from `vm_dir` on the Teleport VM (`vmid`) through its guest agent: with
/// `qm guest exec` on the host that runs the VM, through the cluster's API
/// (`pvesh`, proxied to `through`, the VM's node) on the others.
#[derive(Serialize)]
struct TeleportKeys<'a> {
    dir: &'static str,
    vmid: u32,
    vm_dir: String,
    through: Option<&'a str>,
}

#[derive(Serialize)]
struct Csi {
    dataset: String,
    /// The quota on `<dataset>/vols`, in bytes (`zfs get -Hp` prints so).
    quota: Option<u64>,
    portal: String,
    basename: &'static str,
    user: &'static str,
    marker: &'static str,
    sudoers: &'static str,
}

/// The files of democratic-csi's user, as `host/democratic-csi/` has them.
#[derive(Serialize)]
struct CsiFiles<'a> {
    project: &'a str,
    user: &'static str,
    dataset: &'a str,
    basename: &'static str,
    driver_version: &'a str,
    /// The nodes' addresses, comma-separated.
    from: String,
    /// The host's address on the nodes' bridge: the only portal.
    portal: String,
    gate: &'static str,
    key: &'a str,
    marker: &'static str,
}

/// Ends democratic-csi's `authorized_keys` line; earlier setups wrote that
/// line into root's, and the setup removes it there by this marker.
const CSI_KEY_MARKER: &str = "waddlec:democratic-csi";
/// The user democratic-csi logs in as.
pub const CSI_USER: &str = "democratic-csi";
/// Its forced command.
const CSI_GATE: &str = "/usr/local/sbin/waddlec-csi-gate";
/// Its sudo rule.
const CSI_SUDOERS: &str = "/etc/sudoers.d/waddlec-democratic-csi";
/// Where the setup installs the emergency script (on root's PATH).
pub const EMERGENCY_COMMAND: &str = "/usr/local/sbin/waddlec-emergency";
/// The IQN prefix of every target the driver creates.
pub const CSI_IQN_BASENAME: &str = "iqn.2003-01.org.linux-iscsi.waddlec.x8664";

/// `host`'s setup script, emergency script and democratic-csi's files.
pub fn render(
    templates: &Templates,
    model: &Model,
    host: &Host,
) -> Result<Vec<Artifact>, RenderError> {
    // democratic-csi's side is only on the host its volumes come from.
    let storage = model
        .platform
        .as_ref()
        .filter(|_| model.storage_host().is_some_and(|s| s.node == host.node));
    let data = Data {
        project: &model.project.name,
        node: &host.node,
        file_storage: &host.file_storage,
        disk_storage: &host.disk_storage,
        csi: storage.map(|platform| Csi {
            dataset: platform.dataset.to_string(),
            quota: platform.storage_quota.map(|quota| quota.bytes()),
            portal: platform.storage_host.to_string(),
            basename: CSI_IQN_BASENAME,
            user: CSI_USER,
            marker: CSI_KEY_MARKER,
            sudoers: CSI_SUDOERS,
        }),
        csi_leftovers: [
            format!("/var/lib/{CSI_USER}/.ssh/authorized_keys"),
            CSI_GATE.to_string(),
            CSI_SUDOERS.to_string(),
        ],
        ipv6: host.bridges.public.v6.is_some(),
        cluster: model.proxmox.single_host().is_none(),
        installed: EMERGENCY_COMMAND,
        command: EMERGENCY_COMMAND
            .rsplit('/')
            .next()
            .unwrap_or(EMERGENCY_COMMAND),
        teleport_keys: model.teleport.as_ref().and_then(|teleport| {
            super::teleport_node::address(model, host)?;
            let vm = model.vm(&teleport.vm)?;
            let runs_on = model.host_of(vm).node.as_str();
            Some(TeleportKeys {
                dir: super::teleport_node::KEY_DIR,
                vmid: vm.id,
                vm_dir: super::teleport_node::vm_key_dir(model, host),
                through: (runs_on != host.node).then_some(runs_on),
            })
        }),
    };
    let mut artifacts = vec![
        Artifact::file(
            "host/setup.sh",
            "host-setup-script",
            templates.render("host-setup.sh", &data)?,
        )
        .executable(),
        Artifact::file(
            "host/emergency-recovery.sh",
            "emergency-script",
            templates.render("emergency-recovery.sh", &data)?,
        )
        .executable(),
    ];
    if let Some(platform) = storage {
        let nodes: Vec<String> = model
            .talos_nodes()
            .map(|node| node.ip().to_string())
            .collect();
        let files = CsiFiles {
            project: &model.project.name,
            user: CSI_USER,
            dataset: &platform.dataset,
            basename: CSI_IQN_BASENAME,
            driver_version: &platform.versions.democratic_csi_image,
            from: nodes.join(","),
            portal: platform.storage_host.to_string(),
            gate: CSI_GATE,
            key: &platform.csi_public_key,
            marker: CSI_KEY_MARKER,
        };
        artifacts.extend([
            Artifact::file(
                "host/democratic-csi/waddlec-csi-gate",
                "csi-forced-command",
                templates.render("csi-gate.sh", &files)?,
            )
            .executable(),
            Artifact::file(
                "host/democratic-csi/sudoers",
                "sudoers",
                templates.render("csi-sudoers", &files)?,
            ),
            Artifact::file(
                "host/democratic-csi/authorized_keys",
                "ssh-authorized-keys",
                templates.render("csi-authorized-keys", &files)?,
            ),
        ]);
    }
    Ok(artifacts)
}
