//! `waddlec deploy`: the deployable tree onto the Proxmox host, through its
//! API and SSH. Read what the tree wants (`desired`) and what the host has
//! (`observed`), ask the host what its own setup would change
//! (`host_setup --check`), show the `plan`, refuse a firewall change that
//! would lock the operator out (`guard`), then under the host's deploy
//! `lock` run the host setup and `apply` the plan. Every run re-reads the
//! host, so a deploy killed at any point and run again converges. A
//! `[cluster]` goes through `cluster` instead: its SDN (`sdn`), each
//! host's own setup (`cluster_hosts`), where its VMs live
//! (`cluster_observed`, `cluster_plan`: migrations), and each node's plan
//! as above.

pub mod apply;
pub mod cluster;
pub mod cluster_hosts;
pub mod cluster_observed;
pub mod cluster_plan;
pub mod desired;
pub mod etcd;
pub mod guard;
pub mod host_setup;
pub mod lock;
pub mod observed;
pub mod plan;
pub mod rollout;
pub mod sdn;
pub mod talos;
pub mod workflow;
