//! The deploy lock on the host: a Proxmox resource pool named
//! `waddlec-deploy`. Creating a pool that exists fails atomically on the
//! host, which makes it a mutex every deploy (from any workstation or CI)
//! sees, through the same API and token, with no extra service. The pool's
//! comment says who holds it since when; it is removed when the deploy ends,
//! and `--break-lock` removes one a killed deploy left behind.

use crate::net::pve::{Pve, PveError};

pub const POOL: &str = "waddlec-deploy";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another deploy holds the host's lock ({holder}); wait for it, or if none is running (a deploy was killed), run again with --break-lock")]
    Held { holder: String },
    #[error("cannot take the host's deploy lock: {0}")]
    Api(#[from] PveError),
}

/// The held lock; released on drop (best effort: a failed release is
/// reported by the next deploy as a held lock, with its holder).
pub struct HostLock<'a> {
    pve: &'a Pve,
    released: bool,
}

impl<'a> HostLock<'a> {
    /// Takes the lock for `holder` (e.g. `alice@laptop pid 4242`).
    pub fn acquire(pve: &'a Pve, holder: &str, break_lock: bool) -> Result<Self, LockError> {
        if break_lock {
            match pve.delete("/pools", &[("poolid", POOL)]) {
                Ok(_) => tracing::warn!("removed a stale deploy lock"),
                Err(error) => tracing::debug!(%error, "no lock to break"),
            }
        }
        let form = [
            ("poolid".to_string(), POOL.to_string()),
            ("comment".to_string(), format!("waddlec deploy by {holder}")),
        ];
        match pve.post("/pools", &form) {
            Ok(_) => Ok(HostLock {
                pve,
                released: false,
            }),
            Err(error) if error.status() == Some(500) || error.status() == Some(400) => {
                let holder = holder_of(pve).unwrap_or_else(|| error.to_string());
                Err(LockError::Held { holder })
            }
            Err(error) => Err(error.into()),
        }
    }

    pub fn release(mut self) -> Result<(), PveError> {
        self.released = true;
        self.pve.delete("/pools", &[("poolid", POOL)]).map(drop)
    }
}

impl Drop for HostLock<'_> {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.pve.delete("/pools", &[("poolid", POOL)]);
        }
    }
}

/// The comment of the lock pool, if it exists.
fn holder_of(pve: &Pve) -> Option<String> {
    let pools = pve.get("/pools", &[]).ok()?;
    pools
        .as_array()?
        .iter()
        .find(|pool| pool["poolid"] == POOL)
        .map(|pool| pool["comment"].as_str().unwrap_or("no comment").to_string())
}
