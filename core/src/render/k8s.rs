//! Kubernetes objects as types: `apiVersion`, `kind`, `metadata` and the
//! body, with the few core kinds the bootstrap renders spelled out (only the
//! fields waddlec sets, named as the API names them). Serialised, never
//! templated; the tests validate every object against the Kubernetes 1.35
//! and CRD schemas (strict: an unknown field fails).
//!
//! A handful of small types instead of a crate of every Kubernetes type
//! (`k8s-openapi`): the bootstrap needs ten kinds and a few fields of each,
//! and the schemas, not the types, are what proves them right.

use std::collections::BTreeMap;

use serde::Serialize;

/// One object: `apiVersion`, `kind`, `metadata`, then the kind's own fields.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Object<B: Serialize> {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: Metadata,
    #[serde(flatten)]
    pub body: B,
}

#[derive(Default, Serialize)]
pub struct Metadata {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Metadata {
    pub fn cluster(name: &str) -> Self {
        Metadata {
            name: name.into(),
            ..Metadata::default()
        }
    }

    pub fn namespaced(namespace: &str, name: &str) -> Self {
        Metadata {
            name: name.into(),
            namespace: Some(namespace.into()),
            ..Metadata::default()
        }
    }

    pub fn annotated(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }
}

/// Kinds with nothing but metadata (Namespace, ServiceAccount).
#[derive(Serialize)]
pub struct Empty {}

#[derive(Serialize)]
pub struct ClusterRole {
    pub rules: Vec<PolicyRule>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    pub api_groups: Vec<&'static str>,
    pub resources: Vec<&'static str>,
    pub verbs: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRoleBinding {
    pub role_ref: RoleRef,
    pub subjects: Vec<Subject>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleRef {
    pub api_group: &'static str,
    pub kind: &'static str,
    pub name: String,
}

#[derive(Serialize)]
pub struct Subject {
    pub kind: &'static str,
    pub name: String,
    pub namespace: String,
}

#[derive(Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMap {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Base64 values; the API server counts their decoded bytes, with
    /// `data`'s, against a ConfigMap's 1 MiB.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub binary_data: BTreeMap<String, String>,
}

#[derive(Serialize)]
pub struct Secret {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Base64 values (`data`, not `stringData`: server-side apply tracks
    /// `data` field by field, so a re-apply replaces exactly these keys).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
}

#[derive(Serialize)]
pub struct Job {
    pub spec: JobSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSpec {
    pub backoff_limit: u32,
    pub template: PodTemplate,
}

#[derive(Serialize)]
pub struct PodTemplate {
    pub metadata: TemplateMetadata,
    pub spec: PodSpec,
}

#[derive(Serialize)]
pub struct TemplateMetadata {
    pub labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    pub service_account_name: String,
    pub host_network: bool,
    pub restart_policy: &'static str,
    pub tolerations: Vec<Toleration>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<Container>,
    pub containers: Vec<Container>,
    pub volumes: Vec<Volume>,
}

#[derive(Serialize)]
pub struct Toleration {
    pub operator: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    pub volume_mounts: Vec<VolumeMount>,
}

#[derive(Serialize)]
pub struct EnvVar {
    pub name: &'static str,
    pub value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    pub name: &'static str,
    pub mount_path: &'static str,
    pub read_only: bool,
}

#[derive(Serialize)]
pub struct Volume {
    pub name: &'static str,
    #[serde(flatten)]
    pub source: VolumeSource,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub enum VolumeSource {
    ConfigMap(ConfigMapVolume),
    /// A scratch directory the pod's containers share.
    EmptyDir(Empty),
}

#[derive(Serialize)]
pub struct ConfigMapVolume {
    pub name: String,
}

/// A `spec` of a custom resource, whatever its shape.
#[derive(Serialize)]
pub struct Spec<S: Serialize> {
    pub spec: S,
}
