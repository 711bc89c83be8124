//! The API identity deploy uses, made by `host init` with `pvesh` over SSH:
//! a `@pve` user, one role per ACL path holding exactly the privileges the
//! deploy's calls need there (the table below, each with the call that
//! needs it), ACL entries for the user and for its privilege-separated
//! token (a privsep token has the intersection of both), and the token.
//!
//! A `[cluster]`'s identity is one for the whole cluster: users, roles,
//! ACLs and tokens live in `/etc/pve/user.cfg` (pve-docs `pveum.adoc`,
//! "Users": "{pve} stores user attributes in `/etc/pve/user.cfg`"; the
//! token secrets in `/etc/pve/priv/token.cfg`), on the cluster file system
//! pmxcfs, "replicated in real time to all cluster nodes using corosync"
//! (pve-docs `pmxcfs.adoc`, <https://pve.proxmox.com/pve-docs/chapter-pmxcfs.html>).
//! So it is made once, on one node, and holds for the one API every node
//! answers. It grants, beside a lone host's, what a cluster deploy calls
//! (`deploy::cluster`, `deploy::sdn`, `deploy::cluster_observed`): every
//! node's path, every host's storages, `VM.Migrate`, the SDN zone's
//! objects and their apply, and the cluster's status on `/` alone; the
//! unit tests hold each call to its `permissions` in the API schema.
//!
//! What is wanted is a pure function of the blueprint ([`Identity::of`]);
//! what the host has is read in three list calls; the difference is the
//! list of [`Change`]s shown before anything is done and applied in order.
//! Entries of our user or token that the table does not name are removed:
//! the grants converge to exactly the table.

use serde_json::Value;
use waddlec_core::model::Model;

use super::pvesh::{Pvesh, PveshError, Verb};

/// The user deploy's token belongs to.
pub const USER: &str = "waddlec@pve";
/// The token's id; with the user, `waddlec@pve!deploy`.
pub const TOKEN: &str = "deploy";
/// The comment marking what `host init` made.
pub const COMMENT: &str = "managed by waddlec host init";

/// The full token id, as ACLs and the API's auth header name it.
pub fn token_id() -> String {
    format!("{USER}!{TOKEN}")
}

/// One privilege and the calls that need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Privilege {
    pub name: &'static str,
    pub needed_by: &'static str,
}

/// A role granted on one ACL path: propagating to the objects below it,
/// or (`propagate` false) on that path alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub role: &'static str,
    pub path: String,
    pub privileges: Vec<Privilege>,
    pub propagate: bool,
}

impl Grant {
    /// The role's privileges as pvesh takes them (sorted, `,`-joined).
    pub fn privs(&self) -> String {
        let mut names: Vec<&str> = self.privileges.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.join(",")
    }
}

const fn privilege(name: &'static str, needed_by: &'static str) -> Privilege {
    Privilege { name, needed_by }
}

/// On `/vms`: the blueprint's VMs (pve-manager/qemu-server permission
/// checks of each call; docs/host-identity.md has the table).
const VMS: &[Privilege] = &[
    privilege(
        "VM.Allocate",
        "POST /nodes/{node}/qemu (create), DELETE /nodes/{node}/qemu/{vmid} (replace)",
    ),
    privilege(
        "VM.Audit",
        "GET /nodes/{node}/qemu, GET …/qemu/{vmid}/config, …/status/current, …/pending",
    ),
    privilege("VM.Config.CPU", "cores, cpu at create and update"),
    privilege("VM.Config.Memory", "memory at create and update"),
    privilege("VM.Config.Disk", "boot at create, PUT …/resize"),
    privilege("VM.Config.HWType", "scsihw, serial0, vga at create"),
    privilege("VM.Config.Network", "netN at create and update"),
    privilege(
        "VM.Config.Options",
        "name, description, tags, ostype, onboot, agent, bios",
    ),
    privilege("VM.PowerMgmt", "POST …/status/start, /stop, /shutdown"),
    privilege(
        "VM.GuestAgent.Audit",
        "POST …/agent/ping (waiting for the guest)",
    ),
];

/// On the file storage: the images and seeds deploy uploads.
const FILE_STORAGE: &[Privilege] = &[
    privilege(
        "Datastore.Audit",
        "GET /nodes/{node}/storage/{storage}/content; import-from local:import/… at create",
    ),
    privilege(
        "Datastore.AllocateTemplate",
        "POST /nodes/{node}/storage/{storage}/upload (import content)",
    ),
    privilege(
        "Datastore.Allocate",
        "DELETE …/storage/{storage}/content/{volume} (a seed once its VM has it)",
    ),
];

/// On the disk storage: the VMs' disks.
const DISK_STORAGE: &[Privilege] = &[privilege(
    "Datastore.AllocateSpace",
    "scsi0, scsi1, efidisk0 allocated at create; PUT …/resize",
)];

/// On the node: its network and tasks.
const NODE: &[Privilege] = &[
    privilege("Sys.Audit", "GET /nodes/{node}/network/{iface}"),
    privilege(
        "Sys.Modify",
        "POST/PUT /nodes/{node}/network, PUT …/network/{iface} (the blueprint's internal bridges)",
    ),
];

/// On the node, with an artifact store: the node's own downloads too.
/// `download-url` needs `Sys.AccessNetwork` on the node (or `Sys.Audit`
/// and `Sys.Modify` on `/`, which would reach far wider): it lets the
/// node probe networks it reaches (pve-storage `Status.pm`).
const NODE_PULLING: &[Privilege] = &[
    NODE[0],
    NODE[1],
    privilege(
        "Sys.AccessNetwork",
        "POST /nodes/{node}/storage/{storage}/download-url (images pulled from the artifact store)",
    ),
];

/// On the local network zone: the bridges VMs are plugged into.
const BRIDGES: &[Privilege] = &[privilege(
    "SDN.Use",
    "netN=…,bridge=vmbrN at create and update (PVE checks /sdn/zones/localnetwork/{bridge})",
)];

/// On the deploy lock's pool.
const LOCK_POOL: &[Privilege] = &[
    privilege(
        "Pool.Allocate",
        "POST /pools, DELETE /pools (the deploy lock, pool waddlec-deploy)",
    ),
    privilege(
        "Pool.Audit",
        "GET /pools (who holds the lock; unlisted without it)",
    ),
];

/// On `/vms` of a cluster: moving a VM to the host the blueprint names.
const MIGRATE: Privilege = privilege(
    "VM.Migrate",
    "POST /nodes/{node}/qemu/{vmid}/migrate (a VM whose host changed)",
);

/// On each node of a cluster: its uplink and tasks. Its internal bridges
/// are SDN VNets, so no `Sys.Modify`.
const CLUSTER_NODE: &[Privilege] = &[NODE[0]];

/// On `/` alone, for a cluster: which nodes are members and online.
const CLUSTER_AUDIT: &[Privilege] = &[privilege(
    "Sys.Audit",
    "GET /cluster/status (on `/` only, not propagated)",
)];

/// On `/sdn` and `/sdn/zones` alone: creating the zone and applying.
const SDN: &[Privilege] = &[privilege(
    "SDN.Allocate",
    "POST /cluster/sdn/zones (on /sdn/zones), PUT /cluster/sdn (apply, on /sdn); neither propagated",
)];

/// On the cluster's SDN zone: its VNets, their subnets, and VM NICs on them.
const SDN_ZONE: &[Privilege] = &[
    privilege(
        "SDN.Allocate",
        "GET/POST /cluster/sdn/vnets, GET/POST …/vnets/{vnet}/subnets (listing needs it or SDN.Audit)",
    ),
    privilege(
        "SDN.Use",
        "netN=…,bridge={vnet} at create and update (PVE checks /sdn/zones/{zone}/{vnet})",
    ),
];

/// What the blueprint's host (or cluster) should grant deploy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub grants: Vec<Grant>,
}

fn grant(role: &'static str, path: String, privileges: &[Privilege]) -> Grant {
    Grant {
        role,
        path,
        privileges: privileges.to_vec(),
        propagate: true,
    }
}

impl Identity {
    /// A lone host's grants, or a cluster's (every host's storages and
    /// node, and the cluster's own calls: the module doc).
    pub fn of(model: &Model) -> Identity {
        let cluster = model.proxmox.single_host().is_none();
        let node_privileges = match (cluster, model.artifacts.is_some()) {
            (false, false) => NODE.to_vec(),
            (false, true) => NODE_PULLING.to_vec(),
            (true, false) => CLUSTER_NODE.to_vec(),
            (true, true) => vec![CLUSTER_NODE[0], NODE_PULLING[2]],
        };
        let mut vms = VMS.to_vec();
        if cluster {
            vms.push(MIGRATE);
        }
        let mut grants = vec![
            grant("WaddlecVMs", "/vms".into(), &vms),
            grant("WaddlecBridges", "/sdn/zones/localnetwork".into(), BRIDGES),
            grant(
                "WaddlecDeployLock",
                format!("/pool/{}", crate::deploy::lock::POOL),
                LOCK_POOL,
            ),
        ];
        for host in &model.proxmox.hosts {
            for wanted in [
                grant(
                    "WaddlecFileStorage",
                    format!("/storage/{}", host.file_storage),
                    FILE_STORAGE,
                ),
                grant(
                    "WaddlecDiskStorage",
                    format!("/storage/{}", host.disk_storage),
                    DISK_STORAGE,
                ),
                grant(
                    "WaddlecNode",
                    format!("/nodes/{}", host.node),
                    &node_privileges,
                ),
            ] {
                // The hosts of a cluster share storage IDs.
                if !grants.contains(&wanted) {
                    grants.push(wanted);
                }
            }
        }
        if let Some(sdn) = &model.proxmox.sdn {
            let alone = |role, path: &str, privileges| Grant {
                propagate: false,
                ..grant(role, path.into(), privileges)
            };
            grants.extend([
                alone("WaddlecClusterAudit", "/", CLUSTER_AUDIT),
                alone("WaddlecSdn", "/sdn", SDN),
                alone("WaddlecSdn", "/sdn/zones", SDN),
                grant(
                    "WaddlecSdnZone",
                    format!("/sdn/zones/{}", sdn.zone),
                    SDN_ZONE,
                ),
            ]);
        }
        // One storage may be both file and disk storage: two roles on one
        // path, as ACL entries are per path and role.
        grants.sort_by(|a, b| (&a.path, a.role).cmp(&(&b.path, b.role)));
        Identity { grants }
    }
}

/// One change `host init` makes to the host's access control.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    CreateUser,
    CreateRole {
        role: &'static str,
        privs: String,
    },
    UpdateRole {
        role: &'static str,
        from: String,
        to: String,
    },
    Grant {
        path: String,
        role: &'static str,
        to: Subject,
        /// Whether it reaches the objects below `path`.
        propagate: bool,
    },
    Revoke {
        path: String,
        role: String,
        from: Subject,
    },
}

/// Who an ACL entry is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    User,
    Token,
}

impl Subject {
    fn ugid(self) -> String {
        match self {
            Subject::User => USER.to_string(),
            Subject::Token => token_id(),
        }
    }

    /// The `type` of an entry of `GET /access/acl`, and the parameter of
    /// `PUT /access/acl` naming it.
    fn kind(self) -> (&'static str, &'static str) {
        match self {
            Subject::User => ("user", "users"),
            Subject::Token => ("token", "tokens"),
        }
    }
}

impl Change {
    /// A grant or revoke for the token: PVE takes ACL entries only for a
    /// token that exists (`ACL update failed: no such token`), and drops
    /// them when the token goes, so these are made after the token.
    pub fn is_for_token(&self) -> bool {
        matches!(
            self,
            Change::Grant {
                to: Subject::Token,
                ..
            } | Change::Revoke {
                from: Subject::Token,
                ..
            }
        )
    }

    /// One line for people.
    pub fn line(&self) -> String {
        match self {
            Change::CreateUser => format!("create API user {USER}"),
            Change::CreateRole { role, privs } => format!("create role {role} ({privs})"),
            Change::UpdateRole { role, from, to } => {
                format!("set role {role} privileges {from} → {to}")
            }
            Change::Grant {
                path,
                role,
                to,
                propagate,
            } => {
                let only = if *propagate { "" } else { " (this path only)" };
                format!("grant {role} on {path}{only} to {}", to.ugid())
            }
            Change::Revoke { path, role, from } => {
                format!("revoke {role} on {path} from {}", from.ugid())
            }
        }
    }

    /// The `pvesh` call that makes it.
    fn call(&self) -> (Verb, String, Vec<(&'static str, String)>) {
        match self {
            Change::CreateUser => (
                Verb::Create,
                "/access/users".into(),
                vec![("userid", USER.into()), ("comment", COMMENT.into())],
            ),
            Change::CreateRole { role, privs } => (
                Verb::Create,
                "/access/roles".into(),
                vec![("roleid", role.to_string()), ("privs", privs.clone())],
            ),
            Change::UpdateRole { role, to, .. } => (
                Verb::Set,
                format!("/access/roles/{role}"),
                vec![("privs", to.clone())],
            ),
            Change::Grant {
                path,
                role,
                to,
                propagate,
            } => (
                Verb::Set,
                "/access/acl".into(),
                vec![
                    ("path", path.clone()),
                    ("roles", role.to_string()),
                    (to.kind().1, to.ugid()),
                    ("propagate", if *propagate { "1" } else { "0" }.into()),
                ],
            ),
            Change::Revoke { path, role, from } => (
                Verb::Set,
                "/access/acl".into(),
                vec![
                    ("path", path.clone()),
                    ("roles", role.clone()),
                    (from.kind().1, from.ugid()),
                    ("delete", "1".into()),
                ],
            ),
        }
    }
}

/// What the host has: the answers of `GET /access/users`, `/access/roles`
/// and `/access/acl`.
pub struct Observed {
    pub users: Value,
    pub roles: Value,
    pub acl: Value,
}

/// Reads the host's users, roles and ACL.
pub fn observe(pvesh: &Pvesh<'_>) -> Result<Observed, PveshError> {
    Ok(Observed {
        users: pvesh.get("/access/users")?,
        roles: pvesh.get("/access/roles")?,
        acl: pvesh.get("/access/acl")?,
    })
}

fn entries(list: &Value) -> impl Iterator<Item = &Value> {
    list.as_array().into_iter().flatten()
}

/// The changes that take `observed` to `wanted` (pure).
pub fn changes(wanted: &Identity, observed: &Observed) -> Vec<Change> {
    let mut changes = Vec::new();
    if !entries(&observed.users).any(|user| user["userid"] == USER) {
        changes.push(Change::CreateUser);
    }
    let mut seen_roles: Vec<&str> = Vec::new();
    for grant in &wanted.grants {
        if seen_roles.contains(&grant.role) {
            continue;
        }
        seen_roles.push(grant.role);
        let privs = grant.privs();
        match entries(&observed.roles).find(|role| role["roleid"] == grant.role) {
            None => changes.push(Change::CreateRole {
                role: grant.role,
                privs,
            }),
            Some(role) => {
                let have = sorted_privs(role["privs"].as_str().unwrap_or_default());
                if have != privs {
                    changes.push(Change::UpdateRole {
                        role: grant.role,
                        from: have,
                        to: privs,
                    });
                }
            }
        }
    }
    for subject in [Subject::User, Subject::Token] {
        let (kind, _) = subject.kind();
        let ugid = subject.ugid();
        let ours: Vec<&Value> = entries(&observed.acl)
            .filter(|entry| entry["type"] == kind && entry["ugid"] == ugid.as_str())
            .collect();
        for grant in &wanted.grants {
            let present = ours.iter().any(|entry| {
                entry["path"] == grant.path.as_str()
                    && entry["roleid"] == grant.role
                    && truthy(&entry["propagate"]) == grant.propagate
            });
            if !present {
                changes.push(Change::Grant {
                    path: grant.path.clone(),
                    role: grant.role,
                    to: subject,
                    propagate: grant.propagate,
                });
            }
        }
        for entry in ours {
            let (path, role) = (
                entry["path"].as_str().unwrap_or_default(),
                entry["roleid"].as_str().unwrap_or_default(),
            );
            // An entry with the other `propagate` is set over by its grant
            // (PVE keeps one entry per path, subject and role).
            let wanted = wanted
                .grants
                .iter()
                .any(|g| g.path == path && g.role == role);
            if !wanted {
                changes.push(Change::Revoke {
                    path: path.to_string(),
                    role: role.to_string(),
                    from: subject,
                });
            }
        }
    }
    changes
}

/// Applies `changes` in order, reporting each as it is done.
pub fn apply(
    pvesh: &Pvesh<'_>,
    changes: &[Change],
    report: &dyn Fn(&str),
) -> Result<(), PveshError> {
    for change in changes {
        let (verb, path, params) = change.call();
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        pvesh.call(verb, &path, &params)?;
        report(&change.line());
    }
    Ok(())
}

/// PVE lists a role's privileges `,`-joined in no promised order.
fn sorted_privs(privs: &str) -> String {
    let mut names: Vec<&str> = privs.split(',').filter(|p| !p.is_empty()).collect();
    names.sort_unstable();
    names.dedup();
    names.join(",")
}

/// `propagate` as PVE returns it: `1`/`0`, as a number or a string.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.as_u64() == Some(1),
        Value::String(s) => s == "1",
        Value::Bool(b) => *b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wanted() -> Identity {
        Identity {
            grants: vec![
                grant("WaddlecVMs", "/vms".into(), VMS),
                grant("WaddlecNode", "/nodes/pve".into(), NODE),
            ],
        }
    }

    /// The privileges a cluster adds, each once.
    const CLUSTER_SETS: [&[Privilege]; 4] = [&[MIGRATE], CLUSTER_AUDIT, SDN, SDN_ZONE];

    /// docs/host-identity.md names every role, path and privilege granted
    /// (a cluster's additions in a second table).
    #[test]
    fn the_documented_table_is_the_granted_one() {
        let doc = include_str!("../../../docs/host-identity.md");
        for set in [
            VMS,
            FILE_STORAGE,
            DISK_STORAGE,
            NODE_PULLING,
            BRIDGES,
            LOCK_POOL,
        ]
        .into_iter()
        .chain(CLUSTER_SETS)
        {
            for p in set {
                assert!(
                    doc.contains(&format!("| {} |", p.name)),
                    "{} undocumented",
                    p.name
                );
            }
        }
        let rows = doc
            .lines()
            .filter(|l| l.starts_with("| ") && l.contains(" | "))
            .count();
        // NODE_PULLING is NODE and one more.
        let privileges = [
            VMS,
            FILE_STORAGE,
            DISK_STORAGE,
            NODE_PULLING,
            BRIDGES,
            LOCK_POOL,
        ]
        .into_iter()
        .chain(CLUSTER_SETS)
        .map(|set| set.len())
        .sum::<usize>();
        // Each table's header row and its rule, then one row per privilege.
        assert_eq!(
            rows,
            privileges + 4,
            "the tables have rows for privileges not granted"
        );
        for role in [
            "WaddlecVMs",
            "WaddlecFileStorage",
            "WaddlecDiskStorage",
            "WaddlecNode",
            "WaddlecBridges",
            "WaddlecDeployLock",
            "WaddlecClusterAudit",
            "WaddlecSdn",
            "WaddlecSdnZone",
        ] {
            assert!(doc.contains(&format!("| {role} |")), "{role} undocumented");
        }
    }

    fn acl(path: &str, role: &str, kind: &str, ugid: &str) -> Value {
        json!({"path": path, "roleid": role, "type": kind, "ugid": ugid, "propagate": 1})
    }

    fn model(path: &str) -> Model {
        let source = crate::source::SourceFile {
            name: path.into(),
            text: std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR")))
                .unwrap(),
        };
        let date = crate::blueprint::Date {
            year: 2026,
            month: 1,
            day: 1,
        };
        waddlec_core::check(&source, date).unwrap().model
    }

    /// A call a cluster deploy makes (`deploy::cluster`, `deploy::sdn`,
    /// `deploy::cluster_observed`, and each node's plan by `deploy::apply`),
    /// as the API schema names it; `storage` picks the storage a
    /// `{storage}` is for each host.
    struct Call {
        method: &'static str,
        path: &'static str,
        storage: fn(&waddlec_core::model::Host) -> String,
    }

    fn file(host: &waddlec_core::model::Host) -> String {
        host.file_storage.to_string()
    }

    fn disk(host: &waddlec_core::model::Host) -> String {
        host.disk_storage.to_string()
    }

    const CLUSTER_CALLS: &[Call] = &[
        Call {
            method: "GET",
            path: "/cluster/status",
            storage: file,
        },
        Call {
            method: "GET",
            path: "/cluster/resources",
            storage: file,
        },
        Call {
            method: "GET",
            path: "/cluster/sdn/zones",
            storage: file,
        },
        Call {
            method: "POST",
            path: "/cluster/sdn/zones",
            storage: file,
        },
        Call {
            method: "GET",
            path: "/cluster/sdn/vnets",
            storage: file,
        },
        Call {
            method: "POST",
            path: "/cluster/sdn/vnets",
            storage: file,
        },
        Call {
            method: "GET",
            path: "/cluster/sdn/vnets/{vnet}/subnets",
            storage: file,
        },
        Call {
            method: "POST",
            path: "/cluster/sdn/vnets/{vnet}/subnets",
            storage: file,
        },
        Call {
            method: "PUT",
            path: "/cluster/sdn",
            storage: file,
        },
        Call {
            method: "POST",
            path: "/nodes/{node}/qemu/{vmid}/migrate",
            storage: file,
        },
        Call {
            method: "GET",
            path: "/nodes/{node}/storage",
            storage: disk,
        },
        Call {
            method: "GET",
            path: "/nodes/{node}/network/{iface}",
            storage: file,
        },
        Call {
            method: "GET",
            path: "/nodes/{node}/storage/{storage}/content",
            storage: file,
        },
        Call {
            method: "POST",
            path: "/nodes/{node}/storage/{storage}/upload",
            storage: file,
        },
        Call {
            method: "POST",
            path: "/nodes/{node}/qemu/{vmid}/status/start",
            storage: file,
        },
        Call {
            method: "POST",
            path: "/pools",
            storage: file,
        },
    ];

    /// A method's `permissions` in PVE's API schema (the one the simulator
    /// the tests deploy against enforces).
    fn schema_permissions(apidata: &Value, method: &str, path: &str) -> Value {
        fn find(nodes: &Value, method: &str, path: &str) -> Option<Value> {
            entries(nodes).find_map(|node| {
                if node["path"] == path {
                    return Some(node["info"][method]["permissions"].clone());
                }
                find(&node["children"], method, path)
            })
        }
        find(apidata, method, path).unwrap_or_else(|| panic!("{method} {path} not in the schema"))
    }

    /// The ACL path template (`{zone}`) and the privileges a permission
    /// entry asks for, and whether any one of them is enough; `None` when
    /// it asks for nothing (`user: all` without a condition).
    fn requirement(permissions: &Value) -> Option<(String, Vec<String>, bool)> {
        let check = &permissions["check"];
        if check[0] == "perm" {
            let privs: Vec<String> = entries(&check[2])
                .map(|p| p.as_str().unwrap().to_string())
                .collect();
            return Some((
                check[1].as_str().unwrap().to_string(),
                privs,
                check[3] == "any",
            ));
        }
        assert!(check.is_null(), "an unknown check: {check}");
        // `Only list entries where you have 'SDN.Audit' or 'SDN.Allocate'
        // permissions on '/sdn/zones/<zone>'`: the quoted words.
        let description = permissions["description"].as_str()?;
        let quoted: Vec<&str> = description.split('\'').skip(1).step_by(2).collect();
        let path = quoted.iter().find(|q| q.starts_with('/'))?;
        let privs = quoted
            .iter()
            .filter(|q| !q.starts_with('/'))
            .map(|q| q.to_string())
            .collect();
        let path = path.replace('<', "{").replace('>', "}");
        Some((path, privs, description.contains(" or ")))
    }

    /// Whether `identity` grants `privilege` on `path`: there, or
    /// propagated from a path above it (PVE's ACL tree).
    fn grants(identity: &Identity, path: &str, privilege: &str) -> bool {
        identity.grants.iter().any(|g| {
            let covers = g.path == path
                || (g.propagate && (g.path == "/" || path.starts_with(&format!("{}/", g.path))));
            covers && g.privileges.iter().any(|p| p.name == privilege)
        })
    }

    /// `template` with every placeholder replaced, for each combination of
    /// the cluster's values.
    fn expand(
        template: &str,
        model: &Model,
        host: &waddlec_core::model::Host,
        storage: &str,
    ) -> Vec<String> {
        let zone = &model.proxmox.sdn.as_ref().unwrap().zone;
        let mut paths = vec![template
            .replace("{node}", &host.node)
            .replace("{iface}", host.bridges.public.name.as_str())
            .replace("{storage}", storage)
            .replace("{zone}", zone)
            .replace("{poolid}", crate::deploy::lock::POOL)];
        let each = |paths: Vec<String>, key: &str, values: Vec<String>| -> Vec<String> {
            paths
                .into_iter()
                .flat_map(|p| {
                    if p.contains(key) {
                        values.iter().map(|v| p.replace(key, v)).collect()
                    } else {
                        vec![p]
                    }
                })
                .collect()
        };
        paths = each(
            paths,
            "{vmid}",
            model.vms.iter().map(|vm| vm.id.to_string()).collect(),
        );
        paths = each(
            paths,
            "{vnet}",
            host.bridges
                .internal
                .iter()
                .map(|b| b.name.to_string())
                .collect(),
        );
        assert!(!paths.iter().any(|p| p.contains('{')), "{paths:?}");
        paths
    }

    /// Every call a cluster deploy makes is allowed by the cluster's
    /// identity, as the API schema's `permissions` say, on every node,
    /// VM, VNet and storage of `three-hosts.toml`; and every privilege
    /// only a cluster gets is needed by one of them on the path it is
    /// granted on.
    #[test]
    fn a_clusters_identity_allows_every_call_a_cluster_deploy_makes() {
        let apidata: Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../tests/data/schemas/proxmox/apidata.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let model = model("blueprints/examples/three-hosts.toml");
        let identity = Identity::of(&model);
        let mut needed: Vec<(String, String)> = Vec::new();
        for call in CLUSTER_CALLS {
            let permissions = schema_permissions(&apidata, call.method, call.path);
            let Some((template, privs, any)) = requirement(&permissions) else {
                continue;
            };
            for host in &model.proxmox.hosts {
                for path in expand(&template, &model, host, &(call.storage)(host)) {
                    let granted: Vec<&String> = privs
                        .iter()
                        .filter(|p| grants(&identity, &path, p))
                        .collect();
                    let allowed = if any {
                        !granted.is_empty()
                    } else {
                        granted.len() == privs.len()
                    };
                    assert!(
                        allowed,
                        "{} {} needs {privs:?} on {path}: {:#?}",
                        call.method, call.path, identity.grants
                    );
                    needed.extend(granted.iter().map(|p| (path.clone(), p.to_string())));
                }
            }
        }
        for g in &identity.grants {
            if !["WaddlecClusterAudit", "WaddlecSdn"].contains(&g.role) {
                continue;
            }
            for p in &g.privileges {
                assert!(
                    needed.contains(&(g.path.clone(), p.name.to_string())),
                    "{} on {} is needed by no call",
                    p.name,
                    g.path
                );
            }
        }
        let migrate = identity
            .grants
            .iter()
            .find(|g| g.role == "WaddlecVMs")
            .unwrap();
        assert!(migrate.privileges.contains(&MIGRATE));
        // Each node of the cluster, and its uplink's bridge, for each host.
        for node in ["pve1", "pve2", "pve3"] {
            assert!(grants(&identity, &format!("/nodes/{node}"), "Sys.Audit"));
            assert!(!grants(&identity, &format!("/nodes/{node}"), "Sys.Modify"));
        }
        // VM NICs on the VNet.
        assert!(grants(&identity, "/sdn/zones/trio/vnet1", "SDN.Use"));
        // `/` is not propagated: no Sys.Audit anywhere else from it.
        assert!(!grants(&identity, "/storage/local", "Sys.Audit"));
    }

    /// A lone host's identity has none of a cluster's grants, and all of
    /// its grants propagate: what `host init` made before clusters.
    #[test]
    fn a_lone_hosts_identity_is_a_lone_hosts() {
        let identity = Identity::of(&model("blueprints/waddle.toml"));
        let grants: Vec<(&str, &str, bool)> = identity
            .grants
            .iter()
            .map(|g| (g.role, g.path.as_str(), g.propagate))
            .collect();
        assert_eq!(
            grants,
            [
                ("WaddlecNode", "/nodes/waddle-proxmox01", true),
                ("WaddlecDeployLock", "/pool/waddlec-deploy", true),
                ("WaddlecBridges", "/sdn/zones/localnetwork", true),
                ("WaddlecFileStorage", "/storage/local", true),
                ("WaddlecDiskStorage", "/storage/vmdata", true),
                ("WaddlecVMs", "/vms", true),
            ]
        );
        let vms = &identity.grants[5];
        assert_eq!(vms.privileges, VMS);
    }

    /// A grant on one path only is told apart from a propagating one: an
    /// entry of the other kind is granted again, which sets it over.
    #[test]
    fn a_grant_on_one_path_only_is_kept_apart_from_a_propagating_one() {
        let wanted = Identity {
            grants: vec![Grant {
                propagate: false,
                ..grant("WaddlecClusterAudit", "/".into(), CLUSTER_AUDIT)
            }],
        };
        let mut entry = acl("/", "WaddlecClusterAudit", "user", USER);
        let observed = |entry: &Value| Observed {
            users: json!([{"userid": USER}]),
            roles: json!([{"roleid": "WaddlecClusterAudit", "privs": "Sys.Audit"}]),
            acl: json!([entry]),
        };
        let lines: Vec<String> = changes(&wanted, &observed(&entry))
            .iter()
            .map(Change::line)
            .collect();
        assert_eq!(
            lines,
            [
                "grant WaddlecClusterAudit on / (this path only) to waddlec@pve",
                "grant WaddlecClusterAudit on / (this path only) to waddlec@pve!deploy",
            ]
        );
        entry["propagate"] = json!(0);
        let changes = changes(&wanted, &observed(&entry));
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(changes[0].is_for_token());
        let (_, _, params) = changes[0].call();
        assert!(
            params.contains(&("propagate", "0".to_string())),
            "{params:?}"
        );
    }

    /// `Sys.AccessNetwork` only where the host pulls from a store.
    #[test]
    fn the_node_may_download_only_with_an_artifact_store() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../blueprints/waddle.toml"
        ))
        .unwrap();
        let date = crate::blueprint::Date {
            year: 2026,
            month: 1,
            day: 1,
        };
        let node_privs = |text: String| {
            let source = crate::source::SourceFile {
                name: "waddle.toml".into(),
                text,
            };
            let model = waddlec_core::check(&source, date).unwrap().model;
            let identity = Identity::of(&model);
            let node = identity.grants.iter().find(|g| g.role == "WaddlecNode");
            node.unwrap().privs()
        };
        assert_eq!(node_privs(text.clone()), "Sys.Audit,Sys.Modify");
        let with_store = format!(
            "{text}\n[artifacts]\nendpoint = \"https://s3.fr-par.scw.cloud\"\nregion = \"fr-par\"\n\
             bucket = \"waddle-artifacts\"\naccess_key_id = \"env:WADDLE_S3_ACCESS_KEY\"\n\
             secret_access_key = \"env:WADDLE_S3_SECRET_KEY\"\n"
        );
        assert_eq!(
            node_privs(with_store),
            "Sys.AccessNetwork,Sys.Audit,Sys.Modify"
        );
    }

    #[test]
    fn a_bare_host_gets_the_user_the_roles_and_both_subjects_grants() {
        let observed = Observed {
            users: json!([{"userid": "root@pam"}]),
            roles: json!([{"roleid": "Administrator", "privs": "Sys.Audit"}]),
            acl: json!([]),
        };
        let lines: Vec<String> = changes(&wanted(), &observed)
            .iter()
            .map(Change::line)
            .collect();
        assert_eq!(lines[0], "create API user waddlec@pve");
        assert!(lines[1].starts_with("create role WaddlecVMs (VM.Allocate,VM.Audit,"));
        assert_eq!(lines[2], "create role WaddlecNode (Sys.Audit,Sys.Modify)");
        assert_eq!(
            &lines[3..],
            [
                "grant WaddlecVMs on /vms to waddlec@pve",
                "grant WaddlecNode on /nodes/pve to waddlec@pve",
                "grant WaddlecVMs on /vms to waddlec@pve!deploy",
                "grant WaddlecNode on /nodes/pve to waddlec@pve!deploy",
            ]
        );
    }

    #[test]
    fn a_converged_host_needs_nothing_and_drift_is_undone() {
        let roles = json!([
            {"roleid": "WaddlecVMs", "privs": grant("", String::new(), VMS).privs()},
            // Another order of the same privileges is not drift.
            {"roleid": "WaddlecNode", "privs": "Sys.Modify,Sys.Audit"},
        ]);
        let mut entries = vec![];
        for (kind, ugid) in [("user", USER.to_string()), ("token", token_id())] {
            entries.push(acl("/vms", "WaddlecVMs", kind, &ugid));
            entries.push(acl("/nodes/pve", "WaddlecNode", kind, &ugid));
        }
        let converged = Observed {
            users: json!([{"userid": USER}]),
            roles: roles.clone(),
            acl: Value::Array(entries.clone()),
        };
        assert_eq!(changes(&wanted(), &converged), []);

        // Someone widened the token's grant and trimmed a role.
        entries.push(acl("/", "Administrator", "token", &token_id()));
        let drifted = Observed {
            users: json!([{"userid": USER}]),
            roles: json!([
                roles[0],
                {"roleid": "WaddlecNode", "privs": "Sys.Audit"},
            ]),
            acl: Value::Array(entries),
        };
        let lines: Vec<String> = changes(&wanted(), &drifted)
            .iter()
            .map(Change::line)
            .collect();
        assert_eq!(
            lines,
            [
                "set role WaddlecNode privileges Sys.Audit → Sys.Audit,Sys.Modify",
                "revoke Administrator on / from waddlec@pve!deploy",
            ]
        );
    }
}
