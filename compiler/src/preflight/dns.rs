//! Each name the edge routes resolves to the public address of the host
//! that runs the edge VM (its public bridge's `host_address`, where the
//! forwards to the edge listen; in a `[cluster]` not necessarily the first
//! host, and the same address the platform's DNS records publish): an `A`
//! query per `[[edge.route]] sni` to the resolver (`net::dns`), and an
//! `AAAA` query for that host's public IPv6 address when a dual-stack
//! forward carries the edge's HTTPS port (`Model::edge_address6`). A wildcard
//! route (`*.apps.example.org`) is asked for one name under it
//! (`waddlec-preflight.apps.example.org`), which only a wildcard record
//! answers.
//!
//! With `[platform.dns] provider = "rfc2136"`, the server cert-manager and
//! External DNS update is asked about the zone (`project.domain`) itself:
//! an answer (records or none) says it serves the zone, NXDOMAIN or a
//! refusal that it does not. Whether the TSIG key may update the zone is
//! proven only by an update, which a read-only check does not make: the
//! passing check says so rather than claim it.

use std::net::{IpAddr, Ipv4Addr};

use super::{Options, Subject};
use crate::checks::Check;
use crate::model::{DnsProvider, Model};
use crate::net::dns::{lookup, system_resolver, Answer, DnsError, RecordType};

const LAYER: &str = "dns";

/// The label asked under a wildcard route.
const PROBE: &str = "waddlec-preflight";

pub fn check(subject: &Subject<'_>, options: &Options) -> Vec<Check> {
    let Some(edge) = &subject.document.edge else {
        return Vec::new();
    };
    let (public, of) = edge_host(subject.model);
    let of = of.as_str();
    let mut publics = vec![(RecordType::A, IpAddr::V4(public))];
    publics.extend(
        subject
            .model
            .edge_address6()
            .map(|address6| (RecordType::Aaaa, IpAddr::V6(address6))),
    );
    let resolver = match options.resolver.map_or_else(system_resolver, Ok) {
        Ok(resolver) => resolver,
        Err(err) => {
            return vec![Check::unreachable(
                LAYER,
                "resolver",
                err.to_string(),
                "name a resolver with --resolver ADDR[:PORT]",
            )]
        }
    };
    edge.routes
        .iter()
        .flat_map(|route| {
            let host = route.sni.value.as_str();
            let asked = match host.strip_prefix("*.") {
                Some(suffix) => format!("{PROBE}.{suffix}"),
                None => host.to_string(),
            };
            publics.iter().map(move |&(kind, public)| {
                one(
                    host,
                    &asked,
                    kind,
                    public,
                    of,
                    lookup(resolver, &asked, kind, options.timeout),
                )
                .from_line(subject.line(&route.sni.span))
            })
        })
        .collect()
}

/// The public IPv4 address the edge's names must resolve to, and how a
/// failure names it: the address of the host that runs the edge VM, as
/// `resolve` derives `Platform::public_address` (the DNS records External
/// DNS publishes) and as `Model::edge_address6` finds the IPv6 one. A lone
/// host is the only host; in a `[cluster]` the failure names the node,
/// since each host has a public address of its own.
fn edge_host(model: &Model) -> (Ipv4Addr, String) {
    let host = model
        .edge
        .as_ref()
        .and_then(|edge| model.vm(&edge.vm))
        .map_or_else(|| model.host(), |vm| model.host_of(vm));
    let of = match model.proxmox.single_host() {
        Some(_) => String::new(),
        None => format!(" of {}, the host that runs the edge VM", host.node),
    };
    (host.public_address(), of)
}

/// The RFC 2136 server answers for the zone, if the blueprint names one.
pub fn update_server(subject: &Subject<'_>, options: &Options) -> Option<Check> {
    let DnsProvider::Rfc2136 { server, .. } = subject.model.platform.as_ref()?.dns else {
        return None;
    };
    let zone = &subject.model.project.domain;
    let name = format!("update server {server}");
    let line = subject
        .document
        .platform
        .as_ref()
        .and_then(|p| p.dns.server.as_ref())
        .map(|s| subject.line(&s.span()));
    let check = match lookup(server, zone, RecordType::A, options.timeout) {
        Ok(Answer::Addresses(_) | Answer::NoAddress) => Check::pass(
            LAYER,
            name,
            format!(
                "answers for {zone} (the TSIG key's right to update it is proven only by an update: not checked)"
            ),
        ),
        Ok(Answer::NoSuchName) => Check::failed(
            LAYER,
            name,
            format!("says {zone} does not exist: it does not serve the zone"),
            format!("set `[platform.dns] server` to the authoritative server of {zone}"),
        ),
        Err(DnsError::ServerFailure { rcode, .. }) => Check::failed(
            LAYER,
            name,
            format!("refuses questions about {zone} (RCODE {rcode})"),
            format!(
                "set `[platform.dns] server` to the authoritative server of {zone}, or let it answer from the cluster's address"
            ),
        ),
        Err(err) => Check::unreachable(
            LAYER,
            name,
            err.to_string(),
            "check that the server listens on that address and port, and your network; or raise --check-timeout",
        ),
    };
    Some(match line {
        Some(line) => check.from_line(line),
        None => check,
    })
}

/// The check of one name and record type: `host`'s records (asked as
/// `asked`) must include `public` (which `of` says whose it is, or is
/// empty). An AAAA check is named `host AAAA`.
fn one(
    host: &str,
    asked: &str,
    kind: RecordType,
    public: IpAddr,
    of: &str,
    answer: Result<Answer, DnsError>,
) -> Check {
    let record = format!("add the DNS record `{host} {} {public}`", kind.as_str());
    let asked_note = if asked == host {
        String::new()
    } else {
        format!(" (asked {asked})")
    };
    let name = match kind {
        RecordType::A => host.to_string(),
        RecordType::Aaaa => format!("{host} AAAA"),
    };
    let host = name.as_str();
    match answer {
        Ok(Answer::Addresses(found)) if found.contains(&public) => {
            Check::pass(LAYER, host, format!("resolves to {public}{asked_note}"))
        }
        Ok(Answer::Addresses(found)) => Check::failed(
            LAYER,
            host,
            format!(
                "resolves to {}{asked_note}, not the public address {public}{of}",
                found
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!("point it at {public}: {record} in place of the one there"),
        ),
        Ok(Answer::NoSuchName) => Check::failed(
            LAYER,
            host,
            format!("no such name{asked_note}: there is no record"),
            record,
        ),
        Ok(Answer::NoAddress) => Check::failed(
            LAYER,
            host,
            format!("the name has no {} record{asked_note}", kind.as_str()),
            record,
        ),
        Err(err) => Check::unreachable(
            LAYER,
            host,
            err.to_string(),
            "check --resolver (or /etc/resolv.conf) and your network, or raise --timeout",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Outcome;

    use std::net::Ipv4Addr;

    const PUBLIC: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));
    const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

    #[test]
    fn the_public_address_among_the_answers_passes_and_another_fails_naming_it() {
        let found = Answer::Addresses(vec![OTHER, PUBLIC]);
        assert!(one(
            "a.example",
            "a.example",
            RecordType::A,
            PUBLIC,
            "",
            Ok(found)
        )
        .passed());
        let elsewhere = Answer::Addresses(vec![OTHER]);
        let Outcome::Failed { why, fix } = one(
            "*.apps.example",
            "waddlec-preflight.apps.example",
            RecordType::A,
            PUBLIC,
            "",
            Ok(elsewhere),
        )
        .outcome
        else {
            panic!("not failed");
        };
        assert_eq!(
            why,
            "resolves to 198.51.100.7 (asked waddlec-preflight.apps.example), not the public address 203.0.113.10"
        );
        assert!(fix.contains("`*.apps.example A 203.0.113.10`"), "{fix}");
    }

    #[test]
    fn no_answer_is_unreachable_and_no_name_is_failed() {
        let timeout = Err(DnsError::Timeout {
            server: "127.0.0.1:53".parse().expect("address"),
            seconds: 1,
        });
        assert!(matches!(
            one("a.example", "a.example", RecordType::A, PUBLIC, "", timeout).outcome,
            Outcome::Unreachable { .. }
        ));
        assert!(matches!(
            one(
                "a.example",
                "a.example",
                RecordType::A,
                PUBLIC,
                "",
                Ok(Answer::NoSuchName)
            )
            .outcome,
            Outcome::Failed { .. }
        ));
    }

    #[test]
    fn a_missing_aaaa_record_fails_naming_the_record_to_add() {
        let public6: IpAddr = "2001:db8::10".parse().unwrap();
        let check = one(
            "a.example",
            "a.example",
            RecordType::Aaaa,
            public6,
            "",
            Ok(Answer::NoAddress),
        );
        assert_eq!(check.name, "a.example AAAA");
        let Outcome::Failed { why, fix } = check.outcome else {
            panic!("not failed");
        };
        assert_eq!(why, "the name has no AAAA record");
        assert_eq!(fix, "add the DNS record `a.example AAAA 2001:db8::10`");
        assert!(one(
            "a.example",
            "a.example",
            RecordType::Aaaa,
            public6,
            "",
            Ok(Answer::Addresses(vec![public6]))
        )
        .passed());
    }

    use crate::test_support::cluster;

    #[test]
    fn in_a_cluster_the_names_must_resolve_to_the_edge_vm_s_host_as_the_platform_publishes() {
        let model = cluster(|text| text.to_string());
        assert_eq!(
            edge_host(&model),
            (
                Ipv4Addr::new(203, 0, 113, 11),
                " of pve1, the host that runs the edge VM".to_string()
            )
        );
        // The edge moved to pve2: its names follow it, not the first host.
        let model = cluster(|text| {
            text.replace(
                "host = \"pve1\"\nimage = \"debian-edge\"",
                "host = \"pve2\"\nimage = \"debian-edge\"",
            )
        });
        let (public, of) = edge_host(&model);
        assert_eq!(public, Ipv4Addr::new(203, 0, 113, 12));
        assert_eq!(of, " of pve2, the host that runs the edge VM");
        assert_ne!(model.host().public_address(), public);
        let Outcome::Failed { why, .. } = one(
            "a.trio.example.net",
            "a.trio.example.net",
            RecordType::A,
            IpAddr::V4(public),
            &of,
            Ok(Answer::Addresses(vec![IpAddr::V4(Ipv4Addr::new(
                203, 0, 113, 11,
            ))])),
        )
        .outcome
        else {
            panic!("not failed");
        };
        assert_eq!(
            why,
            "resolves to 203.0.113.11, not the public address 203.0.113.12 of pve2, the host that runs the edge VM"
        );
    }
}
