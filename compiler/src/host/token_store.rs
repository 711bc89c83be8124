//! Where the API token `host init` makes is kept: the place `host.api_token`
//! points to, so deploy reads it from there. A `file:` is created 0600 (and
//! replaced only when rotating), an `op://` reference is written with the
//! 1Password CLI, an `env:` variable cannot be set from here, so the value
//! is printed once, only when the operator asks for it. Each store is
//! checked before the token exists, so a token is never made that could
//! not be kept.

use std::path::{Path, PathBuf};

use waddlec_core::model::SecretRef;

use crate::net::onepassword;
use crate::secrets::{self, files, Secret, SecretError};

/// The token's destination.
pub struct TokenStore<'a> {
    pub reference: &'a SecretRef,
    /// The blueprint's directory: `file:` references are relative to it.
    pub base: &'a Path,
    /// `env:` only: the operator asked to see the value once.
    pub print: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(
        "host.api_token is {0}: waddlec cannot set your environment. Pass --print-token to have the new token printed once (then keep it in your secret store), or point host.api_token at a `file:` or `op://` reference"
    )]
    EnvNeedsPrint(String),
}

/// How the value was kept.
#[derive(Debug, PartialEq, Eq)]
pub enum Kept {
    File(PathBuf),
    OnePassword(String),
    /// `env:NAME`: the caller shows the value once.
    ToPrint {
        name: String,
        value: Secret,
    },
}

impl TokenStore<'_> {
    /// What the destination holds now, if anything.
    pub fn current(&self) -> Option<Secret> {
        secrets::read("host.api_token", self.reference, self.base).ok()
    }

    /// Refuses before anything is made if the value could not be kept.
    pub fn check(&self) -> Result<(), StoreError> {
        match self.reference {
            SecretRef::File(_) => {
                secrets::file_path("host.api_token", self.reference, self.base)?;
                Ok(())
            }
            SecretRef::Env(_) if !self.print => {
                Err(StoreError::EnvNeedsPrint(self.reference.to_string()))
            }
            SecretRef::Env(_) | SecretRef::OnePassword { .. } => Ok(()),
        }
    }

    /// Keeps `value`, replacing what is there only if `replace`.
    pub fn keep(&self, value: &Secret, replace: bool) -> Result<Kept, StoreError> {
        match self.reference {
            SecretRef::File(_) => {
                let path = secrets::file_path("host.api_token", self.reference, self.base)?;
                let line = format!("{}\n", value.expose());
                if replace {
                    files::replace(&path, &line)?;
                } else {
                    files::create_new(&path, &line)?;
                }
                Ok(Kept::File(path))
            }
            SecretRef::OnePassword { .. } => {
                onepassword::write(self.reference, value, self.current().is_some())
                    .map_err(SecretError::from)?;
                Ok(Kept::OnePassword(self.reference.to_string()))
            }
            SecretRef::Env(name) => Ok(Kept::ToPrint {
                name: name.clone(),
                value: value.clone(),
            }),
        }
    }
}
