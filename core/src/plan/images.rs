//! The image plan: which disk image and which seed disk every VM boots, what
//! goes into each, and the content-hashed file names they are uploaded under
//! (`host/images.json`, read by reviewers, `bake` and the qm script).
//!
//! A Debian image is named by the sha256 of everything baked into it (the
//! archive, every package, the Teleport version, every file with its mode
//! and hash), so a changed input is a new name and an image in use is never
//! overwritten. Images never hold a secret: a file that carries one (and a
//! seed whose user-data carries one) reaches the VM only on its seed disk,
//! which is why the review tree, built without secrets, plans the same image
//! names as the deployable tree. Seed disks are named by their files, which
//! in the review tree are the redacted ones.

use serde::Serialize;
use sha2::{Digest, Sha256};
use waddle_images::debian::guest::GUEST_PACKAGES;
use waddle_images::ByteSize;

use super::schematic::Schematic;
use crate::artifact::Artifact;
use crate::model::{DebianArchive, GuestOs, Model, Vm};
use crate::yaml::YamlError;

/// Names the recipe; the hash of the baking code
/// (`waddle_images::debian::RECIPE_SOURCES`) is appended, so old names are
/// never reused for new bytes.
const DEBIAN_RECIPE: &str = "waddle debian image v1";
/// The ESP holds systemd-boot, one kernel and one initrd.
pub const ESP_SIZE: ByteSize = crate::model::DEBIAN_ESP_SIZE;
/// The root filesystem as baked; cloud-init grows it to the VM's disk.
pub const ROOT_SIZE: ByteSize = crate::model::DEBIAN_ROOT_SIZE;
/// Where a baked seed lives in the image (NoCloud's seed directory).
pub const SEED_FILES: &[&str] = &["meta-data", "network-config", "user-data"];
const HASH_CHARS: usize = 12;

/// The disks one VM boots from.
#[derive(Clone, Debug, Serialize)]
pub struct VmImages {
    pub vm: String,
    pub vmid: u32,
    pub boot: BootImage,
    pub seed: SeedDisk,
}

/// The NoCloud seed disk (`vms/<vm>/seed.img` in the deployable tree).
#[derive(Clone, Debug, Serialize)]
pub struct SeedDisk {
    /// `<vm>-seed-<hash>.raw`, the name it is uploaded under.
    pub file: String,
    /// Its path in the output tree.
    pub artifact: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "os", rename_all = "lowercase")]
pub enum BootImage {
    Debian(Box<DebianImage>),
    Talos(TalosImage),
}

impl BootImage {
    pub fn file(&self) -> &str {
        match self {
            BootImage::Debian(image) => &image.file,
            BootImage::Talos(image) => &image.file,
        }
    }
}

/// A baked Debian image: its name and everything that decides its bytes.
#[derive(Clone, Debug, Serialize)]
pub struct DebianImage {
    /// `<image>-<vm>-<hash>.qcow2`.
    pub file: String,
    /// The VM it is baked for (its seed and files).
    #[serde(skip)]
    pub vm: String,
    #[serde(flatten)]
    pub inputs: DebianInputs,
}

/// Everything baked into a Debian image; its sha256 names the image.
#[derive(Clone, Debug, Serialize)]
pub struct DebianInputs {
    /// `waddle debian image v1 <hash of the baking code>`.
    pub recipe: String,
    /// The `[[image]]` it was declared as.
    pub image: String,
    pub suite: String,
    pub snapshot: String,
    pub mirror: Option<String>,
    pub source_date_epoch: u64,
    /// Every package installed on top of Debian's Essential set, sorted.
    pub packages: Vec<String>,
    /// Teleport's release, whose binaries go to `/usr/local/bin`.
    pub teleport: Option<String>,
    /// Files placed into the image, by guest path.
    pub files: Vec<BakedFile>,
    /// Whether the NoCloud seed is baked into `/var/lib/cloud/seed/nocloud`
    /// (not when its user-data carries a secret).
    pub seed_baked: bool,
    /// Units whose config cloud-init may write, held until it has.
    pub after_cloud_init: Vec<String>,
    /// Units of `files` enabled in `multi-user.target`.
    pub enable: Vec<String>,
    pub esp_bytes: u64,
    pub root_bytes: u64,
}

/// One file of the image, and where its bytes come from in the tree.
#[derive(Clone, Debug, Serialize)]
pub struct BakedFile {
    pub path: String,
    #[serde(serialize_with = "octal")]
    pub mode: u32,
    /// Path of the artifact holding the contents.
    pub artifact: String,
    pub sha256: String,
}

/// The Talos nocloud image of the cluster's schematic and version.
#[derive(Clone, Debug, Serialize)]
pub struct TalosImage {
    /// `talos-<version>-<schematic>.qcow2`.
    pub file: String,
    pub version: String,
    /// The schematic's ID, computed offline.
    pub schematic: String,
    /// What the schematic holds (registered with the factory before the
    /// image is fetched).
    pub extensions: Vec<String>,
    pub kernel_args: Vec<String>,
}

/// What a VM's role adds to its Debian image; decided by the renderers of
/// the role (`haproxy`, `teleport`).
#[derive(Clone, Debug, Default)]
pub struct Role {
    pub packages: Vec<&'static str>,
    pub teleport: Option<String>,
    pub after_cloud_init: Vec<&'static str>,
    pub enable: Vec<&'static str>,
}

impl Role {
    /// Both roles, for a VM that has two.
    pub fn and(mut self, other: Role) -> Role {
        self.packages.extend(other.packages);
        self.teleport = self.teleport.or(other.teleport);
        self.after_cloud_init.extend(other.after_cloud_init);
        self.enable.extend(other.enable);
        self
    }
}

/// The plan for every VM, in VMID order. `rendered` holds every artifact
/// except the qm script and the plan itself; `role` says what a VM runs.
pub fn plan(
    model: &Model,
    rendered: &[Artifact],
    role: impl Fn(&Vm) -> Role,
) -> Result<Vec<VmImages>, YamlError> {
    let talos = match &model.talos {
        Some(cluster) => {
            let schematic = Schematic::new(&cluster.extensions, &cluster.kernel_args).id()?;
            Some(TalosImage {
                file: format!(
                    "talos-{}-{}.qcow2",
                    cluster.version,
                    &schematic[..HASH_CHARS]
                ),
                version: cluster.version.clone(),
                schematic,
                extensions: cluster.extensions.clone(),
                kernel_args: cluster.kernel_args.clone(),
            })
        }
        None => None,
    };
    let mut plans = Vec::new();
    for vm in &model.vms {
        let boot = match (&vm.os, &model.debian, &talos) {
            (GuestOs::Debian { image, packages }, Some(archive), _) => BootImage::Debian(Box::new(
                debian_image(archive, vm, image, packages, role(vm), rendered),
            )),
            (GuestOs::Talos(_), _, Some(talos)) => BootImage::Talos(talos.clone()),
            // resolve guarantees an archive for Debian VMs and a cluster for
            // Talos nodes.
            _ => continue,
        };
        plans.push(VmImages {
            vm: vm.name.clone(),
            vmid: vm.id,
            boot,
            seed: seed_disk(vm, rendered),
        });
    }
    Ok(plans)
}

/// The plan as the reviewable `host/images.json`.
pub fn artifact(plans: &[VmImages]) -> Artifact {
    let json = serde_json::to_string_pretty(plans).expect("plain data serialises") + "\n";
    Artifact::file("host/images.json", "image-plan", json)
}

fn debian_image(
    archive: &DebianArchive,
    vm: &Vm,
    image: &str,
    extra_packages: &[String],
    role: Role,
    rendered: &[Artifact],
) -> DebianImage {
    let mut packages: Vec<String> = GUEST_PACKAGES
        .iter()
        .chain(&role.packages)
        .map(|p| p.to_string())
        .chain(extra_packages.iter().cloned())
        .collect();
    packages.sort();
    packages.dedup();
    let mut files: Vec<BakedFile> = rendered
        .iter()
        .filter(|a| !a.secret)
        .filter_map(|a| {
            let guest = a.guest.as_ref().filter(|g| g.vm == vm.name)?;
            Some(BakedFile {
                path: guest.path.to_string(),
                mode: guest.mode,
                artifact: a.path.clone(),
                sha256: hex::encode(Sha256::digest(&a.contents)),
            })
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let seed = seed_files(vm, rendered);
    let inputs = DebianInputs {
        recipe: recipe(),
        image: image.to_string(),
        suite: archive.suite.clone(),
        snapshot: archive.snapshot.clone(),
        mirror: archive.mirror.as_ref().map(|m| m.to_string()),
        source_date_epoch: archive.source_date_epoch,
        packages,
        teleport: role.teleport,
        files,
        seed_baked: !seed.is_empty() && seed.iter().all(|a| !a.secret),
        after_cloud_init: sorted(&role.after_cloud_init),
        enable: sorted(&role.enable),
        esp_bytes: ESP_SIZE.bytes(),
        root_bytes: ROOT_SIZE.bytes(),
    };
    let mut hash = Sha256::new();
    hash.update(serde_json::to_vec(&inputs).expect("plain data serialises"));
    if inputs.seed_baked {
        for artifact in &seed {
            hash.update(artifact.path.as_bytes());
            hash.update(Sha256::digest(&artifact.contents));
        }
    }
    let digest = hex::encode(hash.finalize());
    DebianImage {
        file: format!("{image}-{}-{}.qcow2", vm.name, &digest[..HASH_CHARS]),
        vm: vm.name.clone(),
        inputs,
    }
}

fn recipe() -> String {
    let mut hash = Sha256::new();
    for source in waddle_images::debian::RECIPE_SOURCES {
        hash.update(Sha256::digest(source.as_bytes()));
    }
    format!(
        "{DEBIAN_RECIPE} {}",
        &hex::encode(hash.finalize())[..HASH_CHARS]
    )
}

/// Modes as people write them (`"0644"`), not as decimal numbers.
fn octal<S: serde::Serializer>(mode: &u32, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format!("{mode:04o}"))
}

fn sorted(units: &[&str]) -> Vec<String> {
    let mut units: Vec<String> = units.iter().map(|u| u.to_string()).collect();
    units.sort();
    units.dedup();
    units
}

/// The rendered seed files of `vm`, by name.
pub fn seed_files<'a>(vm: &Vm, rendered: &'a [Artifact]) -> Vec<&'a Artifact> {
    let dir = format!("vms/{}/seed/", vm.name);
    let mut files: Vec<&Artifact> = rendered
        .iter()
        .filter(|a| {
            a.path
                .strip_prefix(&dir)
                .is_some_and(|name| SEED_FILES.contains(&name))
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

/// Whether `file` is a name this plan gives a seed disk of the VM named
/// `vm` (`<vm>-seed-<hash>.raw`, whatever its contents): how deploy knows a
/// seed in the host's storage is its own.
pub fn is_seed_file_of(vm: &str, file: &str) -> bool {
    file.strip_prefix(vm)
        .and_then(|rest| rest.strip_prefix("-seed-"))
        .and_then(|rest| rest.strip_suffix(".raw"))
        .is_some_and(|hash| {
            hash.len() == HASH_CHARS
                && hash
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

fn seed_disk(vm: &Vm, rendered: &[Artifact]) -> SeedDisk {
    let mut hash = Sha256::new();
    for artifact in seed_files(vm, rendered) {
        hash.update(artifact.path.as_bytes());
        hash.update(Sha256::digest(&artifact.contents));
    }
    let digest = hex::encode(hash.finalize());
    SeedDisk {
        file: format!("{}-seed-{}.raw", vm.name, &digest[..HASH_CHARS]),
        artifact: format!("vms/{}/seed.img", vm.name),
    }
}
