//! A short-lived cluster-admin kubeconfig, signed locally by the cluster's
//! Kubernetes CA from the Talos bundle: no call to the cluster, nothing to
//! revoke (it expires), and the CA key never leaves the workstation.
//!
//! The client certificate is ECDSA P-256, `O=system:masters` (the group the
//! API server maps to cluster-admin), `CN=waddlec-admin`, valid exactly the
//! TTL asked for. The kubeconfig is serialised from types
//! (`render::kubeconfig`), like every YAML waddlec writes.

use crate::render::kubeconfig::Credentials;
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use rcgen::{Issuer, KeyPair, PKCS_ECDSA_P256_SHA256};
use time::{Duration, OffsetDateTime};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::talos::{decode_pem, Bundle};
use super::talos_bundle::client_params;
use super::{Secret, SecretError};

/// The group Kubernetes binds to `cluster-admin`.
pub const ADMIN_GROUP: &str = "system:masters";
pub const ADMIN_USER: &str = "waddlec-admin";
/// Longer than this is not "short-lived".
pub const MAX_TTL: Duration = Duration::days(7);

/// A cluster-admin client certificate and key, as PEM text, valid from
/// `now` for `ttl`: what a kubeconfig embeds, and what `waddlec cluster
/// bootstrap` talks to the API with.
pub struct AdminIdentity {
    pub certificate: String,
    /// PKCS#8 `PRIVATE KEY`.
    pub key: Secret,
}

impl AdminIdentity {
    pub fn issue(bundle: &Bundle, now: OffsetDateTime, ttl: Duration) -> Result<Self, SecretError> {
        let failed = |problem: String| SecretError::Generate {
            what: "the admin client certificate",
            problem,
        };
        let ca_crt = decode_pem(&bundle.certs.k8s.crt)
            .ok_or_else(|| failed("certs.k8s.crt is not PEM".into()))?;
        let ca_key = decode_pem(&bundle.certs.k8s.key)
            .ok_or_else(|| failed("certs.k8s.key is not PEM".into()))?;
        let ca_key = p256::SecretKey::from_sec1_der(ca_key.contents())
            .or_else(|_| p256::SecretKey::from_pkcs8_der(ca_key.contents()))
            .map_err(|e| failed(format!("the Kubernetes CA key is not a P-256 key: {e}")))?
            .to_pkcs8_der()
            .map_err(|e| failed(e.to_string()))?;
        let ca_key = KeyPair::from_pkcs8_der_and_sign_algo(
            &ca_key.as_bytes().into(),
            &PKCS_ECDSA_P256_SHA256,
        )
        .map_err(|e| failed(e.to_string()))?;
        let issuer = Issuer::from_ca_cert_der(&ca_crt.contents().to_vec().into(), ca_key)
            .map_err(|e| failed(format!("the Kubernetes CA certificate does not parse: {e}")))?;
        let key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| failed(e.to_string()))?;
        let params = client_params(ADMIN_GROUP, Some(ADMIN_USER), now, now + ttl);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| failed(e.to_string()))?;
        Ok(AdminIdentity {
            certificate: cert.pem(),
            key: Secret::new(key.serialize_pem()),
        })
    }
}

/// A kubeconfig for `cluster` at `server` (`https://<VIP>:6443`), with a
/// client certificate valid from `now` for `ttl`. Its entries are named as
/// waddlec's own, prefixed with the cluster's name (the cluster and context
/// `<cluster>-waddlec`, the user `<cluster>-waddlec-admin`), so merged into
/// the operator's kubeconfig they replace only what an earlier merge wrote,
/// never `talosctl kubeconfig`'s `<cluster>` and `admin@<cluster>`.
pub fn kubeconfig(
    bundle: &Bundle,
    cluster: &str,
    server: &str,
    now: OffsetDateTime,
    ttl: Duration,
) -> Result<Secret, SecretError> {
    let failed = |problem: String| SecretError::Generate {
        what: "the admin kubeconfig",
        problem,
    };
    let identity = AdminIdentity::issue(bundle, now, ttl)?;
    let entry = format!("{cluster}-waddlec");
    let user = format!("{entry}-admin");
    crate::render::kubeconfig::document(
        &entry,
        server,
        // The bundle keeps PEM as base64, as kubeconfigs do.
        bundle.certs.k8s.crt.expose(),
        &user,
        Credentials::ClientCertificate {
            certificate: BASE64.encode(&identity.certificate),
            key: BASE64.encode(identity.key.expose()),
        },
    )
    .map_err(|e| failed(e.to_string()))
}

/// `1h`, `30m`, `2d`, `90s` → a duration (at most [`MAX_TTL`]).
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: i64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as `1h` or `30m`"))?;
    let ttl = match unit {
        "s" => Duration::seconds(number),
        "m" => Duration::minutes(number),
        "h" => Duration::hours(number),
        "d" => Duration::days(number),
        _ => return Err(format!("`{text}` is not a duration such as `1h` or `30m`")),
    };
    if ttl <= Duration::ZERO || ttl > MAX_TTL {
        return Err(format!(
            "a TTL of `{text}` is not short-lived; give at most 7d"
        ));
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_short_and_spelled_with_a_unit() {
        assert_eq!(parse_ttl("1h"), Ok(Duration::hours(1)));
        assert_eq!(parse_ttl("30m"), Ok(Duration::minutes(30)));
        assert!(parse_ttl("8d").is_err());
        assert!(parse_ttl("0h").is_err());
        assert!(parse_ttl("1y").is_err());
        assert!(parse_ttl("h").is_err());
    }
}
