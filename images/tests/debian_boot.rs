//! The HAProxy edge VM's baked Debian image, end to end: built from the
//! rendered review tree (`out/vms/haproxy/`), baked twice from one cached base
//! to show the raw disks are byte-identical, then booted under qemu (TCG,
//! OVMF) to show it is ready at first boot with nothing installed: haproxy and
//! sshd active, haproxy serving exactly the rendered config, cloud-init done,
//! no failed unit.
//!
//! A test-only report unit in the overlay prints the states to the serial
//! console and powers the VM off. Needs root (mmdebstrap), the network to a
//! Debian mirror (the first time; the base is cached in the target dir), and
//! the host packages named in the panics below. It prints the timings and
//! sizes it measured (`cargo test -- --nocapture`).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test here

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use waddle_images::debian::base::{base_layer, BaseSpec};
use waddle_images::debian::guest::{guest_overlay, Guest, GuestFile, NoCloudSeed, GUEST_PACKAGES};
use waddle_images::debian::{bake, DiskIds, DiskSpec};
use waddle_images::layer::Overlay;
use waddle_images::{ByteSize, Guid};

const EPOCH: u64 = 1_700_000_000;
const IDS: DiskIds = DiskIds {
    disk: Guid::from_u128(0x7a11e000_0000_4000_8000_000000000001),
    esp_partition: Guid::from_u128(0x7a11e000_0000_4000_8000_000000000002),
    root_partition: Guid::from_u128(0x7a11e000_0000_4000_8000_000000000003),
    root_filesystem: Guid::from_u128(0x7a11e000_0000_4000_8000_000000000004),
    root_hash_seed: Guid::from_u128(0x7a11e000_0000_4000_8000_000000000005),
    esp_volume_id: 0x7a11_e001,
};
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
const MARKER: &str = "WADDLE-BOOT-REPORT";

/// Runs after everything the image promises, prints one line to the serial
/// console, and powers off so qemu exits by itself.
const REPORT_SCRIPT: &str = r#"#!/bin/sh
# Test-only: report the first-boot state on the serial console, then power off.
state() { systemctl is-active "$1" 2>/dev/null || true; }
cloud=$(cloud-init status 2>/dev/null | sed -n 's/^status: //p')
failed=$(systemctl list-units --state=failed --plain --no-legend 2>/dev/null | awk '{print $1}' | paste -sd, -)
config=$(sha256sum /etc/haproxy/haproxy.cfg | cut -d' ' -f1)
if ss -Hltn 'sport = :443' | grep -q .; then listen=yes; else listen=no; fi
printf '\n%s haproxy=%s ssh=%s qga=%s cloud_init=%s failed=%s haproxy_cfg_sha256=%s listen443=%s uptime=%s END\n' \
    WADDLE-BOOT-REPORT "$(state haproxy.service)" "$(state ssh.service)" "$(state qemu-guest-agent.service)" \
    "${cloud:-unknown}" "${failed:-none}" "$config" "$listen" "$(cut -d' ' -f1 /proc/uptime)" >/dev/ttyS0
systemctl --no-block poweroff
"#;

const REPORT_UNIT: &str = "\
[Unit]
Description=waddle image test: report first-boot state on ttyS0
After=multi-user.target haproxy.service ssh.service qemu-guest-agent.service cloud-final.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/waddle-boot-report

[Install]
WantedBy=multi-user.target
";

fn rendered(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../out/vms/haproxy")
        .join(name);
    fs::read(&path)
        .unwrap_or_else(|error| panic!("cannot read rendered {}: {error}", path.display()))
}

/// Fails (never skips) when a program the test itself runs is missing.
fn require(program: &str, package: &str) {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(found, "`{program}` is missing: apt-get install {package}");
}

fn base_spec() -> BaseSpec {
    let mut packages: Vec<String> = GUEST_PACKAGES.iter().map(|name| name.to_string()).collect();
    packages.push("haproxy".into());
    BaseSpec {
        suite: "bookworm".into(),
        mirrors: vec![
            "http://deb.debian.org/debian".into(),
            "deb http://deb.debian.org/debian-security bookworm-security main".into(),
        ],
        packages,
        source_date_epoch: EPOCH,
    }
}

fn haproxy_overlay() -> Overlay {
    let mut overlay = guest_overlay(&Guest {
        seed: Some(NoCloudSeed {
            user_data: rendered("seed/user-data"),
            meta_data: rendered("seed/meta-data"),
            network_config: rendered("seed/network-config"),
        }),
        root_filesystem: IDS.root_filesystem,
        files: vec![GuestFile {
            path: "/etc/haproxy/haproxy.cfg".into(),
            mode: 0o644,
            contents: rendered("haproxy.cfg"),
        }],
        after_cloud_init: vec!["haproxy.service".into()],
    })
    .unwrap();
    overlay
        .add_file("/usr/local/sbin/waddle-boot-report", 0o755, REPORT_SCRIPT)
        .unwrap()
        .add_file(
            "/etc/systemd/system/waddle-boot-report.service",
            0o644,
            REPORT_UNIT,
        )
        .unwrap()
        .add_symlink(
            "/etc/systemd/system/multi-user.target.wants/waddle-boot-report.service",
            "/etc/systemd/system/waddle-boot-report.service",
        )
        .unwrap();
    overlay
}

/// The NIC's MAC from the rendered network-config, so the seed's `match`
/// finds it.
fn seed_mac() -> String {
    let config = String::from_utf8(rendered("seed/network-config")).unwrap();
    config
        .lines()
        .find_map(|line| line.trim().strip_prefix("macaddress:"))
        .map(|mac| mac.trim().trim_matches('"').to_string())
        .expect("network-config names no macaddress")
}

/// First differing byte offset of two files, if any.
fn first_difference(one: &Path, two: &Path) -> Option<u64> {
    let mut one = fs::File::open(one).unwrap();
    let mut two = fs::File::open(two).unwrap();
    let (mut a, mut b) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut offset = 0u64;
    loop {
        let read = one.read(&mut a).unwrap();
        let mut filled = 0;
        while filled < read {
            let more = two.read(&mut b[filled..read]).unwrap();
            if more == 0 {
                return Some(offset + filled as u64);
            }
            filled += more;
        }
        if read == 0 {
            return (two.read(&mut b).unwrap() != 0).then_some(offset);
        }
        if let Some(index) = a[..read].iter().zip(&b[..read]).position(|(x, y)| x != y) {
            return Some(offset + index as u64);
        }
        offset += read as u64;
    }
}

/// The `timeout` process running qemu; dropping it ends both (timeout passes
/// SIGTERM on to qemu), so no test failure leaves a VM behind.
struct Vm(Child);

impl Drop for Vm {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Boots `disk` and returns the report's fields and the seconds until it
/// appeared.
fn boot(disk: &Path, work: &Path) -> (BTreeMap<String, String>, Duration) {
    let vars = work.join("OVMF_VARS_4M.fd");
    fs::copy(OVMF_VARS, &vars).unwrap();
    let serial = work.join("serial.log");
    let qemu_log = work.join("qemu.log");
    let started = Instant::now();
    let mut command = Command::new("timeout");
    command
        .args(["--kill-after=10", &BOOT_TIMEOUT.as_secs().to_string()])
        .arg("qemu-system-x86_64")
        .args(["-machine", "q35,accel=tcg", "-smp", "2", "-m", "1024"])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
        ))
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=1,file={}",
            vars.display()
        ))
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=virtio,snapshot=on",
            disk.display()
        ))
        .arg("-nic")
        .arg(format!(
            "user,model=virtio-net-pci,mac={},restrict=on",
            seed_mac()
        ))
        .args(["-device", "virtio-serial-pci", "-chardev"])
        .arg(format!(
            "socket,id=qga0,path={},server=on,wait=off",
            work.join("qga.sock").display()
        ))
        .args([
            "-device",
            "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
        ])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .stdin(Stdio::null())
        .stdout(fs::File::create(&qemu_log).unwrap())
        .stderr(fs::File::create(work.join("qemu.stderr")).unwrap());
    let mut vm = Vm(command.spawn().expect("cannot run timeout (coreutils)"));

    loop {
        let log = fs::read_to_string(&serial).unwrap_or_default();
        if let Some(start) = log.find(MARKER) {
            if let Some(end) = log[start..].find(" END") {
                let elapsed = started.elapsed();
                let fields = log[start + MARKER.len()..start + end]
                    .split_whitespace()
                    .filter_map(|field| field.split_once('='))
                    .map(|(key, value)| (key.to_string(), value.to_string()))
                    .collect();
                // Let the guest power off by itself; the drop ends it if not.
                let deadline = Instant::now() + Duration::from_secs(30);
                while matches!(vm.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(200));
                }
                drop(vm);
                return (fields, elapsed);
            }
        }
        if let Ok(Some(status)) = vm.0.try_wait() {
            let stderr = fs::read_to_string(work.join("qemu.stderr")).unwrap_or_default();
            panic!(
                "qemu ended ({status}) after {:?} without a boot report\nqemu stderr:\n{stderr}\nserial log (end):\n{}",
                started.elapsed(),
                tail(&log, 150)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn haproxy_image_is_reproducible_and_ready_at_first_boot() {
    require("qemu-system-x86_64", "qemu-system-x86");
    require("timeout", "coreutils");
    for firmware in [OVMF_CODE, OVMF_VARS] {
        assert!(
            Path::new(firmware).is_file(),
            "{firmware} is missing: apt-get install ovmf"
        );
    }

    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let cache = target.join("debian-base-cache");
    let spec = base_spec();
    let started = Instant::now();
    let base = base_layer(&spec, &cache).unwrap_or_else(|error| panic!("{error}"));
    let base_time = started.elapsed();
    let started = Instant::now();
    let again = base_layer(&spec, &cache).unwrap();
    let cached_time = started.elapsed();
    assert!(again.reused, "an unchanged base must come from the cache");
    assert_eq!(again.tar, base.tar);

    let overlay = haproxy_overlay();
    let disk_spec = DiskSpec {
        ids: IDS,
        esp_size: ByteSize::from_mib(128),
        root_size: ByteSize::from_mib(2048),
        source_date_epoch: EPOCH,
    };
    let work = tempfile::tempdir_in(&target).unwrap();
    let first = bake(&base, &overlay, &disk_spec, &work.path().join("one.raw"))
        .unwrap_or_else(|error| panic!("{error}"));
    let second = bake(&base, &overlay, &disk_spec, &work.path().join("two.raw")).unwrap();
    assert_eq!(
        first_difference(&first.raw, &second.raw),
        None,
        "two bakes from the same base must give byte-identical raw disks"
    );
    let raw = fs::metadata(&first.raw).unwrap();
    fs::remove_file(&second.raw).unwrap();

    let (report, boot_time) = boot(&first.raw, work.path());
    let field = |key: &str| report.get(key).map(String::as_str).unwrap_or("<missing>");
    let timings = first.timings;
    eprintln!(
        "debian image measurements:\n  \
         base layer: {base_time:.1?} ({}; {} bytes)\n  \
         base layer again (cache): {cached_time:.1?}\n  \
         bake: merge {:.1?}, ext4 {:.1?}, ESP {:.1?}, GPT {:.1?}; second bake {:.1?} in all\n  \
         raw disk: {} bytes apparent, {} bytes allocated\n  \
         boot to report: {boot_time:.1?} (guest uptime {} s)",
        if base.reused {
            "from an earlier run's cache"
        } else {
            "built by mmdebstrap"
        },
        fs::metadata(&base.tar).unwrap().len(),
        timings.merge,
        timings.ext4,
        timings.esp,
        timings.gpt,
        second.timings.merge + second.timings.ext4 + second.timings.esp + second.timings.gpt,
        raw.len(),
        raw.blocks() * 512,
        field("uptime"),
    );
    let expected_config = hex::encode(Sha256::digest(rendered("haproxy.cfg")));
    assert_eq!(field("haproxy"), "active", "{report:?}");
    assert_eq!(field("ssh"), "active", "{report:?}");
    assert_eq!(field("haproxy_cfg_sha256"), expected_config, "{report:?}");
    assert_eq!(field("listen443"), "yes", "{report:?}");
    assert_eq!(field("qga"), "active", "{report:?}");
    assert_eq!(field("cloud_init"), "done", "{report:?}");
    assert_eq!(field("failed"), "none", "{report:?}");
}
