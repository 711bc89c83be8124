//! What the EFI system partition of a Debian image holds: systemd-boot, the
//! kernel and initrd, and the loader entry that boots them with the root
//! partition named by its PARTUUID.
//!
//! The files are read from the merged rootfs tar, not from the build host, so
//! the bootloader and kernel versions are those of the image's own packages
//! (`systemd-boot-efi`, `linux-image-*`).

use std::io::{self, Read};

use crate::esp::EspFile;
use crate::guid::Guid;

const KERNEL_PREFIX: &str = "boot/vmlinuz-";
const INITRD_PREFIX: &str = "boot/initrd.img-";
const SYSTEMD_BOOT: &str = "usr/lib/systemd/boot/efi/systemd-bootx64.efi";

/// Why the boot files could not be found.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("cannot read the rootfs tar: {0}")]
    Read(#[from] io::Error),
    #[error("the rootfs has no /{KERNEL_PREFIX}*; add a kernel package (linux-image-cloud-amd64) to the base packages")]
    NoKernel,
    #[error("the rootfs has more than one kernel ({0}); an image boots exactly one, so install one linux-image package")]
    SeveralKernels(String),
    #[error("the rootfs has no /{INITRD_PREFIX}{0} for its kernel; add initramfs-tools to the base packages")]
    NoInitrd(String),
    #[error("the rootfs has no /{SYSTEMD_BOOT}; add systemd-boot-efi to the base packages")]
    NoSystemdBoot,
}

/// The boot files found in a rootfs.
#[derive(Clone, Debug)]
pub struct BootFiles {
    /// `6.1.0-56-cloud-amd64`.
    pub kernel_release: String,
    pub kernel: Vec<u8>,
    pub initrd: Vec<u8>,
    pub systemd_boot: Vec<u8>,
}

/// Reads the kernel, its initrd and systemd-boot from a rootfs tar.
pub fn read_boot_files(rootfs: impl Read) -> Result<BootFiles, BootError> {
    let mut kernels: Vec<(String, Vec<u8>)> = Vec::new();
    let mut initrds: Vec<(String, Vec<u8>)> = Vec::new();
    let mut systemd_boot = None;
    let mut archive = tar::Archive::new(rootfs);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let raw_path = entry.path_bytes();
        let path = String::from_utf8_lossy(crate::layer::normalize(&raw_path)).into_owned();
        let kernel = path
            .strip_prefix(KERNEL_PREFIX)
            .map(|release| (&mut kernels, release));
        let slot = kernel.or_else(|| {
            path.strip_prefix(INITRD_PREFIX)
                .map(|release| (&mut initrds, release))
        });
        if let Some((found, release)) = slot {
            let release = release.to_string();
            let mut contents = Vec::new();
            entry.read_to_end(&mut contents)?;
            found.push((release, contents));
        } else if path == SYSTEMD_BOOT {
            let mut contents = Vec::new();
            entry.read_to_end(&mut contents)?;
            systemd_boot = Some(contents);
        }
    }
    let (kernel_release, kernel) = match kernels.len() {
        0 => return Err(BootError::NoKernel),
        1 => kernels.remove(0),
        _ => {
            let releases: Vec<String> = kernels.into_iter().map(|(release, _)| release).collect();
            return Err(BootError::SeveralKernels(releases.join(", ")));
        }
    };
    let initrd = initrds
        .into_iter()
        .find(|(release, _)| *release == kernel_release)
        .map(|(_, contents)| contents)
        .ok_or_else(|| BootError::NoInitrd(kernel_release.clone()))?;
    Ok(BootFiles {
        kernel_release,
        kernel,
        initrd,
        systemd_boot: systemd_boot.ok_or(BootError::NoSystemdBoot)?,
    })
}

/// The kernel command line: root by PARTUUID (no initrd guessing, no
/// filesystem UUID lookup), read-write, console on the first serial port last
/// so it is /dev/console (Proxmox's `serial0`, the boot test's log), and the
/// kernel's classic NIC names, which the seeds' `eth0` also uses.
pub fn kernel_command_line(root_partition: Guid) -> String {
    format!("root=PARTUUID={root_partition} rw console=tty0 console=ttyS0,115200 net.ifnames=0")
}

/// The ESP's files: systemd-boot at the removable-media path (no NVRAM entry
/// needed), a loader.conf that boots the one entry at once, the entry, and the
/// kernel and initrd it names.
pub fn esp_files(boot: BootFiles, command_line: &str) -> Vec<EspFile> {
    let loader_conf = "default debian.conf\ntimeout 0\neditor no\n";
    let entry = format!(
        "title Debian GNU/Linux 12 ({release})\nlinux /vmlinuz\ninitrd /initrd.img\noptions {command_line}\n",
        release = boot.kernel_release
    );
    vec![
        EspFile {
            path: "EFI/BOOT/BOOTX64.EFI".into(),
            contents: boot.systemd_boot,
        },
        EspFile {
            path: "loader/loader.conf".into(),
            contents: loader_conf.into(),
        },
        EspFile {
            path: "loader/entries/debian.conf".into(),
            contents: entry.into_bytes(),
        },
        EspFile {
            path: "vmlinuz".into(),
            contents: boot.kernel,
        },
        EspFile {
            path: "initrd.img".into(),
            contents: boot.initrd,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs(files: &[(&str, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, contents) in files {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            header.set_size(contents.len() as u64);
            builder
                .append_data(&mut header, path, contents.as_bytes())
                .unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn finds_the_kernel_its_initrd_and_systemd_boot() {
        let tar = rootfs(&[
            ("./boot/vmlinuz-6.1.0-56-cloud-amd64", "kernel"),
            ("./boot/initrd.img-6.1.0-55-cloud-amd64", "stale initrd"),
            ("./boot/initrd.img-6.1.0-56-cloud-amd64", "initrd"),
            ("./usr/lib/systemd/boot/efi/systemd-bootx64.efi", "sd-boot"),
        ]);
        let boot = read_boot_files(tar.as_slice()).unwrap();
        assert_eq!(boot.kernel_release, "6.1.0-56-cloud-amd64");
        assert_eq!(boot.kernel, b"kernel");
        assert_eq!(boot.initrd, b"initrd");
        assert_eq!(boot.systemd_boot, b"sd-boot");

        let root = Guid::from_u128(0x5b1e2f3a_0000_4000_8000_000000000003);
        let files = esp_files(boot, &kernel_command_line(root));
        let entry = files
            .iter()
            .find(|file| file.path == "loader/entries/debian.conf")
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&entry.contents),
            "title Debian GNU/Linux 12 (6.1.0-56-cloud-amd64)\nlinux /vmlinuz\ninitrd /initrd.img\n\
             options root=PARTUUID=5b1e2f3a-0000-4000-8000-000000000003 rw console=tty0 console=ttyS0,115200 net.ifnames=0\n"
        );
        assert_eq!(files[0].path, "EFI/BOOT/BOOTX64.EFI");
        assert_eq!(files[0].contents, b"sd-boot");
    }

    #[test]
    fn names_the_package_that_is_missing() {
        let no_kernel = rootfs(&[("usr/lib/systemd/boot/efi/systemd-bootx64.efi", "x")]);
        assert!(matches!(
            read_boot_files(no_kernel.as_slice()),
            Err(BootError::NoKernel)
        ));

        let two = rootfs(&[("boot/vmlinuz-a", "1"), ("boot/vmlinuz-b", "2")]);
        assert!(
            matches!(read_boot_files(two.as_slice()), Err(BootError::SeveralKernels(list)) if list == "a, b")
        );

        let no_initrd = rootfs(&[("boot/vmlinuz-a", "1")]);
        assert!(
            matches!(read_boot_files(no_initrd.as_slice()), Err(BootError::NoInitrd(release)) if release == "a")
        );

        let no_boot = rootfs(&[("boot/vmlinuz-a", "1"), ("boot/initrd.img-a", "2")]);
        let error = read_boot_files(no_boot.as_slice()).unwrap_err();
        assert!(
            error.to_string().contains("add systemd-boot-efi"),
            "{error}"
        );
    }
}
