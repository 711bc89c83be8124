//! The deploy token (`waddlec@pve!deploy`, privilege-separated): made with
//! `pvesh` over SSH and kept where `host.api_token` points. A token that
//! exists and whose kept secret the API accepts is left alone; one that no
//! longer works, or a destination that already holds another value, is
//! replaced only with `rotate`. The secret goes from pvesh's stdout straight
//! into a [`Secret`] and into its store: never a log or an error. If it
//! cannot be kept, the token just made is deleted again.

use super::identity::{token_id, COMMENT, TOKEN, USER};
use super::pvesh::{Pvesh, PveshError, Verb};
use super::token_store::{Kept, StoreError, TokenStore};
use crate::secrets::Secret;

/// How the token ended (or would end, in a dry run).
#[derive(Debug, PartialEq, Eq)]
pub enum TokenOutcome {
    /// It exists and the kept secret works.
    Unchanged,
    WouldCreate,
    WouldRotate,
    Created(Kept),
    Rotated(Kept),
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Pvesh(#[from] PveshError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the host has the token {token}, but {reference} holds no secret the API accepts for it. `waddlec host init --rotate` makes a new one (the old one stops working)"
    )]
    NotWorking { token: String, reference: String },
    #[error(
        "{reference} already holds a value, and the host has no token {token}: refusing to overwrite it. `waddlec host init --rotate` replaces it"
    )]
    WouldOverwrite { token: String, reference: String },
    #[error(
        "the token was made but could not be kept ({problem}); it was deleted again, nothing changed"
    )]
    NotKept { problem: String },
    #[error(
        "the token was made but could not be kept ({problem}), and deleting it failed too ({delete}): delete it on the host with `pveum user token remove {USER} {TOKEN}`"
    )]
    Stranded { problem: String, delete: String },
    #[error("`pvesh create` answered no token value")]
    NoValue,
    #[error("checking the kept token against the API failed: {0}; pass --api to reach it (e.g. through an SSH tunnel)")]
    Api(crate::net::pve::PveError),
}

/// What the token step needs.
pub struct TokenRequest<'a> {
    pub pvesh: &'a Pvesh<'a>,
    pub store: &'a TokenStore<'a>,
    pub rotate: bool,
    pub dry_run: bool,
    /// Whether the API accepts a token secret (`Ok(false)`: refused).
    pub works: &'a dyn Fn(&Secret) -> Result<bool, crate::net::pve::PveError>,
}

/// Converges the token: see the module doc.
pub fn converge(request: &TokenRequest<'_>, user_exists: bool) -> Result<TokenOutcome, TokenError> {
    let full = token_id();
    let on_host = user_exists
        && request
            .pvesh
            .get(&format!("/access/users/{USER}/token"))?
            .as_array()
            .into_iter()
            .flatten()
            .any(|token| token["tokenid"] == TOKEN);
    let kept = request.store.current();
    let kept_works = match &kept {
        Some(secret) if on_host && secret.expose().starts_with(&format!("{full}=")) => {
            (request.works)(secret).map_err(TokenError::Api)?
        }
        _ => false,
    };
    if kept_works {
        return Ok(TokenOutcome::Unchanged);
    }
    let reference = request.store.reference.to_string();
    if !request.rotate {
        if on_host {
            return Err(TokenError::NotWorking {
                token: full,
                reference,
            });
        }
        if kept.is_some() {
            return Err(TokenError::WouldOverwrite {
                token: full,
                reference,
            });
        }
    }
    let rotating = on_host || kept.is_some();
    if request.dry_run {
        return Ok(if rotating {
            TokenOutcome::WouldRotate
        } else {
            TokenOutcome::WouldCreate
        });
    }
    request.store.check()?;
    let path = format!("/access/users/{USER}/token/{TOKEN}");
    if on_host {
        request.pvesh.call(Verb::Delete, &path, &[])?;
    }
    let answer = request.pvesh.call(
        Verb::Create,
        &path,
        &[("privsep", "1"), ("comment", COMMENT)],
    )?;
    let secret = match answer["value"].as_str() {
        Some(value) => Secret::new(format!("{full}={value}")),
        None => return Err(TokenError::NoValue),
    };
    drop(answer);
    match request.store.keep(&secret, kept.is_some()) {
        Ok(kept) if rotating => Ok(TokenOutcome::Rotated(kept)),
        Ok(kept) => Ok(TokenOutcome::Created(kept)),
        Err(problem) => {
            let problem = problem.to_string();
            match request.pvesh.call(Verb::Delete, &path, &[]) {
                Ok(_) => Err(TokenError::NotKept { problem }),
                Err(delete) => Err(TokenError::Stranded {
                    problem,
                    delete: delete.to_string(),
                }),
            }
        }
    }
}
