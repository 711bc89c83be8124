//! The Talos machine-API client and the SSH tunnel, against real peers. The
//! stand-in apid (`support::apid`) listens on this machine's end of an
//! `SshHost`'s veth; the client reaches it as the node `10.10.0.10` through
//! `SshTunnel`: local port → ssh → sshd in the namespace → back over the
//! veth. Certificates come from waddlec's own bundle and admin identity; the
//! node's is signed by the bundle's OS CA.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tonic::Code;
use waddlec::net::ssh_tunnel::{SshTunnel, TunnelError};
use waddlec::net::talos_api::{
    bootstrap, BootstrapOutcome, TalosApiError, TalosEndpoint, TalosIdentity,
};
use waddlec::secrets::talos::TalosCredentials;
use waddlec::secrets::{talos_admin, talos_bundle};

use crate::support::apid::{Apid, BootstrapRequest, Reply, NODE};
use crate::support::free_addr;
use crate::support::ssh_host::SshHost;

const DEADLINE: Duration = Duration::from_secs(30);

/// A bundle and the admin identity issued from it.
fn new_credentials() -> TalosCredentials {
    let now = OffsetDateTime::now_utc();
    let bundle = talos_bundle::generate(now).unwrap();
    let admin = talos_admin::issue(&bundle, now).unwrap();
    TalosCredentials { bundle, admin }
}

/// The identity made from the credentials keeps its key out of `Debug`
/// (neither the PEM nor its base64 form from the bundle shows).
#[test]
fn identity_debug_shows_no_key() {
    let credentials = new_credentials();
    let identity = TalosIdentity::from_credentials(&credentials).unwrap();
    let debug = format!("{identity:?}");
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    assert!(!debug.contains(credentials.admin.key.expose()), "{debug}");
    assert!(debug.contains("<secret>"), "{debug}");
}

/// A stand-in node's address behind an SSH host, and a tunnel to it.
struct BehindHost {
    host: SshHost,
    apid: SocketAddr,
    tunnel: SshTunnel,
}

impl BehindHost {
    fn new() -> BehindHost {
        let host = SshHost::start();
        let apid = free_addr(&host.host_side);
        let tunnel = SshTunnel::open(
            "waddle-host",
            Some(&host.config),
            None,
            None,
            &[(host.host_side.clone(), apid.port())],
        )
        .unwrap();
        BehindHost { host, apid, tunnel }
    }

    fn endpoint(&self) -> TalosEndpoint {
        TalosEndpoint {
            connect: self.tunnel.local_addr(0),
            server_name: NODE.into(),
        }
    }
}

#[test]
fn bootstrap_through_the_tunnel_reaches_the_node_once_as_admin() {
    let credentials = new_credentials();
    let path = BehindHost::new();
    let apid = Apid::start(path.apid, &credentials.bundle, vec![]);
    let identity = TalosIdentity::from_credentials(&credentials).unwrap();

    let outcome = bootstrap(&path.endpoint(), &identity, DEADLINE).unwrap();

    assert_eq!(outcome, BootstrapOutcome::Bootstrapped);
    let calls = apid.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].request, BootstrapRequest::default());
    assert_eq!(calls[0].role, "os:admin");
    assert_eq!(calls[0].issuer, "talos");
    // Over ssh: the node was called from the SSH host's namespace.
    let peer = calls[0].peer.ip().to_string();
    assert_ne!(peer, path.host.host_side);
    let host_addresses = path.host.netns.sh("ip -4 -o addr show");
    assert!(
        host_addresses.contains(&format!(" {peer}/")),
        "{peer}: {host_addresses}"
    );
}

#[test]
fn a_node_bootstrapped_before_is_success() {
    let credentials = new_credentials();
    let path = BehindHost::new();
    let apid = Apid::start(path.apid, &credentials.bundle, vec![]);
    let identity = TalosIdentity::from_credentials(&credentials).unwrap();

    let first = bootstrap(&path.endpoint(), &identity, DEADLINE).unwrap();
    let again = bootstrap(&path.endpoint(), &identity, DEADLINE).unwrap();

    assert_eq!(first, BootstrapOutcome::Bootstrapped);
    assert_eq!(again, BootstrapOutcome::AlreadyBootstrapped);
    assert_eq!(apid.calls().len(), 2);
}

#[test]
fn certificates_of_another_cluster_fail_at_once() {
    let credentials = new_credentials();
    let stranger = new_credentials();
    let path = BehindHost::new();
    let apid = Apid::start(path.apid, &credentials.bundle, vec![]);

    // Our admin certificate, from another bundle's OS CA: apid refuses it.
    let foreign = TalosIdentity::from_credentials(&TalosCredentials {
        bundle: credentials.bundle.clone(),
        admin: stranger.admin.clone(),
    })
    .unwrap();
    let start = Instant::now();
    let err = bootstrap(&path.endpoint(), &foreign, DEADLINE).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(matches!(err, TalosApiError::Tls { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(NODE) && text.contains("OS CA"), "{text}");

    // The node's certificate, not from the OS CA we trust: we refuse it.
    let start = Instant::now();
    let identity = TalosIdentity::from_credentials(&stranger).unwrap();
    let err = bootstrap(&path.endpoint(), &identity, DEADLINE).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, TalosApiError::Tls { .. }), "{err}");
    // Every bundle's OS CA is `O=talos`: found by name, its signature fails.
    assert!(
        err.to_string()
            .contains("invalid peer certificate: BadSignature"),
        "{err}"
    );

    // Right CA, wrong name.
    let identity = TalosIdentity::from_credentials(&credentials).unwrap();
    let other_node = TalosEndpoint {
        server_name: "10.10.0.11".into(),
        ..path.endpoint()
    };
    let err = bootstrap(&other_node, &identity, DEADLINE).unwrap_err();
    assert!(err.to_string().contains("not valid for name"), "{err}");

    assert!(apid.calls().is_empty(), "{:?}", apid.calls());
}

#[test]
fn a_node_not_listening_yet_is_asked_again_until_it_answers() {
    let credentials = new_credentials();
    let path = BehindHost::new();
    let identity = TalosIdentity::from_credentials(&credentials).unwrap();
    let (addr, bundle) = (path.apid, credentials.bundle.clone());
    let later = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        Apid::start(addr, &bundle, vec![])
    });

    let start = Instant::now();
    let outcome = bootstrap(&path.endpoint(), &identity, DEADLINE).unwrap();

    assert!(start.elapsed() >= Duration::from_secs(3));
    assert_eq!(outcome, BootstrapOutcome::Bootstrapped);
    assert_eq!(later.join().unwrap().calls().len(), 1);
}

#[test]
fn answers_meaning_not_yet_are_retried_and_others_are_not() {
    let credentials = new_credentials();
    let identity = TalosIdentity::from_credentials(&credentials).unwrap();
    let direct = |script| {
        let addr = free_addr("127.0.0.1");
        let apid = Apid::start(addr, &credentials.bundle, script);
        let endpoint = TalosEndpoint {
            connect: addr,
            server_name: NODE.into(),
        };
        (apid, endpoint)
    };

    // Machined's "not yet" answers, then a bootstrap.
    let (apid, endpoint) = direct(vec![
        Reply::Status(Code::Unavailable, "connection error"),
        Reply::Status(Code::FailedPrecondition, "time is not in sync yet"),
    ]);
    assert_eq!(
        bootstrap(&endpoint, &identity, DEADLINE).unwrap(),
        BootstrapOutcome::Bootstrapped
    );
    assert_eq!(apid.calls().len(), 3);

    // Still not ready at the deadline: the last answer is reported.
    let (_apid, endpoint) = direct(
        (0..10)
            .map(|_| Reply::Status(Code::FailedPrecondition, "time is not in sync yet"))
            .collect(),
    );
    let err = bootstrap(&endpoint, &identity, Duration::from_secs(2)).unwrap_err();
    assert!(matches!(err, TalosApiError::Deadline { .. }), "{err}");
    assert!(err.to_string().contains("time is not in sync yet"), "{err}");

    // Refused: once, at once.
    let (apid, endpoint) = direct(vec![Reply::Status(
        Code::PermissionDenied,
        "not authorized",
    )]);
    let err = bootstrap(&endpoint, &identity, DEADLINE).unwrap_err();
    assert!(
        matches!(
            err,
            TalosApiError::Refused {
                code: Code::PermissionDenied,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(apid.calls().len(), 1);

    // An upstream error inside an OK reply is not a bootstrap.
    let (_apid, endpoint) = direct(vec![Reply::ProxyError("bootstrap failed upstream")]);
    let err = bootstrap(&endpoint, &identity, DEADLINE).unwrap_err();
    assert!(
        err.to_string().contains("cp1: bootstrap failed upstream"),
        "{err}"
    );
}

#[test]
fn tunnel_failures_carry_ssh_stderr_and_drop_closes_the_ports() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ssh_config");
    std::fs::write(
        &config,
        "Host nowhere\n  HostName 127.0.0.1\n  Port 1\n  ConnectTimeout 5\n",
    )
    .unwrap();
    let err = SshTunnel::open(
        "nowhere",
        Some(&config),
        None,
        None,
        &[("127.0.0.1".into(), 50000)],
    )
    .unwrap_err();
    assert!(matches!(err, TunnelError::Exited { .. }), "{err}");
    assert!(err.to_string().contains("Connection refused"), "{err}");

    let host = SshHost::start();
    let listener = TcpListener::bind((host.host_side.as_str(), 0)).unwrap();
    let tunnel = SshTunnel::open(
        "waddle-host",
        Some(&host.config),
        None,
        None,
        &[
            (
                host.host_side.clone(),
                listener.local_addr().unwrap().port(),
            ),
            ("127.0.0.1".into(), 22),
        ],
    )
    .unwrap();
    let local = tunnel.local_addr(0);
    assert_ne!(local, tunnel.local_addr(1));
    TcpStream::connect(local).unwrap();
    drop(tunnel);
    let refused = TcpStream::connect(local).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}
