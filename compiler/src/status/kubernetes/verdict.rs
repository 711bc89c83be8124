//! What one object's status says, as a pass or a reason it is not
//! healthy: pure functions of the shapes the controllers write, each
//! cited where it is judged. The caller adds the object's name and the fix.

use serde::{Deserialize, Deserializer};

use crate::net::kube_api::{Condition, NodeStatus, ObjectMeta};

/// Healthy, with what was seen; or not, with why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Healthy(String),
    Unhealthy(String),
}

/// The status fields the judged kinds write; absent ones stay empty.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub observed_generation: Option<i64>,
    /// CloudNativePG's `phase` and `phaseReason`.
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub phase_reason: Option<String>,
    /// CloudNativePG's instance counts.
    #[serde(default)]
    pub instances: Option<i64>,
    #[serde(default)]
    pub ready_instances: Option<i64>,
    /// The SpiceDB operator's migration hashes.
    #[serde(default)]
    pub current_migration_hash: Option<String>,
    #[serde(default)]
    pub target_migration_hash: Option<String>,
}

/// One listed object: its metadata, the one spec field read, and status.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Listed {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Spec,
    #[serde(default)]
    pub status: Status,
}

/// Flux's `spec.suspend`: a suspended object is not reconciled.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Spec {
    #[serde(default)]
    pub suspend: bool,
}

/// One EndpointSlice (`discovery.k8s.io/v1`): its endpoints' readiness.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct EndpointSlice {
    /// `null` when the Service has no endpoints (not `omitempty` in
    /// discovery/v1's `EndpointSlice`).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub endpoints: Vec<Endpoint>,
}

/// A list Go writes as `null` when it is nil.
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<Vec<T>>::deserialize(deserializer).map(Option::unwrap_or_default)
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Endpoint {
    #[serde(default)]
    pub conditions: EndpointConditions,
}

/// `ready` unset means ready (the API's documented default: "nil should be
/// interpreted as true").
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct EndpointConditions {
    #[serde(default)]
    pub ready: Option<bool>,
}

fn find<'a>(conditions: &'a [Condition], kind: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.kind == kind)
}

/// `Ready=False (Reason): message`.
fn shown(condition: &Condition) -> String {
    let mut text = format!("{}={}", condition.kind, condition.status);
    if !condition.reason.is_empty() {
        text.push_str(&format!(" ({})", condition.reason));
    }
    if !condition.message.is_empty() {
        text.push_str(&format!(": {}", condition.message));
    }
    text
}

/// A `True` condition written for an older spec than the object's.
fn stale(meta: &ObjectMeta, status: &Status, condition: &Condition) -> Option<String> {
    let generation = meta.generation?;
    let observed = condition
        .observed_generation
        .or(status.observed_generation)?;
    (observed < generation).then(|| {
        format!(
            "its status is for generation {observed} but the spec is at generation \
             {generation}: the controller has not reconciled the change yet"
        )
    })
}

/// The `Ready` condition of Flux's Kustomization and HelmRelease
/// (fluxcd/pkg `apis/meta/conditions.go`: `ReadyCondition = "Ready"`),
/// cert-manager's Certificate (`CertificateConditionReady`) and External
/// Secrets' ExternalSecret (`ExternalSecretReady`, reason `SecretSynced`
/// when `True`): `True` for the current generation is healthy.
pub fn ready(object: &Listed) -> Verdict {
    let Some(condition) = find(&object.status.conditions, "Ready") else {
        return Verdict::Unhealthy(
            "it has no Ready condition: its controller has not reconciled it yet".into(),
        );
    };
    if condition.status != "True" {
        return Verdict::Unhealthy(shown(condition));
    }
    if let Some(why) = stale(&object.metadata, &object.status, condition) {
        return Verdict::Unhealthy(why);
    }
    Verdict::Healthy(if condition.message.is_empty() {
        shown(condition)
    } else {
        condition.message.clone()
    })
}

/// A Flux Kustomization or HelmRelease: not suspended (its `Ready` would
/// still say how the last reconciliation went, long ago), then [`ready`].
pub fn flux(object: &Listed) -> Verdict {
    if object.spec.suspend {
        return Verdict::Unhealthy(
            "it is suspended (`spec.suspend: true`): Flux does not reconcile it, and the tree never suspends one".into(),
        );
    }
    ready(object)
}

/// CloudNativePG's phase for a cluster with nothing to do
/// (v1.28.1, 1ecc483, `api/v1/cluster_types.go:660`: `PhaseHealthy`).
pub const POSTGRES_HEALTHY: &str = "Cluster in healthy state";

/// A CloudNativePG `Cluster`: healthy in phase [`POSTGRES_HEALTHY`] with
/// its `Ready` condition (`ConditionClusterReady = "Ready"`, `:1072`)
/// `True`; `phase`, `phaseReason`, `instances`, `readyInstances` and
/// `conditions` are its `ClusterStatus` fields there.
pub fn postgres(object: &Listed) -> Verdict {
    let status = &object.status;
    let phase = status.phase.as_deref().unwrap_or("");
    let ready = find(&status.conditions, "Ready");
    if phase == POSTGRES_HEALTHY && ready.is_some_and(|c| c.status == "True") {
        return Verdict::Healthy(format!(
            "{} of {} instances ready",
            status.ready_instances.unwrap_or(0),
            status.instances.unwrap_or(0)
        ));
    }
    let mut why = if phase.is_empty() {
        "it has no phase yet: the operator has not reconciled it".to_string()
    } else {
        format!("phase `{phase}`")
    };
    if let Some(reason) = status.phase_reason.as_deref().filter(|r| !r.is_empty()) {
        why.push_str(&format!(" ({reason})"));
    }
    match ready {
        Some(condition) if condition.status != "True" => {
            why.push_str(&format!("; {}", shown(condition)))
        }
        None => why.push_str("; no Ready condition"),
        Some(_) => {}
    }
    Verdict::Unhealthy(why)
}

/// The SpiceDB operator's conditions that say something is wrong when
/// `True` (authzed/spicedb-operator v1.22.0,
/// `pkg/apis/authzed/v1alpha1/conditions.go`).
const SPICEDB_ERRORS: [&str; 3] = ["ValidatingFailed", "PreconditionsFailed", "RolloutError"];

/// A `SpiceDBCluster`: it has no `Ready` condition, so healthy is what
/// the operator's own `RolloutInProgress` (`types.go`) calls done — no
/// `Migrating` or `RollingDeployment` condition `True` and the current
/// migration hash the target one — with no error condition `True`, no
/// failed migration (`Migrating=False`, `MigrationFailed`), and the
/// current generation observed.
pub fn spicedb(object: &Listed) -> Verdict {
    let status = &object.status;
    let is_true = |kind: &str| find(&status.conditions, kind).filter(|c| c.status == "True");
    for kind in SPICEDB_ERRORS {
        if let Some(condition) = is_true(kind) {
            return Verdict::Unhealthy(shown(condition));
        }
    }
    if let Some(condition) = find(&status.conditions, "Migrating")
        .filter(|c| c.status == "False" && c.reason == "MigrationFailed")
    {
        return Verdict::Unhealthy(shown(condition));
    }
    let (Some(generation), Some(observed)) =
        (object.metadata.generation, status.observed_generation)
    else {
        return Verdict::Unhealthy(
            "it has no observed generation: the operator has not reconciled it yet".into(),
        );
    };
    if observed < generation {
        return Verdict::Unhealthy(format!(
            "the operator has seen generation {observed}, the spec is at {generation}"
        ));
    }
    for kind in ["Migrating", "RollingDeployment"] {
        if let Some(condition) = is_true(kind) {
            return Verdict::Unhealthy(format!("still rolling out: {}", shown(condition)));
        }
    }
    if status.current_migration_hash != status.target_migration_hash {
        return Verdict::Unhealthy(
            "still rolling out: the datastore is not migrated to the target yet".into(),
        );
    }
    Verdict::Healthy("rolled out, no error condition".into())
}

/// A Service's EndpointSlices: healthy when it has endpoints and every one
/// is ready (for SpiceDB, ready means its gRPC health check passes: the
/// operator's readiness probe is `grpc_health_probe -addr=localhost:50051`).
pub fn endpoints(slices: &[EndpointSlice]) -> Verdict {
    let all: Vec<&Endpoint> = slices.iter().flat_map(|s| &s.endpoints).collect();
    let ready = all
        .iter()
        .filter(|e| e.conditions.ready.unwrap_or(true))
        .count();
    if all.is_empty() {
        Verdict::Unhealthy("its Service has no endpoints: no pod of it is running".into())
    } else if ready < all.len() {
        Verdict::Unhealthy(format!(
            "{} of {} endpoints are not ready (their readiness probe fails)",
            all.len() - ready,
            all.len()
        ))
    } else {
        Verdict::Healthy(format!("{ready} of {} endpoints ready", all.len()))
    }
}

/// A node: healthy when its `Ready` condition is `True`.
pub fn node(node: &NodeStatus) -> Verdict {
    match &node.condition {
        Some(condition) if node.ready => Verdict::Healthy(if condition.message.is_empty() {
            "Ready".into()
        } else {
            condition.message.clone()
        }),
        Some(condition) => Verdict::Unhealthy(shown(condition)),
        None => {
            Verdict::Unhealthy("it has no Ready condition: its kubelet has not reported".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(kind: &str, status: &str, reason: &str, message: &str) -> Condition {
        Condition {
            kind: kind.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: None,
        }
    }

    fn object(generation: Option<i64>, status: Status) -> Listed {
        Listed {
            metadata: ObjectMeta {
                name: "cert-manager".into(),
                namespace: Some("cert-manager".into()),
                generation,
            },
            spec: Spec::default(),
            status,
        }
    }

    fn with(conditions: Vec<Condition>) -> Status {
        Status {
            conditions,
            ..Status::default()
        }
    }

    #[test]
    fn ready_true_is_healthy_and_shows_its_message() {
        let ok = condition(
            "Ready",
            "True",
            "InstallSucceeded",
            "Helm install succeeded",
        );
        assert_eq!(
            ready(&object(Some(1), with(vec![ok]))),
            Verdict::Healthy("Helm install succeeded".into())
        );
    }

    #[test]
    fn ready_false_shows_reason_and_message() {
        let failed = condition(
            "Ready",
            "False",
            "InstallFailed",
            "context deadline exceeded",
        );
        assert_eq!(
            ready(&object(Some(1), with(vec![failed]))),
            Verdict::Unhealthy("Ready=False (InstallFailed): context deadline exceeded".into())
        );
        let unknown = condition("Ready", "Unknown", "Progressing", "");
        assert_eq!(
            ready(&object(None, with(vec![unknown]))),
            Verdict::Unhealthy("Ready=Unknown (Progressing)".into())
        );
    }

    #[test]
    fn no_ready_condition_or_an_older_generation_is_not_ready() {
        let other = condition("Reconciling", "True", "Progressing", "");
        assert!(matches!(
            ready(&object(Some(1), with(vec![other]))),
            Verdict::Unhealthy(why) if why.contains("no Ready condition")
        ));
        let mut old = condition("Ready", "True", "ReconciliationSucceeded", "Applied");
        old.observed_generation = Some(2);
        assert!(matches!(
            ready(&object(Some(3), with(vec![old.clone()]))),
            Verdict::Unhealthy(why) if why.contains("generation 2") && why.contains("generation 3")
        ));
        // The status's own observedGeneration counts when the condition has none.
        old.observed_generation = None;
        let status = Status {
            observed_generation: Some(2),
            ..with(vec![old.clone()])
        };
        assert!(matches!(
            ready(&object(Some(3), status)),
            Verdict::Unhealthy(_)
        ));
        assert!(matches!(
            ready(&object(Some(2), with(vec![old]))),
            Verdict::Healthy(_)
        ));
    }

    #[test]
    fn a_suspended_flux_object_is_not_healthy_whatever_its_last_ready() {
        let ok = condition(
            "Ready",
            "True",
            "ReconciliationSucceeded",
            "Applied revision",
        );
        let mut suspended = object(Some(1), with(vec![ok]));
        assert!(matches!(flux(&suspended), Verdict::Healthy(_)));
        suspended.spec.suspend = true;
        assert!(matches!(
            flux(&suspended),
            Verdict::Unhealthy(why) if why.contains("suspended")
        ));
    }

    fn postgres_status(phase: &str, ready: &str) -> Status {
        Status {
            phase: Some(phase.into()),
            phase_reason: Some("".into()),
            instances: Some(2),
            ready_instances: Some(if ready == "True" { 2 } else { 1 }),
            ..with(vec![condition("Ready", ready, "", "")])
        }
    }

    #[test]
    fn postgres_is_healthy_only_in_the_healthy_phase_and_ready() {
        assert_eq!(
            postgres(&object(Some(1), postgres_status(POSTGRES_HEALTHY, "True"))),
            Verdict::Healthy("2 of 2 instances ready".into())
        );
        let mut creating = postgres_status("Creating a new replica", "False");
        creating.phase_reason = Some("Creating replica spicedb-pg-2".into());
        creating.conditions[0].reason = "ClusterIsNotReady".into();
        creating.conditions[0].message = "Cluster Is Not Ready".into();
        assert_eq!(
            postgres(&object(Some(1), creating)),
            Verdict::Unhealthy(
                "phase `Creating a new replica` (Creating replica spicedb-pg-2); \
                 Ready=False (ClusterIsNotReady): Cluster Is Not Ready"
                    .into()
            )
        );
        assert!(matches!(
            postgres(&object(Some(1), postgres_status(POSTGRES_HEALTHY, "False"))),
            Verdict::Unhealthy(_)
        ));
        assert!(matches!(
            postgres(&object(Some(1), Status::default())),
            Verdict::Unhealthy(why) if why.contains("no phase")
        ));
    }

    fn spicedb_status(conditions: Vec<Condition>) -> Status {
        Status {
            observed_generation: Some(1),
            current_migration_hash: Some("abc".into()),
            target_migration_hash: Some("abc".into()),
            ..with(conditions)
        }
    }

    #[test]
    fn spicedb_is_healthy_when_rolled_out_without_errors() {
        let warning = condition("ConfigurationWarning", "True", "WarningsPresent", "x");
        assert!(matches!(
            spicedb(&object(Some(1), spicedb_status(vec![warning]))),
            Verdict::Healthy(_)
        ));
    }

    #[test]
    fn spicedb_errors_rollouts_and_stale_generations_are_not_healthy() {
        let invalid = condition(
            "ValidatingFailed",
            "True",
            "InvalidConfig",
            "Error validating config",
        );
        assert_eq!(
            spicedb(&object(Some(1), spicedb_status(vec![invalid]))),
            Verdict::Unhealthy(
                "ValidatingFailed=True (InvalidConfig): Error validating config".into()
            )
        );
        let failed = condition("Migrating", "False", "MigrationFailed", "migrate failed");
        assert!(matches!(
            spicedb(&object(Some(1), spicedb_status(vec![failed]))),
            Verdict::Unhealthy(why) if why.contains("MigrationFailed")
        ));
        let rolling = condition(
            "RollingDeployment",
            "True",
            "WaitingForDeploymentAvailability",
            "",
        );
        assert!(matches!(
            spicedb(&object(Some(1), spicedb_status(vec![rolling]))),
            Verdict::Unhealthy(why) if why.starts_with("still rolling out")
        ));
        let mut unmigrated = spicedb_status(vec![]);
        unmigrated.target_migration_hash = Some("def".into());
        assert!(matches!(
            spicedb(&object(Some(1), unmigrated)),
            Verdict::Unhealthy(_)
        ));
        assert!(matches!(
            spicedb(&object(Some(2), spicedb_status(vec![]))),
            Verdict::Unhealthy(why) if why.contains("generation 1")
        ));
        assert!(matches!(
            spicedb(&object(Some(1), Status::default())),
            Verdict::Unhealthy(_)
        ));
    }

    fn slice(ready: &[Option<bool>]) -> EndpointSlice {
        EndpointSlice {
            endpoints: ready
                .iter()
                .map(|r| Endpoint {
                    conditions: EndpointConditions { ready: *r },
                })
                .collect(),
        }
    }

    #[test]
    fn endpoints_need_one_and_every_one_ready() {
        assert_eq!(
            endpoints(&[slice(&[Some(true)]), slice(&[None])]),
            Verdict::Healthy("2 of 2 endpoints ready".into())
        );
        assert!(matches!(
            endpoints(&[slice(&[Some(true), Some(false)])]),
            Verdict::Unhealthy(why) if why.starts_with("1 of 2")
        ));
        assert!(matches!(endpoints(&[]), Verdict::Unhealthy(_)));
        let none: EndpointSlice =
            serde_json::from_str(r#"{"addressType": "IPv4", "endpoints": null}"#).unwrap();
        assert!(
            matches!(endpoints(&[none]), Verdict::Unhealthy(why) if why.contains("no endpoints"))
        );
        assert!(matches!(endpoints(&[slice(&[])]), Verdict::Unhealthy(_)));
    }

    #[test]
    fn a_node_is_healthy_only_when_ready() {
        let not_ready = NodeStatus {
            name: "cp1".into(),
            ready: false,
            condition: Some(condition(
                "Ready",
                "False",
                "KubeletNotReady",
                "container runtime network not ready",
            )),
        };
        assert_eq!(
            node(&not_ready),
            Verdict::Unhealthy(
                "Ready=False (KubeletNotReady): container runtime network not ready".into()
            )
        );
        let silent = NodeStatus {
            condition: None,
            ..not_ready
        };
        assert!(matches!(node(&silent), Verdict::Unhealthy(_)));
    }
}
