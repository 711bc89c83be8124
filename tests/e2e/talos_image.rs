//! The Talos image path end to end against a local stand-in for the Image
//! Factory: the first deployable build fetches the nocloud image of the
//! cluster's schematic, pins its sha256 in the lock file and decompresses it
//! into the cache; later builds are cache hits, `--locked` refuses what the
//! lock does not pin, and a download that differs from its pin is an error
//! naming the artifact, both hashes and the URL. Nothing here reaches the
//! internet.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::support::{require, run, text, valid_blueprints};
use crate::talos::SecretLab;

/// Serves `body` for every GET until the test ends; records request paths.
struct FileServer {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
    body: Arc<Mutex<Vec<u8>>>,
}

impl FileServer {
    fn start(body: Vec<u8>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let body = Arc::new(Mutex::new(body));
        let (seen, served) = (requests.clone(), body.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_string();
                seen.lock().unwrap().push(path);
                let body = served.lock().unwrap().clone();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            }
        });
        FileServer {
            url,
            requests,
            body,
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A small raw disk with data at both ends and a hole, and its xz.
fn fixture(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let mut raw = vec![0u8; 3 << 20];
    raw[..4096].fill(0xa5);
    let end = raw.len();
    raw[end - 512..].copy_from_slice(&[0x5a; 512]);
    let raw_path = dir.join("fixture.raw");
    fs::write(&raw_path, &raw).unwrap();
    let output = run(Command::new("xz").args(["-T1", "-k", "-c"]).arg(&raw_path));
    assert!(output.status.success(), "{}", text(&output.stderr));
    (raw, output.stdout)
}

#[test]
fn talos_image_is_fetched_pinned_cached_and_verified() {
    require("xz");
    let lab = SecretLab::new(&valid_blueprints()[0]);
    lab.init();
    let scratch = tempfile::tempdir().unwrap();
    let cache = scratch.path().join("cache");
    let (raw, xz) = fixture(scratch.path());
    let server = FileServer::start(xz.clone());
    let build = |extra: &[&str]| {
        let mut args = vec![
            "build",
            "blueprint.toml",
            "--with-secrets",
            "--factory",
            &server.url,
        ];
        args.extend_from_slice(extra);
        run(crate::support::waddlec()
            .current_dir(lab.path(""))
            .env("WDLC_TEST_GITHUB_CLIENT_SECRET", "x")
            .env("WADDLEC_CACHE_DIR", &cache)
            .args(&args))
    };

    // --locked with an empty lock: nothing may be fetched.
    let output = build(&["--locked"]);
    assert_eq!(output.status.code(), Some(5), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("not pinned"),
        "{}",
        text(&output.stderr)
    );
    assert!(server.requests.lock().unwrap().is_empty());

    // First build: fetched from the schematic's URL, pinned, decompressed.
    let output = build(&[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let requests = server.requests.lock().unwrap().clone();
    let id = "dc7b152cb3ea99b821fcb7340ce7168313ce393d663740b791c36f6e95fc8586";
    assert_eq!(
        requests,
        [format!("/image/{id}/v1.12.4/nocloud-amd64.raw.xz")]
    );
    let lock = fs::read_to_string(lab.path("blueprint.lock")).unwrap();
    assert!(lock.contains(&sha256_hex(&xz)), "{lock}");
    assert!(lock.contains(&requests[0]), "{lock}");
    let images: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(lab.path("dist/images.json")).unwrap()).unwrap();
    let name = images[0]["name"].as_str().unwrap();
    assert!(name.starts_with("talos-v1.12.4-dc7b152cb3ea-"), "{name}");
    assert_eq!(fs::read(cache.join("talos").join(name)).unwrap(), raw);

    // Second build, --locked: a cache hit, no request, same tree.
    let before = crate::support::tree(&lab.path("dist"));
    let output = build(&["--locked"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(server.requests.lock().unwrap().len(), 1, "no new download");
    assert_eq!(crate::support::tree(&lab.path("dist")), before);

    // The factory now serves other bytes for the same URL: refused.
    fs::remove_dir_all(&cache).unwrap();
    *server.body.lock().unwrap() = fixture_other(&xz);
    let output = build(&[]);
    assert_eq!(output.status.code(), Some(5), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("does not match the lock file"), "{stderr}");
    assert!(
        stderr.contains(&sha256_hex(&xz)),
        "expected hash named: {stderr}"
    );
    assert!(stderr.contains(&requests[0]), "URL named: {stderr}");
}

fn fixture_other(xz: &[u8]) -> Vec<u8> {
    let mut other = xz.to_vec();
    other.extend_from_slice(b"tampered");
    other
}
