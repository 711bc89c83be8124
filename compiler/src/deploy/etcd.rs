//! Whether a Talos control plane may be replaced now, and how it leaves
//! etcd first — pure, so the decision is shown in the plan and tested
//! without a cluster. The live cluster is read by `deploy::talos` into a
//! [`ClusterView`]; [`decide`] turns it into a [`Decision`] for the node to
//! replace, and [`gate`] puts the decision into the plan around the
//! replace: an etcd step before it (leave, or remove by ID through a live
//! peer), a wait after it (the node back, etcd healthy with the expected
//! members), or a conflict that stops the deploy before any change.
//!
//! The rules (issue 18): every member healthy and none unknown to the
//! blueprint; removing the node keeps a healthy majority; a cluster that
//! never ran etcd (every control plane answers, none runs it) needs none of
//! this. A node that is not an etcd member (a worker, or a node that left
//! already) is replaced without leaving.

use std::collections::BTreeMap;

use serde::Serialize;

use super::plan::{Plan, Step};

/// A control plane of the blueprint as the live cluster shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// The node's hostname (its VM's name), which its etcd member carries.
    pub name: String,
    pub etcd: EtcdService,
}

/// A node's `etcd` service, or why it could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EtcdService {
    Healthy,
    /// Running but failing its health check: Talos's last message.
    Unhealthy(String),
    /// Not running (`Preparing` before bootstrap, `Finished` after a
    /// leave): its state.
    NotRunning(String),
    /// The node's Talos API did not answer: why.
    Unreachable(String),
}

/// One etcd member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    /// Empty for a member added and never started.
    pub hostname: String,
    pub is_learner: bool,
}

/// The live cluster: every control plane of the blueprint, and etcd's
/// member list as one of them gave it (or why none did).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterView {
    pub nodes: Vec<NodeView>,
    pub members: Result<Vec<Member>, String>,
}

/// What replacing a node needs first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// etcd never ran: nothing to leave, nothing to wait for.
    NotBootstrapped,
    /// The node is not an etcd member (a worker, or it left before).
    NotAMember,
    /// `EtcdLeaveCluster` on the node itself.
    Leave { member: u64 },
    /// `EtcdRemoveMemberByID` through a healthy peer: the node does not
    /// answer, or its etcd does not.
    RemoveById { member: u64, through: String },
    /// Not now: why, naming the member and what is wrong.
    Refuse(String),
}

/// How the node leaves etcd, as the plan shows and apply does it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "how", rename_all = "kebab-case")]
pub enum EtcdExit {
    Leave { member: u64 },
    RemoveById { member: u64, through: String },
    NotAMember,
    NotBootstrapped,
}

impl EtcdExit {
    /// The decision this exit was planned from.
    pub fn decision(&self) -> Decision {
        match self {
            EtcdExit::Leave { member } => Decision::Leave { member: *member },
            EtcdExit::RemoveById { member, through } => Decision::RemoveById {
                member: *member,
                through: through.clone(),
            },
            EtcdExit::NotAMember => Decision::NotAMember,
            EtcdExit::NotBootstrapped => Decision::NotBootstrapped,
        }
    }
}

/// The live Talos cluster as the workflow and apply need it: etcd read
/// again right before each step, a node's exit carried out, in-place
/// changes sent, every return waited for. `deploy::talos` implements it
/// over the Talos API.
pub trait LiveTalos {
    /// The cluster now.
    fn view(&self) -> ClusterView;
    /// Carries out `exit` for `node` and checks, through a peer, that its
    /// member is gone: what was done, or why not.
    fn leave(&self, node: &str, exit: &EtcdExit) -> Result<String, String>;
    /// Waits until `node` answers its Talos API and etcd is healthy with
    /// exactly `members`, for at most `deadline`; at the deadline, what it
    /// waited for and what it saw last.
    fn wait_rejoined(
        &self,
        node: &str,
        members: &[String],
        deadline: std::time::Duration,
    ) -> Result<(), String>;
    /// `ApplyConfiguration` (mode AUTO) of `config` on `node`: whether it
    /// reboots (or, on a dry run, would) and the node's diff (dry run),
    /// the bundle's secrets hidden in it and in any refusal.
    fn apply_config(
        &self,
        node: &str,
        config: &[u8],
        dry_run: bool,
    ) -> Result<(bool, String), String>;
    /// `Upgrade` of `node` to `installer` (never forced); the node's ack.
    fn upgrade(&self, node: &str, installer: &str) -> Result<String, String>;
    /// Waits until `node` stops answering (its reboot began), for at most
    /// `deadline`: whether it did. A node that rebooted too fast to be
    /// seen away is then waited for as usual.
    fn wait_down(&self, node: &str, deadline: std::time::Duration) -> bool;
    /// Waits until `node` answers on Talos `version` (any, if `None`).
    fn wait_version(
        &self,
        node: &str,
        version: Option<&str>,
        deadline: std::time::Duration,
    ) -> Result<(), String>;
    /// The Talos version `node` reports now, or why it does not answer.
    fn version(&self, node: &str) -> Result<String, String>;
    /// Waits until `node`'s service `service` (e.g. `kubelet`) is running
    /// and healthy, for at most `deadline`; at the deadline, what it saw
    /// last.
    fn wait_healthy(
        &self,
        node: &str,
        service: &str,
        deadline: std::time::Duration,
    ) -> Result<(), String>;
}

/// Whether control plane `node` may be taken away for an in-place reboot
/// (upgrade, config needing a reboot) now: etcd healthy with exactly
/// `members`, and more than two of them (Talos refuses an upgrade of a
/// two-member cluster; one down of two loses quorum).
pub fn in_place_ready(view: &ClusterView, node: &str, members: &[String]) -> Result<(), String> {
    rejoined(view, members).map_err(|why| {
        format!("{node} is not taken down now: etcd is not healthy ({why}); bring it back first")
    })?;
    if members.len() == 2 {
        return Err(format!(
            "{node} is not taken down now: etcd has exactly two members, one down loses quorum; add a third control plane first"
        ));
    }
    Ok(())
}

/// Whether control plane `node` may take a change live now (it stays up):
/// etcd healthy with exactly `members`, or never bootstrapped.
pub fn changeable_live(view: &ClusterView, node: &str, members: &[String]) -> Result<(), String> {
    if view.members.is_err() && without_members(view, "") == Decision::NotBootstrapped {
        return Ok(());
    }
    rejoined(view, members).map_err(|why| {
        format!("{node} is not changed now: etcd is not healthy ({why}); bring it back first")
    })
}

/// Whether control plane `node` may go away now: any time before etcd was
/// ever bootstrapped (every control plane answers, none runs it), else
/// [`in_place_ready`].
pub fn may_take_down(view: &ClusterView, node: &str, members: &[String]) -> Result<(), String> {
    if view.members.is_err() && without_members(view, "") == Decision::NotBootstrapped {
        return Ok(());
    }
    in_place_ready(view, node, members)
}

/// Whether `view` shows etcd healthy with exactly `members`, each a voter
/// whose node's etcd is healthy; else what is still missing.
pub fn rejoined(view: &ClusterView, members: &[String]) -> Result<(), String> {
    let listed = view
        .members
        .as_ref()
        .map_err(|why| format!("etcd's members cannot be read: {why}"))?;
    let mut names: Vec<&str> = listed.iter().map(|m| m.hostname.as_str()).collect();
    names.sort_unstable();
    let mut wanted: Vec<&str> = members.iter().map(String::as_str).collect();
    wanted.sort_unstable();
    if names != wanted {
        return Err(format!("members are {}", names.join(", ")));
    }
    if let Some(learner) = listed.iter().find(|m| m.is_learner) {
        return Err(format!("{} is still a learner", learner.hostname));
    }
    let sick: Vec<String> = view
        .nodes
        .iter()
        .filter(|n| members.contains(&n.name) && n.etcd != EtcdService::Healthy)
        .map(|n| format!("{}: {}", n.name, service_text(&n.etcd)))
        .collect();
    if sick.is_empty() {
        Ok(())
    } else {
        Err(sick.join("; "))
    }
}

/// The member ID as etcd and talosctl print it.
pub fn hex(id: u64) -> String {
    format!("{id:016x}")
}

/// What replacing control plane `node` needs, given the live cluster.
pub fn decide(view: &ClusterView, node: &str) -> Decision {
    let members = match &view.members {
        Ok(members) => members,
        Err(why) => return without_members(view, why),
    };
    let known = |hostname: &str| view.nodes.iter().any(|n| n.name == hostname);
    for member in members {
        if member.hostname.is_empty() {
            return Decision::Refuse(format!(
                "etcd member {} has no name (added, never started); remove it (`talosctl etcd remove-member {}`) and deploy again",
                hex(member.id),
                hex(member.id)
            ));
        }
        if !known(&member.hostname) {
            return Decision::Refuse(format!(
                "etcd member {} `{}` is not a control plane of the blueprint; remove it (`talosctl etcd remove-member {}`) or add the node to the blueprint",
                hex(member.id),
                member.hostname,
                hex(member.id)
            ));
        }
        if member.is_learner {
            return Decision::Refuse(format!(
                "etcd member {} `{}` is a learner, still joining; wait until it is a voting member and deploy again",
                hex(member.id),
                member.hostname
            ));
        }
    }
    // Every other member healthy; every other control plane a member.
    for other in view.nodes.iter().filter(|n| n.name != node) {
        let Some(member) = members.iter().find(|m| m.hostname == other.name) else {
            return Decision::Refuse(format!(
                "control plane {} is not an etcd member ({}); wait until it has joined, or replace it first",
                other.name,
                service_text(&other.etcd)
            ));
        };
        if other.etcd != EtcdService::Healthy {
            return Decision::Refuse(format!(
                "etcd member {} `{}` is not healthy ({}); replacing {node} now could cost etcd its quorum: bring {} back first",
                hex(member.id),
                other.name,
                service_text(&other.etcd),
                other.name
            ));
        }
    }
    let Some(own) = members.iter().find(|m| m.hostname == node) else {
        return Decision::NotAMember;
    };
    // What etcd checks before it removes a healthy voter: the rest keep a
    // healthy majority of the members that stay.
    let remaining = members.len() - 1;
    let healthy_remaining = view
        .nodes
        .iter()
        .filter(|n| n.name != node && n.etcd == EtcdService::Healthy)
        .filter(|n| members.iter().any(|m| m.hostname == n.name))
        .count();
    if remaining == 0 {
        return Decision::Refuse(format!(
            "{node} is etcd's only member: replacing it would lose the cluster's data; add control planes first"
        ));
    }
    if healthy_remaining <= remaining / 2 {
        return Decision::Refuse(format!(
            "without {node}, {healthy_remaining} of {remaining} etcd members are healthy: below quorum"
        ));
    }
    let state = view.nodes.iter().find(|n| n.name == node).map(|n| &n.etcd);
    match state {
        Some(EtcdService::Healthy) => Decision::Leave { member: own.id },
        _ => {
            let through = view
                .nodes
                .iter()
                .find(|n| n.name != node && n.etcd == EtcdService::Healthy)
                .map(|n| n.name.clone())
                .unwrap_or_default();
            Decision::RemoveById {
                member: own.id,
                through,
            }
        }
    }
}

/// No member list: never bootstrapped only if every control plane answers
/// and none runs etcd; otherwise the cluster cannot be judged (no leader,
/// nodes down) and nothing is replaced.
fn without_members(view: &ClusterView, why: &str) -> Decision {
    let fresh = !view.nodes.is_empty()
        && view
            .nodes
            .iter()
            .all(|n| matches!(n.etcd, EtcdService::NotRunning(_)));
    if fresh {
        return Decision::NotBootstrapped;
    }
    let problems: Vec<String> = view
        .nodes
        .iter()
        .filter(|n| n.etcd != EtcdService::Healthy)
        .map(|n| format!("{}: {}", n.name, service_text(&n.etcd)))
        .collect();
    Decision::Refuse(format!(
        "etcd's members cannot be read ({why}){}; bring the control planes back before replacing one",
        if problems.is_empty() {
            String::new()
        } else {
            format!("; {}", problems.join("; "))
        }
    ))
}

fn service_text(service: &EtcdService) -> String {
    match service {
        EtcdService::Healthy => "etcd healthy".into(),
        EtcdService::Unhealthy(why) => format!("etcd unhealthy: {why}"),
        EtcdService::NotRunning(state) => format!("etcd not running: {state}"),
        EtcdService::Unreachable(why) => format!("its Talos API does not answer: {why}"),
    }
}

/// The plan with every allowed replace of a control plane in `decisions`
/// (by VMID) wrapped in its etcd steps: the exit before, the wait after
/// (the members the cluster must have again: `expected`), or a conflict.
pub fn gate(plan: Plan, decisions: &BTreeMap<u32, Decision>, expected: &[String]) -> Plan {
    let mut steps = Vec::with_capacity(plan.steps.len() + 2);
    for step in plan.steps {
        let Step::Replace {
            vmid,
            name,
            allowed: true,
            ..
        } = &step
        else {
            steps.push(step);
            continue;
        };
        let (vmid, name) = (*vmid, name.clone());
        let Some(decision) = decisions.get(&vmid) else {
            steps.push(step);
            continue;
        };
        let exit = match decision {
            Decision::Refuse(reason) => {
                steps.push(step);
                steps.push(Step::Conflict {
                    vmid,
                    reason: format!("{name} is not replaced now: {reason}"),
                });
                continue;
            }
            Decision::NotBootstrapped => EtcdExit::NotBootstrapped,
            Decision::NotAMember => EtcdExit::NotAMember,
            Decision::Leave { member } => EtcdExit::Leave { member: *member },
            Decision::RemoveById { member, through } => EtcdExit::RemoveById {
                member: *member,
                through: through.clone(),
            },
        };
        let rejoin = exit != EtcdExit::NotBootstrapped;
        steps.push(Step::EtcdLeave {
            vmid,
            name: name.clone(),
            exit,
        });
        steps.push(step);
        if rejoin {
            steps.push(Step::EtcdRejoin {
                vmid,
                name,
                members: expected.to_vec(),
            });
        }
    }
    Plan { steps }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CP: [&str; 3] = ["talos-cp1", "talos-cp2", "talos-cp3"];

    fn healthy() -> ClusterView {
        ClusterView {
            nodes: CP
                .iter()
                .map(|name| NodeView {
                    name: name.to_string(),
                    etcd: EtcdService::Healthy,
                })
                .collect(),
            members: Ok(CP
                .iter()
                .enumerate()
                .map(|(i, name)| Member {
                    id: 0x100 + i as u64,
                    hostname: name.to_string(),
                    is_learner: false,
                })
                .collect()),
        }
    }

    fn set(view: &mut ClusterView, node: &str, etcd: EtcdService) {
        view.nodes.iter_mut().find(|n| n.name == node).unwrap().etcd = etcd;
    }

    fn refusal(decision: Decision) -> String {
        match decision {
            Decision::Refuse(reason) => reason,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_node_goes_down_in_place_only_with_every_member_healthy_and_more_than_two() {
        let members: Vec<String> = CP.iter().map(|n| n.to_string()).collect();
        assert_eq!(in_place_ready(&healthy(), "talos-cp2", &members), Ok(()));
        let mut view = healthy();
        set(
            &mut view,
            "talos-cp3",
            EtcdService::Unhealthy("context deadline exceeded".into()),
        );
        let why = in_place_ready(&view, "talos-cp2", &members).unwrap_err();
        assert!(
            why.contains("talos-cp2 is not taken down now") && why.contains("talos-cp3"),
            "{why}"
        );
        let mut two = healthy();
        two.nodes.pop();
        if let Ok(listed) = &mut two.members {
            listed.pop();
        }
        let why = in_place_ready(&two, "talos-cp2", &members[..2]).unwrap_err();
        assert!(why.contains("exactly two members"), "{why}");
    }

    #[test]
    fn a_healthy_cluster_lets_the_node_leave_itself() {
        assert_eq!(
            decide(&healthy(), "talos-cp2"),
            Decision::Leave { member: 0x101 }
        );
    }

    #[test]
    fn a_node_that_does_not_answer_is_removed_by_id_through_a_healthy_peer() {
        let mut view = healthy();
        set(
            &mut view,
            "talos-cp2",
            EtcdService::Unreachable("connection refused".into()),
        );
        assert_eq!(
            decide(&view, "talos-cp2"),
            Decision::RemoveById {
                member: 0x101,
                through: "talos-cp1".into()
            }
        );
        // Its etcd down but the node up: the same.
        set(
            &mut view,
            "talos-cp2",
            EtcdService::Unhealthy("context deadline exceeded".into()),
        );
        assert!(matches!(
            decide(&view, "talos-cp2"),
            Decision::RemoveById { member: 0x101, .. }
        ));
    }

    #[test]
    fn another_unhealthy_member_refuses_naming_it_and_why() {
        let mut view = healthy();
        set(
            &mut view,
            "talos-cp3",
            EtcdService::Unhealthy("context deadline exceeded".into()),
        );
        let reason = refusal(decide(&view, "talos-cp2"));
        assert!(
            reason.contains("0000000000000102 `talos-cp3` is not healthy")
                && reason.contains("context deadline exceeded")
                && reason.contains("bring talos-cp3 back first"),
            "{reason}"
        );
        set(
            &mut view,
            "talos-cp3",
            EtcdService::Unreachable("connection refused".into()),
        );
        let reason = refusal(decide(&view, "talos-cp2"));
        assert!(reason.contains("does not answer"), "{reason}");
    }

    #[test]
    fn an_unknown_member_a_nameless_one_or_a_learner_refuses() {
        let mut view = healthy();
        if let Ok(members) = &mut view.members {
            members.push(Member {
                id: 0xdead,
                hostname: "old-cp9".into(),
                is_learner: false,
            });
        }
        let reason = refusal(decide(&view, "talos-cp2"));
        assert!(
            reason.contains("000000000000dead `old-cp9` is not a control plane of the blueprint"),
            "{reason}"
        );
        if let Ok(members) = &mut view.members {
            members.last_mut().unwrap().hostname = String::new();
        }
        assert!(refusal(decide(&view, "talos-cp2")).contains("has no name"));
        let mut view = healthy();
        if let Ok(members) = &mut view.members {
            members[2].is_learner = true;
        }
        assert!(refusal(decide(&view, "talos-cp2")).contains("`talos-cp3` is a learner"));
    }

    #[test]
    fn another_control_plane_missing_from_etcd_refuses() {
        let mut view = healthy();
        if let Ok(members) = &mut view.members {
            members.retain(|m| m.hostname != "talos-cp3");
        }
        set(
            &mut view,
            "talos-cp3",
            EtcdService::NotRunning("Finished".into()),
        );
        let reason = refusal(decide(&view, "talos-cp2"));
        assert!(
            reason.contains("control plane talos-cp3 is not an etcd member"),
            "{reason}"
        );
    }

    #[test]
    fn a_node_that_left_before_is_replaced_without_leaving_again() {
        let mut view = healthy();
        if let Ok(members) = &mut view.members {
            members.retain(|m| m.hostname != "talos-cp2");
        }
        set(
            &mut view,
            "talos-cp2",
            EtcdService::NotRunning("Finished".into()),
        );
        assert_eq!(decide(&view, "talos-cp2"), Decision::NotAMember);
    }

    #[test]
    fn the_only_member_and_a_lost_quorum_refuse() {
        let view = ClusterView {
            nodes: vec![NodeView {
                name: "talos-cp1".into(),
                etcd: EtcdService::Healthy,
            }],
            members: Ok(vec![Member {
                id: 1,
                hostname: "talos-cp1".into(),
                is_learner: false,
            }]),
        };
        assert!(refusal(decide(&view, "talos-cp1")).contains("only member"));
        let mut view = healthy();
        view.members = Err("etcdserver: no leader".into());
        set(
            &mut view,
            "talos-cp1",
            EtcdService::Unreachable("refused".into()),
        );
        let reason = refusal(decide(&view, "talos-cp2"));
        assert!(
            reason.contains("etcdserver: no leader") && reason.contains("talos-cp1"),
            "{reason}"
        );
    }

    #[test]
    fn a_cluster_that_never_ran_etcd_needs_nothing_but_only_if_every_node_says_so() {
        let mut view = healthy();
        view.members = Err("etcd not running".into());
        for name in CP {
            set(&mut view, name, EtcdService::NotRunning("Preparing".into()));
        }
        assert_eq!(decide(&view, "talos-cp2"), Decision::NotBootstrapped);
        // One node silent: it may run the etcd the others lost.
        set(
            &mut view,
            "talos-cp3",
            EtcdService::Unreachable("refused".into()),
        );
        refusal(decide(&view, "talos-cp2"));
    }

    #[test]
    fn rejoined_means_exactly_the_expected_voters_all_healthy() {
        let expected: Vec<String> = CP.iter().map(|s| s.to_string()).collect();
        assert_eq!(rejoined(&healthy(), &expected), Ok(()));
        let mut view = healthy();
        if let Ok(members) = &mut view.members {
            members.retain(|m| m.hostname != "talos-cp2");
        }
        assert_eq!(
            rejoined(&view, &expected),
            Err("members are talos-cp1, talos-cp3".into())
        );
        let mut view = healthy();
        set(
            &mut view,
            "talos-cp2",
            EtcdService::NotRunning("Preparing".into()),
        );
        assert!(rejoined(&view, &expected)
            .unwrap_err()
            .contains("talos-cp2: etcd not running: Preparing"));
    }

    #[test]
    fn the_gate_wraps_an_allowed_replace_and_turns_a_refusal_into_a_conflict() {
        let replace = |vmid: u32, name: &str| Step::Replace {
            vmid,
            name: name.into(),
            change: "image a → b".into(),
            allowed: true,
        };
        let expected: Vec<String> = CP.iter().map(|s| s.to_string()).collect();
        let plan = Plan {
            steps: vec![replace(111, "talos-cp2")],
        };
        let gated = gate(
            plan.clone(),
            &[(111, Decision::Leave { member: 7 })].into_iter().collect(),
            &expected,
        );
        assert_eq!(
            gated.steps,
            [
                Step::EtcdLeave {
                    vmid: 111,
                    name: "talos-cp2".into(),
                    exit: EtcdExit::Leave { member: 7 }
                },
                replace(111, "talos-cp2"),
                Step::EtcdRejoin {
                    vmid: 111,
                    name: "talos-cp2".into(),
                    members: expected.clone()
                },
            ]
        );
        assert!(gated.conflicts().is_empty());
        let refused = gate(
            plan.clone(),
            &[(111, Decision::Refuse("talos-cp3 is down".into()))]
                .into_iter()
                .collect(),
            &expected,
        );
        assert_eq!(refused.conflicts().len(), 1);
        assert!(refused
            .lines()
            .iter()
            .any(|l| l == "CONFLICT VM 111: talos-cp2 is not replaced now: talos-cp3 is down"));
        let fresh = gate(
            plan,
            &[(111, Decision::NotBootstrapped)].into_iter().collect(),
            &expected,
        );
        assert_eq!(fresh.steps.len(), 2, "no wait for an etcd that never ran");
    }
}

/// Property: whatever the cluster looks like, `decide` never lets a member
/// leave when the members that stay would lack a healthy majority, never
/// while a member is unknown, nameless or a learner, never through an
/// unhealthy peer, and calls a cluster fresh only when no node runs etcd.
/// Random views from a fixed seed, so a failure repeats.
#[cfg(test)]
mod properties {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn random_view(rng: &mut StdRng) -> (ClusterView, String) {
        let count = rng.gen_range(1..=5);
        let names: Vec<String> = (1..=count).map(|i| format!("talos-cp{i}")).collect();
        let nodes: Vec<NodeView> = names
            .iter()
            .map(|name| NodeView {
                name: name.clone(),
                etcd: match rng.gen_range(0..10) {
                    0 => EtcdService::Unhealthy("slow".into()),
                    1 => EtcdService::NotRunning("Finished".into()),
                    2 => EtcdService::Unreachable("timeout".into()),
                    _ => EtcdService::Healthy,
                },
            })
            .collect();
        let members = if rng.gen_range(0..8) == 0 {
            Err("no leader".to_string())
        } else {
            let mut members: Vec<Member> = Vec::new();
            for (i, name) in names.iter().enumerate() {
                if rng.gen_range(0..6) != 0 {
                    members.push(Member {
                        id: 0x1000 + i as u64,
                        hostname: name.clone(),
                        is_learner: rng.gen_range(0..15) == 0,
                    });
                }
            }
            match rng.gen_range(0..12) {
                0 => members.push(Member {
                    id: 0x9000,
                    hostname: "talos-old".into(),
                    is_learner: false,
                }),
                1 => members.push(Member {
                    id: 0x9001,
                    hostname: String::new(),
                    is_learner: false,
                }),
                _ => {}
            }
            Ok(members)
        };
        let node = names[rng.gen_range(0..names.len())].clone();
        (ClusterView { nodes, members }, node)
    }

    #[test]
    fn no_decision_takes_etcd_below_quorum_or_past_a_bad_member() {
        let mut rng = StdRng::seed_from_u64(18);
        let mut seen = BTreeMap::new();
        for _ in 0..20_000 {
            let (view, node) = random_view(&mut rng);
            let decision = decide(&view, &node);
            let kind = match &decision {
                Decision::NotBootstrapped => "fresh",
                Decision::NotAMember => "not-a-member",
                Decision::Leave { .. } => "leave",
                Decision::RemoveById { .. } => "remove",
                Decision::Refuse(_) => "refuse",
            };
            *seen.entry(kind).or_insert(0) += 1;
            let healthy = |name: &str| {
                view.nodes
                    .iter()
                    .any(|n| n.name == name && n.etcd == EtcdService::Healthy)
            };
            match &decision {
                Decision::Leave { member } | Decision::RemoveById { member, .. } => {
                    let members = view.members.as_ref().unwrap();
                    let own = members.iter().find(|m| m.id == *member).unwrap();
                    assert_eq!(own.hostname, node, "{view:?}");
                    let staying: Vec<&Member> =
                        members.iter().filter(|m| m.id != *member).collect();
                    let healthy_staying = staying.iter().filter(|m| healthy(&m.hostname)).count();
                    assert!(!staying.is_empty(), "the last member left: {view:?}");
                    assert!(
                        healthy_staying * 2 > staying.len(),
                        "below quorum after {node} left: {view:?}"
                    );
                    assert!(
                        members
                            .iter()
                            .all(|m| !m.is_learner
                                && view.nodes.iter().any(|n| n.name == m.hostname)),
                        "a bad member was passed over: {view:?}"
                    );
                    assert!(
                        staying.iter().all(|m| healthy(&m.hostname)),
                        "an unhealthy member stays: {view:?}"
                    );
                    if let Decision::RemoveById { through, .. } = &decision {
                        assert!(
                            healthy(through) && *through != node,
                            "removed through {through}: {view:?}"
                        );
                    }
                }
                Decision::NotBootstrapped => {
                    assert!(view.members.is_err(), "{view:?}");
                    assert!(
                        view.nodes
                            .iter()
                            .all(|n| matches!(n.etcd, EtcdService::NotRunning(_))),
                        "{view:?}"
                    );
                }
                Decision::NotAMember => {
                    let members = view.members.as_ref().unwrap();
                    assert!(!members.iter().any(|m| m.hostname == node), "{view:?}");
                }
                Decision::Refuse(why) => assert!(!why.is_empty()),
            }
        }
        // The generator reaches every kind of decision.
        for kind in ["fresh", "not-a-member", "leave", "remove", "refuse"] {
            assert!(
                seen.get(kind).copied().unwrap_or(0) > 0,
                "{kind} never decided: {seen:?}"
            );
        }
    }
}
