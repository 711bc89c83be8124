//! Everything that leaves the machine goes through here: the Image Factory
//! (`factory`), 1Password (`onepassword`), Cloudflare's API
//! (`cloudflare`), DNS questions (`dns`), a git server over SSH
//! (`git_remote`), the Proxmox API (`pve`),
//! downloads (`fetch`), the artifact store (`s3`: an S3 bucket, SigV4
//! signed, and presigned URLs Proxmox downloads from), image digests from registries (`registry`), the
//! Talos machine API (`talos_api`), the Kubernetes
//! API (`kube_api`), remote commands over ssh (`ssh`), SSH forwards
//! through the Proxmox host to the cluster's nodes (`ssh_tunnel`), and for
//! `status` the looks that change nothing: a port accepting, the
//! certificate a TLS server presents for a name (`probe`), Teleport's
//! `/webapi/ping` (`teleport_web`).
//! One place to set timeouts, the user agent and the base URLs tests point
//! at a local server.

pub mod cloudflare;
pub mod dns;
pub mod factory;
pub mod fetch;
pub mod git_remote;
pub mod kube_api;
pub mod onepassword;
pub mod probe;
pub mod pve;
pub mod registry;
pub mod s3;
pub mod ssh;
pub mod ssh_tunnel;
pub mod talos_api;
pub mod teleport_web;

use std::time::Duration;

/// The HTTP client every network call uses.
pub fn http_client() -> Result<reqwest::blocking::Client, NetError> {
    reqwest::blocking::Client::builder()
        .user_agent(concat!("waddlec/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| NetError::Client(e.to_string()))
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    #[error("{url}: {problem}")]
    Request { url: String, problem: String },
}
