//! The host layer: the Proxmox API answering with the pinned certificate
//! (and the platform read through it, which the VMs layer uses: the one
//! host, or a cluster through `cluster`), the blueprint's bridges active
//! with their addresses, and over ssh (one read-only command:
//! `iptables-save` and `cat`) the forwards' `WDLC-*` chains loaded as the
//! build wrote them and hooked into the built-in chains, and the Proxmox
//! firewall's `cluster.fw` and `host.fw` as built.
//!
//! Whether pve-firewall itself runs (`pve-firewall status`) is not checked.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::checks::Check;
use crate::deploy::cluster_observed::observe_cluster;
use crate::deploy::host_setup::Ssh;
use crate::deploy::observed::{observe, Observed};
use crate::deploy::sdn::{SdnObjects, SdnObserved};
use crate::model::{Bridge, Model};
use crate::net::pve::{Pve, PveError};
use crate::net::ssh::{self, Failure};
use crate::secrets::Secret;
use crate::Compiled;

pub(super) const LAYER: &str = "host";
/// The rendered forwards, in the tree.
const RULES: &str = "host/network/host-network.rules";

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
    let pinned = match (model.host().api_fingerprint.as_deref(), recorded) {
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

/// The checks that read the host over ssh.
pub fn over_ssh(compiled: &Compiled, host: &Ssh, timeout: Duration) -> Vec<Check> {
    let model = &compiled.model;
    let root = host.root.clone().unwrap_or_default();
    let files = firewall_files(model);
    let mut script = String::from(
        "printf '@@nat\\n'; iptables-save -t nat || printf '@@failed\\n'; \
         printf '@@filter\\n'; iptables-save -t filter || printf '@@failed\\n'; ",
    );
    for (artifact, path) in &files {
        let full = format!("{root}{path}");
        script.push_str(&format!(
            "printf '@@{artifact}\\n'; cat {} 2>/dev/null || printf '@@missing\\n'; ",
            ssh::quote(&full)
        ));
    }
    let pinned = match ssh::PinnedHost::new(host.host_key.as_ref()) {
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
    let remote = ssh::Remote {
        target: &host.target,
        config: host.config.as_deref(),
        jump: None,
        jump_known_host: None,
        known_host: pinned
            .as_ref()
            .filter(|_| host.teleport.is_none())
            .map(ssh::PinnedHost::known),
        teleport: host.teleport.as_ref(),
    };
    tracing::info!(target = %host.target, "reading the host's chains and firewall over ssh");
    let output = match ssh::run_within(&remote, &script, timeout) {
        Ok(output) => output,
        Err(e) => {
            let (why, fix) = match e.failure() {
                Failure::HostKey => (
                    "its host key is not the one recorded",
                    "check it, then `waddlec host init --repin`",
                ),
                Failure::KeyRefused => (
                    "it refused your key",
                    "load your key into your agent (`ssh-add`)",
                ),
                _ => (
                    "no answer",
                    "make sure `ssh` to host.ssh logs in without a prompt",
                ),
            };
            return vec![Check::unreachable(
                LAYER,
                format!("ssh {}", host.target),
                format!("{why}: {e}"),
                fix,
            )];
        }
    };
    let sections = sections(&output);
    let mut checks = chains(compiled, &sections);
    for (artifact, path) in &files {
        let name = format!("Proxmox firewall {path}");
        let built = artifact_text(compiled, artifact);
        let check = match sections.get(*artifact).map(String::as_str) {
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
    checks
}

/// The firewall files: where the build has them, where the host keeps them.
fn firewall_files(model: &Model) -> Vec<(&'static str, String)> {
    vec![
        (
            "host/firewall/host.fw",
            format!("/etc/pve/nodes/{}/host.fw", model.host().node),
        ),
        (
            "host/firewall/cluster.fw",
            "/etc/pve/firewall/cluster.fw".to_string(),
        ),
    ]
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
fn chains(compiled: &Compiled, sections: &BTreeMap<String, String>) -> Vec<Check> {
    let Some(built) = artifact_text(compiled, RULES) else {
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
