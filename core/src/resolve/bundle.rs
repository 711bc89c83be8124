//! Where the Talos secrets bundle is kept (`talos.secrets`, with
//! `[talos.age]` for an age-encrypted one): the model's [`BundleStore`].
//! An `age:` bundle needs its table (E0003), the table needs an `age:`
//! bundle (E0132), and its recipients are age X25519 recipients, at least
//! one (E0004, E0125). Where paths and the identity's reference may reach
//! is `secrets` (E0130).

use super::Checker;
use crate::blueprint::{BundleRef, Talos};
use crate::diagnostics::rules;
use crate::model::checked::{is_age_identity, AGE_IDENTITY_REFUSAL};
use crate::model::{AgeRecipient, BundleStore, CheckedString};

/// How the `[talos.age]` table is written, for a missing one.
const AGE_HELP: &str = "add `[talos.age]` with `recipients = [\"age1…\"]` (what `age-keygen -y \
     IDENTITY_FILE` prints, one per reader) and `identity = \"op://VAULT/ITEM/FIELD\"` (or \
     `env:WADDLE_…`, `file:…`: where the identity that decrypts the bundle is kept)";

/// The store `talos` names; a refused part is reported and replaced so that
/// checking goes on.
pub(super) fn store(checker: &mut Checker, talos: &Talos) -> BundleStore {
    match (&*talos.secrets, &talos.age) {
        (BundleRef::Age(path), Some(age)) => {
            if age.recipients.is_empty() {
                checker
                    .error(
                        &rules::EMPTY_LIST,
                        age.identity.span(),
                        "talos.age.recipients",
                        "`talos.age.recipients` is empty: nobody could decrypt the bundle",
                    )
                    .help = Some(AgeRecipient::HELP.into());
            }
            let recipients = age
                .recipients
                .iter()
                .enumerate()
                .map(|(i, recipient)| {
                    let path = format!("talos.age.recipients[{i}]");
                    if is_age_identity(recipient) {
                        // A secret key pasted where its public half goes:
                        // neither the value nor its line is shown.
                        let diagnostic = checker.error(
                            &rules::INVALID_VALUE,
                            recipient.span(),
                            &path,
                            format!("`{path}` {AGE_IDENTITY_REFUSAL}"),
                        );
                        diagnostic.hide_source = true;
                        diagnostic.help = Some(AgeRecipient::HELP.into());
                        return AgeRecipient::example();
                    }
                    checker.parse::<AgeRecipient>(recipient, &path, &rules::INVALID_VALUE)
                })
                .collect();
            BundleStore::Age {
                path: path.clone(),
                recipients,
                identity: (*age.identity).clone(),
            }
        }
        (BundleRef::Age(path), None) => {
            let diagnostic = checker.error(
                &rules::MISSING_KEY,
                talos.secrets.span(),
                "talos.age",
                "`talos.secrets` is an age-encrypted file, and `[talos.age]`, which says whom it \
                 is encrypted to and how to decrypt it, is missing",
            );
            diagnostic.label = "age-encrypted".into();
            diagnostic.help = Some(AGE_HELP.into());
            BundleStore::File(path.clone())
        }
        (other, Some(age)) => {
            let diagnostic = checker.error(
                &rules::UNUSED_SETTING,
                age.identity.span(),
                "talos.age",
                format!(
                    "`[talos.age]` is given, but `talos.secrets` = `{other}` is not age-encrypted"
                ),
            );
            diagnostic.label = "unused".into();
            diagnostic.help = Some(
                "write `talos.secrets = \"age:PATH\"` to keep the bundle encrypted in git, or \
                 remove `[talos.age]`"
                    .into(),
            );
            plain(other)
        }
        (other, None) => plain(other),
    }
}

fn plain(reference: &BundleRef) -> BundleStore {
    match reference {
        BundleRef::File(path) | BundleRef::Age(path) => BundleStore::File(path.clone()),
        BundleRef::OnePassword { vault, item, file } => BundleStore::OnePassword {
            vault: vault.clone(),
            item: item.clone(),
            file: file.clone(),
        },
    }
}
