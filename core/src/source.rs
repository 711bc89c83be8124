//! The blueprint's text as the stages see it: the file, byte spans into it,
//! and which keys may hold a secret (so a diagnostic never quotes one).
//! Shared by `blueprint` (which reads it) and `diagnostics` (which points
//! into it), so neither depends on the other for it.

use std::ops::Range;

/// A blueprint file as read from disk: its display name and its text.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// Byte range in the blueprint source.
pub type Span = Range<usize>;

/// Words in a key that mark its line as possibly holding a secret.
pub const SECRET_KEY_HINTS: &[&str] = &["secret", "token", "password", "passphrase", "private"];
