//! Image Factory schematics and their IDs, computed offline.
//!
//! The factory's ID is the SHA-256 of Go's `yaml.Marshal` of its
//! `Schematic` struct: keys in struct order, empty fields omitted except
//! `customization` (`customization: {}`), 4-space indent, list items indented
//! under their key. The types below mirror that struct's order; `yaml`
//! produces Go's layout. The factory hashes extensions in the order it is
//! sent, so the same set sent in another order gets another ID: we sort and
//! de-duplicate (as the factory's own UI does).

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::yaml::{self, YamlError};

/// Where Talos images and installers come from.
pub const FACTORY_HOST: &str = "factory.talos.dev";

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Schematic {
    customization: Customization,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
struct Customization {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    extra_kernel_args: Vec<String>,
    #[serde(skip_serializing_if = "SystemExtensions::is_empty")]
    system_extensions: SystemExtensions,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
struct SystemExtensions {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    official_extensions: Vec<String>,
}

impl SystemExtensions {
    fn is_empty(&self) -> bool {
        self.official_extensions.is_empty()
    }
}

impl Schematic {
    /// A schematic with these official extensions (sorted, de-duplicated) and
    /// kernel arguments (in the given order: the kernel reads them in order).
    pub fn new(extensions: &[String], kernel_args: &[String]) -> Self {
        let mut official_extensions = extensions.to_vec();
        official_extensions.sort();
        official_extensions.dedup();
        Schematic {
            customization: Customization {
                extra_kernel_args: kernel_args.to_vec(),
                system_extensions: SystemExtensions {
                    official_extensions,
                },
            },
        }
    }

    /// The canonical YAML, byte for byte what the factory hashes.
    pub fn canonical_yaml(&self) -> Result<String, YamlError> {
        yaml::document(self)
    }

    /// The schematic ID: lowercase hex SHA-256 of the canonical YAML.
    pub fn id(&self) -> Result<String, YamlError> {
        Ok(hex::encode(Sha256::digest(self.canonical_yaml()?)))
    }
}

/// The nocloud disk image of this schematic and Talos version.
pub fn disk_image_url(id: &str, talos_version: &str) -> String {
    format!("https://{FACTORY_HOST}/image/{id}/{talos_version}/nocloud-amd64.raw.xz")
}

/// The installer image `talosctl upgrade` needs: the platform-specific
/// (`nocloud-installer`) one, since the generic `installer` defaults to metal.
pub fn installer_image(id: &str, talos_version: &str) -> String {
    format!("{FACTORY_HOST}/nocloud-installer/{id}:{talos_version}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(extensions: &[&str], args: &[&str]) -> String {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Schematic::new(&owned(extensions), &owned(args))
            .id()
            .unwrap()
    }

    #[test]
    fn the_factorys_own_vectors() {
        assert_eq!(
            id(&[], &[]),
            "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
        );
        assert_eq!(
            id(&["siderolabs/qemu-guest-agent"], &[]),
            "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515"
        );
        assert_eq!(
            id(
                &["siderolabs/iscsi-tools", "siderolabs/qemu-guest-agent"],
                &[]
            ),
            "dc7b152cb3ea99b821fcb7340ce7168313ce393d663740b791c36f6e95fc8586"
        );
        assert_eq!(
            id(&[], &["noapic", "nolapic"]),
            "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c"
        );
    }

    #[test]
    fn canonical_bytes_are_gos_layout() {
        let schematic = Schematic::new(&["b/y".into(), "a/x".into()], &["quiet".into()]);
        assert_eq!(
            schematic.canonical_yaml().unwrap(),
            "customization:\n    extraKernelArgs:\n        - quiet\n    systemExtensions:\n        officialExtensions:\n            - a/x\n            - b/y\n"
        );
        assert_eq!(
            Schematic::new(&[], &[]).canonical_yaml().unwrap(),
            "customization: {}\n"
        );
    }

    /// Every permutation of a set, with duplicates sprinkled in, has one ID.
    #[test]
    fn extension_order_and_duplicates_do_not_change_the_id() {
        let set = [
            "siderolabs/iscsi-tools",
            "siderolabs/qemu-guest-agent",
            "siderolabs/util-linux-tools",
        ];
        let expected = "88d1f7a5c4f1d3aba7df787c448c1d3d008ed29cfb34af53fa0df4336a56040b";
        let mut permutation = set.to_vec();
        // Heap's algorithm over all 6 orders; each also with a duplicate.
        let mut c = [0usize; 3];
        let check = |p: &[&str]| {
            assert_eq!(id(p, &[]), expected, "{p:?}");
            let mut doubled = p.to_vec();
            doubled.push(p[1]);
            doubled.insert(0, p[2]);
            assert_eq!(id(&doubled, &[]), expected, "{doubled:?}");
        };
        check(&permutation);
        let mut i = 0;
        while i < 3 {
            if c[i] < i {
                if i % 2 == 0 {
                    permutation.swap(0, i);
                } else {
                    permutation.swap(c[i], i);
                }
                check(&permutation);
                c[i] += 1;
                i = 0;
            } else {
                c[i] = 0;
                i += 1;
            }
        }
    }

    #[test]
    fn kernel_argument_order_is_kept() {
        assert_ne!(id(&[], &["a=1", "b=2"]), id(&[], &["b=2", "a=1"]));
    }

    #[test]
    fn urls_name_the_nocloud_platform() {
        assert_eq!(
            installer_image("abc", "v1.12.4"),
            "factory.talos.dev/nocloud-installer/abc:v1.12.4"
        );
        assert_eq!(
            disk_image_url("abc", "v1.12.4"),
            "https://factory.talos.dev/image/abc/v1.12.4/nocloud-amd64.raw.xz"
        );
    }
}
