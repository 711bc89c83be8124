//! `net::registry::manifest_digest`, the client the build resolves a tag's
//! digest with (cilium-cli's and the Flux Operator's images), against a
//! local stand-in registry over HTTP.
//!
//! Stand-in: a registry serving one manifest the way ghcr.io and quay.io
//! serve anonymous pulls — the OCI distribution spec's `GET
//! /v2/<name>/manifests/<reference>` (opencontainers/distribution-spec
//! `spec.md`, "Pulling manifests": the media type chosen from `Accept`,
//! `Docker-Content-Digest` the sha256 of the body) behind Docker's token
//! authentication (distribution/distribution `docs/spec/auth/token.md`:
//! `401` with `WWW-Authenticate: Bearer realm=…,service=…,scope=…`, a `GET
//! realm?service=…&scope=…` answering `{"token": …}`, the retry with
//! `Authorization: Bearer <token>`). It refuses a pull without the token, a
//! token request without the challenge's service and scope, and an
//! `Accept` without the OCI index type (a multi-platform image is served
//! only as one).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use waddlec::net::registry::manifest_digest;

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const TOKEN: &str = "anonymous-pull-token";
const MANIFEST: &str =
    r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;

/// How the stand-in answers a manifest pull.
#[derive(Clone, Copy)]
enum Announce {
    /// `Docker-Content-Digest` is the body's sha256.
    Truly,
    /// It names another digest.
    Falsely,
}

struct Registry {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Registry {
    fn start(announce: Announce) -> Registry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (seen, base) = (requests.clone(), url.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut headers = Vec::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
                    }
                }
                let header = |name: &str| {
                    headers
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                let target = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_string();
                seen.lock().unwrap().push(target.clone());
                let (status, extra, body) = answer(
                    &base,
                    &target,
                    &header("authorization"),
                    &header("accept"),
                    announce,
                );
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Registry { url, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// The stand-in's answer: `(status, extra header lines, body)`.
fn answer(
    base: &str,
    target: &str,
    authorization: &str,
    accept: &str,
    announce: Announce,
) -> (&'static str, String, String) {
    let error = |code: &str, message: &str| {
        format!(r#"{{"errors":[{{"code":"{code}","message":"{message}"}}]}}"#)
    };
    if let Some(query) = target.strip_prefix("/token?") {
        let mut params: Vec<&str> = query.split('&').collect();
        params.sort_unstable();
        return if params
            == [
                "scope=repository%3Aorg%2Fimg%3Apull",
                "service=registry.test",
            ] {
            (
                "200 OK",
                String::new(),
                format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#),
            )
        } else {
            (
                "400 Bad Request",
                String::new(),
                error("UNSUPPORTED", "service and scope are required"),
            )
        };
    }
    if target != "/v2/org/img/manifests/v1.0.0" {
        return (
            "404 Not Found",
            String::new(),
            error("MANIFEST_UNKNOWN", "manifest unknown"),
        );
    }
    if authorization != format!("Bearer {TOKEN}") {
        let challenge = format!(
            "WWW-Authenticate: Bearer realm=\"{base}/token\",service=\"registry.test\",scope=\"repository:org/img:pull\"\r\n"
        );
        return (
            "401 Unauthorized",
            challenge,
            error("UNAUTHORIZED", "authentication required"),
        );
    }
    if !accept.split(',').any(|t| t.trim() == INDEX) {
        return (
            "404 Not Found",
            String::new(),
            error("MANIFEST_UNKNOWN", "no manifest of an accepted type"),
        );
    }
    let digest = match announce {
        Announce::Truly => hex::encode(Sha256::digest(MANIFEST.as_bytes())),
        Announce::Falsely => "0".repeat(64),
    };
    (
        "200 OK",
        format!("Content-Type: {INDEX}\r\nDocker-Content-Digest: sha256:{digest}\r\n"),
        MANIFEST.to_string(),
    )
}

#[test]
fn a_public_image_is_resolved_through_an_anonymous_token() {
    let registry = Registry::start(Announce::Truly);
    let url = format!("{}/v2/org/img/manifests/v1.0.0", registry.url);
    let digest = manifest_digest(&url).unwrap();
    assert_eq!(digest, hex::encode(Sha256::digest(MANIFEST.as_bytes())));
    // Refused, asked for a token, then pulled with it.
    let requests = registry.requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert!(requests[1].starts_with("/token?"), "{requests:?}");
}

#[test]
fn a_registry_that_misstates_the_digest_or_lacks_the_tag_is_refused() {
    let registry = Registry::start(Announce::Falsely);
    let url = format!("{}/v2/org/img/manifests/v1.0.0", registry.url);
    let error = manifest_digest(&url).unwrap_err().to_string();
    assert!(error.contains("announces sha256:0000"), "{error}");
    let missing = format!("{}/v2/org/img/manifests/v9.9.9", registry.url);
    let error = manifest_digest(&missing).unwrap_err().to_string();
    assert!(error.contains("404"), "{error}");
}
