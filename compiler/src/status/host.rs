//! The host layer: the Proxmox API answering with the pinned certificate
//! (and the platform read through it, which the VMs layer uses: the one
//! host, or a cluster through `cluster`), the blueprint's bridges active
//! with their addresses, and over ssh (one read-only command:
//! `iptables-save`, `cat` and `ip address show`) the forwards' `WDLC-*`
//! chains loaded as the build wrote them and hooked into the built-in
//! chains, the Proxmox firewall's `cluster.fw` and `host.fw` as built, and
//! on a cluster's host its own address on each SDN VNet (`cluster` runs
//! these on every host, each over its own ssh).
//!
//! Whether pve-firewall itself runs (`pve-firewall status`) is not checked.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::checks::Check;
use crate::deploy::cluster_observed::observe_cluster;
use crate::deploy::host_setup::{HostFiles, Ssh};
use crate::deploy::observed::{observe, Observed};
use crate::deploy::sdn::{SdnObjects, SdnObserved};
use crate::model::{Bridge, Host, Model};
use crate::net::pve::{Pve, PveError};
use crate::net::ssh::{self, Failure};
use crate::secrets::Secret;
use crate::Compiled;

pub(super) const LAYER: &str = "host";
/// The rendered forwards, in a host's files.
const RULES: &str = "network/host-network.rules";
/// The host's Proxmox firewall file, in a host's files.
const HOST_FW: &str = "firewall/host.fw";

/// The API, answering, and what it said about the platform.
pub struct Reached {
    pub pve: Pve,
    /// Every node the API knows, online or not (a lone host: itself).
    pub members: BTreeMap<String, bool>,
    /// VMID → the node it lives on, for every VM the API lists.
    pub placed: BTreeMap<u32, String>,
    /// What each online node of the blueprint has.
    pub nodes: BTreeMap<String, Observed>,
    /// A cluster's SDN objects, as it has them.
    pub sdn: Option<SdnObserved>,
}

/// What the API said, before it is joined to the client that asked.
struct Seen {
    members: BTreeMap<String, bool>,
    placed: BTreeMap<u32, String>,
    nodes: BTreeMap<String, Observed>,
    sdn: Option<SdnObserved>,
}

/// Reads a cluster (`sdn`: the build's SDN objects) as `deploy` does, or
/// the one host: itself online, with every VM it has.
fn read_platform(pve: &Pve, model: &Model, sdn: Option<&SdnObjects>) -> Result<Seen, PveError> {
    if let Some(objects) = sdn {
        let cluster = observe_cluster(pve, model, objects)?;
        return Ok(Seen {
            members: cluster.members,
            placed: cluster.placed,
            nodes: cluster.nodes,
            sdn: Some(cluster.sdn),
        });
    }
    let host = model.host();
    let observed = observe(pve, &host.node, &host.file_storage)?;
    Ok(Seen {
        members: BTreeMap::from([(host.node.clone(), true)]),
        placed: observed
            .vms
            .keys()
            .map(|vmid| (*vmid, host.node.clone()))
            .collect(),
        nodes: BTreeMap::from([(host.node.clone(), observed)]),
        sdn: None,
    })
}

/// The API check, and the platform read through it if it answered: a
/// cluster (`sdn`: the build's SDN objects) through `/cluster/…` and each
/// online node, as `deploy` reads it.
pub fn reach_api(
    model: &Model,
    sdn: Option<&SdnObjects>,
    url: &str,
    recorded: Option<&str>,
    token: &Secret,
    timeout: Duration,
) -> (Check, Option<Reached>) {
    let name = format!("Proxmox API {url}");
    let pinned = match (model.proxmox.api_host().api_fingerprint.as_deref(), recorded) {
        (Some(blueprint), Some(recorded)) if !blueprint.eq_ignore_ascii_case(recorded) => {
            return (
                Check::failed(
                    LAYER,
                    name,
                    format!("host.api_fingerprint is {blueprint} but the host record says {recorded}"),
                    "remove host.api_fingerprint (the record pins it), or `waddlec host init --repin` after checking `pvenode cert info` on the host",
                ),
                None,
            )
        }
        (Some(pin), _) | (None, Some(pin)) => pin,
        (None, None) => {
            return (
                Check::failed(
                    LAYER,
                    name,
                    "no API certificate is pinned",
                    "run `waddlec host init` (it records the certificate the API serves, read over your own SSH)",
                ),
                None,
            )
        }
    };
    let pve = match Pve::with_timeout(url, pinned, token, timeout) {
        Ok(mut pve) => {
            pve.read_attempts = 1;
            pve
        }
        Err(e) => {
            return (
                Check::failed(LAYER, name, e.to_string(), "fix host.api"),
                None,
            )
        }
    };
    let read = pve
        .get("/version", &[])
        .and_then(|version| Ok((version, read_platform(&pve, model, sdn)?)));
    match read {
        Ok((version, seen)) => (
            Check::pass(
                LAYER,
                name,
                format!(
                    "Proxmox VE {} with the pinned certificate",
                    version["version"].as_str().unwrap_or("?")
                ),
            ),
            Some(Reached {
                pve,
                members: seen.members,
                placed: seen.placed,
                nodes: seen.nodes,
                sdn: seen.sdn,
            }),
        ),
        Err(e) => (api_problem(name, &e), None),
    }
}

/// An API error as a check: no answer is unreachable; an answer that is
/// not right (another certificate, a refused token) is a failure.
fn api_problem(name: String, error: &PveError) -> Check {
    match error {
        PveError::Unreachable { .. } => Check::unreachable(
            LAYER,
            name,
            error.to_string(),
            "check that the host is up and its API port reachable from here (the firewall admits your address?)",
        ),
        PveError::Fingerprint { .. } => Check::failed(
            LAYER,
            name,
            error.to_string(),
            "if the certificate was renewed on purpose, `waddlec host init --repin`",
        ),
        PveError::Api {
            status: 401 | 403, ..
        } => Check::failed(
            LAYER,
            name,
            error.to_string(),
            "the token host.api_token names is refused or lacks privileges: `waddlec host init` makes it",
        ),
        _ => Check::failed(
            LAYER,
            name,
            error.to_string(),
            "see the message; the API answered but not as expected",
        ),
    }
}

/// Each bridge of the blueprint: present, active, with the host's address.
pub fn bridges(model: &Model, observed: &Observed) -> Vec<Check> {
    std::iter::once(&model.host().bridges.public)
        .chain(&model.host().bridges.internal)
        .map(|bridge| bridge_check(format!("bridge {}", bridge.name), bridge, observed))
        .collect()
}

/// One bridge on the node `observed` read: present, active, with the
/// node's address.
pub(super) fn bridge_check(name: String, bridge: &Bridge, observed: &Observed) -> Check {
    let cidr = format!("{}/{}", bridge.host_address, bridge.network.prefix_len());
    match observed.network.ifaces.get(bridge.name.as_str()) {
                None => Check::failed(
                    LAYER,
                    name,
                    "the host has no such interface",
                    "run `waddlec deploy` (it creates the internal bridges; the public one is yours to set up)",
                ),
                Some(iface) if !iface.active => Check::failed(
                    LAYER,
                    name,
                    "configured but not active",
                    "apply the host's network (`ifreload -a`, or Network → Apply Configuration in Proxmox)",
                ),
                Some(iface) if iface.cidr != cidr => Check::failed(
                    LAYER,
                    name,
                    format!("has address `{}`, the blueprint says {cidr}", iface.cidr),
                    "run `waddlec deploy`, or fix the bridge on the host if it is not waddlec's",
                ),
                Some(_) => Check::pass(LAYER, name, format!("active, {cidr}")),
            }
}

/// The checks that read `host` over `ssh`, against its `files` of the
/// build (a lone host's `host/`, a cluster host's `hosts/NODE/`, with
/// `cluster.fw` where its setup installs it): the chains, the Proxmox
/// firewall's files, and its own address on each SDN VNet (a cluster's),
/// which its network script puts there.
pub fn over_ssh(
    compiled: &Compiled,
    ssh: &Ssh,
    host: &Host,
    files: &HostFiles,
    timeout: Duration,
) -> Vec<Check> {
    let model = &compiled.model;
    let root = ssh.root.clone().unwrap_or_default();
    let firewall = firewall_files(host, files);
    let vnets: Vec<&Bridge> = host
        .bridges
        .internal
        .iter()
        .filter(|bridge| model.vnet_mtu(&bridge.name).is_some())
        .collect();
    let mut script = String::from(
        "printf '@@nat\\n'; iptables-save -t nat || printf '@@failed\\n'; \
         printf '@@filter\\n'; iptables-save -t filter || printf '@@failed\\n'; ",
    );
    for (artifact, path) in &firewall {
        let full = format!("{root}{path}");
        script.push_str(&format!(
            "printf '@@{artifact}\\n'; cat {} 2>/dev/null || printf '@@missing\\n'; ",
            ssh::quote(&full)
        ));
    }
    for vnet in &vnets {
        script.push_str(&format!(
            "printf '@@vnet {}\\n'; ip -4 -o address show dev {} 2>/dev/null || printf '@@missing\\n'; ",
            vnet.name,
            ssh::quote(vnet.name.as_str())
        ));
    }
    let pinned = match ssh::PinnedHost::new(ssh.host_key.as_ref()) {
        Ok(pinned) => pinned,
        Err(e) => {
            return vec![Check::unreachable(
                LAYER,
                "ssh",
                e.to_string(),
                "check the temp directory",
            )]
        }
    };
    // Through Teleport the proxy speaks for the host: nothing pinned.
    let remote = ssh.remote(pinned.as_ref());
    tracing::info!(target = %ssh.target, node = %host.node, "reading the host's chains and firewall over ssh");
    let output = match ssh::run_within(&remote, &script, timeout) {
        Ok(output) => output,
        Err(e) => {
            let node = &host.node;
            let (why, fix) = match e.failure() {
                Failure::HostKey => (
                    "its host key is not the one recorded",
                    match model.proxmox.single_host() {
                        Some(_) => format!("check it on {node}, then `waddlec host init --repin`"),
                        None => format!("check it on {node}, then `waddlec host init --repin={node}`"),
                    },
                ),
                Failure::KeyRefused => (
                    "it refused your key",
                    format!("load your key for {node} into your agent (`ssh-add`)"),
                ),
                _ => (
                    "no answer",
                    format!(
                        "make sure `ssh` to {node} (its `ssh` in the blueprint) logs in without a prompt"
                    ),
                ),
            };
            return vec![Check::unreachable(
                LAYER,
                format!("ssh {}", ssh.target),
                format!("{why}: {e}"),
                fix,
            )];
        }
    };
    let sections = sections(&output);
    let rules = files.dir.join(RULES).to_string_lossy().into_owned();
    let mut checks = chains(compiled, &rules, &sections);
    for (artifact, path) in &firewall {
        let name = format!("Proxmox firewall {path}");
        let built = artifact_text(compiled, artifact);
        let check = match sections.get(artifact.as_str()).map(String::as_str) {
            Some("@@missing\n") | None => Check::failed(
                LAYER,
                name,
                "the host has no such file",
                "run `waddlec deploy` (its host setup installs it)",
            ),
            Some(text) if Some(text) == built.as_deref() => {
                Check::pass(LAYER, name, "as built")
            }
            Some(text) if text.contains("# EMERGENCY") => {
                let open: Vec<&str> = text
                    .lines()
                    .filter(|line| line.contains("# EMERGENCY"))
                    .collect();
                Check::failed(
                    LAYER,
                    name,
                    format!(
                        "EMERGENCY access opened from the console is in force: {}",
                        open.join(" | ")
                    ),
                    "once the normal way in works again, run `waddlec deploy --close-emergency` \
                     (or `waddlec-emergency close` on the console)",
                )
            }
            Some(_) => Check::failed(
                LAYER,
                name,
                "differs from the build",
                "run `waddlec deploy` (its host setup writes the built file; a change made on the host is lost)",
            ),
        };
        checks.push(check);
    }
    checks.extend(
        vnets
            .iter()
            .map(|vnet| vnet_address(vnet, sections.get(&format!("vnet {}", vnet.name)))),
    );
    checks
}

/// The host's own address on a VNet, from `ip -4 -o address show dev
/// VNET` (`None`, or `@@missing`: no such interface).
fn vnet_address(vnet: &Bridge, shown: Option<&String>) -> Check {
    let name = format!("vnet {} address", vnet.name);
    let cidr = format!("{}/{}", vnet.host_address, vnet.network.prefix_len());
    let shown = match shown.map(String::as_str) {
        Some("@@missing\n") | None => {
            return Check::failed(
                LAYER,
                name,
                "the host has no such interface",
                "run `waddlec deploy` (it applies the SDN, which makes the VNet on every node)",
            )
        }
        Some(shown) => shown,
    };
    let addresses: Vec<&str> = shown
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|word| *word == "inet")?;
            words.next()
        })
        .collect();
    if addresses.contains(&cidr.as_str()) {
        Check::pass(LAYER, name, cidr)
    } else {
        Check::failed(
            LAYER,
            name,
            format!(
                "has {}, the blueprint says {cidr}",
                if addresses.is_empty() {
                    "no IPv4 address".to_string()
                } else {
                    addresses.join(", ")
                }
            ),
            "run `waddlec deploy`, or `systemctl restart waddlec-host-network` on the host (its network script puts the address there)",
        )
    }
}

/// The firewall files: where the build has them (`files`), where the host
/// keeps them (its own `host.fw` under its node).
fn firewall_files(host: &Host, files: &HostFiles) -> Vec<(String, String)> {
    let built = |path: &Path| path.to_string_lossy().into_owned();
    std::iter::once((
        built(&files.dir.join(HOST_FW)),
        format!("/etc/pve/nodes/{}/host.fw", host.node),
    ))
    .chain(
        files
            .cluster_fw
            .as_deref()
            .map(|path| (built(path), "/etc/pve/firewall/cluster.fw".to_string())),
    )
    .collect()
}

fn artifact_text(compiled: &Compiled, path: &str) -> Option<String> {
    compiled
        .artifacts
        .iter()
        .find(|a| a.path == path)
        .map(|a| String::from_utf8_lossy(&a.contents).into_owned())
}

/// The output split at its `@@NAME` lines.
fn sections(output: &str) -> BTreeMap<String, String> {
    let mut sections = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in output.split_inclusive('\n') {
        let marker = line
            .strip_prefix("@@")
            .map(str::trim_end)
            .filter(|name| *name != "missing" && *name != "failed");
        match marker {
            Some(name) => {
                if let Some((name, text)) = current.take() {
                    sections.insert(name, text);
                }
                current = Some((name.to_string(), String::new()));
            }
            None => {
                if let Some((_, text)) = current.as_mut() {
                    text.push_str(line);
                }
            }
        }
    }
    if let Some((name, text)) = current {
        sections.insert(name, text);
    }
    sections
}

/// The rules of an iptables-restore text, by `(table, chain)`, each rule as
/// its sorted words (iptables-save orders a rule's options its own way).
fn rules(text: &str) -> BTreeMap<(String, String), Vec<Vec<String>>> {
    let mut table = String::new();
    let mut chains: BTreeMap<(String, String), Vec<Vec<String>>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('*') {
            table = name.to_string();
        } else if let Some(declared) = line.strip_prefix(':') {
            let chain = declared.split_whitespace().next().unwrap_or_default();
            chains
                .entry((table.clone(), chain.to_string()))
                .or_default();
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let mut words = rule.split_whitespace();
            let chain = words.next().unwrap_or_default().to_string();
            let mut words: Vec<String> = words.map(str::to_string).collect();
            words.sort();
            chains
                .entry((table.clone(), chain))
                .or_default()
                .push(words);
        }
    }
    chains
}

/// Each chain the build declares: loaded with its rules, and jumped to
/// from the built-in chain it is named after (`WDLC-FORWARD` from
/// `FORWARD`), as `waddlec-host-network` hooks it.
fn chains(
    compiled: &Compiled,
    rules_path: &str,
    sections: &BTreeMap<String, String>,
) -> Vec<Check> {
    let Some(built) = artifact_text(compiled, rules_path) else {
        return Vec::new();
    };
    let seen_text = |table: &str| sections.get(table).cloned();
    let mut checks = Vec::new();
    for ((table, chain), wanted) in rules(&built) {
        let name = format!("chain {table} {chain}");
        let Some(text) = seen_text(&table) else {
            checks.push(Check::failed(
                LAYER,
                name,
                "iptables-save did not list the table (is iptables installed, and is host.ssh root?)",
                "log in as root (host.ssh) and run `iptables-save` to see why",
            ));
            continue;
        };
        let seen = rules(&text);
        let fix = "run `waddlec deploy` (its host setup loads the chains), or `systemctl restart waddlec-host-network` on the host";
        let check = match seen.get(&(table.clone(), chain.clone())) {
            None => Check::failed(LAYER, name, "not loaded", fix),
            Some(rules) if *rules != wanted => Check::failed(
                LAYER,
                name,
                format!(
                    "{} rule(s) differ from the build's {} ({} on the host)",
                    rules.iter().filter(|r| !wanted.contains(r)).count().max(1),
                    wanted.len(),
                    rules.len()
                ),
                fix,
            ),
            Some(_) => {
                let builtin = chain.strip_prefix("WDLC-").unwrap_or(&chain);
                let jump = vec!["-j".to_string(), chain.clone()];
                let hooked = seen
                    .get(&(table.clone(), builtin.to_string()))
                    .is_some_and(|rules| rules.contains(&jump));
                if hooked {
                    Check::pass(
                        LAYER,
                        name,
                        format!("{} rule(s) as built, hooked from {builtin}", wanted.len()),
                    )
                } else {
                    Check::failed(
                        LAYER,
                        name,
                        format!("loaded, but {builtin} does not jump to it: no packet reaches its rules"),
                        fix,
                    )
                }
            }
        };
        checks.push(check);
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cluster example's model.

    #[test]
    fn a_cluster_hosts_firewall_files_are_its_own_and_cluster_fw_only_where_staged() {
        let model = crate::test_support::cluster(str::to_string);
        let pve2 = &model.proxmox.hosts[1];
        let own = HostFiles::of_cluster_host(Path::new(""), "pve2", false);
        assert_eq!(
            firewall_files(pve2, &own),
            [(
                "hosts/pve2/firewall/host.fw".to_string(),
                "/etc/pve/nodes/pve2/host.fw".to_string()
            )]
        );
        let last = HostFiles::of_cluster_host(Path::new(""), "pve2", true);
        assert_eq!(
            firewall_files(pve2, &last)[1],
            (
                "hosts/cluster.fw".to_string(),
                "/etc/pve/firewall/cluster.fw".to_string()
            )
        );
        let lone = HostFiles::of_host(Path::new(""));
        assert_eq!(firewall_files(pve2, &lone)[1].0, "host/firewall/cluster.fw");
    }

    #[test]
    fn a_vnet_address_is_found_among_what_ip_shows() {
        let model = crate::test_support::cluster(str::to_string);
        let vnet = &model.proxmox.hosts[1].bridges.internal[0];
        let shown = |text: &str| vnet_address(vnet, Some(&text.to_string()));
        let line = |cidr: &str| {
            format!("7: vnet1    inet {cidr} scope global vnet1\\       valid_lft forever preferred_lft forever\n")
        };
        let two = format!("{}{}", line("10.30.0.9/22"), line("10.30.0.2/22"));
        assert_eq!(
            shown(&two).outcome,
            crate::checks::Outcome::Pass {
                detail: "10.30.0.2/22".into()
            }
        );
        let other = shown(&line("10.30.0.9/22"));
        assert!(
            matches!(&other.outcome, crate::checks::Outcome::Failed { why, .. }
                if why == "has 10.30.0.9/22, the blueprint says 10.30.0.2/22"),
            "{other:?}"
        );
        for missing in [shown("@@missing\n"), vnet_address(vnet, None)] {
            assert!(
                matches!(&missing.outcome, crate::checks::Outcome::Failed { why, .. }
                    if why == "the host has no such interface"),
                "{missing:?}"
            );
        }
        assert_eq!(shown("").name, "vnet vnet1 address");
    }

    #[test]
    fn rules_compare_whatever_order_iptables_save_prints_options_in() {
        let built = rules(
            "*nat\n:WDLC-PREROUTING - [0:0]\n\
             -A WDLC-PREROUTING -i vmbr0 -d 203.0.113.10/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.10.0.3:80\nCOMMIT\n",
        );
        let saved = rules(
            "# Generated by iptables-save\n*nat\n:PREROUTING ACCEPT [0:0]\n:WDLC-PREROUTING - [0:0]\n\
             -A PREROUTING -j WDLC-PREROUTING\n\
             -A WDLC-PREROUTING -d 203.0.113.10/32 -i vmbr0 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.10.0.3:80\nCOMMIT\n",
        );
        let key = ("nat".to_string(), "WDLC-PREROUTING".to_string());
        assert_eq!(built[&key], saved[&key]);
        assert!(saved[&("nat".to_string(), "PREROUTING".to_string())]
            .contains(&vec!["-j".to_string(), "WDLC-PREROUTING".to_string()]));
    }

    #[test]
    fn sections_split_at_markers_and_a_missing_file_keeps_its_marker() {
        let s =
            sections("@@nat\n*nat\nCOMMIT\n@@host/firewall/host.fw\n@@missing\n@@x\n[OPTIONS]\n");
        assert_eq!(s["nat"], "*nat\nCOMMIT\n");
        assert_eq!(s["host/firewall/host.fw"], "@@missing\n");
        assert_eq!(s["x"], "[OPTIONS]\n");
    }
}
