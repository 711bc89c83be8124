//! The Proxmox VE API client: API-token auth, TLS pinned to the
//! certificate fingerprint from the blueprint (Proxmox's certificate is
//! self-signed; there is no switch to trust anything else), tasks followed
//! to their end, and uploads streamed from disk.
//!
//! Only idempotent reads are retried (with backoff); a POST that may have
//! reached the host is never sent twice here — `deploy` re-reads the host's
//! state and decides again instead. The token travels only in a header
//! marked sensitive and appears in no error or log.

use std::fs::File;
use std::io::{BufReader, Cursor, Read};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::{Body, Client, RequestBuilder};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use sha2::{Digest, Sha256};

use waddlec_core::secrets::Secret;

/// Attempts of an idempotent read before giving up.
const READ_ATTEMPTS: u32 = 4;
/// How long one API call may take (uploads excepted).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an upload may take: hours for a slow uplink, not forever.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum PveError {
    #[error("cannot set up the Proxmox client: {0}")]
    Setup(String),
    #[error("{url} presents a certificate with fingerprint {seen}, not the pinned {pinned}; if the host's certificate was renewed on purpose, check it on the host the URL reaches (`pvenode cert info`) and re-pin it (`waddlec host init --repin`, or that host's `api_fingerprint` in the blueprint)")]
    Fingerprint {
        url: String,
        seen: String,
        pinned: String,
    },
    #[error("{method} {path}: {problem}")]
    Unreachable {
        method: Method,
        path: String,
        problem: String,
    },
    #[error("{method} {path}: HTTP {status}: {message}")]
    Api {
        method: Method,
        path: String,
        status: u16,
        message: String,
    },
    #[error("task {upid} failed: {exitstatus}{}", log_tail(.log))]
    Task {
        upid: String,
        exitstatus: String,
        log: Vec<String>,
    },
    #[error("task {upid} did not finish within {seconds} s")]
    TaskTimeout { upid: String, seconds: u64 },
    #[error("cannot read {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl PveError {
    /// An HTTP status the API answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            PveError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn log_tail(log: &[String]) -> String {
    let tail: Vec<&str> = log
        .iter()
        .rev()
        .take(20)
        .rev()
        .map(String::as_str)
        .collect();
    if tail.is_empty() {
        String::new()
    } else {
        format!("\ntask log (end):\n  {}", tail.join("\n  "))
    }
}

/// A connection to one Proxmox VE host.
pub struct Pve {
    client: Client,
    base: String,
    url: String,
    auth: HeaderValue,
    seen: Arc<Mutex<Option<String>>>,
    pinned: String,
    /// Pause between task status polls.
    pub poll: Duration,
    /// Attempts of an idempotent read before giving up (`status` asks
    /// once: a host that does not answer is reported, not waited for).
    pub read_attempts: u32,
}

impl Pve {
    /// A client for the API at `url` (`https://host:8006`) that trusts only
    /// the certificate whose SHA-256 is `fingerprint` (`AB:CD:…`).
    pub fn new(url: &str, fingerprint: &str, token: &Secret) -> Result<Self, PveError> {
        Self::with_timeout(url, fingerprint, token, CALL_TIMEOUT)
    }

    /// As [`Pve::new`], with every call (connecting included) bounded by
    /// `timeout` instead of a minute.
    pub fn with_timeout(
        url: &str,
        fingerprint: &str,
        token: &Secret,
        timeout: Duration,
    ) -> Result<Self, PveError> {
        if !url.starts_with("https://") {
            return Err(PveError::Setup(format!(
                "`{url}` is not https: the token would travel in the clear, unchecked"
            )));
        }
        let pinned = fingerprint.to_ascii_uppercase();
        let seen = Arc::new(Mutex::new(None));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = PinnedCertificate {
            fingerprint: pinned.clone(),
            seen: seen.clone(),
            provider: provider.clone(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| PveError::Setup(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        let client = Client::builder()
            .user_agent(concat!("waddlec/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .tls_backend_preconfigured(tls)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| PveError::Setup(e.to_string()))?;
        let mut auth = HeaderValue::from_str(&format!("PVEAPIToken={}", token.expose()))
            .map_err(|_| PveError::Setup("the API token is not a valid header value".into()))?;
        auth.set_sensitive(true);
        let url = url.trim_end_matches('/').to_string();
        Ok(Pve {
            client,
            base: format!("{url}/api2/json"),
            url,
            auth,
            seen,
            pinned,
            poll: Duration::from_millis(500),
            read_attempts: READ_ATTEMPTS,
        })
    }

    /// `GET`, retried with backoff while the host is unreachable or busy.
    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, PveError> {
        self.get_envelope(path, query).map(data)
    }

    /// `GET` as [`Pve::get`], with the whole answer: `data` and the
    /// attributes beside it (`changes`, the pending diff of `GET
    /// /nodes/{node}/network`).
    pub fn get_envelope(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, PveError> {
        let mut delay = Duration::from_millis(250);
        let mut attempt = 1;
        loop {
            let result = self.send(Method::GET, path, |r| r.query(query));
            let retry = match &result {
                Err(PveError::Unreachable { .. }) => true,
                Err(PveError::Api { status, .. }) => *status >= 500 && *status != 501,
                _ => false,
            };
            if !retry || attempt >= self.read_attempts {
                return result;
            }
            tracing::debug!(path, attempt, "retrying");
            std::thread::sleep(delay);
            delay *= 2;
            attempt += 1;
        }
    }

    /// `POST` with form parameters; never retried.
    pub fn post(&self, path: &str, form: &[(String, String)]) -> Result<Value, PveError> {
        self.send(Method::POST, path, |r| r.form(form)).map(data)
    }

    /// `PUT` with form parameters; never retried.
    pub fn put(&self, path: &str, form: &[(String, String)]) -> Result<Value, PveError> {
        self.send(Method::PUT, path, |r| r.form(form)).map(data)
    }

    /// `DELETE` with query parameters; never retried.
    pub fn delete(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, PveError> {
        self.send(Method::DELETE, path, |r| r.query(query))
            .map(data)
    }

    /// One request; the whole answer (`data` and its siblings).
    fn send(
        &self,
        method: Method,
        path: &str,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<Value, PveError> {
        let request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .header(AUTHORIZATION, self.auth.clone());
        let response = build(request)
            .send()
            .map_err(|e| self.unreachable(&method, path, &e))?;
        self.answer(method, path, response)
    }

    fn answer(
        &self,
        method: Method,
        path: &str,
        response: reqwest::blocking::Response,
    ) -> Result<Value, PveError> {
        let status = response.status();
        // Proxmox 9 puts the message in the body (`message`); the reason
        // phrase is the fallback.
        let reason = status.canonical_reason().unwrap_or_default().to_string();
        let body = response.text().unwrap_or_default();
        let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(json);
        }
        let mut message = json
            .get("message")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .unwrap_or(reason);
        if let Some(errors) = json.get("errors").and_then(Value::as_object) {
            let details: Vec<String> = errors
                .iter()
                .map(|(key, value)| format!("{key}: {}", value.as_str().unwrap_or_default().trim()))
                .collect();
            message = format!("{message} ({})", details.join("; "));
        }
        Err(PveError::Api {
            method,
            path: path.to_string(),
            status: status.as_u16(),
            message,
        })
    }

    fn unreachable(&self, method: &Method, path: &str, error: &reqwest::Error) -> PveError {
        if let Some(seen) = self.seen.lock().ok().and_then(|s| s.clone()) {
            if seen != self.pinned {
                return PveError::Fingerprint {
                    url: self.url.clone(),
                    seen,
                    pinned: self.pinned.clone(),
                };
            }
        }
        let mut problem = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            problem = format!("{problem}: {cause}");
            source = cause.source();
        }
        PveError::Unreachable {
            method: method.clone(),
            path: path.to_string(),
            problem,
        }
    }

    /// Follows the task `upid` on `node` until it stops; `OK` and
    /// `WARNINGS: n` are success, anything else an error carrying the log.
    pub fn wait_task(&self, node: &str, upid: &str, timeout: Duration) -> Result<(), PveError> {
        let started = Instant::now();
        let path = format!("/nodes/{}/tasks/{}", segment(node), segment(upid));
        loop {
            let status = self.get(&format!("{path}/status"), &[])?;
            if status["status"] == "stopped" {
                let exitstatus = status["exitstatus"]
                    .as_str()
                    .unwrap_or("unknown")
                    .to_string();
                if exitstatus == "OK" || exitstatus.starts_with("WARNINGS") {
                    return Ok(());
                }
                let log = self
                    .get(&format!("{path}/log"), &[("limit", "500")])
                    .ok()
                    .and_then(|lines| lines.as_array().cloned())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|line| line["t"].as_str().map(str::to_string))
                    .collect();
                return Err(PveError::Task {
                    upid: upid.to_string(),
                    exitstatus,
                    log,
                });
            }
            if started.elapsed() > timeout {
                return Err(PveError::TaskTimeout {
                    upid: upid.to_string(),
                    seconds: timeout.as_secs(),
                });
            }
            std::thread::sleep(self.poll);
        }
    }

    /// Uploads `file` to `node`, with its sha256 for Proxmox to verify,
    /// streamed (memory stays flat whatever the size). Returns the task's
    /// UPID.
    pub fn upload(
        &self,
        node: &str,
        file: &UploadFile<'_>,
        progress: Progress,
    ) -> Result<String, PveError> {
        let UploadFile {
            storage,
            content,
            name,
            path,
            sha256,
        } = *file;
        let file_error = |source| PveError::File {
            path: path.display().to_string(),
            source,
        };
        let file = File::open(path).map_err(file_error)?;
        let size = file.metadata().map_err(file_error)?.len();
        let boundary = format!("waddlec-{}", &sha256[..sha256.len().min(24)]);
        // Proxmox reads the fields in exactly this order, the file last.
        let mut head = String::new();
        for (field, value) in [
            ("content", content),
            ("checksum-algorithm", "sha256"),
            ("checksum", sha256),
        ] {
            head.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\r\n{value}\r\n"
            ));
        }
        head.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"filename\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        ));
        let tail = format!("\r\n--{boundary}--\r\n");
        let length = head.len() as u64 + size + tail.len() as u64;
        let body = Cursor::new(head.into_bytes())
            .chain(Counting {
                inner: BufReader::with_capacity(1 << 20, file),
                done: 0,
                total: size,
                progress,
            })
            .chain(Cursor::new(tail.into_bytes()));
        let body = Body::sized(body, length);
        let api_path = format!(
            "/nodes/{}/storage/{}/upload",
            segment(node),
            segment(storage)
        );
        let response = self
            .client
            .post(format!("{}{api_path}", self.base))
            .header(AUTHORIZATION, self.auth.clone())
            .header(
                CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .timeout(UPLOAD_TIMEOUT)
            .body(body)
            .send()
            .map_err(|e| self.unreachable(&Method::POST, &api_path, &e))?;
        let upid = data(self.answer(Method::POST, &api_path, response)?);
        Ok(upid.as_str().unwrap_or_default().to_string())
    }
}

/// The `data` of an answer.
fn data(mut answer: Value) -> Value {
    answer
        .get_mut("data")
        .map(Value::take)
        .unwrap_or(Value::Null)
}

/// A file to upload into a storage.
#[derive(Clone, Copy, Debug)]
pub struct UploadFile<'a> {
    pub storage: &'a str,
    /// `import` (disk images) or `iso`.
    pub content: &'a str,
    /// The name it gets on the host.
    pub name: &'a str,
    pub path: &'a Path,
    pub sha256: &'a str,
}

/// Percent-encodes one path segment (UPIDs hold `:`, `@`, `!`).
pub fn segment(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Reports an upload's bytes sent and total.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Counts the bytes of an upload for its progress bar.
struct Counting<R> {
    inner: R,
    done: u64,
    total: u64,
    progress: Progress,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.done += read as u64;
        (self.progress)(self.done, self.total);
        Ok(read)
    }
}

/// Trusts exactly one certificate, by the SHA-256 of its DER bytes, and
/// records what the server presented (for the error message). Signatures
/// are still verified with the provider's algorithms.
#[derive(Debug)]
struct PinnedCertificate {
    fingerprint: String,
    seen: Arc<Mutex<Option<String>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

/// `AB:CD:…` of a certificate.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = fingerprint(end_entity.as_ref());
        if let Ok(mut slot) = self.seen.lock() {
            *slot = Some(seen.clone());
        }
        if seen == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "certificate fingerprint {seen} is not the pinned one"
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(
            segment("UPID:pve:00001234:00ABCDEF:65000000:qmcreate:100:root@pam!waddlec:"),
            "UPID%3Apve%3A00001234%3A00ABCDEF%3A65000000%3Aqmcreate%3A100%3Aroot%40pam%21waddlec%3A"
        );
    }

    #[test]
    fn fingerprints_are_uppercase_colon_pairs() {
        let text = fingerprint(b"x");
        assert_eq!(text.len(), 32 * 3 - 1);
        assert!(text
            .chars()
            .all(|c| c == ':' || c.is_ascii_digit() || c.is_ascii_uppercase()));
    }
}
