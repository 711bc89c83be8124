//! Talos artifacts, checked by what consumes them: every machine-config
//! document against the Talos 1.12 JSON schema, certificates by openssl, the
//! Image Factory client against a local HTTP server standing in for the
//! factory, and the secrets bundle's life cycle (created once, 0600, never
//! silently regenerated, never leaked into the review tree or logs).

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use base64::Engine as _;

use crate::support::talos_lab::{
    assert_valid, machine_configs, talos_schema, yaml_documents, SecretLab, GITHUB_SECRET,
};
use crate::support::{
    build, model, require, run, sha256_hex, text, tree, valid_blueprints, waddlec,
};

/// Every string leaf of a JSON value.
fn strings(value: &serde_json::Value, into: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => into.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, into)),
        serde_json::Value::Object(map) => map.values().for_each(|v| strings(v, into)),
        _ => {}
    }
}

fn pem(b64: &serde_json::Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.as_str().unwrap())
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn every_machine_config_document_validates_against_the_talos_schema() {
    let validator = talos_schema();
    for blueprint in valid_blueprints() {
        // The review tree, with placeholders…
        let (_guard, out) = build(&blueprint);
        let configs = machine_configs(&out);
        assert!(
            !configs.is_empty(),
            "{}: no machine configs",
            blueprint.display()
        );
        for (path, config) in &configs {
            let kinds = assert_valid(&validator, path, config);
            assert_eq!(kinds, expected_kinds(config), "{path}");
        }
        // …and the deployable tree, with real keys.
        let lab = SecretLab::new(&blueprint);
        lab.init();
        let dist = lab.build_with_secrets("dist");
        for (path, config) in machine_configs(&dist) {
            assert_valid(&validator, &path, &config);
        }
    }
}

/// The documents of a machine config: the API VIP's only on a control
/// plane (Talos refuses it on a worker).
fn expected_kinds(config: &str) -> Vec<&'static str> {
    let mut kinds = vec!["v1alpha1", "HostnameConfig", "LinkConfig", "ResolverConfig"];
    if yaml_documents(config)[0]["machine"]["type"] == "controlplane" {
        kinds.push("Layer2VIPConfig");
    }
    kinds
}

/// blueprints/examples/workers.toml: three control planes and a worker.
/// The worker's config is Talos' worker config, valid against the schema
/// with placeholders and with real keys, and holds no private key at all
/// (no CA key, no etcd, no service account); talosctl's endpoints are the
/// control planes.
#[test]
fn a_workers_config_validates_and_holds_no_key() {
    let blueprint = crate::support::repo_root().join("blueprints/examples/workers.toml");
    let validator = talos_schema();
    let (_guard, out) = build(&blueprint);
    let lab = SecretLab::new(&blueprint);
    lab.init();
    let dist = lab.build_with_secrets("dist");
    for tree in [&out, &dist] {
        let configs = machine_configs(tree);
        assert_eq!(configs.len(), 4, "{}", tree.display());
        for (path, config) in &configs {
            let kinds = assert_valid(&validator, path, config);
            assert_eq!(kinds, expected_kinds(config), "{path}");
            let v1alpha1 = yaml_documents(config).remove(0);
            let worker = path.contains("/worker-a/");
            assert_eq!(
                v1alpha1["machine"]["type"],
                if worker { "worker" } else { "controlplane" },
                "{path}"
            );
            assert_eq!(v1alpha1["cluster"].get("etcd").is_none(), worker, "{path}");
            assert_eq!(
                v1alpha1["machine"]["ca"].get("key").is_none(),
                worker,
                "{path}"
            );
        }
    }
    let worker =
        yaml_documents(&fs::read_to_string(dist.join("vms/worker-a/seed/user-data")).unwrap())
            .remove(0);
    let mut leaves = Vec::new();
    strings(&worker, &mut leaves);
    for leaf in leaves {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(leaf)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .unwrap_or_default();
        assert!(
            !decoded.contains("PRIVATE KEY"),
            "the worker's config holds a private key"
        );
    }
    let talosconfig =
        yaml_documents(&fs::read_to_string(dist.join("talos/talosconfig")).unwrap()).remove(0);
    assert_eq!(
        talosconfig["contexts"]["lab"]["endpoints"],
        serde_json::json!(["172.16.42.10", "172.16.42.11", "172.16.42.12"])
    );
}

#[test]
fn machine_configs_say_what_the_blueprint_says() {
    let blueprint = &valid_blueprints()[0];
    let (_guard, out) = build(blueprint);
    let model = model(blueprint);
    let cluster = model.talos.as_ref().unwrap();
    let images: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("talos/images.json")).unwrap()).unwrap();
    for node in model.talos_nodes().map(|node| node.vm) {
        let documents = yaml_documents(
            &fs::read_to_string(out.join(format!("vms/{}/seed/user-data", node.name))).unwrap(),
        );
        let config = &documents[0];
        let address = node.nics[0].address;
        assert_eq!(config["machine"]["type"], "controlplane");
        assert_eq!(
            config["cluster"]["controlPlane"]["endpoint"],
            format!("https://{}:6443", cluster.api_vip)
        );
        assert_eq!(config["cluster"]["network"]["cni"]["name"], "none");
        assert_eq!(config["cluster"]["proxy"]["disabled"], true);
        assert_eq!(config["cluster"]["allowSchedulingOnControlPlanes"], true);
        assert_eq!(config["machine"]["install"]["image"], images["installer"]);
        assert_eq!(
            config["machine"]["kubelet"]["image"],
            format!("ghcr.io/siderolabs/kubelet:v{}", cluster.kubernetes)
        );
        let sans = &config["cluster"]["apiServer"]["certSANs"];
        assert!(sans
            .as_array()
            .unwrap()
            .contains(&cluster.api_vip.to_string().into()));
        assert!(sans
            .as_array()
            .unwrap()
            .contains(&address.addr().to_string().into()));
        assert_eq!(documents[1]["hostname"], node.name.as_str());
        assert!(
            documents[1].get("auto").is_none(),
            "auto and hostname conflict"
        );
        assert_eq!(documents[2]["name"], "eth0");
        assert_eq!(documents[2]["addresses"][0]["address"], address.to_string());
        assert_eq!(
            documents[2]["routes"][0]["gateway"],
            node.nics[0].gateway.unwrap().to_string()
        );
        assert_eq!(documents[4]["name"], cluster.api_vip.to_string());
        // The seed's network-config names the same link, by the MAC the qm
        // script gives the NIC.
        let network = yaml_documents(
            &fs::read_to_string(out.join(format!("vms/{}/seed/network-config", node.name)))
                .unwrap(),
        )
        .remove(0);
        assert_eq!(
            network["ethernets"]["eth0"]["match"]["macaddress"],
            node.nics[0].mac.as_str()
        );
        assert!(text(&fs::read(out.join("host/create-vms.sh")).unwrap())
            .contains(&format!("macaddr={}", node.nics[0].mac)));
    }
    assert_eq!(
        images["schematic_id"], "dc7b152cb3ea99b821fcb7340ce7168313ce393d663740b791c36f6e95fc8586",
        "qemu-guest-agent + iscsi-tools, listed in the other order in the blueprint"
    );
}

#[test]
fn schematic_id_command_matches_the_factory_vectors() {
    let cases: [(&[&str], &str); 3] = [
        (
            &[],
            "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba",
        ),
        (
            &["--extension", "siderolabs/qemu-guest-agent"],
            "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515",
        ),
        (
            &[
                "--extension",
                "siderolabs/qemu-guest-agent",
                "--extension",
                "siderolabs/iscsi-tools",
                "--extension",
                "siderolabs/qemu-guest-agent",
            ],
            "dc7b152cb3ea99b821fcb7340ce7168313ce393d663740b791c36f6e95fc8586",
        ),
    ];
    for (args, id) in cases {
        let output = run(waddlec().args(["schematic", "id"]).args(args));
        assert!(output.status.success());
        assert_eq!(text(&output.stdout).trim(), id, "{args:?}");
    }
}

/// A one-connection HTTP server standing in for the Image Factory. `answer`
/// gets the request body and returns (status line, JSON body).
fn factory_stub(
    answer: impl FnOnce(&str) -> (&'static str, String) + Send + 'static,
) -> (String, std::thread::JoinHandle<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap();
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let body = String::from_utf8(body).unwrap();
        let (status, json) = answer(&body);
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
            json.len()
        )
        .unwrap();
        (head, body)
    });
    (url, handle)
}

#[test]
fn register_posts_the_canonical_schematic_and_checks_the_factorys_id() {
    let blueprint = &valid_blueprints()[0];
    // An honest factory: hashes what it got, as the real one does.
    let (url, server) = factory_stub(|body| {
        (
            "201 Created",
            serde_json::json!({"id": sha256_hex(body.as_bytes()), "schematic": body}).to_string(),
        )
    });
    let output = run(waddlec()
        .args([
            "schematic",
            "register",
            "--format",
            "json",
            "--factory",
            &url,
        ])
        .arg(blueprint));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let (head, body) = server.join().unwrap();
    assert!(head.starts_with("POST /schematics HTTP/1.1\r\n"), "{head}");
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: application/yaml"));
    assert_eq!(
        body,
        "customization:\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/iscsi-tools\n            - siderolabs/qemu-guest-agent\n"
    );
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let id = "dc7b152cb3ea99b821fcb7340ce7168313ce393d663740b791c36f6e95fc8586";
    assert_eq!(answer["schematic_id"], id);
    assert_eq!(
        answer["installer"],
        format!("factory.talos.dev/nocloud-installer/{id}:v1.12.4")
    );
    assert_eq!(
        answer["disk_image"],
        format!("https://factory.talos.dev/image/{id}/v1.12.4/nocloud-amd64.raw.xz")
    );

    // A factory that disagrees (another encoding, another ID) is an error.
    let (url, server) = factory_stub(|_| {
        ("201 Created", serde_json::json!({"id": "6ebbfe35c8225645c05d4d19eaad385bd1ec795954932d0ada671388272fec19"}).to_string())
    });
    let output = run(waddlec()
        .args(["schematic", "register", "--factory", &url])
        .arg(blueprint));
    server.join().unwrap();
    assert_eq!(output.status.code(), Some(69), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("computed schematic ID 6ebbfe35"),
        "{}",
        text(&output.stderr)
    );

    // An error answer is reported with its status.
    let (url, server) = factory_stub(|_| ("400 Bad Request", "\"invalid schematic\"".into()));
    let output = run(waddlec()
        .args(["schematic", "register", "--factory", &url])
        .arg(blueprint));
    server.join().unwrap();
    assert_eq!(output.status.code(), Some(69));
    assert!(
        text(&output.stderr).contains("400"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn a_missing_bundle_fails_the_secret_build_but_not_the_review_tree() {
    let lab = SecretLab::new(&valid_blueprints()[0]);
    let output = lab.waddlec(&["build", "blueprint.toml", "--with-secrets"]);
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    for needle in [
        "does not exist",
        "waddlec secrets init",
        "--import",
        "never generates",
    ] {
        assert!(stderr.contains(needle), "`{needle}` in:\n{stderr}");
    }
    assert!(!lab.path("secrets").exists(), "nothing was generated");
    assert!(!lab.path("dist").exists(), "nothing was written");
    let output = lab.waddlec(&["build", "blueprint.toml", "--out", "review"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
}

#[test]
fn secrets_init_writes_0600_once_and_refuses_the_second_time() {
    let lab = SecretLab::new(&valid_blueprints()[0]);
    lab.init();
    let mode = |p: &str| fs::metadata(lab.path(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("secrets/cluster.yaml"), 0o600);
    assert_eq!(mode("secrets/cluster.admin.yaml"), 0o600);
    assert_eq!(mode("secrets"), 0o700);
    let before = fs::read(lab.path("secrets/cluster.yaml")).unwrap();
    let output = lab.waddlec(&["secrets", "init", "blueprint.toml"]);
    assert_eq!(output.status.code(), Some(4));
    assert!(
        text(&output.stderr).contains("never overwrites"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(fs::read(lab.path("secrets/cluster.yaml")).unwrap(), before);

    // talosctl's key set, and the formats of its values.
    let bundle = lab.bundle();
    let token = regex::Regex::new(r"^[0-9a-z]{6}\.[0-9a-z]{16}$").unwrap();
    assert!(token.is_match(bundle["secrets"]["bootstraptoken"].as_str().unwrap()));
    assert!(token.is_match(bundle["trustdinfo"]["token"].as_str().unwrap()));
    let id = base64::engine::general_purpose::URL_SAFE
        .decode(bundle["cluster"]["id"].as_str().unwrap())
        .unwrap();
    assert_eq!(id.len(), 32);
    let secretbox = base64::engine::general_purpose::STANDARD
        .decode(
            bundle["secrets"]["secretboxencryptionsecret"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert_eq!(secretbox.len(), 32);

    // An imported bundle is taken as it is (same CAs), with a new admin.
    let other = SecretLab::new(&valid_blueprints()[0]);
    let output = other.waddlec(&[
        "secrets",
        "init",
        "blueprint.toml",
        "--import",
        lab.path("secrets/cluster.yaml").to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(other.bundle(), bundle);
    assert_ne!(other.admin()["key"], lab.admin()["key"]);
}

fn openssl(args: &[&str], input: &str) -> String {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// (notBefore, notAfter) as Unix seconds.
fn validity(pem: &str) -> (i64, i64) {
    let dates = openssl(&["x509", "-noout", "-dates", "-dateopt", "iso_8601"], pem);
    let parse = |prefix: &str| {
        let line = dates.lines().find(|l| l.starts_with(prefix)).unwrap();
        let value = line.split_once('=').unwrap().1.trim();
        let output = run(Command::new("date").args(["-u", "-d", value, "+%s"]));
        text(&output.stdout).trim().parse::<i64>().unwrap()
    };
    (parse("notBefore"), parse("notAfter"))
}

#[test]
fn certificates_have_talosctls_algorithms_lifetimes_and_chain() {
    require("openssl");
    let lab = SecretLab::new(&valid_blueprints()[0]);
    lab.init();
    let bundle = lab.bundle();
    let certs = &bundle["certs"];
    const TEN_YEARS: i64 = 87_600 * 3600;
    for (name, algorithm, key_label, subject) in [
        ("etcd", "id-ecPublicKey", "EC PRIVATE KEY", "O = etcd"),
        ("k8s", "id-ecPublicKey", "EC PRIVATE KEY", "O = kubernetes"),
        ("k8saggregator", "id-ecPublicKey", "EC PRIVATE KEY", ""),
        ("os", "ED25519", "ED25519 PRIVATE KEY", "O = talos"),
    ] {
        let crt = pem(&certs[name]["crt"]);
        let info = openssl(&["x509", "-noout", "-text"], &crt);
        assert!(
            info.contains(&format!("Public Key Algorithm: {algorithm}")),
            "{name}:\n{info}"
        );
        if algorithm == "id-ecPublicKey" {
            assert!(info.contains("NIST CURVE: P-256"), "{name}:\n{info}");
        }
        assert!(info.contains("CA:TRUE"), "{name} is a CA");
        assert!(
            info.contains("Certificate Sign"),
            "{name} signs certificates"
        );
        let subject_line = openssl(&["x509", "-noout", "-subject", "-nameopt", "oneline"], &crt);
        assert_eq!(
            subject_line.trim().trim_start_matches("subject=").trim(),
            subject,
            "{name}"
        );
        let (from, to) = validity(&crt);
        assert_eq!(to - from, TEN_YEARS, "{name} is valid ten years");
        let key = pem(&certs[name]["key"]);
        assert!(
            key.starts_with(&format!("-----BEGIN {key_label}-----")),
            "{name}: {key_label}"
        );
    }
    // The keys match their certificates (EC: openssl reads SEC1 directly).
    for name in ["etcd", "k8s", "k8saggregator"] {
        let from_key = openssl(&["ec", "-pubout"], &pem(&certs[name]["key"]));
        let from_crt = openssl(&["x509", "-noout", "-pubkey"], &pem(&certs[name]["crt"]));
        assert_eq!(from_key, from_crt, "{name} key matches its certificate");
    }
    // Service-account key: RSA-4096, PKCS#1, consistent.
    let sa = pem(&certs["k8sserviceaccount"]["key"]);
    assert!(sa.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let check = openssl(&["rsa", "-check", "-noout", "-text"], &sa);
    assert!(check.contains("Private-Key: (4096 bit"), "{check}");
    assert!(check.contains("RSA key ok"), "{check}");

    // The admin identity: Ed25519, os:admin, client auth, one year, chained
    // to the OS CA.
    let admin = lab.admin();
    let crt = pem(&admin["crt"]);
    let info = openssl(&["x509", "-noout", "-text"], &crt);
    assert!(info.contains("Public Key Algorithm: ED25519"), "{info}");
    assert!(info.contains("TLS Web Client Authentication"), "{info}");
    assert!(!info.contains("CA:TRUE"), "{info}");
    let subject = openssl(&["x509", "-noout", "-subject", "-nameopt", "oneline"], &crt);
    assert!(subject.contains("O = os:admin"), "{subject}");
    let (from, to) = validity(&crt);
    assert_eq!(to - from, 365 * 86_400);
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("ca.pem"), pem(&certs["os"]["crt"])).unwrap();
    fs::write(dir.path().join("admin.pem"), &crt).unwrap();
    let verify = run(Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(dir.path().join("ca.pem"))
        .arg(dir.path().join("admin.pem")));
    assert!(
        verify.status.success(),
        "{}{}",
        text(&verify.stdout),
        text(&verify.stderr)
    );

    // The talosconfig carries exactly these.
    let dist = lab.build_with_secrets("dist");
    let talosconfig =
        yaml_documents(&fs::read_to_string(dist.join("talos/talosconfig")).unwrap()).remove(0);
    let context = &talosconfig["contexts"][talosconfig["context"].as_str().unwrap()];
    assert_eq!(context["ca"], certs["os"]["crt"]);
    assert_eq!(context["crt"], admin["crt"]);
    assert_eq!(context["key"], admin["key"]);
    assert_eq!(context["endpoints"].as_array().unwrap().len(), 3);
}

#[test]
fn no_secret_reaches_the_review_tree_or_the_logs_and_builds_repeat() {
    let lab = SecretLab::new(&valid_blueprints()[0]);
    lab.init();
    let mut secrets = Vec::new();
    strings(&lab.bundle(), &mut secrets);
    strings(&lab.admin(), &mut secrets);
    // The PEM bodies too, line by line (a leak may be decoded).
    for b64 in secrets.clone() {
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(&b64) {
            let decoded = String::from_utf8_lossy(&bytes).into_owned();
            secrets.extend(
                decoded
                    .lines()
                    .filter(|l| !l.starts_with("-----") && l.len() >= 16)
                    .map(String::from),
            );
        }
    }
    secrets.push(GITHUB_SECRET.to_string());
    assert!(secrets.len() > 20);

    let mut logs = String::new();
    for verbosity in ["-v", "-vv", "-vvv"] {
        for args in [
            vec!["build", "blueprint.toml", "--out", "review", verbosity],
            vec![
                "build",
                "blueprint.toml",
                "--with-secrets",
                "--no-images",
                "--out",
                "dist",
                verbosity,
            ],
            vec![
                "build",
                "blueprint.toml",
                "--with-secrets",
                "--no-images",
                "--out",
                "dist",
                "--format",
                "json",
                verbosity,
            ],
        ] {
            let output = lab.waddlec(&args);
            assert!(
                output.status.success(),
                "{args:?}: {}",
                text(&output.stderr)
            );
            logs.push_str(&text(&output.stdout));
            logs.push_str(&text(&output.stderr));
        }
    }
    assert!(logs.contains("rendering"), "the logs say something at -v");
    let review: BTreeMap<String, String> = tree(&lab.path("review"))
        .into_iter()
        .map(|(p, (bytes, _))| (p, String::from_utf8(bytes).unwrap()))
        .collect();
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret value reached the logs"
        );
        for (path, contents) in &review {
            assert!(
                !contents.contains(secret.as_str()),
                "a secret value reached review/{path}"
            );
        }
    }
    // The deployable tree does carry them, privately, and repeats exactly.
    let dist = tree(&lab.path("dist"));
    let user_data = &dist["vms/talos-cp1/seed/user-data"];
    assert_eq!(user_data.1, 0o600);
    let token = lab.bundle()["trustdinfo"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(text(&user_data.0).contains(&token));
    assert_eq!(
        fs::metadata(lab.path("dist")).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let resources = &dist["vms/teleport/teleport-resources.yaml"];
    assert!(
        text(&resources.0).contains(GITHUB_SECRET),
        "the connector has its secret"
    );
    assert_eq!(resources.1, 0o600);
    assert_eq!(
        dist["vms/teleport/seed/user-data"].1, 0o600,
        "the seed carries it"
    );
    assert_eq!(
        dist["vms/haproxy/seed/user-data"].1, 0o600,
        "every Debian seed carries the VM's SSH host key"
    );
    assert_eq!(
        dist["vms/haproxy/seed/network-config"].1, 0o644,
        "no secret in this one"
    );
    let again = lab.build_with_secrets("dist-again");
    assert_eq!(
        tree(&again),
        dist,
        "same blueprint + same secrets = same bytes"
    );
    // The review tree does not depend on the secrets at all.
    let (_guard, plain) = build(&lab.blueprint);
    assert_eq!(tree(&plain), tree(&lab.path("review")));
}

#[test]
fn the_committed_review_tree_is_never_overwritten_with_secrets() {
    let lab = SecretLab::new(&valid_blueprints()[0]);
    lab.init();
    let output = lab.waddlec(&["build", "blueprint.toml", "--out", "out"]);
    assert!(output.status.success());
    let output = lab.waddlec(&["build", "blueprint.toml", "--with-secrets", "--out", "out"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("review tree"));
}

#[test]
fn every_vm_gets_a_cidata_seed_disk_with_its_rendered_seed() {
    require("mtype");
    require("blkid");
    let lab = SecretLab::new(&valid_blueprints()[0]);
    lab.init();
    let dist = lab.build_with_secrets("dist");
    let again = lab.build_with_secrets("dist-again");
    for vm in ["haproxy", "teleport", "talos-cp1", "talos-cp2", "talos-cp3"] {
        let image = dist.join(format!("vms/{vm}/seed.img"));
        assert_eq!(
            fs::read(&image).unwrap(),
            fs::read(again.join(format!("vms/{vm}/seed.img"))).unwrap(),
            "{vm}: byte-identical across builds"
        );
        let probe = run(Command::new("blkid").args(["-o", "export"]).arg(&image));
        assert!(
            text(&probe.stdout).contains("LABEL=CIDATA"),
            "{}",
            text(&probe.stdout)
        );
        for file in ["user-data", "meta-data", "network-config"] {
            let output = run(Command::new("mtype")
                .arg("-i")
                .arg(&image)
                .arg(format!("::{file}")));
            assert!(output.status.success(), "{}", text(&output.stderr));
            assert_eq!(
                output.stdout,
                fs::read(dist.join(format!("vms/{vm}/seed/{file}"))).unwrap(),
                "{vm}: {file} on the seed disk is the rendered one"
            );
        }
    }
    let mode = |p: &str| fs::metadata(dist.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode("vms/talos-cp1/seed.img"),
        0o600,
        "carries the machine config"
    );
    assert_eq!(
        mode("vms/haproxy/seed.img"),
        0o600,
        "carries the VM's SSH host key"
    );
}

/// `waddlec kubeconfig`: signed locally by the bundle's Kubernetes CA, for
/// cluster-admin (`O=system:masters`), valid exactly the TTL asked for,
/// written 0600; a TTL that is not short is refused.
#[test]
fn kubeconfig_is_signed_by_the_cluster_ca_for_exactly_its_ttl() {
    require("openssl");
    let lab = SecretLab::new(&valid_blueprints()[0]);
    lab.init();
    let output = lab.waddlec(&[
        "kubeconfig",
        "blueprint.toml",
        "--ttl",
        "2h",
        "--out",
        "admin.kubeconfig",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let path = lab.path("admin.kubeconfig");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let config: serde_json::Value =
        serde_saphyr::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(config["kind"], "Config");
    assert_eq!(
        config["clusters"][0]["cluster"]["server"],
        "https://10.10.0.20:6443"
    );
    assert_eq!(config["current-context"], config["contexts"][0]["name"]);
    let decode = |value: &serde_json::Value| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(value.as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    let ca = decode(&config["clusters"][0]["cluster"]["certificate-authority-data"]);
    let client = decode(&config["users"][0]["user"]["client-certificate-data"]);
    let key = decode(&config["users"][0]["user"]["client-key-data"]);
    // The CA is the bundle's.
    let bundle: serde_json::Value =
        serde_saphyr::from_str(&fs::read_to_string(lab.path("secrets/cluster.yaml")).unwrap())
            .unwrap();
    assert_eq!(ca, decode(&bundle["certs"]["k8s"]["crt"]));
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("ca.pem"), &ca).unwrap();
    fs::write(dir.path().join("client.pem"), &client).unwrap();
    let verify = run(Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(dir.path().join("ca.pem"))
        .arg(dir.path().join("client.pem")));
    assert!(verify.status.success(), "{}", text(&verify.stdout));
    let subject = openssl(
        &["x509", "-noout", "-subject", "-nameopt", "RFC2253"],
        &client,
    );
    assert!(subject.contains("O=system:masters"), "{subject}");
    let dates = openssl(&["x509", "-noout", "-startdate", "-enddate"], &client);
    let epoch = |prefix: &str| -> i64 {
        let date = dates
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap()
            .to_string();
        text(&run(Command::new("date").args(["-u", "-d", &date, "+%s"])).stdout)
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(
        epoch("notAfter=") - epoch("notBefore="),
        2 * 3600,
        "{dates}"
    );
    // The key matches the certificate.
    let public = |args: &[&str], input: &str| openssl(args, input);
    assert_eq!(
        public(&["pkey", "-pubout"], &key),
        public(&["x509", "-noout", "-pubkey"], &client)
    );

    let output = lab.waddlec(&["kubeconfig", "blueprint.toml", "--ttl", "30d"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("not short-lived"));
}
