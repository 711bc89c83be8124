//! `deploy` with an artifact store: the host pulls every image the store
//! holds itself (`download-url` with a presigned URL and the sha256 the
//! simulator verifies, as Proxmox does), so the image bytes never cross
//! the operator's machine; an image the store lacks is uploaded as
//! without a store; seeds are always uploaded; a second deploy pulls
//! nothing. The store is a real S3 server (`support::s3_server`) holding
//! the objects as a CI push leaves them; the images are the small
//! stand-ins the other deploy tests use. Then the same as the
//! privilege-separated token `host init` makes for a blueprint with
//! `[artifacts]`: the simulator checks `download-url`'s permissions, so
//! the role must really be enough.

use std::fs;
use std::process::Output;

use serde_json::{json, Value};

use crate::support::pve_sim::{PveSim, TOKEN, UPLINK};
use crate::support::s3_server::S3Server;
use crate::support::ssh_host::SshHost;
use crate::support::talos_lab::{SecretLab, GITHUB_SECRET, GITHUB_SECRET_ENV};
use crate::support::{require, run, stand_in_images, text, valid_blueprints, waddlec};

const TOKEN_ENV: &str = "WADDLE_TEST_PVE_TOKEN";

fn waddlec_in(lab: &SecretLab, args: &[&str]) -> Output {
    let mut command = waddlec();
    command
        .current_dir(lab.path(""))
        .env(GITHUB_SECRET_ENV, GITHUB_SECRET)
        .env(TOKEN_ENV, TOKEN)
        .env("WADDLEC_CACHE_DIR", lab.path("cache"))
        .args(args);
    S3Server::env(&mut command);
    run(&mut command)
}

fn deploy(lab: &SecretLab, sim: &PveSim) -> Output {
    waddlec_in(
        lab,
        &[
            "deploy",
            "blueprint.toml",
            "--skip-preflight",
            "--tree",
            "dist",
            "--api",
            &sim.url,
            "--skip-host",
            "--yes",
            "--agent-timeout",
            "20",
        ],
    )
}

/// Puts every image of the tree but the last `keep_out` into the store,
/// each with its receipt, as a CI push leaves them; returns the images.
fn stock_store(s3: &S3Server, lab: &SecretLab, keep_out: usize) -> Vec<Value> {
    let images: Vec<Value> =
        serde_json::from_str(&fs::read_to_string(lab.path("dist/images.json")).unwrap()).unwrap();
    for image in &images[..images.len() - keep_out] {
        let file = image["file"].as_str().unwrap();
        let object = s3.object(&format!("waddle/images/{file}"));
        fs::create_dir_all(object.parent().unwrap()).unwrap();
        fs::copy(lab.path("dist/images").join(file), &object).unwrap();
        let receipt = json!({"sha256": image["sha256"], "bytes": image["bytes"], "inputs": []});
        fs::write(
            s3.object(&format!("waddle/images/{file}.json")),
            serde_json::to_vec_pretty(&receipt).unwrap(),
        )
        .unwrap();
    }
    images
}

/// The `download-url` requests the simulator received from `from` on.
fn pulls(sim: &PveSim, from: usize) -> Vec<Value> {
    sim.requests()[from..]
        .iter()
        .filter(|r| r["path"].as_str().unwrap_or("").ends_with("/download-url"))
        .cloned()
        .collect()
}

#[test]
fn deploy_has_the_host_pull_images_from_the_store_by_url_and_checksum() {
    require("qemu-img");
    let s3 = S3Server::start();
    let sim = PveSim::start_with(&["--bridge", UPLINK, "--bridge", "vmbr1=10.10.0.1/24"]);
    let lab = SecretLab::edited(&valid_blueprints()[0], |document| {
        let host = document["host"].as_table_mut().unwrap();
        host.insert("api_fingerprint".into(), sim.fingerprint.clone().into());
        host.insert("api_token".into(), format!("env:{TOKEN_ENV}").into());
        document.insert("artifacts".into(), s3.table("waddle").into());
    });
    lab.init();
    let output = waddlec_in(
        &lab,
        &["build", "blueprint.toml", "--with-secrets", "--no-images"],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    stand_in_images::write(&lab.path("dist"));
    // The store holds every image but the last.
    let images = stock_store(&s3, &lab, 1);
    assert!(images.len() >= 2, "{images:?}");
    let (stored, missing) = images.split_at(images.len() - 1);

    let output = deploy(&lab, &sim);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}\nsimulator:\n{}",
        text(&output.stderr),
        sim.log()
    );
    for image in stored {
        let line = format!("pull     {} (", image["file"].as_str().unwrap());
        assert!(stdout.contains(&line), "no `{line}`:\n{stdout}");
    }
    let fallback = format!("upload   {} (", missing[0]["file"].as_str().unwrap());
    assert!(stdout.contains(&fallback), "no `{fallback}`:\n{stdout}");

    // Each pull: a presigned URL of the store's object, the sha256 the
    // tree lists, import content; the task verified the checksum.
    let requests = pulls(&sim, 0);
    assert_eq!(requests.len(), stored.len(), "{requests:#?}");
    for (request, image) in requests.iter().zip(stored) {
        let params = &request["params"];
        let file = image["file"].as_str().unwrap();
        let url = params["url"].as_str().unwrap();
        assert!(
            url.starts_with(&format!(
                "{}/waddle-artifacts/waddle/images/{file}?",
                s3.url
            )) && url.contains("X-Amz-Signature=")
                && url.contains("X-Amz-Expires=900"),
            "{url}"
        );
        assert_eq!(params["filename"], file);
        assert_eq!(params["content"], "import");
        assert_eq!(params["checksum-algorithm"], "sha256");
        assert_eq!(params["checksum"], image["sha256"]);
        assert_eq!(request["status"], 200);
    }
    let state = sim.state();
    let tasks: Vec<&Value> = state["tasks"]
        .as_object()
        .unwrap()
        .values()
        .filter(|task| task["type"] == "download")
        .collect();
    assert_eq!(tasks.len(), stored.len());
    for task in &tasks {
        assert_eq!(task["exitstatus"], "OK", "{task:#}");
        let log = task["log"].to_string();
        assert!(log.contains("checksum verified"), "{log}");
    }
    for image in &images {
        let volume = &state["storages"]["local"]["volumes"]
            [format!("local:import/{}", image["file"].as_str().unwrap())];
        assert_eq!(volume["size"], image["bytes"], "{volume}");
    }
    // The presigned URL is a credential: waddlec never prints it.
    let all = format!("{stdout}{}", text(&output.stderr));
    assert!(!all.contains("X-Amz-Signature"), "{all}");
    assert!(sim.violations().is_empty(), "{:#?}", sim.violations());

    // A second deploy pulls nothing.
    let before = sim.requests().len();
    let output = deploy(&lab, &sim);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(pulls(&sim, before).is_empty());
    assert_eq!(sim.changes_since(before), Vec::<String>::new());
}

#[test]
fn the_token_host_init_makes_for_a_store_may_have_the_host_pull() {
    require("qemu-img");
    let s3 = S3Server::start();
    let sim = PveSim::start();
    let host = SshHost::start_with_pve(&sim.pvesh_socket());
    let lab = SecretLab::edited(&valid_blueprints()[0], |document| {
        let table = document["host"].as_table_mut().unwrap();
        table.insert("ssh".into(), "waddle-host".into());
        table.insert("api_token".into(), "file:pve-token".into());
        table.remove("api_fingerprint");
        document.insert("artifacts".into(), s3.table("waddle").into());
    });
    host.install_proxmox_files(&sim.certificate());
    let config = host.config.display().to_string();
    let root = host.host_root().display().to_string();
    let over_ssh = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend([
            "--ssh-config",
            &config,
            "--host-root",
            &root,
            "--api",
            &sim.url,
        ]);
        let output = waddlec_in(&lab, &all);
        assert!(
            output.status.success(),
            "{}\n{}\nsimulator:\n{}",
            text(&output.stdout),
            text(&output.stderr),
            sim.log()
        );
        format!("{}{}", text(&output.stdout), text(&output.stderr))
    };
    let init = over_ssh(&["host", "init", "blueprint.toml"]);
    assert!(init.contains("Sys.AccessNetwork"), "{init}");
    lab.init();
    let output = waddlec_in(
        &lab,
        &["build", "blueprint.toml", "--with-secrets", "--no-images"],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    stand_in_images::write(&lab.path("dist"));
    let images = stock_store(&s3, &lab, 0);

    over_ssh(&[
        "deploy",
        "blueprint.toml",
        "--skip-preflight",
        "--tree",
        "dist",
        "--yes",
        "--agent-timeout",
        "20",
    ]);
    let requests = pulls(&sim, 0);
    assert_eq!(requests.len(), images.len(), "{requests:#?}");
    for request in &requests {
        assert_eq!(request["user"], "waddlec@pve!deploy");
        assert_eq!(request["status"], 200, "{request}");
    }
    assert!(sim.violations().is_empty(), "{:#?}", sim.violations());
}
