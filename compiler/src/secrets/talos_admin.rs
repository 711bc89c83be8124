//! The talosctl admin identity: an Ed25519 client certificate in the
//! `os:admin` role, valid one year, signed by the bundle's OS CA.
//!
//! talosctl issues it afresh (with the current time) on every `gen config`;
//! that would make every build differ. waddlec issues it once, with the
//! bundle (`waddlec secrets init`), and stores it beside the bundle, so a
//! build is a pure function of blueprint and secrets. Renewal is a new
//! `secrets init` after removing the old file.

use std::path::{Path, PathBuf};

use rcgen::{Issuer, KeyPair, PKCS_ED25519};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::talos_bundle::{client_params, decode_pem, ed25519_key, encode_pem, Bundle};
use super::{Secret, SecretError};

/// `TalosAPIDefaultCertificateValidityDuration` in talosctl: 365 days.
pub const ADMIN_VALIDITY: Duration = Duration::days(365);

/// The talosctl role the admin certificate carries (as its organisation).
pub const ADMIN_ROLE: &str = "os:admin";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TalosAdmin {
    /// base64 of the PEM certificate.
    pub crt: Secret,
    /// base64 of the PEM key (`ED25519 PRIVATE KEY`).
    pub key: Secret,
}

impl TalosAdmin {
    /// Where the identity of the bundle at `bundle` lives:
    /// `NAME.yaml` → `NAME.admin.yaml`.
    pub fn path_beside(bundle: &Path) -> PathBuf {
        let stem = bundle
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = stem
            .strip_suffix(".yaml")
            .or_else(|| stem.strip_suffix(".yml"))
            .unwrap_or(&stem);
        bundle.with_file_name(format!("{stem}.admin.yaml"))
    }

    pub fn load(path: &Path) -> Result<Self, SecretError> {
        let invalid = |problem: &str| SecretError::InvalidBundle {
            path: path.display().to_string(),
            problem: problem.to_string(),
        };
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
            reference: path.display().to_string(),
            source,
        })?;
        let admin: TalosAdmin = serde_saphyr::from_str(&text)
            .map_err(|_| invalid("expected the keys crt and key of `waddlec secrets init`"))?;
        if decode_pem(&admin.crt).is_none() || decode_pem(&admin.key).is_none() {
            return Err(invalid("crt and key must be base64-encoded PEM"));
        }
        Ok(admin)
    }

    /// Issues a new identity from the bundle's OS CA.
    pub fn issue(bundle: &Bundle, now: OffsetDateTime) -> Result<Self, SecretError> {
        let failed = |problem: String| SecretError::Generate {
            what: "the talosctl admin certificate",
            problem,
        };
        let ca_key_pem = decode_pem(&bundle.certs.os.key)
            .ok_or_else(|| failed("certs.os.key is not PEM".into()))?;
        let ca_crt_pem = decode_pem(&bundle.certs.os.crt)
            .ok_or_else(|| failed("certs.os.crt is not PEM".into()))?;
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

    pub fn to_yaml(&self) -> Result<String, SecretError> {
        crate::render::yaml::document(self).map_err(|e| SecretError::Generate {
            what: "the admin identity file",
            problem: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_file_sits_beside_the_bundle() {
        assert_eq!(
            TalosAdmin::path_beside(Path::new("secrets/waddle.yaml")),
            Path::new("secrets/waddle.admin.yaml")
        );
        assert_eq!(
            TalosAdmin::path_beside(Path::new("bundle")),
            Path::new("bundle.admin.yaml")
        );
    }
}
