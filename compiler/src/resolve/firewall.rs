//! The host's input firewall: policy, trusted bridges and temporary rules,
//! each of which must carry an end date.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;

use super::Checker;
use crate::blueprint::{Blueprint, Date, Span};
use crate::diagnostics::{rules, Diagnostic};
use crate::model;

pub(super) fn firewall(
    checker: &mut Checker,
    blueprint: &Blueprint,
    bridges: &[model::Bridge],
    operator: &model::Operator,
    today: Date,
) -> model::Firewall {
    let firewall = &blueprint.firewall;
    for (i, bridge) in firewall.allow_bridges.iter().enumerate() {
        if !bridges.iter().any(|b| b.name == **bridge) {
            checker.error(
                &rules::UNDEFINED_TARGET,
                bridge.span(),
                format!("firewall.allow_bridges[{i}]"),
                format!("bridge `{}` is not defined", **bridge),
            );
        }
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
        let source = rule
            .source
            .as_ref()
            .map_or_else(|| Ipv4Net::from(operator.ip), |s| s.trunc());
        temporary.push(model::TemporaryRule {
            name: rule.name.to_string(),
            protocol: rule.protocol,
            port: *rule.port,
            source,
            expires: expires.value,
        });
    }
    model::Firewall {
        input_policy: *firewall.input_policy,
        allow_bridges: firewall
            .allow_bridges
            .iter()
            .map(|b| b.to_string())
            .collect(),
        temporary,
    }
}
