//! The live Talos cluster during a deploy that replaces a control plane:
//! reached as `cluster bootstrap` reaches it, through an SSH tunnel via the
//! Proxmox host to every control plane's Talos API, as the bundle's
//! talosctl admin. Reads the cluster into `etcd::ClusterView` and carries
//! out what `etcd::decide` planned ([`LiveTalos`]); opened only when the
//! plan replaces a control plane, or changes or restarts a Talos node. For
//! a `[cluster]` the host is the first one (`request.ssh`): every host has
//! its own address on the internal network, a VNet spanning all hosts, so
//! one tunnel through any host reaches every node, wherever its VM runs.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use tonic::Code;

use super::etcd::{rejoined, ClusterView, EtcdExit, EtcdService, LiveTalos, Member};
use super::host_setup::Ssh;
use super::plan::redact;
use crate::model::{Model, TALOS_API_PORT};
use crate::net::ssh::PinnedHost;
use crate::net::ssh_tunnel::{SshTunnel, TunnelError};
use crate::net::talos_api::{
    ApplyMode, Probe, TalosApiError, TalosClient, TalosEndpoint, TalosIdentity, UpgradeRequest,
};
use crate::secrets::talos::TalosCredentials;
use crate::secrets::Secret;

/// How long one Talos API call may take here.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Between looks while waiting for a node to rejoin.
const POLL: Duration = Duration::from_secs(1);

/// The blueprint's etcd members to be: its control planes, by hostname
/// (the VM's name) and address. Workers are never etcd members, so their
/// replace needs no quorum check.
pub fn control_planes(model: &Model) -> Vec<(u32, String, Ipv4Addr)> {
    model
        .control_planes()
        .map(|node| (node.vm.id, node.name().to_string(), node.ip()))
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum TalosReachError {
    #[error("the tunnel to the Talos nodes through the Proxmox host: {0}")]
    Tunnel(#[from] TunnelError),
    #[error(transparent)]
    Api(#[from] TalosApiError),
}

/// The blueprint's workers, by hostname and address: reached for their
/// in-place changes, never asked about etcd.
pub fn workers(model: &Model) -> Vec<(String, Ipv4Addr)> {
    model
        .talos_workers()
        .map(|node| (node.name().to_string(), node.ip()))
        .collect()
}

/// The control planes (and the workers) through one tunnel; the tunnel
/// closes on drop.
pub struct LiveCluster {
    nodes: Vec<(String, TalosClient)>,
    workers: Vec<(String, TalosClient)>,
    /// The bundle's secret values: never in a diff or message it hands out.
    secrets: Vec<Secret>,
    _tunnel: SshTunnel,
}

impl LiveCluster {
    /// Opens the tunnel to every control plane in `nodes` and every worker
    /// in `workers` (`(hostname, address)`) over `ssh`.
    pub fn open(
        ssh: &Ssh,
        credentials: &TalosCredentials,
        nodes: &[(String, Ipv4Addr)],
        workers: &[(String, Ipv4Addr)],
    ) -> Result<LiveCluster, TalosReachError> {
        let identity = TalosIdentity::from_credentials(credentials)?;
        let pinned = PinnedHost::new(ssh.host_key.as_ref()).map_err(TunnelError::Spawn)?;
        // Through Teleport the proxy speaks for the host: nothing pinned.
        let known = pinned
            .as_ref()
            .filter(|_| ssh.teleport.is_none())
            .map(PinnedHost::known);
        let forwards: Vec<(String, u16)> = nodes
            .iter()
            .chain(workers)
            .map(|(_, address)| (address.to_string(), TALOS_API_PORT))
            .collect();
        let tunnel = SshTunnel::open(
            &ssh.target,
            ssh.config.as_deref(),
            known.as_ref(),
            ssh.teleport.as_ref(),
            &forwards,
        )?;
        let clients = nodes
            .iter()
            .chain(workers)
            .enumerate()
            .map(|(i, (name, address))| {
                let endpoint = TalosEndpoint {
                    connect: tunnel.local_addr(i),
                    server_name: address.to_string(),
                };
                TalosClient::new(&endpoint, &identity)
                    .map(|client| (name.clone(), client.with_timeout(CALL_TIMEOUT)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut nodes = clients;
        let workers = nodes.split_off(nodes.len() - workers.len());
        Ok(LiveCluster {
            nodes,
            workers,
            secrets: credentials
                .bundle
                .secret_values()
                .into_iter()
                .cloned()
                .collect(),
            _tunnel: tunnel,
        })
    }

    /// A control plane's client.
    fn client(&self, name: &str) -> Option<&TalosClient> {
        self.nodes.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    /// Any Talos node's client, a worker's too.
    fn any_client(&self, name: &str) -> Option<&TalosClient> {
        self.client(name)
            .or_else(|| self.workers.iter().find(|(n, _)| n == name).map(|(_, c)| c))
    }

    fn etcd_service(client: &TalosClient) -> EtcdService {
        match client.probe() {
            Ok(Probe::Up(_)) => {}
            Ok(Probe::Down(why)) => return EtcdService::Unreachable(why),
            Err(e) => return EtcdService::Unreachable(e.to_string()),
        }
        match client.etcd_service() {
            Ok(Some(etcd)) if etcd.state == "Running" => match etcd.healthy {
                Some(true) => EtcdService::Healthy,
                Some(false) => EtcdService::Unhealthy(etcd.last_message),
                None => EtcdService::Unhealthy("its health is not known yet".into()),
            },
            Ok(Some(etcd)) => EtcdService::NotRunning(etcd.state),
            Ok(None) => EtcdService::NotRunning("no etcd service".into()),
            Err(e) => EtcdService::Unreachable(e.to_string()),
        }
    }

    /// etcd's members, asked of healthy control planes first; `skip` is
    /// never asked (the node on its way out).
    fn members(
        &self,
        view: &[super::etcd::NodeView],
        skip: Option<&str>,
    ) -> Result<Vec<Member>, String> {
        let mut order: Vec<&(String, TalosClient)> = self
            .nodes
            .iter()
            .filter(|(name, _)| Some(name.as_str()) != skip)
            .collect();
        let healthy = |name: &str| {
            view.iter()
                .any(|n| n.name == name && n.etcd == EtcdService::Healthy)
        };
        order.sort_by_key(|(name, _)| !healthy(name));
        let mut last = "no control plane to ask".to_string();
        for (name, client) in order {
            if matches!(
                view.iter().find(|n| n.name == *name).map(|n| &n.etcd),
                Some(EtcdService::Unreachable(_))
            ) {
                continue;
            }
            match client.etcd_members() {
                Ok(members) => {
                    return Ok(members
                        .into_iter()
                        .map(|m| Member {
                            id: m.id,
                            hostname: m.hostname,
                            is_learner: m.is_learner,
                        })
                        .collect())
                }
                Err(e) => last = format!("{name}: {}", problem(&e)),
            }
        }
        Err(last)
    }

    fn view_skipping(&self, skip: Option<&str>) -> ClusterView {
        let nodes: Vec<super::etcd::NodeView> = self
            .nodes
            .iter()
            .map(|(name, client)| super::etcd::NodeView {
                name: name.clone(),
                etcd: Self::etcd_service(client),
            })
            .collect();
        let members = self.members(&nodes, skip);
        ClusterView { nodes, members }
    }

    /// Removes `member` through a healthy control plane other than `node`.
    fn remove_through_peer(
        &self,
        node: &str,
        member: u64,
        through: Option<&str>,
    ) -> Result<String, String> {
        let view = self.view_skipping(Some(node));
        let peer = through
            .map(str::to_string)
            .or_else(|| {
                view.nodes
                    .iter()
                    .find(|n| n.name != node && n.etcd == EtcdService::Healthy)
                    .map(|n| n.name.clone())
            })
            .ok_or_else(|| {
                format!("no healthy control plane other than {node} to remove its member through")
            })?;
        let client = self
            .client(&peer)
            .ok_or_else(|| format!("{peer} is not a control plane of the blueprint"))?;
        match client.etcd_remove_member(member) {
            Ok(()) => {}
            // Gone already: what we wanted.
            Err(TalosApiError::Refused {
                code: Code::NotFound,
                ..
            }) => {}
            Err(e) => return Err(problem(&e)),
        }
        Ok(format!(
            "{node}'s member {} removed through {peer}",
            super::etcd::hex(member)
        ))
    }

    /// That neither `member` nor a member named `node` is left, as a peer
    /// sees it.
    fn confirm_gone(&self, node: &str, member: u64) -> Result<(), String> {
        let view = self.view_skipping(Some(node));
        let members = view
            .members
            .map_err(|why| format!("cannot confirm that {node} left etcd: {why}"))?;
        match members
            .iter()
            .find(|m| m.id == member || m.hostname == node)
        {
            Some(m) => Err(format!(
                "{node} is still etcd member {}: its VM is not destroyed",
                super::etcd::hex(m.id)
            )),
            None => Ok(()),
        }
    }
}

impl LiveTalos for LiveCluster {
    fn view(&self) -> ClusterView {
        self.view_skipping(None)
    }

    fn leave(&self, node: &str, exit: &EtcdExit) -> Result<String, String> {
        let (member, done) = match exit {
            EtcdExit::NotAMember | EtcdExit::NotBootstrapped => {
                return Ok(format!("{node}: nothing to leave"))
            }
            EtcdExit::Leave { member } => {
                let client = self
                    .client(node)
                    .ok_or_else(|| format!("{node} is not a control plane of the blueprint"))?;
                match client.etcd_leave_cluster() {
                    Ok(()) => (*member, format!("{node} left etcd")),
                    // Gone under the call: its member goes through a peer.
                    Err(
                        e @ (TalosApiError::Unreachable { .. }
                        | TalosApiError::Refused {
                            code: Code::Unavailable,
                            ..
                        }),
                    ) => {
                        tracing::info!(node, error = %e, "leave cut short; removing through a peer");
                        let still = self.confirm_gone(node, *member).is_err();
                        if still {
                            (*member, self.remove_through_peer(node, *member, None)?)
                        } else {
                            (*member, format!("{node} left etcd"))
                        }
                    }
                    Err(e) => return Err(problem(&e)),
                }
            }
            EtcdExit::RemoveById { member, through } => (
                *member,
                self.remove_through_peer(node, *member, Some(through))?,
            ),
        };
        self.confirm_gone(node, member)?;
        Ok(done)
    }

    fn wait_rejoined(
        &self,
        node: &str,
        members: &[String],
        deadline: Duration,
    ) -> Result<(), String> {
        let client = self
            .client(node)
            .ok_or_else(|| format!("{node} is not a control plane of the blueprint"))?;
        let start = Instant::now();
        loop {
            let last = match client.probe() {
                Ok(Probe::Up(_)) => match rejoined(&self.view(), members) {
                    Ok(()) => return Ok(()),
                    Err(why) => format!(
                        "etcd to be healthy with {} (last: {why})",
                        members.join(", ")
                    ),
                },
                Ok(Probe::Down(why)) => format!("its Talos API to answer (last: {why})"),
                Err(e) => format!("its Talos API to answer (last: {})", problem(&e)),
            };
            if start.elapsed() + POLL > deadline {
                return Err(format!(
                    "{node} did not come back within {} s: waited for {last}; its new VM was created and started: look at its console in Proxmox, then deploy again (a node already back is not touched)",
                    deadline.as_secs()
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    fn apply_config(
        &self,
        node: &str,
        config: &[u8],
        dry_run: bool,
    ) -> Result<(bool, String), String> {
        let client = self
            .any_client(node)
            .ok_or_else(|| format!("{node} is not a Talos node of the blueprint"))?;
        let outcome = client
            .apply_configuration(config, ApplyMode::Auto, dry_run)
            .map_err(|e| self.shown(&format!("{node}: {}", problem(&e))))?;
        let diff = outcome.diff.unwrap_or_default();
        let diff = if diff.trim() == "No changes." {
            String::new()
        } else {
            self.shown(&diff)
        };
        Ok((outcome.mode == ApplyMode::Reboot, diff))
    }

    fn upgrade(&self, node: &str, installer: &str) -> Result<String, String> {
        let client = self
            .any_client(node)
            .ok_or_else(|| format!("{node} is not a Talos node of the blueprint"))?;
        let request = UpgradeRequest {
            image: installer.to_string(),
            ..UpgradeRequest::default()
        };
        client
            .upgrade(&request)
            .map(|ack| ack.ack)
            .map_err(|e| format!("{node} refused the upgrade to {installer}: {}", problem(&e)))
    }

    fn wait_down(&self, node: &str, deadline: Duration) -> bool {
        let Some(client) = self.any_client(node) else {
            return false;
        };
        let start = Instant::now();
        while start.elapsed() < deadline {
            if !matches!(client.probe(), Ok(Probe::Up(_))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    fn version(&self, node: &str) -> Result<String, String> {
        let client = self.answering(node)?;
        match client.probe() {
            Ok(Probe::Up(version)) => Ok(version.tag),
            Ok(Probe::Down(why)) => Err(format!("{node} does not answer its Talos API: {why}")),
            Err(e) => Err(format!("{node}: {}", problem(&e))),
        }
    }

    fn wait_healthy(&self, node: &str, service: &str, deadline: Duration) -> Result<(), String> {
        let client = self.answering(node)?;
        let start = Instant::now();
        loop {
            let last = match client.services() {
                Ok(services) => match services.iter().find(|s| s.id == service) {
                    Some(s) if s.state == "Running" && s.healthy == Some(true) => return Ok(()),
                    Some(s) => format!(
                        "{} ({})",
                        s.state,
                        if s.last_message.is_empty() {
                            "health not known yet"
                        } else {
                            &s.last_message
                        }
                    ),
                    None => "no such service".to_string(),
                },
                Err(e) => problem(&e),
            };
            if start.elapsed() + POLL > deadline {
                return Err(format!(
                    "{node}'s {service} was not healthy within {} s (last: {last}); look at `talosctl -n {node} service {service}`, then deploy again (a node already on its config is not touched)",
                    deadline.as_secs()
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    fn wait_version(
        &self,
        node: &str,
        version: Option<&str>,
        deadline: Duration,
    ) -> Result<(), String> {
        let client = self
            .any_client(node)
            .ok_or_else(|| format!("{node} is not a Talos node of the blueprint"))?;
        let waited = match version {
            Some(tag) => client.wait_until_version(tag, deadline),
            None => client.wait_until_up(deadline),
        };
        waited.map(drop).map_err(|e| {
            format!(
                "{node} did not come back{} within {} s: {}; deploy again once it is back (a node already on it is not touched)",
                version.map(|v| format!(" on Talos {v}")).unwrap_or_default(),
                deadline.as_secs(),
                problem(&e)
            )
        })
    }
}

impl LiveCluster {
    /// `text` (a node's diff or message) with the bundle's secrets hidden.
    fn shown(&self, text: &str) -> String {
        let secrets: Vec<&str> = self.secrets.iter().map(Secret::expose).collect();
        redact(text, &secrets)
    }

    fn answering(&self, node: &str) -> Result<&TalosClient, String> {
        self.any_client(node)
            .ok_or_else(|| format!("{node} is not a Talos node of the blueprint"))
    }
}

/// A Talos API error in a line.
fn problem(error: &TalosApiError) -> String {
    error.to_string()
}
