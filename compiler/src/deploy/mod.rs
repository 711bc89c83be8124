//! `waddlec deploy`: the deployable tree onto the Proxmox host, through its
//! API. Read what the tree wants (`desired`) and what the host has
//! (`observed`), show the `plan`, then `apply` it under the host's deploy
//! `lock`. Every run re-reads the host, so a deploy killed at any point and
//! run again converges.

pub mod apply;
pub mod desired;
pub mod guard;
pub mod lock;
pub mod observed;
pub mod plan;
