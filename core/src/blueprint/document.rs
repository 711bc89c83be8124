//! The blueprint document as the user wrote it: one Rust type per TOML table,
//! strict (`deny_unknown_fields`, like Butane), with spans on every value a
//! check may need to point at. Defaults live in `resolve`, not here, so that
//! this file reads as the reference of the language.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use schemars::JsonSchema;
use serde::Deserialize;

use super::located::Located;
use super::values::{BundleRef, Date, Port, SecretRef, Size, TargetRef};

/// A waddle blueprint: everything `waddlec build` needs to compile one platform.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Blueprint {
    /// Version of the blueprint language. This compiler reads version 1.
    pub version: Located<u32>,
    pub project: Project,
    pub operator: Operator,
    /// The one Proxmox host, when the platform runs on one. A blueprint has
    /// `[host]` or `[cluster]`, never both (E0160).
    pub host: Option<Host>,
    /// A Proxmox cluster of several hosts behind one API, instead of
    /// `[host]`: its `[[cluster.host]]`s, where VMs go, and the SDN network
    /// that carries the internal bridges across them.
    pub cluster: Option<Cluster>,
    /// Linux bridges on the Proxmox host. In a `[cluster]`, each host's
    /// public bridge names its `host`, and the internal ones are SDN VNets
    /// every host has.
    #[serde(rename = "bridge")]
    pub bridges: Vec<Bridge>,
    /// Disk images VMs boot from.
    #[serde(rename = "image", default)]
    pub images: Vec<Image>,
    /// Where the Debian images' packages come from.
    pub debian: Option<Debian>,
    /// Settings every VM gets unless it overrides them.
    #[serde(default)]
    pub vm_defaults: VmSettings,
    /// Ordinary (non-Talos) VMs.
    #[serde(rename = "vm", default)]
    pub vms: Vec<Vm>,
    /// Floating addresses announced by something other than a VM NIC (e.g. Cilium L2).
    #[serde(rename = "vip", default)]
    pub vips: Vec<Vip>,
    pub talos: Option<Talos>,
    /// The public SNI router.
    pub edge: Option<Edge>,
    /// Ports on the host's public address forwarded (DNAT) to internal VMs.
    #[serde(rename = "forward", default)]
    pub forwards: Vec<Forward>,
    pub firewall: Firewall,
    pub teleport: Option<Teleport>,
    /// GitOps: the Flux Operator and the `FluxInstance` that syncs the
    /// platform repository, installed with the cluster.
    pub flux: Option<Flux>,
    /// The 1Password Connect credentials `waddlec cluster bootstrap` puts
    /// into the cluster (External Secrets reads every other secret through
    /// Connect).
    pub onepassword_connect: Option<OnePasswordConnect>,
    /// The GitOps tree Flux syncs (`platform/` in the output): operators,
    /// certificates, storage, the gateway and SpiceDB.
    pub platform: Option<Platform>,
    /// The artifact store: an S3-compatible bucket holding the baked
    /// images under their content-hashed names. `build --with-secrets
    /// --push` (CI) uploads what it lacks; a build that cannot bake takes
    /// the images from it, verified by sha256; `deploy` has Proxmox
    /// download them from it. Seed disks, which hold secrets, never go
    /// there.
    pub artifacts: Option<Artifacts>,
    /// Component version pins: one place for every version of the platform.
    pub versions: Versions,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Project {
    /// Short name of the platform, used in generated comments and unit names.
    /// A DNS label (E0107).
    pub name: Located<String>,
    /// Public DNS domain; every SNI host must be under it. A DNS name (E0107).
    pub domain: Located<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    /// The operator's public address; temporary firewall rules admit it.
    pub ip: Located<Ipv4Addr>,
    /// Contact e-mail (ACME registration): letters, digits and `._%+-`
    /// before the `@`, a DNS name with a dot after it (E0004).
    pub email: Located<String>,
    /// Login created on Debian VMs for the operator. Default: `deploy`. A
    /// portable Unix login (E0120).
    pub login: Option<Located<String>>,
    /// SSH public keys installed for that login, one `TYPE BASE64 [COMMENT]`
    /// line each (E0004).
    pub ssh_keys: Located<Vec<Located<String>>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Proxmox node name (`pvesh get /nodes`). A DNS label (E0107).
    pub node: Located<String>,
    /// Proxmox API URL. Default: `https://<public address>:8006`; the internal
    /// address is not routable from a workstation. `https://` with a DNS or
    /// IPv4 host, letters, digits and `-._~:/` only (E0121).
    pub api: Option<Located<String>>,
    /// SSH target for host setup, deploy and cluster bootstrap. Default:
    /// `root@<public address>`. `user@host` of letters, digits and `._-`, not
    /// starting with `-` (E0121). `teleport:LOGIN@NODE` (e.g.
    /// `teleport:root@waddle-proxmox01`) goes through Teleport's proxy
    /// instead (`tsh proxy ssh`, after `tsh login`), the host being the
    /// `[teleport]`'s OpenSSH node (E0140) and LOGIN one a role grants
    /// (E0141); a deploy then logs in through it before anything else, and
    /// only then may the firewall drop the operator's direct SSH rule.
    pub ssh: Option<Located<String>>,
    /// SHA-256 fingerprint of the API's TLS certificate (`AB:CD:…`, as
    /// `pvenode cert info` prints it). Proxmox's certificate is self-signed:
    /// `waddlec deploy` trusts exactly this one and nothing else.
    pub api_fingerprint: Option<Located<String>>,
    /// Proxmox API token (`USER@REALM!TOKENID=SECRET`), as a secret reference.
    pub api_token: Located<SecretRef>,
    /// Storage that holds VM disks (e.g. a ZFS pool). A Proxmox storage ID:
    /// a letter, then letters, digits and `-_.` (E0120).
    pub disk_storage: Located<String>,
    /// Directory storage for images, ISOs, snippets and cloud-init drives. A
    /// Proxmox storage ID (E0120).
    pub file_storage: Located<String>,
    /// DNS servers for VMs and nodes.
    pub dns: Located<Vec<Located<Ipv4Addr>>>,
}

/// A Proxmox cluster (`pvecm`): several hosts, one API (any node answers
/// for all), one configuration in `/etc/pve`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// The cluster's API URL. Default: `https://<first host's public
    /// address>:8006`. Rules as `host.api` (E0121).
    pub api: Option<Located<String>>,
    /// Proxmox API token (`USER@REALM!TOKENID=SECRET`), as a secret
    /// reference: one for the cluster, whose users and ACLs are shared.
    pub api_token: Located<SecretRef>,
    /// DNS servers for VMs and nodes.
    pub dns: Located<Vec<Located<Ipv4Addr>>>,
    /// Storage IDs every host sees (`shared 1` in `storage.cfg`: NFS,
    /// Ceph…): an image on one is uploaded once, and a VM whose disks are
    /// on one migrates without copying them. A Proxmox storage ID each
    /// (E0120).
    #[serde(default)]
    pub shared_storages: Vec<Located<String>>,
    /// The private network between the hosts (e.g. the provider's private
    /// network, `172.16.0.0/24`): corosync, migrations and the VXLAN
    /// tunnels, none of which is encrypted, run on it, and the firewall's
    /// `local_network` (what the hosts accept cluster traffic from) is it.
    pub network: Located<Ipv4Net>,
    /// Where a Talos node without a `host` runs. `spread`: control planes
    /// first, each on the host with the fewest so far, then workers on the
    /// host with the fewest nodes, so that losing one host loses as few
    /// etcd members as it can (W0204 when it still loses the quorum); a
    /// `[[vm]]` always names its host. Default: every machine names its
    /// host (E0165).
    pub placement: Option<Located<Placement>>,
    /// The SDN zone that carries the internal bridges across the hosts.
    #[serde(default)]
    pub sdn: ClusterSdn,
    /// The cluster's nodes, at least two (E0160).
    #[serde(rename = "host")]
    pub hosts: Located<Vec<ClusterHost>>,
}

/// How machines without a `host` are placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// Talos nodes round the hosts, control planes first.
    Spread,
}

/// The VXLAN zone of the cluster's internal network.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterSdn {
    /// Zone ID: a lowercase letter, then up to 7 lowercase letters or
    /// digits (Proxmox's `pve-sdn-zone-id`; E0120). Default: `wdlc`.
    pub zone: Option<Located<String>>,
    /// MTU of the zone's VNets and of every VM NIC on them: VXLAN over
    /// IPv4 takes 50 bytes of the uplink's 1500. 1280 to 9000. Default:
    /// 1450.
    pub mtu: Option<Located<u16>>,
}

/// One node of a `[cluster]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterHost {
    /// Proxmox node name (`pvecm nodes`). A DNS label (E0107), each once.
    pub node: Located<String>,
    /// SSH target for this host's setup, as `host.ssh` (E0121). Default:
    /// `root@<its public address>`.
    pub ssh: Option<Located<String>>,
    /// SHA-256 fingerprint of this node's API certificate, as
    /// `host.api_fingerprint`: any node may answer the cluster's API.
    pub api_fingerprint: Option<Located<String>>,
    /// Storage for this host's VM disks (E0120).
    pub disk_storage: Located<String>,
    /// Directory storage for this host's images and seeds (E0120).
    pub file_storage: Located<String>,
    /// This host's own address on each internal bridge (`{ vmbr1 =
    /// "10.10.0.2" }`): the default route of the machines it runs, which
    /// it masquerades and forwards to. Every internal bridge, each address
    /// once (E0163).
    pub addresses: Option<Located<BTreeMap<String, Located<Ipv4Addr>>>>,
    /// Its address on `cluster.network`: where corosync, migrations and
    /// the other hosts' VXLAN traffic reach it (E0163).
    pub underlay: Located<Ipv4Addr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BridgeRole {
    /// Carries the host's public address and uplink.
    Public,
    /// A private network behind the host.
    Internal,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bridge {
    /// A Linux interface name: 1–15 letters, digits and `_-.`, a letter or
    /// digit first (E0120).
    pub name: Located<String>,
    pub role: Located<BridgeRole>,
    /// The network on this bridge, e.g. `10.10.0.0/24`.
    pub cidr: Located<Ipv4Net>,
    /// The host's own address on this bridge. In a `[cluster]`, a public
    /// bridge's is its host's public address, and an internal bridge has
    /// none here: each `[[cluster.host]]` gives its own in `addresses`
    /// (E0163).
    pub host_address: Option<Located<Ipv4Addr>>,
    /// In a `[cluster]`: the `[[cluster.host]]` whose uplink a public
    /// bridge is (E0161). Each host has exactly one.
    pub host: Option<Located<String>>,
    /// In a `[cluster]`: the VXLAN network identifier of an internal
    /// bridge, which becomes an SDN VNet of that name on every host
    /// (1 to 16777215, one per bridge; E0164).
    pub vni: Option<Located<u32>>,
    /// Upstream router (public bridges only).
    pub gateway: Option<Located<Ipv4Addr>>,
    /// The bridge's IPv6 prefix (optional: without it the bridge is IPv4
    /// only). On the public bridge a global unicast prefix, the one the
    /// provider routes to the host (Scaleway: the server's /64 or a part of
    /// the delegated /48); on an internal bridge a unique local one
    /// (`fd00::/8`), which the host forwards to and, with `masquerade`,
    /// NATs out of the public bridge's address (E0144).
    pub cidr6: Option<Located<Ipv6Net>>,
    /// The host's own IPv6 address on this bridge, inside `cidr6` (E0143);
    /// required with `cidr6` (E0146).
    pub host_address6: Option<Located<Ipv6Addr>>,
    /// IPv6 upstream router (public bridge with `cidr6` only, required
    /// there: E0146): an address in `cidr6` or a link-local one such as
    /// `fe80::1`, which is what many providers announce.
    pub gateway6: Option<Located<Ipv6Addr>>,
    /// Masquerade this network's traffic out of the public bridge (internal bridges only).
    #[serde(default)]
    pub masquerade: bool,
    /// VLAN-aware (Proxmox's `bridge_vlan_aware`): a VM NIC on it may carry
    /// a VLAN `tag`. Internal bridges only: waddlec creates those, and only
    /// checks the public one (E0113). Default: `false`.
    pub vlan_aware: Option<Located<bool>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ImageOs {
    Debian,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// A DNS label (E0107).
    pub name: Located<String>,
    pub os: ImageOs,
    /// Debian packages baked in on top of the guest's own (kernel, systemd,
    /// openssh-server, cloud-init, qemu-guest-agent) and of what the VM's
    /// role needs (`haproxy` on the edge VM, Teleport's binaries on the
    /// Teleport VM). Debian package names (E0120).
    #[serde(default)]
    pub packages: Vec<Located<String>>,
}

/// The Debian archive the images are built from.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Debian {
    /// A snapshot.debian.org timestamp (`20251120T000000Z`): the images get
    /// the packages of that moment, today and in ten years. It is also the
    /// time stamped on every file in the images (E0004).
    pub snapshot: Located<String>,
    /// A live mirror (`http://deb.debian.org/debian`) instead of the
    /// snapshot, for networks that cannot reach snapshot.debian.org. The
    /// packages then follow the archive, so images are not reproducible over
    /// time (warning W0202). `http(s)://` with a DNS or IPv4 host, letters,
    /// digits and `-._~:/` only (E0121).
    pub mirror: Option<Located<String>>,
}

/// VM settings that can be given once in `[vm_defaults]` and overridden
/// per VM (`[talos.node_defaults]` has the same, and a role).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmSettings {
    pub cores: Option<Located<u32>>,
    pub memory: Option<Located<Size>>,
    pub disk: Option<Located<Size>>,
    /// CPU type; `host` exposes x86-64-v2 (talosctl and Teleport need it).
    /// Letters, digits and `-_.+`, a letter or digit first (E0120).
    pub cpu: Option<Located<String>>,
    pub onboot: Option<bool>,
    /// Proxmox tags, appended to the defaults' tags: lowercase letters,
    /// digits and `_+.-` (E0120).
    pub tags: Option<Vec<Located<String>>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Vm {
    /// Proxmox VMID.
    pub id: Located<u32>,
    /// VM name, also its hostname: a lowercase DNS label (E0107).
    pub name: Located<String>,
    /// Name of an `[[image]]` (E0110).
    pub image: Located<String>,
    /// In a `[cluster]`: the `[[cluster.host]]` it runs on (E0161).
    /// Required there: a VM's forwards and the edge's public address are
    /// its host's.
    pub host: Option<Located<String>>,
    pub cores: Option<Located<u32>>,
    pub memory: Option<Located<Size>>,
    pub disk: Option<Located<Size>>,
    pub cpu: Option<Located<String>>,
    pub onboot: Option<bool>,
    pub tags: Option<Vec<Located<String>>>,
    pub nics: Located<Vec<Nic>>,
    /// What the VM serves besides what waddlec runs on it (SSH on tcp/22,
    /// and the edge's or Teleport's ports on their VMs): the software the
    /// operator puts on it, e.g. `[{ port = 25 }, { port = 51820, protocol
    /// = "udp" }]`. Forwards and SNI routes may target a declared service
    /// of their protocol (E0111); a service listed twice (E0127) or on a
    /// port waddlec's own software holds (E0150) is refused.
    #[serde(default)]
    pub services: Vec<Located<Service>>,
}

/// A port a VM serves, with its protocol.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub port: Located<Port>,
    /// Default: `tcp`.
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Nic {
    /// Name of a `[[bridge]]` (E0110).
    pub bridge: Located<String>,
    /// Address on that bridge; the prefix length comes from the bridge.
    pub address: Located<Ipv4Addr>,
    /// IPv6 address on that bridge, inside its `cidr6` (E0143), claimed by
    /// nothing else (E0145). Optional: without it the NIC is IPv4 only.
    /// The NIC's IPv6 default route goes with its IPv4 one: the host's
    /// `host_address6` on an internal bridge that `masquerade`s (when the
    /// public bridge has IPv6), the public bridge's `gateway6` on it.
    pub address6: Option<Located<Ipv6Addr>>,
    /// Default route through this NIC. Default: the bridge's router when the VM
    /// has a single untagged NIC.
    pub gateway: Option<Located<Ipv4Addr>>,
    /// VLAN ID, 1 to 4094 (E0122): Proxmox puts the NIC on that VLAN of the
    /// bridge, which must be `vlan_aware` (E0135); the guest sees untagged
    /// frames. The NIC then shares a segment only with NICs of the same tag,
    /// not with the host's address on the bridge (its untagged VLAN), so it
    /// gets no default route unless `gateway` names a router on its VLAN.
    /// The address is still in the bridge's `cidr`.
    pub tag: Option<Located<u16>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Vip {
    /// A lowercase DNS label (E0107).
    pub name: Located<String>,
    pub address: Located<Ipv4Addr>,
    /// Ports something listens on at this address.
    pub ports: Vec<Located<Port>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Talos {
    /// Cluster name: a DNS label (E0107).
    pub cluster: Located<String>,
    /// System extensions baked into the Image Factory schematic (sorted and
    /// de-duplicated: the set, not the order, decides the schematic ID).
    /// `NAMESPACE/NAME` in lowercase letters, digits and `-_.` (E0120).
    #[serde(default)]
    pub extensions: Vec<Located<String>>,
    /// Extra kernel arguments baked into the schematic, in order. One
    /// argument each: letters, digits and `._/=,:+-`, not starting with `-`
    /// (E0120).
    #[serde(default)]
    pub kernel_args: Vec<Located<String>>,
    /// Where the Talos secrets bundle (`talosctl gen secrets` format) is
    /// kept, with the talosctl admin identity and the Debian VMs' SSH host
    /// keys beside it: `file:PATH` (0600, keep it out of git), `age:PATH`
    /// (encrypted to `[talos.age]`'s recipients, may be committed) or
    /// `op://VAULT/ITEM/FILE` (a 1Password Document item). Paths are
    /// relative to the blueprint (E0130). `waddlec secrets init` creates or
    /// imports it there.
    pub secrets: Located<BundleRef>,
    /// How an `age:` bundle is encrypted and decrypted; only with one.
    pub age: Option<TalosAge>,
    /// Bridge the nodes live on (E0110).
    pub bridge: Located<String>,
    /// Floating Kubernetes API address (port 6443).
    pub api_vip: Located<Ipv4Addr>,
    /// Settings every node gets unless it overrides them.
    #[serde(default)]
    pub node_defaults: TalosNodeDefaults,
    /// The cluster's nodes. At least one is a control plane (E0131); an
    /// odd number of control planes is what etcd's quorum wants (W0203).
    #[serde(rename = "node")]
    pub nodes: Vec<TalosNode>,
    /// The CNI, installed at bootstrap by an in-cluster Job.
    #[serde(default)]
    pub cilium: Cilium,
}

/// The age store of an `age:` Talos bundle: every file of it (bundle,
/// admin identity, SSH host keys) is encrypted to all `recipients`, and
/// read with `identity`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TalosAge {
    /// age X25519 recipients (`age1…`, as `age-keygen -y` prints them),
    /// one per operator or machine that may read the bundle. At least one
    /// (E0125); each a recipient (E0004).
    pub recipients: Vec<Located<String>>,
    /// The age identity (`AGE-SECRET-KEY-1…`, an `age-keygen` file) that
    /// decrypts the store, by reference: `op://`, `env:WADDLE_…` or
    /// `file:PATH` (E0130). Never the identity itself.
    pub identity: Located<SecretRef>,
}

/// Cilium, installed by the machine configs' inline manifests: Gateway API
/// CRDs, then a Job running the pinned Cilium CLI with these values.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cilium {
    /// Helm values merged over waddlec's (`operator.replicas`, `hubble`, …).
    /// Checked against the chart's values schema, and every key must exist in
    /// the chart: a misspelled or removed key (`externalIPs.enabled` in 1.19)
    /// is an error, not a silent no-op. Keys the cluster depends on
    /// (kube-proxy replacement, KubePrism, Talos cgroups, L2 announcements,
    /// Gateway API) are waddlec's and cannot be overridden.
    pub values: Option<Located<serde_json::Map<String, serde_json::Value>>>,
}

/// Flux, installed with the cluster: the Flux Operator and a `FluxInstance`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Flux {
    /// The platform repository, over SSH (`ssh://git@github.com/org/platform.git`):
    /// a plain user, a DNS or IPv4 host not starting with `-`, a path;
    /// letters, digits and `-._~:/@` only (E0121).
    pub url: Located<String>,
    /// Branch to sync. Default: `main`. Letters, digits and `._/-`; no `..`,
    /// `//` or leading `-`, no part starting with `.` or ending in `.lock`
    /// (E0120).
    pub branch: Option<Located<String>>,
    /// Directory in the repository. Default: `clusters/<talos.cluster>`.
    /// Relative, `/`-separated names of letters, digits and `._-`, none
    /// starting with `.` (no `..`, `.github`, `.git`) or `-` (E0129).
    pub path: Option<Located<String>>,
    /// Flux distribution version (a semver range the operator resolves).
    /// Default: `2.7.x`, the newest the Flux Operator 0.40 bundles. Numbers
    /// and `x` (`2.7.x`, `2.7.0`) (E0004).
    pub distribution: Option<Located<String>>,
    /// The deploy key: an SSH private key with read access to `url`. Applied
    /// by `waddlec cluster bootstrap`, never written into an artifact.
    pub deploy_key: Located<SecretRef>,
    /// The git server's host keys, as `ssh-keyscan` prints them (public):
    /// one `HOSTS KEYTYPE KEY` line per entry, no marker (`@cert-authority`)
    /// and no wildcard host (E0004).
    pub known_hosts: Located<Vec<Located<String>>>,
}

/// The platform tree: what the cluster runs, rendered for Flux.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    /// The 1Password vault External Secrets reads every credential from
    /// (through Connect). Credentials are never in the tree: only the item
    /// names below. Letters, digits, space and `._-` (E0120).
    pub vault: Located<String>,
    pub storage: PlatformStorage,
    pub backups: PlatformBackups,
    #[serde(default)]
    pub spicedb: PlatformSpiceDb,
    /// 1Password item titles; each default is shown.
    #[serde(default)]
    pub items: PlatformItems,
    /// Who serves the domain's DNS, for cert-manager's DNS-01 challenges
    /// and External DNS's records. Default: Cloudflare.
    #[serde(default)]
    pub dns: PlatformDns,
}

/// The DNS provider cert-manager and External DNS both write the domain's
/// records with.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlatformDns {
    /// `cloudflare` (default): a token in the 1Password item
    /// `items.cloudflare_token`. `rfc2136`: dynamic updates (RFC 2136) to
    /// your own authoritative server (BIND, Knot, PowerDNS…), signed with a
    /// TSIG key whose secret is the item `items.dns_tsig_key`; the server
    /// must also allow that key zone transfers (AXFR), which External DNS
    /// reads the zone with.
    pub provider: Option<Located<DnsProviderName>>,
    /// `rfc2136`: the authoritative server, `ADDRESS:PORT`
    /// (`192.0.2.53:53`, `[2001:db8::53]:53`). An address, not a name: the
    /// DNS it would be resolved with is what it serves.
    pub server: Option<Located<std::net::SocketAddr>>,
    /// `rfc2136`: the TSIG key's name as the server knows it
    /// (`externaldns`): letters, digits and `.-_` (E0120).
    pub tsig_key: Option<Located<String>>,
    /// `rfc2136`: `hmac-sha256` (default) or `hmac-sha512`, the algorithms
    /// cert-manager and External DNS both speak.
    pub tsig_algorithm: Option<Located<TsigAlgorithm>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DnsProviderName {
    Cloudflare,
    Rfc2136,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum TsigAlgorithm {
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    #[serde(rename = "hmac-sha512")]
    HmacSha512,
}

/// democratic-csi: ZFS zvols on the Proxmox host, shared over iSCSI.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlatformStorage {
    /// The default StorageClass. Default: `zfs-iscsi`. A lowercase DNS
    /// label (E0107).
    pub class: Option<Located<String>>,
    /// The ZFS dataset on the host that holds `vols/` and `snaps/`
    /// (`rpool/k8s`). The host setup creates both. Names of letters, digits
    /// and `_-.:` each starting with a letter or digit (E0120).
    pub dataset: Located<String>,
    /// The public half of democratic-csi's SSH key (its private half is the
    /// 1Password item `items.csi_ssh_key`). The host setup authorizes it for
    /// the `democratic-csi` user, from the cluster's nodes only, for its
    /// forced command only. `TYPE BASE64 [COMMENT]` (E0004).
    pub ssh_public_key: Located<String>,
    /// The most all volumes together may take (`200G`): a ZFS quota on
    /// `<dataset>/vols`, so the driver's delegated `volsize` and
    /// `refreservation` cannot fill the host's pool. Without it, only the
    /// pool's size bounds them.
    pub quota: Option<Located<Size>>,
}

/// PostgreSQL WAL and base backups (Barman Cloud) in S3-compatible storage.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlatformBackups {
    /// A lowercase DNS label (E0107).
    pub bucket: Located<String>,
    /// `https://s3.fr-par.scw.cloud`: `https://` with a DNS or IPv4 host,
    /// letters, digits and `-._~:/` only (E0121).
    pub endpoint: Located<String>,
    /// `fr-par`: lowercase letters, digits and `-` (E0120). A literal in the
    /// External Secrets template of the backup credentials.
    pub region: Located<String>,
    /// How long backups are kept. Default: `30d`. `<days>d`, `<weeks>w` or
    /// `<months>m` (E0004).
    pub retention: Option<Located<String>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlatformSpiceDb {
    /// Host under `apps.<domain>`. Default: `spicedb`. A lowercase DNS
    /// label (E0107).
    pub host: Option<Located<String>>,
    /// SpiceDB replicas. Default: 2.
    pub replicas: Option<Located<u32>>,
    /// PostgreSQL instances (one primary, the rest replicas). Default: 2.
    pub instances: Option<Located<u32>>,
    /// Data volume per instance (`10Gi`). Default: `10Gi`. Digits and
    /// `Mi`, `Gi` or `Ti` (E0007).
    pub storage: Option<Located<String>>,
    /// WAL volume per instance. Default: `5Gi` (E0007).
    pub wal_storage: Option<Located<String>>,
    /// The backup generation this database archives as: its server name
    /// in the bucket is `spicedb-pg` for 1 and `spicedb-pg-g<N>` after, so
    /// each life of the database keeps its own WAL and base backups.
    /// Default: 1. Raise it by one with every restore (`restore_from`).
    pub generation: Option<Located<u32>>,
    /// Create the database by restoring the backups of this earlier
    /// generation (CloudNativePG's `bootstrap.recovery`) instead of an
    /// empty one (`initdb`): set it for the rebuild after a disaster, with
    /// `generation` raised past it, so Flux's first apply is the restore.
    /// A generation of this blueprint's history: 1 ≤ N < `generation`
    /// (E0136).
    pub restore_from: Option<Located<u32>>,
}

/// The 1Password items the ExternalSecrets read (by title). Each title is
/// letters, digits, space and `._-` (E0120).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlatformItems {
    /// Field `credential`: a Cloudflare token with Zone:DNS:Edit and
    /// Zone:Zone:Read on the domain. Default: `cloudflare-api-token`. Read
    /// only with `dns.provider = "cloudflare"`.
    pub cloudflare_token: Option<Located<String>>,
    /// Field `credential`: the TSIG key's secret, base64 as the server's
    /// `key` clause has it. Default: `dns-tsig-key`. Read only with
    /// `dns.provider = "rfc2136"`.
    pub dns_tsig_key: Option<Located<String>>,
    /// Fields `access-key-id`, `secret-access-key`. Default: `s3-backups`.
    pub s3_credentials: Option<Located<String>>,
    /// Field `credential`. Default: `spicedb-preshared-key`.
    pub spicedb_preshared_key: Option<Located<String>>,
    /// Field `password`: SpiceDB's PostgreSQL role. Default: `spicedb-postgres`.
    pub spicedb_postgres: Option<Located<String>>,
    /// Field `private key`: democratic-csi's SSH key for the host, in
    /// OpenSSH format (`-----BEGIN OPENSSH PRIVATE KEY-----`; its SSH
    /// library reads no PKCS#8, which is what Connect returns for an SSH Key
    /// item's own key field, so keep the OpenSSH export in a concealed field
    /// of that name). Default: `democratic-csi-ssh`.
    pub csi_ssh_key: Option<Located<String>>,
    /// Fields `username`, `password`: the CHAP credentials every iSCSI
    /// target of democratic-csi demands and every node presents (letters,
    /// digits, `.`, `_`, `-`; 12 to 16 characters for the password suit
    /// every initiator). Default: `democratic-csi-iscsi-chap`.
    pub iscsi_chap: Option<Located<String>>,
}

/// The artifact store, an S3-compatible bucket (Scaleway Object Storage:
/// endpoint `https://s3.fr-par.scw.cloud`, region `fr-par`). Objects are
/// addressed path-style (`ENDPOINT/BUCKET/KEY`) and signed with AWS
/// Signature Version 4.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Artifacts {
    /// `https://s3.fr-par.scw.cloud`: `http(s)://` with a DNS or IPv4
    /// host, letters, digits and `-._~:/` only (E0121). Proxmox downloads
    /// from it too, so it must be reachable from the host.
    pub endpoint: Located<String>,
    /// `fr-par`: lowercase letters, digits and `-` (E0120). Part of every
    /// request's signature.
    pub region: Located<String>,
    /// 3–63 lowercase letters, digits, `.` and `-`, a letter or digit
    /// first and last (E0120).
    pub bucket: Located<String>,
    /// A directory inside the bucket the keys start with (`waddle`).
    /// Default: none. `/`-separated names of letters, digits and `._-`,
    /// none starting with `.` or `-` (E0129).
    pub prefix: Option<Located<String>>,
    /// The access key ID, as a secret reference (`op://`, `env:`, `file:`).
    pub access_key_id: Located<SecretRef>,
    /// The secret access key, as a secret reference.
    pub secret_access_key: Located<SecretRef>,
}

/// 1Password Connect's bootstrap credentials.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OnePasswordConnect {
    /// Namespace the Connect server runs in. Default: `onepassword`. A
    /// lowercase DNS label (E0107).
    pub namespace: Option<Located<String>>,
    /// The `1password-credentials.json` of the Connect server.
    pub credentials: Located<SecretRef>,
    /// The Connect access token External Secrets uses.
    pub token: Located<SecretRef>,
}

/// What a Talos node is in the cluster: Talos' `machine.type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, JsonSchema)]
pub enum TalosRole {
    /// Runs etcd, the Kubernetes API server, controller manager and
    /// scheduler (and workloads too), and holds the API VIP when elected.
    /// The default.
    #[default]
    #[serde(rename = "controlplane")]
    ControlPlane,
    /// Runs the kubelet and workloads only: never an etcd member, never
    /// the API VIP; its config carries no CA key and no control-plane
    /// component.
    #[serde(rename = "worker")]
    Worker,
}

/// `[talos.node_defaults]`: the VM settings of `[vm_defaults]`, and the
/// role every node has unless it says otherwise.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TalosNodeDefaults {
    /// Default: `controlplane`.
    pub role: Option<Located<TalosRole>>,
    pub cores: Option<Located<u32>>,
    pub memory: Option<Located<Size>>,
    pub disk: Option<Located<Size>>,
    /// CPU type; `host` exposes x86-64-v2 (talosctl and Teleport need it).
    /// Letters, digits and `-_.+`, a letter or digit first (E0120).
    pub cpu: Option<Located<String>>,
    pub onboot: Option<bool>,
    /// Proxmox tags, appended to the defaults' tags: lowercase letters,
    /// digits and `_+.-` (E0120).
    pub tags: Option<Vec<Located<String>>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TalosNode {
    pub id: Located<u32>,
    /// Node name, also its hostname: a lowercase DNS label (E0107).
    pub name: Located<String>,
    pub address: Located<Ipv4Addr>,
    /// `controlplane` or `worker`. Default: `[talos.node_defaults] role`,
    /// else `controlplane`.
    pub role: Option<Located<TalosRole>>,
    /// In a `[cluster]`: the `[[cluster.host]]` it runs on (E0161).
    /// Default: where `cluster.placement` puts it.
    pub host: Option<Located<String>>,
    pub cores: Option<Located<u32>>,
    pub memory: Option<Located<Size>>,
    pub disk: Option<Located<Size>>,
    pub cpu: Option<Located<String>>,
    pub onboot: Option<bool>,
    pub tags: Option<Vec<Located<String>>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    /// The VM that runs HAProxy (E0110).
    pub vm: Located<String>,
    /// Default: 443.
    pub https_port: Option<Located<Port>>,
    /// Default: 80.
    pub http_port: Option<Located<Port>>,
    /// SNI routes, tried exact hosts first; anything unmatched is dropped.
    #[serde(rename = "route", default)]
    pub routes: Vec<SniRoute>,
    /// Where plain HTTP goes (usually the gateway's :80 for the HTTPS redirect).
    pub http: Option<HttpRoute>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SniRoute {
    /// An exact host (`teleport.example.org`) or a wildcard (`*.apps.example.org`),
    /// under `project.domain` (E0107, E0108, E0109).
    pub sni: Located<String>,
    pub to: Located<TargetRef>,
    /// Only these source networks may use this route; everyone else's
    /// connection is closed. The edge sees real client addresses (the host
    /// forwards without rewriting the source), so this is where a source
    /// allow-list is enforced; nothing behind the TLS passthrough can.
    /// IPv4 or IPv6 networks; an IPv6 one only when the edge has an IPv6
    /// address (E0147). Default: every source.
    #[serde(default)]
    #[schemars(schema_with = "ip_networks")]
    pub allow: Option<Located<Vec<Located<IpNet>>>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpRoute {
    pub to: Located<TargetRef>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// As iptables and the blueprint spell it: `tcp`, `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Forward {
    /// Port on the host's public address.
    pub port: Located<Port>,
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,
    pub to: Located<TargetRef>,
    /// Forward the port on the public bridge's IPv6 address too, to the
    /// target's IPv6 address, which it then must have (E0142). Default:
    /// `true` when the public bridge has a `cidr6`; `false` keeps the
    /// forward IPv4 only (a VIP, which has no IPv6 address).
    pub ipv6: Option<Located<bool>>,
}

/// A list of IPv4 or IPv6 networks. `IpNet`'s own schema is a `oneOf`
/// whose IPv6 pattern also matches every IPv4 network, so it would refuse
/// them all; `anyOf` says what is meant.
fn ip_networks(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": ["array", "null"],
        "items": {
            "anyOf": [
                generator.subschema_for::<Ipv4Net>(),
                generator.subschema_for::<Ipv6Net>(),
            ]
        }
    })
}

/// One IPv4 or IPv6 network, or none (see `ip_networks`).
fn ip_network(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "anyOf": [
            generator.subschema_for::<Ipv4Net>(),
            generator.subschema_for::<Ipv6Net>(),
            { "type": "null" },
        ]
    })
}

fn default_protocol() -> Protocol {
    Protocol::Tcp
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Policy {
    Drop,
    Reject,
    Accept,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Firewall {
    /// Policy for traffic to the host itself (Proxmox cluster firewall).
    pub input_policy: Located<Policy>,
    /// Refused (E0128): it accepted everything from a bridge. The host
    /// admits each VM to exactly the host services it uses.
    #[serde(default)]
    pub allow_bridges: Vec<Located<String>>,
    /// Rules that exist only until their `expires` date (e.g. operator SSH
    /// before Teleport is up).
    #[serde(rename = "temporary", default)]
    pub temporary: Vec<Located<TemporaryRule>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemporaryRule {
    /// A DNS label (E0107).
    pub name: Located<String>,
    /// Port on the host.
    pub port: Located<Port>,
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,
    /// Source network, IPv4 or IPv6 (an IPv6 one only when the public
    /// bridge has a `cidr6`, E0147). Default: the operator's address.
    #[serde(default)]
    #[schemars(schema_with = "ip_network")]
    pub source: Option<Located<IpNet>>,
    /// Last day the rule may exist. Required: a temporary rule without an end is
    /// a permanent hole.
    pub expires: Option<Located<Date>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Teleport {
    /// The VM that runs Teleport (E0110).
    pub vm: Located<String>,
    /// Public host name of the proxy (served on :443 through the edge),
    /// under `project.domain` (E0107, E0108).
    pub public_host: Located<String>,
    /// Web and API listener behind the edge. Default: 3080.
    pub web_port: Option<Located<Port>>,
    /// SSH proxy (`tsh ssh`). Default: 3023.
    pub ssh_port: Option<Located<Port>>,
    /// Reverse tunnel; without it apps and nodes cannot register. Default: 3024.
    pub tunnel_port: Option<Located<Port>>,
    /// Serve apps without their own `public_host` at `<app>.<public_host>`;
    /// the edge must then route `*.<public_host>` to Teleport.
    #[serde(default)]
    pub app_subdomains: bool,
    /// Single sign-on through a GitHub organisation's teams (Teleport
    /// Community's connector). Without it Teleport authenticates local
    /// users only (`tctl users add NAME --roles=ROLE`, each with a second
    /// factor). Other connector kinds (OIDC, SAML: Teleport Enterprise)
    /// would be tables beside this one.
    pub github: Option<TeleportGithub>,
    #[serde(rename = "role", default)]
    pub roles: Vec<TeleportRole>,
    #[serde(rename = "app", default)]
    pub apps: Vec<TeleportApp>,
    /// Give Teleport access to the Talos cluster's Kubernetes API.
    pub kubernetes: Option<TeleportKubernetes>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TeleportKubernetes {
    /// Path of the kubeconfig on the Teleport VM (installed by `waddlec
    /// cluster bootstrap`, never from the blueprint). A file under
    /// `/var/lib/teleport/`: names of letters, digits and `._-`, none
    /// starting with `.` or `-` (E0129).
    pub kubeconfig: Located<String>,
    /// The proxy's Kubernetes listener (`kube_listen_addr`), which
    /// `tsh kube` reaches on the public host: forward it. Default: 3026.
    pub port: Option<Located<Port>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TeleportGithub {
    /// The GitHub organisation: letters, digits and single `-`, not first or
    /// last (E0120).
    pub org: Located<String>,
    /// The OAuth app's client ID: letters, digits and `._-` (E0120).
    pub client_id: Located<String>,
    pub client_secret: Located<SecretRef>,
    /// Team slug → Teleport roles. Slugs are matched exactly (no wildcards).
    pub teams_to_roles: Located<Vec<TeamMapping>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamMapping {
    /// A GitHub team slug, exact and lowercase (E0120).
    pub team: Located<String>,
    /// Roles of `[[teleport.role]]` or Teleport's own (E0110).
    pub roles: Vec<Located<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TeleportRole {
    /// A DNS label (E0107).
    pub name: Located<String>,
    /// Unix logins the role may use (E0120).
    pub logins: Vec<Located<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TeleportApp {
    /// A DNS label (E0107).
    pub name: Located<String>,
    /// Under `project.domain` (E0107, E0108).
    pub public_host: Located<String>,
    /// `http(s)://` with a DNS or IPv4 host, no credentials; letters,
    /// digits and `-._~:/` only (E0121).
    pub uri: Located<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// The component version table. Every version is an exact pin: numbers and
/// dots, optionally after `v` (E0119). A pin is required only where its
/// component is used (E0003 names the component): a blueprint without
/// `[talos]` pins no Talos, Kubernetes or Cilium, one without `[platform]`
/// none of the platform tree's charts.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Versions {
    /// The Proxmox VE release of the host.
    pub proxmox: Located<String>,
    /// The Debian release the images are baked from (`12`). Needed with a
    /// `[[vm]]`.
    pub debian: Option<Located<String>>,
    /// Talos, with its `v` (`v1.12.4`). Needed with `[talos]`.
    pub talos: Option<Located<String>>,
    /// Needed with `[talos]`.
    pub kubernetes: Option<Located<String>>,
    /// Needed with `[teleport]`.
    pub teleport: Option<Located<String>>,
    /// The Cilium chart. Needed with `[talos]`.
    pub cilium: Option<Located<String>>,
    /// The Cilium CLI image (`quay.io/cilium/cilium-cli`) that installs
    /// Cilium at bootstrap. Default: `v0.19.0`.
    pub cilium_cli: Option<Located<String>>,
    /// The democratic-csi chart. Needed with `[platform]`.
    pub democratic_csi: Option<Located<String>>,
    /// Needed with `[flux]`.
    pub flux_operator: Option<Located<String>>,
    /// Needed with `[platform]`.
    pub cert_manager: Option<Located<String>>,
    /// Needed with `[platform]`.
    pub external_dns: Option<Located<String>>,
    /// Needed with `[platform]`.
    pub external_secrets: Option<Located<String>>,
    /// Needed with `[platform]`.
    pub onepassword_connect: Option<Located<String>>,
    /// Needed with `[platform]`.
    pub cloudnative_pg: Option<Located<String>>,
    /// Needed with `[platform]`.
    pub spicedb_operator: Option<Located<String>>,
    /// SpiceDB itself (the operator's stable channel). Default: `v1.47.1`.
    pub spicedb: Option<Located<String>>,
    /// The `cloudnative-pg` chart shipping `cloudnative_pg`. Default: `0.27.1`.
    pub cloudnative_pg_chart: Option<Located<String>>,
    /// The `plugin-barman-cloud` chart. Default: `0.5.0` (plugin v0.11.0).
    pub barman_cloud_plugin_chart: Option<Located<String>>,
    /// The democratic-csi driver image (the chart defaults to `latest`).
    /// Default: `v1.9.4`.
    pub democratic_csi_image: Option<Located<String>>,
}

/// The overridable settings of one VM or node, borrowed from wherever they
/// were written (defaults table, `[[vm]]` or `[[talos.node]]`).
pub struct SettingsRef<'a> {
    pub cores: Option<&'a Located<u32>>,
    pub memory: Option<&'a Located<Size>>,
    pub disk: Option<&'a Located<Size>>,
    pub cpu: Option<&'a Located<String>>,
    pub onboot: Option<bool>,
    pub tags: &'a [Located<String>],
}

macro_rules! settings_ref {
    ($($ty:ty),*) => {$(
        impl $ty {
            pub fn settings(&self) -> SettingsRef<'_> {
                SettingsRef {
                    cores: self.cores.as_ref(),
                    memory: self.memory.as_ref(),
                    disk: self.disk.as_ref(),
                    cpu: self.cpu.as_ref(),
                    onboot: self.onboot,
                    tags: self.tags.as_deref().unwrap_or_default(),
                }
            }
        }
    )*};
}

settings_ref!(VmSettings, Vm, TalosNodeDefaults, TalosNode);
