//! What the deployable tree says the host should have: the bridges, the
//! files to upload (each VM's boot image and seed disk, by the names the
//! plan gave them) and the VMs to create. Read from the tree `build --with-secrets` wrote,
//! after checking it is that blueprint's current build, so deploy never
//! ships a stale or hand-edited tree.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::bake::BakedImage;
use crate::emit::{Manifest, Secrets, MANIFEST_PATH};
use crate::plan::images::BootImage;
use crate::plan::vm::{vm_configs, VmConfig};
use crate::Compiled;

/// A file the host's file storage must hold in its `import` content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    /// The name on the host (content-hashed by the plan).
    pub file: String,
    /// A seed disk: it can carry secrets, so it is uploaded only for a VM
    /// being created and deleted from the host once the VM has its copy.
    pub seed: bool,
    /// Where it is in the tree, if the tree has it (`--no-images` builds
    /// have no images).
    pub path: Option<PathBuf>,
    pub sha256: String,
    pub bytes: u64,
    /// The artifact store holds it (an image only; the deploy asks the
    /// store before planning): the host downloads it from there.
    pub in_store: bool,
}

/// A bridge of the blueprint, as the node's network should hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredBridge {
    pub name: String,
    /// The uplink: only checked, never changed.
    pub public: bool,
    /// The host's address on it with the network's prefix (`10.10.0.1/24`).
    pub cidr: String,
    /// Its IPv6 address with the prefix length (`fd10::1/64`), if the
    /// bridge has IPv6.
    pub cidr6: Option<String>,
    /// `bridge_vlan_aware`: its VMs' NICs may carry VLAN tags.
    pub vlan_aware: bool,
}

impl DesiredBridge {
    /// A bridge as a host of the model has it.
    pub fn of(bridge: &crate::model::Bridge) -> DesiredBridge {
        DesiredBridge {
            name: bridge.name.to_string(),
            public: bridge.role == crate::model::BridgeRole::Public,
            cidr: format!("{}/{}", bridge.host_address, bridge.network.prefix_len()),
            cidr6: bridge
                .v6
                .map(|v6| format!("{}/{}", v6.host_address, v6.network.prefix_len())),
            vlan_aware: bridge.vlan_aware,
        }
    }
}

/// Everything the host should have.
#[derive(Clone, Debug)]
pub struct Desired {
    /// The public bridge first.
    pub bridges: Vec<DesiredBridge>,
    pub uploads: Vec<Upload>,
    pub vms: Vec<VmConfig>,
    /// The Talos nodes' in-place targets, by VMID: what an existing node
    /// is upgraded to or sent instead of being replaced.
    pub talos: BTreeMap<u32, TalosTarget>,
}

impl Desired {
    /// The part of a cluster's desired state on `node`: its VMs, the files
    /// they are created from, their Talos targets, and `bridges` (a
    /// cluster node's uplink only: its internal networks are SDN VNets).
    pub fn on_node(&self, node: &str, bridges: Vec<DesiredBridge>) -> Desired {
        let vms: Vec<VmConfig> = self
            .vms
            .iter()
            .filter(|vm| vm.node == node)
            .cloned()
            .collect();
        let files: Vec<String> = vms
            .iter()
            .flat_map(|vm| {
                let (image, seed) = super::plan::files_of(vm);
                [image, seed]
            })
            .collect();
        Desired {
            bridges,
            uploads: self
                .uploads
                .iter()
                .filter(|upload| files.contains(&upload.file))
                .cloned()
                .collect(),
            talos: self
                .talos
                .iter()
                .filter(|(vmid, _)| vms.iter().any(|vm| vm.vmid == **vmid))
                .map(|(vmid, target)| (*vmid, target.clone()))
                .collect(),
            vms,
        }
    }
}

/// What a Talos node should run: the factory installer of its schematic and
/// version, the Kubernetes version and the machine config the build wrote
/// for it, and its place in a rolling change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TalosTarget {
    /// `v1.12.1`.
    pub version: String,
    pub schematic: String,
    /// `1.35.1`, as `versions.kubernetes` and the VM's description write it.
    pub kubernetes: String,
    /// The seed's `user-data`, byte for byte.
    pub config: Vec<u8>,
    pub control_plane: bool,
    /// Its position in `Model::rollout_order`: control planes first.
    pub rollout: usize,
}

impl TalosTarget {
    /// The Image Factory's installer image for the nocloud platform.
    pub fn installer(&self) -> String {
        crate::plan::schematic::installer_image(&self.schematic, &self.version)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    #[error(
        "{tree} is not a deployable tree ({reason}); build one with `waddlec build --with-secrets`"
    )]
    NotDeployable { tree: String, reason: String },
    #[error("{tree} is out of date with the blueprint ({path} differs); rebuild it with `waddlec build --with-secrets`")]
    Stale { tree: String, path: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The desired state of `compiled` (the blueprint built with its secrets),
/// whose files are in `tree`.
pub fn desired(compiled: &Compiled, tree: &Path) -> Result<Desired, DesiredError> {
    let not_deployable = |reason: &str| DesiredError::NotDeployable {
        tree: tree.display().to_string(),
        reason: reason.to_string(),
    };
    let manifest =
        Manifest::read(tree).ok_or_else(|| not_deployable("no readable manifest.json"))?;
    if manifest.secrets != Secrets::Included {
        return Err(not_deployable("its secrets are placeholders"));
    }
    // Every file deploy ships is the one this blueprint and these secrets
    // make, byte for byte: a stale or hand-edited tree is refused (the
    // host files run as root; the seeds are the VMs' identities).
    let seeds = crate::bake::seed_disks::seed_disks(&compiled.artifacts).map_err(|e| {
        DesiredError::NotDeployable {
            tree: tree.display().to_string(),
            reason: e.to_string(),
        }
    })?;
    for artifact in compiled.artifacts.iter().chain(&seeds) {
        if artifact.path == MANIFEST_PATH {
            continue;
        }
        let on_disk = fs::read(tree.join(&artifact.path)).ok();
        if on_disk.as_deref() != Some(artifact.contents.as_slice()) {
            return Err(DesiredError::Stale {
                tree: tree.display().to_string(),
                path: artifact.path.clone(),
            });
        }
    }
    // `--no-images` builds have no list.
    let baked: Vec<BakedImage> = read_json(&tree.join("images.json")).unwrap_or_default();

    let mut uploads: Vec<Upload> = Vec::new();
    for plan in &compiled.images {
        let file = plan.boot.file();
        if !uploads.iter().any(|u| u.file == file) {
            uploads.push(image_upload(tree, file, &baked));
        }
        let seed = tree.join(&plan.seed.artifact);
        let bytes = fs::read(&seed).map_err(|source| DesiredError::Read {
            path: seed.display().to_string(),
            source,
        })?;
        uploads.push(Upload {
            file: plan.seed.file.clone(),
            seed: true,
            path: Some(seed),
            sha256: hex::encode(Sha256::digest(&bytes)),
            bytes: bytes.len() as u64,
            in_store: false,
        });
    }
    let bridges = compiled
        .model
        .host()
        .bridges
        .iter()
        .map(DesiredBridge::of)
        .collect();
    let mut talos = BTreeMap::new();
    let rollout = compiled.model.rollout_order();
    for plan in &compiled.images {
        let (BootImage::Talos(image), Some(cluster)) = (&plan.boot, &compiled.model.talos) else {
            continue;
        };
        let Some(position) = rollout.iter().position(|node| node.vm.id == plan.vmid) else {
            continue;
        };
        let path = tree.join(format!("vms/{}/seed/user-data", plan.vm));
        let config = fs::read(&path).map_err(|source| DesiredError::Read {
            path: path.display().to_string(),
            source,
        })?;
        talos.insert(
            plan.vmid,
            TalosTarget {
                version: image.version.clone(),
                schematic: image.schematic.clone(),
                kubernetes: cluster.kubernetes.clone(),
                config,
                control_plane: rollout[position].is_control_plane(),
                rollout: position,
            },
        );
    }
    Ok(Desired {
        bridges,
        uploads,
        vms: vm_configs(&compiled.model, &compiled.images),
        talos,
    })
}

/// The boot image as `images.json` lists it, or without a path if the tree
/// was built without images.
fn image_upload(tree: &Path, file: &str, baked: &[BakedImage]) -> Upload {
    let entry = baked.iter().find(|image| image.file == file);
    let path = tree.join("images").join(file);
    match entry {
        Some(entry) if path.is_file() => Upload {
            file: file.to_string(),
            seed: false,
            path: Some(path),
            sha256: entry.receipt.sha256.clone(),
            bytes: entry.receipt.bytes,
            in_store: false,
        },
        _ => Upload {
            file: file.to_string(),
            seed: false,
            path: None,
            sha256: String::new(),
            bytes: 0,
            in_store: false,
        },
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, DesiredError> {
    let text = fs::read_to_string(path).map_err(|source| DesiredError::Read {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| DesiredError::Read {
        path: path.display().to_string(),
        source: std::io::Error::other(e),
    })
}
