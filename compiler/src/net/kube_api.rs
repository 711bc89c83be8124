//! The few Kubernetes API calls waddlec makes: is the API server ready,
//! which nodes are Ready, server-side apply of an object and reading one
//! key of a Secret (the cluster bootstrap), and listing one resource,
//! cluster-wide or in a namespace, typed into the caller's small serde
//! structs (`waddlec status`). Over TLS that trusts only the cluster's
//! Kubernetes CA, as the short-lived admin client certificate of
//! `secrets::kube_admin`, every request bounded by a timeout. A whole
//! client library (`kube`) would bring an async stack and a generated type
//! for every kind for a handful of requests.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use waddlec_core::secrets::Secret;

/// Who applies, in `managedFields`.
const FIELD_MANAGER: &str = "waddlec";
/// How long one request may take, unless the caller says otherwise.
pub const TIMEOUT: Duration = Duration::from_secs(30);

pub struct KubeApi {
    client: reqwest::blocking::Client,
    /// `https://127.0.0.1:PORT` (a tunnel) or `https://VIP:6443`.
    base: String,
}

impl fmt::Debug for KubeApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeApi").field("base", &self.base).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("cannot set up the Kubernetes API client: {0}")]
    Setup(String),
    #[error("the Kubernetes API at {base} cannot be reached: {problem}")]
    Unreachable { base: String, problem: String },
    /// Something answered, but TLS failed: its certificate is not from
    /// the cluster's CA, or it refused ours.
    #[error("the Kubernetes API at {base} answered, but TLS failed: {problem}")]
    Untrusted { base: String, problem: String },
    #[error("the Kubernetes API answered {what} with HTTP {status}: {message}")]
    Status {
        what: String,
        status: u16,
        message: String,
    },
    #[error("the Kubernetes API answered {what} with something unexpected: {problem}")]
    Invalid { what: String, problem: String },
}

/// A resource to list: `group` is empty for the core API (`/api/v1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    /// The plural of the URL (`helmreleases`).
    pub plural: &'static str,
}

impl Resource {
    /// `helmreleases.helm.toolkit.fluxcd.io/v2`, as errors name it.
    pub fn shown(&self) -> String {
        if self.group.is_empty() {
            format!("{}/{}", self.plural, self.version)
        } else {
            format!("{}.{}/{}", self.plural, self.group, self.version)
        }
    }

    fn path(&self, namespace: Option<&str>) -> String {
        let root = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace {
            Some(namespace) => format!("{root}/namespaces/{namespace}/{}", self.plural),
            None => format!("{root}/{}", self.plural),
        }
    }
}

/// The `metadata` every listed object has that the callers read.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ObjectMeta {
    pub name: String,
    /// `None` for a cluster-scoped object.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The spec's generation, for custom resources and most built-ins.
    #[serde(default)]
    pub generation: Option<i64>,
}

/// A status condition: `metav1.Condition`, or a core kind's condition
/// (a node's has no `observedGeneration`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub observed_generation: Option<i64>,
}

/// A list's `items`; the envelope's `kind` and `apiVersion` are not read.
/// An empty list's `items` may be `null` (Go's nil slice).
#[derive(Deserialize)]
struct List<T> {
    #[serde(default = "Option::default")]
    items: Option<Vec<T>>,
}

/// A node, whether its `Ready` condition is `True`, and that condition
/// (its reason and message say why not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub name: String,
    pub ready: bool,
    pub condition: Option<Condition>,
}

#[derive(Deserialize)]
struct Node {
    metadata: Name,
    #[serde(default)]
    status: NodeStatusBody,
}

#[derive(Deserialize)]
struct Name {
    name: String,
}

#[derive(Default, Deserialize)]
struct NodeStatusBody {
    #[serde(default)]
    conditions: Vec<Condition>,
}

#[derive(Deserialize)]
struct SecretObject {
    #[serde(default)]
    data: std::collections::BTreeMap<String, String>,
}

impl KubeApi {
    /// A client for `base` trusting `ca` (PEM) only, as the client
    /// `certificate` (PEM) with its `key` (PEM); each request may take
    /// [`TIMEOUT`].
    pub fn new(base: &str, ca: &str, certificate: &str, key: &Secret) -> Result<Self, KubeError> {
        Self::with_timeout(base, ca, certificate, key, TIMEOUT)
    }

    /// The same, each request taking at most `timeout` (connecting at
    /// most 10 s of it).
    pub fn with_timeout(
        base: &str,
        ca: &str,
        certificate: &str,
        key: &Secret,
        timeout: Duration,
    ) -> Result<Self, KubeError> {
        let setup = |e: reqwest::Error| KubeError::Setup(e.to_string());
        let ca = reqwest::Certificate::from_pem(ca.as_bytes()).map_err(setup)?;
        let pem = format!("{certificate}{}", key.expose());
        let identity = reqwest::Identity::from_pem(pem.as_bytes()).map_err(setup)?;
        let client = reqwest::blocking::Client::builder()
            .user_agent(concat!("waddlec/", env!("CARGO_PKG_VERSION")))
            .tls_certs_only([ca])
            .identity(identity)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(setup)?;
        Ok(KubeApi {
            client,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    /// A request that got no HTTP answer: no connection, no answer in
    /// time, or a TLS failure.
    fn unreachable(&self, e: reqwest::Error) -> KubeError {
        match super::talos_api::tls_problem(&e) {
            Some(problem) => KubeError::Untrusted {
                base: self.base.clone(),
                problem,
            },
            None => KubeError::Unreachable {
                base: self.base.clone(),
                problem: error_chain(&e),
            },
        }
    }

    /// `GET /readyz`: true once the API server says `ok`. A refusal of
    /// the client (401, 403) is an error, not "not ready".
    pub fn ready(&self) -> Result<bool, KubeError> {
        let response = self
            .client
            .get(format!("{}/readyz", self.base))
            .send()
            .map_err(|e| self.unreachable(e))?;
        match response.status().as_u16() {
            401 | 403 => Err(status_error(response, "/readyz")),
            _ => Ok(response.status().is_success()),
        }
    }

    /// Every node and whether it is Ready.
    pub fn nodes(&self) -> Result<Vec<NodeStatus>, KubeError> {
        let list: List<Node> = self.get_json("/api/v1/nodes", "the node list")?;
        Ok(list
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|node| {
                let condition = node
                    .status
                    .conditions
                    .into_iter()
                    .find(|c| c.kind == "Ready");
                NodeStatus {
                    ready: condition.as_ref().is_some_and(|c| c.status == "True"),
                    condition,
                    name: node.metadata.name,
                }
            })
            .collect())
    }

    /// Every object of `resource`, cluster-wide or in `namespace`, and
    /// only those with the labels of `label_selector` (`key=value,…`) when
    /// given. A resource the API does not serve is `Status` 404.
    pub fn list<T: DeserializeOwned>(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<T>, KubeError> {
        let mut request = self
            .client
            .get(format!("{}{}", self.base, resource.path(namespace)));
        if let Some(selector) = label_selector {
            request = request.query(&[("labelSelector", selector)]);
        }
        let response = request.send().map_err(|e| self.unreachable(e))?;
        let list: List<T> = json_body(response, &format!("the list of {}", resource.shown()))?;
        Ok(list.items.unwrap_or_default())
    }

    /// One key of a Secret, decoded; `None` while the Secret or the key
    /// does not exist (a token the controller has not filled in yet).
    pub fn secret_key(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<Option<Secret>, KubeError> {
        let path = format!("/api/v1/namespaces/{namespace}/secrets/{name}");
        let what = format!("secret {namespace}/{name}");
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .map_err(|e| self.unreachable(e))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let secret: SecretObject = json_body(response, &what)?;
        let Some(value) = secret.data.get(key) else {
            return Ok(None);
        };
        let decoded = BASE64.decode(value).map_err(|_| KubeError::Invalid {
            what: what.clone(),
            problem: format!("`{key}` is not base64"),
        })?;
        String::from_utf8(decoded)
            .map(|v| Some(Secret::new(v)))
            .map_err(|_| KubeError::Invalid {
                what,
                problem: format!("`{key}` is not text"),
            })
    }

    /// Server-side apply of the JSON object `body` at `path`, owned by
    /// waddlec: created if missing, replaced field by field if present.
    pub fn apply(&self, path: &str, what: &str, body: &Secret) -> Result<(), KubeError> {
        let response = self
            .client
            .patch(format!("{}{path}", self.base))
            .query(&[("fieldManager", FIELD_MANAGER), ("force", "true")])
            .header("Content-Type", "application/apply-patch+yaml")
            .body(body.expose().to_string())
            .send()
            .map_err(|e| self.unreachable(e))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(status_error(response, what))
        }
    }

    fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        what: &str,
    ) -> Result<T, KubeError> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .map_err(|e| self.unreachable(e))?;
        json_body(response, what)
    }
}

fn json_body<T: for<'de> Deserialize<'de>>(
    response: reqwest::blocking::Response,
    what: &str,
) -> Result<T, KubeError> {
    if !response.status().is_success() {
        return Err(status_error(response, what));
    }
    response.json().map_err(|e| KubeError::Invalid {
        what: what.into(),
        problem: e.to_string(),
    })
}

/// The API's `Status` message, never the request body (it may hold secrets).
fn status_error(response: reqwest::blocking::Response, what: &str) -> KubeError {
    #[derive(Deserialize)]
    struct Status {
        message: String,
    }
    let status = response.status().as_u16();
    let message = response
        .json::<Status>()
        .map(|s| s.message)
        .unwrap_or_else(|_| "(no message)".into());
    KubeError::Status {
        what: what.into(),
        status,
        message,
    }
}

/// An error with its causes: reqwest's own message hides TLS failures.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_paths_follow_the_api_s_layout() {
        let nodes = Resource {
            group: "",
            version: "v1",
            plural: "nodes",
        };
        let releases = Resource {
            group: "helm.toolkit.fluxcd.io",
            version: "v2",
            plural: "helmreleases",
        };
        assert_eq!(nodes.path(None), "/api/v1/nodes");
        assert_eq!(
            releases.path(None),
            "/apis/helm.toolkit.fluxcd.io/v2/helmreleases"
        );
        assert_eq!(
            releases.path(Some("cert-manager")),
            "/apis/helm.toolkit.fluxcd.io/v2/namespaces/cert-manager/helmreleases"
        );
        assert_eq!(nodes.shown(), "nodes/v1");
        assert_eq!(releases.shown(), "helmreleases.helm.toolkit.fluxcd.io/v2");
    }

    #[test]
    fn a_list_reads_its_items_and_ignores_the_envelope() {
        let list: List<ObjectMeta> = serde_json::from_str(
            r#"{"apiVersion": "v1", "kind": "NodeList", "metadata": {"resourceVersion": "7"},
                "items": [{"name": "talos-cp1", "generation": 2}]}"#,
        )
        .unwrap();
        assert_eq!(
            list.items.unwrap(),
            [ObjectMeta {
                name: "talos-cp1".into(),
                namespace: None,
                generation: Some(2),
            }]
        );
        for empty in [r#"{"kind": "NodeList"}"#, r#"{"items": null}"#] {
            let empty: List<ObjectMeta> = serde_json::from_str(empty).unwrap();
            assert!(empty.items.unwrap_or_default().is_empty());
        }
    }
}
