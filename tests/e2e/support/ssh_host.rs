//! The sshd lab: a throwaway SSH host (a real `sshd` in its own network
//! namespace with fresh keys, reached by the real `ssh` client through a
//! veth pair), whose sessions find stand-ins for the Proxmox, systemd, ZFS
//! and account tools (`useradd`, `getent`: the test must not add users to
//! this machine) first on their PATH, recording every call and refusing
//! arguments the real tool would (`tests/support/host_tools_stand_in.py`). sshd reads its
//! config from the lab's host root (`host_root()/etc/ssh/sshd_config`,
//! including `sshd_config.d/*.conf` there, as Debian's does), and
//! `systemctl reload ssh` really reloads it (SIGHUP), so a drop-in written
//! there takes effect. With [`SshHost::start_with_pve`], `pvesh` is the
//! Proxmox simulator's own (`tests/pve-sim/pvesh`), so what pvesh makes
//! over SSH lives in the same simulated host as what the API makes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use super::netns::Netns;
use super::{require, run, sh, text};

/// A throwaway SSH host: sshd in its own namespace, reached as
/// `waddle-host` through `config`.
pub struct SshHost {
    pub netns: Netns,
    /// The public half of the key sshd presents (`TYPE BASE64 COMMENT`).
    host_key: String,
    pub config: std::path::PathBuf,
    /// This machine's end of the veth, as the host sees it.
    pub host_side: String,
    /// The host's end of that veth (its management link).
    peer_if: String,
    log: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl SshHost {
    /// sshd in a fresh namespace on 10.254.<n>.2, with stand-ins first on
    /// the PATH of every session, and a fresh host key.
    pub fn start() -> Self {
        Self::start_with(None, None)
    }

    /// Like [`SshHost::start`], with the simulator's `pvesh`, which reaches
    /// the simulator through its unix socket `socket`.
    pub fn start_with_pve(socket: &Path) -> Self {
        Self::start_with(None, Some(socket))
    }

    /// Like [`SshHost::start`], presenting `host_key` (OpenSSH private key
    /// format): the machine whose key waddlec made.
    pub fn start_with_host_key(host_key: &str) -> Self {
        Self::start_with(Some(host_key), None)
    }

    fn start_with(given_key: Option<&str>, pve_socket: Option<&Path>) -> Self {
        for tool in ["sshd", "ssh", "ssh-keygen", "iptables", "sysctl"] {
            require(tool);
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Several tests of this process may each run a host at once.
        static HOSTS: AtomicU32 = AtomicU32::new(0);
        let n = HOSTS.fetch_add(1, Ordering::Relaxed);
        let netns = Netns::new(&format!("ssh{n}"));
        // Each host on its own /30, named by its third octet: the first
        // free one from a place that depends on the process, so test runs
        // of several checkouts at once do not meet (`ip link add` fails on
        // a name in use: then the next).
        let start = (std::process::id() % 23) * 10 + n;
        let octet = (0..230)
            .map(|k| (start + k) % 230 + 20)
            .find(|octet| {
                Command::new("ip")
                    .args([
                        "link",
                        "add",
                        &format!("wh{octet}"),
                        "type",
                        "veth",
                        "peer",
                        "name",
                        &format!("wp{octet}"),
                    ])
                    .output()
                    .is_ok_and(|out| out.status.success())
            })
            .expect("a free 10.254.X.0/30 for the SSH host");
        let (host_if, peer_if) = (format!("wh{octet}"), format!("wp{octet}"));
        let (local, remote) = (format!("10.254.{octet}.1"), format!("10.254.{octet}.2"));
        sh(&format!(
            "ip link set {peer_if} netns {ns} && \
             ip addr add {local}/30 dev {host_if} && ip link set {host_if} up && \
             ip -n {ns} addr add {remote}/30 dev {peer_if} && ip -n {ns} link set {peer_if} up",
            ns = netns.name
        ));
        let bin = d.join("stand-ins");
        fs::create_dir_all(&bin).unwrap();
        // Each tool checks its arguments against the real one's grammar
        // (tests/support/host_tools_stand_in.py cites the manual pages).
        let stand_in = super::repo_root().join("tests/support/host_tools_stand_in.py");
        for tool in [
            "pvesh",
            "systemctl",
            "zfs",
            "targetcli",
            "useradd",
            "getent",
            "qm",
        ] {
            let target = if tool == "pvesh" && pve_socket.is_some() {
                super::repo_root().join("tests/pve-sim/pvesh")
            } else {
                stand_in.clone()
            };
            std::os::unix::fs::symlink(target, bin.join(tool)).unwrap();
        }
        let log = d.join("calls.log");
        let keygen = |path: &Path| {
            let output = run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path));
            assert!(output.status.success(), "{}", text(&output.stderr));
            fs::read_to_string(path.with_extension("pub")).unwrap()
        };
        let host_key = match given_key {
            None => keygen(&d.join("host_key")),
            Some(private) => {
                let path = d.join("host_key");
                fs::write(&path, private).unwrap();
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
                let public = run(Command::new("ssh-keygen").arg("-y").arg("-f").arg(&path));
                assert!(public.status.success(), "{}", text(&public.stderr));
                text(&public.stdout)
            }
        };
        let client_key = keygen(&d.join("client_key"));
        let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display());
        let socket = pve_socket
            .map(|s| format!(",environment=\"PVE_SIM_SOCKET={}\"", s.display()))
            .unwrap_or_default();
        fs::write(
            d.join("authorized_keys"),
            format!(
                "environment=\"PATH={path}\",environment=\"STAND_IN_LOG={}\",environment=\"SSHD_PIDFILE={}\"{socket} {client_key}",
                log.display(),
                d.join("sshd.pid").display()
            ),
        )
        .unwrap();
        let etc_ssh = d.join("root/etc/ssh");
        fs::create_dir_all(etc_ssh.join("sshd_config.d")).unwrap();
        let sshd_config = etc_ssh.join("sshd_config");
        fs::write(
            &sshd_config,
            format!(
                "Include {etc_ssh}/sshd_config.d/*.conf\n\
                 ListenAddress {remote}\nPort 22\nHostKey {key}\nAuthorizedKeysFile {d}/authorized_keys\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\nStrictModes no\n\
                 UsePAM no\nPermitUserEnvironment PATH,STAND_IN_LOG,SSHD_PIDFILE,PVE_SIM_SOCKET\nPidFile {d}/sshd.pid\n",
                etc_ssh = etc_ssh.display(),
                key = d.join("host_key").display(),
                d = d.display()
            ),
        )
        .unwrap();
        fs::write(
            d.join("known_hosts"),
            format!("{remote} {}", host_key.trim()),
        )
        .unwrap();
        let config = d.join("ssh_config");
        fs::write(
            &config,
            format!(
                "Host waddle-host\n  HostName {remote}\n  User root\n  IdentityFile {key}\n  \
                 IdentitiesOnly yes\n  UserKnownHostsFile {d}/known_hosts\n  StrictHostKeyChecking yes\n  \
                 ConnectTimeout 10\n",
                key = d.join("client_key").display(),
                d = d.display()
            ),
        )
        .unwrap();
        netns.sh(&format!(
            "/usr/sbin/sshd -f {} -E {}/sshd.log",
            sshd_config.display(),
            d.display()
        ));
        // Ready once it answers.
        for _ in 0..50 {
            let probe = run(Command::new("ssh").arg("-F").arg(&config).args([
                "-o",
                "BatchMode=yes",
                "waddle-host",
                "true",
            ]));
            if probe.status.success() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        SshHost {
            netns,
            host_key: host_key.trim().to_string(),
            config,
            host_side: local,
            peer_if: peer_if.clone(),
            log,
            dir,
        }
    }

    /// The public key sshd presents.
    pub fn host_public_key(&self) -> String {
        format!("{}\n", self.host_key)
    }

    /// The host's interface to this machine: the management link the
    /// test's SSH arrives on.
    pub fn peer_interface(&self) -> &str {
        &self.peer_if
    }

    /// Makes the host root a freshly installed Proxmox host's, as `host
    /// init` reads it: sshd's public host key, the API certificate (the
    /// simulator's `certificate`, so the fingerprint is the one the API
    /// serves) as `pve-ssl.pem`, and an /etc/hosts without the node's name.
    pub fn install_proxmox_files(&self, certificate: &Path) {
        let root = self.host_root();
        fs::create_dir_all(root.join("etc/ssh")).unwrap();
        fs::write(
            root.join("etc/ssh/ssh_host_ed25519_key.pub"),
            self.host_public_key(),
        )
        .unwrap();
        fs::create_dir_all(root.join("etc/pve/local")).unwrap();
        fs::copy(certificate, root.join("etc/pve/local/pve-ssl.pem")).unwrap();
        fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    }

    /// The host's files: sshd's own config is under it.
    pub fn host_root(&self) -> std::path::PathBuf {
        self.dir.path().join("root")
    }

    /// The files of VM `vmid` as the stand-in `qm guest exec` reads them.
    pub fn guest_root(&self, vmid: u32) -> std::path::PathBuf {
        self.dir.path().join("guests").join(vmid.to_string())
    }

    pub fn calls(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}
