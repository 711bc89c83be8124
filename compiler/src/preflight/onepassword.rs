//! The 1Password items and fields the platform's ExternalSecrets read
//! exist in the platform vault: each field the rendered tree's
//! ExternalSecrets name (`render::platform::external_secret_fields`) is
//! read with `op read` — what External Secrets will ask Connect for —
//! and the value kept for the checks that use it (the bucket, Cloudflare).

use super::{vault_field, Secrets, Subject};
use crate::checks::Check;
use crate::render::platform::external_secret_fields;

const LAYER: &str = "1password";

pub fn check(subject: &Subject<'_>, values: &mut Secrets<'_>) -> Vec<Check> {
    let Some(platform) = &subject.document.platform else {
        return Vec::new();
    };
    let vault = &platform.vault.value;
    external_secret_fields(subject.model)
        .into_iter()
        .map(|wanted| {
            let reference = vault_field(vault, &wanted.item, &wanted.field);
            let name = format!("{}/{}", wanted.item, wanted.field);
            match values.get("platform.items", &reference) {
                Ok(_) => Check::pass(LAYER, name, format!("{reference} exists")),
                Err(why) => Check::failed(
                    LAYER,
                    name,
                    why,
                    format!(
                        "create item `{}` in vault `{vault}` with a field `{}` (the platform's ExternalSecrets read it), or set platform.items to the title it has",
                        wanted.item, wanted.field
                    ),
                ),
            }
            .from_line(subject.line(&item_span(subject, &wanted.item)))
        })
        .collect()
}

/// Where the blueprint names item `title`: its `platform.items` key when
/// set there, else `platform.vault` (the default title is used in it).
pub fn item_span(subject: &Subject<'_>, title: &str) -> crate::source::Span {
    let Some(platform) = &subject.document.platform else {
        return 0..0;
    };
    let items = &platform.items;
    [
        &items.cloudflare_token,
        &items.s3_credentials,
        &items.spicedb_preshared_key,
        &items.spicedb_postgres,
        &items.csi_ssh_key,
        &items.iscsi_chap,
    ]
    .into_iter()
    .flatten()
    .find(|item| item.value == title)
    .map_or_else(|| platform.vault.span(), |item| item.span())
}
