//! Resolve/validate: [`Blueprint`] document → [`Model`], or the list of
//! everything wrong with it.
//!
//! Owns defaults, cross-references and every topology rule. Checks keep going
//! after the first problem so one run reports all of them; the model is only
//! handed out when there is no error. Pure: the only outside input, today's
//! date (for expiring rules), is a parameter.

mod artifacts;
mod bundle;
mod cilium;
mod cluster;
mod firewall;
mod hosts;
mod images;
mod machines;
mod names;
mod network;
mod network6;
mod placement;
mod platform;
mod routes;
mod secrets;
mod targets;
mod teleport;
mod versions;

use crate::blueprint::{Blueprint, Date, Located, Port, Span};
use crate::diagnostics::{rules, Diagnostic, Diagnostics};
use crate::model::{self, CheckedString, Model};

pub use names::check_dns_name;
pub use secrets::{
    check_reference as check_secret_reference, references as secret_references,
    ENV_PREFIX as SECRET_ENV_PREFIX,
};

/// The operator's login on Debian VMs unless `operator.login` says otherwise.
const DEFAULT_LOGIN: &str = "deploy";

/// A port setting with its default applied. A defaulted port is blamed on
/// `fallback` (the table it belongs to), never on an empty span.
fn port_setting(value: &Option<Located<Port>>, default: u16, fallback: Span) -> Located<Port> {
    value.clone().unwrap_or(Located {
        value: Port(default),
        span: fallback,
    })
}

/// Resolution state shared by the check modules: the findings so far.
#[derive(Default)]
struct Checker {
    diagnostics: Diagnostics,
}

impl Checker {
    fn report(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    fn error(
        &mut self,
        rule: &'static rules::Rule,
        span: Span,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        let path = path.into();
        self.diagnostics
            .push_mut(Diagnostic::new(rule, span, message).with_path(path))
    }

    /// A finding under a warning rule: the rule decides the severity, so
    /// this is [`Checker::error`] under the name the reader expects.
    fn warning(
        &mut self,
        rule: &'static rules::Rule,
        span: Span,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        debug_assert_eq!(rule.severity, crate::diagnostics::Severity::Warning);
        self.error(rule, span, path, message)
    }

    /// Checks a string setting with `check`, reporting its reason under `rule`.
    fn check_str(
        &mut self,
        value: &Located<String>,
        path: &str,
        rule: &'static rules::Rule,
        check: impl Fn(&str) -> Result<(), String>,
    ) {
        if let Err(reason) = check(value) {
            self.error(rule, value.span(), path, format!("`{path}` {reason}"))
                .label = "here".into();
        }
    }

    /// Parses a string setting into its checked type, reporting the reason
    /// under `rule` with the type's help. A refused value is replaced by the
    /// type's example so that checking goes on; the model is then never
    /// handed out.
    fn parse<T: CheckedString>(
        &mut self,
        value: &Located<String>,
        path: &str,
        rule: &'static rules::Rule,
    ) -> T {
        T::parse(value).unwrap_or_else(|reason| {
            let diagnostic = self.error(rule, value.span(), path, format!("`{path}` {reason}"));
            diagnostic.label = "here".into();
            diagnostic.help = Some(T::HELP.into());
            T::example()
        })
    }

    /// [`Checker::parse`] for an optional setting, `default` when absent.
    fn parse_or<T: CheckedString>(
        &mut self,
        value: &Option<Located<String>>,
        default: &str,
        path: &str,
        rule: &'static rules::Rule,
    ) -> T {
        match value {
            Some(value) => self.parse(value, path, rule),
            // Defaults are waddlec's own, made of checked parts (an IPv4
            // address, a DNS label); `model::checked` tests their shapes.
            None => T::parse(default).unwrap_or_else(|_| T::example()),
        }
    }

    /// [`Checker::check_str`], with `help` saying how the value is written.
    fn check_str_with_help(
        &mut self,
        value: &Located<String>,
        path: &str,
        rule: &'static rules::Rule,
        check: impl Fn(&str) -> Result<(), String>,
        help: &str,
    ) {
        if let Err(reason) = check(value) {
            let diagnostic = self.error(rule, value.span(), path, format!("`{path}` {reason}"));
            diagnostic.label = "here".into();
            diagnostic.help = Some(help.into());
        }
    }
}

/// Validates the blueprint and builds the model. On success the second value
/// holds warnings (possibly none); on failure, every finding.
pub fn resolve(blueprint: &Blueprint, today: Date) -> Result<(Model, Diagnostics), Diagnostics> {
    let mut checker = Checker::default();
    let project = project(&mut checker, blueprint);
    let indexed = network::bridges(&mut checker, blueprint);
    let proxmox = hosts::proxmox(&mut checker, blueprint, &indexed);
    // The first host's view of the bridges stands for the networks in
    // every check that is about networks rather than one host's address.
    let bridges: Vec<model::Bridge> = match &proxmox {
        Some(proxmox) => proxmox.hosts[0].bridges.iter().cloned().collect(),
        None => indexed.into_iter().map(|(_, bridge)| bridge).collect(),
    };
    let placement = proxmox
        .as_ref()
        .map(|proxmox| placement::place(&mut checker, blueprint, proxmox));
    let host_bridges = |machine: &str| -> (String, Vec<model::Bridge>) {
        match (&proxmox, &placement) {
            (Some(proxmox), Some(placement)) => {
                let node = placement.host_of(machine);
                let host = proxmox.host(node).unwrap_or(&proxmox.hosts[0]);
                (host.node.clone(), host.bridges.iter().cloned().collect())
            }
            _ => (String::new(), bridges.clone()),
        }
    };
    let operator = operator(&mut checker, blueprint);
    let mut vms = machines::vms(&mut checker, blueprint, &host_bridges);
    vms.extend(machines::talos_nodes(
        &mut checker,
        blueprint,
        &host_bridges,
    ));
    vms.sort_by_key(|vm| vm.id);
    machines::check_identities(&mut checker, blueprint);
    let vips = network::vips(&mut checker, blueprint);
    secrets::check_references(&mut checker, blueprint);
    let talos = machines::talos(&mut checker, blueprint, &bridges);
    machines::check_control_planes(&mut checker, blueprint);
    network::check_addresses(&mut checker, blueprint, &bridges);
    network6::check_addresses6(&mut checker, blueprint);
    network::check_vip_announcers(&mut checker, blueprint, &bridges);
    let teleport = teleport::teleport(&mut checker, blueprint, &project);
    let targets = targets::Targets::new(
        &mut checker,
        blueprint,
        &vms,
        &vips,
        &bridges,
        teleport.as_ref(),
    );
    let edge = routes::edge(&mut checker, blueprint, &project, &targets, &vms);
    let forwards = routes::forwards(&mut checker, blueprint, &targets, &vms, &bridges);
    placement::check_forward_targets(&mut checker, blueprint);
    routes::check_public_hosts(&mut checker, blueprint, edge.as_ref(), teleport.as_ref());
    routes::check_kube_forward(&mut checker, blueprint, &forwards, teleport.as_ref());
    let firewall = firewall::firewall(
        &mut checker,
        blueprint,
        &bridges,
        &operator,
        proxmox.as_ref(),
        teleport.as_ref(),
        today,
    );
    versions::check(&mut checker, blueprint);
    let debian = images::debian(&mut checker, blueprint);
    let cilium = cilium::cilium(&mut checker, blueprint);
    let flux = cluster::flux(&mut checker, blueprint);
    let onepassword_connect = cluster::onepassword_connect(&mut checker, blueprint);
    let mut platform = platform::platform(&mut checker, blueprint, &bridges, &vips, edge.as_ref());
    if let Some(platform) = &mut platform {
        // The DNS names point at the public address of the host that runs
        // the edge: in a cluster, not necessarily the first.
        let edge_host = edge
            .as_ref()
            .and_then(|edge| vms.iter().find(|vm| vm.name == edge.vm))
            .and_then(|vm| proxmox.as_ref()?.host(&vm.host));
        let public = edge_host.map(|host| &host.bridges.public).or_else(|| {
            bridges
                .iter()
                .find(|b| b.role == crate::blueprint::BridgeRole::Public)
        });
        if let Some(public) = public {
            platform.public_address = public.host_address;
            platform.public_address6 =
                model::edge_public_address6(edge.as_ref(), &forwards, public);
        }
    }
    let artifacts = artifacts::store(&mut checker, blueprint);

    if checker.diagnostics.has_errors() {
        return Err(checker.diagnostics);
    }
    // `hosts` reports every reason it has none, so this holds whenever
    // there is no error.
    let Some(proxmox) = proxmox else {
        return Err(checker.diagnostics);
    };
    let model = Model {
        project,
        operator,
        proxmox,
        vms,
        vips,
        talos,
        cilium,
        flux,
        onepassword_connect,
        platform,
        edge,
        forwards,
        firewall,
        teleport,
        debian,
        artifacts,
    };
    Ok((model, checker.diagnostics))
}

fn project(checker: &mut Checker, blueprint: &Blueprint) -> model::Project {
    let project = &blueprint.project;
    checker.check_str(
        &project.name,
        "project.name",
        &rules::INVALID_DNS_NAME,
        names::check_label,
    );
    checker.check_str(
        &project.domain,
        "project.domain",
        &rules::INVALID_DNS_NAME,
        check_dns_name,
    );
    model::Project {
        name: project.name.to_string(),
        domain: project.domain.to_ascii_lowercase(),
    }
}

fn operator(checker: &mut Checker, blueprint: &Blueprint) -> model::Operator {
    let operator = &blueprint.operator;
    let email = checker.parse(&operator.email, "operator.email", &rules::INVALID_VALUE);
    for (i, key) in operator.ssh_keys.iter().enumerate() {
        checker.check_str(
            key,
            &format!("operator.ssh_keys[{i}]"),
            &rules::INVALID_VALUE,
            check_ssh_public_key,
        );
    }
    if operator.ssh_keys.is_empty() {
        checker
            .error(
                &rules::EMPTY_LIST,
                operator.ssh_keys.span(),
                "operator.ssh_keys",
                "`operator.ssh_keys` is empty: nobody could log in to the Debian VMs",
            )
            .help = Some("add at least one SSH public key (`ssh-ed25519 AAAA… you@host`)".into());
    }
    if let Some(login) = &operator.login {
        checker.check_str(
            login,
            "operator.login",
            &rules::INVALID_IDENTIFIER,
            names::check_login,
        );
    }
    model::Operator {
        ip: *operator.ip,
        email,
        login: operator
            .login
            .as_ref()
            .map_or_else(|| DEFAULT_LOGIN.to_string(), |l| l.to_string()),
        ssh_keys: operator
            .ssh_keys
            .iter()
            .map(|k| k.trim().to_string())
            .collect(),
    }
}

/// An OpenSSH public key line (`TYPE BASE64 [COMMENT]`) on one line. It
/// reaches `authorized_keys` through cloud-init's YAML; starting with the
/// key type, it cannot carry `authorized_keys` options.
fn check_ssh_public_key(key: &str) -> Result<(), String> {
    const TYPES: &[&str] = model::checked::SSH_KEY_TYPES;
    let mut fields = key.split_whitespace();
    let kind = fields.next().unwrap_or_default();
    let body = fields.next().unwrap_or_default();
    if key.chars().any(char::is_control) {
        return Err("contains a control character (a newline?); write one key per string".into());
    }
    if key.contains("PRIVATE KEY") {
        return Err("is a private key; only public keys belong in a blueprint".into());
    }
    if !TYPES.contains(&kind) {
        return Err(format!(
            "does not start with a known key type (`ssh-ed25519`, `ecdsa-sha2-nistp256`, …), found `{kind}`"
        ));
    }
    let base64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
    if body.len() < 16 || !body.chars().all(base64) {
        return Err("has no base64 key body after the key type".into());
    }
    Ok(())
}
