//! The launcher of the stand-in Kubernetes API
//! (`tests/support/kube_api_stand_in.py`): a TLS server whose certificate
//! the cluster's CA signs and which verifies client certificates against
//! it, logging every request; stopped on drop. Either the bootstrap's
//! cluster coming up (`start`) or a cluster whose resources a state file
//! holds (`serving`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{repo_root, run, text};

/// The stand-in Kubernetes API, stopped on drop.
pub struct KubeApi {
    child: Child,
    log: PathBuf,
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl KubeApi {
    /// Listens on `addr` with a serving certificate from the cluster's CA
    /// (`bundle_ca`: certificate, key), working in `dir`; its nodes are
    /// NotReady for the first `nodes_ready_after` asks (-1: always), and
    /// Teleport's service-account token Secret holds `token`.
    pub fn start(
        dir: &Path,
        addr: std::net::SocketAddr,
        bundle_ca: (&str, &str),
        nodes_ready_after: i32,
        token: &str,
    ) -> KubeApi {
        Self::launch(
            dir,
            addr,
            bundle_ca,
            &[
                "--nodes",
                "talos-cp1,talos-cp2,talos-cp3",
                "--nodes-ready-after",
                &nodes_ready_after.to_string(),
                "--token",
                token,
            ],
        )
    }

    /// Ready from the first ask, listing the resources of the JSON file
    /// `state` (the stand-in's `--state` format), read again on each
    /// request.
    pub fn serving(
        dir: &Path,
        addr: std::net::SocketAddr,
        bundle_ca: (&str, &str),
        state: &Path,
    ) -> KubeApi {
        let state = state.to_str().expect("a UTF-8 path");
        Self::launch(
            dir,
            addr,
            bundle_ca,
            &["--ready-after", "0", "--state", state],
        )
    }

    fn launch(
        dir: &Path,
        addr: std::net::SocketAddr,
        bundle_ca: (&str, &str),
        extra: &[&str],
    ) -> KubeApi {
        // The API server's certificate: the cluster's CA, for 127.0.0.1
        // (the tunnel) and the VIP, as Talos issues it with our certSANs.
        let (ca_crt, ca_key) = bundle_ca;
        fs::write(dir.join("ca.crt"), ca_crt).unwrap();
        fs::write(dir.join("ca.key"), ca_key).unwrap();
        let openssl = |args: &[&str]| {
            let output = run(Command::new("openssl").current_dir(dir).args(args));
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                text(&output.stderr)
            );
        };
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=kube-apiserver",
            "-addext",
            "subjectAltName=IP:127.0.0.1,IP:10.10.0.20",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-copy_extensions",
            "copy",
            "-out",
            "server.crt",
        ]);
        let log = dir.join("kube-api.log");
        let child = Command::new("python3")
            .arg(repo_root().join("tests/support/kube_api_stand_in.py"))
            .args(["--listen", &addr.to_string()])
            .args([
                "--cert",
                "server.crt",
                "--key",
                "server.key",
                "--client-ca",
                "ca.crt",
            ])
            .arg("--log")
            .arg(&log)
            .args(extra)
            .current_dir(dir)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "kube API stand-in on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        KubeApi { child, log }
    }

    /// Every request it answered, as logged.
    pub fn requests(&self) -> Vec<Value> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}
