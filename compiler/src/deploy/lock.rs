//! The deploy lock on the host: a Proxmox resource pool named
//! `waddlec-deploy`. Creating a pool that exists fails atomically on the
//! host, which makes it a mutex every deploy (from any workstation or CI)
//! sees, through the same API and token, with no extra service. The pool's
//! comment says who holds it since when; it is removed when the deploy ends,
//! and `--break-lock` removes one a killed deploy left behind.

use std::io::Write;

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
/// reported by the next deploy as a held lock, with its holder). Released
/// only while it is still ours: the comment carries a token unique to this
/// deploy.
pub struct HostLock<'a> {
    pve: &'a Pve,
    comment: String,
    released: bool,
}

impl<'a> HostLock<'a> {
    /// Takes the lock for `holder` (e.g. `alice@laptop pid 4242`).
    pub fn acquire(pve: &'a Pve, holder: &str, break_lock: bool) -> Result<Self, LockError> {
        if break_lock {
            if let Some(stale) = holder_of(pve) {
                // Never `eprintln!`: it panics when stderr is a closed pipe.
                let _ = writeln!(
                    std::io::stderr(),
                    "warning: breaking the host's deploy lock held by: {stale}"
                );
                pve.delete("/pools", &[("poolid", POOL)])?;
            }
        }
        let comment = format!("waddlec deploy by {holder}, token {}", token());
        let form = [
            ("poolid".to_string(), POOL.to_string()),
            ("comment".to_string(), comment.clone()),
        ];
        match pve.post("/pools", &form) {
            Ok(_) => Ok(HostLock {
                pve,
                comment,
                released: false,
            }),
            // "create pool failed: pool '…' already exists".
            Err(error) if error.status() == Some(500) => {
                let holder = holder_of(pve).unwrap_or_else(|| error.to_string());
                Err(LockError::Held { holder })
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Removes the lock if it is still this deploy's.
    pub fn release(mut self) -> Result<(), PveError> {
        self.released = true;
        self.remove_if_ours()
    }

    fn remove_if_ours(&self) -> Result<(), PveError> {
        if holder_of(self.pve).as_deref() == Some(self.comment.as_str()) {
            self.pve.delete("/pools", &[("poolid", POOL)]).map(drop)
        } else {
            tracing::warn!(
                "the deploy lock is no longer ours (broken by another deploy?); leaving it"
            );
            Ok(())
        }
    }
}

impl Drop for HostLock<'_> {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.remove_if_ours();
        }
    }
}

/// Unique to this deploy: the clock in nanoseconds and the process ID.
fn token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{nanos:x}-{:x}", std::process::id())
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
