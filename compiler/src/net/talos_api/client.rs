//! `TalosClient`: the day-2 calls of the Talos machine API against one node,
//! each one connection, one call, one answer, no retry (a rollout decides
//! what to wait for; `wait_until_up` is the one loop). Every call is gRPC
//! over the same mutual TLS as `bootstrap`, and follows apid's rules
//! (Talos v1.12.11, `internal/app/machined/internal/server/v1alpha1/`):
//!
//! - a refusal is the node's gRPC status, kept as it said it
//!   (`TalosApiError::Refused`): `PermissionDenied` "not authorized" for a
//!   certificate without the role, `Unimplemented` for etcd calls on a
//!   worker, `InvalidArgument` for a config the node will not take, `Unknown`
//!   with etcd's own words ("etcdserver: unhealthy cluster") and the like;
//! - a reply can carry a failure of the node apid forwarded to in its
//!   `metadata.error` (`TalosApiError::Failed`);
//! - a node that does not answer is `TalosApiError::Unreachable`, a TLS
//!   failure `TalosApiError::Tls`, never retried.
//!
//! With `proxy_to`, the call goes to the endpoint's apid with the gRPC
//! metadata `node: <name>`, and that apid forwards it one-to-one to the named
//! node (`internal/app/apid/pkg/director/director.go`): the way to reach a
//! node through another, e.g. to remove a dead member from a live one.

use std::fmt;
use std::time::{Duration, Instant};

use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::Endpoint;
use tonic::Code;

use super::proto::{self, path, Reply};
use super::{chain, grpc_endpoint, tls_problem, TalosApiError, TalosEndpoint, TalosIdentity};

/// How long one call (connect, TLS, call) may take unless `with_timeout`
/// says otherwise. `Upgrade` pulls and validates the installer image before
/// it answers: give it longer.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// The pause between probes in `wait_until_up`.
const PROBE_PAUSE: Duration = Duration::from_secs(1);

/// A client of one node's apid (or of another node through it).
pub struct TalosClient {
    endpoint: TalosEndpoint,
    grpc: Endpoint,
    /// The `node` metadata: the node the endpoint's apid forwards to.
    target: Option<String>,
    timeout: Duration,
    runtime: tokio::runtime::Runtime,
}

impl fmt::Debug for TalosClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TalosClient")
            .field("endpoint", &self.endpoint)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// What a node runs (`machine.Version`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeVersion {
    /// The node that answered (apid's `metadata.hostname`; empty when the
    /// call was not forwarded).
    pub hostname: String,
    /// The Talos version, e.g. `v1.12.11` (`VersionInfo.tag`).
    pub tag: String,
    /// The platform, e.g. `nocloud` (`PlatformInfo.name`).
    pub platform: String,
}

/// Whether a node answers, from one `Version` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    Up(NodeVersion),
    /// Not answering, or the forwarding apid could not reach it: why.
    Down(String),
}

/// One etcd member (`machine.EtcdMember`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdMember {
    pub id: u64,
    /// The member's name: the node's hostname; empty for a member that was
    /// added and never started.
    pub hostname: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

impl EtcdMember {
    /// The ID as etcd and talosctl print it.
    pub fn id_hex(&self) -> String {
        format!("{:016x}", self.id)
    }
}

/// The local etcd member as the node sees it (`machine.EtcdMemberStatus`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdMemberStatus {
    pub member_id: u64,
    /// The leader's member ID; 0 without a leader.
    pub leader: u64,
    pub is_learner: bool,
    pub raft_term: u64,
    pub protocol_version: String,
    /// etcd's own complaints (alarms, …); empty when healthy.
    pub errors: Vec<String>,
}

/// A service on the node and its health (`machine.ServiceInfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceHealth {
    /// e.g. `etcd`, `kubelet`, `apid`.
    pub id: String,
    /// e.g. `Running`, `Waiting`, `Finished`.
    pub state: String,
    /// `None` while Talos does not know yet (`ServiceHealth.unknown`).
    pub healthy: Option<bool>,
    pub last_message: String,
}

/// `machine.ApplyConfigurationRequest.Mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyMode {
    /// Write the config and reboot.
    Reboot,
    /// Apply live when Talos can, else reboot; the reply says which.
    Auto,
    /// Apply live; refused with `InvalidArgument` when a reboot is needed.
    NoReboot,
    /// Write the config, applied at the next reboot.
    Staged,
    /// Apply live, rolled back after a minute unless applied again.
    Try,
}

impl ApplyMode {
    fn to_proto(self) -> proto::ApplyMode {
        match self {
            ApplyMode::Reboot => proto::ApplyMode::Reboot,
            ApplyMode::Auto => proto::ApplyMode::Auto,
            ApplyMode::NoReboot => proto::ApplyMode::NoReboot,
            ApplyMode::Staged => proto::ApplyMode::Staged,
            ApplyMode::Try => proto::ApplyMode::Try,
        }
    }

    fn from_proto(mode: proto::ApplyMode) -> ApplyMode {
        match mode {
            proto::ApplyMode::Reboot => ApplyMode::Reboot,
            proto::ApplyMode::Auto => ApplyMode::Auto,
            proto::ApplyMode::NoReboot => ApplyMode::NoReboot,
            proto::ApplyMode::Staged => ApplyMode::Staged,
            proto::ApplyMode::Try => ApplyMode::Try,
        }
    }
}

/// What `ApplyConfiguration` did, or on a dry run would do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// The mode used: AUTO comes back as REBOOT or NO_REBOOT.
    pub mode: ApplyMode,
    /// The node's words, e.g. "Applied configuration without a reboot"; on a
    /// dry run the whole summary with the diff.
    pub details: String,
    /// Validation warnings (none on a dry run).
    pub warnings: Vec<String>,
    /// On a dry run, the node's diff of its config against the one sent:
    /// empty when there are no changes. `None` when not a dry run.
    pub diff: Option<String>,
}

/// `machine.UpgradeRequest`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The installer image, e.g. the Image Factory's
    /// `factory.talos.dev/nocloud-installer/<schematic>:v1.12.11`.
    pub image: String,
    /// Keep ephemeral data; skips the etcd pre-check, like `force`.
    pub preserve: bool,
    /// Stage for the next reboot instead of rebooting now.
    pub stage: bool,
    /// Skip the etcd pre-check (all members healthy, not exactly two).
    pub force: bool,
    /// Power-cycle instead of kexec.
    pub powercycle: bool,
}

/// The node took the upgrade and will reboot into it (`machine.Upgrade`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradeAck {
    /// "Upgrade request received".
    pub ack: String,
    pub actor_id: String,
}

impl TalosClient {
    /// A client of the node at `endpoint`. Nothing is dialled until a call.
    pub fn new(
        endpoint: &TalosEndpoint,
        identity: &TalosIdentity,
    ) -> Result<TalosClient, TalosApiError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TalosApiError::Setup(format!("cannot start the async runtime: {e}")))?;
        Ok(TalosClient {
            endpoint: endpoint.clone(),
            grpc: grpc_endpoint(endpoint, identity)?,
            target: None,
            timeout: CALL_TIMEOUT,
            runtime,
        })
    }

    /// Calls go to `node` (its address or hostname) through this endpoint's
    /// apid, with the gRPC metadata `node`.
    pub fn proxy_to(mut self, node: &str) -> TalosClient {
        self.target = Some(node.to_string());
        self
    }

    /// How long one call may take (default 15 s).
    pub fn with_timeout(mut self, timeout: Duration) -> TalosClient {
        self.timeout = timeout;
        self
    }

    /// The node the calls are for, as errors name it.
    pub fn node(&self) -> &str {
        self.target.as_deref().unwrap_or(&self.endpoint.server_name)
    }

    /// The node's Talos version and platform.
    pub fn version(&self) -> Result<NodeVersion, TalosApiError> {
        const CALL: &str = "Version";
        let response: proto::VersionResponse = self.call(path::VERSION, CALL, proto::Empty {})?;
        let message = self.first(CALL, response.messages)?;
        let hostname = hostname(&message);
        let version = message
            .version
            .ok_or_else(|| self.incomplete(CALL, "a version"))?;
        Ok(NodeVersion {
            hostname,
            tag: version.tag,
            platform: message.platform.map(|p| p.name).unwrap_or_default(),
        })
    }

    /// Whether the node answers now: `Down` when it does not (or the apid
    /// forwarding to it cannot reach it); an error for anything that waiting
    /// will not change (TLS, a refusal).
    pub fn probe(&self) -> Result<Probe, TalosApiError> {
        match self.version() {
            Ok(version) => Ok(Probe::Up(version)),
            Err(TalosApiError::Unreachable { problem, .. }) => Ok(Probe::Down(problem)),
            Err(TalosApiError::Refused {
                code: code @ (Code::Unavailable | Code::DeadlineExceeded),
                message,
                ..
            }) => Ok(Probe::Down(format!("{code:?}: {message}"))),
            Err(e) => Err(e),
        }
    }

    /// Probes until the node answers, for at most `deadline`. The error at
    /// the deadline says what the last probe met.
    pub fn wait_until_up(&self, deadline: Duration) -> Result<NodeVersion, TalosApiError> {
        self.wait_until(deadline, |_| true)
    }

    /// Probes until the node answers on Talos `tag`, for at most `deadline`:
    /// after an `Upgrade`, which the node answers before it reboots (so it
    /// still runs the old version for a moment). The error at the deadline
    /// says what the last probe met: the version it still ran, or why it
    /// did not answer.
    pub fn wait_until_version(
        &self,
        tag: &str,
        deadline: Duration,
    ) -> Result<NodeVersion, TalosApiError> {
        self.wait_until(deadline, |version| version.tag == tag)
    }

    fn wait_until(
        &self,
        deadline: Duration,
        done: impl Fn(&NodeVersion) -> bool,
    ) -> Result<NodeVersion, TalosApiError> {
        let start = Instant::now();
        loop {
            let last = match self.probe()? {
                Probe::Up(version) if done(&version) => return Ok(version),
                Probe::Up(version) => format!("up, running Talos {}", version.tag),
                Probe::Down(why) => why,
            };
            let left = deadline.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(TalosApiError::Deadline {
                    server_name: self.node().to_string(),
                    connect: self.endpoint.connect,
                    waited: start.elapsed(),
                    last,
                });
            }
            std::thread::sleep(left.min(PROBE_PAUSE));
        }
    }

    /// The cluster's etcd members, asked through the control planes (needs
    /// an etcd leader: "etcdserver: no leader" without quorum).
    pub fn etcd_members(&self) -> Result<Vec<EtcdMember>, TalosApiError> {
        const CALL: &str = "EtcdMemberList";
        let request = proto::EtcdMemberListRequest { query_local: false };
        let response: proto::EtcdMemberListResponse =
            self.call(path::ETCD_MEMBER_LIST, CALL, request)?;
        let message = self.first(CALL, response.messages)?;
        Ok(message
            .members
            .into_iter()
            .map(|m| EtcdMember {
                id: m.id,
                hostname: m.hostname,
                peer_urls: m.peer_urls,
                client_urls: m.client_urls,
                is_learner: m.is_learner,
            })
            .collect())
    }

    /// The node's own etcd member, from its local etcd.
    pub fn etcd_status(&self) -> Result<EtcdMemberStatus, TalosApiError> {
        const CALL: &str = "EtcdStatus";
        let response: proto::EtcdStatusResponse =
            self.call(path::ETCD_STATUS, CALL, proto::Empty {})?;
        let message = self.first(CALL, response.messages)?;
        let status = message
            .member_status
            .ok_or_else(|| self.incomplete(CALL, "a member status"))?;
        Ok(EtcdMemberStatus {
            member_id: status.member_id,
            leader: status.leader,
            is_learner: status.is_learner,
            raft_term: status.raft_term,
            protocol_version: status.protocol_version,
            errors: status.errors,
        })
    }

    /// The node's services and their health.
    pub fn services(&self) -> Result<Vec<ServiceHealth>, TalosApiError> {
        const CALL: &str = "ServiceList";
        let response: proto::ServiceListResponse =
            self.call(path::SERVICE_LIST, CALL, proto::Empty {})?;
        let message = self.first(CALL, response.messages)?;
        Ok(message
            .services
            .into_iter()
            .map(|s| {
                let health = s.health.unwrap_or_default();
                ServiceHealth {
                    id: s.id,
                    state: s.state,
                    healthy: (!health.unknown).then_some(health.healthy),
                    last_message: health.last_message,
                }
            })
            .collect())
    }

    /// The node's `etcd` service, `None` where it has none (a worker).
    pub fn etcd_service(&self) -> Result<Option<ServiceHealth>, TalosApiError> {
        Ok(self.services()?.into_iter().find(|s| s.id == "etcd"))
    }

    /// The node removes its own member from etcd and wipes its etcd data:
    /// before it is reset or replaced. Refused by etcd when the rest would
    /// lose quorum ("etcdserver: unhealthy cluster"; the real node retries
    /// that for up to 5 minutes before it answers).
    pub fn etcd_leave_cluster(&self) -> Result<(), TalosApiError> {
        const CALL: &str = "EtcdLeaveCluster";
        let response: proto::EtcdLeaveClusterResponse = self.call(
            path::ETCD_LEAVE_CLUSTER,
            CALL,
            proto::EtcdLeaveClusterRequest {},
        )?;
        self.first(CALL, response.messages).map(drop)
    }

    /// Removes a member by ID, asked of a live control plane: for a member
    /// whose node is gone. `NotFound` for an unknown ID.
    pub fn etcd_remove_member(&self, member_id: u64) -> Result<(), TalosApiError> {
        const CALL: &str = "EtcdRemoveMemberByID";
        let request = proto::EtcdRemoveMemberByIdRequest { member_id };
        let response: proto::EtcdRemoveMemberByIdResponse =
            self.call(path::ETCD_REMOVE_MEMBER_BY_ID, CALL, request)?;
        self.first(CALL, response.messages).map(drop)
    }

    /// Sends the node its whole machine config (the bytes the build wrote).
    /// With `dry_run` nothing changes and the outcome carries the node's
    /// diff; a config the node cannot take in `mode` is `InvalidArgument`
    /// with the node's reason.
    pub fn apply_configuration(
        &self,
        config: &[u8],
        mode: ApplyMode,
        dry_run: bool,
    ) -> Result<ApplyOutcome, TalosApiError> {
        const CALL: &str = "ApplyConfiguration";
        let request = proto::ApplyConfigurationRequest {
            data: config.to_vec(),
            mode: mode.to_proto() as i32,
            dry_run,
            try_mode_timeout: None,
        };
        let response: proto::ApplyConfigurationResponse =
            self.call(path::APPLY_CONFIGURATION, CALL, request)?;
        let message = self.first(CALL, response.messages)?;
        let mode = proto::ApplyMode::try_from(message.mode)
            .map(ApplyMode::from_proto)
            .map_err(|_| self.incomplete(CALL, "a known mode"))?;
        let diff = dry_run.then(|| dry_run_diff(&message.mode_details));
        Ok(ApplyOutcome {
            mode,
            details: message.mode_details,
            warnings: message.warnings,
            diff,
        })
    }

    /// Asks the node to install `request.image` and reboot into it (or stage
    /// it). The node answers once it has pulled and checked the image and,
    /// on a control plane without `force`/`preserve`, checked that etcd can
    /// lose it; the reboot follows the answer.
    pub fn upgrade(&self, request: &UpgradeRequest) -> Result<UpgradeAck, TalosApiError> {
        const CALL: &str = "Upgrade";
        let request = proto::UpgradeRequest {
            image: request.image.clone(),
            preserve: request.preserve,
            stage: request.stage,
            force: request.force,
            reboot_mode: if request.powercycle {
                proto::RebootMode::Powercycle
            } else {
                proto::RebootMode::Default
            } as i32,
        };
        let response: proto::UpgradeResponse = self.call(path::UPGRADE, CALL, request)?;
        let message = self.first(CALL, response.messages)?;
        Ok(UpgradeAck {
            ack: message.ack,
            actor_id: message.actor_id,
        })
    }

    /// One unary call on a new connection. A read whose connection was cut
    /// short (broken pipe, reset) is asked again, twice at most: with TLS
    /// 1.3 a node refuses our certificate after the handshake, and whether
    /// we read its alert or a broken pipe first is a race. A change is never
    /// sent twice: cut short, it is `Unreachable` and its effect unknown.
    fn call<Req, Resp>(
        &self,
        path: &'static str,
        call: &'static str,
        request: Req,
    ) -> Result<Resp, TalosApiError>
    where
        Req: prost::Message + Clone + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let read = READS.contains(&path);
        let mut tries = 0;
        loop {
            tries += 1;
            match self.call_once(path, call, request.clone()) {
                Err((_, true)) if read && tries < CUT_SHORT_TRIES => {
                    std::thread::sleep(CUT_SHORT_PAUSE);
                }
                Err((TalosApiError::Unreachable { server_name, connect, call, problem }, true)) => {
                    return Err(TalosApiError::Unreachable {
                        server_name,
                        connect,
                        call,
                        problem: format!(
                            "the node closed the connection under the call, as a node that refuses our client certificate does (check that the admin identity is of this cluster's bundle): {problem}"
                        ),
                    })
                }
                Err((error, _)) => return Err(error),
                Ok(response) => return Ok(response),
            }
        }
    }

    /// One call; on failure, whether the connection was cut short.
    fn call_once<Req, Resp>(
        &self,
        path: &'static str,
        call: &'static str,
        request: Req,
    ) -> Result<Resp, (TalosApiError, bool)>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut request = tonic::Request::new(request);
        if let Some(node) = &self.target {
            let value = MetadataValue::try_from(node.as_str())
                .map_err(|_| {
                    TalosApiError::Setup(format!("{node:?} cannot be a gRPC `node` header"))
                })
                .map_err(|e| (e, false))?;
            request.metadata_mut().insert("node", value);
        }
        let unreachable = |problem: String| TalosApiError::Unreachable {
            server_name: self.node().to_string(),
            connect: self.endpoint.connect,
            call,
            problem,
        };
        let tls = |problem: String| TalosApiError::Tls {
            server_name: self.endpoint.server_name.clone(),
            connect: self.endpoint.connect,
            problem,
        };
        let attempt = async {
            let channel = match self.grpc.connect().await {
                Ok(channel) => channel,
                Err(e) => return Err(Err(e)),
            };
            let mut grpc = tonic::client::Grpc::new(channel);
            if let Err(e) = grpc.ready().await {
                return Err(Err(e));
            }
            grpc.unary(
                request,
                PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::<Req, Resp>::default(),
            )
            .await
            .map_err(Ok)
        };
        let answer = self
            .runtime
            .block_on(async { tokio::time::timeout(self.timeout, attempt).await });
        let broken = |error: &(dyn std::error::Error + 'static)| match tls_problem(error) {
            Some(problem) => (tls(problem), false),
            None => (unreachable(chain(error)), cut_short(error)),
        };
        match answer {
            Err(_) => Err((
                unreachable(format!("no answer within {:?}", self.timeout)),
                false,
            )),
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(Err(transport))) => Err(broken(&transport)),
            // A status with a source was made here from a broken connection
            // (the node's answers carry none).
            Ok(Err(Ok(status))) if std::error::Error::source(&status).is_some() => {
                Err(broken(&status))
            }
            Ok(Err(Ok(status))) => Err((
                TalosApiError::Refused {
                    server_name: self.node().to_string(),
                    call,
                    code: status.code(),
                    message: status.message().to_string(),
                },
                false,
            )),
        }
    }

    /// The reply's one message, unless its metadata reports a failure.
    fn first<M: Reply>(&self, call: &'static str, messages: Vec<M>) -> Result<M, TalosApiError> {
        if let Some(metadata) = messages
            .iter()
            .filter_map(Reply::metadata)
            .find(|m| !m.error.is_empty())
        {
            return Err(TalosApiError::Failed {
                server_name: self.node().to_string(),
                call,
                message: if metadata.hostname.is_empty() {
                    metadata.error.clone()
                } else {
                    format!("{}: {}", metadata.hostname, metadata.error)
                },
            });
        }
        messages
            .into_iter()
            .next()
            .ok_or_else(|| self.incomplete(call, "a message"))
    }

    fn incomplete(&self, call: &'static str, missing: &'static str) -> TalosApiError {
        TalosApiError::Incomplete {
            server_name: self.node().to_string(),
            call,
            missing,
        }
    }
}

/// How often a read cut short is tried, and the pause between tries.
const CUT_SHORT_TRIES: u32 = 5;
const CUT_SHORT_PAUSE: Duration = Duration::from_millis(200);

/// The calls that change nothing, safe to send again.
const READS: [&str; 4] = [
    path::VERSION,
    path::SERVICE_LIST,
    path::ETCD_MEMBER_LIST,
    path::ETCD_STATUS,
];

/// A connection the peer closed under us: a broken pipe, a reset, or
/// hyper's "connection closed" before the answer.
fn cut_short(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.to_string() == "connection closed" {
            return true;
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::UnexpectedEof
            ) {
                return true;
            }
        }
        next = error.source();
    }
    false
}

fn hostname<M: Reply>(message: &M) -> String {
    message
        .metadata()
        .map(|m| m.hostname.clone())
        .unwrap_or_default()
}

/// The diff in a dry run's `mode_details`, which machined writes as
/// "Dry run summary:\n… (skipped in dry-run).\nConfig diff:\n\n<diff>" with
/// "No changes." for none (`generateDiff`, v1alpha1_server.go, v1.12.11).
fn dry_run_diff(details: &str) -> String {
    let diff = details
        .split_once("Config diff:\n\n")
        .map_or(details, |(_, diff)| diff);
    if diff.trim() == "No changes." {
        String::new()
    } else {
        diff.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn day_two_messages_use_the_field_numbers_of_machine_proto() {
        // ApplyConfigurationRequest: data = 1, mode = 4, dry_run = 5.
        let request = proto::ApplyConfigurationRequest {
            data: b"x".to_vec(),
            mode: proto::ApplyMode::Staged as i32,
            dry_run: true,
            try_mode_timeout: None,
        };
        assert_eq!(request.encode_to_vec(), [0x0a, 1, b'x', 0x20, 3, 0x28, 1]);
        // UpgradeRequest: image 1, preserve 2, stage 3, force 4, reboot_mode 5.
        let request = proto::UpgradeRequest {
            image: "i".into(),
            preserve: true,
            stage: true,
            force: true,
            reboot_mode: proto::RebootMode::Powercycle as i32,
        };
        assert_eq!(
            request.encode_to_vec(),
            [0x0a, 1, b'i', 0x10, 1, 0x18, 1, 0x20, 1, 0x28, 1]
        );
        // EtcdRemoveMemberByIDRequest: member_id = 1 (uint64).
        let request = proto::EtcdRemoveMemberByIdRequest { member_id: 300 };
        assert_eq!(request.encode_to_vec(), [0x08, 0xac, 0x02]);
        // EtcdMember: id 2, hostname 3, peer_urls 4, client_urls 5, is_learner 6.
        let member = [
            0x10, 7, 0x1a, 3, b'c', b'p', b'1', 0x22, 1, b'p', 0x2a, 1, b'c', 0x30, 1,
        ];
        let decoded = proto::EtcdMember::decode(member.as_slice()).unwrap();
        assert_eq!(
            (decoded.id, decoded.hostname.as_str(), decoded.is_learner),
            (7, "cp1", true)
        );
        assert_eq!(
            (decoded.peer_urls, decoded.client_urls),
            (vec!["p".into()], vec!["c".into()])
        );
        // EtcdMembers: members = 3 (2 is the legacy list of names, skipped).
        let mut members = vec![0x12, 1, b'x', 0x1a, member.len() as u8];
        members.extend(member);
        let decoded = proto::EtcdMembers::decode(members.as_slice()).unwrap();
        assert_eq!(decoded.members.len(), 1);
        // ApplyConfiguration: warnings 2, mode 3, mode_details 4.
        let reply = [0x12, 1, b'w', 0x18, 2, 0x22, 1, b'd'];
        let decoded = proto::ApplyConfiguration::decode(reply.as_slice()).unwrap();
        assert_eq!(decoded.warnings, ["w"]);
        assert_eq!(decoded.mode, proto::ApplyMode::NoReboot as i32);
        assert_eq!(decoded.mode_details, "d");
        // EtcdMemberStatus: leader 4, is_learner 9, member_id 10.
        let status = [0x20, 5, 0x48, 1, 0x50, 6];
        let decoded = proto::EtcdMemberStatus::decode(status.as_slice()).unwrap();
        assert_eq!(
            (decoded.leader, decoded.is_learner, decoded.member_id),
            (5, true, 6)
        );
        // VersionInfo: tag = 1; Version: version 2, platform 3.
        let version = [0x12, 3, 0x0a, 1, b'v', 0x1a, 3, 0x0a, 1, b'n'];
        let decoded = proto::Version::decode(version.as_slice()).unwrap();
        assert_eq!(decoded.version.unwrap().tag, "v");
        assert_eq!(decoded.platform.unwrap().name, "n");
        // ServiceInfo: id 1, state 2, health 4 { unknown 1, healthy 2 }.
        let service = [0x0a, 1, b'e', 0x12, 1, b'R', 0x22, 2, 0x10, 1];
        let decoded = proto::ServiceInfo::decode(service.as_slice()).unwrap();
        assert!(decoded.health.unwrap().healthy);
    }

    #[test]
    fn the_dry_run_diff_is_cut_from_the_summary() {
        let details = "Dry run summary:\nApplied configuration without a reboot (skipped in dry-run).\nConfig diff:\n\n--- a\n+++ b\n-x\n+y\n";
        assert_eq!(dry_run_diff(details), "--- a\n+++ b\n-x\n+y\n");
        let none = "Dry run summary:\nApplied configuration with a reboot (skipped in dry-run).\nConfig diff:\n\nNo changes.";
        assert_eq!(dry_run_diff(none), "");
    }
}
