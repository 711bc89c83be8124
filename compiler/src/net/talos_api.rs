//! The Talos machine API, as much of it as bringing up a cluster and
//! changing it on day 2 needs. Here: the identity and endpoint every call
//! uses, the errors, and `machine.MachineService/Bootstrap`, which makes one
//! control-plane node start etcd as a new single-member cluster. The day-2
//! calls (versions, etcd membership and health, `ApplyConfiguration`,
//! `Upgrade`) are `TalosClient`'s, in `client`; the messages, with their
//! field numbers, in `proto`.
//!
//! The call is gRPC over mutual TLS: the node (apid) must present a
//! certificate issued by the bundle's OS CA for the node's address, and we
//! present the talosctl admin certificate (`os:admin`) from the same bundle.
//! The TCP connection may go elsewhere than that address (a local SSH
//! forward); the name checked is always the node's.
//!
//! What talosctl's own cluster bootstrapper does (`pkg/cluster/bootstrap.go`
//! in siderolabs/talos) is what happens here: a node that is not up yet
//! (refused or dropped connections, `Unavailable`, `DeadlineExceeded`,
//! `FailedPrecondition` such as "time is not in sync yet") is asked again
//! until the caller's deadline; `AlreadyExists` ("etcd data directory is not
//! empty") means etcd was bootstrapped before, which is success. A TLS
//! failure is not retried: a wrong CA, name or client certificate does not
//! fix itself. Any other answer is an error at once.
//!
//! The messages are written by hand with their field numbers from
//! `api/machine/machine.proto` and `api/common/common.proto` at Talos tag
//! v1.12.11 (`proto`): generating them would need `protoc` at build time.
//!
//! The API is blocking, like the rest of waddlec: each call runs on its own
//! current-thread tokio runtime.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

use waddlec_core::secrets::talos::{decode_pem, TalosCredentials};
use waddlec_core::secrets::Secret;

mod client;
mod proto;

pub use client::{
    ApplyMode, ApplyOutcome, EtcdMember, EtcdMemberStatus, NodeVersion, Probe, ServiceHealth,
    TalosClient, UpgradeAck, UpgradeRequest,
};
use proto::{path::BOOTSTRAP, BootstrapRequest, BootstrapResponse};
/// How long one attempt (connect, TLS, call) may take. The node itself
/// waits up to 5 s for its clock to sync before it answers.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// The pause between attempts while the node is not ready.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Where a node's apid is reached, and the name its certificate must carry.
#[derive(Clone, Debug)]
pub struct TalosEndpoint {
    /// Where to open the TCP connection (the node, or a local forward to it).
    pub connect: SocketAddr,
    /// The node's address or name, checked against its certificate.
    pub server_name: String,
}

/// What we trust and who we are: the bundle's OS CA and the talosctl admin
/// certificate with its key. `Debug` shows no key.
pub struct TalosIdentity {
    os_ca: String,
    admin_crt: String,
    /// The admin key as a PKCS#8 `PRIVATE KEY` PEM.
    admin_key: Secret,
}

impl fmt::Debug for TalosIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TalosIdentity")
            .field("os_ca", &"<certificate>")
            .field("admin_crt", &"<certificate>")
            .field("admin_key", &self.admin_key)
            .finish()
    }
}

impl TalosIdentity {
    /// The OS CA of the bundle and the admin identity issued from it
    /// (`waddlec secrets init`).
    pub fn from_credentials(credentials: &TalosCredentials) -> Result<Self, TalosApiError> {
        let pem = |field: &'static str, value: &Secret, tag: &str| {
            decode_pem(value)
                .filter(|pem| pem.tag().ends_with(tag))
                .ok_or(TalosApiError::Identity {
                    field,
                    problem: format!("it is not base64 of a PEM {tag}"),
                })
        };
        let ca = pem(
            "certs.os.crt",
            &credentials.bundle.certs.os.crt,
            "CERTIFICATE",
        )?;
        let crt = pem("the admin crt", &credentials.admin.crt, "CERTIFICATE")?;
        let key = pem("the admin key", &credentials.admin.key, "PRIVATE KEY")?;
        // talosctl labels its Ed25519 PKCS#8 key `ED25519 PRIVATE KEY`;
        // rustls reads PKCS#8 only as `PRIVATE KEY`.
        let key = pem::Pem::new("PRIVATE KEY", key.into_contents());
        Ok(TalosIdentity {
            os_ca: pem::encode(&ca),
            admin_crt: pem::encode(&crt),
            admin_key: Secret::new(pem::encode(&key)),
        })
    }
}

/// How a bootstrap that did not fail ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootstrapOutcome {
    /// The node started etcd as a new cluster.
    Bootstrapped,
    /// The node's etcd data directory is not empty: bootstrapped before.
    AlreadyBootstrapped,
}

#[derive(Debug, thiserror::Error)]
pub enum TalosApiError {
    #[error("the Talos client identity is unusable: {field}: {problem}; check the bundle and the admin identity beside it (`waddlec secrets init` writes both)")]
    Identity {
        field: &'static str,
        problem: String,
    },
    #[error("cannot set up the Talos API client: {0}")]
    Setup(String),
    #[error("TLS with the Talos API of {server_name} (via {connect}) failed: {problem}; the node must present a certificate of the bundle's OS CA for {server_name} and accept the admin certificate of the same bundle (a node without its machine config, in maintenance mode, presents a self-signed certificate)")]
    Tls {
        server_name: String,
        connect: SocketAddr,
        problem: String,
    },
    #[error("the Talos API of {server_name} refused {call}: {code:?}: {message}")]
    Refused {
        server_name: String,
        /// The RPC, e.g. `EtcdLeaveCluster`.
        call: &'static str,
        code: Code,
        /// What the node said (the gRPC status message).
        message: String,
    },
    #[error("the Talos API of {server_name} answered {call} with an error: {message}")]
    Failed {
        server_name: String,
        call: &'static str,
        message: String,
    },
    #[error(
        "the Talos API of {server_name} (via {connect}) is not reachable for {call}: {problem}"
    )]
    Unreachable {
        server_name: String,
        connect: SocketAddr,
        call: &'static str,
        problem: String,
    },
    #[error("the Talos API of {server_name} answered {call} without {missing}")]
    Incomplete {
        server_name: String,
        call: &'static str,
        missing: &'static str,
    },
    #[error("the Talos API of {server_name} (via {connect}) did not take the bootstrap within {waited:?}; last: {last}; check that the node booted with its machine config and that apid (port 50000) is reachable")]
    Deadline {
        server_name: String,
        connect: SocketAddr,
        waited: Duration,
        last: String,
    },
}

/// Asks the node to bootstrap etcd, retrying while it is not ready, for at
/// most `deadline`.
pub fn bootstrap(
    endpoint: &TalosEndpoint,
    identity: &TalosIdentity,
    deadline: Duration,
) -> Result<BootstrapOutcome, TalosApiError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TalosApiError::Setup(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(bootstrap_until(endpoint, identity, deadline))
}

async fn bootstrap_until(
    endpoint: &TalosEndpoint,
    identity: &TalosIdentity,
    deadline: Duration,
) -> Result<BootstrapOutcome, TalosApiError> {
    let channel = grpc_endpoint(endpoint, identity)?;
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        match tokio::time::timeout(left.min(ATTEMPT_TIMEOUT), attempt(&channel)).await {
            // Cut short by the deadline: the answer before says more.
            Err(_) if left < ATTEMPT_TIMEOUT && !last.is_empty() => {}
            Err(_) => last = format!("no answer within {:?}", left.min(ATTEMPT_TIMEOUT)),
            Ok(answer) => match judge(endpoint, answer) {
                Verdict::Done(outcome) => return Ok(outcome),
                Verdict::Fail(error) => return Err(error),
                Verdict::Retry(reason) => last = reason,
            },
        }
        let left = deadline.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(TalosApiError::Deadline {
                server_name: endpoint.server_name.clone(),
                connect: endpoint.connect,
                waited: start.elapsed(),
                last,
            });
        }
        tracing::info!(node = %endpoint.server_name, %last, "Talos API not ready, asking again");
        tokio::time::sleep(left.min(RETRY_PAUSE)).await;
    }
}

fn grpc_endpoint(
    endpoint: &TalosEndpoint,
    identity: &TalosIdentity,
) -> Result<Endpoint, TalosApiError> {
    let setup = |e: tonic::transport::Error| TalosApiError::Setup(chain(&e));
    // Never printed: tonic's `ClientTlsConfig` and `Identity` show the key
    // in their `Debug`.
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&identity.os_ca))
        .identity(Identity::from_pem(
            &identity.admin_crt,
            identity.admin_key.expose(),
        ))
        .domain_name(endpoint.server_name.clone());
    Endpoint::from_shared(format!("https://{}", endpoint.connect))
        .map_err(setup)?
        .user_agent(concat!("waddlec/", env!("CARGO_PKG_VERSION")))
        .map_err(setup)?
        .tls_config(tls)
        .map_err(|e| match tls_problem(&e) {
            // rustls refuses the key or certificate while building the
            // config: say so without retrying.
            Some(problem) => TalosApiError::Identity {
                field: "the admin crt and key",
                problem,
            },
            None => setup(e),
        })
}

/// One connection and one call.
enum Answer {
    Unreachable(tonic::transport::Error),
    Status(Status),
    Response(BootstrapResponse),
}

async fn attempt(endpoint: &Endpoint) -> Answer {
    let channel: Channel = match endpoint.connect().await {
        Ok(channel) => channel,
        Err(e) => return Answer::Unreachable(e),
    };
    let mut grpc = tonic::client::Grpc::new(channel);
    if let Err(e) = grpc.ready().await {
        return Answer::Unreachable(e);
    }
    let call = grpc.unary(
        tonic::Request::new(BootstrapRequest::default()),
        PathAndQuery::from_static(BOOTSTRAP),
        tonic_prost::ProstCodec::<BootstrapRequest, BootstrapResponse>::default(),
    );
    match call.await {
        Ok(response) => Answer::Response(response.into_inner()),
        Err(status) => Answer::Status(status),
    }
}

enum Verdict {
    Done(BootstrapOutcome),
    Retry(String),
    Fail(TalosApiError),
}

fn judge(endpoint: &TalosEndpoint, answer: Answer) -> Verdict {
    let tls = |problem| {
        Verdict::Fail(TalosApiError::Tls {
            server_name: endpoint.server_name.clone(),
            connect: endpoint.connect,
            problem,
        })
    };
    match answer {
        Answer::Unreachable(e) => match tls_problem(&e) {
            Some(problem) => tls(problem),
            None => Verdict::Retry(chain(&e)),
        },
        // A status with a source was made here from a broken connection
        // (the node's answers carry none): TLS or not reachable yet.
        Answer::Status(status) if std::error::Error::source(&status).is_some() => {
            match tls_problem(&status) {
                Some(problem) => tls(problem),
                None => Verdict::Retry(chain(&status)),
            }
        }
        Answer::Status(status) => match status.code() {
            Code::AlreadyExists => Verdict::Done(BootstrapOutcome::AlreadyBootstrapped),
            Code::Unavailable | Code::DeadlineExceeded | Code::FailedPrecondition => {
                Verdict::Retry(format!("{:?}: {}", status.code(), status.message()))
            }
            code => Verdict::Fail(TalosApiError::Refused {
                server_name: endpoint.server_name.clone(),
                call: "Bootstrap",
                code,
                message: status.message().to_string(),
            }),
        },
        Answer::Response(response) => {
            // apid reports a failed upstream call in the reply's metadata.
            let failed = response
                .messages
                .iter()
                .filter_map(|m| m.metadata.as_ref())
                .find(|metadata| !metadata.error.is_empty());
            match failed {
                Some(metadata) => Verdict::Fail(TalosApiError::Failed {
                    server_name: endpoint.server_name.clone(),
                    call: "Bootstrap",
                    message: if metadata.hostname.is_empty() {
                        metadata.error.clone()
                    } else {
                        format!("{}: {}", metadata.hostname, metadata.error)
                    },
                }),
                None => Verdict::Done(BootstrapOutcome::Bootstrapped),
            }
        }
    }
}

/// The TLS failure somewhere in `error`'s sources, if any: a rustls error,
/// typed where it failed the handshake (our check of the node), only as
/// the text of an `InvalidData` I/O error where it came later: with TLS 1.3
/// the node refuses our certificate after the handshake, in an alert that
/// h2 passes on as text.
pub(crate) fn tls_problem(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    const RUSTLS: [&str; 5] = [
        "received fatal alert",
        "invalid peer certificate",
        "peer sent no certificates",
        "peer is incompatible",
        "peer misbehaved",
    ];
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // `io::Error` hides the error it wraps from `source()`, and may
        // wrap another one (hyper's connector wraps rustls's).
        let mut io = error.downcast_ref::<std::io::Error>();
        while let Some(wrapper) = io {
            if let Some(tls) = wrapper
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
            {
                return Some(tls.to_string());
            }
            let text = wrapper.to_string();
            if wrapper.kind() == std::io::ErrorKind::InvalidData
                && RUSTLS.iter().any(|prefix| text.starts_with(prefix))
            {
                return Some(text);
            }
            io = wrapper
                .get_ref()
                .and_then(|e| e.downcast_ref::<std::io::Error>());
        }
        next = error.source();
    }
    None
}

/// An error and its sources, one after the other.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(error) = next {
        let part = error.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = error.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::proto::*;
    use super::*;
    use prost::Message as _;

    #[test]
    fn messages_use_the_field_numbers_of_machine_proto() {
        let request = BootstrapRequest {
            recover_etcd: true,
            recover_skip_hash_check: true,
        };
        // Field 1 and field 2, varint 1 each.
        assert_eq!(request.encode_to_vec(), [0x08, 0x01, 0x10, 0x01]);
        assert!(BootstrapRequest::default().encode_to_vec().is_empty());

        // messages { metadata { hostname: "cp1" error: "boom" status {…} } }
        let status = [0x08, 0x06]; // google.rpc.Status { code: 6 }
        let mut metadata = vec![0x0a, 3, b'c', b'p', b'1', 0x12, 4, b'b', b'o', b'o', b'm'];
        metadata.extend([0x1a, status.len() as u8]);
        metadata.extend(status);
        let mut bootstrap = vec![0x0a, metadata.len() as u8];
        bootstrap.extend(&metadata);
        let mut response = vec![0x0a, bootstrap.len() as u8];
        response.extend(&bootstrap);
        let decoded = BootstrapResponse::decode(response.as_slice()).unwrap();
        let metadata = decoded.messages[0].metadata.as_ref().unwrap();
        assert_eq!(metadata.hostname, "cp1");
        assert_eq!(metadata.error, "boom");
    }

    #[test]
    fn a_credential_that_is_not_pem_is_named_without_its_value() {
        let credentials = TalosCredentials::redacted("lab");
        let text = TalosIdentity::from_credentials(&credentials)
            .unwrap_err()
            .to_string();
        assert!(text.contains("certs.os.crt"), "{text}");
        assert!(!text.contains("redacted"), "{text}");
    }
}
