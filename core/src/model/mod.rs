//! The validated model: the platform with every default applied, every name
//! resolved to what it refers to, and every address parsed. Renderers read
//! only this; it carries no spans and cannot be invalid. A string with
//! consequences (one that reaches a command line, a URL, a template, a path
//! on a machine or a Secret) has its own type from `checked`, made only by
//! its check.

pub mod checked;

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use waddle_images::ByteSize;

pub use crate::blueprint::{
    BridgeRole, BundleRef, Date, Policy, Port, Protocol, SecretRef, TalosRole,
};
pub use checked::{
    AgeRecipient, BridgeName, CheckedString, CpuType, EmailAddress, GitBranch, GitUrl, GithubOrg,
    HttpUrl, HttpsUrl, KnownHost, OAuthClientId, RepoPath, S3Bucket, S3Region, SshTarget,
    StorageId, TeleportDataPath, ZfsDataset,
};
pub use host_access::{AccessSource, HostAccess, ISCSI_PORT, SSH_PORT};

mod host_access;

#[derive(Clone, Debug)]
pub struct Model {
    pub project: Project,
    pub operator: Operator,
    /// Where the VMs run: one host, or the nodes of one cluster.
    pub proxmox: Proxmox,
    /// Every VM, Debian and Talos alike, sorted by VMID.
    pub vms: Vec<Vm>,
    pub vips: Vec<Vip>,
    pub talos: Option<TalosCluster>,
    /// Set with `talos`.
    pub cilium: Option<CiliumInstall>,
    pub flux: Option<Flux>,
    pub onepassword_connect: Option<OnePasswordConnect>,
    /// Set with `talos`, `flux` and `onepassword_connect`.
    pub platform: Option<Platform>,
    pub edge: Option<Edge>,
    pub forwards: Vec<PortForward>,
    pub firewall: Firewall,
    pub teleport: Option<Teleport>,
    /// Set when any VM boots a Debian image.
    pub debian: Option<DebianArchive>,
    /// `[artifacts]`: where baked images are kept, if anywhere.
    pub artifacts: Option<ArtifactStore>,
}

/// The artifact store: an S3-compatible bucket, addressed path-style.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactStore {
    /// Without a trailing `/`.
    pub endpoint: HttpUrl,
    pub region: S3Region,
    pub bucket: S3Bucket,
    /// Every key starts with it (and a `/`), if set.
    pub prefix: Option<RepoPath>,
    pub access_key_id: SecretRef,
    pub secret_access_key: SecretRef,
}

/// What Talos nodes serve: the Kubernetes API on every control plane (and
/// on the API VIP, which one control plane holds), Talos' machine API,
/// apid, on every node.
pub const KUBE_API_PORT: u16 = 6443;
pub const TALOS_API_PORT: u16 = 50000;
/// KubePrism: the API load balancer on every Talos node, which Cilium
/// talks to (it runs before any Service works).
pub const KUBEPRISM_PORT: u16 = 7445;
/// A Talos node's one NIC: nocloud images boot with `net.ifnames=0`, so
/// it is `eth0` (machine configs address it, L2 announcements select it).
pub const TALOS_LINK: &str = "eth0";

/// The Debian archive the images are built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebianArchive {
    /// `bookworm` (from `versions.debian`).
    pub suite: String,
    /// snapshot.debian.org timestamp, `20251120T000000Z`.
    pub snapshot: String,
    /// The snapshot as seconds since the epoch: every time in the images.
    pub source_date_epoch: u64,
    /// A live mirror used instead of the snapshot (W0202).
    pub mirror: Option<HttpUrl>,
}

#[derive(Clone, Debug)]
pub struct Project {
    pub name: String,
    pub domain: String,
}

#[derive(Clone, Debug)]
pub struct Operator {
    pub ip: Ipv4Addr,
    pub email: EmailAddress,
    pub login: String,
    pub ssh_keys: Vec<String>,
}

/// The Proxmox side: one API (a lone host's, or a cluster's, which any
/// node answers for all) and the hosts behind it.
#[derive(Clone, Debug)]
pub struct Proxmox {
    pub api_url: HttpsUrl,
    /// The node `api_url` reaches (a lone host's, or the cluster host it
    /// names): its certificate is the one deploy and status pin.
    pub api_node: String,
    pub api_token: SecretRef,
    pub dns: Vec<Ipv4Addr>,
    /// In blueprint order: the one `[host]`, or the `[[cluster.host]]`s.
    pub hosts: Vec<Host>,
    /// Storages every host sees: counted once, and no obstacle to a
    /// migration.
    pub shared_storages: Vec<StorageId>,
    /// The SDN zone carrying the internal bridges across the hosts of a
    /// `[cluster]`; `None` for one host, whose internal bridges are its
    /// own Linux bridges.
    pub sdn: Option<Sdn>,
}

/// A `[cluster]`'s VXLAN zone: every internal bridge is one of its VNets,
/// on every host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sdn {
    /// `pve-sdn-zone-id`.
    pub zone: String,
    /// The VNets' MTU, which every VM NIC on them gets.
    pub mtu: u16,
    /// Each internal bridge's VXLAN network identifier, in bridge order.
    pub vnets: Vec<(BridgeName, u32)>,
    /// Every host's address on `network`, in host order: the zone's
    /// `peers`.
    pub peers: Vec<Ipv4Addr>,
    /// The private network between the hosts (`cluster.network`).
    pub network: Ipv4Net,
}

/// One Proxmox host (a cluster's node).
#[derive(Clone, Debug)]
pub struct Host {
    pub node: String,
    /// Uppercase `AB:CD:…` SHA-256 of this node's API certificate, if
    /// pinned.
    pub api_fingerprint: Option<String>,
    /// `user@host` the operator's `ssh` logs in as; through Teleport,
    /// `login@node` as Teleport routes it.
    pub ssh_target: SshTarget,
    /// How `ssh_target` is reached: straight, or through Teleport's proxy.
    pub ssh_route: SshRoute,
    pub disk_storage: StorageId,
    pub file_storage: StorageId,
    /// The bridges as this host has them: its uplink, and the internal
    /// networks (the same on every host of a cluster) with its own address
    /// on each.
    pub bridges: Bridges,
}

/// What starts a `host.ssh` that goes through Teleport.
pub const TELEPORT_SSH_PREFIX: &str = "teleport:";

/// How the operator's `ssh` reaches the host (`host.ssh`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SshRoute {
    /// `user@host`: a direct connection, which the host firewall must admit.
    Direct,
    /// `teleport:login@node`: through Teleport's proxy (`tsh proxy ssh`), the
    /// host being an agentless (OpenSSH) node of the blueprint's Teleport.
    Teleport,
}

/// The host's bridges: exactly one public (the uplink), and the internal
/// ones, in blueprint order.
#[derive(Clone, Debug)]
pub struct Bridges {
    pub public: Bridge,
    pub internal: Vec<Bridge>,
}

impl Bridges {
    /// Splits resolved bridges by role; `None` unless exactly one is public.
    pub fn new(bridges: Vec<Bridge>) -> Option<Bridges> {
        let (mut public, internal): (Vec<Bridge>, Vec<Bridge>) = bridges
            .into_iter()
            .partition(|b| b.role == BridgeRole::Public);
        let one = public.pop()?;
        public.is_empty().then_some(Bridges {
            public: one,
            internal,
        })
    }

    /// Every bridge, the public one first.
    pub fn iter(&self) -> impl Iterator<Item = &Bridge> {
        self.into_iter()
    }
}

impl<'a> IntoIterator for &'a Bridges {
    type Item = &'a Bridge;
    type IntoIter = std::iter::Chain<std::iter::Once<&'a Bridge>, std::slice::Iter<'a, Bridge>>;

    fn into_iter(self) -> Self::IntoIter {
        std::iter::once(&self.public).chain(&self.internal)
    }
}

#[derive(Clone, Debug)]
pub struct Bridge {
    pub name: BridgeName,
    pub role: BridgeRole,
    pub network: Ipv4Net,
    pub host_address: Ipv4Addr,
    /// Upstream router of a public bridge.
    pub gateway: Option<Ipv4Addr>,
    /// The bridge's IPv6 side, if it has one: the public bridge's global
    /// prefix, or an internal bridge's unique local one.
    pub v6: Option<BridgeV6>,
    pub masquerade: bool,
    /// `bridge_vlan_aware`: NICs on it may carry a VLAN tag. Never on the
    /// public bridge.
    pub vlan_aware: bool,
}

/// A bridge's IPv6 prefix and the host's address in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BridgeV6 {
    pub network: Ipv6Net,
    pub host_address: Ipv6Addr,
    /// Upstream router of the public bridge: in `network` or link-local.
    pub gateway: Option<Ipv6Addr>,
}

/// The baked Debian image's EFI system partition: systemd-boot, one kernel
/// and one initrd.
pub const DEBIAN_ESP_SIZE: ByteSize = ByteSize::from_mib(128);
/// The baked Debian image's root filesystem; cloud-init grows it to the
/// VM's disk.
pub const DEBIAN_ROOT_SIZE: ByteSize = ByteSize::from_mib(2048);
/// Image Factory's nocloud disk image (`MinRAWDiskSize` in Talos' imager).
const TALOS_IMAGE_SIZE: ByteSize = ByteSize::from_mib(1246);
/// Talos' documented minimums (system requirements): 2 GiB of memory on a
/// control plane, 1 GiB on a worker, a 10 GiB system disk on either.
pub const TALOS_MIN_MEMORY: ByteSize = ByteSize::from_mib(2048);
pub const TALOS_MIN_WORKER_MEMORY: ByteSize = ByteSize::from_mib(1024);
pub const TALOS_MIN_DISK: ByteSize = ByteSize::from_mib(10 * 1024);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestOs {
    /// A baked Debian image, by image name, with the image's own extra
    /// packages (sorted, de-duplicated).
    Debian {
        image: String,
        packages: Vec<String>,
    },
    /// A Talos node: its role in the cluster, and the one NIC on the
    /// cluster bridge that its machine config, talosctl and the cluster's
    /// clients address.
    Talos(TalosGuest),
}

/// What makes a VM a Talos node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TalosGuest {
    pub role: TalosRole,
    pub nic: TalosNic,
}

impl TalosRole {
    /// Talos' `machine.type`.
    pub fn machine_type(self) -> &'static str {
        match self {
            TalosRole::ControlPlane => "controlplane",
            TalosRole::Worker => "worker",
        }
    }

    /// Whether the node runs etcd and the Kubernetes control plane (and
    /// may hold the API VIP).
    pub fn is_control_plane(self) -> bool {
        self == TalosRole::ControlPlane
    }

    /// The minimum memory Talos documents for the role.
    pub fn min_memory(self) -> ByteSize {
        match self {
            TalosRole::ControlPlane => TALOS_MIN_MEMORY,
            TalosRole::Worker => TALOS_MIN_WORKER_MEMORY,
        }
    }

    /// The ports a node of this role serves on its address: apid on
    /// every node, the Kubernetes API only on control planes.
    pub fn ports(self) -> &'static [u16] {
        match self {
            TalosRole::ControlPlane => &[KUBE_API_PORT, TALOS_API_PORT],
            TalosRole::Worker => &[TALOS_API_PORT],
        }
    }
}

impl std::fmt::Display for TalosRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TalosRole::ControlPlane => "control plane",
            TalosRole::Worker => "worker",
        })
    }
}

/// A Talos node's address on the cluster bridge and the router it routes
/// through. resolve gives every Talos node exactly this NIC, so nothing
/// downstream looks it up in `Vm::nics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TalosNic {
    /// The node's address, with the bridge's prefix length.
    pub address: Ipv4Net,
    pub gateway: Ipv4Addr,
}

/// A Talos node: its VM, its role and its NIC.
#[derive(Clone, Copy, Debug)]
pub struct TalosNode<'a> {
    pub vm: &'a Vm,
    pub role: TalosRole,
    pub nic: TalosNic,
}

impl<'a> TalosNode<'a> {
    pub fn name(&self) -> &'a str {
        &self.vm.name
    }

    /// Whether it is an etcd member and runs the control plane.
    pub fn is_control_plane(&self) -> bool {
        self.role.is_control_plane()
    }

    /// The node's address, as clients dial it.
    pub fn ip(&self) -> Ipv4Addr {
        self.nic.address.addr()
    }
}

impl GuestOs {
    /// The size of the disk image the OS boots from: a VM's disk holds it
    /// (Proxmox imports it, and disks only grow). Debian's is the GPT disk
    /// `waddle_images` writes: both partitions, 1 MiB aligned, plus 1 MiB at
    /// each end for the partition tables.
    pub fn boot_image_size(&self) -> ByteSize {
        match self {
            GuestOs::Debian { .. } => ByteSize::from_bytes(
                DEBIAN_ESP_SIZE.bytes()
                    + DEBIAN_ROOT_SIZE.bytes()
                    + 2 * ByteSize::from_mib(1).bytes(),
            ),
            GuestOs::Talos(_) => TALOS_IMAGE_SIZE,
        }
    }
}

/// The port of an `https://host:port/…` URL (443 without one): the Proxmox
/// API's port for the firewall check and the deploy guard, an app's port.
pub fn url_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://").map(|(_, rest)| rest)?;
    let authority = rest.split('/').next()?;
    match authority.rsplit_once(':') {
        Some((_, port)) => port.parse().ok(),
        None => Some(443),
    }
}

#[derive(Clone, Debug)]
pub struct Vm {
    pub id: u32,
    pub name: String,
    /// The node of the host it runs on (`Host::node`).
    pub host: String,
    pub os: GuestOs,
    /// Sorted, de-duplicated.
    pub tags: Vec<String>,
    pub cores: u32,
    pub memory: ByteSize,
    pub disk: ByteSize,
    pub cpu: CpuType,
    pub onboot: bool,
    pub nics: Vec<Nic>,
}

impl Vm {
    /// The IPv6 address of the NIC that holds the IPv4 `address`, if it
    /// has one: where a dual-stack forward or the edge reaches the VM.
    pub fn address6_beside(&self, address: Ipv4Addr) -> Option<Ipv6Addr> {
        self.nics
            .iter()
            .find(|nic| nic.address.addr() == address)?
            .address6
            .map(|net| net.addr())
    }
}

#[derive(Clone, Debug)]
pub struct Nic {
    pub bridge: BridgeName,
    /// Fixed MAC address (`bc:24:11:…`, Proxmox's prefix, lowercase), derived
    /// from the VMID and NIC index: seeds match NICs by it.
    pub mac: String,
    /// Address with the bridge's prefix length.
    pub address: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    /// IPv6 address with the bridge's `cidr6` prefix length, if the NIC
    /// has one.
    pub address6: Option<Ipv6Net>,
    /// IPv6 default route: the host's address on a masquerading bridge,
    /// for the NIC that has the IPv4 default route.
    pub gateway6: Option<Ipv6Addr>,
    /// The VLAN (1 to 4094) Proxmox puts the NIC on, on a VLAN-aware
    /// bridge; `None`: the bridge's untagged VLAN.
    pub tag: Option<u16>,
}

#[derive(Clone, Debug)]
pub struct Vip {
    pub name: String,
    pub address: Ipv4Addr,
    pub ports: Vec<Port>,
}

#[derive(Clone, Debug)]
pub struct TalosCluster {
    pub name: String,
    /// Sorted, de-duplicated: the schematic ID depends on the set, not the order.
    pub extensions: Vec<String>,
    /// In blueprint order.
    pub kernel_args: Vec<String>,
    /// Where the secrets bundle is kept (and the admin identity and the
    /// SSH host keys beside it).
    pub secrets: BundleStore,
    pub bridge: BridgeName,
    /// The Kubernetes API's floating address: a `Layer2VIPConfig` on every
    /// control plane (one holds it at a time), never on a worker.
    pub api_vip: Ipv4Addr,
    /// The Talos release, with its `v` (`versions.talos`).
    pub version: String,
    /// The Kubernetes release the nodes run (`versions.kubernetes`).
    pub kubernetes: String,
}

/// Where the Talos secrets bundle, the talosctl admin identity and the
/// Debian VMs' SSH host keys are kept: the blueprint's `talos.secrets`,
/// with `[talos.age]` for an `age:` one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BundleStore {
    /// A plain 0600 file, relative to the blueprint.
    File(String),
    /// A 1Password Document item, read and written with the `op` CLI.
    OnePassword {
        vault: String,
        item: String,
        file: String,
    },
    /// A file relative to the blueprint, encrypted with age to every
    /// recipient and decrypted with the identity the reference names.
    Age {
        path: String,
        recipients: Vec<AgeRecipient>,
        identity: SecretRef,
    },
}

impl std::fmt::Display for BundleStore {
    /// As the blueprint writes it (`file:…`, `op://…`, `age:…`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BundleStore::File(path) => write!(f, "file:{path}"),
            BundleStore::OnePassword { vault, item, file } => {
                write!(f, "op://{vault}/{item}/{file}")
            }
            BundleStore::Age { path, .. } => write!(f, "age:{path}"),
        }
    }
}

/// The Cilium chart's image tables (values paths). In 1.19.0 each has
/// `repository`, `tag`, `digest` (the operator's: one per cloud,
/// `genericDigest` for a generic cluster) and `useDigest`: a released chart
/// names every image by digest, and waddlec keeps it so.
pub const CILIUM_IMAGE_TABLES: &[&str] = &[
    "image",
    "operator.image",
    "envoy.image",
    "certgen.image",
    "hubble.relay.image",
    "hubble.ui.backend.image",
    "hubble.ui.frontend.image",
    "clustermesh.apiserver.image",
    "preflight.image",
    "preflight.envoy.image",
    "nodeinit.image",
    "standaloneDnsProxy.image",
    "authentication.mutual.spire.install.agent.image",
    "authentication.mutual.spire.install.server.image",
    "authentication.mutual.spire.install.initImage",
];

/// Cilium as the bootstrap Job installs it and Flux keeps it.
#[derive(Clone, Debug)]
pub struct CiliumInstall {
    /// The chart version.
    pub version: String,
    /// The Cilium CLI image the Job runs.
    pub cli_image: String,
    /// The Helm values: waddlec's fixed keys, its defaults and the
    /// blueprint's, merged and checked against the chart's schema.
    pub values: serde_json::Value,
}

/// Flux as the bootstrap installs it.
#[derive(Clone, Debug)]
pub struct Flux {
    pub url: GitUrl,
    pub branch: GitBranch,
    pub path: RepoPath,
    pub distribution: String,
    /// Read only by `waddlec cluster bootstrap`.
    pub deploy_key: SecretRef,
    pub known_hosts: Vec<KnownHost>,
    /// The Flux Operator release (`versions.flux_operator`).
    pub operator_version: String,
}

/// 1Password Connect's bootstrap credentials, read only by `waddlec cluster
/// bootstrap`.
#[derive(Clone, Debug)]
pub struct OnePasswordConnect {
    pub namespace: String,
    pub credentials: SecretRef,
    pub token: SecretRef,
}

/// The platform tree's settings, defaults applied.
#[derive(Clone, Debug)]
pub struct Platform {
    pub vault: String,
    pub storage_class: String,
    pub dataset: ZfsDataset,
    /// `TYPE BASE64` of democratic-csi's SSH key, without a comment.
    pub csi_public_key: String,
    /// The ZFS quota on `<dataset>/vols`, if the blueprint sets one.
    pub storage_quota: Option<ByteSize>,
    /// The host's address on the cluster bridge: democratic-csi's SSH and
    /// iSCSI target.
    pub storage_host: Ipv4Addr,
    pub backups: Backups,
    pub spicedb: SpiceDb,
    pub items: PlatformItems,
    pub gateway: Gateway,
    pub dns: DnsProvider,
    /// The host's public address, which `*.apps.<domain>` resolves to.
    pub public_address: Ipv4Addr,
    /// Its public IPv6 address, published too (AAAA) when a dual-stack
    /// forward carries the edge's HTTPS port to it.
    pub public_address6: Option<Ipv6Addr>,
    pub versions: PlatformVersions,
}

/// The pins of what the platform tree installs, defaults applied.
#[derive(Clone, Debug)]
pub struct PlatformVersions {
    pub democratic_csi: String,
    pub cert_manager: String,
    pub external_dns: String,
    pub external_secrets: String,
    pub onepassword_connect: String,
    pub cloudnative_pg: String,
    pub spicedb_operator: String,
    pub spicedb: String,
    pub cloudnative_pg_chart: String,
    pub barman_cloud_plugin_chart: String,
    pub democratic_csi_image: String,
}

/// The Cilium Gateway: named like its VIP, on the VIP's address, with a
/// listener for each port and host the edge sends to it.
#[derive(Clone, Debug)]
pub struct Gateway {
    pub name: String,
    pub address: Ipv4Addr,
    /// The edge's plain-HTTP target port, if it is this Gateway.
    pub http_port: Option<u16>,
    /// Each host the edge routes to the Gateway over TLS, and the port.
    pub https: Vec<(String, u16)>,
    /// The first wildcard among them, without `*.`: where apps live
    /// (`apps.example.org`).
    pub apps_domain: String,
}

#[derive(Clone, Debug)]
pub struct Backups {
    pub bucket: String,
    pub endpoint: HttpsUrl,
    pub region: S3Region,
    pub retention: String,
}

#[derive(Clone, Debug)]
pub struct SpiceDb {
    pub host: String,
    pub replicas: u32,
    pub instances: u32,
    pub storage: String,
    pub wal_storage: String,
    pub archive: Archive,
}

/// Which backups the database archives to, and which it was restored from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Archive {
    /// This life of the database: 1, then one more with each restore.
    pub generation: u32,
    /// The earlier generation whose backups it is created from
    /// (`bootstrap.recovery`), or none for an empty database (`initdb`).
    pub restore_from: Option<u32>,
}

/// Who writes the domain's records: cert-manager's DNS-01 solver and
/// External DNS, with the same credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsProvider {
    /// A token in `PlatformItems::cloudflare_token`.
    Cloudflare,
    /// Dynamic updates to an authoritative server, signed with the TSIG
    /// key whose secret is `PlatformItems::dns_tsig_key`.
    Rfc2136 {
        server: std::net::SocketAddr,
        tsig_key: String,
        algorithm: crate::blueprint::TsigAlgorithm,
    },
}

#[derive(Clone, Debug)]
pub struct PlatformItems {
    pub cloudflare_token: String,
    pub dns_tsig_key: String,
    pub s3_credentials: String,
    pub spicedb_preshared_key: String,
    pub spicedb_postgres: String,
    pub csi_ssh_key: String,
    pub iscsi_chap: String,
}

/// A concrete destination: an address and port on an internal network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The VM or VIP name the blueprint used.
    pub name: String,
    pub address: Ipv4Addr,
    pub port: Port,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SniHost {
    Exact(String),
    /// `*.apps.example.org`, matched as the suffix `.apps.example.org`.
    Wildcard {
        suffix: String,
    },
}

#[derive(Clone, Debug)]
pub struct SniRoute {
    pub host: SniHost,
    pub backend: Endpoint,
    /// Source networks admitted, IPv4 or IPv6; empty admits every source.
    pub allow: Vec<IpNet>,
}

#[derive(Clone, Debug)]
pub struct Edge {
    pub vm: String,
    /// The edge VM's IPv6 address, on the NIC that holds its internal
    /// IPv4 one: where the dual-stack forwards send IPv6 clients, and
    /// HAProxy then binds IPv6 too.
    pub address6: Option<Ipv6Addr>,
    pub https_port: Port,
    pub http_port: Port,
    /// Exact hosts first, then wildcards, each group in blueprint order.
    pub routes: Vec<SniRoute>,
    pub http: Option<Endpoint>,
}

/// The public IPv6 address clients reach the edge's HTTPS port on: the
/// public bridge's, when a dual-stack forward carries that port to the
/// edge. What the platform publishes as AAAA and preflight asks for.
pub fn edge_public_address6(
    edge: Option<&Edge>,
    forwards: &[PortForward],
    public: &Bridge,
) -> Option<Ipv6Addr> {
    let edge = edge?;
    let public = public.v6?;
    forwards
        .iter()
        .any(|f| f.to.name == edge.vm && f.to.port == edge.https_port && f.to6.is_some())
        .then_some(public.host_address)
}

#[derive(Clone, Debug)]
pub struct PortForward {
    pub protocol: Protocol,
    pub port: Port,
    pub to: Endpoint,
    /// The target's IPv6 address when the forward is dual stack (the
    /// public bridge has a `cidr6` and the forward did not opt out).
    pub to6: Option<Ipv6Addr>,
}

#[derive(Clone, Debug)]
pub struct Firewall {
    pub input_policy: Policy,
    /// The operator's rules from outside; what the VMs may reach on the
    /// host is [`Model::host_access`].
    pub temporary: Vec<TemporaryRule>,
}

impl Firewall {
    /// Whether the host's input firewall lets `ip` reach TCP `port`: an
    /// open policy, or a rule for that port whose source contains `ip`.
    /// The one answer the build's lock-out rule and deploy's guard share.
    pub fn admits_tcp(&self, ip: std::net::Ipv4Addr, port: u16) -> bool {
        self.input_policy == Policy::Accept
            || self.temporary.iter().any(|rule| {
                rule.protocol == Protocol::Tcp
                    && rule.port.0 == port
                    && rule.source.contains(&std::net::IpAddr::V4(ip))
            })
    }
}

#[derive(Clone, Debug)]
pub struct TemporaryRule {
    pub name: String,
    pub protocol: Protocol,
    pub port: Port,
    /// IPv4 or IPv6 (Proxmox's firewall takes both in one file).
    pub source: IpNet,
    pub expires: Date,
}

#[derive(Clone, Debug)]
pub struct Teleport {
    pub vm: String,
    pub public_host: String,
    pub web_port: Port,
    pub ssh_port: Port,
    pub tunnel_port: Port,
    pub app_subdomains: bool,
    /// The GitHub SSO connector; without it, local users only.
    pub github: Option<TeleportGithub>,
    pub roles: Vec<TeleportRole>,
    pub apps: Vec<TeleportApp>,
    pub kubernetes: Option<TeleportKubernetes>,
    /// The Teleport release (`versions.teleport`).
    pub version: String,
}

impl Teleport {
    /// Whether one of Teleport's apps fronts `port` (the Proxmox API, so
    /// the operator can reach it through Teleport when the firewall drops
    /// direct access).
    pub fn fronts_port(&self, port: u16) -> bool {
        self.apps.iter().any(|app| url_port(&app.uri) == Some(port))
    }

    /// Whether some role grants `login` on nodes (every role's node labels
    /// admit every node, the Proxmox host included).
    pub fn grants_login(&self, login: &str) -> bool {
        self.roles
            .iter()
            .any(|role| role.logins.iter().any(|l| l == login))
    }
}

#[derive(Clone, Debug)]
pub struct TeleportKubernetes {
    /// The Talos cluster it serves (Teleport's `kube_cluster_name`).
    pub cluster: String,
    pub kubeconfig: TeleportDataPath,
    /// The proxy's Kubernetes listener.
    pub port: Port,
}

#[derive(Clone, Debug)]
pub struct TeleportGithub {
    pub org: GithubOrg,
    pub client_id: OAuthClientId,
    pub client_secret: SecretRef,
    pub teams_to_roles: Vec<(String, Vec<String>)>,
}

#[derive(Clone, Debug)]
pub struct TeleportRole {
    pub name: String,
    pub logins: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct TeleportApp {
    pub name: String,
    pub public_host: String,
    pub uri: HttpUrl,
    pub insecure_skip_verify: bool,
}

impl Proxmox {
    /// The port the Proxmox API listens on, from its URL.
    pub fn api_port(&self) -> u16 {
        url_port(&self.api_url).unwrap_or(8006)
    }

    /// The host `api_url` reaches, whose certificate the API client pins.
    pub fn api_host(&self) -> &Host {
        self.host(&self.api_node)
            .expect("resolve names the API's node among the hosts")
    }

    /// The host named `node`.
    pub fn host(&self, node: &str) -> Option<&Host> {
        self.hosts.iter().find(|host| host.node == node)
    }

    /// The one host of a blueprint with `[host]`; `None` for a cluster.
    pub fn single_host(&self) -> Option<&Host> {
        match self.hosts.as_slice() {
            [host] if self.sdn.is_none() => Some(host),
            _ => None,
        }
    }

    /// Whether VMs on `storage` can be seen from every host.
    pub fn is_shared(&self, storage: &StorageId) -> bool {
        self.shared_storages.contains(storage)
    }
}

impl Host {
    /// The host's public address: its uplink's.
    pub fn public_address(&self) -> Ipv4Addr {
        self.bridges.public.host_address
    }
}

/// Whether etcd keeps its quorum when `lost` of its `members` are gone:
/// a majority must remain.
pub fn quorum_survives(members: usize, lost: usize) -> bool {
    members - lost.min(members) > members / 2
}

impl TalosCluster {
    /// The Kubernetes API on the VIP, as clients name it.
    pub fn api_url(&self) -> String {
        format!("https://{}:{KUBE_API_PORT}", self.api_vip)
    }
}

impl Model {
    /// The first host: a lone `[host]`, or a cluster's first
    /// `[[cluster.host]]`, whose SSH a cluster deploy's Talos tunnel goes
    /// through and whose storage democratic-csi uses. The API's host is
    /// `proxmox.api_host()`; what belongs to one host of a cluster is found
    /// by `host_of`, `proxmox.host(node)` or `storage_host`.
    pub fn host(&self) -> &Host {
        &self.proxmox.hosts[0]
    }

    /// The host whose ZFS pool democratic-csi's volumes come from, when
    /// there is a platform: the first host (`Platform::storage_host` is
    /// its address on the Talos bridge). Only it gets democratic-csi's
    /// user and admits its SSH and iSCSI; in a cluster the volumes are
    /// that one host's, reached across the VNet.
    pub fn storage_host(&self) -> Option<&Host> {
        self.platform.as_ref().map(|_| self.host())
    }

    /// The host `vm` runs on.
    pub fn host_of(&self, vm: &Vm) -> &Host {
        self.proxmox
            .host(&vm.host)
            .expect("resolve places every VM on a host of the blueprint")
    }

    /// The MTU of a NIC on `bridge` when it is a cluster's VNet: VXLAN's
    /// headers come out of the uplink's.
    pub fn vnet_mtu(&self, bridge: &BridgeName) -> Option<u16> {
        let sdn = self.proxmox.sdn.as_ref()?;
        sdn.vnets
            .iter()
            .any(|(vnet, _)| vnet == bridge)
            .then_some(sdn.mtu)
    }

    /// The VMs `host` runs, by VMID.
    pub fn vms_on<'a>(&'a self, host: &'a Host) -> impl Iterator<Item = &'a Vm> + 'a {
        self.vms.iter().filter(move |vm| vm.host == host.node)
    }

    /// The internal networks, as the first host has them: their names,
    /// networks and settings are every host's (only each host's own
    /// address on them differs).
    /// [`edge_public_address6`] of this platform.
    pub fn edge_address6(&self) -> Option<Ipv6Addr> {
        let edge = self.edge.as_ref()?;
        let host = self.host_of(self.vm(&edge.vm)?);
        edge_public_address6(Some(edge), &self.forwards, &host.bridges.public)
    }

    pub fn internal_bridges(&self) -> impl Iterator<Item = &Bridge> {
        self.proxmox.hosts[0].bridges.internal.iter()
    }

    /// The Talos nodes, control planes and workers, by VMID.
    pub fn talos_nodes(&self) -> impl Iterator<Item = TalosNode<'_>> {
        self.vms.iter().filter_map(|vm| match vm.os {
            GuestOs::Talos(TalosGuest { role, nic }) => Some(TalosNode { vm, role, nic }),
            GuestOs::Debian { .. } => None,
        })
    }

    /// The control-plane nodes, by VMID: etcd's members, the holders of
    /// the API VIP, talosctl's endpoints. resolve refuses a cluster
    /// without one (E0131).
    pub fn control_planes(&self) -> impl Iterator<Item = TalosNode<'_>> {
        self.talos_nodes().filter(|node| node.is_control_plane())
    }

    /// The worker nodes, by VMID: never etcd members.
    pub fn talos_workers(&self) -> impl Iterator<Item = TalosNode<'_>> {
        self.talos_nodes().filter(|node| !node.is_control_plane())
    }

    /// The node etcd is bootstrapped on: the first control plane by VMID.
    /// `None` only without a Talos cluster.
    pub fn bootstrap_node(&self) -> Option<TalosNode<'_>> {
        self.control_planes().next()
    }

    /// The order a rolling change goes through the nodes, one at a time:
    /// the control planes first (by VMID, so the bootstrap node leads),
    /// then the workers (by VMID). Kubernetes' skew policy wants the API
    /// servers upgraded before any kubelet, and etcd's quorum is checked
    /// between control planes.
    pub fn rollout_order(&self) -> Vec<TalosNode<'_>> {
        let mut nodes: Vec<TalosNode<'_>> = self.talos_nodes().collect();
        nodes.sort_by_key(|node| (node.role, node.vm.id));
        nodes
    }

    /// The Debian VMs, by VMID.
    pub fn debian_vms(&self) -> impl Iterator<Item = &Vm> {
        self.vms
            .iter()
            .filter(|vm| matches!(vm.os, GuestOs::Debian { .. }))
    }

    pub fn vm(&self, name: &str) -> Option<&Vm> {
        self.vms.iter().find(|vm| vm.name == name)
    }
}
