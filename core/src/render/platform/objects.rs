//! Builders for the objects every platform component repeats: its
//! Namespace, a HelmRepository and pinned HelmRelease, and ExternalSecrets
//! reading 1Password items through the `ClusterSecretStore`. Custom
//! resources' specs are JSON values here: their CRD schemas are the types,
//! and the tests hold every rendered object to them strictly.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::render::k8s::{Metadata, Object};
use crate::yaml::{self, YamlError};

/// The ClusterSecretStore every ExternalSecret reads from.
pub const STORE: &str = "onepassword";

pub fn object(
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    body: Value,
) -> Value {
    serde_json::to_value(Object {
        api_version,
        kind,
        metadata,
        body,
    })
    .expect("plain data serialises")
}

pub fn namespace(name: &str, privileged: bool) -> Value {
    let mut metadata = Metadata::cluster(name);
    if privileged {
        // democratic-csi's node plugin needs host PID, network and paths.
        for mode in ["enforce", "audit", "warn"] {
            metadata.labels.insert(
                format!("pod-security.kubernetes.io/{mode}"),
                "privileged".into(),
            );
        }
    }
    object("v1", "Namespace", metadata, json!({}))
}

pub fn helm_repository(namespace: &str, name: &str, url: &str) -> Value {
    object(
        "source.toolkit.fluxcd.io/v1",
        "HelmRepository",
        Metadata::namespaced(namespace, name),
        json!({"spec": {"interval": "1h", "url": url}}),
    )
}

/// A HelmRelease of `chart` at exactly `version` from the HelmRepository
/// `repository` of the same namespace.
pub fn helm_release(
    namespace: &str,
    name: &str,
    chart: &str,
    version: &str,
    repository: &str,
    values: Value,
) -> Value {
    let mut spec = json!({
        "interval": "1h",
        "chart": {"spec": {
            "chart": chart,
            "version": version,
            "sourceRef": {"kind": "HelmRepository", "name": repository},
        }},
        "install": {"remediation": {"retries": 3}},
        "upgrade": {"remediation": {"retries": 3}},
    });
    if values.as_object().is_some_and(|v| !v.is_empty()) {
        spec["values"] = values;
    }
    object(
        "helm.toolkit.fluxcd.io/v2",
        "HelmRelease",
        Metadata::namespaced(namespace, name),
        json!({ "spec": spec }),
    )
}

/// One key of an ExternalSecret: `secret_key` from the item's `property`.
pub struct Field<'a> {
    pub secret_key: &'a str,
    pub item: &'a str,
    pub property: &'a str,
}

/// An ExternalSecret making Secret `name` in `namespace` from 1Password,
/// optionally through a template (`type`, `data` of the target Secret).
pub fn external_secret(
    namespace: &str,
    name: &str,
    fields: &[Field<'_>],
    template: Option<Value>,
) -> Value {
    let mut target = json!({"name": name, "creationPolicy": "Owner"});
    if let Some(template) = template {
        target["template"] = template;
    }
    object(
        "external-secrets.io/v1",
        "ExternalSecret",
        Metadata::namespaced(namespace, name),
        json!({"spec": {
            "refreshInterval": "1h",
            "secretStoreRef": {"kind": "ClusterSecretStore", "name": STORE},
            "target": target,
            "data": fields.iter().map(|f| json!({
                "secretKey": f.secret_key,
                "remoteRef": {"key": f.item, "property": f.property},
            })).collect::<Vec<_>>(),
        }}),
    )
}

/// The documents of one file.
pub fn file(documents: &[Value]) -> Result<String, YamlError> {
    let texts = documents
        .iter()
        .map(yaml::document)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(yaml::stream(&texts))
}

/// Labels as a sorted map.
pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
