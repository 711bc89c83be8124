//! The API identity deploy uses, made by `host init` with `pvesh` over SSH:
//! a `@pve` user, one role per ACL path holding exactly the privileges the
//! deploy's calls need there (the table below, each with the call that
//! needs it), ACL entries for the user and for its privilege-separated
//! token (a privsep token has the intersection of both), and the token.
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

/// A role granted on one ACL path (propagating to the objects below it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub role: &'static str,
    pub path: String,
    pub privileges: &'static [Privilege],
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

/// What the blueprint's host should grant deploy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub grants: Vec<Grant>,
}

impl Identity {
    pub fn of(model: &Model) -> Identity {
        let host = &model.host();
        let mut grants = vec![
            Grant {
                role: "WaddlecVMs",
                path: "/vms".into(),
                privileges: VMS,
            },
            Grant {
                role: "WaddlecFileStorage",
                path: format!("/storage/{}", host.file_storage),
                privileges: FILE_STORAGE,
            },
            Grant {
                role: "WaddlecDiskStorage",
                path: format!("/storage/{}", host.disk_storage),
                privileges: DISK_STORAGE,
            },
            Grant {
                role: "WaddlecNode",
                path: format!("/nodes/{}", host.node),
                privileges: if model.artifacts.is_some() {
                    NODE_PULLING
                } else {
                    NODE
                },
            },
            Grant {
                role: "WaddlecBridges",
                path: "/sdn/zones/localnetwork".into(),
                privileges: BRIDGES,
            },
            Grant {
                role: "WaddlecDeployLock",
                path: format!("/pool/{}", crate::deploy::lock::POOL),
                privileges: LOCK_POOL,
            },
        ];
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
            Change::Grant { path, role, to } => {
                format!("grant {role} on {path} to {}", to.ugid())
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
            Change::Grant { path, role, to } => (
                Verb::Set,
                "/access/acl".into(),
                vec![
                    ("path", path.clone()),
                    ("roles", role.to_string()),
                    (to.kind().1, to.ugid()),
                    ("propagate", "1".into()),
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
                    && truthy(&entry["propagate"])
            });
            if !present {
                changes.push(Change::Grant {
                    path: grant.path.clone(),
                    role: grant.role,
                    to: subject,
                });
            }
        }
        for entry in ours {
            let (path, role) = (
                entry["path"].as_str().unwrap_or_default(),
                entry["roleid"].as_str().unwrap_or_default(),
            );
            let wanted = wanted
                .grants
                .iter()
                .any(|g| g.path == path && g.role == role && truthy(&entry["propagate"]));
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
                Grant {
                    role: "WaddlecVMs",
                    path: "/vms".into(),
                    privileges: VMS,
                },
                Grant {
                    role: "WaddlecNode",
                    path: "/nodes/pve".into(),
                    privileges: NODE,
                },
            ],
        }
    }

    /// docs/host-identity.md names every role, path and privilege granted.
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
        ] {
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
        .iter()
        .map(|set| set.len())
        .sum::<usize>();
        // The header row and its rule, then one row per privilege.
        assert_eq!(
            rows,
            privileges + 2,
            "the table has rows for privileges not granted"
        );
        for role in [
            "WaddlecVMs",
            "WaddlecFileStorage",
            "WaddlecDiskStorage",
            "WaddlecNode",
            "WaddlecBridges",
            "WaddlecDeployLock",
        ] {
            assert!(doc.contains(&format!("| {role} |")), "{role} undocumented");
        }
    }

    fn acl(path: &str, role: &str, kind: &str, ugid: &str) -> Value {
        json!({"path": path, "roleid": role, "type": kind, "ugid": ugid, "propagate": 1})
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
            {"roleid": "WaddlecVMs", "privs": Grant { role: "", path: String::new(), privileges: VMS }.privs()},
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
