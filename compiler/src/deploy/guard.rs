//! The lock-out guard: before any firewall or SSH change reaches the host,
//! prove from the model that the operator keeps a way to the Proxmox API
//! and to SSH — the seed lost API access exactly by enabling a DROP policy
//! before the rule that admitted it. A path is either a rule of the host
//! firewall admitting the operator's address to the port, or, for the API,
//! a Teleport app in front of it while the Teleport VM is up.

use crate::model::{Model, Policy};

/// A port the operator must keep reaching, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub what: &'static str,
    pub port: u16,
}

/// Why a firewall change would lock the operator out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("refusing to change the host firewall: with `input_policy = \"{policy}\"` no rule admits the operator ({operator}) to {} on port {}, so this deploy would cut your own access (the seed lost its API exactly this way); add a `[[firewall.temporary]]` rule for port {} from your address{}", .access.what, .access.port, .access.port, teleport_hint(.access))]
pub struct LockOut {
    pub policy: String,
    pub operator: String,
    pub access: Access,
}

fn teleport_hint(access: &Access) -> &'static str {
    if access.what == "the Proxmox API" {
        ", or publish the API as a Teleport app and deploy once Teleport is up"
    } else {
        ""
    }
}

/// The operator's paths to the host, given whether Teleport is up (its VM
/// running and answering). Ok if every path survives the firewall.
pub fn check(model: &Model, teleport_up: bool) -> Result<(), LockOut> {
    if model.firewall.input_policy == Policy::Accept {
        return Ok(());
    }
    let api_port = model.host.api_port();
    let needed = [
        Access {
            what: "SSH",
            port: 22,
        },
        Access {
            what: "the Proxmox API",
            port: api_port,
        },
    ];
    for access in needed {
        let direct = model.firewall.admits_tcp(model.operator.ip, access.port);
        let through_teleport = access.port == api_port
            && teleport_up
            && model
                .teleport
                .as_ref()
                .is_some_and(|teleport| teleport.fronts_port(api_port));
        if !direct && !through_teleport {
            return Err(LockOut {
                policy: format!("{:?}", model.firewall.input_policy).to_uppercase(),
                operator: model.operator.ip.to_string(),
                access,
            });
        }
    }
    Ok(())
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

    fn waddle() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../blueprints/waddle.toml"
        ))
        .unwrap()
    }

    #[test]
    fn the_bundled_blueprint_keeps_both_paths() {
        assert_eq!(check(&model(&waddle()), false), Ok(()));
    }

    #[test]
    fn dropping_the_ssh_rule_is_refused_naming_the_port() {
        let text = waddle().replace(
            "name = \"operator-ssh\"\nport = 22",
            "name = \"operator-ssh\"\nport = 2222",
        );
        let error = check(&model(&text), true).unwrap_err();
        assert_eq!(error.access.port, 22);
        assert!(error.to_string().contains("SSH on port 22"), "{error}");
    }

    #[test]
    fn the_api_may_go_through_teleport_once_it_is_up() {
        let text = waddle().replace(
            "name = \"operator-api\"\nport = 8006",
            "name = \"operator-api\"\nport = 8007",
        );
        let model = model(&text);
        let error = check(&model, false).unwrap_err();
        assert!(
            error.to_string().contains("Proxmox API on port 8006"),
            "{error}"
        );
        assert_eq!(check(&model, true), Ok(()));
    }

    #[test]
    fn ports_come_from_urls() {
        assert_eq!(url_port("https://203.0.113.10:8006"), Some(8006));
        assert_eq!(url_port("https://10.10.0.1:8006/"), Some(8006));
        assert_eq!(url_port("https://example.org/x"), Some(443));
    }
}
