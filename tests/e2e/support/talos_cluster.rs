//! A simulated Talos cluster behind stand-in apids: N nodes (control planes
//! first, then workers), each a tonic server with mutual TLS on its own
//! local port (its certificate, from the bundle's OS CA, names the node's
//! address `10.10.0.1X`), all sharing one simulated etcd. It serves the
//! day-2 calls of `machine.MachineService` as Talos v1.12.11 answers them
//! (`internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go`,
//! `internal/pkg/etcd/etcd.go`, etcd's strict reconfiguration check):
//!
//! - the client certificate must come from the OS CA and carry a role that
//!   `machined.go`'s rules allow for the call, else `PermissionDenied` "not
//!   authorized"; unknown methods are `Unimplemented` as grpc-go says it;
//!   etcd calls on a worker are `Unimplemented`;
//! - the gRPC metadata `node` forwards the call to another node by address
//!   or hostname (`Unavailable` when that node is down);
//! - etcd: members with IDs; a member is healthy while its node is up, runs
//!   it and has no `member_unhealthy` fault; quorum is healthy voters ≥
//!   voters/2+1; without it, etcd calls fail with "etcdserver: no leader";
//!   removing a healthy voter that would leave no healthy majority fails with
//!   "etcdserver: unhealthy cluster"; a node replaced without leaving leaves
//!   its member behind, dead (a replacement with the same hostname removes
//!   it when it joins, as Talos does);
//! - `ApplyConfiguration` parses the YAML, needs the v1alpha1 document with
//!   `machine.type`, decides live vs reboot by `CanApplyImmediate`'s list,
//!   returns a dry run's diff, and reboots the node in REBOOT mode;
//! - `Upgrade` checks the image reference (a tag `vX.Y.Z`, not marked
//!   missing) and, on a control plane without `force`/`preserve`, etcd as
//!   `ValidateForUpgrade` does, then reboots the node into the image's tag;
//! - a rebooting node stops listening (connections refused) for its reboot
//!   time, then comes back with its staged config and version — or, with the
//!   `never_return` fault, never;
//! - a config applied live that changes `machine.kubelet` restarts the
//!   kubelet service (running, unhealthy, for `KUBELET_RESTART`), as
//!   Talos's kubelet controller does;
//! - Kubernetes' version skew is watched, not enforced (a real cluster
//!   runs on, degraded): whenever a node's config changes, a kubelet newer
//!   than any control plane's API server, or two API servers a minor or
//!   more apart, is recorded as a skew violation (`skew_violations`).
//!
//! Tests drive it through `TalosCluster`'s methods (faults, power, replace)
//! and read it back (`members`, `has_quorum`, `version`, `config`, `calls`).

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::Status;
use waddlec::net::talos_api::TalosEndpoint;
use waddlec::secrets::talos::Bundle;

use super::apid::{node_certificate_for, pem_text};
use super::free_addr;
use super::machine_proto as pb;

/// The Talos version every node runs at the start.
pub const START_VERSION: &str = "v1.12.0";
/// The etcd version the members report.
const ETCD_VERSION: &str = "3.6.5";
/// How long a reboot takes unless set per node.
pub const REBOOT_TIME: Duration = Duration::from_millis(1500);
/// How long the kubelet is unhealthy after a live change of its config.
const KUBELET_RESTART: Duration = Duration::from_millis(600);
/// Between the answer to a call that reboots and the node going down.
const ANSWER_BEFORE_REBOOT: Duration = Duration::from_millis(150);

/// Roles for each call, from `internal/app/machined/pkg/system/services/machined.go`.
const ADMIN: &[&str] = &["os:admin"];
const READERS: &[&str] = &["os:admin", "os:operator", "os:reader"];
const ETCD_READERS: &[&str] = &["os:admin", "os:operator", "os:reader", "os:etcd:backup"];

/// `machine.*` paths `CanApplyImmediate` takes live (v1alpha1_runtime.go, v1.12.11).
const LIVE_MACHINE_KEYS: &[&str] = &[
    "ca",
    "acceptedCAs",
    "time",
    "certSANs",
    "install",
    "network",
    "sysfs",
    "sysctls",
    "logging",
    "controlPlane",
    "kubelet",
    "kernel",
    "registries",
    "pods",
    "seccompProfiles",
    "nodeAnnotations",
    "nodeLabels",
    "nodeTaints",
];
/// `machine.features.*` taken live.
const LIVE_FEATURE_KEYS: &[&str] = &[
    "kubernetesTalosAPIAccess",
    "kubePrism",
    "hostDNS",
    "imageCache",
    "nodeAddressSortAlgorithm",
];

/// One etcd member as the simulation holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimMember {
    pub id: u64,
    pub hostname: String,
    pub is_learner: bool,
    /// Its node is up, runs this member, and has no `member_unhealthy` fault.
    pub healthy: bool,
}

/// One call as a node's apid saw it.
#[derive(Clone, Debug)]
pub struct SimCall {
    /// The node whose apid took the call.
    pub entry: usize,
    /// The node it was for (differs with the `node` header).
    pub target: Option<usize>,
    /// The method, e.g. `EtcdLeaveCluster`.
    pub method: String,
    /// The client certificate's organisations (its roles).
    pub roles: Vec<String>,
}

struct SimNode {
    /// Address, and the name in its certificate.
    name: String,
    hostname: String,
    addr: SocketAddr,
    control_plane: bool,
    up: bool,
    /// Counts boots; the server of an old boot stops.
    boot: u64,
    version: String,
    config: Vec<u8>,
    /// Applied at the next boot (REBOOT and STAGED modes).
    staged_config: Option<Vec<u8>>,
    /// Booted into at the next boot (an upgrade, staged or not).
    staged_version: Option<String>,
    /// A reboot is under way: `ApplyConfiguration` is refused until it ends.
    rebooting: bool,
    /// The etcd member this node's etcd runs as.
    member: Option<u64>,
    /// Its etcd was stopped by `EtcdLeaveCluster` (until the next boot).
    etcd_stopped: bool,
    /// The kubelet restarts (a live change of `machine.kubelet`) until then.
    kubelet_restart_until: Option<Instant>,
    // Faults.
    reboot_time: Duration,
    never_returns: bool,
    member_unhealthy: bool,
}

struct Sim {
    nodes: Vec<SimNode>,
    /// etcd's member list: (id, hostname, learner).
    members: Vec<(u64, String, bool)>,
    next_member: u64,
    missing_images: BTreeSet<String>,
    calls: Vec<SimCall>,
    /// Kubernetes skew seen as configs changed (see the module doc).
    skew_violations: Vec<String>,
}

impl Sim {
    /// Records a skew violation if the nodes' configs now break the
    /// version skew policy (only configs that name the images count).
    fn check_skew(&mut self, cause: &str) {
        let image_version = |config: &[u8], key: &str| {
            let text = String::from_utf8_lossy(config);
            text.lines()
                .filter_map(|line| line.trim().strip_prefix("image: "))
                .find(|image| image.contains(key))
                .and_then(|image| image.rsplit_once(":v"))
                .and_then(|(_, version)| {
                    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
                    Some((parts.next()??, parts.next()??, parts.next()??))
                })
        };
        let kubelets: Vec<(String, (u32, u32, u32))> = self
            .nodes
            .iter()
            .filter_map(|n| Some((n.hostname.clone(), image_version(&n.config, "/kubelet:")?)))
            .collect();
        let servers: Vec<(String, (u32, u32, u32))> = self
            .nodes
            .iter()
            .filter(|n| n.control_plane)
            .filter_map(|n| {
                Some((
                    n.hostname.clone(),
                    image_version(&n.config, "/kube-apiserver:")?,
                ))
            })
            .collect();
        let Some(oldest) = servers.iter().map(|s| s.1).min() else {
            return;
        };
        let newest = servers.iter().map(|s| s.1).max().unwrap_or(oldest);
        if newest.1 > oldest.1 + 1 {
            self.skew_violations.push(format!(
                "{cause}: API servers {servers:?} are more than one minor apart"
            ));
        }
        for (node, kubelet) in kubelets {
            if kubelet > oldest {
                self.skew_violations.push(format!(
                    "{cause}: the kubelet on {node} ({kubelet:?}) is newer than an API server ({servers:?})"
                ));
            }
        }
    }

    fn member_healthy(&self, id: u64) -> bool {
        self.nodes
            .iter()
            .any(|n| n.up && n.member == Some(id) && !n.member_unhealthy)
    }

    fn has_quorum(&self) -> bool {
        let voters: Vec<u64> = self.members.iter().filter(|m| !m.2).map(|m| m.0).collect();
        let healthy = voters.iter().filter(|id| self.member_healthy(**id)).count();
        !voters.is_empty() && healthy > voters.len() / 2
    }

    fn new_member_id(&mut self) -> u64 {
        self.next_member += 1;
        // Spread like etcd's random IDs, deterministic for a test.
        self.next_member.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1
    }

    /// etcd's `mayRemoveMember`: a learner or a member not active may go; a
    /// healthy voter only if the rest keep a healthy majority.
    fn may_remove(&self, id: u64) -> Result<(), &'static str> {
        let learner = self.members.iter().any(|m| m.0 == id && m.2);
        if learner || !self.member_healthy(id) {
            return Ok(());
        }
        let voters: Vec<u64> = self.members.iter().filter(|m| !m.2).map(|m| m.0).collect();
        let active = voters.iter().filter(|v| self.member_healthy(**v)).count();
        if active - 1 < 1 + (voters.len() - 1) / 2 {
            return Err("etcdserver: unhealthy cluster");
        }
        Ok(())
    }

    fn remove_member(&mut self, id: u64) {
        self.members.retain(|m| m.0 != id);
        for node in &mut self.nodes {
            if node.member == Some(id) {
                node.member = None;
            }
        }
    }

    /// Control planes up with an empty etcd join once there is quorum,
    /// first removing a member with their own hostname (`etcd.go`).
    fn settle(&mut self) {
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            if !(node.up && node.control_plane && node.member.is_none() && !node.etcd_stopped) {
                continue;
            }
            if !self.has_quorum() {
                continue;
            }
            let hostname = node.hostname.clone();
            let stale: Vec<u64> = self
                .members
                .iter()
                .filter(|m| m.1 == hostname)
                .map(|m| m.0)
                .collect();
            for id in stale {
                self.remove_member(id);
            }
            let id = self.new_member_id();
            self.members.push((id, hostname, false));
            self.nodes[i].member = Some(id);
        }
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.name == name || n.hostname == name)
    }

    fn leader(&self) -> u64 {
        self.members
            .iter()
            .filter(|m| !m.2 && self.member_healthy(m.0))
            .map(|m| m.0)
            .min()
            .unwrap_or(0)
    }

    fn sim_members(&self) -> Vec<SimMember> {
        self.members
            .iter()
            .map(|(id, hostname, learner)| SimMember {
                id: *id,
                hostname: hostname.clone(),
                is_learner: *learner,
                healthy: self.member_healthy(*id),
            })
            .collect()
    }
}

struct Shared {
    sim: Mutex<Sim>,
    stopped: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Sim> {
        self.sim.lock().unwrap()
    }
}

/// A running simulated cluster; its servers stop on drop.
pub struct TalosCluster {
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for TalosCluster {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// The minimal machine config a simulated node starts with.
pub fn machine_config(control_plane: bool, hostname: &str) -> String {
    let kind = if control_plane {
        "controlplane"
    } else {
        "worker"
    };
    format!(
        "version: v1alpha1\nmachine:\n  type: {kind}\n  network:\n    hostname: {hostname}\n  \
         kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.35.0\ncluster:\n  clusterName: sim\n"
    )
}

impl TalosCluster {
    /// `control_planes` control planes (`cp1`…, members of one healthy etcd)
    /// and `workers` workers (`w1`…), all up on `START_VERSION`.
    pub fn start(bundle: &Bundle, control_planes: usize, workers: usize) -> TalosCluster {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut sim = Sim {
            nodes: Vec::new(),
            members: Vec::new(),
            next_member: 0,
            missing_images: BTreeSet::new(),
            calls: Vec::new(),
            skew_violations: Vec::new(),
        };
        for i in 0..control_planes + workers {
            let control_plane = i < control_planes;
            let hostname = if control_plane {
                format!("cp{}", i + 1)
            } else {
                format!("w{}", i - control_planes + 1)
            };
            let member = control_plane.then(|| {
                let id = sim.new_member_id();
                sim.members.push((id, hostname.clone(), false));
                id
            });
            sim.nodes.push(SimNode {
                name: format!("10.10.0.{}", 10 + i),
                config: machine_config(control_plane, &hostname).into_bytes(),
                hostname,
                addr: free_addr("127.0.0.1"),
                control_plane,
                up: true,
                boot: 1,
                version: START_VERSION.into(),
                staged_config: None,
                staged_version: None,
                rebooting: false,
                member,
                etcd_stopped: false,
                kubelet_restart_until: None,
                reboot_time: REBOOT_TIME,
                never_returns: false,
                member_unhealthy: false,
            });
        }
        let tls: Vec<ServerTlsConfig> = sim
            .nodes
            .iter()
            .map(|node| {
                let (cert, key) = node_certificate_for(bundle, &node.name);
                ServerTlsConfig::new()
                    .identity(Identity::from_pem(cert, key))
                    .client_ca_root(Certificate::from_pem(pem_text(&bundle.certs.os.crt)))
            })
            .collect();
        let addrs: Vec<SocketAddr> = sim.nodes.iter().map(|n| n.addr).collect();
        let shared = Arc::new(Shared {
            sim: Mutex::new(sim),
            stopped: AtomicBool::new(false),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        for (i, tls) in tls.into_iter().enumerate() {
            runtime.spawn(supervise(shared.clone(), i, tls));
        }
        let start = Instant::now();
        for addr in addrs {
            while TcpStream::connect(addr).is_err() {
                assert!(start.elapsed() < Duration::from_secs(10), "apid on {addr}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        TalosCluster {
            shared,
            runtime: Some(runtime),
        }
    }

    fn sim(&self) -> MutexGuard<'_, Sim> {
        self.shared.lock()
    }

    /// How the client reaches node `i` directly.
    pub fn endpoint(&self, i: usize) -> TalosEndpoint {
        let sim = self.sim();
        TalosEndpoint {
            connect: sim.nodes[i].addr,
            server_name: sim.nodes[i].name.clone(),
        }
    }

    /// Node `i`'s address: its certificate's name, and what `node` targets.
    pub fn name(&self, i: usize) -> String {
        self.sim().nodes[i].name.clone()
    }

    pub fn hostname(&self, i: usize) -> String {
        self.sim().nodes[i].hostname.clone()
    }

    /// etcd's members now, with their health.
    pub fn members(&self) -> Vec<SimMember> {
        let mut sim = self.sim();
        sim.settle();
        sim.sim_members()
    }

    /// The member node `i`'s etcd runs as, if any.
    pub fn member_of(&self, i: usize) -> Option<u64> {
        self.sim().nodes[i].member
    }

    pub fn has_quorum(&self) -> bool {
        self.sim().has_quorum()
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.sim().nodes[i].up
    }

    /// The Talos version node `i` runs.
    pub fn version(&self, i: usize) -> String {
        self.sim().nodes[i].version.clone()
    }

    /// The machine config node `i` runs.
    pub fn config(&self, i: usize) -> Vec<u8> {
        self.sim().nodes[i].config.clone()
    }

    /// The config node `i` will run after its next boot, if staged.
    pub fn staged_config(&self, i: usize) -> Option<Vec<u8>> {
        self.sim().nodes[i].staged_config.clone()
    }

    /// Every call so far, in order.
    /// Every Kubernetes skew seen so far (see the module doc).
    pub fn skew_violations(&self) -> Vec<String> {
        self.sim().skew_violations.clone()
    }

    pub fn calls(&self) -> Vec<SimCall> {
        self.sim().calls.clone()
    }

    /// Fault: node `i`'s reboots take `time` (default `REBOOT_TIME`).
    pub fn set_reboot_time(&self, i: usize, time: Duration) {
        self.sim().nodes[i].reboot_time = time;
    }

    /// Fault: node `i` goes down at its next reboot and never comes back.
    pub fn never_return(&self, i: usize) {
        self.sim().nodes[i].never_returns = true;
    }

    /// Fault: node `i`'s etcd member is unhealthy (while `unhealthy`).
    pub fn set_member_unhealthy(&self, i: usize, unhealthy: bool) {
        self.sim().nodes[i].member_unhealthy = unhealthy;
    }

    /// Fault: the installer image cannot be pulled.
    pub fn missing_image(&self, image: &str) {
        self.sim().missing_images.insert(image.to_string());
    }

    /// Node `i` loses power: down at once, its member stays (unhealthy).
    pub fn power_off(&self, i: usize) {
        self.sim().nodes[i].up = false;
    }

    /// Node `i` boots (staged config and version take effect).
    pub fn power_on(&self, i: usize) {
        boot(&mut self.sim(), i);
    }

    /// Node `i`'s VM is destroyed and recreated as `hostname` without
    /// leaving etcd first: it boots with an empty etcd and joins as a new
    /// member; its old member stays behind, dead, unless `hostname` is the
    /// old one (Talos then removes it on join).
    pub fn replace_without_leave(&self, i: usize, hostname: &str) {
        let mut sim = self.sim();
        let node = &mut sim.nodes[i];
        node.member = None;
        node.hostname = hostname.to_string();
        node.config = machine_config(node.control_plane, hostname).into_bytes();
        boot(&mut sim, i);
    }

    /// Waits until node `i` is up (true) or down (false), for at most `limit`.
    pub fn wait_for(&self, i: usize, up: bool, limit: Duration) -> bool {
        let start = Instant::now();
        while self.is_up(i) != up {
            if start.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

/// Node `i` comes up: what was staged takes effect.
fn boot(sim: &mut Sim, i: usize) {
    let node = &mut sim.nodes[i];
    let new_config = node.staged_config.take();
    let changed = new_config.is_some();
    if let Some(config) = new_config {
        node.config = config;
    }
    if let Some(version) = node.staged_version.take() {
        node.version = version;
    }
    node.rebooting = false;
    node.etcd_stopped = false;
    node.boot += 1;
    node.up = true;
    if changed {
        let cause = format!("{} booted its new config", node.hostname);
        sim.check_skew(&cause);
    }
    sim.settle();
}

/// Node `i` reboots, soon after the answer to the call that asked for it.
fn reboot_later(shared: Arc<Shared>, i: usize) {
    tokio::spawn(async move {
        tokio::time::sleep(ANSWER_BEFORE_REBOOT).await;
        let (time, never) = {
            let mut sim = shared.lock();
            let node = &mut sim.nodes[i];
            node.up = false;
            (node.reboot_time, node.never_returns)
        };
        if never {
            return;
        }
        tokio::time::sleep(time).await;
        boot(&mut shared.lock(), i);
    });
}

/// Serves node `i` while it is up, on its address; stops at shutdown.
async fn supervise(shared: Arc<Shared>, i: usize, tls: ServerTlsConfig) {
    let pause = Duration::from_millis(20);
    while !shared.stopped.load(Ordering::SeqCst) {
        let (up, boot, addr) = {
            let sim = shared.lock();
            let node = &sim.nodes[i];
            (node.up, node.boot, node.addr)
        };
        if !up {
            tokio::time::sleep(pause).await;
            continue;
        }
        let watch = shared.clone();
        let down = async move {
            loop {
                tokio::time::sleep(pause).await;
                let sim = watch.lock();
                let node = &sim.nodes[i];
                if !node.up || node.boot != boot || watch.stopped.load(Ordering::SeqCst) {
                    break;
                }
            }
        };
        let server = Server::builder().tls_config(tls.clone()).unwrap();
        let service = NodeApid {
            shared: shared.clone(),
            node: i,
        };
        if let Err(e) = server.serve_with_shutdown(addr, service, down).await {
            eprintln!("stand-in apid {i} on {addr}: {e}");
            tokio::time::sleep(pause).await;
        }
    }
}

/// One node's apid.
#[derive(Clone)]
struct NodeApid {
    shared: Arc<Shared>,
    node: usize,
}

impl Service<http::Request<Body>> for NodeApid {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let apid = self.clone();
        Box::pin(async move { Ok(apid.dispatch(request).await) })
    }
}

impl NodeApid {
    async fn dispatch(self, request: http::Request<Body>) -> http::Response<Body> {
        let path = request.uri().path().to_string();
        let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
            return Status::unimplemented(format!("malformed method name: {path:?}")).into_http();
        };
        if service != "machine.MachineService" {
            return Status::unimplemented(format!("unknown service {service}")).into_http();
        }
        let method = method.to_string();
        macro_rules! serve {
            ($roles:expr, $handler:ident) => {{
                let apid = self.clone();
                unary(request, move |r| {
                    let target = apid.admit(&method, $roles, &r)?;
                    apid.$handler(target, r.into_inner())
                })
                .await
            }};
        }
        match method.as_str() {
            "Version" => serve!(READERS, version),
            "ServiceList" => serve!(READERS, service_list),
            "EtcdMemberList" => serve!(ETCD_READERS, etcd_member_list),
            "EtcdStatus" => serve!(ETCD_READERS, etcd_status),
            "EtcdLeaveCluster" => serve!(ADMIN, etcd_leave_cluster),
            "EtcdRemoveMemberByID" => serve!(ADMIN, etcd_remove_member),
            "ApplyConfiguration" => serve!(ADMIN, apply_configuration),
            "Upgrade" => serve!(ADMIN, upgrade),
            other => Status::unimplemented(format!(
                "unknown method {other} for service machine.MachineService"
            ))
            .into_http(),
        }
    }

    /// Records the call, checks the role, and finds the node it is for.
    fn admit<R>(
        &self,
        method: &str,
        allowed: &[&str],
        request: &tonic::Request<R>,
    ) -> Result<usize, Status> {
        let roles = request
            .peer_certs()
            .and_then(|certs| {
                let (_, cert) = x509_parser::parse_x509_certificate(certs.first()?).ok()?;
                Some(
                    cert.subject()
                        .iter_organization()
                        .filter_map(|o| o.as_str().ok().map(str::to_string))
                        .collect::<Vec<_>>(),
                )
            })
            .unwrap_or_default();
        let header = request
            .metadata()
            .get("node")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut sim = self.shared.lock();
        let target = match &header {
            None => Some(self.node),
            Some(name) => sim.find(name),
        };
        sim.calls.push(SimCall {
            entry: self.node,
            target,
            method: method.to_string(),
            roles: roles.clone(),
        });
        if !roles.iter().any(|r| allowed.contains(&r.as_str())) {
            return Err(Status::permission_denied("not authorized"));
        }
        sim.settle();
        let Some(target) = target else {
            let name = header.unwrap_or_default();
            return Err(Status::unavailable(format!(
                "connection error: desc = \"transport: Error while dialing: dial tcp: lookup {name}: no such host\""
            )));
        };
        let node = &sim.nodes[target];
        // Between going down and its listener closing, a node refuses.
        if !node.up && target == self.node {
            return Err(Status::unavailable("the node is going down"));
        }
        if !node.up {
            return Err(Status::unavailable(format!(
                "connection error: desc = \"transport: Error while dialing: dial tcp {}:50000: connect: connection refused\"",
                node.name
            )));
        }
        Ok(target)
    }

    fn version(&self, t: usize, _: pb::Empty) -> Result<pb::VersionResponse, Status> {
        let sim = self.shared.lock();
        Ok(pb::VersionResponse {
            messages: vec![pb::Version {
                metadata: None,
                version: Some(pb::VersionInfo {
                    tag: sim.nodes[t].version.clone(),
                    sha: "0000000".into(),
                    os: "linux".into(),
                    arch: "amd64".into(),
                    ..Default::default()
                }),
                platform: Some(pb::PlatformInfo {
                    name: "nocloud".into(),
                    mode: "cloud".into(),
                }),
            }],
        })
    }

    fn service_list(&self, t: usize, _: pb::Empty) -> Result<pb::ServiceListResponse, Status> {
        let sim = self.shared.lock();
        let node = &sim.nodes[t];
        let running = |id: &str| pb::ServiceInfo {
            id: id.into(),
            state: "Running".into(),
            health: Some(pb::ServiceHealth {
                unknown: false,
                healthy: true,
                last_message: String::new(),
            }),
        };
        let mut services = vec![running("apid"), running("machined")];
        if node.control_plane {
            services.push(match node.member {
                Some(id) if sim.member_healthy(id) => running("etcd"),
                Some(_) => pb::ServiceInfo {
                    id: "etcd".into(),
                    state: "Running".into(),
                    health: Some(pb::ServiceHealth {
                        unknown: false,
                        healthy: false,
                        last_message: "context deadline exceeded".into(),
                    }),
                },
                None if node.etcd_stopped => pb::ServiceInfo {
                    id: "etcd".into(),
                    state: "Finished".into(),
                    health: Some(pb::ServiceHealth {
                        unknown: true,
                        ..Default::default()
                    }),
                },
                None => pb::ServiceInfo {
                    id: "etcd".into(),
                    state: "Preparing".into(),
                    health: Some(pb::ServiceHealth {
                        unknown: true,
                        ..Default::default()
                    }),
                },
            });
        }
        let restarting = node
            .kubelet_restart_until
            .is_some_and(|until| Instant::now() < until);
        services.push(if restarting {
            pb::ServiceInfo {
                id: "kubelet".into(),
                state: "Running".into(),
                health: Some(pb::ServiceHealth {
                    unknown: false,
                    healthy: false,
                    last_message: "Get \"http://127.0.0.1:10248/healthz\": dial tcp 127.0.0.1:10248: connect: connection refused".into(),
                }),
            }
        } else {
            running("kubelet")
        });
        Ok(pb::ServiceListResponse {
            messages: vec![pb::ServiceList {
                metadata: None,
                services,
            }],
        })
    }

    /// `checkControlplane` and a leader, as every etcd call needs.
    fn etcd_ready(sim: &Sim, t: usize, api: &str, prefix: &str) -> Result<(), Status> {
        if !sim.nodes[t].control_plane {
            return Err(Status::unimplemented(format!(
                "{api} is only available on control plane nodes"
            )));
        }
        if !sim.has_quorum() {
            return Err(Status::unknown(format!("{prefix}etcdserver: no leader")));
        }
        Ok(())
    }

    fn etcd_member_list(
        &self,
        t: usize,
        _: pb::EtcdMemberListRequest,
    ) -> Result<pb::EtcdMemberListResponse, Status> {
        let sim = self.shared.lock();
        Self::etcd_ready(&sim, t, "member list", "")?;
        let member = |(id, hostname, learner): &(u64, String, bool)| {
            let ip = sim
                .nodes
                .iter()
                .find(|n| n.member == Some(*id) || n.hostname == *hostname)
                .map_or("0.0.0.0".to_string(), |n| n.name.clone());
            pb::EtcdMember {
                id: *id,
                hostname: hostname.clone(),
                peer_urls: vec![format!("https://{ip}:2380")],
                client_urls: vec![format!("https://{ip}:2379")],
                is_learner: *learner,
            }
        };
        Ok(pb::EtcdMemberListResponse {
            messages: vec![pb::EtcdMembers {
                metadata: None,
                legacy_members: sim.members.iter().map(|m| m.1.clone()).collect(),
                members: sim.members.iter().map(member).collect(),
            }],
        })
    }

    fn etcd_status(&self, t: usize, _: pb::Empty) -> Result<pb::EtcdStatusResponse, Status> {
        let sim = self.shared.lock();
        let node = &sim.nodes[t];
        if !node.control_plane {
            return Err(Status::unimplemented(
                "etcd status is only available on control plane nodes",
            ));
        }
        let Some(id) = node.member else {
            return Err(Status::unknown(
                "failed to query etcd status: dial tcp 127.0.0.1:2379: connect: connection refused",
            ));
        };
        if !sim.member_healthy(id) || !sim.has_quorum() {
            return Err(Status::unknown(
                "failed to query etcd status: context deadline exceeded",
            ));
        }
        let learner = sim.members.iter().any(|m| m.0 == id && m.2);
        Ok(pb::EtcdStatusResponse {
            messages: vec![pb::EtcdStatus {
                metadata: None,
                member_status: Some(pb::EtcdMemberStatus {
                    protocol_version: ETCD_VERSION.into(),
                    storage_version: "3.6.0".into(),
                    leader: sim.leader(),
                    raft_term: 2,
                    is_learner: learner,
                    member_id: id,
                    ..Default::default()
                }),
            }],
        })
    }

    fn etcd_leave_cluster(
        &self,
        t: usize,
        _: pb::EtcdLeaveClusterRequest,
    ) -> Result<pb::EtcdLeaveClusterResponse, Status> {
        let mut sim = self.shared.lock();
        Self::etcd_ready(&sim, t, "etcd leave", "failed to leave cluster: ")?;
        // The real node retries "unhealthy cluster" for 5 minutes first.
        if let Some(id) = sim.nodes[t].member {
            sim.may_remove(id)
                .map_err(|e| Status::unknown(format!("failed to leave cluster: {e}")))?;
            sim.remove_member(id);
        }
        sim.nodes[t].etcd_stopped = true;
        Ok(pb::EtcdLeaveClusterResponse {
            messages: vec![pb::MetadataOnly::default()],
        })
    }

    fn etcd_remove_member(
        &self,
        t: usize,
        request: pb::EtcdRemoveMemberByIdRequest,
    ) -> Result<pb::EtcdRemoveMemberByIdResponse, Status> {
        let mut sim = self.shared.lock();
        Self::etcd_ready(&sim, t, "etcd remove member", "failed to remove member: ")?;
        let id = request.member_id;
        if !sim.members.iter().any(|m| m.0 == id) {
            return Err(Status::not_found("etcdserver: member not found"));
        }
        sim.may_remove(id)
            .map_err(|e| Status::unknown(format!("failed to remove member: {e}")))?;
        sim.remove_member(id);
        Ok(pb::EtcdRemoveMemberByIdResponse {
            messages: vec![pb::MetadataOnly::default()],
        })
    }

    fn apply_configuration(
        &self,
        t: usize,
        request: pb::ApplyConfigurationRequest,
    ) -> Result<pb::ApplyConfigurationResponse, Status> {
        let mut sim = self.shared.lock();
        if sim.nodes[t].rebooting {
            return Err(Status::failed_precondition(
                "configuration was already applied and node is rebooting, cannot apply more configuration changes until next reboot",
            ));
        }
        let new = v1alpha1(&request.data)?;
        let current = v1alpha1(&sim.nodes[t].config)?;
        let mut mode = request.mode;
        let mut details = "Applied configuration with a reboot".to_string();
        let immediate = can_apply_immediate(&current, &new);
        match mode {
            pb::mode::TRY | pb::mode::NO_REBOOT => {
                immediate.map_err(Status::invalid_argument)?;
                details = "Applied configuration without a reboot".into();
            }
            pb::mode::STAGED => {
                details = "Staged configuration to be applied after the next reboot".into();
            }
            pb::mode::AUTO => match immediate {
                Ok(()) => {
                    mode = pb::mode::NO_REBOOT;
                    details = "Applied configuration without a reboot".into();
                }
                Err(why) => {
                    mode = pb::mode::REBOOT;
                    details = format!("Applied configuration with a reboot: {why}");
                }
            },
            _ => {}
        }
        let reply = |mode, details| pb::ApplyConfigurationResponse {
            messages: vec![pb::ApplyConfiguration {
                metadata: None,
                warnings: Vec::new(),
                mode,
                mode_details: details,
            }],
        };
        if request.dry_run {
            let old = String::from_utf8_lossy(&sim.nodes[t].config).into_owned();
            let new = String::from_utf8_lossy(&request.data).into_owned();
            let diff = if old == new {
                "No changes.".to_string()
            } else {
                similar::TextDiff::from_lines(&old, &new)
                    .unified_diff()
                    .header("a", "b")
                    .to_string()
            };
            let summary = details.split(": ").next().unwrap_or_default().to_string();
            return Ok(reply(
                mode,
                format!(
                    "Dry run summary:\n{summary} (skipped in dry-run).\nConfig diff:\n\n{diff}"
                ),
            ));
        }
        let kubelet_changed =
            current.pointer("/machine/kubelet") != new.pointer("/machine/kubelet");
        let node = &mut sim.nodes[t];
        match mode {
            pb::mode::TRY | pb::mode::NO_REBOOT => {
                node.config = request.data;
                if kubelet_changed {
                    node.kubelet_restart_until = Some(Instant::now() + KUBELET_RESTART);
                }
                let cause = format!("{} applied a config live", node.hostname);
                sim.check_skew(&cause);
            }
            pb::mode::STAGED => node.staged_config = Some(request.data),
            pb::mode::REBOOT => {
                node.staged_config = Some(request.data);
                node.rebooting = true;
                reboot_later(self.shared.clone(), t);
            }
            other => {
                return Err(Status::unknown(format!(
                    "incorrect mode '{}' specified for the apply config call",
                    pb::mode::name(other)
                )))
            }
        }
        Ok(reply(mode, details))
    }

    fn upgrade(
        &self,
        t: usize,
        request: pb::UpgradeRequest,
    ) -> Result<pb::UpgradeResponse, Status> {
        let mut sim = self.shared.lock();
        let image = request.image;
        let tag = image.rsplit_once(':').map(|(_, tag)| tag).filter(|tag| {
            let parts: Vec<&str> = tag.trim_start_matches('v').split('.').collect();
            tag.starts_with('v')
                && parts.len() == 3
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        });
        let Some(tag) = tag.filter(|_| !sim.missing_images.contains(&image)) else {
            return Err(Status::unknown(format!(
                "error validating installer image {image:?}: failed to pull image {image:?}: not found"
            )));
        };
        if sim.nodes[t].control_plane && !request.force && !request.preserve {
            let refuse =
                |why: String| Status::unknown(format!("error validating etcd for upgrade: {why}"));
            if !sim.has_quorum() {
                return Err(refuse("etcdserver: no leader".into()));
            }
            if sim.members.len() == 2 {
                return Err(refuse(
                    "etcd member count(2) is insufficient to maintain quorum if upgrade commences"
                        .into(),
                ));
            }
            if let Some(sick) = sim.members.iter().find(|m| !sim.member_healthy(m.0)) {
                return Err(refuse(format!(
                    "etcd member {:016x} is not healthy; all members must be healthy to perform an upgrade: context deadline exceeded",
                    sick.0
                )));
            }
        }
        let node = &mut sim.nodes[t];
        node.staged_version = Some(tag.to_string());
        if !request.stage {
            reboot_later(self.shared.clone(), t);
        }
        let boot = node.boot;
        Ok(pb::UpgradeResponse {
            messages: vec![pb::Upgrade {
                metadata: None,
                ack: "Upgrade request received".into(),
                actor_id: format!("00000000-0000-4000-8000-{t:06}{boot:06}"),
            }],
        })
    }
}

/// The v1alpha1 document of a multi-document machine config, with its
/// `machine.type`, as `configloader` and `Validate` insist.
fn v1alpha1(data: &[u8]) -> Result<serde_json::Value, Status> {
    let text = std::str::from_utf8(data)
        .map_err(|e| Status::invalid_argument(format!("failed to decode config: {e}")))?;
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| Status::invalid_argument(format!("failed to parse config: {e}")))?;
    let v1 = documents
        .into_iter()
        .find(|d| d.get("version").and_then(|v| v.as_str()) == Some("v1alpha1"))
        .ok_or_else(|| {
            Status::invalid_argument(
                "the applied machine configuration doesn't contain v1alpha1 config, did you mean to patch the machine config instead?",
            )
        })?;
    let kind = v1
        .pointer("/machine/type")
        .and_then(|t| t.as_str())
        .unwrap_or_default();
    if !["controlplane", "worker", "init"].contains(&kind) {
        return Err(Status::invalid_argument(format!(
            "1 error occurred:\n\t* unknown machine type {kind:?}\n\n"
        )));
    }
    Ok(v1)
}

/// `CanApplyImmediate`: the v1alpha1 documents equal once the live paths
/// are taken from the current one.
fn can_apply_immediate(current: &serde_json::Value, new: &serde_json::Value) -> Result<(), String> {
    let strip = |doc: &serde_json::Value| {
        let mut doc = doc.clone();
        if let Some(object) = doc.as_object_mut() {
            object.remove("debug");
            object.remove("cluster");
        }
        if let Some(machine) = doc.get_mut("machine").and_then(|m| m.as_object_mut()) {
            for key in LIVE_MACHINE_KEYS {
                machine.remove(*key);
            }
            if let Some(features) = machine.get_mut("features").and_then(|f| f.as_object_mut()) {
                for key in LIVE_FEATURE_KEYS {
                    features.remove(*key);
                }
            }
        }
        doc
    };
    let (a, b) = (strip(current), strip(new));
    if a == b {
        return Ok(());
    }
    let text = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let diff = similar::TextDiff::from_lines(&text(&a) as &str, &text(&b) as &str)
        .unified_diff()
        .to_string();
    Err(format!(
        "this config change can't be applied in immediate mode\ndiff:\n{diff}"
    ))
}

/// One unary call through tonic's handler, answered by `handler`.
async fn unary<Req, Resp, F>(request: http::Request<Body>, handler: F) -> http::Response<Body>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    F: FnMut(tonic::Request<Req>) -> Result<Resp, Status> + Send + 'static,
{
    let codec = tonic_prost::ProstCodec::<Resp, Req>::default();
    let mut grpc = tonic::server::Grpc::new(codec);
    grpc.unary(Unary(handler), request).await
}

struct Unary<F>(F);

impl<Req, Resp, F> tonic::server::UnaryService<Req> for Unary<F>
where
    F: FnMut(tonic::Request<Req>) -> Result<Resp, Status>,
{
    type Response = Resp;
    type Future = std::future::Ready<Result<tonic::Response<Resp>, Status>>;

    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        std::future::ready((self.0)(request).map(tonic::Response::new))
    }
}
