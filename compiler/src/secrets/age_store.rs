//! The age store of the Talos bundle (`talos.secrets = "age:PATH"`): each
//! file waddlec owns there (the bundle, the admin identity, the SSH host
//! keys) is encrypted to every `[talos.age]` recipient, ASCII-armored so it
//! reads as text in git, and decrypted with the identity `[talos.age]
//! identity` names (read like any secret reference: `op://`, `env:`,
//! `file:`).
//!
//! With the `age` crate (rage's library, by one of age's designers, kept up
//! with the spec and the Go reference implementation), not the `age`
//! program: nothing to install on the operator's machine, the plaintext
//! never leaves this process (the program would take it on a pipe or from
//! a file), and a recipient's checksum is checked before anything is
//! written. Errors name files and references, never a key or a value.

use std::io::{Read as _, Write as _};

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use age::x25519;
use waddlec_core::model::AgeRecipient;

use super::{Secret, SecretError};

/// The contents encrypted to every recipient, armored.
pub fn encrypt(
    recipients: &[AgeRecipient],
    contents: &Secret,
    shown: &str,
) -> Result<String, SecretError> {
    let parsed = recipients
        .iter()
        .map(|recipient| {
            recipient
                .as_str()
                .parse::<x25519::Recipient>()
                .map_err(|problem| SecretError::AgeRecipient {
                    recipient: recipient.as_str().to_string(),
                    problem: problem.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let failed = |problem: String| SecretError::Generate {
        what: "an age-encrypted file",
        problem: format!("{shown}: {problem}"),
    };
    let encryptor =
        age::Encryptor::with_recipients(parsed.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| failed(e.to_string()))?;
    let mut armored = Vec::new();
    let writer = ArmoredWriter::wrap_output(&mut armored, Format::AsciiArmor)
        .map_err(|e| failed(e.to_string()))?;
    let mut writer = encryptor
        .wrap_output(writer)
        .map_err(|e| failed(e.to_string()))?;
    writer
        .write_all(contents.expose().as_bytes())
        .and_then(|()| writer.finish())
        .and_then(|armor| armor.finish())
        .map_err(|e| failed(e.to_string()))?;
    String::from_utf8(armored).map_err(|e| failed(e.to_string()))
}

/// The plaintext of `encrypted` (armored or binary), decrypted with the
/// identity file `identity` (the text `age-keygen` writes), which the
/// reference `identity_ref` named.
pub fn decrypt(
    encrypted: &[u8],
    identity: &Secret,
    identity_ref: &str,
    shown: &str,
) -> Result<Secret, SecretError> {
    let identities = identities(identity, identity_ref)?;
    let cannot = |problem: String| SecretError::AgeDecrypt {
        path: shown.to_string(),
        identity: identity_ref.to_string(),
        problem,
    };
    let decryptor = age::Decryptor::new(ArmoredReader::new(encrypted))
        .map_err(|e| cannot(format!("it is not an age file ({e})")))?;
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => cannot(
                "it is not encrypted to that identity: use the identity of one of the \
                 recipients it was written for, or have it written again for yours"
                    .into(),
            ),
            other => cannot(other.to_string()),
        })?;
    let mut plain = Vec::new();
    reader
        .read_to_end(&mut plain)
        .map_err(|e| cannot(e.to_string()))?;
    let plain =
        String::from_utf8(plain).map_err(|_| cannot("what it holds is not UTF-8 text".into()))?;
    Ok(Secret::new(plain))
}

/// The X25519 identities of an identity file: every line that is not empty
/// or a `#` comment. A line that is not one is named by its number only.
fn identities(text: &Secret, reference: &str) -> Result<Vec<x25519::Identity>, SecretError> {
    let mut found = Vec::new();
    for (number, line) in text.expose().lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        found.push(
            line.parse::<x25519::Identity>()
                .map_err(|_| SecretError::AgeIdentity {
                    reference: reference.to_string(),
                    problem: format!(
                        "line {} is not an age X25519 identity (`AGE-SECRET-KEY-1…`)",
                        number + 1
                    ),
                })?,
        );
    }
    if found.is_empty() {
        return Err(SecretError::AgeIdentity {
            reference: reference.to_string(),
            problem: "it holds no identity (`AGE-SECRET-KEY-1…`, as `age-keygen` writes it)".into(),
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret as _;

    fn identity() -> (x25519::Identity, AgeRecipient) {
        let identity = x25519::Identity::generate();
        let recipient = AgeRecipient::parse(&identity.to_public().to_string()).unwrap();
        (identity, recipient)
    }

    fn file_of(identity: &x25519::Identity) -> Secret {
        Secret::new(format!(
            "# created: never\n# public key: {}\n{}\n",
            identity.to_public(),
            identity.to_string().expose_secret()
        ))
    }

    #[test]
    fn what_is_encrypted_to_two_recipients_each_decrypts() {
        let (one, to_one) = identity();
        let (two, to_two) = identity();
        let plain = Secret::new("cluster:\n  secret: hunter2\n");
        let armored = encrypt(&[to_one, to_two], &plain, "b.age").unwrap();
        assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert!(!armored.contains("hunter2"));
        for identity in [&one, &two] {
            let back = decrypt(
                armored.as_bytes(),
                &file_of(identity),
                "env:WADDLE_ID",
                "b.age",
            );
            assert_eq!(back.unwrap().expose(), plain.expose());
        }
    }

    #[test]
    fn another_identity_is_refused_without_showing_a_key() {
        let (_, to_one) = identity();
        let (other, _) = identity();
        let armored = encrypt(&[to_one], &Secret::new("x"), "b.age").unwrap();
        let key = other.to_string().expose_secret().to_string();
        let err = decrypt(
            armored.as_bytes(),
            &file_of(&other),
            "env:WADDLE_ID",
            "b.age",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not encrypted to that identity"), "{err}");
        assert!(
            err.contains("b.age") && err.contains("env:WADDLE_ID"),
            "{err}"
        );
        assert!(!err.contains(&key), "{err}");
    }

    #[test]
    fn a_broken_identity_file_is_named_by_line_not_quoted() {
        let err = identities(
            &Secret::new("# c\nAGE-SECRET-KEY-1hunter2\n"),
            "file:id.txt",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(identities(&Secret::new("# only a comment\n"), "file:id.txt").is_err());
    }

    #[test]
    fn a_recipient_with_a_bad_checksum_is_refused_before_writing() {
        let (_, good) = identity();
        let mut bad = good.as_str().to_string();
        let last = if bad.ends_with('q') { 'p' } else { 'q' };
        bad.pop();
        bad.push(last);
        let bad = AgeRecipient::parse(&bad).unwrap();
        let err = encrypt(&[bad], &Secret::new("x"), "b.age").unwrap_err();
        assert!(matches!(err, SecretError::AgeRecipient { .. }), "{err}");
    }
}
