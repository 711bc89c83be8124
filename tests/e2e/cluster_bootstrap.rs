//! `waddlec cluster bootstrap` end to end, against stand-ins reached the way
//! the real cluster is: a real `sshd` in a network namespace plays the
//! Proxmox host, and inside it the node's Talos API (10.10.0.10:50000) and
//! the API VIP (10.10.0.20:6443) are DNAT'd to a stand-in apid (mTLS gRPC,
//! trusting only the bundle's OS CA) and a stand-in Kubernetes API
//! (`tests/support/kube_api_stand_in.py`, client certificates verified
//! against the bundle's Kubernetes CA). The same sshd plays the Teleport VM,
//! with Teleport's kubeconfig installed under a scratch root. A `[cluster]`
//! (the three-host example) is bootstrapped the same way through the one
//! host it must take, the one that runs its first control plane.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::apid::{pem_text, Apid, NODE};
use crate::support::cluster_lab::write_record;
use crate::support::free_addr;
use crate::support::kube_api::KubeApi;
use crate::support::ssh_host::SshHost;
use crate::support::talos_lab::SecretLab;
use crate::support::{repo_root, require, run, text, valid_blueprints};

const FLUX_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nflux-deploy-key-5ecret-a1b2c3\n-----END OPENSSH PRIVATE KEY-----";
const OP_CREDENTIALS: &str = "{\"verifier\":{\"salt\":\"op-cred-5ecret-d4e5f6\"}}";
const OP_TOKEN: &str = "op-connect-token-5ecret-778899";
const TELEPORT_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.teleport-sa-token-5ecret";
const KUBECONFIG: &str = "/var/lib/teleport/kubeconfig.yaml";

/// A bundle-initialised lab whose blueprint reads the bootstrap secrets from
/// the environment and gives Teleport cluster access.
fn lab() -> SecretLab {
    let lab = SecretLab::edited(&valid_blueprints()[0], |document| {
        document["flux"]
            .as_table_mut()
            .unwrap()
            .insert("deploy_key".into(), "env:WADDLE_TEST_FLUX_KEY".into());
        let connect = document["onepassword_connect"].as_table_mut().unwrap();
        connect.insert(
            "credentials".into(),
            "env:WADDLE_TEST_OP_CREDENTIALS".into(),
        );
        connect.insert("token".into(), "env:WADDLE_TEST_OP_TOKEN".into());
        let mut kube = toml::Table::new();
        kube.insert("kubeconfig".into(), KUBECONFIG.into());
        document["teleport"]
            .as_table_mut()
            .unwrap()
            .insert("kubernetes".into(), kube.into());
    });
    lab.init();
    lab
}

/// `waddlec` in the lab, with the bootstrap secrets in its environment.
fn waddlec_in(lab: &SecretLab) -> Command {
    let mut command = crate::support::waddlec();
    command
        .current_dir(lab.path(""))
        .env("WADDLEC_CACHE_DIR", lab.path("cache"))
        .env(
            crate::support::talos_lab::GITHUB_SECRET_ENV,
            crate::support::talos_lab::GITHUB_SECRET,
        )
        .env("WADDLE_TEST_FLUX_KEY", FLUX_KEY)
        .env("WADDLE_TEST_OP_CREDENTIALS", OP_CREDENTIALS)
        .env("WADDLE_TEST_OP_TOKEN", OP_TOKEN);
    command
}

/// Everything the bootstrap reaches, wired through the SSH host.
struct Cluster {
    host: SshHost,
    apid: Apid,
    kube: KubeApi,
    teleport_root: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// The stand-ins; the sshd presents the Teleport VM's host key from
    /// the lab's secrets (it plays that VM too).
    fn start(lab: &SecretLab, nodes_ready_after: i32) -> Cluster {
        Self::start_with(lab, nodes_ready_after, Some(&teleport_host_key(lab)))
    }

    fn start_with(lab: &SecretLab, nodes_ready_after: i32, host_key: Option<&str>) -> Cluster {
        for tool in ["openssl", "python3", "iptables"] {
            require(tool);
        }
        let bundle =
            waddlec::secrets::talos_bundle::load(&lab.path("secrets/cluster.yaml")).unwrap();
        let host = match host_key {
            Some(key) => SshHost::start_with_host_key(key),
            None => SshHost::start(),
        };
        let apid_addr = free_addr(&host.host_side);
        let apid = Apid::start(apid_addr, &bundle, Vec::new());
        let dir = tempfile::tempdir().unwrap();
        let kube_addr = free_addr(&host.host_side);
        let kube = KubeApi::start(
            dir.path(),
            kube_addr,
            (
                &pem_text(&bundle.certs.k8s.crt),
                &pem_text(&bundle.certs.k8s.key),
            ),
            nodes_ready_after,
            TELEPORT_TOKEN,
        );
        // Inside the "Proxmox host": the cluster's addresses lead to the
        // stand-ins.
        host.netns.sh(&format!(
            "ip route add 10.10.0.0/24 via {gw} && \
             iptables -t nat -A OUTPUT -d 10.10.0.10/32 -p tcp --dport 50000 -j DNAT --to-destination {apid_addr} && \
             iptables -t nat -A OUTPUT -d 10.10.0.20/32 -p tcp --dport 6443 -j DNAT --to-destination {kube_addr}",
            gw = host.host_side
        ));
        Cluster {
            host,
            apid,
            kube,
            teleport_root: tempfile::tempdir().unwrap(),
            _dir: dir,
        }
    }

    fn bootstrap(&self, lab: &SecretLab, wait: &str) -> Output {
        run(waddlec_in(lab)
            .args([
                "cluster",
                "bootstrap",
                "blueprint.toml",
                "--skip-preflight",
                "--format",
                "json",
                "-vv",
            ])
            .args([
                "--wait",
                wait,
                "--host-ssh",
                "waddle-host",
                "--teleport-ssh",
                "waddle-host",
            ])
            .arg("--ssh-config")
            .arg(&self.host.config)
            .arg("--teleport-root")
            .arg(self.teleport_root.path()))
    }
}

/// The Teleport VM's private host key, as `secrets init` made it.
fn teleport_host_key(lab: &SecretLab) -> String {
    let keys = crate::support::talos_lab::yaml_documents(
        &fs::read_to_string(lab.path("secrets/cluster.ssh-host-keys.yaml")).unwrap(),
    )
    .remove(0);
    keys["hosts"]["teleport"]["private"]
        .as_str()
        .unwrap()
        .to_string()
}

fn assert_no_secret(what: &str, haystack: &str) {
    for secret in [
        "flux-deploy-key-5ecret",
        "op-cred-5ecret",
        OP_TOKEN,
        "teleport-sa-token-5ecret",
    ] {
        assert!(
            !haystack.contains(secret),
            "{what} contains a secret value ({secret})"
        );
    }
}

#[test]
fn a_cluster_is_bootstrapped_once_and_a_rerun_changes_nothing_but_replaces_secrets() {
    let lab = lab();
    let cluster = Cluster::start(&lab, 2);
    let output = cluster.bootstrap(&lab, "60s");
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["etcd_bootstrapped"], true);
    assert_eq!(
        report["nodes_ready"],
        serde_json::json!(["talos-cp1", "talos-cp2", "talos-cp3"])
    );
    // etcd: one Bootstrap, as the talosctl admin, through the host's sshd.
    {
        let calls = cluster.apid.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].role, "os:admin");
    }
    // The API: only ever as a short-lived system:masters certificate.
    let requests = cluster.kube.requests();
    assert!(!requests.is_empty());
    for request in &requests {
        assert_eq!(
            request["subject"]["organizationName"], "system:masters",
            "{request}"
        );
    }
    // Secrets by server-side apply, each namespace before its secrets.
    let applies: Vec<&Value> = requests.iter().filter(|r| r["method"] == "PATCH").collect();
    let paths: Vec<&str> = applies
        .iter()
        .map(|r| r["path"].as_str().unwrap().split('?').next().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/api/v1/namespaces/flux-system",
            "/api/v1/namespaces/flux-system/secrets/flux-system",
            "/api/v1/namespaces/onepassword",
            "/api/v1/namespaces/onepassword/secrets/op-credentials",
            "/api/v1/namespaces/onepassword/secrets/onepassword-connect-token",
        ]
    );
    assert!(applies.iter().all(|r| r["server_side_apply"] == true));
    let data = |i: usize, key: &str| {
        let value = applies[i]["object"]["data"][key].as_str().unwrap();
        String::from_utf8(
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, value).unwrap(),
        )
        .unwrap()
    };
    assert_eq!(data(1, "identity"), format!("{FLUX_KEY}\n"));
    assert!(data(1, "known_hosts").starts_with("github.com ssh-ed25519 "));
    assert_eq!(data(3, "1password-credentials.json"), OP_CREDENTIALS);
    assert_eq!(data(4, "token"), OP_TOKEN);
    // Teleport's kubeconfig: its ServiceAccount token, on the VIP, 0600,
    // and Teleport restarted to read it.
    let installed = cluster
        .teleport_root
        .path()
        .join(KUBECONFIG.trim_start_matches('/'));
    let mode = fs::metadata(&installed).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let kubeconfig: Value =
        serde_saphyr::from_str(&fs::read_to_string(&installed).unwrap()).unwrap();
    assert_eq!(
        kubeconfig["clusters"][0]["cluster"]["server"],
        "https://10.10.0.20:6443"
    );
    assert_eq!(kubeconfig["users"][0]["user"]["token"], TELEPORT_TOKEN);
    assert_eq!(kubeconfig["current-context"], "waddle-cluster");
    assert!(cluster
        .host
        .calls()
        .contains("systemctl try-restart teleport.service"));
    assert_no_secret("stderr", &stderr);
    assert_no_secret("the report", &text(&output.stdout));

    // Again: etcd is found bootstrapped, the secrets are applied again.
    let output = cluster.bootstrap(&lab, "60s");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["etcd_bootstrapped"], false);
    assert_eq!(cluster.apid.calls().len(), 2);
    let applies = cluster
        .kube
        .requests()
        .iter()
        .filter(|r| r["method"] == "PATCH")
        .count();
    assert_eq!(applies, 10);
    assert_no_secret("stderr", &text(&output.stderr));
}

#[test]
fn a_step_that_does_not_finish_stops_with_what_it_waited_for() {
    let lab = lab();
    let cluster = Cluster::start(&lab, -1);
    let start = Instant::now();
    let output = cluster.bootstrap(&lab, "8s");
    assert_eq!(output.status.code(), Some(69), "{}", text(&output.stderr));
    assert!(start.elapsed() < Duration::from_secs(60));
    let stderr = text(&output.stderr);
    for needle in [
        "nodes Ready: not done after",
        "talos-cp1 NotReady",
        "cilium-install",
    ] {
        assert!(stderr.contains(needle), "{needle} in {stderr}");
    }
    assert_no_secret("stderr", &stderr);
}

#[test]
fn an_unreachable_host_stops_at_the_tunnel_with_ssh_s_own_words() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ssh_config");
    fs::write(
        &config,
        "Host nowhere\n  HostName 127.0.0.1\n  Port 1\n  ConnectTimeout 5\n",
    )
    .unwrap();
    let output = run(waddlec_in(&lab)
        .args([
            "cluster",
            "bootstrap",
            "blueprint.toml",
            "--skip-preflight",
            "--wait",
            "10s",
            "--host-ssh",
            "nowhere",
        ])
        .arg("--ssh-config")
        .arg(&config));
    assert_eq!(output.status.code(), Some(69), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("tunnel through the Proxmox host"),
        "{stderr}"
    );
    assert!(stderr.contains("Connection refused"), "{stderr}");
}

#[test]
fn a_missing_bootstrap_secret_is_named_before_anything_is_reached() {
    let lab = lab();
    let output = run(waddlec_in(&lab).env_remove("WADDLE_TEST_OP_TOKEN").args([
        "cluster",
        "bootstrap",
        "blueprint.toml",
        "--skip-preflight",
        "--host-ssh",
        "nowhere.invalid",
    ]));
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("WADDLE_TEST_OP_TOKEN"), "{stderr}");
    assert!(!stderr.contains("==> tunnel"), "{stderr}");
}

#[test]
fn bootstrap_secret_values_reach_no_artifact_and_no_log() {
    let lab = lab();
    let build = |args: &[&str]| run(waddlec_in(&lab).args(args));
    let deployable = build(&[
        "build",
        "blueprint.toml",
        "--with-secrets",
        "--no-images",
        "-vvv",
    ]);
    assert!(deployable.status.success(), "{}", text(&deployable.stderr));
    let review = build(&["build", "blueprint.toml", "--out", "out", "-vvv"]);
    assert!(review.status.success(), "{}", text(&review.stderr));
    for output in [&deployable, &review] {
        assert_no_secret("the build's output", &text(&output.stdout));
        assert_no_secret("the build's log", &text(&output.stderr));
    }
    let mut files = 0;
    for tree in ["dist", "out"] {
        for (path, (bytes, _)) in crate::support::tree(&lab.path(tree)) {
            files += 1;
            assert_no_secret(&format!("{tree}/{path}"), &String::from_utf8_lossy(&bytes));
        }
    }
    assert!(files > 40, "{files} files scanned");
    // The deployable machine configs do carry the cluster's inline
    // manifests; the bootstrap secrets are not among them.
    let config = fs::read_to_string(lab.path("dist/vms/talos-cp1/seed/user-data")).unwrap();
    assert!(config.contains("50-flux-instance"));
    assert!(!config.contains("op-credentials") && !config.contains("onepassword-connect-token"));
}

/// A machine answering at the Teleport VM's address with another host key
/// (a replaced VM not redeployed, or someone else) gets no kubeconfig: the
/// connection is refused before anything is sent.
#[test]
fn teleport_s_kubeconfig_goes_only_to_the_host_key_its_seed_gave_it() {
    let lab = lab();
    let cluster = Cluster::start_with(&lab, 0, None);
    let output = cluster.bootstrap(&lab, "30s");
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("Teleport's cluster access"), "{stderr}");
    assert!(
        stderr.contains("Host key verification failed")
            || stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{stderr}"
    );
    assert!(
        fs::read_dir(cluster.teleport_root.path())
            .unwrap()
            .next()
            .is_none(),
        "nothing was installed"
    );
    assert_no_secret("stderr", &stderr);
}

/// A bundle-initialised `[cluster]`: the three-host example (no Teleport,
/// no bootstrap secrets) with each host reached as `ssh = "NODE"`, its
/// first control plane cp-1 placed on pve2, so the host the tunnel must
/// take is not the first host, and its VNet moved from 10.30.0.0/22 to
/// 10.10.0.0/22 with cp-1 at the address the stand-in apid's certificate
/// names (`apid::NODE`).
fn cluster_lab() -> SecretLab {
    let lab = SecretLab::edited(
        &repo_root().join("blueprints/examples/three-hosts.toml"),
        |document| {
            *document = toml::to_string(document)
                .unwrap()
                .replace("10.30.", "10.10.")
                .parse()
                .unwrap();
            for host in document["cluster"]["host"].as_array_mut().unwrap() {
                let host = host.as_table_mut().unwrap();
                let node = host["node"].as_str().unwrap().to_string();
                host.insert("ssh".into(), node.into());
            }
            let cp1 = document["talos"]["node"][0].as_table_mut().unwrap();
            assert_eq!(cp1["name"].as_str(), Some("cp-1"));
            cp1.insert("address".into(), NODE.into());
            cp1.insert("host".into(), "pve2".into());
        },
    );
    lab.init();
    lab
}

/// A fresh ed25519 public key, `TYPE BASE64`: a host key nobody presents.
fn stray_key(dir: &std::path::Path) -> String {
    let path = dir.join("stray");
    let output = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&path));
    assert!(output.status.success(), "{}", text(&output.stderr));
    public_key(&fs::read_to_string(path.with_extension("pub")).unwrap())
}

/// `TYPE BASE64` of an OpenSSH public key line.
fn public_key(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A `[cluster]` is bootstrapped through the host that runs its first
/// control plane (pve2, not the first host pve1), reached by pve2's own
/// `ssh` and pinned to pve2's own host record. Only pve2 exists (the
/// sshd lab, `Host pve2` in the ssh config): a tunnel through pve1 would
/// not connect. Inside it the cluster's addresses lead to the stand-in
/// apid (cp-1) and Kubernetes API (the VIP), which serves the example's
/// five nodes Ready. pve1's record pins a key nobody presents, and then
/// pve2's does: the tunnel is refused, so the pin is pve2's own.
#[test]
fn a_cluster_is_bootstrapped_through_the_host_of_its_first_control_plane() {
    for tool in ["openssl", "python3", "iptables", "ssh-keygen"] {
        require(tool);
    }
    let lab = cluster_lab();
    let bundle = waddlec::secrets::talos_bundle::load(&lab.path("secrets/cluster.yaml")).unwrap();
    let host = SshHost::start();
    let dir = tempfile::tempdir().unwrap();
    let config = lab.path("ssh_config");
    fs::write(
        &config,
        fs::read_to_string(&host.config)
            .unwrap()
            .replace("Host waddle-host", "Host pve2"),
    )
    .unwrap();
    let stray = stray_key(dir.path());
    let record = |node: &str, key: &str| {
        write_record(
            &lab.path("blueprint.toml"),
            node,
            key,
            &["AB"; 32].join(":"),
        )
    };
    // pve1 and pve3 pinned to a key nobody has: only pve2 is reached.
    record("pve1", &stray);
    record("pve2", &public_key(&host.host_public_key()));
    record("pve3", &stray);

    let apid_addr = free_addr(&host.host_side);
    let apid = Apid::start(apid_addr, &bundle, Vec::new());
    let nodes = ["cp-1", "cp-2", "cp-3", "worker-1", "worker-2"];
    // The node list as the API server lists it (core/v1 NodeList), each
    // Ready.
    let state = dir.path().join("state.json");
    fs::write(
        &state,
        serde_json::json!({"resources": [{
            "group": "", "version": "v1", "plural": "nodes", "kind": "Node",
            "namespaced": false,
            "items": nodes.iter().map(|name| serde_json::json!({
                "metadata": {"name": name},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            })).collect::<Vec<_>>(),
        }]})
        .to_string(),
    )
    .unwrap();
    let kube_addr = free_addr(&host.host_side);
    let kube = KubeApi::serving(
        dir.path(),
        kube_addr,
        (
            &pem_text(&bundle.certs.k8s.crt),
            &pem_text(&bundle.certs.k8s.key),
        ),
        &state,
    );
    host.netns.sh(&format!(
        "ip route add 10.10.0.0/22 via {gw} && \
         iptables -t nat -A OUTPUT -d {NODE}/32 -p tcp --dport 50000 -j DNAT --to-destination {apid_addr} && \
         iptables -t nat -A OUTPUT -d 10.10.1.100/32 -p tcp --dport 6443 -j DNAT --to-destination {kube_addr}",
        gw = host.host_side
    ));
    let bootstrap = |wait: &str| {
        run(waddlec_in(&lab)
            .args([
                "cluster",
                "bootstrap",
                "blueprint.toml",
                "--skip-preflight",
                "--format",
                "json",
                "--wait",
                wait,
            ])
            .arg("--ssh-config")
            .arg(&config))
    };

    let output = bootstrap("60s");
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("==> tunnel through the Proxmox host: via pve2 (pve2)"),
        "{stderr}"
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["etcd_bootstrapped"], true);
    assert_eq!(report["nodes_ready"], serde_json::json!(nodes));
    assert_eq!(report["secrets_applied"], serde_json::json!([]));
    {
        let calls = apid.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].role, "os:admin");
    }
    let requests = kube.requests();
    assert!(requests.iter().any(|r| r["path"] == "/api/v1/nodes"));

    // pve2 pinned to a key it does not present: refused at the tunnel.
    record("pve2", &stray);
    let output = bootstrap("10s");
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("tunnel through the Proxmox host"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Host key verification failed")
            || stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{stderr}"
    );
    assert_eq!(apid.calls().len(), 1);
}

/// A `[cluster]`'s hosts are not Teleport's OpenSSH nodes: when the host
/// the tunnel must take (cp-1's, pve2) names `ssh = "teleport:…"`, the
/// bootstrap is refused (exit 2) before any secret is read or any host
/// reached, saying how to reach it instead.
#[test]
fn a_cluster_s_tunnel_host_reached_through_teleport_is_refused_saying_how_to_reach_it() {
    let lab = SecretLab::edited(
        &repo_root().join("blueprints/examples/three-hosts.toml"),
        |document| {
            let hosts = document["cluster"]["host"].as_array_mut().unwrap();
            hosts[1]
                .as_table_mut()
                .unwrap()
                .insert("ssh".into(), "teleport:root@pve2".into());
            document["talos"]["node"][0]
                .as_table_mut()
                .unwrap()
                .insert("host".into(), "pve2".into());
            let teleport: toml::Table = toml::from_str(
                "vm = \"edge\"\npublic_host = \"teleport.trio.example.net\"\n\
                 [[role]]\nname = \"admin\"\nlogins = [\"root\"]\n",
            )
            .unwrap();
            document.insert("teleport".into(), teleport.into());
            document["versions"]
                .as_table_mut()
                .unwrap()
                .insert("teleport".into(), "18.2.1".into());
            let route: toml::Table =
                toml::from_str("sni = \"teleport.trio.example.net\"\nto = \"edge:3080\"").unwrap();
            document["edge"]["route"]
                .as_array_mut()
                .unwrap()
                .push(route.into());
        },
    );
    let output = lab.waddlec(&["cluster", "bootstrap", "blueprint.toml"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the bootstrap tunnels through pve2, the host that runs the first control plane, and pve2's `ssh` goes through Teleport"),
        "{stderr}"
    );
    assert!(stderr.contains("or pass --host-ssh TARGET"), "{stderr}");
    assert!(!stderr.contains("preflight"), "{stderr}");
    assert!(!stderr.contains("==> tunnel"), "{stderr}");
}
