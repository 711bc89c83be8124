//! The host's input firewall: policy and temporary rules, each of which
//! must carry an end date, a closed policy that still admits the operator to
//! the Proxmox API, and `allow_bridges` refused (E0128).

use std::collections::BTreeMap;

use ipnet::{IpNet, Ipv4Net};

use super::Checker;
use crate::blueprint::{Blueprint, Date, Policy, Protocol, Span};
use crate::diagnostics::{rules, Diagnostic};
use crate::model;

pub(super) fn firewall(
    checker: &mut Checker,
    blueprint: &Blueprint,
    bridges: &[model::Bridge],
    operator: &model::Operator,
    proxmox: Option<&model::Proxmox>,
    teleport: Option<&model::Teleport>,
    today: Date,
) -> model::Firewall {
    let firewall = &blueprint.firewall;
    check_sources_outside(checker, blueprint, bridges, operator);
    if let Some(first) = firewall.allow_bridges.first() {
        let diagnostic = checker.error(
            &rules::BRIDGE_ACCEPTS_EVERYTHING,
            first.span(),
            "firewall.allow_bridges",
            format!(
                "`allow_bridges` would accept everything from `{}`, the internet-facing VM's \
                 traffic included",
                **first
            ),
        );
        diagnostic.label = "accepts every port from every VM".into();
        diagnostic.help = Some(
            "remove `allow_bridges`: each VM is admitted to exactly the host services it uses \
             (see `waddlec explain E0128`)"
                .into(),
        );
    }
    let mut names: BTreeMap<&str, Span> = BTreeMap::new();
    let mut temporary = Vec::new();
    for (i, rule) in firewall.temporary.iter().enumerate() {
        let path = format!("firewall.temporary[{i}]");
        if let Some(first) = names.insert(&rule.name, rule.name.span()) {
            checker
                .error(
                    &rules::DUPLICATE_NAME,
                    rule.name.span(),
                    format!("{path}.name"),
                    format!("temporary rule `{}` is defined twice", *rule.name),
                )
                .related
                .push((first, "first defined here".into()));
        }
        checker.check_str(
            &rule.name,
            &format!("{path}.name"),
            &rules::INVALID_DNS_NAME,
            super::names::check_label,
        );
        let Some(expires) = &rule.expires else {
            let diagnostic = checker.error(
                &rules::TEMPORARY_RULE_WITHOUT_LIFETIME,
                rule.span(),
                format!("{path}.expires"),
                format!("temporary rule `{}` has no `expires` date", *rule.name),
            );
            diagnostic.label = "this rule never ends".into();
            diagnostic.help =
                Some("add `expires = YYYY-MM-DD`, the last day the rule may exist".into());
            continue;
        };
        if expires.value < today {
            checker.report(
                Diagnostic::new(
                    &rules::TEMPORARY_RULE_EXPIRED,
                    expires.span(),
                    format!(
                        "temporary rule `{}` expired on {}",
                        *rule.name, expires.value
                    ),
                )
                .with_path(format!("{path}.expires"))
                .with_label("past due")
                .with_help(
                    "remove the rule from the blueprint (or extend it on purpose) and deploy",
                ),
            );
        }
        if let Some(source) = &rule.source {
            if source.prefix_len() == 0 || source.trunc() != source.value {
                let what = if source.prefix_len() == 0 {
                    "the whole internet"
                } else {
                    "not a network address (host bits set)"
                };
                let fix = if source.prefix_len() == 0 {
                    IpNet::from(source.addr()).to_string()
                } else {
                    source.trunc().to_string()
                };
                checker
                    .error(
                        &rules::ADDRESS_OUTSIDE_NETWORK,
                        source.span(),
                        format!("{path}.source"),
                        format!("source `{}` is {what}", source.value),
                    )
                    .help = Some(format!("write the network itself, e.g. `{fix}`"));
            }
        }
        if let Some(source) = rule.source.as_ref().filter(|s| s.addr().is_ipv6()) {
            let public_v6 = bridges
                .iter()
                .any(|b| b.role == crate::blueprint::BridgeRole::Public && b.v6.is_some());
            if !public_v6 {
                checker
                    .error(
                        &rules::IPV6_SOURCE_WITHOUT_IPV6,
                        source.span(),
                        format!("{path}.source"),
                        format!(
                            "{} is an IPv6 network, but the host has no public IPv6 address",
                            source.value
                        ),
                    )
                    .help = Some(
                    "give the public bridge `cidr6`, `host_address6` and `gateway6`, or write an IPv4 source"
                        .into(),
                );
            }
        }
        let source = rule
            .source
            .as_ref()
            .map_or_else(|| IpNet::V4(Ipv4Net::from(operator.ip)), |s| s.trunc());
        temporary.push(model::TemporaryRule {
            name: rule.name.to_string(),
            protocol: rule.protocol,
            port: *rule.port,
            source,
            expires: expires.value,
        });
    }
    let resolved = model::Firewall {
        input_policy: *firewall.input_policy,
        temporary,
    };
    // A rule refused above (no end date) is already an error; judging
    // access without it would blame the policy for the rule's mistake.
    let Some(proxmox) = proxmox else {
        return resolved;
    };
    if resolved.temporary.len() == firewall.temporary.len() {
        check_operator_access(checker, blueprint, &resolved, operator, proxmox, teleport);
    }
    let ssh_keys = match (&blueprint.host, &blueprint.cluster) {
        (Some(host), _) => vec![("host.ssh".to_string(), host.ssh.as_ref())],
        (None, Some(cluster)) => cluster
            .hosts
            .iter()
            .enumerate()
            .map(|(h, host)| (format!("cluster.host[{h}].ssh"), host.ssh.as_ref()))
            .collect(),
        (None, None) => Vec::new(),
    };
    for ((path, ssh), host) in ssh_keys.into_iter().zip(&proxmox.hosts) {
        if let Some(ssh) = ssh {
            check_ssh_route(checker, ssh, &path, host, teleport);
        }
    }
    resolved
}

/// The operator and the temporary rules' sources are outside the internal
/// networks: from an internal bridge the host admits only the VMs' own
/// services (`Model::host_access`), and its DROP for the bridge comes
/// before the temporary rules, so an operator there (a VPN VM, say) would
/// be locked out however the rules read.
fn check_sources_outside(
    checker: &mut Checker,
    blueprint: &Blueprint,
    bridges: &[model::Bridge],
    operator: &model::Operator,
) {
    let internal = |net: &IpNet| {
        bridges
            .iter()
            .filter(|b| b.role == crate::blueprint::BridgeRole::Internal)
            .find(|b| match net {
                IpNet::V4(net) => {
                    b.network.contains(&net.network()) || net.contains(&b.network.network())
                }
                IpNet::V6(net) => b.v6.is_some_and(|v6| {
                    v6.network.contains(&net.network()) || net.contains(&v6.network.network())
                }),
            })
    };
    if let Some(bridge) = internal(&IpNet::V4(Ipv4Net::from(operator.ip))) {
        let diagnostic = checker.error(
            &rules::OPERATOR_LOCKED_OUT,
            blueprint.operator.ip.span(),
            "operator.ip",
            format!(
                "the operator's address {} is on internal bridge `{}`, where the host admits only \
                 the VMs' own services: every rule for the operator would be dropped first",
                operator.ip, bridge.name
            ),
        );
        diagnostic.label = "on an internal network".into();
        diagnostic.help = Some(
            "give the public address the operator comes from (reach the VMs through the host or \
             Teleport)"
                .into(),
        );
    }
    for (i, rule) in blueprint.firewall.temporary.iter().enumerate() {
        let Some(source) = &rule.source else { continue };
        if let Some(bridge) = internal(&source.trunc()) {
            let diagnostic = checker.error(
                &rules::ROLE_MISMATCH,
                source.span(),
                format!("firewall.temporary[{i}].source"),
                format!(
                    "temporary rule `{}` admits {} of internal bridge `{}`: the host drops that \
                     bridge's traffic before temporary rules",
                    *rule.name,
                    source.trunc(),
                    bridge.name
                ),
            );
            diagnostic.label = "an internal network".into();
            diagnostic.help = Some(
                "temporary rules are for the operator outside; what a VM may reach on the host \
                 follows from the blueprint (SSH and iSCSI for the nodes, SSH and the API for \
                 Teleport)"
                    .into(),
            );
        }
    }
}

/// `host.ssh` through Teleport needs the blueprint's Teleport, and a role
/// granting the login (E0140, E0141). Whether the path works is the deploy
/// guard's question, asked by logging in through it.
fn check_ssh_route(
    checker: &mut Checker,
    ssh: &crate::blueprint::Located<String>,
    path: &str,
    host: &model::Host,
    teleport: Option<&model::Teleport>,
) {
    if host.ssh_route != model::SshRoute::Teleport {
        return;
    }
    let target = host.ssh_target.to_string();
    let (login, node) = target.rsplit_once('@').unwrap_or(("", &target));
    match teleport {
        None => {
            let diagnostic = checker.error(
                &rules::SSH_THROUGH_ABSENT_TELEPORT,
                ssh.span(),
                path,
                format!("`{path}` goes through Teleport, but the blueprint has no `[teleport]`"),
            );
            diagnostic.label = "through Teleport".into();
            diagnostic.help = Some(format!(
                "add `[teleport]` (the host becomes its node), or write `ssh = \"root@{node}\"` \
                 for a direct connection"
            ));
        }
        Some(teleport) if login.is_empty() || !teleport.grants_login(login) => {
            let shown = if login.is_empty() { "(none)" } else { login };
            let diagnostic = checker.error(
                &rules::TELEPORT_LOGIN_NOT_GRANTED,
                ssh.span(),
                path,
                format!(
                    "`{path}` logs in through Teleport as `{shown}`, a login no \
                     `[[teleport.role]]` grants: Teleport would refuse every deploy"
                ),
            );
            diagnostic.label = "login not granted".into();
            diagnostic.help = Some(format!(
                "write `teleport:LOGIN@{node}` with a login a role lists, or add it to a role's \
                 `logins`"
            ));
        }
        Some(_) => {}
    }
}

/// Under a DROP or REJECT policy some rule must admit the operator's own
/// address to the Proxmox API, or a Teleport app must front it: the same
/// paths `deploy::guard` demands before it changes the firewall, checked
/// here so the blueprint is refused where it is written. (Whether Teleport
/// is up is the guard's question; the build cannot know it.)
fn check_operator_access(
    checker: &mut Checker,
    blueprint: &Blueprint,
    resolved: &model::Firewall,
    operator: &model::Operator,
    proxmox: &model::Proxmox,
    teleport: Option<&model::Teleport>,
) {
    let port = proxmox.api_port();
    let through_teleport = teleport.is_some_and(|teleport| teleport.fronts_port(port));
    if resolved.admits_tcp(operator.ip, port) || through_teleport {
        return;
    }
    let firewall = &blueprint.firewall;
    let policy = match *firewall.input_policy {
        Policy::Accept => return,
        Policy::Drop => "DROP",
        Policy::Reject => "REJECT",
    };
    // Where to point: the first rule for the API that names someone else.
    let api_rules: Vec<(usize, &crate::blueprint::TemporaryRule)> = firewall
        .temporary
        .iter()
        .map(|rule| &rule.value)
        .enumerate()
        .filter(|(_, rule)| rule.protocol == Protocol::Tcp && rule.port.value.0 == port)
        .collect();
    let operator_ip = &blueprint.operator.ip;
    // Every rule left names a source, and none contains the operator.
    let others = api_rules
        .iter()
        .find_map(|(i, rule)| rule.source.as_ref().map(|source| (i, rule, source)));
    let diagnostic = match others {
        Some((i, rule, source)) => {
            let diagnostic = checker.error(
                &rules::OPERATOR_LOCKED_OUT,
                source.span(),
                format!("firewall.temporary[{i}].source"),
                format!(
                    "temporary rule `{}` admits {} to the Proxmox API (port {port}), but not the \
                     operator's address {}: under `input_policy = \"{policy}\"` the operator \
                     would be locked out",
                    *rule.name,
                    source.trunc(),
                    operator.ip
                ),
            );
            diagnostic.label = format!("does not contain {}", operator.ip);
            diagnostic.help = Some(format!(
                "make `source` a network containing {} (or remove it: the default is the \
                 operator's address), or correct `operator.ip`",
                operator.ip
            ));
            diagnostic
        }
        None => {
            let diagnostic = checker.error(
                &rules::OPERATOR_LOCKED_OUT,
                firewall.input_policy.span(),
                "firewall.input_policy",
                format!(
                    "`input_policy = \"{policy}\"` and no rule admits the operator ({}) to the \
                     Proxmox API on TCP port {port}: the first firewall deploy would cut off the \
                     API every later deploy needs",
                    operator.ip
                ),
            );
            diagnostic.label = "closes the API".into();
            diagnostic.help = Some(format!(
                "add `[[firewall.temporary]]` with `name = \"operator-api\"`, `port = {port}` \
                 and an `expires` date (its source defaults to `operator.ip`), or publish the \
                 API as a Teleport app"
            ));
            diagnostic
        }
    };
    diagnostic
        .related
        .push((operator_ip.span(), "the operator's address".into()));
}

#[cfg(test)]
mod tests {
    use crate::blueprint::{Date, SourceFile};
    use crate::CompileError;

    /// The codes and paths `check` finds in the bundled blueprint with
    /// `edit` applied.
    fn findings(edit: impl Fn(&str) -> String) -> Vec<(String, String)> {
        let source = SourceFile {
            name: "waddle.toml".into(),
            text: edit(include_str!("../../../blueprints/waddle.toml")),
        };
        let today = Date {
            year: 2000,
            month: 1,
            day: 1,
        };
        match crate::check(&source, today) {
            Ok(_) => Vec::new(),
            Err(CompileError::Invalid(diagnostics)) => diagnostics
                .sorted()
                .into_iter()
                .map(|d| (d.rule.code.to_string(), d.path.unwrap_or_default()))
                .collect(),
            Err(other) => panic!("{other}"),
        }
    }

    /// An IPv6 temporary source is rendered only when the host has a
    /// public IPv6 address; without one it is E0147.
    #[test]
    fn an_ipv6_temporary_source_needs_a_public_ipv6_address() {
        let v6_rule = |text: &str| {
            text.replacen(
                "name = \"operator-ssh\"\nport = 22\n",
                "name = \"operator-ssh\"\nport = 22\nsource = \"2001:db8:99::/48\"\n",
                1,
            )
        };
        assert_eq!(
            findings(v6_rule),
            [(
                "E0147".to_string(),
                "firewall.temporary[0].source".to_string()
            )]
        );
        let dual_stack = |text: &str| {
            v6_rule(text).replacen(
                "gateway = \"203.0.113.1\"\n",
                "gateway = \"203.0.113.1\"\ncidr6 = \"2001:db8:10::/64\"\n\
                 host_address6 = \"2001:db8:10::10\"\ngateway6 = \"fe80::1\"\n",
                1,
            )
        };
        // The forwards then want IPv6 targets; every one says `ipv6 = false`.
        let ipv4_forwards = |text: &str| {
            [80, 443, 3023, 3024, 3026]
                .iter()
                .fold(dual_stack(text), |text, port| {
                    text.replacen(
                        &format!("[[forward]]\nport = {port}\n"),
                        &format!("[[forward]]\nport = {port}\nipv6 = false\n"),
                        1,
                    )
                })
        };
        assert_eq!(findings(ipv4_forwards), []);
    }
}
