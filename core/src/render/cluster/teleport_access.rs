//! Teleport's identity in the cluster: a dedicated ServiceAccount with the
//! impersonation ClusterRole Teleport's `kubernetes_service` needs and an
//! explicit token Secret (Kubernetes no longer creates one). Its token,
//! unlike the Talos admin client certificate, can be revoked by deleting the
//! Secret. `waddlec cluster bootstrap` reads the token and installs a
//! kubeconfig for it on the Teleport VM.

use crate::model::Model;
use crate::render::k8s::*;
use crate::yaml::{self, YamlError};

pub const NAMESPACE: &str = "teleport";
pub const SERVICE_ACCOUNT: &str = "teleport";
/// The `kubernetes.io/service-account-token` Secret of the ServiceAccount.
pub const TOKEN_SECRET: &str = "teleport-token";
const ROLE: &str = "teleport-impersonation";

pub fn objects(model: &Model) -> Result<Vec<String>, YamlError> {
    if model.teleport.is_none() || model.talos.is_none() {
        return Ok(Vec::new());
    }
    Ok(vec![
        yaml::document(&Object {
            api_version: "v1",
            kind: "Namespace",
            metadata: Metadata::cluster(NAMESPACE),
            body: Empty {},
        })?,
        yaml::document(&Object {
            api_version: "v1",
            kind: "ServiceAccount",
            metadata: Metadata::namespaced(NAMESPACE, SERVICE_ACCOUNT),
            body: Empty {},
        })?,
        yaml::document(&Object {
            api_version: "v1",
            kind: "Secret",
            metadata: Metadata::namespaced(NAMESPACE, TOKEN_SECRET)
                .annotated("kubernetes.io/service-account.name", SERVICE_ACCOUNT),
            body: Secret {
                kind: "kubernetes.io/service-account-token",
                data: Default::default(),
            },
        })?,
        // What Teleport's get-kubeconfig.sh grants: impersonate users,
        // groups and service accounts; read pods; check its own access.
        yaml::document(&Object {
            api_version: "rbac.authorization.k8s.io/v1",
            kind: "ClusterRole",
            metadata: Metadata::cluster(ROLE),
            body: ClusterRole {
                rules: vec![
                    PolicyRule {
                        api_groups: vec![""],
                        resources: vec!["users", "groups", "serviceaccounts"],
                        verbs: vec!["impersonate"],
                    },
                    PolicyRule {
                        api_groups: vec![""],
                        resources: vec!["pods"],
                        verbs: vec!["get"],
                    },
                    PolicyRule {
                        api_groups: vec!["authorization.k8s.io"],
                        resources: vec!["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                        verbs: vec!["create"],
                    },
                ],
            },
        })?,
        yaml::document(&Object {
            api_version: "rbac.authorization.k8s.io/v1",
            kind: "ClusterRoleBinding",
            metadata: Metadata::cluster(ROLE),
            body: ClusterRoleBinding {
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io",
                    kind: "ClusterRole",
                    name: ROLE.into(),
                },
                subjects: vec![Subject {
                    kind: "ServiceAccount",
                    name: SERVICE_ACCOUNT.into(),
                    namespace: NAMESPACE.into(),
                }],
            },
        })?,
    ])
}

/// The kubeconfig Teleport's `kubernetes_service` reads: the cluster's API
/// on the VIP, trusting the cluster's CA (`ca_data`, base64 of its PEM), as
/// the ServiceAccount's `token`. Its context is named like the cluster,
/// which is the name Teleport registers it under.
pub fn kubeconfig(
    model: &Model,
    ca_data: &str,
    token: &crate::secrets::Secret,
) -> Option<Result<crate::secrets::Secret, YamlError>> {
    let talos = model.talos.as_ref()?;
    Some(crate::render::kubeconfig::document(
        &talos.name,
        &talos.api_url(),
        ca_data,
        SERVICE_ACCOUNT,
        crate::render::kubeconfig::Credentials::Token(token),
    ))
}
