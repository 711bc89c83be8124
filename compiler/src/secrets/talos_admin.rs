//! The talosctl admin identity: an Ed25519 client certificate in the
//! `os:admin` role, valid one year, signed by the bundle's OS CA.
//!
//! talosctl issues it afresh (with the current time) on every `gen config`;
//! that would make every build differ. waddlec issues it once, with the
//! bundle (`waddlec secrets init`), and stores it beside the bundle (in the
//! same store, `store::Place::beside`), so a
//! build is a pure function of blueprint and secrets. Renewal is a new
//! `secrets init` after removing the old file.

use rcgen::{Issuer, KeyPair, PKCS_ED25519};
use time::{Duration, OffsetDateTime};

use super::talos::{decode_pem, encode_pem, Bundle, TalosAdmin};
use super::talos_bundle::{client_params, ed25519_key};
use super::{Secret, SecretError};

/// `TalosAPIDefaultCertificateValidityDuration` in talosctl: 365 days.
pub const ADMIN_VALIDITY: Duration = Duration::days(365);

/// What the identity is kept beside the bundle as (`NAME.admin.yaml`).
pub const BESIDE: &str = "admin";

/// The talosctl role the admin certificate carries (as its organisation).
pub const ADMIN_ROLE: &str = "os:admin";

/// Checks the identity `text`, read from `shown`.
pub fn parse(text: &Secret, shown: &str) -> Result<TalosAdmin, SecretError> {
    TalosAdmin::parse(text.expose()).map_err(|problem| SecretError::InvalidBundle {
        path: shown.to_string(),
        problem,
    })
}

/// Issues a new identity from the bundle's OS CA.
pub fn issue(bundle: &Bundle, now: OffsetDateTime) -> Result<TalosAdmin, SecretError> {
    let failed = |problem: String| SecretError::Generate {
        what: "the talosctl admin certificate",
        problem,
    };
    let ca_key_pem =
        decode_pem(&bundle.certs.os.key).ok_or_else(|| failed("certs.os.key is not PEM".into()))?;
    let ca_crt_pem =
        decode_pem(&bundle.certs.os.crt).ok_or_else(|| failed("certs.os.crt is not PEM".into()))?;
    let ca_key =
        KeyPair::from_pkcs8_der_and_sign_algo(&ca_key_pem.contents().into(), &PKCS_ED25519)
            .map_err(|e| failed(format!("the OS CA key is not an Ed25519 PKCS#8 key: {e}")))?;
    let issuer = Issuer::from_ca_cert_der(&ca_crt_pem.contents().to_vec().into(), ca_key)
        .map_err(|e| failed(format!("the OS CA certificate does not parse: {e}")))?;

    let (key, der) = ed25519_key()?;
    let params = client_params(ADMIN_ROLE, None, now, now + ADMIN_VALIDITY);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| failed(e.to_string()))?;
    Ok(TalosAdmin {
        crt: encode_pem("CERTIFICATE", cert.der().to_vec()),
        key: encode_pem("ED25519 PRIVATE KEY", der),
    })
}

/// The identity file as `waddlec secrets init` writes it.
pub fn to_yaml(admin: &TalosAdmin) -> Result<String, SecretError> {
    admin.to_yaml().map_err(|e| SecretError::Generate {
        what: "the admin identity file",
        problem: e.to_string(),
    })
}
