//! The operator's side of Teleport, for a test host: `tsh`
//! (`tests/support/tsh_stand_in.py`, the ProxyCommand `tsh config` writes)
//! first on the PATH, a `TELEPORT_HOME` holding what `tsh login` leaves
//! (the profile, and tsh's known_hosts vouching for the node's key), the
//! cluster's registered nodes (the [`SshHost`] as the node `waddle-host`),
//! and an ssh config giving the cluster's names the login key, as `tsh
//! config`'s `Host *.CLUSTER` block does.

use std::fs;
use std::path::PathBuf;

use super::ssh_host::SshHost;

/// The bundled blueprint's Teleport cluster and proxy.
pub const CLUSTER: &str = "teleport.waddle.social";
pub const PROXY: &str = "teleport.waddle.social:443";
/// The node the test host is registered as.
pub const NODE: &str = "waddle-host";

pub struct Tsh {
    home: tempfile::TempDir,
    /// The ssh config for `--ssh-config`.
    pub config: PathBuf,
}

impl Tsh {
    /// `tsh` for `host`, logged in to [`PROXY`] or not.
    pub fn for_host(host: &SshHost, logged_in: bool) -> Tsh {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path();
        let bin = dir.join("bin");
        fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(
            super::repo_root().join("tests/support/tsh_stand_in.py"),
            bin.join("tsh"),
        )
        .unwrap();
        let host_config = fs::read_to_string(&host.config).unwrap();
        let setting = |name: &str| -> String {
            host_config
                .lines()
                .find_map(|line| line.trim().strip_prefix(&format!("{name} ")))
                .unwrap()
                .to_string()
        };
        fs::write(
            dir.join("nodes"),
            format!("{NODE} {}:22\n", setting("HostName")),
        )
        .unwrap();
        if logged_in {
            let proxy_host = CLUSTER;
            fs::write(dir.join("current-profile"), proxy_host).unwrap();
            fs::write(
                dir.join(format!("{proxy_host}.yaml")),
                format!("web_proxy_addr: {PROXY}\n"),
            )
            .unwrap();
        }
        // What `tsh login` writes is Teleport's host CA as a
        // `@cert-authority *.CLUSTER` line; this node's own key stands for it.
        fs::write(
            dir.join("known_hosts"),
            format!("{NODE}.{CLUSTER} {}", host.host_public_key()),
        )
        .unwrap();
        let config = dir.join("ssh_config");
        fs::write(
            &config,
            format!(
                "{host_config}\nHost *.{CLUSTER}\n  User root\n  IdentityFile {}\n  IdentitiesOnly yes\n  ConnectTimeout 10\n",
                setting("IdentityFile")
            ),
        )
        .unwrap();
        Tsh { home, config }
    }

    /// `tsh` logged in to `proxy`, the proxy of `cluster`, with each of
    /// `nodes` (`(node, host)`) registered as that node, and the ssh config
    /// `base` with, for each node's `NODE.CLUSTER`, that host's login key,
    /// as `tsh config`'s `Host *.CLUSTER` block gives the user's.
    pub fn for_nodes(
        nodes: &[(&str, &SshHost)],
        cluster: &str,
        proxy: &str,
        base: &std::path::Path,
    ) -> Tsh {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path();
        let bin = dir.join("bin");
        fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(
            super::repo_root().join("tests/support/tsh_stand_in.py"),
            bin.join("tsh"),
        )
        .unwrap();
        let (mut registered, mut known_hosts) = (String::new(), String::new());
        let mut config = fs::read_to_string(base).unwrap();
        for (node, host) in nodes {
            let host_config = fs::read_to_string(&host.config).unwrap();
            let setting = |name: &str| -> String {
                host_config
                    .lines()
                    .find_map(|line| line.trim().strip_prefix(&format!("{name} ")))
                    .unwrap()
                    .to_string()
            };
            registered.push_str(&format!("{node} {}:22\n", setting("HostName")));
            known_hosts.push_str(&format!(
                "{node}.{cluster} {}\n",
                host.host_public_key().trim_end()
            ));
            config.push_str(&format!(
                "\nHost {node}.{cluster}\n  User root\n  IdentityFile {}\n  IdentitiesOnly yes\n  ConnectTimeout 10\n",
                setting("IdentityFile")
            ));
        }
        fs::write(dir.join("nodes"), registered).unwrap();
        fs::write(dir.join("known_hosts"), known_hosts).unwrap();
        let proxy_host = proxy.split(':').next().unwrap();
        fs::write(dir.join("current-profile"), proxy_host).unwrap();
        fs::write(
            dir.join(format!("{proxy_host}.yaml")),
            format!("web_proxy_addr: {proxy}\n"),
        )
        .unwrap();
        let path = dir.join("ssh_config");
        fs::write(&path, config).unwrap();
        Tsh { home, config: path }
    }

    /// The environment `waddlec` runs in: `tsh` first on the PATH, and
    /// `TELEPORT_HOME`.
    pub fn env(&self) -> Vec<(String, String)> {
        let path = std::env::var("PATH").unwrap_or_default();
        vec![
            (
                "PATH".into(),
                format!("{}:{path}", self.home.path().join("bin").display()),
            ),
            (
                "TELEPORT_HOME".into(),
                self.home.path().display().to_string(),
            ),
        ]
    }

    /// Every `tsh` invocation so far, one per line.
    pub fn calls(&self) -> String {
        fs::read_to_string(self.home.path().join("calls.log")).unwrap_or_default()
    }
}
