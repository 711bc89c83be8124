//! The stand-in Talos apid: a tonic server with mutual TLS (the node's
//! certificate signed by the bundle's OS CA, that CA the only client root)
//! serving only `machine.MachineService/Bootstrap`. It records each call
//! with the client certificate's roles, and answers from a script, then as
//! machined does. The messages are written again from `machine.proto`, so a
//! wrong field number in waddlec's client shows.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair, PKCS_ED25519};
use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Code, Status};
use waddlec::secrets::talos::Bundle;
use waddlec::secrets::Secret;

/// The node's address: the name its certificate is for.
pub const NODE: &str = "10.10.0.10";

pub fn pem_text(value: &Secret) -> String {
    String::from_utf8(STANDARD.decode(value.expose()).unwrap()).unwrap()
}

/// The node's certificate for `NODE` and its key, signed by the OS CA.
fn node_certificate(bundle: &Bundle) -> (String, String) {
    node_certificate_for(bundle, NODE)
}

/// A node's certificate for `name` (its address) and its key, signed by the
/// OS CA, as apid presents it.
pub fn node_certificate_for(bundle: &Bundle, name: &str) -> (String, String) {
    let ca_key = pem::parse(pem_text(&bundle.certs.os.key)).unwrap();
    let ca_key =
        KeyPair::from_pkcs8_der_and_sign_algo(&ca_key.contents().into(), &PKCS_ED25519).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&pem_text(&bundle.certs.os.crt), ca_key).unwrap();
    let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A client identity of the bundle with `role` (e.g. `os:reader`) in its
/// Subject O, as `talosctl config new --roles` issues it.
pub fn client_with_role(bundle: &Bundle, role: &str) -> waddlec::secrets::talos::TalosCredentials {
    use rcgen::{DistinguishedName, DnType};
    let ca_key = pem::parse(pem_text(&bundle.certs.os.key)).unwrap();
    let ca_key =
        KeyPair::from_pkcs8_der_and_sign_algo(&ca_key.contents().into(), &PKCS_ED25519).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&pem_text(&bundle.certs.os.crt), ca_key).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, role);
    name.push(DnType::CommonName, "client");
    params.distinguished_name = name;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    waddlec::secrets::talos::TalosCredentials {
        bundle: bundle.clone(),
        admin: waddlec::secrets::talos::TalosAdmin {
            crt: Secret::new(STANDARD.encode(cert.pem())),
            key: Secret::new(STANDARD.encode(key.serialize_pem())),
        },
    }
}

/// `machine.BootstrapRequest`, as apid decodes it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BootstrapRequest {
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
pub struct Call {
    pub request: BootstrapRequest,
    /// Organisation of the client certificate (the talosctl role).
    pub role: String,
    /// Organisation of its issuer.
    pub issuer: String,
    /// Where the connection came from.
    pub peer: SocketAddr,
}

/// An answer the node gives before behaving like a real one.
pub enum Reply {
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
pub struct Apid {
    node: Arc<Node>,
    _runtime: tokio::runtime::Runtime,
}

impl Apid {
    pub fn start(addr: SocketAddr, bundle: &Bundle, script: Vec<Reply>) -> Apid {
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

    pub fn calls(&self) -> std::sync::MutexGuard<'_, Vec<Call>> {
        self.node.calls.lock().unwrap()
    }
}
