//! Every secret reference the blueprint names resolves: each `file:`,
//! `env:` and `op://` reference (`resolve::secret_references`, the list
//! a core test keeps complete) is read (as `build --with-secrets` would),
//! and the Talos bundle and admin identity are where `talos.secrets` says.
//! A check says "resolves", never what it resolved to.

use super::{Secrets, Subject};
use crate::blueprint::SecretRef;
use crate::checks::Check;
use crate::resolve::secret_references;

const LAYER: &str = "secrets";

pub fn check(subject: &Subject<'_>, values: &mut Secrets<'_>) -> Vec<Check> {
    let mut checks: Vec<Check> = secret_references(subject.document)
        .into_iter()
        .map(|(key, reference)| {
            let line = subject.line(&reference.span);
            match values.get(key, reference) {
                Ok(_) => Check::pass(LAYER, key, format!("{} resolves", reference.value)),
                Err(why) => Check::failed(LAYER, key, why, fix(&reference.value)),
            }
            .from_line(line)
        })
        .collect();
    if let (Some(cluster), Some(talos)) = (&subject.model.talos, &subject.document.talos) {
        let line = subject.line(&talos.secrets.span);
        checks.push(
            match crate::secrets::load_talos(cluster, subject.base) {
                Ok(_) => Check::pass(
                    LAYER,
                    "talos.secrets",
                    "the Talos bundle and the talosctl admin identity are there",
                ),
                Err(why) => Check::failed(
                    LAYER,
                    "talos.secrets",
                    why.to_string(),
                    "create it with `waddlec secrets init` (or import it: `--import`)",
                ),
            }
            .from_line(line),
        );
    }
    checks
}

fn fix(reference: &SecretRef) -> String {
    match reference {
        SecretRef::File(_) => "create the file (one value, no other text) or point the key at the file that holds it".into(),
        SecretRef::Env(name) => format!("export {name} in this shell, or point the key at where the value is kept"),
        SecretRef::OnePassword { vault, item, field } => format!(
            "sign in (`op signin`) and make sure vault `{vault}` has item `{item}` with field `{field}`"
        ),
    }
}
