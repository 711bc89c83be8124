//! `waddlec status`: the platform as it runs, layer by layer, against the
//! blueprint. `kubernetes` checks the cluster's API, nodes and the objects
//! the platform tree has Flux apply.

pub mod kubernetes;
