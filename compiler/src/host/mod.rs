//! The Proxmox host itself, as `host init` first touches it: the committed
//! record of its SSH host key and API certificate (`record`, learned by
//! `init` over the operator's own SSH), deploy's API identity (`identity`:
//! user, roles, ACLs; `token` and where it is kept, `token_store`) made
//! with the host's `pvesh` over SSH (`pvesh`), and the host's own files
//! (`harden`: sshd keys only, its name in /etc/hosts). A `[cluster]`'s
//! hosts each get their own record and hardening; the identity, kept in
//! the cluster's shared `/etc/pve`, is made once (`init`).

pub mod harden;
pub mod identity;
pub mod init;
pub mod pvesh;
pub mod record;
pub mod token;
pub mod token_store;
