//! The host ruleset, actually applied (not `--test`, which the nft backend
//! passes with typos) by the rendered apply script inside fresh network
//! namespaces, with both iptables backends, beside a stand-in pve-firewall
//! chain that must survive. A blueprint whose public bridge has IPv6 gets
//! its IPv6 ruleset applied the same way with `ip6tables` of the same
//! backend, its public bridge made in the namespace (the script sets its
//! `accept_ra`).

use std::fs;

use crate::support::netns::Netns;
use crate::support::{
    build, cluster_blueprints, host_dirs, host_only_blueprints, require, valid_blueprints,
};

struct Backend {
    name: &'static str,
    iptables: &'static str,
    restore: &'static str,
    save: &'static str,
    ip6tables: &'static str,
    restore6: &'static str,
    save6: &'static str,
}

const BACKENDS: &[Backend] = &[
    Backend {
        name: "nft",
        iptables: "iptables-nft",
        restore: "iptables-nft-restore",
        save: "iptables-nft-save",
        ip6tables: "ip6tables-nft",
        restore6: "ip6tables-nft-restore",
        save6: "ip6tables-nft-save",
    },
    Backend {
        name: "legacy",
        iptables: "iptables-legacy",
        restore: "iptables-legacy-restore",
        save: "iptables-legacy-save",
        ip6tables: "ip6tables-legacy",
        restore6: "ip6tables-legacy-restore",
        save6: "ip6tables-legacy-save",
    },
];

/// `iptables-save` without comments and counters, so two dumps compare equal
/// when the rules are the same.
fn rules(ns: &Netns, backend: &Backend) -> String {
    dump(ns, backend.save)
}

/// The same for IPv6.
fn rules6(ns: &Netns, backend: &Backend) -> String {
    dump(ns, backend.save6)
}

fn dump(ns: &Netns, save: &str) -> String {
    ns.sh(&format!("{save} -c"))
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            l.split_once("] ")
                .filter(|_| l.starts_with('['))
                .map_or(l, |(_, rest)| rest)
        })
        .map(|l| {
            if l.starts_with(':') {
                l.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn ruleset_applies_twice_without_duplicates_and_keeps_pve_firewall_chains() {
    require("iptables-nft-restore");
    require("iptables-legacy-restore");
    let trees: Vec<_> = valid_blueprints()
        .into_iter()
        .chain(host_only_blueprints())
        .chain(cluster_blueprints())
        .map(|blueprint| (build(&blueprint), blueprint))
        .collect();
    let hosts = trees.iter().flat_map(|((_, out), blueprint)| {
        host_dirs(out)
            .into_iter()
            .map(move |host| (host, vnets(out), blueprint))
    });
    for (host, vnets, blueprint) in hosts {
        let script = host.join("network/waddlec-host-network");
        let ruleset = host.join("network/host-network.rules");
        let expected_rules = fs::read_to_string(&ruleset)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("-A "))
            .count();
        assert!(expected_rules >= 3, "the ruleset has rules");
        let ruleset6 = host.join("network/host-network6.rules");
        let expected_rules6 = fs::read_to_string(&ruleset6)
            .ok()
            .map(|text| text.lines().filter(|l| l.starts_with("-A ")).count());
        let model = crate::support::model(blueprint);
        let node = host.file_name().unwrap().to_str().unwrap();
        let public = model
            .proxmox
            .host(node)
            .unwrap_or(model.host())
            .bridges
            .public
            .clone();
        for backend in BACKENDS {
            let ns = Netns::new(&format!("fw{}", backend.name));
            // A cluster's VNets, as SDN leaves them on each host: bridges.
            for vnet in &vnets {
                ns.sh(&format!(
                    "ip link add {vnet} type bridge && ip link set {vnet} up"
                ));
            }
            // pve-firewall's chains as it would leave them.
            ns.sh(&format!(
                "{ipt} -N PVEFW-FORWARD && {ipt} -A PVEFW-FORWARD -m conntrack --ctstate INVALID -j DROP && {ipt} -A FORWARD -j PVEFW-FORWARD \
                 && {ipt} -N PVEFW-INPUT && {ipt} -A PVEFW-INPUT -i lo -j ACCEPT && {ipt} -A INPUT -j PVEFW-INPUT",
                ipt = backend.iptables
            ));
            if expected_rules6.is_some() {
                ns.sh(&format!("ip link add {} type bridge", public.name));
            }
            let apply = format!(
                "IPTABLES={} IPTABLES_RESTORE={} IP6TABLES={} IP6TABLES_RESTORE={} {} {}{}",
                backend.iptables,
                backend.restore,
                backend.ip6tables,
                backend.restore6,
                script.display(),
                ruleset.display(),
                expected_rules6.map_or(String::new(), |_| format!(" {}", ruleset6.display()))
            );
            ns.sh(&apply);
            let first = rules(&ns, backend);
            let first6 = rules6(&ns, backend);
            ns.sh(&apply);
            let second = rules(&ns, backend);
            let context = format!(
                "{} ({}) with {}",
                blueprint.display(),
                host.display(),
                backend.name
            );
            for vnet in &vnets {
                let addresses = ns.sh(&format!("ip -o -4 address show dev {vnet}"));
                assert_eq!(
                    addresses.lines().count(),
                    1,
                    "{context}: the host's one address on {vnet}:\n{addresses}"
                );
            }
            if let Some(expected6) = expected_rules6 {
                let second6 = rules6(&ns, backend);
                assert_eq!(
                    first6, second6,
                    "{context}: re-applying changed the IPv6 ruleset"
                );
                let ours = second6
                    .lines()
                    .filter(|l| l.starts_with("-A WDLC-"))
                    .count();
                assert_eq!(
                    ours, expected6,
                    "{context}: every IPv6 rule loaded exactly once:\n{second6}"
                );
                for jump in [
                    "-A PREROUTING -j WDLC-PREROUTING",
                    "-A POSTROUTING -j WDLC-POSTROUTING",
                    "-A FORWARD -j WDLC-FORWARD",
                ] {
                    assert_eq!(
                        second6.lines().filter(|l| *l == jump).count(),
                        1,
                        "{context}: IPv6 `{jump}` once:\n{second6}"
                    );
                }
                for (key, value) in [
                    ("net.ipv6.conf.all.forwarding".to_string(), "1"),
                    (format!("net.ipv6.conf.{}.accept_ra", public.name), "2"),
                ] {
                    assert_eq!(
                        ns.sh(&format!("sysctl -n {key}")).trim(),
                        value,
                        "{context}: {key}"
                    );
                }
            }
            assert_eq!(first, second, "{context}: re-applying changed the ruleset");
            let ours = second.lines().filter(|l| l.starts_with("-A WDLC-")).count();
            assert_eq!(
                ours, expected_rules,
                "{context}: every rule loaded exactly once:\n{second}"
            );
            for jump in [
                "-A PREROUTING -j WDLC-PREROUTING",
                "-A POSTROUTING -j WDLC-POSTROUTING",
                "-A FORWARD -j WDLC-FORWARD",
            ] {
                assert_eq!(
                    second.lines().filter(|l| *l == jump).count(),
                    1,
                    "{context}: `{jump}` once:\n{second}"
                );
            }
            for survivor in [
                "-A PVEFW-FORWARD -m conntrack --ctstate INVALID -j DROP",
                "-A FORWARD -j PVEFW-FORWARD",
                "-A INPUT -j PVEFW-INPUT",
                "-A PVEFW-INPUT -i lo -j ACCEPT",
            ] {
                assert!(
                    second.lines().any(|l| l == survivor),
                    "{context}: pve-firewall's `{survivor}` was lost:\n{second}"
                );
            }
            // Our jump comes before pve-firewall's in FORWARD.
            let forward: Vec<&str> = second
                .lines()
                .filter(|l| l.starts_with("-A FORWARD "))
                .collect();
            assert_eq!(
                forward.first(),
                Some(&"-A FORWARD -j WDLC-FORWARD"),
                "{context}: {forward:?}"
            );
            assert_eq!(
                ns.sh("sysctl -n net.ipv4.ip_forward").trim(),
                "1",
                "{context}: forwarding on"
            );
        }
    }
}

/// A cluster's VNets (`hosts/sdn.json`); none for a lone host.
fn vnets(out: &std::path::Path) -> Vec<String> {
    let Ok(sdn) = fs::read(out.join("hosts/sdn.json")) else {
        return Vec::new();
    };
    let sdn: serde_json::Value = serde_json::from_slice(&sdn).unwrap();
    sdn["vnets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|vnet| vnet["vnet"].as_str().unwrap().to_string())
        .collect()
}

/// In a cluster each host holds the forwards to the VMs it runs, on its own
/// public address, and routes at its own address on the VNet.
#[test]
fn a_cluster_hosts_forwards_are_its_own_vms() {
    for blueprint in cluster_blueprints() {
        let (_guard, out) = build(&blueprint);
        let placement: serde_json::Value =
            serde_json::from_slice(&fs::read(out.join("hosts/placement.json")).unwrap()).unwrap();
        for (host, entry) in host_dirs(&out)
            .iter()
            .zip(placement["hosts"].as_array().unwrap())
        {
            assert!(host.ends_with(entry["node"].as_str().unwrap()));
            let rules = fs::read_to_string(host.join("network/host-network.rules")).unwrap();
            let runs_edge = entry["vms"]
                .as_array()
                .unwrap()
                .iter()
                .any(|vm| vm == "edge");
            assert_eq!(
                rules.contains("-j DNAT"),
                runs_edge,
                "{}: forwards only where the edge runs:\n{rules}",
                host.display()
            );
            let script = fs::read_to_string(host.join("network/waddlec-host-network")).unwrap();
            assert_eq!(
                script.matches("ip address replace").count(),
                vnets(&out).len(),
                "{}",
                host.display()
            );
        }
    }
}

#[test]
fn a_broken_ruleset_is_refused_not_half_applied() {
    require("iptables-nft-restore");
    let (_guard, out) = build(&valid_blueprints()[0]);
    let script = out.join("host/network/waddlec-host-network");
    let broken = out.join("broken.rules");
    let text = fs::read_to_string(out.join("host/network/host-network.rules"))
        .unwrap()
        .replace("MASQUERADE", "MASQUERAD");
    fs::write(&broken, text).unwrap();
    let ns = Netns::new("fwbad");
    let output = ns.try_sh(&format!("{} {}", script.display(), broken.display()));
    assert!(
        !output.status.success(),
        "a typo in the ruleset must fail the apply"
    );
    let saved = ns.sh("iptables-save");
    assert!(
        !saved.contains("WDLC-"),
        "nothing of a failed ruleset is loaded:\n{saved}"
    );
}
