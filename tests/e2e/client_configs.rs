//! `waddlec kubeconfig --merge` and `waddlec talosconfig --merge`: waddlec's
//! entries merged into the operator's own files (the first of
//! `$KUBECONFIG`, `$TALOSCONFIG`, else under `$HOME`), every other entry
//! kept, the file 0600, read back by kubectl; a file that is no config is
//! refused by place, untouched.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use serde_json::Value;

use crate::support::talos_lab::{yaml_documents, SecretLab};
use crate::support::{require, run, text, valid_blueprints};

/// The operator's kubeconfig: another cluster with exec credentials and an
/// extension, preferences, a field of some other tool.
const THEIR_KUBECONFIG: &str = "\
apiVersion: v1
kind: Config
preferences: {}
clusters:
- name: prod
  cluster:
    server: https://prod.example:6443
    certificate-authority-data: UFJPRC1DQQ==
    extensions:
    - name: client.authentication.k8s.io/exec
      extension: {audience: prod}
users:
- name: prod-admin
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: aws
      args: [eks, get-token, --cluster-name, prod]
      interactiveMode: IfAvailable
contexts:
- name: prod
  context: {cluster: prod, user: prod-admin, namespace: apps}
current-context: prod
x-other-tool: {seen: 3}
";

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> String {
    let output = run(Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args));
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout)
}

/// Entries of `list` by name.
fn named<'a>(config: &'a Value, list: &str, name: &str) -> Option<&'a Value> {
    config[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
}

#[test]
fn kubeconfig_merges_into_the_first_kubeconfig_file_and_kubectl_reads_it() {
    require("kubectl");
    let lab = SecretLab::new(&valid_blueprints()[0]);
    lab.init();
    let cluster = crate::support::model(&valid_blueprints()[0])
        .talos
        .unwrap()
        .name;
    let (first, second) = (lab.path("kube/a"), lab.path("kube/b"));
    fs::create_dir_all(lab.path("kube")).unwrap();
    fs::write(&first, THEIR_KUBECONFIG).unwrap();
    fs::write(&second, "# kubectl merges, but writes only to the first\n").unwrap();
    let list = format!("{}:{}", first.display(), second.display());
    let merge = || {
        let output = lab.waddlec_with(
            &["kubeconfig", "blueprint.toml", "--merge", "--ttl", "2h"],
            &[("KUBECONFIG", list.as_str())],
        );
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stderr)
    };
    let stderr = merge();
    let ours = format!("{cluster}-waddlec");
    let user = format!("{cluster}-waddlec-admin");
    assert!(
        stderr.contains(&format!("current context {ours} (was prod)")),
        "{stderr}"
    );
    assert_eq!(mode(&first), 0o600);
    assert_eq!(
        fs::read_to_string(&second).unwrap(),
        "# kubectl merges, but writes only to the first\n"
    );
    assert!(
        !lab.path("secrets/kubeconfig").exists(),
        "no file of its own"
    );

    // kubectl reads it: ours current, theirs as they were.
    assert_eq!(kubectl(&first, &["config", "current-context"]).trim(), ours);
    let view: Value =
        serde_json::from_str(&kubectl(&first, &["config", "view", "--raw", "-o", "json"])).unwrap();
    // Their entries, as kubectl reads them, are what they were.
    let original = lab.path("kube/original");
    fs::write(&original, THEIR_KUBECONFIG).unwrap();
    let before: Value = serde_json::from_str(&kubectl(
        &original,
        &["config", "view", "--raw", "-o", "json"],
    ))
    .unwrap();
    for (list, name) in [
        ("clusters", "prod"),
        ("users", "prod-admin"),
        ("contexts", "prod"),
    ] {
        let (before, after) = (named(&before, list, name), named(&view, list, name));
        assert!(before.is_some(), "{list} {name}");
        assert_eq!(after, before, "{list} {name}");
    }
    assert_eq!(view["preferences"], before["preferences"]);
    let theirs = &yaml_documents(THEIR_KUBECONFIG)[0];
    let written = &yaml_documents(&fs::read_to_string(&first).unwrap())[0];
    assert_eq!(written["x-other-tool"], theirs["x-other-tool"]);
    assert_eq!(
        named(&view, "clusters", &ours).unwrap()["cluster"]["server"],
        "https://10.10.0.20:6443"
    );
    assert_eq!(
        named(&view, "contexts", &ours).unwrap()["context"]["user"],
        user.as_str()
    );
    let key = named(&view, "users", &user).unwrap()["user"]["client-key-data"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!stderr.contains(&key), "the client key reached the output");

    // Again: ours replaced (a new certificate), nothing added.
    merge();
    let again: Value =
        serde_json::from_str(&kubectl(&first, &["config", "view", "--raw", "-o", "json"])).unwrap();
    for list in ["clusters", "users", "contexts"] {
        assert_eq!(again[list].as_array().unwrap().len(), 2, "{list}");
    }
    assert_ne!(
        named(&again, "users", &user).unwrap()["user"]["client-key-data"],
        key.as_str()
    );

    // No $KUBECONFIG: ~/.kube/config, made with its directory.
    let home = lab.path("home");
    fs::create_dir_all(&home).unwrap();
    let output = run(Command::new(env!("CARGO_BIN_EXE_waddlec"))
        .current_dir(lab.path(""))
        .env_remove("KUBECONFIG")
        .env("HOME", &home)
        .env("WADDLEC_CACHE_DIR", lab.path("cache"))
        .env(
            crate::support::talos_lab::GITHUB_SECRET_ENV,
            crate::support::talos_lab::GITHUB_SECRET,
        )
        .args(["kubeconfig", "blueprint.toml", "--merge"]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let made = home.join(".kube/config");
    assert_eq!(mode(&made), 0o600);
    assert_eq!(mode(&home.join(".kube")), 0o700);
    assert_eq!(kubectl(&made, &["config", "current-context"]).trim(), ours);
}

#[test]
fn a_file_that_is_no_kubeconfig_is_refused_by_place_and_left_alone() {
    let lab = SecretLab::new(&valid_blueprints()[0]);
    lab.init();
    let path = lab.path("broken-kubeconfig");
    let token = "c2hvdWxkLW5ldmVyLWJlLXByaW50ZWQ=";
    let broken = format!("apiVersion: v1\nusers:\n- user: {{token: {token}}}\n");
    fs::write(&path, &broken).unwrap();
    let output = lab.waddlec_with(
        &["kubeconfig", "blueprint.toml", "--merge", "-vvv"],
        &[("KUBECONFIG", path.to_str().unwrap())],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(74), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:3:", path.display())),
        "{stderr}"
    );
    assert!(stderr.contains("not a kubeconfig"), "{stderr}");
    assert!(!stderr.contains(token), "{stderr}");
    assert_eq!(fs::read_to_string(&path).unwrap(), broken);
}

#[test]
fn talosconfig_merges_a_context_through_the_teleport_tunnel() {
    let lab = SecretLab::new(&valid_blueprints()[0]);
    lab.init();
    let model = crate::support::model(&valid_blueprints()[0]);
    let cluster = model.talos.as_ref().unwrap().name.clone();
    let bootstrap = model.bootstrap_node().unwrap();
    let path = lab.path("talos/config");
    fs::create_dir_all(lab.path("talos")).unwrap();
    let theirs = "context: home\ncontexts:\n  home:\n    endpoints: [192.168.1.2]\n    ca: QQ==\n    crt: Qg==\n    key: Qw==\n";
    fs::write(&path, theirs).unwrap();
    let output = lab.waddlec_with(
        &["talosconfig", "blueprint.toml", "--merge"],
        &[("TALOSCONFIG", path.to_str().unwrap())],
    );
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(mode(&path), 0o600);
    let tunnel = format!("{cluster}-waddlec-teleport");
    assert!(
        stderr.contains(&format!(
            "`tsh proxy app {} --port 50000`",
            bootstrap.name()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("current context {tunnel} (was home)")),
        "{stderr}"
    );
    let config = &yaml_documents(&fs::read_to_string(&path).unwrap())[0];
    assert_eq!(config["context"], tunnel.as_str());
    assert_eq!(
        config["contexts"]["home"],
        yaml_documents(theirs)[0]["contexts"]["home"]
    );
    let through = &config["contexts"][&tunnel];
    assert_eq!(through["endpoints"], serde_json::json!(["127.0.0.1:50000"]));
    assert_eq!(
        through["nodes"],
        serde_json::json!([bootstrap.ip().to_string()])
    );
    let admin = lab.admin();
    assert_eq!(through["crt"], admin["crt"]);
    assert_eq!(through["key"], admin["key"]);
    assert_eq!(through["ca"], lab.bundle()["certs"]["os"]["crt"]);
    let direct = &config["contexts"][&format!("{cluster}-waddlec")];
    let control_planes: Vec<String> = model.control_planes().map(|n| n.ip().to_string()).collect();
    assert_eq!(direct["endpoints"], serde_json::json!(control_planes));
    assert_eq!(config["contexts"].as_object().unwrap().len(), 3);

    // Its own file, without --merge: the same contexts.
    let output = lab.waddlec(&["talosconfig", "blueprint.toml"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let own = &yaml_documents(&fs::read_to_string(lab.path("secrets/talosconfig")).unwrap())[0];
    assert_eq!(own["contexts"][&tunnel], *through);
    assert_eq!(mode(&lab.path("secrets/talosconfig")), 0o600);
}
