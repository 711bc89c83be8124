//! The Kubernetes schema check (`support::k8s_schemas`) is strict: it
//! refuses an unknown field of a core kind, an unknown metadata field of a
//! custom resource, and a kind it has no schema for.

use serde_json::json;

use crate::support::k8s_schemas::Schemas;

#[test]
fn the_validator_is_strict_for_core_and_custom_kinds() {
    let mut schemas = Schemas::new();
    let good = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}});
    assert!(schemas.check(&good).is_empty());
    let typo =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "labelz": {}}});
    assert!(!schemas.check(&typo).is_empty());
    let custom = json!({"apiVersion": "cilium.io/v2", "kind": "CiliumLoadBalancerIPPool",
        "metadata": {"name": "a", "namespaec": "x"}, "spec": {"blocks": [{"start": "10.0.0.1"}]}});
    assert!(
        !schemas.check(&custom).is_empty(),
        "metadata of custom resources is checked"
    );
    let unknown =
        json!({"apiVersion": "example.org/v1", "kind": "Thing", "metadata": {"name": "a"}});
    assert!(schemas.check(&unknown)[0].contains("no schema"));
}
