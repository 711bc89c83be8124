//! The Proxmox host itself: `host init`'s first touch (`init`: the host's
//! SSH host key and API certificate learned over the operator's own SSH)
//! and the committed record it writes (`record`), which every later SSH to
//! the host and every API call pins.

pub mod init;
pub mod record;
