//! The Talos secrets bundle's types: the same file `talosctl gen secrets`
//! writes (`secrets.yaml`), parsed and checked, and the talosctl admin
//! identity issued from its OS CA. Everything a machine config signs or
//! trusts comes from here; renderers read these, the review tree gets
//! placeholders in every slot ([`TalosCredentials::redacted`]).
//!
//! Generating a bundle or an identity (keys, randomness, the clock) and
//! reading them from disk are the `waddlec` crate's `secrets::talos_bundle`
//! and `secrets::talos_admin`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{placeholder, Secret};
use crate::yaml::YamlError;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Bundle {
    pub cluster: ClusterSecrets,
    pub secrets: Secrets,
    pub trustdinfo: TrustdInfo,
    pub certs: Certs,
}

impl Bundle {
    /// Every value of the bundle that is secret (its tokens, its secrets,
    /// every CA's key; not the certificates), for whatever shows a machine
    /// config to hide.
    pub fn secret_values(&self) -> Vec<&Secret> {
        let certs = &self.certs;
        [
            Some(&self.cluster.secret),
            Some(&self.secrets.bootstraptoken),
            self.secrets.secretboxencryptionsecret.as_ref(),
            self.secrets.aescbcencryptionsecret.as_ref(),
            Some(&self.trustdinfo.token),
            Some(&certs.etcd.key),
            Some(&certs.k8s.key),
            Some(&certs.k8saggregator.key),
            Some(&certs.k8sserviceaccount.key),
            Some(&certs.os.key),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterSecrets {
    pub id: Secret,
    pub secret: Secret,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Secrets {
    pub bootstraptoken: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secretboxencryptionsecret: Option<Secret>,
    /// Only in bundles of clusters created before Talos 1.3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aescbcencryptionsecret: Option<Secret>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrustdInfo {
    pub token: Secret,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Certs {
    pub etcd: CertAndKey,
    pub k8s: CertAndKey,
    pub k8saggregator: CertAndKey,
    pub k8sserviceaccount: KeyOnly,
    pub os: CertAndKey,
}

/// A certificate and its key, each base64 of PEM. The certificate is not
/// secret, but travels with its key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CertAndKey {
    pub crt: Secret,
    pub key: Secret,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyOnly {
    pub key: Secret,
}

/// The bundle and the talosctl admin identity issued from its OS CA: all a
/// Talos render needs.
#[derive(Clone, Debug)]
pub struct TalosCredentials {
    pub bundle: Bundle,
    pub admin: TalosAdmin,
}

impl TalosCredentials {
    /// Placeholders in every slot, for the review tree.
    pub fn redacted(cluster: &str) -> Self {
        let slot = |field: &str| placeholder(&format!("talos/{cluster}/{field}"));
        let pair = |name: &str| CertAndKey {
            crt: slot(&format!("certs.{name}.crt")),
            key: slot(&format!("certs.{name}.key")),
        };
        TalosCredentials {
            bundle: Bundle {
                cluster: ClusterSecrets {
                    id: slot("cluster.id"),
                    secret: slot("cluster.secret"),
                },
                secrets: Secrets {
                    bootstraptoken: slot("secrets.bootstraptoken"),
                    secretboxencryptionsecret: Some(slot("secrets.secretboxencryptionsecret")),
                    aescbcencryptionsecret: None,
                },
                trustdinfo: TrustdInfo {
                    token: slot("trustdinfo.token"),
                },
                certs: Certs {
                    etcd: pair("etcd"),
                    k8s: pair("k8s"),
                    k8saggregator: pair("k8saggregator"),
                    k8sserviceaccount: KeyOnly {
                        key: slot("certs.k8sserviceaccount.key"),
                    },
                    os: pair("os"),
                },
            },
            admin: TalosAdmin {
                crt: slot("admin.crt"),
                key: slot("admin.key"),
            },
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TalosAdmin {
    /// base64 of the PEM certificate.
    pub crt: Secret,
    /// base64 of the PEM key (`ED25519 PRIVATE KEY`).
    pub key: Secret,
}

impl TalosAdmin {
    /// Parses and checks an identity file of `waddlec secrets init`.
    /// Errors never quote the text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let admin: TalosAdmin = serde_saphyr::from_str(text)
            .map_err(|_| "expected the keys crt and key of `waddlec secrets init`".to_string())?;
        if decode_pem(&admin.crt).is_none() || decode_pem(&admin.key).is_none() {
            return Err("crt and key must be base64-encoded PEM".into());
        }
        Ok(admin)
    }

    pub fn to_yaml(&self) -> Result<String, YamlError> {
        crate::yaml::document(self)
    }
}

impl Bundle {
    /// Parses and checks a bundle. Errors name fields, never values: a YAML
    /// error message may quote the line it failed on, so it is not passed on.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bundle: Bundle = serde_saphyr::from_str(text).map_err(|_| {
            "it is not a talosctl secrets bundle (expected the keys cluster, secrets, trustdinfo and certs \
             of `talosctl gen secrets`)"
                .to_string()
        })?;
        bundle.check()?;
        Ok(bundle)
    }

    fn check(&self) -> Result<(), String> {
        for (field, token) in [
            ("secrets.bootstraptoken", &self.secrets.bootstraptoken),
            ("trustdinfo.token", &self.trustdinfo.token),
        ] {
            if !is_token(token.expose()) {
                return Err(format!(
                    "{field} is not a token of the form [0-9a-z]{{6}}.[0-9a-z]{{16}}"
                ));
            }
        }
        if self.secrets.secretboxencryptionsecret.is_none()
            && self.secrets.aescbcencryptionsecret.is_none()
        {
            return Err("secrets.secretboxencryptionsecret is missing".into());
        }
        let certs = &self.certs;
        for (field, value, label) in [
            ("certs.etcd.crt", &certs.etcd.crt, "CERTIFICATE"),
            ("certs.k8s.crt", &certs.k8s.crt, "CERTIFICATE"),
            (
                "certs.k8saggregator.crt",
                &certs.k8saggregator.crt,
                "CERTIFICATE",
            ),
            ("certs.os.crt", &certs.os.crt, "CERTIFICATE"),
            ("certs.etcd.key", &certs.etcd.key, "PRIVATE KEY"),
            ("certs.k8s.key", &certs.k8s.key, "PRIVATE KEY"),
            (
                "certs.k8saggregator.key",
                &certs.k8saggregator.key,
                "PRIVATE KEY",
            ),
            (
                "certs.k8sserviceaccount.key",
                &certs.k8sserviceaccount.key,
                "PRIVATE KEY",
            ),
            ("certs.os.key", &certs.os.key, "PRIVATE KEY"),
        ] {
            let pem =
                decode_pem(value).ok_or_else(|| format!("{field} is not base64-encoded PEM"))?;
            if !pem.tag().ends_with(label) {
                return Err(format!("{field} holds a {}, not a {label}", pem.tag()));
            }
        }
        Ok(())
    }

    /// The bundle as talosctl writes it.
    pub fn to_yaml(&self) -> Result<String, YamlError> {
        crate::yaml::document(self)
    }
}

/// `[0-9a-z]{6}.[0-9a-z]{16}`, the kubeadm token form.
pub fn is_token(value: &str) -> bool {
    let ok = |part: &str, len: usize| {
        part.len() == len
            && part
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    };
    value
        .split_once('.')
        .is_some_and(|(id, secret)| ok(id, 6) && ok(secret, 16))
}

/// The PEM inside a base64 `crt`/`key` slot.
pub fn decode_pem(value: &Secret) -> Option<pem::Pem> {
    let text = STANDARD.decode(value.expose()).ok()?;
    pem::parse(text).ok()
}

/// A PEM block as a `crt`/`key` slot holds it: base64 of the text.
pub fn encode_pem(tag: &str, der: Vec<u8>) -> Secret {
    let text = pem::encode_config(
        &pem::Pem::new(tag, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    );
    Secret::new(STANDARD.encode(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_for_the_kubeadm_form() {
        assert!(is_token("abcdef.0123456789abcdef"));
        assert!(!is_token("abcdef.0123456789abcdeF"));
        assert!(!is_token("abcde.0123456789abcdef0"));
    }
}
