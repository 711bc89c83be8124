//! What makes a Debian base a cloud-init guest that is ready at first boot:
//! the packages it needs and the overlay that configures them.
//!
//! Owns the first-boot contract of every Debian VM image: the NoCloud seed is
//! baked in (`/var/lib/cloud/seed/nocloud`), cloud-init renders the network
//! for systemd-networkd (cloud-init 22.4's ENI renderer writes a broken `dns`
//! line) with systemd-resolved answering DNS, ssh host keys are made at first
//! boot, the root filesystem is mounted by UUID, and services whose config
//! cloud-init writes start only after cloud-init's config stage. A role (the
//! HAProxy edge, say) adds its packages, its rendered files and the services
//! to hold back; this module knows nothing of roles.

use crate::guid::Guid;
use crate::layer::{Overlay, OverlayError};

/// The packages the files of [`guest_overlay`] and the boot path rely on.
/// Roles add theirs (e.g. `haproxy`).
pub const GUEST_PACKAGES: &[&str] = &[
    // Booting: the kernel and bootloader copied to the ESP, init.
    "linux-image-cloud-amd64",
    "systemd-boot-efi",
    "systemd",
    "systemd-sysv",
    "udev",
    // hostnamectl (cloud-init sets the hostname through it).
    "dbus",
    // Networking: networkd ships with systemd; cloud-init's networkd
    // renderer needs `ip`; resolved serves the seed's nameservers.
    "iproute2",
    "systemd-resolved",
    // cloud-init's growpart and resizefs grow the root to the disk.
    "cloud-guest-utils",
    "e2fsprogs",
    // The seed's users get sudo rules.
    "sudo",
    "openssh-server",
    "cloud-init",
    "qemu-guest-agent",
];

const SEED_DIR: &str = "/var/lib/cloud/seed/nocloud";

const CLOUD_CFG: &str = "\
# Written by waddle's image builder.
# The seed is baked in or attached as a CIDATA disk: only NoCloud is probed.
datasource_list: [NoCloud, None]
# C.UTF-8 is built into glibc and needs no locale-gen.
locale: C.UTF-8
# Fresh host keys per VM, without DSA (which OpenSSH 9 no longer offers).
ssh_genkeytypes: [rsa, ecdsa, ed25519]
# systemd-networkd renders the seed's network-config: cloud-init 22.4's ENI
# renderer writes a `dns` line ifupdown rejects.
system_info:
  network:
    renderers: [networkd]
    activators: [networkd]
";

const HOSTS: &str = "\
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
";

const SSH_HOST_KEYS: &str = "\
# Written by waddle's image builder. Host keys are not in the image (every VM
# needs its own); make any that are missing before sshd checks its config.
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
";

const AFTER_CLOUD_INIT: &str = "\
# Written by waddle's image builder. cloud-init writes this service's config
# at first boot (write_files); start it once cloud-init's config stage is done.
[Unit]
After=cloud-config.service
";

/// `systemctl enable systemd-networkd`, as the symlinks it would make.
const NETWORKD_LINKS: &[(&str, &str)] = &[
    (
        "multi-user.target.wants/systemd-networkd.service",
        "systemd-networkd.service",
    ),
    (
        "dbus-org.freedesktop.network1.service",
        "systemd-networkd.service",
    ),
    (
        "sockets.target.wants/systemd-networkd.socket",
        "systemd-networkd.socket",
    ),
    (
        "sysinit.target.wants/systemd-network-generator.service",
        "systemd-network-generator.service",
    ),
    (
        "network-online.target.wants/systemd-networkd-wait-online.service",
        "systemd-networkd-wait-online.service",
    ),
];

/// The NoCloud seed as rendered for the VM.
#[derive(Clone, Debug)]
pub struct NoCloudSeed {
    pub user_data: Vec<u8>,
    pub meta_data: Vec<u8>,
    pub network_config: Vec<u8>,
}

/// A file a role puts into the image, e.g. `/etc/haproxy/haproxy.cfg`.
#[derive(Clone, Debug)]
pub struct GuestFile {
    pub path: String,
    pub mode: u32,
    pub contents: Vec<u8>,
}

/// One guest image's first-boot configuration.
#[derive(Clone, Debug)]
pub struct Guest {
    /// Baked into `/var/lib/cloud/seed/nocloud`; without it the VM's seed
    /// disk (a `CIDATA` volume) is its only seed.
    pub seed: Option<NoCloudSeed>,
    /// The filesystem UUID of the root partition (for /etc/fstab).
    pub root_filesystem: Guid,
    pub files: Vec<GuestFile>,
    /// Units (`haproxy.service`) whose config cloud-init may write at first
    /// boot, held back until cloud-init's config stage is done.
    pub after_cloud_init: Vec<String>,
}

/// Why a guest overlay could not be made.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("`{0}` is not a systemd service name (letters, digits, `@._-`, ending in `.service`)")]
    BadUnit(String),
    #[error(transparent)]
    Overlay(#[from] OverlayError),
}

/// The overlay that turns a base with [`GUEST_PACKAGES`] into `guest`.
pub fn guest_overlay(guest: &Guest) -> Result<Overlay, GuestError> {
    let mut overlay = Overlay::new();
    if let Some(seed) = &guest.seed {
        for (name, contents) in [
            ("user-data", &seed.user_data),
            ("meta-data", &seed.meta_data),
            ("network-config", &seed.network_config),
        ] {
            // The deployable user-data can carry secrets.
            overlay.add_file(&format!("{SEED_DIR}/{name}"), 0o600, contents.clone())?;
        }
    }
    overlay
        .add_file("/etc/cloud/cloud.cfg.d/10-waddle.cfg", 0o644, CLOUD_CFG)?
        .add_file(
            "/etc/fstab",
            0o644,
            format!(
                "# Written by waddle's image builder.\nUUID={} / ext4 rw,discard,errors=remount-ro 0 1\n",
                guest.root_filesystem
            ),
        )?
        .add_file("/etc/hosts", 0o644, HOSTS)?
        .add_symlink("/etc/resolv.conf", "../run/systemd/resolve/stub-resolv.conf")?
        .add_file(
            "/etc/systemd/system/ssh.service.d/10-waddle-host-keys.conf",
            0o644,
            SSH_HOST_KEYS,
        )?;
    for (link, unit) in NETWORKD_LINKS {
        overlay.add_symlink(
            &format!("/etc/systemd/system/{link}"),
            &format!("/lib/systemd/system/{unit}"),
        )?;
    }
    for unit in &guest.after_cloud_init {
        if !is_service_name(unit) {
            return Err(GuestError::BadUnit(unit.clone()));
        }
        overlay.add_file(
            &format!("/etc/systemd/system/{unit}.d/10-waddle-after-cloud-init.conf"),
            0o644,
            AFTER_CLOUD_INIT,
        )?;
    }
    for file in &guest.files {
        overlay.add_file(&file.path, file.mode, file.contents.clone())?;
    }
    Ok(overlay)
}

fn is_service_name(unit: &str) -> bool {
    unit.strip_suffix(".service").is_some_and(|stem| {
        !stem.is_empty()
            && stem
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '_' | '-'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn guest() -> Guest {
        Guest {
            seed: Some(NoCloudSeed {
                user_data: b"#cloud-config\n".to_vec(),
                meta_data: b"instance-id: x\n".to_vec(),
                network_config: b"version: 2\n".to_vec(),
            }),
            root_filesystem: Guid::from_u128(0x2d3f6b1a_9c1e_4b8a_8f3e_0a1b2c3d4e5f),
            files: vec![GuestFile {
                path: "/etc/haproxy/haproxy.cfg".into(),
                mode: 0o644,
                contents: b"global\n".to_vec(),
            }],
            after_cloud_init: vec!["haproxy.service".into()],
        }
    }

    fn entries(overlay: &Overlay) -> Vec<(String, String)> {
        let tar = overlay.to_tar(0).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let path = entry.path().unwrap().display().to_string();
                let mut contents = String::new();
                entry.read_to_string(&mut contents).unwrap();
                if let Some(link) = entry.link_name().unwrap() {
                    contents = format!("-> {}", link.display());
                }
                (path, contents)
            })
            .collect()
    }

    fn find<'a>(entries: &'a [(String, String)], path: &str) -> &'a str {
        &entries
            .iter()
            .find(|(p, _)| p == path)
            .unwrap_or_else(|| panic!("{path} missing"))
            .1
    }

    #[test]
    fn carries_the_seed_the_role_files_and_the_first_boot_setup() {
        let entries = entries(&guest_overlay(&guest()).unwrap());
        assert_eq!(
            find(&entries, "var/lib/cloud/seed/nocloud/meta-data"),
            "instance-id: x\n"
        );
        assert_eq!(
            find(&entries, "var/lib/cloud/seed/nocloud/network-config"),
            "version: 2\n"
        );
        assert_eq!(find(&entries, "etc/haproxy/haproxy.cfg"), "global\n");
        assert!(find(&entries, "etc/fstab")
            .contains("\nUUID=2d3f6b1a-9c1e-4b8a-8f3e-0a1b2c3d4e5f / ext4 "));
        assert!(find(
            &entries,
            "etc/systemd/system/haproxy.service.d/10-waddle-after-cloud-init.conf"
        )
        .contains("\nAfter=cloud-config.service\n"));
        assert_eq!(
            find(
                &entries,
                "etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
            ),
            "-> /lib/systemd/system/systemd-networkd.service"
        );
        assert!(
            find(&entries, "etc/cloud/cloud.cfg.d/10-waddle.cfg").contains("renderers: [networkd]")
        );
    }

    #[test]
    fn cloud_init_accepts_the_system_config() {
        // cloud-init's own schema check (22.4.2, as in the image) on the
        // drop-in, which only needs the user-data header to be checked.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("10-waddle.cfg");
        std::fs::write(&path, format!("#cloud-config\n{CLOUD_CFG}")).unwrap();
        let output = std::process::Command::new("cloud-init")
            .args(["schema", "--config-file"])
            .arg(&path)
            .output()
            .expect("cloud-init is missing: apt-get install cloud-init");
        assert!(
            output.status.success(),
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[test]
    fn refuses_unit_names_that_are_not_services() {
        for bad in [
            "haproxy",
            "../x.service",
            ".service",
            "a b.service",
            "x.socket",
        ] {
            let mut guest = guest();
            guest.after_cloud_init = vec![bad.into()];
            assert!(
                matches!(guest_overlay(&guest), Err(GuestError::BadUnit(_))),
                "{bad}"
            );
        }
        let mut guest = guest();
        guest.after_cloud_init = vec!["getty@ttyS0.service".into()];
        guest_overlay(&guest).unwrap();
    }

    #[test]
    fn role_files_cannot_silently_replace_the_guest_setup() {
        let mut guest = guest();
        guest.files.push(GuestFile {
            path: "/etc/fstab".into(),
            mode: 0o644,
            contents: vec![],
        });
        assert!(matches!(
            guest_overlay(&guest),
            Err(GuestError::Overlay(OverlayError::Duplicate(_)))
        ));
    }
}
