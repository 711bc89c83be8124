//! The result of read-only checks — of the live platform (`waddlec status`)
//! or of the external services a blueprint names (`waddlec preflight`) —
//! and their one printed form: a line per check in text, an array of
//! objects in JSON, and the exit code the whole set decides.
//!
//! A check that could not reach what it checks (a timeout, a refused
//! connection, a layer behind one that failed) is `unreachable`, never
//! `failed`: "the API is down" and "the API says the node runs the wrong
//! version" need different fixes. Nothing here performs a check; the
//! commands build [`Check`]s and hand them to [`Report`].

use serde::Serialize;

use crate::exit;

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// As the blueprint says; `detail` is what was seen (a version, a count).
    Pass { detail: String },
    /// Reached, and not as the blueprint says: why, and what to do.
    Failed { why: String, fix: String },
    /// Could not be reached or asked: why, and what to do.
    Unreachable { why: String, fix: String },
}

/// One check: the layer it belongs to (`host`, `vms`, `talos`…), what it
/// checks, what it found, the blueprint line it comes from when there is
/// one (`blueprints/waddle.toml:12:1`), and the Proxmox node it was made
/// on when that matters (a VM's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub layer: String,
    pub name: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl Check {
    pub fn pass(layer: &str, name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(
            layer,
            name,
            Outcome::Pass {
                detail: detail.into(),
            },
        )
    }

    pub fn failed(
        layer: &str,
        name: impl Into<String>,
        why: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::new(
            layer,
            name,
            Outcome::Failed {
                why: why.into(),
                fix: fix.into(),
            },
        )
    }

    pub fn unreachable(
        layer: &str,
        name: impl Into<String>,
        why: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check::new(
            layer,
            name,
            Outcome::Unreachable {
                why: why.into(),
                fix: fix.into(),
            },
        )
    }

    /// Names the blueprint line the check comes from.
    pub fn from_line(mut self, source: impl Into<String>) -> Check {
        self.source = Some(source.into());
        self
    }

    /// Names the Proxmox node the check was made on.
    pub fn on_node(mut self, node: impl Into<String>) -> Check {
        self.node = Some(node.into());
        self
    }

    fn new(layer: &str, name: impl Into<String>, outcome: Outcome) -> Check {
        Check {
            layer: layer.to_owned(),
            name: name.into(),
            outcome,
            source: None,
            node: None,
        }
    }

    pub fn passed(&self) -> bool {
        matches!(self.outcome, Outcome::Pass { .. })
    }
}

/// Every check of one run, in the order they were made.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    pub fn push(&mut self, check: Check) {
        self.checks.push(check);
    }

    pub fn extend(&mut self, checks: impl IntoIterator<Item = Check>) {
        self.checks.extend(checks);
    }

    pub fn all_passed(&self) -> bool {
        self.checks.iter().all(Check::passed)
    }

    /// 0 when every check passed; [`exit::CHECK_FAILED`] when any check
    /// found something not as the blueprint says; else
    /// [`exit::UNREACHABLE`] when something could not be asked. A definite
    /// failure wins over a doubt: it is what the operator fixes first.
    pub fn exit_code(&self) -> u8 {
        let failed = |c: &Check| matches!(c.outcome, Outcome::Failed { .. });
        if self.checks.iter().any(failed) {
            exit::CHECK_FAILED
        } else if self.all_passed() {
            exit::OK
        } else {
            exit::UNREACHABLE
        }
    }

    /// The text form: one line per check (`ok`, `FAILED`, `UNREACHABLE`,
    /// then layer and name, and `[node]` when it names one), what was seen after a pass, why and the fix
    /// indented under the others, and a closing count.
    pub fn render_text(&self, color: bool) -> String {
        let paint = |code: &str, text: &str| {
            if color {
                format!("\x1b[{code}m{text}\x1b[0m")
            } else {
                text.to_owned()
            }
        };
        let width = self.checks.iter().map(|c| c.layer.len()).max().unwrap_or(0);
        let mut out = String::new();
        for check in &self.checks {
            let (mark, body) = match &check.outcome {
                Outcome::Pass { detail } => (
                    paint("32", "ok         "),
                    if detail.is_empty() {
                        String::new()
                    } else {
                        format!(": {detail}")
                    },
                ),
                Outcome::Failed { why, fix } => {
                    (paint("31;1", "FAILED     "), explained(why, fix, check))
                }
                Outcome::Unreachable { why, fix } => {
                    (paint("33;1", "UNREACHABLE"), explained(why, fix, check))
                }
            };
            let node = check
                .node
                .as_ref()
                .map_or(String::new(), |node| format!(" [{node}]"));
            out.push_str(&format!(
                "{mark} {layer:<width$}  {name}{node}{body}\n",
                layer = check.layer,
                name = check.name,
            ));
        }
        let passed = self.checks.iter().filter(|c| c.passed()).count();
        out.push_str(&format!(
            "{passed} of {} checks passed\n",
            self.checks.len()
        ));
        out
    }
}

fn explained(why: &str, fix: &str, check: &Check) -> String {
    let mut text = format!("\n      {why}\n      fix: {fix}");
    if let Some(source) = &check.source {
        text.push_str(&format!("\n      from: {source}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(checks: Vec<Check>) -> Report {
        Report { checks }
    }

    #[test]
    fn every_pass_exits_zero_and_a_failure_wins_over_unreachable() {
        let pass = Check::pass("host", "api", "pinned certificate");
        let down = Check::unreachable("talos", "cp1", "timed out", "start the VM");
        let wrong = Check::failed("talos", "cp2", "runs v1.11.0", "run deploy");
        assert_eq!(report(vec![pass.clone()]).exit_code(), exit::OK);
        assert_eq!(
            report(vec![pass.clone(), down.clone()]).exit_code(),
            exit::UNREACHABLE
        );
        assert_eq!(
            report(vec![down, wrong, pass]).exit_code(),
            exit::CHECK_FAILED
        );
    }

    #[test]
    fn text_names_the_fix_and_the_blueprint_line_without_colour() {
        let text = report(vec![
            Check::pass("host", "api", "answers"),
            Check::failed("edge", "sni www", "answered by teleport", "fix the route")
                .from_line("waddle.toml:40:1"),
        ])
        .render_text(false);
        assert_eq!(
            text,
            "ok          host  api: answers\n\
             FAILED      edge  sni www\n      answered by teleport\n      fix: fix the route\n      from: waddle.toml:40:1\n\
             1 of 2 checks passed\n"
        );
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn json_has_one_object_per_check_tagged_by_result() {
        let value = serde_json::to_value(report(vec![Check::unreachable(
            "kubernetes",
            "api",
            "refused",
            "bootstrap the cluster",
        )]))
        .expect("serializes");
        assert_eq!(
            value,
            serde_json::json!({"checks": [{
                "layer": "kubernetes", "name": "api", "result": "unreachable",
                "why": "refused", "fix": "bootstrap the cluster"
            }]})
        );
    }

    #[test]
    fn a_check_made_on_a_node_names_it_in_text_and_json() {
        let on = report(vec![
            Check::pass("vms", "VM 100 edge running", "").on_node("pve2")
        ]);
        assert_eq!(
            on.render_text(false),
            "ok          vms  VM 100 edge running [pve2]\n1 of 1 checks passed\n"
        );
        let value = serde_json::to_value(on).expect("serializes");
        assert_eq!(value["checks"][0]["node"], "pve2");
    }
}
