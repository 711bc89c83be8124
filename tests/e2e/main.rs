//! End-to-end tests: run `waddlec` as a user would, then hand its artifacts to
//! the programs that consume them (haproxy, iptables in a network namespace,
//! shellcheck, a stand-in `qm` checked against the Proxmox API schema).
//!
//! Tests that need root, `ip netns` or Debian packages fail (never skip) when
//! those are missing: `tests/run-all.sh` installs them.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test here

mod artifact_store;
mod bring_up;
mod build_output;
mod cli_habits;
mod client_configs;
mod cloud_init;
mod cluster_bootstrap;
mod cluster_manifests;
mod csi_gate;
mod debian_images;
mod deploy;
mod deploy_cluster;
mod deploy_etcd;
mod deploy_kubernetes;
mod deploy_rollout;
mod deploy_store;
mod edge_proof;
mod forward_proof;
mod haproxy;
mod host_init;
mod host_init_cluster;
mod host_network;
mod host_setup;
mod image;
mod invalid_blueprints;
mod k8s_schemas;
mod platform_publish;
mod platform_tree;
mod preflight;
mod pve;
mod qm_script;
mod registry_digest;
mod secret_confinement;
mod status;
mod status_cluster;
mod status_edge;
mod status_kubernetes;
mod support;
mod talos;
mod talos_api;
mod talos_day2_api;
mod talos_image;
mod talos_stores;
mod teleport;
mod teleport_node;
mod test_data;
mod twin;
mod vxlan_twin;
