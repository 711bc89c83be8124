//! The bootstrap Secrets `waddlec cluster bootstrap` applies over the
//! Kubernetes API — the Flux deploy key and 1Password Connect's credentials
//! and token — as JSON objects for server-side apply. Their values never
//! reach a machine config, the review tree or any file of the tree: this
//! renderer is called only by the bootstrap, with values read at that
//! moment, and its output goes straight to the API.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::flux;
use crate::model::Model;
use crate::render::k8s::{Empty, Metadata, Object, Secret as SecretBody};
use crate::secrets::Secret;

/// The Secret Connect's chart mounts (`credentialsName`/`credentialsKey`).
pub const CONNECT_CREDENTIALS: &str = "op-credentials";
/// The Secret External Secrets' ClusterSecretStore reads the token from.
pub const CONNECT_TOKEN: &str = "onepassword-connect-token";

/// The secret values, read from the blueprint's references.
pub struct Values {
    pub flux_deploy_key: Option<Secret>,
    pub connect_credentials: Option<Secret>,
    pub connect_token: Option<Secret>,
}

/// One object to apply: where it lives in the API and its JSON.
pub struct Apply {
    /// `namespace/name` (or `name`) and kind, for messages.
    pub what: String,
    /// The object's API path, `/api/v1/namespaces/NS/secrets/NAME`.
    pub path: String,
    /// The JSON body; holds secret values.
    pub body: Secret,
}

impl std::fmt::Debug for Apply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Apply")
            .field("what", &self.what)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The namespaces and Secrets to apply, each namespace before its Secrets
/// (Talos may not have created Flux's yet).
pub fn objects(model: &Model, values: &Values) -> Vec<Apply> {
    let mut applies = Vec::new();
    if let (Some(flux_settings), Some(key)) = (&model.flux, &values.flux_deploy_key) {
        applies.push(namespace(flux::NAMESPACE));
        let mut data = BTreeMap::new();
        data.insert("identity".to_string(), with_newline(key.expose()));
        data.insert(
            "known_hosts".to_string(),
            flux_settings
                .known_hosts
                .iter()
                .map(|line| format!("{line}\n"))
                .collect(),
        );
        applies.push(secret(flux::NAMESPACE, flux::PULL_SECRET, data));
    }
    if let Some(connect) = &model.onepassword_connect {
        let mut secrets = Vec::new();
        if let Some(credentials) = &values.connect_credentials {
            secrets.push(secret(
                &connect.namespace,
                CONNECT_CREDENTIALS,
                BTreeMap::from([(
                    "1password-credentials.json".to_string(),
                    credentials.expose().to_string(),
                )]),
            ));
        }
        if let Some(token) = &values.connect_token {
            secrets.push(secret(
                &connect.namespace,
                CONNECT_TOKEN,
                BTreeMap::from([("token".to_string(), token.expose().trim().to_string())]),
            ));
        }
        if !secrets.is_empty() {
            applies.push(namespace(&connect.namespace));
            applies.extend(secrets);
        }
    }
    applies
}

/// An SSH private key must end with a newline, or OpenSSH refuses it.
fn with_newline(key: &str) -> String {
    let mut key = key.trim_end().to_string();
    key.push('\n');
    key
}

fn namespace(name: &str) -> Apply {
    let object = Object {
        api_version: "v1",
        kind: "Namespace",
        metadata: Metadata::cluster(name),
        body: Empty {},
    };
    Apply {
        what: format!("namespace {name}"),
        path: format!("/api/v1/namespaces/{name}"),
        body: Secret::new(serde_json::to_string(&object).expect("plain data serialises")),
    }
}

fn secret(namespace: &str, name: &str, data: BTreeMap<String, String>) -> Apply {
    let object = Object {
        api_version: "v1",
        kind: "Secret",
        metadata: Metadata::namespaced(namespace, name),
        body: SecretBody {
            kind: "Opaque",
            data: data
                .into_iter()
                .map(|(key, value)| (key, BASE64.encode(value)))
                .collect(),
        },
    };
    Apply {
        what: format!("secret {namespace}/{name}"),
        path: format!("/api/v1/namespaces/{namespace}/secrets/{name}"),
        body: Secret::new(serde_json::to_string(&object).expect("plain data serialises")),
    }
}
