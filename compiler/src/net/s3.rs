//! The artifact store's client: an S3-compatible bucket (Scaleway Object
//! Storage in production), addressed path-style (`ENDPOINT/BUCKET/KEY`),
//! every request signed with AWS Signature Version 4, and presigned GET
//! URLs for Proxmox's `download-url`.
//!
//! Hand-written over the one `reqwest` client rather than `rust-s3` or
//! `aws-sdk-s3`: waddlec needs five calls (HEAD, GET streamed, PUT of a
//! file and of a small document, a presigned GET), which SigV4 makes a
//! hundred lines of hashing with the `sha2` we already have; `aws-sdk-s3`
//! brings the AWS SDK's runtime and a second HTTP stack (over a hundred
//! crates), and `rust-s3` an async runtime and its own HTTP client
//! beside `reqwest`. The signing is checked against the example AWS
//! documents, and the client against a real S3 server in the tests.
//!
//! Objects stream: a GET is written to the caller while it arrives, a PUT
//! reads its file as it is sent (its sha256 signed as the payload hash,
//! which AWS S3 checks the bytes against), so memory stays flat whatever
//! the size.
//! The credentials are [`Secret`]s: never in `Debug`, errors or logs.
//! A presigned URL is a bearer credential for one object until it expires:
//! [`PresignedUrl`] prints without its query.
//!
//! Signing needs the current time, read here for each request: a
//! signature is valid for minutes around the moment it names.

use std::fmt;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use reqwest::blocking::{Body, Client, Response};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use waddlec_core::model::ArtifactStore;

use super::{http_client, NetError};
use crate::secrets::Secret;

/// The payload hash of a request without a body.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// How long a big object's transfer may take.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(3600);

/// One bucket, with the credentials to sign for it.
pub struct S3 {
    /// `http(s)://HOST[:PORT]`, no path.
    origin: String,
    /// `HOST[:PORT]` as the `Host` header carries it.
    host: String,
    /// The path up to the bucket: `/BUCKET` (after the endpoint's own path).
    base_path: String,
    /// Prepended to every key, with its `/`.
    prefix: String,
    region: String,
    access_key_id: Secret,
    secret_access_key: Secret,
    http: Client,
}

impl fmt::Debug for S3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3")
            .field("origin", &self.origin)
            .field("bucket_path", &self.base_path)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// A presigned GET of one object. `Display` and `Debug` leave out the
/// query, which carries the signature; [`PresignedUrl::expose`] is for
/// the one request that hands it to Proxmox.
pub struct PresignedUrl(String);

impl PresignedUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PresignedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.0.split('?').next().unwrap_or_default();
        write!(f, "{path}?<presigned>")
    }
}

impl fmt::Debug for PresignedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PresignedUrl({self})")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error(transparent)]
    Net(#[from] NetError),
    /// The store answered, but not with success: the S3 error code it
    /// gave (`AccessDenied`, `SignatureDoesNotMatch`, `NoSuchBucket`…).
    #[error("artifact store: {method} {key}: HTTP {status}{}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Status {
        method: &'static str,
        key: String,
        status: u16,
        code: Option<String>,
    },
    #[error("artifact store: {key}: {problem}")]
    Transfer { key: String, problem: String },
}

impl S3 {
    /// The client of `store`'s bucket, signing with the given credentials.
    pub fn new(
        store: &ArtifactStore,
        access_key_id: Secret,
        secret_access_key: Secret,
    ) -> Result<Self, NetError> {
        let endpoint: &str = &store.endpoint;
        let (scheme, rest) = endpoint.split_once("://").unwrap_or(("https", endpoint));
        let (host, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        let host = match (scheme, host.rsplit_once(':')) {
            ("http", Some((name, "80"))) | ("https", Some((name, "443"))) => name,
            _ => host,
        };
        let prefix = match &store.prefix {
            Some(prefix) => format!("{}/", prefix.trim_matches('/')),
            None => String::new(),
        };
        Ok(S3 {
            origin: format!("{scheme}://{host}"),
            host: host.to_string(),
            base_path: format!("{}/{}", path.trim_end_matches('/'), &*store.bucket),
            prefix,
            region: store.region.to_string(),
            access_key_id,
            secret_access_key,
            http: http_client()?,
        })
    }

    /// The full key of `name` (the prefix prepended).
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The size of object `key`, or `None` if the bucket has no such object.
    pub fn head(&self, key: &str) -> Result<Option<u64>, S3Error> {
        let response = self.send("HEAD", key, EMPTY_SHA256, None, Duration::from_secs(60))?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            // The header itself: a HEAD's body is empty, so reqwest's
            // `content_length` says 0.
            status if status.is_success() => Ok(Some(
                response
                    .headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|value| value.to_str().ok()?.parse().ok())
                    .unwrap_or(0),
            )),
            _ => Err(status_error("HEAD", key, response)),
        }
    }

    /// Object `key` written to `to` as it arrives, at most `limit` bytes
    /// (more is an error, as is a short read); `None` if there is no such
    /// object. `progress` hears the bytes so far.
    pub fn get(
        &self,
        key: &str,
        to: &mut dyn Write,
        limit: u64,
        progress: &dyn Fn(u64, Option<u64>),
    ) -> Result<Option<u64>, S3Error> {
        let mut response = self.send("GET", key, EMPTY_SHA256, None, TRANSFER_TIMEOUT)?;
        match response.status() {
            StatusCode::NOT_FOUND => return Ok(None),
            status if status.is_success() => {}
            _ => return Err(status_error("GET", key, response)),
        }
        let transfer = |problem: String| S3Error::Transfer {
            key: key.to_string(),
            problem,
        };
        let total = response.content_length();
        if total.is_some_and(|total| total > limit) {
            return Err(transfer(format!(
                "{} bytes, more than the {limit} expected",
                total.unwrap_or_default()
            )));
        }
        let mut buffer = vec![0u8; 1 << 20];
        let mut done = 0u64;
        loop {
            let n = response
                .read(&mut buffer)
                .map_err(|e| transfer(format!("reading: {e}")))?;
            if n == 0 {
                break;
            }
            done += n as u64;
            if done > limit {
                return Err(transfer(format!("more than the {limit} bytes expected")));
            }
            to.write_all(&buffer[..n])
                .map_err(|e| transfer(format!("writing: {e}")))?;
            progress(done, total);
        }
        if total.is_some_and(|total| total != done) {
            return Err(transfer(format!("truncated: {done} of {total:?} bytes")));
        }
        Ok(Some(done))
    }

    /// Uploads `path` (`bytes` long, of sha256 `sha256`) as `key`. The
    /// hash is the signed payload hash: a store that checks it (AWS S3
    /// does) refuses other bytes.
    pub fn put_file(
        &self,
        key: &str,
        path: &Path,
        sha256: &str,
        bytes: u64,
    ) -> Result<(), S3Error> {
        let file = std::fs::File::open(path).map_err(|e| S3Error::Transfer {
            key: key.to_string(),
            problem: format!("reading {}: {e}", path.display()),
        })?;
        let body = Body::sized(file, bytes);
        let response = self.send("PUT", key, sha256, Some(body), TRANSFER_TIMEOUT)?;
        if !response.status().is_success() {
            return Err(status_error("PUT", key, response));
        }
        Ok(())
    }

    /// Uploads a small document as `key`.
    pub fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), S3Error> {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let response = self.send(
            "PUT",
            key,
            &sha256,
            Some(Body::from(bytes)),
            Duration::from_secs(60),
        )?;
        if !response.status().is_success() {
            return Err(status_error("PUT", key, response));
        }
        Ok(())
    }

    /// A GET of object `key` anyone holding the URL may make for
    /// `expires` (Proxmox fetches the image with it).
    pub fn presign_get(&self, key: &str, expires: Duration) -> PresignedUrl {
        let path = format!("{}/{}", self.base_path, uri_encode(key, false));
        let query = presign(
            &Signer {
                region: &self.region,
                access_key_id: self.access_key_id.expose(),
                secret_access_key: self.secret_access_key.expose(),
                time: amz_time(SystemTime::now()),
            },
            &self.host,
            &path,
            expires.as_secs(),
        );
        PresignedUrl(format!("{}{path}?{query}", self.origin))
    }

    /// Whether the bucket answers to these credentials (`HEAD /BUCKET`,
    /// S3's HeadBucket: 200, or 403 for credentials it refuses, 404 for no
    /// such bucket), waiting at most `timeout`. Reads nothing, changes
    /// nothing.
    pub fn head_bucket(&self, timeout: Duration) -> Result<(), S3Error> {
        let response = self.send_path("HEAD", &self.base_path, "", EMPTY_SHA256, None, timeout)?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(status_error("HEAD", "", response))
        }
    }

    fn send(
        &self,
        method: &'static str,
        key: &str,
        payload_sha256: &str,
        body: Option<Body>,
        timeout: Duration,
    ) -> Result<Response, S3Error> {
        let path = format!("{}/{}", self.base_path, uri_encode(key, false));
        self.send_path(method, &path, key, payload_sha256, body, timeout)
    }

    fn send_path(
        &self,
        method: &'static str,
        path: &str,
        key: &str,
        payload_sha256: &str,
        body: Option<Body>,
        timeout: Duration,
    ) -> Result<Response, S3Error> {
        let signer = Signer {
            region: &self.region,
            access_key_id: self.access_key_id.expose(),
            secret_access_key: self.secret_access_key.expose(),
            time: amz_time(SystemTime::now()),
        };
        let authorization = authorization(&signer, method, &self.host, path, payload_sha256);
        let mut authorization =
            reqwest::header::HeaderValue::from_str(&authorization).map_err(|_| {
                NetError::Client("the artifact store's credentials are not plain text".into())
            })?;
        authorization.set_sensitive(true);
        let method_value = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| NetError::Client(e.to_string()))?;
        let mut request = self
            .http
            .request(method_value, format!("{}{path}", self.origin))
            .header("x-amz-date", &signer.time.stamp)
            .header("x-amz-content-sha256", payload_sha256)
            .header(reqwest::header::AUTHORIZATION, authorization)
            .timeout(timeout);
        if let Some(body) = body {
            request = request.body(body);
        }
        tracing::debug!(method, %key, "artifact store");
        request.send().map_err(|e| {
            S3Error::Net(NetError::Request {
                url: format!("{}{path}", self.origin),
                problem: e.without_url().to_string(),
            })
        })
    }
}

/// A failed answer, with the S3 error code from its XML body if any.
fn status_error(method: &'static str, key: &str, response: Response) -> S3Error {
    let status = response.status().as_u16();
    let body = response.text().unwrap_or_default();
    let code = body
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code.chars().filter(char::is_ascii_alphanumeric).collect());
    S3Error::Status {
        method,
        key: key.to_string(),
        status,
        code,
    }
}

/// When a request is signed: `20130524T000000Z` and its date.
struct AmzTime {
    stamp: String,
    date: String,
}

fn amz_time(now: SystemTime) -> AmzTime {
    let seconds = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let time = time::OffsetDateTime::from_unix_timestamp(seconds as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let stamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        time.year(),
        u8::from(time.month()),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    );
    AmzTime {
        date: stamp[..8].to_string(),
        stamp,
    }
}

/// What signs one request.
struct Signer<'a> {
    region: &'a str,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    time: AmzTime,
}

impl Signer<'_> {
    fn scope(&self) -> String {
        format!("{}/{}/s3/aws4_request", self.time.date, self.region)
    }

    /// The signature of `canonical_request`, hex.
    fn sign(&self, canonical_request: &str) -> String {
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{}\n{}\n{}",
            self.time.stamp,
            self.scope(),
            hex::encode(Sha256::digest(canonical_request.as_bytes()))
        );
        let key = hmac_sha256(
            format!("AWS4{}", self.secret_access_key).as_bytes(),
            self.time.date.as_bytes(),
        );
        let key = hmac_sha256(&key, self.region.as_bytes());
        let key = hmac_sha256(&key, b"s3");
        let key = hmac_sha256(&key, b"aws4_request");
        hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()))
    }
}

/// The `Authorization` header of a request signing `host`,
/// `x-amz-content-sha256` and `x-amz-date`.
fn authorization(
    signer: &Signer<'_>,
    method: &str,
    host: &str,
    path: &str,
    payload: &str,
) -> String {
    let signed_headers = "host;x-amz-content-sha256;x-amz-date";
    let canonical = format!(
        "{method}\n{path}\n\nhost:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{}\n\n{signed_headers}\n{payload}",
        signer.time.stamp
    );
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={signed_headers}, Signature={}",
        signer.access_key_id,
        signer.scope(),
        signer.sign(&canonical)
    )
}

/// The query of a presigned GET of `path` on `host`, signature last.
fn presign(signer: &Signer<'_>, host: &str, path: &str, expires: u64) -> String {
    let credential = format!("{}/{}", signer.access_key_id, signer.scope());
    // Sorted by name, as the canonical request wants them.
    let query = format!(
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={}&X-Amz-Date={}&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host",
        uri_encode(&credential, true),
        signer.time.stamp
    );
    let canonical = format!("GET\n{path}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
    format!("{query}&X-Amz-Signature={}", signer.sign(&canonical))
}

/// SigV4's URI encoding: everything but `A-Za-z0-9-._~` percent-encoded,
/// `/` too unless it separates a key's parts.
fn uri_encode(text: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// HMAC-SHA256 (RFC 2104) over the `sha2` we have.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|k| k ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's documented example keys (not a secret of anyone's).
    fn example_signer(stamp: &str) -> Signer<'static> {
        Signer {
            region: "us-east-1",
            access_key_id: "AKIAIOSFODNN7EXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            time: AmzTime {
                stamp: stamp.into(),
                date: stamp[..8].into(),
            },
        }
    }

    /// RFC 4231, test case 2 (a key shorter than the block).
    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    /// The presigned URL example of AWS's "Authenticating Requests: Using
    /// Query Parameters (AWS Signature Version 4)".
    #[test]
    fn presigns_as_aws_documents() {
        let query = presign(
            &example_signer("20130524T000000Z"),
            "examplebucket.s3.amazonaws.com",
            "/test.txt",
            86400,
        );
        assert_eq!(
            query,
            "X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    #[test]
    fn encodes_keys_as_sigv4_wants() {
        assert_eq!(
            uri_encode("images/a b+c~.qcow2", false),
            "images/a%20b%2Bc~.qcow2"
        );
        assert_eq!(uri_encode("a/b", true), "a%2Fb");
    }

    #[test]
    fn a_presigned_url_prints_without_its_signature() {
        let url = PresignedUrl("http://127.0.0.1:9/b/k.qcow2?X-Amz-Signature=abc".into());
        assert_eq!(url.to_string(), "http://127.0.0.1:9/b/k.qcow2?<presigned>");
        assert!(!format!("{url:?}").contains("abc"));
    }

    #[test]
    fn formats_the_signing_time() {
        let time = amz_time(SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600));
        assert_eq!(time.stamp, "20130524T000000Z");
        assert_eq!(time.date, "20130524");
    }
}
