//! A `[cluster]`'s SDN objects through the `/cluster/sdn` API: the VXLAN
//! zone, a VNet and a subnet per internal bridge, as the tree's
//! `hosts/sdn.json` has them (checked against the build by `desired`).
//! `observe` reads what the cluster has (the edited configuration, and
//! whether any of the blueprint's objects waits for an apply), `steps` is
//! the pure comparison, `apply` creates what is missing and commits the
//! configuration (`PUT /cluster/sdn`), waiting for its task.
//!
//! An object that exists with other values is a conflict: waddlec cannot
//! tell whether it made it, so it never changes it.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::desired::DesiredError;
use super::observed::text;
use crate::net::pve::{segment, Pve, PveError};

/// Where the build writes the SDN objects.
pub const SDN_PATH: &str = "hosts/sdn.json";

/// The blueprint's SDN objects, each as the API's create call takes it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct SdnObjects {
    pub zone: Map<String, Value>,
    pub vnets: Vec<Map<String, Value>>,
    pub subnets: Vec<Map<String, Value>>,
}

impl SdnObjects {
    /// Reads `hosts/sdn.json` from the deployable tree.
    pub fn read(tree: &Path) -> Result<SdnObjects, DesiredError> {
        let path = tree.join(SDN_PATH);
        let text = std::fs::read_to_string(&path).map_err(|source| DesiredError::Read {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| DesiredError::Read {
            path: path.display().to_string(),
            source: std::io::Error::other(e),
        })
    }
}

/// The SDN configuration as the cluster has it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SdnObserved {
    /// Zones, VNets and the subnets of the blueprint's VNets, each by its
    /// ID (a subnet's is its CIDR), as the edited configuration holds them.
    pub zones: Vec<Map<String, Value>>,
    pub vnets: Vec<Map<String, Value>>,
    pub subnets: Vec<Map<String, Value>>,
    /// The configuration differs from the running one (an edit not yet
    /// applied) for one of the blueprint's objects.
    pub pending: bool,
}

/// What an SDN object is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Zone,
    Vnet,
    Subnet,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Zone => "zone",
            Kind::Vnet => "vnet",
            Kind::Subnet => "subnet",
        }
    }
}

/// One SDN step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum SdnStep {
    /// Create the object (`POST /cluster/sdn/…`) with `body`.
    Create {
        object: Kind,
        id: String,
        body: Map<String, Value>,
    },
    /// The cluster has it as the blueprint does.
    Keep { object: Kind, id: String },
    /// It exists with other values: never changed (stops the deploy).
    Conflict {
        object: Kind,
        id: String,
        reason: String,
    },
    /// Commit the configuration (`PUT /cluster/sdn`) and wait for every
    /// node to reload its network.
    Apply,
}

impl SdnStep {
    pub fn line(&self) -> String {
        match self {
            SdnStep::Create { object, id, body } => {
                let settings: Vec<String> = body
                    .iter()
                    .filter(|(key, _)| key.as_str() != object.noun())
                    .map(|(key, value)| format!("{key}={}", text(value)))
                    .collect();
                format!(
                    "sdn      create {} {id} ({})",
                    object.noun(),
                    settings.join(", ")
                )
            }
            SdnStep::Keep { object, id } => format!("ok       sdn {} {id}", object.noun()),
            SdnStep::Conflict { object, id, reason } => {
                format!("CONFLICT sdn {} {id}: {reason}", object.noun())
            }
            SdnStep::Apply => {
                "sdn      apply the SDN configuration on every node (PUT /cluster/sdn)".into()
            }
        }
    }
}

/// Reads the cluster's SDN objects that `wanted` names.
pub fn observe(pve: &Pve, wanted: &SdnObjects) -> Result<SdnObserved, PveError> {
    let list = |path: &str, query: &[(&str, &str)]| -> Result<Vec<Map<String, Value>>, PveError> {
        Ok(pve
            .get(path, query)?
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item.as_object().cloned())
            .collect())
    };
    let zones = list("/cluster/sdn/zones", &[])?;
    let vnets = list("/cluster/sdn/vnets", &[])?;
    let state = |items: &[Map<String, Value>], key: &str, id: &str| {
        items.iter().any(|item| {
            item.get(key).map(text).as_deref() == Some(id) && item.contains_key("state")
        })
    };
    let zone_id = text(&wanted.zone["zone"]);
    let mut pending = state(
        &list("/cluster/sdn/zones", &[("pending", "1")])?,
        "zone",
        &zone_id,
    );
    let pending_vnets = list("/cluster/sdn/vnets", &[("pending", "1")])?;
    let mut subnets = Vec::new();
    for vnet in &wanted.vnets {
        let id = text(&vnet["vnet"]);
        pending |= state(&pending_vnets, "vnet", &id);
        if !vnets
            .iter()
            .any(|v| v.get("vnet").map(text) == Some(id.clone()))
        {
            continue;
        }
        let path = format!("/cluster/sdn/vnets/{}/subnets", segment(&id));
        subnets.extend(list(&path, &[])?);
        pending |= list(&path, &[("pending", "1")])?
            .iter()
            .any(|subnet| subnet.contains_key("state"));
    }
    Ok(SdnObserved {
        zones,
        vnets,
        subnets,
        pending,
    })
}

/// The steps that bring the cluster's SDN to `wanted`: creates in order
/// (zone, VNets, subnets), then an apply when anything is created or
/// waits to be applied.
pub fn steps(wanted: &SdnObjects, observed: &SdnObserved) -> Vec<SdnStep> {
    let mut steps = Vec::new();
    let zone = compare(Kind::Zone, "zone", &wanted.zone, &observed.zones);
    steps.push(zone);
    for vnet in &wanted.vnets {
        steps.push(compare(Kind::Vnet, "vnet", vnet, &observed.vnets));
    }
    for subnet in &wanted.subnets {
        // A subnet is found by its VNet and CIDR; its ID is the zone's.
        let vnet = text(&subnet["vnet"]);
        let cidr = text(&subnet["subnet"]);
        let found: Vec<Map<String, Value>> = observed
            .subnets
            .iter()
            .filter(|s| s.get("vnet").map(text) == Some(vnet.clone()))
            .map(|s| {
                let mut s = s.clone();
                if let Some(cidr) = s.get("cidr").cloned() {
                    s.insert("subnet".into(), cidr);
                }
                s
            })
            .collect();
        let mut body = subnet.clone();
        // The VNet is in the path.
        body.remove("vnet");
        let step = compare(Kind::Subnet, "subnet", subnet, &found);
        steps.push(match step {
            SdnStep::Create { object, .. } => SdnStep::Create {
                object,
                id: format!("{cidr} on {vnet}"),
                body,
            },
            SdnStep::Keep { object, .. } => SdnStep::Keep {
                object,
                id: format!("{cidr} on {vnet}"),
            },
            other => other,
        });
    }
    let creates = steps
        .iter()
        .any(|step| matches!(step, SdnStep::Create { .. }));
    if creates || observed.pending {
        steps.push(SdnStep::Apply);
    }
    steps
}

/// One object against the cluster's objects of its kind, found by `key`.
fn compare(
    object: Kind,
    key: &str,
    wanted: &Map<String, Value>,
    existing: &[Map<String, Value>],
) -> SdnStep {
    let id = wanted.get(key).map(text).unwrap_or_default();
    let Some(found) = existing
        .iter()
        .find(|e| e.get(key).map(text) == Some(id.clone()))
    else {
        return SdnStep::Create {
            object,
            id,
            body: wanted.clone(),
        };
    };
    let differs: Vec<String> = wanted
        .iter()
        .filter(|(k, v)| found.get(k.as_str()).map(text) != Some(text(v)))
        .map(|(k, v)| {
            let has = found.get(k.as_str()).map(text);
            format!("{k} {} → {}", has.as_deref().unwrap_or("none"), text(v))
        })
        .collect();
    if differs.is_empty() {
        SdnStep::Keep { object, id }
    } else {
        SdnStep::Conflict {
            object,
            id,
            reason: format!(
                "the cluster has it with other settings ({}), and waddlec does not change SDN objects it cannot tell it made: change it in Datacenter → SDN, or rename the blueprint's",
                differs.join(", ")
            ),
        }
    }
}

/// Carries out one SDN step.
pub fn apply(pve: &Pve, step: &SdnStep, timeout: Duration) -> Result<(), PveError> {
    match step {
        SdnStep::Create { object, body, .. } => {
            let path = match object {
                Kind::Zone => "/cluster/sdn/zones".to_string(),
                Kind::Vnet => "/cluster/sdn/vnets".to_string(),
                Kind::Subnet => {
                    // `steps` took the VNet out of the body: it is the one
                    // the subnet's ID names.
                    let vnet = step_vnet(step).unwrap_or_default();
                    format!("/cluster/sdn/vnets/{}/subnets", segment(&vnet))
                }
            };
            let form: Vec<(String, String)> = body
                .iter()
                .map(|(key, value)| (key.clone(), text(value)))
                .collect();
            pve.post(&path, &form)?;
            Ok(())
        }
        SdnStep::Apply => {
            let answer = pve.put("/cluster/sdn", &[])?;
            match answer.as_str() {
                Some(upid) if upid.starts_with("UPID:") => {
                    let node = upid.split(':').nth(1).unwrap_or_default();
                    pve.wait_task(node, upid, timeout)
                }
                _ => Ok(()),
            }
        }
        SdnStep::Keep { .. } | SdnStep::Conflict { .. } => Ok(()),
    }
}

/// The VNet of a subnet step (`CIDR on VNET`).
fn step_vnet(step: &SdnStep) -> Option<String> {
    match step {
        SdnStep::Create { id, .. } => id.rsplit_once(" on ").map(|(_, vnet)| vnet.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn wanted() -> SdnObjects {
        serde_json::from_value(json!({
            "zone": {"zone": "trio", "type": "vxlan", "peers": "172.16.0.11,172.16.0.12", "mtu": 1450, "nodes": "pve1,pve2"},
            "vnets": [{"vnet": "vnet1", "zone": "trio", "tag": 30001}],
            "subnets": [{"vnet": "vnet1", "subnet": "10.30.0.0/22", "type": "subnet"}],
        }))
        .unwrap()
    }

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn an_empty_cluster_gets_every_object_then_an_apply() {
        let steps = steps(&wanted(), &SdnObserved::default());
        let lines: Vec<String> = steps.iter().map(SdnStep::line).collect();
        assert_eq!(
            lines,
            [
                "sdn      create zone trio (mtu=1450, nodes=pve1,pve2, peers=172.16.0.11,172.16.0.12, type=vxlan)",
                "sdn      create vnet vnet1 (tag=30001, zone=trio)",
                "sdn      create subnet 10.30.0.0/22 on vnet1 (type=subnet)",
                "sdn      apply the SDN configuration on every node (PUT /cluster/sdn)",
            ]
        );
        let SdnStep::Create { body, .. } = &steps[2] else {
            panic!("{steps:?}")
        };
        assert!(!body.contains_key("vnet"), "the VNet is in the path");
        assert_eq!(step_vnet(&steps[2]).as_deref(), Some("vnet1"));
    }

    #[test]
    fn applied_objects_are_kept_and_a_differing_one_is_a_conflict() {
        let mut observed = SdnObserved {
            zones: vec![object(
                json!({"zone": "trio", "type": "vxlan", "peers": "172.16.0.11,172.16.0.12",
                "mtu": 1450, "nodes": "pve1,pve2", "digest": "x"}),
            )],
            vnets: vec![object(
                json!({"vnet": "vnet1", "zone": "trio", "tag": 30001}),
            )],
            subnets: vec![object(
                json!({"vnet": "vnet1", "cidr": "10.30.0.0/22", "type": "subnet",
                "id": "trio-10.30.0.0-22"}),
            )],
            pending: false,
        };
        let kept = steps(&wanted(), &observed);
        assert!(
            kept.iter().all(|s| matches!(s, SdnStep::Keep { .. })),
            "{kept:?}"
        );
        observed.pending = true;
        assert_eq!(steps(&wanted(), &observed).last(), Some(&SdnStep::Apply));
        observed.vnets[0].insert("tag".into(), json!(40000));
        let conflict = steps(&wanted(), &observed)
            .into_iter()
            .find(|s| matches!(s, SdnStep::Conflict { .. }))
            .unwrap();
        assert!(
            conflict.line().contains("tag 40000 → 30001"),
            "{}",
            conflict.line()
        );
    }
}
