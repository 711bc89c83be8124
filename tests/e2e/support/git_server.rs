//! A real git server over SSH on loopback: OpenSSH's `sshd` on a free
//! port of 127.0.0.1 with a fresh host key, admitting one client key
//! (`root`, key only), and a bare repository with a commit on `main`, which
//! the client reaches with `git`'s own `git-upload-pack` over the SSH
//! session, as Flux reaches GitHub.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::{free_addr, require, run, text};

pub struct GitServer {
    child: Child,
    /// `ssh://root@127.0.0.1:PORT/…/platform.git`.
    pub url: String,
    /// The `known_hosts` line of its host key (`[127.0.0.1]:PORT TYPE KEY`).
    pub known_host: String,
    /// The private key it admits (OpenSSH format).
    pub client_key: String,
    /// A private key it does not admit.
    pub stranger_key: String,
    pub commit: String,
    _dir: tempfile::TempDir,
}

fn keygen(path: &Path) -> String {
    let output = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"])
        .arg(path));
    assert!(output.status.success(), "{}", text(&output.stderr));
    fs::read_to_string(path.with_extension("pub")).unwrap()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = run(Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
        .args(args));
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

impl GitServer {
    pub fn start() -> Self {
        for tool in ["sshd", "ssh", "ssh-keygen", "git"] {
            require(tool);
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let host_key = keygen(&d.join("host_key"));
        let client_public = keygen(&d.join("client_key"));
        keygen(&d.join("stranger_key"));
        fs::write(d.join("authorized_keys"), &client_public).unwrap();
        let work = d.join("work");
        fs::create_dir(&work).unwrap();
        git(&work, &["init", "--quiet", "--initial-branch=main"]);
        fs::write(work.join("README.md"), "platform\n").unwrap();
        git(&work, &["add", "README.md"]);
        git(&work, &["commit", "--quiet", "-m", "first"]);
        let commit = git(&work, &["rev-parse", "HEAD"]).trim().to_string();
        let bare = d.join("platform.git");
        let output = run(Command::new("git")
            .args(["clone", "--quiet", "--bare"])
            .arg(&work)
            .arg(&bare));
        assert!(output.status.success(), "{}", text(&output.stderr));
        let addr = free_addr("127.0.0.1");
        fs::write(
            d.join("sshd_config"),
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {d}/host_key\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\n\
                 UsePAM no\nPidFile {d}/sshd.pid\n",
                port = addr.port(),
                d = d.display()
            ),
        )
        .unwrap();
        fs::create_dir_all("/run/sshd").unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(addr).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let mut fields = host_key.split_whitespace();
        let known_host = format!(
            "[127.0.0.1]:{} {} {}",
            addr.port(),
            fields.next().unwrap(),
            fields.next().unwrap()
        );
        GitServer {
            child,
            url: format!("ssh://root@127.0.0.1:{}{}", addr.port(), bare.display()),
            known_host,
            client_key: fs::read_to_string(d.join("client_key")).unwrap(),
            stranger_key: fs::read_to_string(d.join("stranger_key")).unwrap(),
            commit,
            _dir: dir,
        }
    }
}

impl GitServer {
    /// Stops sshd: the port refuses connections from now on.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.stop();
    }
}
