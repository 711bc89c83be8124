//! The Talos secrets bundle: the same file `talosctl gen secrets` writes
//! (`secrets.yaml`), so an existing cluster's bundle can be imported and
//! ours read by talosctl. Everything a machine config signs or trusts comes
//! from it; generating a new one for a running cluster locks its operator
//! out, so only `waddlec secrets init` ever creates one.
//!
//! Key formats follow talosctl v1.12: etcd, Kubernetes and aggregator CAs
//! ECDSA P-256 (`EC PRIVATE KEY`, SEC1), the service-account key RSA-4096
//! (`RSA PRIVATE KEY`, PKCS#1), the OS CA Ed25519 (`ED25519 PRIVATE KEY`
//! around PKCS#8); CAs valid ten years; every `crt`/`key` is the base64 of
//! the PEM text.

use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SerialNumber, PKCS_ECDSA_P256_SHA256, PKCS_ED25519,
};
use time::{Duration, OffsetDateTime};

use super::talos::{
    encode_pem, Bundle, CertAndKey, Certs, ClusterSecrets, KeyOnly, Secrets, TrustdInfo,
};
use super::{Secret, SecretError};

/// `CAValidityTime` in talosctl: 87600 hours.
pub const CA_VALIDITY: Duration = Duration::hours(87_600);

/// Reads and checks the bundle file at `path` (one to import).
pub fn load(path: &Path) -> Result<Bundle, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
        reference: path.display().to_string(),
        source,
    })?;
    parse(&Secret::new(text), &path.display().to_string())
}

/// Checks the bundle `text`, read from `shown`.
pub fn parse(text: &Secret, shown: &str) -> Result<Bundle, SecretError> {
    Bundle::parse(text.expose()).map_err(|problem| SecretError::InvalidBundle {
        path: shown.to_string(),
        problem,
    })
}

/// The bundle as talosctl writes it.
pub fn to_yaml(bundle: &Bundle) -> Result<String, SecretError> {
    bundle.to_yaml().map_err(|e| SecretError::Generate {
        what: "the bundle file",
        problem: e.to_string(),
    })
}

/// A new bundle, as `talosctl gen secrets` v1.12 makes it.
pub fn generate(now: OffsetDateTime) -> Result<Bundle, SecretError> {
    Ok(Bundle {
        cluster: ClusterSecrets {
            id: Secret::new(URL_SAFE.encode(random::<32>())),
            secret: Secret::new(STANDARD.encode(random::<32>())),
        },
        secrets: Secrets {
            bootstraptoken: Secret::new(token()),
            secretboxencryptionsecret: Some(Secret::new(STANDARD.encode(random::<32>()))),
            aescbcencryptionsecret: None,
        },
        trustdinfo: TrustdInfo {
            token: Secret::new(token()),
        },
        certs: Certs {
            etcd: ecdsa_ca(Some("etcd"), now)?,
            k8s: ecdsa_ca(Some("kubernetes"), now)?,
            // talosctl asks for CN "front-proxy" but its CA template
            // copies only organisations: the subject is empty. Same here,
            // so a bundle of ours reads like one of talosctl's.
            k8saggregator: ecdsa_ca(None, now)?,
            k8sserviceaccount: KeyOnly { key: rsa_key()? },
            os: ed25519_ca("talos", now)?,
        },
    })
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

/// A kubeadm-style token, each character uniform over [0-9a-z] (rejection
/// sampling: bytes ≥ 252 would favour the first four characters).
fn token() -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let chars = |n: usize| {
        let mut out = String::with_capacity(n);
        while out.len() < n {
            let [byte] = random::<1>();
            if byte < 252 {
                out.push(char::from(ALPHABET[usize::from(byte) % 36]));
            }
        }
        out
    };
    format!("{}.{}", chars(6), chars(16))
}

fn generate_error(what: &'static str) -> impl Fn(rcgen::Error) -> SecretError {
    move |e| SecretError::Generate {
        what,
        problem: e.to_string(),
    }
}

/// The CA template of talosctl (siderolabs/crypto): random 128-bit serial,
/// CA, cert-sign + digital-signature, server and client auth, ten years.
fn ca_params(organization: Option<&str>, now: OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    if let Some(organization) = organization {
        name.push(DnType::OrganizationName, organization);
    }
    params.distinguished_name = name;
    params.not_before = now;
    params.not_after = now + CA_VALIDITY;
    params.serial_number = Some(serial());
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params
}

/// A positive serial below 2^128.
/// A client certificate's parameters: `O=organization` (the role or group
/// the server maps it to), optional `CN`, a random serial, client auth only.
pub(super) fn client_params(
    organization: &str,
    common_name: Option<&str>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, organization);
    if let Some(common_name) = common_name {
        name.push(DnType::CommonName, common_name);
    }
    params.distinguished_name = name;
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(serial());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params
}

pub(super) fn serial() -> SerialNumber {
    let mut bytes = random::<16>();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn ecdsa_ca(organization: Option<&str>, now: OffsetDateTime) -> Result<CertAndKey, SecretError> {
    let failed = generate_error("an ECDSA P-256 CA");
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(&failed)?;
    let cert = ca_params(organization, now)
        .self_signed(&key)
        .map_err(&failed)?;
    let sec1 = sec1_with_curve(key.serialized_der()).map_err(|problem| SecretError::Generate {
        what: "an ECDSA P-256 CA",
        problem,
    })?;
    Ok(CertAndKey {
        crt: encode_pem("CERTIFICATE", cert.der().to_vec()),
        key: encode_pem("EC PRIVATE KEY", sec1),
    })
}

/// The SEC1 `ECPrivateKey` inside a PKCS#8 P-256 key, with the named curve
/// filled in: PKCS#8 carries the curve outside, so the inner structure comes
/// without it, and Go's `x509.ParseECPrivateKey` (and OpenSSL) refuse an
/// `EC PRIVATE KEY` that does not name its curve.
fn sec1_with_curve(pkcs8: &[u8]) -> Result<Vec<u8>, String> {
    use p256::pkcs8::DecodePrivateKey as _;
    use sec1::der::{Decode as _, Encode as _};
    let secret = p256::SecretKey::from_pkcs8_der(pkcs8).map_err(|e| e.to_string())?;
    let plain = secret.to_sec1_der().map_err(|e| e.to_string())?;
    let mut key = sec1::EcPrivateKey::from_der(&plain).map_err(|e| e.to_string())?;
    key.parameters = Some(sec1::EcParameters::NamedCurve(P256_OID));
    key.to_der().map_err(|e| e.to_string())
}

/// prime256v1 / secp256r1.
const P256_OID: sec1::der::asn1::ObjectIdentifier =
    sec1::der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// An Ed25519 key as PKCS#8 v1 (RFC 8410): what Go writes and reads. The
/// prefix is the fixed DER of `OneAsymmetricKey { version 0, id-Ed25519 }`.
pub(super) fn ed25519_key() -> Result<(KeyPair, Vec<u8>), SecretError> {
    const PKCS8_V1_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = PKCS8_V1_PREFIX.to_vec();
    der.extend_from_slice(&random::<32>());
    let key = KeyPair::from_pkcs8_der_and_sign_algo(&der.as_slice().into(), &PKCS_ED25519)
        .map_err(generate_error("an Ed25519 key"))?;
    Ok((key, der))
}

fn ed25519_ca(organization: &str, now: OffsetDateTime) -> Result<CertAndKey, SecretError> {
    let (key, der) = ed25519_key()?;
    let cert = ca_params(Some(organization), now)
        .self_signed(&key)
        .map_err(generate_error("the Talos OS CA"))?;
    Ok(CertAndKey {
        crt: encode_pem("CERTIFICATE", cert.der().to_vec()),
        key: encode_pem("ED25519 PRIVATE KEY", der),
    })
}

fn rsa_key() -> Result<Secret, SecretError> {
    use rsa::pkcs1::EncodeRsaPrivateKey as _;
    let failed = |problem: String| SecretError::Generate {
        what: "the RSA-4096 service-account key",
        problem,
    };
    let key = rsa::RsaPrivateKey::new(&mut OsRng, 4096).map_err(|e| failed(e.to_string()))?;
    let der = key.to_pkcs1_der().map_err(|e| failed(e.to_string()))?;
    Ok(encode_pem("RSA PRIVATE KEY", der.as_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_kubeadm_form() {
        for _ in 0..200 {
            assert!(waddlec_core::secrets::talos::is_token(&token()));
        }
    }

    #[test]
    fn talosctls_reference_bundle_parses() {
        // Shape of talos pkg/machinery/config/generate/secrets/testdata, with
        // our own freshly generated values.
        let bundle = generate(OffsetDateTime::UNIX_EPOCH).unwrap();
        let text = bundle.to_yaml().unwrap();
        for key in [
            "cluster:",
            "secrets:",
            "trustdinfo:",
            "certs:",
            "k8sserviceaccount:",
        ] {
            assert!(text.contains(key), "{key} in\n{text}");
        }
        let again = Bundle::parse(&text).unwrap();
        assert_eq!(again.cluster.id, bundle.cluster.id);
        assert_eq!(
            URL_SAFE.decode(again.cluster.id.expose()).unwrap().len(),
            32
        );
    }

    #[test]
    fn a_broken_bundle_is_refused_without_quoting_it() {
        let err = Bundle::parse("cluster: {id: hunter2}\n").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn debug_output_hides_values() {
        let bundle = generate(OffsetDateTime::UNIX_EPOCH).unwrap();
        let debug = format!("{bundle:?}");
        assert!(!debug.contains(bundle.trustdinfo.token.expose()));
        assert!(debug.contains("<secret>"));
    }
}
