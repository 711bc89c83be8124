//! How Talos nodes change in place, one node away at a time — pure, so the
//! plan shows the order before anything happens and tests check it without
//! a cluster. `plan` makes the steps; this module orders and paces them and
//! owns the Kubernetes rules; `apply` carries them out, checking quorum on
//! the live cluster before each node and waiting for it after.
//!
//! - **Order**: every Talos upgrade first (version or schematic), then a
//!   Kubernetes upgrade's control-plane phase, then every machine config;
//!   within each phase the control planes first, then the workers, in
//!   `Model::rollout_order`. This is `talosctl upgrade-k8s`'s order (API
//!   servers before any kubelet: `pkg/cluster/kubernetes/talos_managed.go`
//!   in siderolabs/talos v1.12).
//! - **Kubernetes**: one minor at a time and never down — the Kubernetes
//!   version skew policy (kubernetes.io/releases/version-skew-policy: the
//!   API servers move one minor at a time; a kubelet is never newer than an
//!   API server). A control plane first takes its new config with its
//!   kubelet kept at the running version (the *interim* config: the
//!   build's bytes with that one image reference changed back); only once
//!   every API server runs the new version does any node get the build's
//!   config as is, which moves its kubelet.
//! - **Pace**: a replace or a restart of a Talos node goes alone — at most
//!   one per deploy, and no step that takes another node away goes with it.
//!   Otherwise every in-place step goes in the same deploy, node by node.

use serde::Serialize;

use super::desired::Desired;
use super::plan::{Plan, Step};

/// The kubelet image the machine-config renderer writes for a Kubernetes
/// version (`core/src/render/talos/machine_config.rs`).
const KUBELET_IMAGE: &str = "ghcr.io/siderolabs/kubelet:v";

/// A Talos node's Kubernetes version, from what its VM's description
/// records to the blueprint's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KubernetesChange {
    pub from: String,
    pub to: String,
}

/// `(major, minor, patch)` of `1.35.1` (or `v1.35.1`).
fn parse(version: &str) -> Option<(u32, u32, u32)> {
    let mut parts = version.trim_start_matches('v').split('.');
    let mut next = || parts.next()?.parse::<u32>().ok();
    let parsed = (next()?, next()?, next()?);
    parts.next().is_none().then_some(parsed)
}

/// The change from the recorded version `from` (none: written before
/// versions were recorded) to `to`, if any, or why it is refused.
pub fn kubernetes_change(from: Option<&str>, to: &str) -> Result<Option<KubernetesChange>, String> {
    let Some(from) = from.filter(|from| *from != to) else {
        return Ok(None);
    };
    let (Some(old), Some(new)) = (parse(from), parse(to)) else {
        return Err(format!(
            "the node records Kubernetes `{from}`, the blueprint says `{to}`: not versions waddlec can order"
        ));
    };
    if new < old {
        return Err(format!(
            "Kubernetes {from} → {to} is a downgrade, which Kubernetes does not support (etcd holds objects the older API servers may not read); set versions.kubernetes back to {from}"
        ));
    }
    if new.0 != old.0 || new.1 > old.1 + 1 {
        return Err(format!(
            "Kubernetes {from} → {to} skips a minor version; the API servers move one minor at a time (version skew policy): set versions.kubernetes to the newest {}.{}.x, build and deploy, then {to}",
            old.0,
            old.1 + 1
        ));
    }
    Ok(Some(KubernetesChange {
        from: from.to_string(),
        to: to.to_string(),
    }))
}

/// A control plane's interim config for `change`: `config` (the build's
/// bytes for the new version) with its kubelet image changed back to the
/// running version — nothing else.
pub fn interim_config(config: &[u8], change: &KubernetesChange) -> Result<Vec<u8>, String> {
    let text =
        std::str::from_utf8(config).map_err(|_| "the machine config is not UTF-8".to_string())?;
    let new = format!("{KUBELET_IMAGE}{}", change.to.trim_start_matches('v'));
    let old = format!("{KUBELET_IMAGE}{}", change.from.trim_start_matches('v'));
    let names_it = |line: &str| line.trim_end().ends_with(&new);
    match text.lines().filter(|line| names_it(line)).count() {
        1 => Ok(text
            .split_inclusive('\n')
            .map(|line| {
                if names_it(line) {
                    line.replacen(&new, &old, 1)
                } else {
                    line.to_string()
                }
            })
            .collect::<String>()
            .into_bytes()),
        n => Err(format!(
            "the machine config names the kubelet image {new} {n} times, not once: cannot keep the kubelet at {} while the API servers move",
            change.from
        )),
    }
}

/// The phase of an in-place step: upgrades, then Kubernetes' control-plane
/// phase, then configs; `None` for any other step.
fn phase(step: &Step) -> Option<u8> {
    match step {
        Step::Upgrade { .. } => Some(0),
        Step::KubernetesControlPlane { .. } => Some(1),
        Step::ApplyConfig { .. } => Some(2),
        _ => None,
    }
}

/// The VM an in-place step changes; `None` for any other step.
pub fn vmid_of(step: &Step) -> Option<u32> {
    match step {
        Step::Upgrade { vmid, .. }
        | Step::KubernetesControlPlane { vmid, .. }
        | Step::ApplyConfig { vmid, .. } => Some(*vmid),
        _ => None,
    }
}

/// `steps` with the in-place steps moved after all others, by phase and
/// rollout position; everything else keeps its order.
pub fn order(steps: Vec<Step>, desired: &Desired) -> Vec<Step> {
    let (mut in_place, mut rest): (Vec<Step>, Vec<Step>) =
        steps.into_iter().partition(|step| phase(step).is_some());
    let position = |step: &Step| {
        vmid_of(step)
            .and_then(|vmid| desired.talos.get(&vmid))
            .map_or(usize::MAX, |target| target.rollout)
    };
    in_place.sort_by_key(|step| (phase(step), position(step)));
    rest.extend(in_place);
    rest
}

/// `steps` ordered ([`order`]) and paced ([`pace`]): a lone host's plan,
/// or every Talos step of a cluster's nodes together.
pub fn roll(steps: Vec<Step>, desired: &Desired) -> Plan {
    pace(
        Plan {
            steps: order(steps, desired),
        },
        desired,
    )
}

/// Whether a step takes its node away for a while: an upgrade, the
/// control-plane phase (the node's API server and scheduler restart), a
/// config that needs a reboot (or may: not previewed yet).
fn disrupts(step: &Step) -> bool {
    match step {
        Step::Upgrade { .. } | Step::KubernetesControlPlane { .. } => true,
        Step::ApplyConfig { preview, .. } => preview
            .as_ref()
            .is_none_or(|p| p.reboot && !p.diff.trim().is_empty()),
        _ => false,
    }
}

/// The Talos node an allowed replace or restart takes away: such a step
/// goes alone ([`pace`]).
pub fn goes_alone(step: &Step, desired: &Desired) -> Option<u32> {
    match step {
        Step::Replace {
            vmid,
            allowed: true,
            ..
        }
        | Step::Restart {
            vmid,
            allowed: true,
            ..
        } if desired.talos.contains_key(vmid) => Some(*vmid),
        _ => None,
    }
}

/// A replace or restart of a Talos node goes alone: the first allowed one
/// goes, a second is a conflict, and every node with an in-place step that
/// takes it away waits, all its steps, for a later deploy. Without one,
/// every in-place step goes now. Pure; run again after the workflow fills in the previews.
pub fn pace(plan: Plan, desired: &Desired) -> Plan {
    let alone: Vec<u32> = plan
        .steps
        .iter()
        .filter_map(|step| goes_alone(step, desired))
        .collect();
    let mut steps = plan.steps;
    // A node whose upgrade waits keeps its config too: the new config may
    // name an installer it does not run yet.
    let held: Vec<u32> = steps
        .iter()
        .filter(|step| !alone.is_empty() && disrupts(step))
        .filter_map(vmid_of)
        .collect();
    for step in &mut steps {
        let vmid = vmid_of(step).unwrap_or_default();
        if let Step::ApplyConfig { now, .. }
        | Step::Upgrade { now, .. }
        | Step::KubernetesControlPlane { now, .. } = step
        {
            *now = !held.contains(&vmid);
        }
    }
    if let [_, second, ..] = alone[..] {
        steps.push(Step::Conflict {
            vmid: second,
            reason: format!(
                "replacing or restarting Talos nodes {alone:?} in one deploy would take more than one node away at a time (etcd's quorum); allow one per deploy"
            ),
        });
    }
    Plan { steps }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_moves_one_minor_at_a_time_and_never_down() {
        assert_eq!(kubernetes_change(Some("1.35.1"), "1.35.1"), Ok(None));
        assert_eq!(kubernetes_change(None, "1.35.1"), Ok(None));
        assert_eq!(
            kubernetes_change(Some("1.34.3"), "1.35.1"),
            Ok(Some(KubernetesChange {
                from: "1.34.3".into(),
                to: "1.35.1".into()
            }))
        );
        assert!(kubernetes_change(Some("1.35.0"), "1.35.2")
            .unwrap()
            .is_some());
        let skip = kubernetes_change(Some("1.33.4"), "1.35.1").unwrap_err();
        assert!(skip.contains("newest 1.34.x"), "{skip}");
        let down = kubernetes_change(Some("1.35.1"), "1.35.0").unwrap_err();
        assert!(
            down.contains("downgrade") && down.contains("back to 1.35.1"),
            "{down}"
        );
        assert!(kubernetes_change(Some("latest"), "1.35.1").is_err());
    }

    #[test]
    fn the_interim_config_keeps_only_the_kubelet_back() {
        let change = KubernetesChange {
            from: "1.34.3".into(),
            to: "1.35.1".into(),
        };
        let config = "machine:\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.35.1\ncluster:\n  apiServer:\n    image: registry.k8s.io/kube-apiserver:v1.35.1\n";
        let interim =
            String::from_utf8(interim_config(config.as_bytes(), &change).unwrap()).unwrap();
        assert_eq!(
            interim,
            config.replace("kubelet:v1.35.1", "kubelet:v1.34.3"),
            "{interim}"
        );
        assert!(interim.contains("kube-apiserver:v1.35.1"));
        // Not exactly one kubelet image: refused rather than guessed.
        let twice = format!("{config}# ghcr.io/siderolabs/kubelet:v1.35.1\n");
        assert!(interim_config(twice.as_bytes(), &change).is_err());
        assert!(interim_config(b"machine: {}\n", &change).is_err());
    }
}
