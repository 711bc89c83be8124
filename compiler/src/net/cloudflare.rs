//! Cloudflare's API v4, read-only, with an API token: is the token active
//! (`GET /user/tokens/verify`), which zone has this name (`GET
//! /zones?name=`), and may the token read the zone's DNS records (`GET
//! /zones/{id}/dns_records?per_page=1`). Every answer is Cloudflare's
//! envelope `{success, errors: [{code, message}], messages, result}`
//! (developers.cloudflare.com/fundamentals/api/how-to/make-api-calls/ and
//! developers.cloudflare.com/api/resources/user/subresources/tokens/methods/verify/:
//! `result.status` is `active`, `disabled` or `expired`;
//! developers.cloudflare.com/api/resources/zones/methods/list/ and
//! developers.cloudflare.com/api/resources/dns/subresources/records/methods/list/).
//! A token without Zone:Read sees no zone (an empty `result`); one without
//! DNS:Read is refused the records (HTTP 403).
//!
//! The base URL is the caller's (`preflight --cloudflare-url`, which tests
//! point at a local stand-in). The token goes only in the `Authorization`
//! header, marked sensitive, and is never in an error or a log.

use std::time::Duration;

use reqwest::blocking::Client;
use serde::Deserialize;
use waddlec_core::secrets::Secret;

use super::{http_client, NetError};

/// Cloudflare's API.
pub const DEFAULT_URL: &str = "https://api.cloudflare.com/client/v4";

pub struct Cloudflare {
    base: String,
    token: Secret,
    timeout: Duration,
    http: Client,
}

#[derive(Debug, thiserror::Error)]
pub enum CloudflareError {
    /// No answer: refused, timed out, not HTTP.
    #[error(transparent)]
    Net(#[from] NetError),
    /// Cloudflare answered with `success: false` (or a non-2xx status):
    /// the status and the errors it listed (code and message).
    #[error("{what}: HTTP {status}: {errors}")]
    Refused {
        what: &'static str,
        status: u16,
        errors: String,
    },
}

/// The envelope of every answer.
#[derive(Deserialize)]
struct Envelope<T> {
    success: bool,
    #[serde(default)]
    errors: Vec<ApiMessage>,
    result: Option<T>,
}

#[derive(Deserialize)]
struct ApiMessage {
    code: i64,
    message: String,
}

/// `result` of the token verify call.
#[derive(Debug, Deserialize)]
pub struct TokenStatus {
    /// `active`, `disabled` or `expired`.
    pub status: String,
    pub expires_on: Option<String>,
}

#[derive(Deserialize)]
struct Zone {
    id: String,
}

impl Cloudflare {
    pub fn new(base: &str, token: Secret, timeout: Duration) -> Result<Self, NetError> {
        Ok(Cloudflare {
            base: base.trim_end_matches('/').to_string(),
            token,
            timeout,
            http: http_client()?,
        })
    }

    /// What Cloudflare says of the token.
    pub fn verify_token(&self) -> Result<TokenStatus, CloudflareError> {
        self.get("token verify", "/user/tokens/verify")?
            .ok_or_else(|| CloudflareError::Refused {
                what: "token verify",
                status: 200,
                errors: "the answer has no result".into(),
            })
    }

    /// The ID of the zone named `name`, if the token can see it (listing
    /// zones needs Zone:Read).
    pub fn zone_id(&self, name: &str) -> Result<Option<String>, CloudflareError> {
        let zones: Option<Vec<Zone>> = self.get("zone list", &format!("/zones?name={name}"))?;
        Ok(zones.unwrap_or_default().into_iter().next().map(|z| z.id))
    }

    /// Reads one DNS record of zone `id` (needs DNS:Read); how many the
    /// page held.
    pub fn read_dns_records(&self, id: &str) -> Result<usize, CloudflareError> {
        let records: Option<Vec<serde_json::Value>> = self.get(
            "DNS record list",
            &format!("/zones/{id}/dns_records?per_page=1"),
        )?;
        Ok(records.map_or(0, |r| r.len()))
    }

    fn get<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        path: &str,
    ) -> Result<Option<T>, CloudflareError> {
        let url = format!("{}{path}", self.base);
        let mut authorization =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", self.token.expose()))
                .map_err(|_| CloudflareError::Refused {
                    what,
                    status: 0,
                    errors: "the token is not plain text".into(),
                })?;
        authorization.set_sensitive(true);
        tracing::debug!(%url, "cloudflare");
        let response = self
            .http
            .get(&url)
            .header(reqwest::header::AUTHORIZATION, authorization)
            .timeout(self.timeout)
            .send()
            .map_err(|e| NetError::Request {
                url: url.clone(),
                problem: e.without_url().to_string(),
            })?;
        let status = response.status().as_u16();
        let envelope: Envelope<T> = response.json().map_err(|e| CloudflareError::Refused {
            what,
            status,
            errors: format!("not Cloudflare's answer: {}", e.without_url()),
        })?;
        if !envelope.success || !(200..300).contains(&status) {
            let errors = envelope
                .errors
                .iter()
                .map(|e| format!("{} ({})", e.message, e.code))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(CloudflareError::Refused {
                what,
                status,
                errors: if errors.is_empty() {
                    "no error given".into()
                } else {
                    errors
                },
            });
        }
        Ok(envelope.result)
    }
}
