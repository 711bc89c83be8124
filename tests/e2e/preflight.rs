//! `waddlec preflight` against real or faithful stand-ins of every service
//! the platform blueprint names, run as the operator would:
//! - secrets and 1Password items: the `op` CLI stand-in
//!   (`tests/support/op_stand_in.py`, op 2's `read` grammar and errors);
//! - the backup bucket: a real S3 server, s3s-fs (`support::s3_server`),
//!   which checks every SigV4 signature;
//! - the Flux repository: a real `sshd` and `git-upload-pack` on loopback
//!   (`support::git_server`);
//! - Cloudflare: `tests/support/cloudflare_stand_in.py`, the API v4
//!   envelope and calls from developers.cloudflare.com (cited there);
//! - DNS: `tests/support/dns_stand_in.py`, an RFC 1035 responder.
//!
//! Each failure names its blueprint line; a service that does not answer
//! is UNREACHABLE (75), not FAILED (8); no secret value appears at -vvv.

use std::net::{TcpListener, UdpSocket};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::git_server::GitServer;
use crate::support::op_stand_in::OpStandIn;
use crate::support::s3_server::{self, S3Server};
use crate::support::stand_in_server::StandInServer;
use crate::support::talos_lab::{SecretLab, GITHUB_SECRET, GITHUB_SECRET_ENV};
use crate::support::{repo_root, text};

const VAULT: &str = "waddle-platform";
const PUBLIC: &str = "203.0.113.10";
const CF_TOKEN: &str = "cf-token-5ecret-0123456789abcdef";
const PVE_TOKEN: &str = "root@pam!waddlec=pve-5ecret-0123456789";
const CONNECT_CREDENTIALS: &str = "{\"verifier\":\"connect-5ecret-credentials\"}";
const CONNECT_TOKEN: &str = "connect-5ecret-token-0123456789";
const OTHER_FIELDS: &[(&str, &str, &str)] = &[
    ("spicedb-preshared-key", "credential", "spicedb-5ecret-key"),
    ("spicedb-postgres", "password", "pg-5ecret-password"),
    (
        "democratic-csi-ssh",
        "private key",
        "csi-5ecret-private-key",
    ),
    ("democratic-csi-iscsi-chap", "username", "chap-user"),
    ("democratic-csi-iscsi-chap", "password", "chap-5ecret-pw"),
];

/// The platform blueprint in a temp dir, every service it names standing
/// in locally and answering as it should.
struct Lab {
    lab: SecretLab,
    op: OpStandIn,
    s3: S3Server,
    git: GitServer,
    cloudflare: StandInServer,
    dns: StandInServer,
}

fn good_records() -> serde_json::Value {
    json!({
        "teleport.waddle.social": [PUBLIC],
        "proxmox.waddle.social": [PUBLIC],
        "*.teleport.waddle.social": [PUBLIC],
        "*.apps.waddle.social": [PUBLIC],
    })
}

fn good_tokens() -> serde_json::Value {
    json!({"tokens": {CF_TOKEN: {"status": "active", "zones": ["waddle.social"], "dns_read": true}}})
}

impl Lab {
    fn start() -> Lab {
        let git = GitServer::start();
        let s3 = S3Server::start();
        let lab = SecretLab::edited(&repo_root().join("blueprints/waddle.toml"), |document| {
            let flux = document["flux"].as_table_mut().unwrap();
            flux.insert("url".into(), git.url.clone().into());
            flux.insert("known_hosts".into(), vec![git.known_host.clone()].into());
            document["platform"]["backups"]
                .as_table_mut()
                .unwrap()
                .insert("bucket".into(), s3_server::BUCKET.into());
        });
        lab.init();
        let op = OpStandIn::with_vault(VAULT);
        for (item, field, value) in [
            ("proxmox-api-token", "credential", PVE_TOKEN),
            ("flux-deploy-key", "private key", git.client_key.as_str()),
            ("1password-connect", "credentials-file", CONNECT_CREDENTIALS),
            ("1password-connect", "token", CONNECT_TOKEN),
            ("cloudflare-api-token", "credential", CF_TOKEN),
            ("s3-backups", "access-key-id", s3_server::ACCESS_KEY),
            ("s3-backups", "secret-access-key", s3_server::SECRET_KEY),
        ]
        .into_iter()
        .chain(OTHER_FIELDS.iter().copied())
        {
            op.set_field(VAULT, item, field, Some(value));
        }
        let cloudflare = StandInServer::start("cloudflare_stand_in.py", &good_tokens());
        let dns = StandInServer::start("dns_stand_in.py", &good_records());
        Lab {
            lab,
            op,
            s3,
            git,
            cloudflare,
            dns,
        }
    }

    /// `waddlec preflight blueprint.toml ARGS` pointed at the stand-ins.
    fn preflight(&self, args: &[&str]) -> Output {
        self.waddlec(&[&["preflight", "blueprint.toml"], args].concat())
    }

    fn waddlec(&self, args: &[&str]) -> Output {
        let resolver = format!("127.0.0.1:{}", self.dns.port);
        let cloudflare = format!("http://127.0.0.1:{}/client/v4", self.cloudflare.port);
        let mut all = args.to_vec();
        all.extend([
            "--resolver",
            &resolver,
            "--cloudflare-url",
            &cloudflare,
            "--backups-endpoint",
            &self.s3.url,
            "--check-timeout",
            "3",
        ]);
        self.lab.waddlec_with(&all, &self.op.env())
    }

    /// `file:line:col` of the first line of the lab's blueprint starting
    /// with `key =`, at its value.
    fn line_of(&self, key: &str) -> String {
        let text = std::fs::read_to_string(&self.lab.blueprint).unwrap();
        let (number, line) = text
            .lines()
            .enumerate()
            .find(|(_, line)| line.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no `{key} =` in\n{text}"));
        format!(
            "blueprint.toml:{}:{}",
            number + 1,
            line.find(" = ").unwrap() + 4
        )
    }

    fn secrets(&self) -> Vec<String> {
        let mut all: Vec<String> = [
            CF_TOKEN,
            PVE_TOKEN,
            CONNECT_CREDENTIALS,
            CONNECT_TOKEN,
            s3_server::SECRET_KEY,
            GITHUB_SECRET,
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(OTHER_FIELDS.iter().map(|(_, _, v)| v.to_string()))
        .collect();
        // The deploy key's body, line by line.
        all.extend(
            self.git
                .client_key
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .map(str::to_string),
        );
        all
    }
}

fn checks(output: &Output) -> Vec<serde_json::Value> {
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&output.stdout), text(&output.stderr)));
    report["checks"].as_array().unwrap().clone()
}

/// The one check named `name` of layer `layer`.
fn find<'a>(checks: &'a [serde_json::Value], layer: &str, name: &str) -> &'a serde_json::Value {
    checks
        .iter()
        .find(|c| c["layer"] == layer && c["name"] == name)
        .unwrap_or_else(|| panic!("no check {layer} {name} in {checks:#?}"))
}

#[test]
fn preflight_of_a_blueprint_whose_services_all_work_passes_and_prints_no_secret() {
    let lab = Lab::start();
    let output = lab.preflight(&["-vvv"]);
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    for (layer, name) in [
        ("secrets", "flux.deploy_key"),
        ("secrets", "teleport.github.client_secret"),
        ("secrets", "talos.secrets"),
        ("1password", "spicedb-postgres/password"),
        ("1password", "democratic-csi-ssh/private key"),
        ("backups", "bucket waddle-artifacts"),
        ("cloudflare", "token"),
        ("cloudflare", "DNS records of waddle.social"),
        ("dns", "*.apps.waddle.social"),
    ] {
        assert!(
            stdout.contains(&format!("ok          {layer:<10}  {name}")),
            "{layer} {name}:\n{stdout}"
        );
    }
    assert!(
        stdout.contains(&format!("branch main is at {}", &lab.git.commit[..12])),
        "{stdout}"
    );
    assert!(stdout.contains("DNS:Edit is not checked"), "{stdout}");
    for secret in lab.secrets() {
        assert!(
            !stdout.contains(&secret),
            "stdout shows a secret:\n{stdout}"
        );
        assert!(
            !stderr.contains(&secret),
            "stderr shows a secret:\n{stderr}"
        );
    }
    // It only asked: the Cloudflare stand-in saw GETs alone.
    let calls = lab.cloudflare.log();
    assert!(calls.lines().all(|l| l.starts_with("GET ")), "{calls}");
    assert!(calls.contains("/client/v4/user/tokens/verify"), "{calls}");
}

#[test]
fn a_secret_reference_that_does_not_resolve_names_its_line() {
    let lab = Lab::start();
    let output = crate::support::run(
        crate::support::waddlec()
            .current_dir(lab.lab.path(""))
            .envs(lab.op.env())
            .args([
                "preflight",
                "blueprint.toml",
                "--only",
                "secrets",
                "--format",
                "json",
            ]),
    );
    assert_eq!(output.status.code(), Some(8), "{}", text(&output.stderr));
    let checks = checks(&output);
    let failed = find(&checks, "secrets", "teleport.github.client_secret");
    assert_eq!(failed["result"], "failed");
    assert_eq!(failed["source"], lab.line_of("client_secret"), "{failed}");
    assert!(
        failed["why"].as_str().unwrap().contains(GITHUB_SECRET_ENV),
        "{failed}"
    );
    assert_eq!(
        find(&checks, "secrets", "flux.deploy_key")["result"],
        "pass"
    );
}

#[test]
fn a_missing_onepassword_field_the_platform_reads_fails_naming_the_vault_line() {
    let lab = Lab::start();
    lab.op
        .set_field(VAULT, "spicedb-postgres", "password", None);
    let output = lab.preflight(&["--only", "onepassword", "--format", "json"]);
    assert_eq!(output.status.code(), Some(8), "{}", text(&output.stderr));
    let checks = checks(&output);
    let failed = find(&checks, "1password", "spicedb-postgres/password");
    assert_eq!(failed["result"], "failed");
    assert!(
        failed["why"].as_str().unwrap().contains("isn't a field"),
        "{failed}"
    );
    // The title is the default, so the line is the vault's.
    assert_eq!(failed["source"], lab.line_of("vault"), "{failed}");
    assert_eq!(
        checks.iter().filter(|c| c["result"] != "pass").count(),
        1,
        "{checks:#?}"
    );
}

#[test]
fn a_bucket_refusing_the_credentials_fails_and_one_that_never_answers_is_unreachable() {
    let lab = Lab::start();
    lab.op.set_field(
        VAULT,
        "s3-backups",
        "secret-access-key",
        Some("not-the-5ecret-key"),
    );
    let output = lab.preflight(&["--only", "backups", "--format", "json"]);
    assert_eq!(output.status.code(), Some(8), "{}", text(&output.stderr));
    let checks = checks(&output);
    let refused = find(&checks, "backups", "bucket waddle-artifacts");
    assert_eq!(refused["result"], "failed", "{refused}");
    assert!(
        refused["why"].as_str().unwrap().contains("HTTP 403"),
        "{refused}"
    );
    assert_eq!(refused["source"], lab.line_of("bucket"), "{refused}");
    assert!(!text(&output.stdout).contains("not-the-5ecret-key"));

    // A server that accepts and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let started = Instant::now();
    let output = lab.lab.waddlec_with(
        &[
            "preflight",
            "blueprint.toml",
            "--only",
            "backups",
            "--backups-endpoint",
            &url,
            "--check-timeout",
            "2",
        ],
        &lab.op.env(),
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(75), "{stdout}");
    assert!(
        stdout.contains("UNREACHABLE backups  bucket waddle-artifacts"),
        "{stdout}"
    );
}

#[test]
fn a_deploy_key_the_git_server_refuses_fails_naming_the_deploy_key_line() {
    let lab = Lab::start();
    lab.op.set_field(
        VAULT,
        "flux-deploy-key",
        "private key",
        Some(&lab.git.stranger_key),
    );
    let output = lab.preflight(&["--only", "git", "--format", "json", "-vvv"]);
    assert_eq!(output.status.code(), Some(8), "{}", text(&output.stderr));
    let checks = checks(&output);
    let refused = &checks[0];
    assert_eq!(refused["layer"], "git");
    assert_eq!(refused["result"], "failed", "{refused}");
    assert!(
        refused["why"]
            .as_str()
            .unwrap()
            .contains("Permission denied"),
        "{refused}"
    );
    assert_eq!(refused["source"], lab.line_of("deploy_key"), "{refused}");
    let body: Vec<&str> = lab
        .git
        .stranger_key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for line in body {
        assert!(!text(&output.stdout).contains(line));
        assert!(!text(&output.stderr).contains(line));
    }
}

#[test]
fn a_git_server_that_refuses_connections_or_never_speaks_is_unreachable() {
    let mut lab = Lab::start();
    lab.git.stop();
    let output = lab.preflight(&["--only", "git"]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(75), "{stdout}");
    assert!(stdout.contains("UNREACHABLE git"), "{stdout}");
    assert!(stdout.contains("Connection refused"), "{stdout}");
    assert!(
        stdout.contains(&format!("from: {}", lab.line_of("url"))),
        "{stdout}"
    );

    // Accepts the connection and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let blueprint = std::fs::read_to_string(&lab.lab.blueprint).unwrap();
    let url = lab.git.url.clone();
    let (before, path) = url.rsplit_once(':').unwrap();
    let path = &path[path.find('/').unwrap()..];
    std::fs::write(
        &lab.lab.blueprint,
        blueprint.replace(&url, &format!("{before}:{port}{path}")),
    )
    .unwrap();
    let started = Instant::now();
    let output = lab.preflight(&["--only", "git"]);
    assert!(started.elapsed() < Duration::from_secs(15));
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(75), "{stdout}");
    assert!(stdout.contains("UNREACHABLE git"), "{stdout}");
}

#[test]
fn an_expired_or_unknown_cloudflare_token_fails_and_a_silent_api_is_unreachable() {
    let lab = Lab::start();
    lab.cloudflare
        .set(&json!({"tokens": {CF_TOKEN: {"status": "expired"}}}));
    let output = lab.preflight(&["--only", "cloudflare", "--format", "json"]);
    assert_eq!(output.status.code(), Some(8), "{}", text(&output.stderr));
    let expired = find(&checks(&output), "cloudflare", "token").clone();
    assert_eq!(expired["result"], "failed");
    assert!(
        expired["why"].as_str().unwrap().contains("is expired"),
        "{expired}"
    );
    assert_eq!(expired["source"], lab.line_of("vault"));

    lab.cloudflare.set(&json!({"tokens": {}}));
    let output = lab.preflight(&["--only", "cloudflare", "--format", "json"]);
    assert_eq!(output.status.code(), Some(8));
    let unknown = find(&checks(&output), "cloudflare", "token").clone();
    assert!(
        unknown["why"]
            .as_str()
            .unwrap()
            .contains("HTTP 401: Invalid API Token (1000)"),
        "{unknown}"
    );

    // Active, but without Zone:Read: it sees no zone.
    lab.cloudflare
        .set(&json!({"tokens": {CF_TOKEN: {"status": "active", "zones": []}}}));
    let output = lab.preflight(&["--only", "cloudflare", "--format", "json"]);
    assert_eq!(output.status.code(), Some(8));
    let zone = find(&checks(&output), "cloudflare", "zone waddle.social").clone();
    assert!(
        zone["why"].as_str().unwrap().contains("lacks Zone:Read"),
        "{zone}"
    );

    // Active, but without DNS:Read on the zone.
    lab.cloudflare.set(&json!({"tokens": {CF_TOKEN: {"status": "active", "zones": ["waddle.social"], "dns_read": false}}}));
    let output = lab.preflight(&["--only", "cloudflare", "--format", "json"]);
    assert_eq!(output.status.code(), Some(8));
    let checks = checks(&output);
    assert_eq!(
        find(&checks, "cloudflare", "zone waddle.social")["result"],
        "pass"
    );
    assert_eq!(
        find(&checks, "cloudflare", "DNS records of waddle.social")["result"],
        "failed"
    );

    lab.cloudflare.set(&json!({"hang": true, "tokens": {}}));
    let started = Instant::now();
    let output = lab.preflight(&["--only", "cloudflare"]);
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(output.status.code(), Some(75), "{}", text(&output.stdout));
    assert!(text(&output.stdout).contains("UNREACHABLE cloudflare  token"));
}

#[test]
fn an_edge_name_resolving_elsewhere_or_not_at_all_says_which_record_to_add() {
    let lab = Lab::start();
    lab.dns.set(&json!({
        "teleport.waddle.social": ["198.51.100.7"],
        "*.teleport.waddle.social": [PUBLIC],
        "*.apps.waddle.social": [PUBLIC],
    }));
    let output = lab.preflight(&["--only", "dns"]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(8), "{stdout}");
    assert!(
        stdout.contains("resolves to 198.51.100.7, not the public address 203.0.113.10"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "no such name: there is no record\n      fix: add the DNS record `proxmox.waddle.social A {PUBLIC}`"
        )),
        "{stdout}"
    );
    let text_blueprint = std::fs::read_to_string(&lab.lab.blueprint).unwrap();
    let proxmox_line = text_blueprint
        .lines()
        .position(|l| l.contains("\"proxmox.waddle.social\"") && l.starts_with("sni"))
        .unwrap();
    assert!(
        stdout.contains(&format!("from: blueprint.toml:{}:", proxmox_line + 1)),
        "{stdout}"
    );
    assert!(lab
        .dns
        .log()
        .contains("waddlec-preflight.apps.waddle.social"));

    // A resolver that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let resolver = silent.local_addr().unwrap().to_string();
    let started = Instant::now();
    let output = lab.lab.waddlec_with(
        &[
            "preflight",
            "blueprint.toml",
            "--only",
            "dns",
            "--resolver",
            &resolver,
            "--check-timeout",
            "1",
        ],
        &lab.op.env(),
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(output.status.code(), Some(75), "{}", text(&output.stdout));
    assert!(text(&output.stdout).contains("UNREACHABLE dns"));
}

#[test]
fn deploy_and_cluster_bootstrap_stop_at_a_failed_preflight_before_reaching_the_host() {
    let lab = Lab::start();
    lab.dns.set(&json!({}));
    // No tree, no host: the deploy must stop before it looks for either.
    let output = lab.waddlec(&[
        "deploy",
        "blueprint.toml",
        "--tree",
        "no-such-tree",
        "--api",
        "https://127.0.0.1:1",
        "--yes",
    ]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(8), "{stderr}");
    assert!(stderr.contains("FAILED      dns"), "{stderr}");
    assert!(!stderr.contains("no-such-tree"), "{stderr}");
    let output = lab.waddlec(&[
        "cluster",
        "bootstrap",
        "blueprint.toml",
        "--host-ssh",
        "nowhere.invalid",
    ]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(8), "{stderr}");
    assert!(stderr.contains("FAILED      dns"), "{stderr}");
    assert!(
        stderr.contains("preflight found problems; nothing was changed"),
        "{stderr}"
    );
    assert!(!stderr.contains("nowhere.invalid"), "{stderr}");
}

/// The bundled blueprint with RFC 2136 as the DNS provider, its update
/// server at `server`.
fn with_rfc2136(server: &str) -> SecretLab {
    SecretLab::edited(&repo_root().join("blueprints/waddle.toml"), |document| {
        let mut dns = toml::Table::new();
        dns.insert("provider".into(), "rfc2136".into());
        dns.insert("server".into(), server.into());
        dns.insert("tsig_key".into(), "externaldns".into());
        document["platform"]
            .as_table_mut()
            .unwrap()
            .insert("dns".into(), dns.into());
    })
}

/// RFC 2136 as the DNS provider: its update server is asked about the
/// zone (an answer passes, saying the key's right to update is unproven;
/// NXDOMAIN fails naming the `server` line; a closed port is unreachable),
/// and no Cloudflare check is made at all. Stand-in: the DNS responder
/// `tests/support/dns_stand_in.py` as the authoritative server.
#[test]
fn an_rfc2136_server_is_asked_about_the_zone_and_cloudflare_is_not() {
    let server = StandInServer::start("dns_stand_in.py", &json!({"waddle.social": []}));
    let address = format!("127.0.0.1:{}", server.port);
    let lab = with_rfc2136(&address);
    let name = format!("update server {address}");
    let preflight = |lab: &SecretLab, only: &str| {
        lab.waddlec(&[
            "preflight",
            "blueprint.toml",
            "--only",
            only,
            "--format",
            "json",
            "--check-timeout",
            "1",
        ])
    };

    let output = preflight(&lab, "cloudflare");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(checks(&output).is_empty(), "{}", text(&output.stdout));

    // Edge names are not served by this responder: only the server's own
    // check is looked at here.
    let output = preflight(&lab, "dns");
    let found = checks(&output);
    let check = find(&found, "dns", &name);
    assert_eq!(check["result"], "pass", "{check}");
    assert!(check["detail"].as_str().unwrap().contains("not checked"));
    assert!(server.log().contains("waddle.social"));

    server.set(&json!({}));
    let found = checks(&preflight(&lab, "dns"));
    let check = find(&found, "dns", &name);
    assert_eq!(check["result"], "failed", "{check}");
    assert!(check["why"]
        .as_str()
        .unwrap()
        .contains("does not serve the zone"));
    let text_blueprint = std::fs::read_to_string(&lab.blueprint).unwrap();
    let server_line = text_blueprint
        .lines()
        .position(|l| l.starts_with("server = "))
        .unwrap();
    assert!(
        check["source"]
            .as_str()
            .unwrap()
            .starts_with(&format!("blueprint.toml:{}:", server_line + 1)),
        "{check}"
    );

    // Nothing listening there: unreachable, never failed.
    let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let lab = with_rfc2136(&address);
    let found = checks(&preflight(&lab, "dns"));
    let check = find(&found, "dns", &format!("update server {address}"));
    assert_eq!(check["result"], "unreachable", "{check}");
}

/// pve2's public address in the three-host example.
const PVE2_PUBLIC: &str = "203.0.113.12";
/// pve1's, the first host's.
const PVE1_PUBLIC: &str = "203.0.113.11";
const TRIO_TOKEN_ENV: &str = "WADDLE_TRIO_PVE_TOKEN";

/// A `[cluster]`: the three-host example with its edge VM moved to pve2,
/// so the host the edge's names must point to is not the first host. Its
/// Talos bundle is made, so only the DNS check can fail.
fn cluster_lab() -> SecretLab {
    let lab = SecretLab::edited(
        &repo_root().join("blueprints/examples/three-hosts.toml"),
        |document| {
            let vms = document["vm"].as_array_mut().unwrap();
            let edge = vms
                .iter_mut()
                .find(|vm| vm["name"].as_str() == Some("edge"))
                .unwrap();
            edge.as_table_mut()
                .unwrap()
                .insert("host".into(), "pve2".into());
        },
    );
    lab.init();
    lab
}

/// Preflight of a `[cluster]` (no refusal any more): the edge's names
/// must resolve to the public address of the host that runs the edge VM,
/// pve2's here; the first host's address fails naming pve2's. And
/// `deploy` and `cluster bootstrap` of the cluster run the same checks
/// first, stopping at that failure before the tree or any host is
/// looked for.
#[test]
fn a_cluster_s_edge_names_must_resolve_to_the_edge_vm_s_host_and_deploy_checks_that_first() {
    let lab = cluster_lab();
    let dns = StandInServer::start(
        "dns_stand_in.py",
        &json!({"*.trio.example.net": [PVE2_PUBLIC]}),
    );
    let resolver = format!("127.0.0.1:{}", dns.port);
    let env = [(TRIO_TOKEN_ENV, "root@pam!waddlec=trio-5ecret")];
    let waddlec = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--resolver", &resolver, "--check-timeout", "3"]);
        lab.waddlec_with(&all, &env)
    };
    let name = "*.trio.example.net";

    let output = waddlec(&["preflight", "blueprint.toml", "--format", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let found = checks(&output);
    let check = find(&found, "dns", name);
    assert_eq!(check["result"], "pass", "{check}");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("resolves to {PVE2_PUBLIC}")),
        "{check}"
    );
    assert_eq!(
        find(&found, "secrets", "cluster.api_token")["result"],
        "pass"
    );
    assert!(dns.log().contains("waddlec-preflight.trio.example.net"));

    // The first host's address: the name points at the wrong host.
    dns.set(&json!({"*.trio.example.net": [PVE1_PUBLIC]}));
    let output = waddlec(&["preflight", "blueprint.toml", "--format", "json"]);
    assert_eq!(output.status.code(), Some(8), "{}", text(&output.stderr));
    let found = checks(&output);
    let check = find(&found, "dns", name);
    assert_eq!(check["result"], "failed", "{check}");
    assert_eq!(
        check["why"],
        format!(
            "resolves to {PVE1_PUBLIC} (asked waddlec-preflight.trio.example.net), not the public address {PVE2_PUBLIC} of pve2, the host that runs the edge VM"
        ),
        "{check}"
    );
    assert!(
        check["fix"]
            .as_str()
            .unwrap()
            .contains(&format!("`{name} A {PVE2_PUBLIC}`")),
        "{check}"
    );
    assert!(
        found
            .iter()
            .filter(|c| c["layer"] != "dns")
            .all(|c| c["result"] == "pass"),
        "{found:#?}"
    );

    // deploy runs it first for a cluster too, and stops there.
    let output = waddlec(&[
        "deploy",
        "blueprint.toml",
        "--tree",
        "no-such-tree",
        "--api",
        "https://127.0.0.1:1",
        "--yes",
    ]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(8), "{stderr}");
    assert!(stderr.contains("FAILED      dns"), "{stderr}");
    assert!(stderr.contains(PVE2_PUBLIC), "{stderr}");
    assert!(!stderr.contains("no-such-tree"), "{stderr}");
    // So does cluster bootstrap.
    let output = waddlec(&[
        "cluster",
        "bootstrap",
        "blueprint.toml",
        "--host-ssh",
        "nowhere.invalid",
    ]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(8), "{stderr}");
    assert!(stderr.contains("FAILED      dns"), "{stderr}");
    assert!(!stderr.contains("nowhere.invalid"), "{stderr}");
}
