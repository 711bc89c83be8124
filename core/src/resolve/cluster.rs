//! What the cluster gets at bootstrap besides Talos itself: `[flux]` (the
//! repository the `FluxInstance` syncs) and `[onepassword_connect]` (the
//! credentials applied over the Kubernetes API). Both need a `[talos]`
//! cluster; secrets stay references here and are read only by
//! `waddlec cluster bootstrap`.

use super::{names, Checker};
use crate::blueprint::{Blueprint, Located, Span};
use crate::diagnostics::rules;
use crate::model::{self, CheckedString};

const DEFAULT_BRANCH: &str = "main";
/// The newest Flux distribution the Flux Operator 0.40 bundles.
const DEFAULT_DISTRIBUTION: &str = "2.7.x";
const DEFAULT_CONNECT_NAMESPACE: &str = "onepassword";

pub fn flux(checker: &mut Checker, blueprint: &Blueprint) -> Option<model::Flux> {
    let flux = blueprint.flux.as_ref()?;
    let cluster = needs_talos(checker, blueprint, "flux", flux.url.span())?;
    let url = if flux.url.starts_with("ssh://") {
        checker.parse(&flux.url, "flux.url", &rules::INVALID_LOCATION)
    } else {
        checker
            .error(
                &rules::INVALID_LOCATION,
                flux.url.span(),
                "flux.url",
                "Flux pulls with the deploy key, so the repository URL must be `ssh://`",
            )
            .help = Some(model::GitUrl::HELP.into());
        model::GitUrl::example()
    };
    let branch = checker.parse_or(
        &flux.branch,
        DEFAULT_BRANCH,
        "flux.branch",
        &rules::INVALID_IDENTIFIER,
    );
    let path = checker.parse_or(
        &flux.path,
        &format!("clusters/{cluster}"),
        "flux.path",
        &rules::UNSAFE_PATH,
    );
    if let Some(distribution) = &flux.distribution {
        checker.check_str_with_help(
            distribution,
            "flux.distribution",
            &rules::INVALID_VALUE,
            names::check_version_range,
            "write a Flux release or a range of one, e.g. `2.7.x`",
        );
    }
    if flux.known_hosts.is_empty() {
        checker
            .error(
                &rules::EMPTY_LIST,
                flux.known_hosts.span(),
                "flux.known_hosts",
                "Flux verifies the git server's host key; `known_hosts` is empty",
            )
            .help = Some("paste the output of `ssh-keyscan github.com`".into());
    }
    let known_hosts = flux
        .known_hosts
        .iter()
        .enumerate()
        .map(|(i, line)| {
            checker.parse(
                line,
                &format!("flux.known_hosts[{i}]"),
                &rules::INVALID_VALUE,
            )
        })
        .collect();
    let text = |value: &Option<Located<String>>, default: &str| {
        value
            .as_ref()
            .map_or(default.to_string(), |v| v.to_string())
    };
    Some(model::Flux {
        url,
        branch,
        path,
        distribution: text(&flux.distribution, DEFAULT_DISTRIBUTION),
        deploy_key: flux.deploy_key.value.clone(),
        known_hosts,
        operator_version: super::versions::required_string(
            checker,
            &blueprint.versions.flux_operator,
            "flux_operator",
            "Flux (`[flux]`)",
            flux.url.span(),
        ),
    })
}

pub fn onepassword_connect(
    checker: &mut Checker,
    blueprint: &Blueprint,
) -> Option<model::OnePasswordConnect> {
    let connect = blueprint.onepassword_connect.as_ref()?;
    needs_talos(
        checker,
        blueprint,
        "onepassword_connect",
        connect.token.span(),
    )?;
    if let Some(namespace) = &connect.namespace {
        checker.check_str_with_help(
            namespace,
            "onepassword_connect.namespace",
            &rules::INVALID_DNS_NAME,
            names::check_lowercase_label,
            names::LOWERCASE_LABEL_HELP,
        );
    }
    Some(model::OnePasswordConnect {
        namespace: connect
            .namespace
            .as_ref()
            .map_or(DEFAULT_CONNECT_NAMESPACE.to_string(), |n| n.to_string()),
        credentials: connect.credentials.value.clone(),
        token: connect.token.value.clone(),
    })
}

/// The cluster's name, or an error at `span` if there is no `[talos]`.
fn needs_talos(
    checker: &mut Checker,
    blueprint: &Blueprint,
    table: &str,
    span: Span,
) -> Option<String> {
    let Some(talos) = &blueprint.talos else {
        checker
            .error(
                &rules::MISSING_KEY,
                span,
                "talos",
                format!("`[{table}]` is installed into the Talos cluster, but the blueprint has no `[talos]`"),
            )
            .help = Some(format!("add a `[talos]` cluster or remove `[{table}]`"));
        return None;
    };
    Some(talos.cluster.to_string())
}
