//! The lock-out guard: before any firewall or SSH change reaches the host,
//! prove from the model that the operator keeps a way to the Proxmox API
//! and to SSH — the seed lost API access exactly by enabling a DROP policy
//! before the rule that admitted it. A path is a rule of the host firewall
//! admitting the operator's address to the port, or a way through
//! Teleport:
//!
//! - for the API, a Teleport app in front of it while the Teleport VM is up;
//! - for SSH, a login through Teleport's proxy (`host.ssh = "teleport:…"`)
//!   that succeeded in this very run, before the firewall changes
//!   ([`Proof::logged_in_through_teleport`]). A blueprint that merely says
//!   the host is reached through Teleport proves nothing: the seed's Phase 3
//!   deletes the direct SSH rule only "after confirming Teleport works".
//!
//! For a `[cluster]` the question is asked of each host ([`check_host`]),
//! with that host's own proof: a host through Teleport is logged in to on
//! its own, and one host's login proves nothing for another
//! (`cluster_hosts::guard`).

use crate::model::{Host, Model, Policy, SshRoute, SSH_PORT};

/// A port the operator must keep reaching, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub what: &'static str,
    pub port: u16,
}

/// What this run has seen of the ways in besides the firewall's rules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Proof {
    /// The Teleport VM runs on the host.
    pub teleport_up: bool,
    /// A login through Teleport's proxy succeeded in this run.
    pub logged_in_through_teleport: bool,
}

/// Why a firewall change would lock the operator out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LockOut {
    #[error("refusing to change the host firewall: with `input_policy = \"{policy}\"` no rule admits the operator ({operator}) to {} on port {}, so this deploy would cut your own access (the seed lost its API exactly this way); add a `[[firewall.temporary]]` rule for port {} from your address{}", .access.what, .access.port, .access.port, hint(.access))]
    NoPath {
        policy: String,
        operator: String,
        access: Access,
    },
    /// SSH goes through Teleport, and logging in through it failed.
    #[error("refusing to go on: host.ssh reaches the host through Teleport ({target}), and logging in through it failed in this run ({reason}){}; fix Teleport first: `tsh login --proxy={proxy}`, then `tsh ls` must list the host as an OpenSSH node and `ssh {target}` with `tsh config`'s settings must log in; or, until it does, keep a `[[firewall.temporary]]` rule for port 22 from your address and write host.ssh as a direct `user@host`", if *.direct_rule { "" } else { ", and no firewall rule admits you to SSH on port 22 either, so nothing would be left to reach the host" })]
    TeleportUnproven {
        target: String,
        proxy: String,
        reason: String,
        /// Whether a rule still admits the operator to SSH directly.
        direct_rule: bool,
    },
}

fn hint(access: &Access) -> &'static str {
    match access.port {
        SSH_PORT => ", or reach the host through Teleport (`host.ssh = \"teleport:LOGIN@NODE\"`, the host registered as its OpenSSH node): a deploy that logs in through it first may drop the rule",
        _ => ", or publish the API as a Teleport app and deploy once Teleport is up",
    }
}

/// The operator's paths to the host, given what this run has proven.
/// Ok if every path survives the firewall.
pub fn check(model: &Model, proof: Proof) -> Result<(), LockOut> {
    check_host(model, model.host(), proof)
}

/// [`check`] for `host`, one of `model`'s: a cluster's firewall rules are
/// the blueprint's for every host, and each host is reached its own way.
pub fn check_host(model: &Model, host: &Host, proof: Proof) -> Result<(), LockOut> {
    if model.firewall.input_policy == Policy::Accept {
        return Ok(());
    }
    let api_port = model.proxmox.api_port();
    let needed = [
        Access {
            what: "SSH",
            port: SSH_PORT,
        },
        Access {
            what: "the Proxmox API",
            port: api_port,
        },
    ];
    for access in needed {
        let direct = model.firewall.admits_tcp(model.operator.ip, access.port);
        let through_teleport = if access.port == SSH_PORT {
            host.ssh_route == SshRoute::Teleport && proof.logged_in_through_teleport
        } else {
            proof.teleport_up
                && model
                    .teleport
                    .as_ref()
                    .is_some_and(|teleport| teleport.fronts_port(api_port))
        };
        if !direct && !through_teleport {
            return Err(LockOut::NoPath {
                policy: format!("{:?}", model.firewall.input_policy).to_uppercase(),
                operator: model.operator.ip.to_string(),
                access,
            });
        }
    }
    Ok(())
}

/// The refusal when the login through Teleport failed: `target` and
/// `proxy` as ssh was given them, `reason` ssh's own words.
pub fn unproven(model: &Model, target: &str, proxy: &str, reason: &str) -> LockOut {
    LockOut::TeleportUnproven {
        target: target.to_string(),
        proxy: proxy.to_string(),
        reason: reason.to_string(),
        direct_rule: model.firewall.admits_tcp(model.operator.ip, SSH_PORT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::url_port;

    fn model(blueprint: &str) -> Model {
        let source = crate::blueprint::SourceFile {
            name: "test.toml".into(),
            text: blueprint.to_string(),
        };
        let today = crate::blueprint::Date {
            year: 2026,
            month: 1,
            day: 1,
        };
        let document = crate::blueprint::parse(&source).unwrap();
        crate::resolve::resolve(&document, today).unwrap().0
    }

    const UP: Proof = Proof {
        teleport_up: true,
        logged_in_through_teleport: false,
    };

    /// The bundled blueprint without the operator's SSH rule.
    fn without_ssh_rule(ssh: &str) -> String {
        waddle()
            .replace(
                "name = \"operator-ssh\"\nport = 22",
                "name = \"operator-ssh\"\nport = 2222",
            )
            .replace("ssh = \"root@203.0.113.10\"", &format!("ssh = \"{ssh}\""))
    }

    fn waddle() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../blueprints/waddle.toml"
        ))
        .unwrap()
    }

    #[test]
    fn the_bundled_blueprint_keeps_both_paths() {
        assert_eq!(check(&model(&waddle()), Proof::default()), Ok(()));
    }

    #[test]
    fn dropping_the_ssh_rule_is_refused_naming_the_port() {
        let text = waddle().replace(
            "name = \"operator-ssh\"\nport = 22",
            "name = \"operator-ssh\"\nport = 2222",
        );
        let error = check(&model(&text), UP).unwrap_err();
        assert!(matches!(&error, LockOut::NoPath { access, .. } if access.port == 22));
        assert!(error.to_string().contains("SSH on port 22"), "{error}");
    }

    #[test]
    fn the_api_may_go_through_teleport_once_it_is_up() {
        let text = waddle().replace(
            "name = \"operator-api\"\nport = 8006",
            "name = \"operator-api\"\nport = 8007",
        );
        let model = model(&text);
        let error = check(&model, Proof::default()).unwrap_err();
        assert!(
            error.to_string().contains("Proxmox API on port 8006"),
            "{error}"
        );
        assert_eq!(check(&model, UP), Ok(()));
    }

    #[test]
    fn without_a_direct_rule_ssh_must_have_gone_through_teleport_in_this_run() {
        let model = model(&without_ssh_rule("teleport:root@waddle-proxmox01"));
        let proven = Proof {
            teleport_up: true,
            logged_in_through_teleport: true,
        };
        assert_eq!(check(&model, proven), Ok(()));
        // Saying so in the blueprint is not a proof.
        let error = check(&model, UP).unwrap_err();
        assert!(error.to_string().contains("SSH on port 22"), "{error}");
    }

    #[test]
    fn a_teleport_login_does_not_count_for_a_direct_route() {
        // The login proves nothing about a host.ssh that never uses it.
        let model = model(&without_ssh_rule("root@203.0.113.10"));
        let proven = Proof {
            teleport_up: true,
            logged_in_through_teleport: true,
        };
        let error = check(&model, proven).unwrap_err();
        assert!(error.to_string().contains("teleport:LOGIN@NODE"), "{error}");
    }

    #[test]
    fn a_proven_ssh_login_keeps_the_api_rule_or_app_required() {
        let text = without_ssh_rule("teleport:root@waddle-proxmox01").replace(
            "name = \"operator-api\"\nport = 8006",
            "name = \"operator-api\"\nport = 8007",
        );
        let model = model(&text);
        let ssh_only = Proof {
            teleport_up: false,
            logged_in_through_teleport: true,
        };
        let error = check(&model, ssh_only).unwrap_err();
        assert!(
            error.to_string().contains("Proxmox API on port 8006"),
            "{error}"
        );
        let both = Proof {
            teleport_up: true,
            logged_in_through_teleport: true,
        };
        assert_eq!(check(&model, both), Ok(()));
    }

    #[test]
    fn a_failed_teleport_login_is_refused_with_the_fix() {
        let target = "root@waddle-proxmox01.teleport.waddle.social";
        let proxy = "teleport.waddle.social:443";
        let without = model(&without_ssh_rule("teleport:root@waddle-proxmox01"));
        let error = unproven(&without, target, proxy, "ERROR: Not logged in.").to_string();
        for part in [
            "Not logged in",
            "no firewall rule admits you to SSH",
            "tsh login --proxy=teleport.waddle.social:443",
            "[[firewall.temporary]]",
        ] {
            assert!(error.contains(part), "{part}: {error}");
        }
        let with = model(&waddle().replace(
            "ssh = \"root@203.0.113.10\"",
            "ssh = \"teleport:root@waddle-proxmox01\"",
        ));
        let error = unproven(&with, target, proxy, "refused").to_string();
        assert!(!error.contains("no firewall rule"), "{error}");
    }

    #[test]
    fn ports_come_from_urls() {
        assert_eq!(url_port("https://203.0.113.10:8006"), Some(8006));
        assert_eq!(url_port("https://10.10.0.1:8006/"), Some(8006));
        assert_eq!(url_port("https://example.org/x"), Some(443));
    }
}
