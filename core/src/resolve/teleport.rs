//! Teleport settings: the VM it runs on, its public names, GitHub SSO (exact
//! team slugs), roles, apps, app subdomains and Kubernetes access. The
//! checks here are the ones the seed's troubleshooting section paid for.

use std::collections::BTreeSet;

use super::{check_dns_name, names, port_setting, Checker};
use crate::blueprint::{Blueprint, Port};
use crate::diagnostics::rules;
use crate::model;

/// Roles every Teleport cluster has without defining them.
const BUILTIN_ROLES: &[&str] = &["access", "auditor", "editor"];

pub(super) fn teleport(
    checker: &mut Checker,
    blueprint: &Blueprint,
    project: &model::Project,
) -> Option<model::Teleport> {
    let teleport = blueprint.teleport.as_ref()?;
    if !blueprint.vms.iter().any(|vm| *vm.name == *teleport.vm) {
        checker.error(
            &rules::UNDEFINED_TARGET,
            teleport.vm.span(),
            "teleport.vm",
            format!("`{}` is not a `[[vm]]`", *teleport.vm),
        );
    }
    public_host(
        checker,
        &teleport.public_host,
        "teleport.public_host",
        &project.domain,
    );
    let web_port = port_setting(&teleport.web_port, 3080, teleport.vm.span());
    let ssh_port = port_setting(&teleport.ssh_port, 3023, teleport.vm.span());
    let tunnel_port = port_setting(&teleport.tunnel_port, 3024, teleport.vm.span());
    let ports = [
        ("web_port", &web_port),
        ("ssh_port", &ssh_port),
        ("tunnel_port", &tunnel_port),
    ];
    for (i, (key, port)) in ports.iter().enumerate() {
        if let Some((other, _)) = ports[..i].iter().find(|(_, p)| p.value == port.value) {
            checker.error(
                &rules::ROLE_MISMATCH,
                port.span(),
                format!("teleport.{key}"),
                format!("`{key}` and `{other}` are both {}", port.value),
            );
        }
    }
    let mut role_names = BTreeSet::new();
    let mut roles = Vec::new();
    for (i, role) in teleport.roles.iter().enumerate() {
        let path = format!("teleport.role[{i}]");
        checker.check_str(
            &role.name,
            &format!("{path}.name"),
            &rules::INVALID_DNS_NAME,
            names::check_label,
        );
        if !role_names.insert(role.name.to_string()) {
            checker.error(
                &rules::DUPLICATE_NAME,
                role.name.span(),
                format!("{path}.name"),
                format!("role `{}` is defined twice", *role.name),
            );
        }
        for (l, login) in role.logins.iter().enumerate() {
            checker.check_str(
                login,
                &format!("{path}.logins[{l}]"),
                &rules::INVALID_IDENTIFIER,
                names::check_login,
            );
        }
        roles.push(model::TeleportRole {
            name: role.name.to_string(),
            logins: role.logins.iter().map(|l| l.to_string()).collect(),
        });
    }
    let github = teleport
        .github
        .as_ref()
        .map(|github| resolve_github(checker, github, &role_names));
    let mut apps = Vec::new();
    for (i, app) in teleport.apps.iter().enumerate() {
        let path = format!("teleport.app[{i}]");
        checker.check_str(
            &app.name,
            &format!("{path}.name"),
            &rules::INVALID_DNS_NAME,
            names::check_label,
        );
        public_host(
            checker,
            &app.public_host,
            &format!("{path}.public_host"),
            &project.domain,
        );
        let uri = checker.parse(&app.uri, &format!("{path}.uri"), &rules::INVALID_LOCATION);
        apps.push(model::TeleportApp {
            name: app.name.to_string(),
            public_host: app.public_host.to_ascii_lowercase(),
            uri,
            insecure_skip_verify: app.insecure_skip_verify,
        });
    }
    let kubernetes = teleport.kubernetes.as_ref().and_then(|kube| {
        let kubeconfig = checker.parse(
            &kube.kubeconfig,
            "teleport.kubernetes.kubeconfig",
            &rules::UNSAFE_PATH,
        );
        match &blueprint.talos {
            Some(talos) => Some(model::TeleportKubernetes {
                cluster: talos.cluster.to_string(),
                kubeconfig,
                port: kube.port.as_ref().map_or(Port(3026), |p| p.value),
            }),
            None => {
                checker.error(
                    &rules::UNDEFINED_TARGET,
                    kube.kubeconfig.span(),
                    "teleport.kubernetes",
                    "Teleport's Kubernetes access needs a `[talos]` cluster to serve",
                );
                None
            }
        }
    });
    Some(model::Teleport {
        vm: teleport.vm.to_string(),
        public_host: teleport.public_host.to_ascii_lowercase(),
        web_port: *web_port,
        ssh_port: *ssh_port,
        tunnel_port: *tunnel_port,
        github,
        app_subdomains: teleport.app_subdomains,
        roles,
        apps,
        kubernetes,
        version: super::versions::required_string(
            checker,
            &blueprint.versions.teleport,
            "teleport",
            "Teleport (`[teleport]`)",
            teleport.vm.span(),
        ),
    })
}

fn public_host(
    checker: &mut Checker,
    host: &crate::blueprint::Located<String>,
    path: &str,
    domain: &str,
) {
    if let Err(reason) = check_dns_name(host) {
        checker.error(
            &rules::INVALID_DNS_NAME,
            host.span(),
            path,
            format!("`{}` is not a valid DNS name: {reason}", **host),
        );
    } else if !names::is_under_domain(host, domain) {
        checker.error(
            &rules::HOST_OUTSIDE_DOMAIN,
            host.span(),
            path,
            format!("`{}` is not under the project domain `{domain}`", **host),
        );
    }
}

/// `[teleport.github]`: the organisation, the OAuth app and which team gets
/// which roles (each a `[[teleport.role]]` or one of Teleport's own).
fn resolve_github(
    checker: &mut Checker,
    github: &crate::blueprint::TeleportGithub,
    role_names: &BTreeSet<String>,
) -> model::TeleportGithub {
    let org: model::GithubOrg = checker.parse(
        &github.org,
        "teleport.github.org",
        &rules::INVALID_IDENTIFIER,
    );
    let client_id: model::OAuthClientId = checker.parse(
        &github.client_id,
        "teleport.github.client_id",
        &rules::INVALID_IDENTIFIER,
    );
    let mut teams_to_roles = Vec::new();
    if github.teams_to_roles.is_empty() {
        checker
            .error(&rules::EMPTY_LIST, github.teams_to_roles.span(), "teleport.github.teams_to_roles", "no `teams_to_roles`: nobody could log in through GitHub")
            .help = Some("map a team slug to a role: `teams_to_roles = [{ team = \"infra\", roles = [\"infra-admin\"] }]`".into());
    }
    for (i, mapping) in github.teams_to_roles.iter().enumerate() {
        let path = format!("teleport.github.teams_to_roles[{i}]");
        checker.check_str(
            &mapping.team,
            &format!("{path}.team"),
            &rules::INVALID_IDENTIFIER,
            names::check_team_slug,
        );
        for (r, role) in mapping.roles.iter().enumerate() {
            if !role_names.contains(role.as_str()) && !BUILTIN_ROLES.contains(&role.as_str()) {
                checker
                    .error(&rules::UNDEFINED_TARGET, role.span(), format!("{path}.roles[{r}]"), format!("role `{}` is neither defined in `[[teleport.role]]` nor built into Teleport", **role))
                    .help = Some(format!("built-in roles: {}", BUILTIN_ROLES.join(", ")));
            }
        }
        teams_to_roles.push((
            mapping.team.to_string(),
            mapping.roles.iter().map(|r| r.to_string()).collect(),
        ));
    }
    model::TeleportGithub {
        org,
        client_id,
        client_secret: github.client_secret.value.clone(),
        teams_to_roles,
    }
}
