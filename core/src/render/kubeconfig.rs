//! Kubeconfig files, serialised from types: one cluster, one user, one
//! context named like the cluster. The admin kubeconfig carries a client
//! certificate; Teleport's carries its ServiceAccount token.

use serde::Serialize;

use crate::secrets::Secret;
use crate::yaml::{self, YamlError};

/// How the user authenticates.
pub enum Credentials<'a> {
    /// base64 of the PEM certificate and key.
    ClientCertificate { certificate: String, key: String },
    /// A bearer token.
    Token(&'a Secret),
}

/// A kubeconfig for `cluster` at `server`, trusting `ca_data` (base64 of
/// the CA's PEM), as `user`.
pub fn document(
    cluster: &str,
    server: &str,
    ca_data: &str,
    user: &str,
    credentials: Credentials<'_>,
) -> Result<Secret, YamlError> {
    let user_entry = match credentials {
        Credentials::ClientCertificate { certificate, key } => User {
            client_certificate_data: Some(certificate),
            client_key_data: Some(key),
            token: None,
        },
        Credentials::Token(token) => User {
            client_certificate_data: None,
            client_key_data: None,
            token: Some(token.expose().to_string()),
        },
    };
    let config = Config {
        api_version: "v1",
        kind: "Config",
        clusters: vec![Named {
            name: cluster,
            cluster: Cluster {
                server,
                certificate_authority_data: ca_data,
            },
        }],
        users: vec![NamedUser {
            name: user,
            user: user_entry,
        }],
        contexts: vec![NamedContext {
            name: cluster,
            context: Context { cluster, user },
        }],
        current_context: cluster,
    };
    yaml::document(&config).map(Secret::new)
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Config<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    clusters: Vec<Named<'a>>,
    users: Vec<NamedUser<'a>>,
    contexts: Vec<NamedContext<'a>>,
    current_context: &'a str,
}

#[derive(Serialize)]
struct Named<'a> {
    name: &'a str,
    cluster: Cluster<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster<'a> {
    server: &'a str,
    certificate_authority_data: &'a str,
}

#[derive(Serialize)]
struct NamedUser<'a> {
    name: &'a str,
    user: User,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct User {
    #[serde(skip_serializing_if = "Option::is_none")]
    client_certificate_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_key_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

#[derive(Serialize)]
struct NamedContext<'a> {
    name: &'a str,
    context: Context<'a>,
}

#[derive(Serialize)]
struct Context<'a> {
    cluster: &'a str,
    user: &'a str,
}
