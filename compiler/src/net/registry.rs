//! Image digests from container registries (the OCI distribution API): a
//! tag's manifest fetched as the registry serves it, whose sha256 is the
//! digest a pod can pull by. Public images only: a registry that answers
//! 401 with a Bearer challenge (ghcr.io, quay.io for some clients) gets an
//! anonymous pull token from the realm it names, as `docker pull` does.

use reqwest::header::{HeaderMap, ACCEPT, WWW_AUTHENTICATE};
use sha2::{Digest, Sha256};

use super::{http_client, NetError};

/// Every manifest kind a multi-platform or single image is served as.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// The sha256 (hex) of the manifest at `url`
/// (`https://REGISTRY/v2/PATH/manifests/TAG`); checked against the
/// registry's `Docker-Content-Digest` when it sends one.
pub fn manifest_digest(url: &str) -> Result<String, NetError> {
    let failed = |problem: String| NetError::Request {
        url: url.into(),
        problem,
    };
    let client = http_client()?;
    let get = |token: Option<&str>| {
        let mut request = client.get(url).header(ACCEPT, MANIFEST_TYPES);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().map_err(|e| failed(e.to_string()))
    };
    let mut response = get(None)?;
    if response.status() == reqwest::StatusCode::UNAUTHORIZED {
        let token = anonymous_token(&client, response.headers(), url)?;
        response = get(Some(&token))?;
    }
    if !response.status().is_success() {
        return Err(failed(format!("HTTP {}", response.status())));
    }
    let announced = response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.bytes().map_err(|e| failed(e.to_string()))?;
    let digest = hex::encode(Sha256::digest(&body));
    match announced {
        Some(a) if a != format!("sha256:{digest}") => Err(failed(format!(
            "the registry announces {a} for a manifest whose sha256 is {digest}"
        ))),
        _ => Ok(digest),
    }
}

/// An anonymous pull token from the realm of a `Bearer` challenge.
fn anonymous_token(
    client: &reqwest::blocking::Client,
    headers: &HeaderMap,
    url: &str,
) -> Result<String, NetError> {
    let failed = |problem: String| NetError::Request {
        url: url.into(),
        problem,
    };
    let challenge = headers
        .get(WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| failed("HTTP 401 without a Bearer challenge".into()))?;
    let params = challenge_params(challenge);
    let realm = params
        .iter()
        .find(|(k, _)| k == "realm")
        .map(|(_, v)| v.clone())
        .ok_or_else(|| failed(format!("no realm in the challenge `{challenge}`")))?;
    let query: Vec<(String, String)> = params.into_iter().filter(|(k, _)| k != "realm").collect();
    let reply: serde_json::Value = client
        .get(&realm)
        .query(&query)
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json())
        .map_err(|e| failed(format!("anonymous token from {realm}: {e}")))?;
    reply
        .get("token")
        .or_else(|| reply.get("access_token"))
        .and_then(|t| t.as_str())
        .map(str::to_string)
        .ok_or_else(|| failed(format!("{realm} gave no token")))
}

/// `realm="…",service="…",scope="…"` as pairs.
fn challenge_params(challenge: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut rest = challenge.trim();
    while let Some((key, after)) = rest.split_once("=\"") {
        let Some((value, tail)) = after.split_once('"') else {
            break;
        };
        params.push((key.trim().to_string(), value.to_string()));
        rest = tail.trim_start_matches(',').trim();
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_challenge_names_realm_service_and_scope() {
        let params = challenge_params(
            r#"realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull""#,
        );
        assert_eq!(
            params,
            [
                ("realm".to_string(), "https://ghcr.io/token".to_string()),
                ("service".to_string(), "ghcr.io".to_string()),
                ("scope".to_string(), "repository:a/b:pull".to_string()),
            ]
        );
    }
}
