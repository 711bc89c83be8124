//! The catalogue of named checks. Each rule has a stable code, a kebab-case
//! name, and an explanation of why it exists (`waddlec explain CODE`).
//! Codes are never reused: a retired rule keeps its number. Retired: E0115
//! `invalid-setting`, a catch-all split into E0118–E0125 and E0004.

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug)]
pub struct Rule {
    pub code: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    pub explanation: &'static str,
}

macro_rules! rules {
    ($($ident:ident = $code:literal $name:literal $severity:ident: $explanation:literal;)*) => {
        $(pub static $ident: Rule = Rule {
            code: $code,
            name: $name,
            severity: Severity::$severity,
            explanation: $explanation,
        };)*

        /// Every rule, in code order.
        pub static ALL: &[&Rule] = &[$(&$ident),*];
    };
}

rules! {
    TOML_SYNTAX = "E0001" "toml-syntax" Error:
        "The file is not valid TOML. Nothing else can be checked until it parses. TOML files \
         are UTF-8: a file in another encoding (Latin-1, UTF-16) is refused at its first byte \
         that is not UTF-8.";
    UNKNOWN_KEY = "E0002" "unknown-key" Error:
        "Blueprints are strict, like Butane configs: a key the language does not define is an \
         error, never silently ignored, because a misspelled key (`memroy = \"8G\"`) would \
         otherwise fall back to a default and the platform would differ from what the file says. \
         `waddlec schema` prints the JSON Schema with every key.";
    MISSING_KEY = "E0003" "missing-key" Error:
        "A key without a sensible default is missing. That includes a `[versions]` pin a \
         component the blueprint uses needs (`talos` and `kubernetes` for `[talos]`, \
         `teleport` for `[teleport]`, …): the finding points at the component. Pins of \
         components the blueprint does not use are not needed.";
    INVALID_VALUE = "E0004" "invalid-value" Error:
        "A value has the wrong type or spelling: an address that does not parse (or an IPv6 \
         one where an IPv4 address is asked: IPv6 goes in the `…6` keys), an unknown enum variant, a target that is not \
         `NAME:PORT`, an e-mail address (letters, digits and `._%+-` before the `@`: no quote, \
         `$`, backtick or space, which a YAML or shell reader could act on), SSH public key, \
         certificate fingerprint, Debian snapshot timestamp, backup retention or Flux version \
         that is not written the way it must be, or a `known_hosts` entry that is not exactly \
         one `HOSTS KEYTYPE KEY` line: a newline would let one entry smuggle a second key (an \
         `@cert-authority *` line trusting a key for every host) into the Secret Flux \
         trusts, where no reviewer sees it.";
    UNSUPPORTED_VERSION = "E0005" "unsupported-version" Error:
        "Every blueprint names the version of the language it is written in, so that a future \
         change of meaning is never applied silently to an old file.";
    LITERAL_SECRET = "E0006" "literal-secret" Error:
        "Blueprints live in git and reach the review tree, CI logs and diffs. A secret written \
         into one is leaked. Secret fields take references only: `op://VAULT/ITEM/FIELD` \
         (1Password), `env:NAME` or `file:PATH`. The diagnostic deliberately does not print the \
         offending line.";
    INVALID_SIZE = "E0007" "invalid-size" Error:
        "Sizes are a whole number with a binary unit: `512M`, `8G`, `1T`. A bare number is \
         refused because Proxmox reads it as MiB in one place and bytes in another.";
    PORT_OUT_OF_RANGE = "E0008" "port-out-of-range" Error:
        "A port is a whole number from 1 to 65535.";
    ADDRESS_OUTSIDE_NETWORK = "E0101" "address-outside-network" Error:
        "An address on a bridge must lie inside that bridge's CIDR, and must not be its network \
         or broadcast address; otherwise the VM has no route to its neighbours.";
    DUPLICATE_ADDRESS = "E0102" "duplicate-address" Error:
        "Two things claim the same address on one L2 segment (the host, a VM NIC, a Talos node or \
         a VIP). ARP then answers for whichever replies first and traffic goes to the wrong \
         machine intermittently. A classic case: giving the HAProxy VM the host's own public \
         address on the public bridge while the host also DNATs to it.";
    DUPLICATE_VMID = "E0103" "duplicate-vmid" Error:
        "Proxmox VMIDs are unique per host; the second `qm create` would fail or, worse, a deploy \
         would treat one VM as the other.";
    DUPLICATE_NAME = "E0104" "duplicate-name" Error:
        "Names of VMs, nodes, VIPs, bridges, images and rules identify them in routes, forwards \
         and generated files, so each must be unique within its kind (VMs, Talos nodes and VIPs \
         share one namespace because routes can target any of them).";
    DUPLICATE_HOSTNAME = "E0105" "duplicate-hostname" Error:
        "Two machines with the same hostname confuse DNS, Teleport node lists and Kubernetes \
         node names. Hostnames compare case-insensitively.";
    VIP_COLLISION = "E0106" "vip-collision" Error:
        "A floating address (Kubernetes API VIP, Cilium gateway VIP) must not equal a node, the \
         host, a gateway or another VIP: the announcer would fight the owner for the address.";
    INVALID_DNS_NAME = "E0107" "invalid-dns-name" Error:
        "Host names follow RFC 1123: labels of letters, digits and hyphens, 1 to 63 characters, \
         not starting or ending with a hyphen, 253 characters in all.";
    HOST_OUTSIDE_DOMAIN = "E0108" "host-outside-domain" Error:
        "Every public name the edge serves must be under the project's domain: certificates, DNS \
         records and the SNI router all assume it, and a stray name is usually a typo.";
    MALFORMED_WILDCARD = "E0109" "malformed-wildcard" Error:
        "A wildcard is `*.` followed by a DNS name (`*.apps.example.org`). `*` elsewhere, a bare \
         `*` or `*apps.example.org` cannot be expressed safely: the SNI router matches a \
         wildcard as the suffix `.apps.example.org` including the leading dot, so that \
         `evilapps.example.org` and `apps.example.org.evil.org` never match.";
    UNDEFINED_TARGET = "E0110" "undefined-target" Error:
        "A route, forward or setting names a VM, VIP, bridge or image that the blueprint does \
         not define.";
    PORT_NOT_LISTENING = "E0111" "port-not-listening" Error:
        "A route or forward sends traffic to a port nothing on the target listens on, or with \
         a protocol the service there does not speak (a UDP forward to HAProxy or Teleport, \
         which serve TCP only; an SNI route, which is TLS over TCP, to a UDP service). A VM \
         listens on what waddlec runs there (SSH, the edge's HTTPS/HTTP ports, Teleport's web, \
         SSH-proxy and tunnel ports, the Talos and Kubernetes APIs), all TCP, and on the \
         `services` a `[[vm]]` declares with their protocol (`services = [{ port = 25 }, \
         { port = 51820, protocol = \"udp\" }]`); a VIP lists its `ports`, which are TCP \
         (the Cilium gateway and the Kubernetes API).";
    TEMPORARY_RULE_WITHOUT_LIFETIME = "E0112" "temporary-rule-without-lifetime" Error:
        "The seed's 'temporary' operator SSH rule had no end and stayed open. A temporary rule \
         must say when it expires (`expires = 2026-12-31`) so that builds warn once it is due.";
    ROLE_MISMATCH = "E0113" "role-mismatch" Error:
        "A setting is used where its role does not fit: a gateway or masquerade on the wrong kind \
         of bridge, a forward to a VM that is not on an internal bridge, more than one public \
         bridge, a public bridge marked `vlan_aware` (waddlec only checks the uplink, it \
         creates and changes internal bridges), or more than one default route on a VM.";
    DUPLICATE_ROUTE = "E0114" "duplicate-route" Error:
        "The same SNI host or forwarded port appears twice; only one of them could ever match. \
         In a `[cluster]` each host forwards its own public address: a port may be forwarded \
         once per host (to VMs on different hosts).";
    VMID_OUT_OF_RANGE = "E0116" "vmid-out-of-range" Error:
        "Proxmox VMIDs are 100 to 999999999; lower numbers are reserved.";
    UNROUTED_PUBLIC_HOST = "E0117" "unrouted-public-host" Error:
        "Teleport's public host and every Teleport app host reach Teleport only through the \
         edge's SNI router. A name Teleport serves but the edge does not route to Teleport's web \
         port is unreachable from the internet (the seed's `proxmox.` host needed its own route).";
    VERSION_SKEW = "E0118" "version-skew" Error:
        "A component version the rest of the platform does not support. waddlec renders \
         machine configs for one Talos release (v1.12.x), and Talos 1.12 runs Kubernetes 1.30 \
         to 1.35 only (its support matrix): an older kubelet is refused by its machinery, a \
         newer one is untested and meets unknown fields. Cilium's values schema and the \
         Debian release the images are baked from are pinned the same way.";
    UNPINNED_VERSION = "E0119" "unpinned-version" Error:
        "Versions are exact pins (`1.19.0`, `v1.12.4`), never ranges (`18.x`) or `latest`, so \
         the same blueprint builds the same platform next year. Talos versions carry their `v`, \
         as Image Factory and installer tags do.";
    INVALID_IDENTIFIER = "E0120" "invalid-identifier" Error:
        "A name handed to another system is not spelled the way that system accepts it: a Linux \
         interface (bridge) name, a Proxmox storage ID, tag or CPU type, a Unix login, a GitHub \
         organisation, OAuth client ID or team slug (Teleport matches slugs exactly and \
         lowercase; `*` is a literal, not a wildcard), a Talos extension or kernel argument, a \
         Debian package, a 1Password vault or item title, a ZFS dataset, a git branch, an S3 \
         region. It would fail at deploy time, far from the blueprint, or be read as something \
         else by a shell or a parser: a name starting with `-` is an option to `zfs`, `ip` or \
         `pvesm`, a quote or `$(…)` reaches a shell, and `{{ .SECRET_ACCESS_KEY }}` as a region \
         would copy the S3 key into the region through the External Secrets template. Each is a \
         conservative allow-list; `docs/blueprint-strings.md` lists them.";
    INVALID_LOCATION = "E0121" "invalid-location" Error:
        "Where something is reached or kept is not usable: the Proxmox API must be an https \
         URL, the host's SSH target `user@host` with both parts, Flux's repository an `ssh://` \
         URL (it pulls with a deploy key) with a plain user and a host not starting with `-` \
         (`ssh://-oProxyCommand=…` is an option to ssh), a Debian mirror or backup endpoint a \
         plain http(s) URL, a Teleport app an http(s) URI, and the Talos secrets bundle a \
         `file:` reference (`waddlec secrets init` writes it). URLs hold letters, digits and \
         `-._~:/@` only, name a DNS or IPv4 host, and carry no password, query or fragment.";
    OUT_OF_RANGE = "E0122" "out-of-range" Error:
        "A count outside what its consumer accepts: VM cores are 1 to 512 (Proxmox's limit), \
         a NIC's VLAN tag 1 to 4094 (Proxmox's `tag`; 0 and 4095 are reserved), SpiceDB \
         replicas and PostgreSQL instances 1 to 9.";
    MACHINE_TOO_SMALL = "E0123" "machine-too-small" Error:
        "A machine's memory or disk is below what its guest needs. A disk smaller than the \
         image it boots cannot hold it (Proxmox imports the image, and disks only grow). Talos \
         documents minimums (system requirements): a control-plane node needs 2 GiB of memory \
         and 10 GiB of disk (workers 1 GiB and 10 GiB; every node waddlec makes is a control \
         plane), or etcd and the EPHEMERAL partition run out and the node never becomes Ready.";
    FIXED_SETTING = "E0124" "fixed-setting" Error:
        "A Helm value waddlec sets itself because the cluster depends on it (kube-proxy \
         replacement, KubePrism, Talos' cgroups, L2 announcements, Gateway API) cannot be \
         overridden from the blueprint; the reason is in the message. So can nothing of the \
         chart's image tables but `pullPolicy`: its images run by the digests the chart \
         names, pinned in the lock file.";
    EMPTY_LIST = "E0125" "empty-list" Error:
        "A list that must name at least one thing is written empty: `ssh_keys = []` lets nobody \
         log in, `dns = []` leaves machines without resolvers, a VM without `nics` has no \
         network, `teams_to_roles = []` admits nobody through GitHub, `known_hosts = []` makes \
         Flux refuse the server, `allow = []` admits no source. Remove the key where it has a \
         default, or fill it.";
    OPERATOR_LOCKED_OUT = "E0126" "operator-locked-out" Error:
        "With `input_policy = \"DROP\"` or `\"REJECT\"` the host admits only what a rule \
         allows. If no rule admits the operator's address (`operator.ip`) to the Proxmox API \
         port over TCP, and no Teleport app fronts the API, the first firewall deploy cuts the \
         operator off the API that every later deploy needs (the seed lost its API exactly \
         this way). A rule for the API port from someone else's network does not count: it \
         admits them, not the operator. An operator address on an internal network is refused \
         too: the host drops an internal bridge's traffic, beyond the VMs' own services, before \
         any rule for the operator. `waddlec deploy` checks the same again before it touches \
         the firewall.";
    DUPLICATE_PORT = "E0127" "duplicate-port" Error:
        "A list of ports names one port twice (a VIP's `ports`, a VM's `services` with the \
         same protocol). Nothing breaks, but it is nearly always a typo for another port, \
         which then is not served.";
    BRIDGE_ACCEPTS_EVERYTHING = "E0128" "bridge-accepts-everything" Error:
        "`firewall.allow_bridges` accepted everything arriving on a bridge: sshd, the Proxmox \
         API, the iSCSI target and rpcbind were open to every VM on it, the internet-facing \
         edge VM included. The host firewall now admits each VM to exactly the host services \
         it uses (SSH and iSCSI from the Talos nodes for democratic-csi, SSH and the API from \
         the Teleport VM) and drops everything else from the internal bridges, so the setting \
         is refused: remove it.";
    UNSAFE_PATH = "E0129" "unsafe-path" Error:
        "A path something is written to is outside where it belongs. Teleport's kubeconfig is \
         installed as root by `waddlec cluster bootstrap`, which also creates its directory \
         0700: anywhere but under `/var/lib/teleport/` (`/`, `/etc/…`, `..`) it would replace \
         or lock a system file. `flux.path` is where `platform publish` writes and owns files \
         in the platform repository: it is relative, without `..`, and never enters a hidden \
         directory such as `.github` (a workflow there runs in CI) or `.git`.";
    UNCONFINED_SECRET = "E0130" "unconfined-secret" Error:
        "A secret reference reaches outside what the operator keeps for this platform. The \
         blueprint is reviewed input, but whatever it names is read on the operator's machine \
         and lands in the deployable tree (a VM's seed disk, a Secret): `file:~/.ssh/id_ed25519` \
         or `env:AWS_SECRET_ACCESS_KEY` would copy the operator's own credentials onto a VM. \
         So a `file:` path is relative, without `~`, and stays in the blueprint's directory or \
         goes up only into a `secrets/` directory (`file:../secrets/cluster.yaml`); when it is \
         read, the file itself (symbolic links followed) must be under the blueprint's \
         directory, the project's `secrets/` or a directory the operator lists in \
         `WADDLEC_SECRET_DIRS`. An `env:` name is `WADDLE_` followed by capitals, digits and \
         `_`: export the value under such a name. References are one line.";
    NO_CONTROL_PLANE = "E0131" "no-control-plane" Error:
        "Every node of the Talos cluster is a worker (`role = \"worker\"` on each \
         `[[talos.node]]`, or in `[talos.node_defaults]` with no node overriding it). Workers \
         run only the kubelet and workloads: etcd, the Kubernetes API server, the controller \
         manager and the scheduler run on control planes, etcd is bootstrapped on the first \
         one, the API VIP moves between them and talosctl talks to them. A cluster without one \
         never starts. Make at least one node a control plane (the default role); three \
         survive the loss of any one of them.";
    UNUSED_SETTING = "E0132" "unused-setting" Error:
        "A setting that only means something beside another is given without it: \
         `[talos.age]` (the recipients and identity of an age-encrypted bundle) with a \
         `talos.secrets` that is not `age:`. It is refused rather than ignored, because a \
         reader would believe the bundle is encrypted to those recipients when it is not. \
         Write `talos.secrets = \"age:PATH\"` or remove the table.";
    UNANNOUNCED_VIP = "E0133" "unannounced-vip" Error:
        "A `[[vip]]` is a floating address that nothing configures on a NIC: the Talos \
         cluster's Cilium answers ARP for it (an L2 announcement from the nodes' `eth0`). \
         Without a `[talos]` cluster nobody announces it, and a VIP on a bridge the Talos \
         nodes are not on cannot be announced by them, since ARP does not cross bridges. The \
         edge and the port forwards would still send traffic to it, into nothing. Put the \
         VIP on `talos.bridge`'s network, add the cluster, or remove the VIP and route to a \
         VM instead.";
    EDGE_WITHOUT_ROUTES = "E0134" "edge-without-routes" Error:
        "An `[edge]` without any `[[edge.route]]` runs HAProxy on the public ports and \
         drops every TLS connection, since only a matching SNI route forwards one, and its \
         plain-HTTP redirect leads to that same nothing. It is nearly always a route \
         forgotten or written under the wrong table. Add a route, or remove `[edge]` (and \
         the forwards to it).";
    BRIDGE_NOT_VLAN_AWARE = "E0135" "bridge-not-vlan-aware" Error:
        "A VM NIC with a VLAN `tag` is on a bridge that is not VLAN-aware. Proxmox tags a \
         NIC's traffic by making the port a member of that VLAN on a VLAN-aware bridge; on a \
         plain Linux bridge it adds a VLAN sub-interface and a second bridge on the host \
         instead, a network waddlec neither made nor shows, and the VM would not share a \
         segment with the bridge's other machines either way. Set `vlan_aware = true` on the \
         bridge (waddlec creates internal bridges with `bridge_vlan_aware`), or remove the \
         tag.";
    UNKNOWN_RESTORE_GENERATION = "E0136" "unknown-restore-generation" Error:
        "`platform.spicedb.restore_from` names a backup generation that is not in the \
         blueprint's history: the generations before the current one, 1 up to \
         `generation - 1`. The database archives each generation under its own server name \
         (`spicedb-pg`, `spicedb-pg-g2`, …), so restoring from the current generation or a \
         later one would read backups that do not exist yet, or that the restored database is \
         about to write. After a disaster, raise `generation` by one and set `restore_from` to \
         the generation that was lost; `generation` itself starts at 1.";
    DNS_SETTING_FOR_OTHER_PROVIDER = "E0137" "dns-setting-for-other-provider" Error:
        "A `[platform.dns]` key belongs to another DNS provider than the one chosen: \
         `server`, `tsig_key` and `tsig_algorithm` configure RFC 2136 dynamic updates, and \
         the Cloudflare provider (the default) reads only its API token. Left in place it \
         would be silently ignored, and a reader would believe the records go where it says. \
         Remove the key, or set `provider = \"rfc2136\"`.";
    SERVICE_PORT_TAKEN = "E0150" "service-port-taken" Error:
        "A `[[vm]]` declares a service on a TCP port that software waddlec runs on that VM \
         already holds: SSH on 22, and on the edge's or Teleport's VM their public ports. \
         Two programs cannot listen on one port, and routes and forwards may already target \
         waddlec's own (`edge:443`, `teleport:3023`) without declaring it. Move the service \
         to a free port, or remove the entry.";
    SSH_THROUGH_ABSENT_TELEPORT = "E0140" "ssh-through-absent-teleport" Error:
        "`host.ssh = \"teleport:LOGIN@NODE\"` reaches the host through Teleport's proxy \
         (`tsh proxy ssh`), which only the blueprint's own Teleport can be: without a \
         `[teleport]` table there is no proxy to go through and no node resource that makes \
         the host one of its nodes. Add `[teleport]`, or write `host.ssh` as a direct \
         `user@host`.";
    TELEPORT_LOGIN_NOT_GRANTED = "E0141" "teleport-login-not-granted" Error:
        "`host.ssh = \"teleport:LOGIN@NODE\"` logs in through Teleport as LOGIN, and \
         Teleport lets a user log in to a node only as one of the logins their roles grant. \
         If no `[[teleport.role]]` lists LOGIN, every deploy through Teleport is refused \
         (\"access denied\"), and once the direct SSH rule is gone nothing else reaches the \
         host. Add LOGIN to a role's `logins`, or log in as one the roles grant.";
    HOST_OR_CLUSTER = "E0160" "host-or-cluster" Error:
        "A blueprint says where its VMs run in exactly one way: `[host]` for one Proxmox host, \
         or `[cluster]` with two or more `[[cluster.host]]`s for the nodes of one Proxmox \
         cluster. With neither nothing can be deployed; with both, or a cluster of one host, \
         the reader cannot tell which is meant. Keep one; a cluster of one host is `[host]`.";
    UNKNOWN_HOST = "E0161" "unknown-host" Error:
        "A `host` names where something runs: a VM, a Talos node or a host's uplink bridge. It \
         must be the `node` of a `[[cluster.host]]`, and only a `[cluster]` has hosts to choose \
         from; an internal bridge spans every host and names none. Name one of the cluster's \
         hosts, or remove `host`.";
    ONE_UPLINK_PER_HOST = "E0162" "one-uplink-per-host" Error:
        "Every host of a cluster has exactly one public bridge (`role = \"public\"`, `host = \
         \"NODE\"`): its public address, gateway, port forwards and NAT. A host without one \
         could not masquerade its VMs; a host with two leaves it unclear which address the \
         forwards are on. Give each `[[cluster.host]]` one public bridge.";
    HOST_ADDRESSES = "E0163" "host-addresses" Error:
        "In a cluster, each internal bridge is one network on every host, and each host is the \
         router of the VMs it runs: so each `[[cluster.host]]` gives its own address on every \
         internal bridge in `addresses = { BRIDGE = \"ADDRESS\" }`, inside the bridge's \
         `cidr`, and the bridge itself has no `host_address`. List every internal bridge in \
         each host's `addresses`, and only those.";
    VNET_IDENTIFIER = "E0164" "vnet-identifier" Error:
        "A cluster's internal bridge becomes an SDN VNet of its zone, which Proxmox carries \
         between the hosts as VXLAN: it needs a VXLAN network identifier (`vni`, 1 to \
         16777215) of its own, and a name Proxmox accepts for a VNet (2 to 8 lowercase \
         letters and digits, a letter first). A `vni` anywhere else would be ignored. \
         Give each internal bridge of a cluster a distinct `vni` and a short name.";
    UNPLACED_MACHINE = "E0165" "unplaced-machine" Error:
        "In a cluster every VM runs on one host, which decides its gateway, its disks' storage \
         and whose public address its forwards use. A `[[vm]]` names its `host`; a Talos node \
         names one, or `cluster.placement = \"spread\"` places it. Add `host = \"NODE\"`, or \
         set `placement` in `[cluster]`.";
    SHARED_PUBLIC_ADDRESS = "E0166" "shared-public-address" Error:
        "Two hosts of a cluster claim one public address. The address's traffic, its port \
         forwards and the DNS names pointing at it can reach one machine only. Give each \
         host's public bridge the address the provider assigned to that server.";
    FORWARD_ACROSS_HOSTS = "E0167" "forward-across-hosts" Error:
        "In a cluster each host holds the forwards on its own public address, to the VMs it \
         runs, and is their router: the reply to a translated request must leave through the \
         host that translated it. A forward's target is therefore a `[[vm]]` (which stays on \
         its host), never a VIP, which moves between Talos nodes on any host. Forward to a VM; \
         reach a VIP through the edge's routes.";
    API_NOT_A_HOST = "E0168" "api-not-a-host" Error:
        "Every node of a Proxmox cluster answers the API for all, each with its own \
         certificate. deploy, status and host init pin the certificate of the node `cluster.api` \
         reaches, so the URL must name one host of the cluster: its node name (or \
         `NODE.domain`), its public address or its address on the hosts' network.";
    QUORUM_LOST_WITH_HOST = "W0204" "quorum-lost-with-host" Warning:
        "etcd runs on every control plane and works only while a majority of them agree. When \
         one host runs so many control planes that losing it loses that majority, one host \
         failure takes the Kubernetes API down with it. With three hosts or more, put the \
         control planes on different hosts (`host`, or `cluster.placement = \"spread\"`); with \
         fewer, no placement survives losing the wrong host. `--strict` makes this fatal.";
    FORWARD_WITHOUT_IPV6 = "E0142" "forward-without-ipv6" Error:
        "A public IPv6 address cannot be translated to an IPv4 one by the host's DNAT: a \
         forward is dual stack (the public bridge has a `cidr6`, and the forward does not say \
         `ipv6 = false`) only if its target has an IPv6 address too, on an internal bridge \
         with a `cidr6`; and `ipv6 = true` needs a public bridge with a `cidr6`. Give the \
         target's NIC an `address6`, or set `ipv6 = false` to keep the forward IPv4 only \
         (a VIP has no IPv6 address).";
    IPV6_ADDRESS_OUTSIDE_PREFIX = "E0143" "ipv6-address-outside-prefix" Error:
        "An IPv6 address on a bridge must lie inside that bridge's `cidr6` (and a `cidr6` is \
         written as its network, without host bits); an `address6` on a bridge without \
         `cidr6` has no prefix to live in. Otherwise the host has no route to it and the \
         forwards would send traffic nowhere.";
    IPV6_PREFIX_SCOPE = "E0144" "ipv6-prefix-scope" Error:
        "The public bridge's `cidr6` is the global unicast prefix the provider routes to the \
         host (`2000::/3`); an internal bridge's is a unique local prefix (`fd00::/8`, RFC \
         4193), which the internet never routes, so nothing reaches an internal network but \
         through the host's forwards. A ULA prefix on the uplink would reach nobody, and a \
         global one inside would be routable around the forwards.";
    DUPLICATE_IPV6_ADDRESS = "E0145" "duplicate-ipv6-address" Error:
        "Two things claim the same IPv6 address on one bridge (the host's `host_address6`, \
         a NIC's `address6`). Neighbour discovery then answers for whichever replies first, \
         and traffic goes to the wrong machine intermittently (and duplicate address \
         detection may disable the address on one of them).";
    IPV6_BRIDGE_INCOMPLETE = "E0146" "ipv6-bridge-incomplete" Error:
        "A bridge's IPv6 side is `cidr6` with the host's `host_address6` in it, and on the \
         public bridge also `gateway6`, the upstream router (in the prefix, or link-local \
         like `fe80::1`); without the router the host has no IPv6 default route. An internal \
         bridge has no upstream router: the host is its router.";
    IPV6_SOURCE_WITHOUT_IPV6 = "E0147" "ipv6-source-without-ipv6" Error:
        "An IPv6 source where nothing is reachable over IPv6: a route's `allow` list names \
         an IPv6 network but the edge has no IPv6 address, or a `[[firewall.temporary]]` \
         rule's `source` is IPv6 but the public bridge has no `cidr6`. No IPv6 client can \
         get there, so the entry admits nobody and a reader would believe otherwise. Give \
         the edge VM an `address6` (and the public bridge a `cidr6`), or remove the entry.";
    TEMPORARY_RULE_EXPIRED = "W0201" "temporary-rule-expired" Warning:
        "A temporary firewall rule is past its `expires` date. It is still rendered (builds do \
         not depend on the clock), but it should be removed from the blueprint now; \
         `--strict` makes this fatal.";
    LIVE_DEBIAN_MIRROR = "W0202" "live-debian-mirror" Warning:
        "`[debian] mirror` bakes the Debian images from a live mirror, whose packages change \
         with every point release and security update: the same blueprint then bakes different \
         images next month. Without `mirror`, images come from the pinned snapshot.debian.org \
         timestamp (and the lock file pins that snapshot's `InRelease`). Use a live mirror only \
         where snapshot.debian.org is unreachable; `--strict` makes this fatal.";
    EVEN_CONTROL_PLANES = "W0203" "even-control-planes" Warning:
        "The Talos cluster has an even number of control planes. Every control plane is an \
         etcd member, and etcd only works while a majority of its members agree (2 of 2, 3 of \
         4): two control planes survive no failure, no better than one, and four survive one, \
         no better than three — each extra member is one more that can fail and one more to \
         replicate every write to. Run 1, 3 or 5 control planes, and make the rest workers \
         (`role = \"worker\"`). `--strict` makes this fatal.";
}

pub fn find(code_or_name: &str) -> Option<&'static Rule> {
    ALL.iter()
        .copied()
        .find(|rule| rule.code.eq_ignore_ascii_case(code_or_name) || rule.name == code_or_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn codes_and_names_are_unique() {
        let codes: BTreeSet<_> = ALL.iter().map(|r| r.code).collect();
        let names: BTreeSet<_> = ALL.iter().map(|r| r.name).collect();
        assert_eq!(codes.len(), ALL.len());
        assert_eq!(names.len(), ALL.len());
    }

    #[test]
    fn find_accepts_code_or_name() {
        assert_eq!(find("e0102").map(|r| r.name), Some("duplicate-address"));
        assert_eq!(find("duplicate-vmid").map(|r| r.code), Some("E0103"));
        assert!(find("E9999").is_none());
    }
}
