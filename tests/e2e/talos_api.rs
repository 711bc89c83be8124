//! The Talos machine-API client and the SSH tunnel, against real peers. A
//! stand-in apid (tonic, mutual TLS with the bundle's OS CA as the only
//! client root, serving only `machine.MachineService/Bootstrap`) listens on
//! this machine's end of an `SshHost`'s veth; the client reaches it as the
//! node `10.10.0.10` through `SshTunnel`: local port → ssh → sshd in the
//! namespace → back over the veth. Certificates come from waddlec's own
//! bundle and admin identity; the node's is signed by the bundle's OS CA.
//! The messages here are written again from `machine.proto`, so a wrong
//! field number in the client shows.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair, PKCS_ED25519};
use time::OffsetDateTime;
use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Code, Status};
use waddlec::net::ssh_tunnel::{SshTunnel, TunnelError};
use waddlec::net::talos_api::{
    bootstrap, BootstrapOutcome, TalosApiError, TalosEndpoint, TalosIdentity,
};
use waddlec::secrets::talos::{Bundle, TalosCredentials};
use waddlec::secrets::Secret;
use waddlec::secrets::{talos_admin, talos_bundle};

use crate::host_setup::SshHost;

/// The node's address: the name its certificate is for.
const NODE: &str = "10.10.0.10";
const DEADLINE: Duration = Duration::from_secs(30);

/// A bundle and the admin identity issued from it.
fn new_credentials() -> TalosCredentials {
    let now = OffsetDateTime::now_utc();
    let bundle = talos_bundle::generate(now).unwrap();
    let admin = talos_admin::issue(&bundle, now).unwrap();
    TalosCredentials { bundle, admin }
}

pub(crate) fn pem_text(value: &Secret) -> String {
    String::from_utf8(STANDARD.decode(value.expose()).unwrap()).unwrap()
}

/// The node's certificate for `NODE` and its key, signed by the OS CA.
fn node_certificate(bundle: &Bundle) -> (String, String) {
    let ca_key = pem::parse(pem_text(&bundle.certs.os.key)).unwrap();
    let ca_key =
        KeyPair::from_pkcs8_der_and_sign_algo(&ca_key.contents().into(), &PKCS_ED25519).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&pem_text(&bundle.certs.os.crt), ca_key).unwrap();
    let mut params = CertificateParams::new(vec![NODE.to_string()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A port on `ip` nobody listens on.
pub(crate) fn free_addr(ip: &str) -> SocketAddr {
    TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap()
}

/// `machine.BootstrapRequest`, as apid decodes it.
#[derive(Clone, PartialEq, prost::Message)]
struct BootstrapRequest {
    #[prost(bool, tag = "1")]
    recover_etcd: bool,
    #[prost(bool, tag = "2")]
    recover_skip_hash_check: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct BootstrapResponse {
    #[prost(message, repeated, tag = "1")]
    messages: Vec<Bootstrap>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Bootstrap {
    #[prost(message, optional, tag = "1")]
    metadata: Option<Metadata>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Metadata {
    #[prost(string, tag = "1")]
    hostname: String,
    #[prost(string, tag = "2")]
    error: String,
}

/// One Bootstrap call as the node saw it.
#[derive(Debug)]
pub(crate) struct Call {
    request: BootstrapRequest,
    /// Organisation of the client certificate (the talosctl role).
    pub(crate) role: String,
    /// Organisation of its issuer.
    issuer: String,
    /// Where the connection came from.
    peer: SocketAddr,
}

/// An answer the node gives before behaving like a real one.
pub(crate) enum Reply {
    Status(Code, &'static str),
    /// apid's report of a failed upstream call: OK, error in the metadata.
    ProxyError(&'static str),
}

/// The node's state: what it was asked, what it still has to say.
struct Node {
    calls: Mutex<Vec<Call>>,
    script: Mutex<VecDeque<Reply>>,
    bootstrapped: AtomicBool,
}

impl Node {
    /// After the script: the first call bootstraps, later ones find etcd's
    /// data directory in use, as in machined's `Bootstrap`.
    fn answer(
        &self,
        request: tonic::Request<BootstrapRequest>,
    ) -> Result<tonic::Response<BootstrapResponse>, Status> {
        let certs = request.peer_certs().expect("a client certificate");
        let (_, cert) = x509_parser::parse_x509_certificate(&certs[0]).unwrap();
        let organisation = |name: &x509_parser::x509::X509Name| {
            name.iter_organization()
                .map(|o| o.as_str().unwrap().to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        self.calls.lock().unwrap().push(Call {
            request: request.get_ref().clone(),
            role: organisation(cert.subject()),
            issuer: organisation(cert.issuer()),
            peer: request.remote_addr().expect("a TCP peer"),
        });
        let ok = |error: &str| {
            tonic::Response::new(BootstrapResponse {
                messages: vec![Bootstrap {
                    metadata: Some(Metadata {
                        hostname: "cp1".into(),
                        error: error.into(),
                    }),
                }],
            })
        };
        match self.script.lock().unwrap().pop_front() {
            Some(Reply::Status(code, message)) => Err(Status::new(code, message)),
            Some(Reply::ProxyError(error)) => Ok(ok(error)),
            None if self.bootstrapped.swap(true, Ordering::SeqCst) => {
                Err(Status::already_exists("etcd data directory is not empty"))
            }
            None => Ok(ok("")),
        }
    }
}

/// The one method served, through tonic's unary handler.
struct BootstrapCall(Arc<Node>);

impl tonic::server::UnaryService<BootstrapRequest> for BootstrapCall {
    type Response = BootstrapResponse;
    type Future = std::future::Ready<Result<tonic::Response<BootstrapResponse>, Status>>;

    fn call(&mut self, request: tonic::Request<BootstrapRequest>) -> Self::Future {
        std::future::ready(self.0.answer(request))
    }
}

#[derive(Clone)]
struct MachineService(Arc<Node>);

impl Service<http::Request<Body>> for MachineService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let node = self.0.clone();
        Box::pin(async move {
            if request.uri().path() != "/machine.MachineService/Bootstrap" {
                return Ok(Status::unimplemented("only Bootstrap here").into_http());
            }
            let codec = tonic_prost::ProstCodec::<BootstrapResponse, BootstrapRequest>::default();
            let mut grpc = tonic::server::Grpc::new(codec);
            Ok(grpc.unary(BootstrapCall(node), request).await)
        })
    }
}

/// A stand-in apid on `addr`, stopped on drop.
pub(crate) struct Apid {
    node: Arc<Node>,
    _runtime: tokio::runtime::Runtime,
}

impl Apid {
    pub(crate) fn start(addr: SocketAddr, bundle: &Bundle, script: Vec<Reply>) -> Apid {
        // rustls' client verifier takes the process's provider.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let (cert, key) = node_certificate(bundle);
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(cert, key))
            .client_ca_root(Certificate::from_pem(pem_text(&bundle.certs.os.crt)));
        let node = Arc::new(Node {
            calls: Mutex::new(Vec::new()),
            script: Mutex::new(script.into()),
            bootstrapped: AtomicBool::new(false),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let server = Server::builder().tls_config(tls).unwrap();
        let service = MachineService(node.clone());
        runtime.spawn(async move { server.serve(addr, service).await.unwrap() });
        let start = Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "apid on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Apid {
            node,
            _runtime: runtime,
        }
    }

    pub(crate) fn calls(&self) -> std::sync::MutexGuard<'_, Vec<Call>> {
        self.node.calls.lock().unwrap()
    }
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
    let err =
        SshTunnel::open("nowhere", Some(&config), &[("127.0.0.1".into(), 50000)]).unwrap_err();
    assert!(matches!(err, TunnelError::Exited { .. }), "{err}");
    assert!(err.to_string().contains("Connection refused"), "{err}");

    let host = SshHost::start();
    let listener = TcpListener::bind((host.host_side.as_str(), 0)).unwrap();
    let tunnel = SshTunnel::open(
        "waddle-host",
        Some(&host.config),
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
