//! What the crate's unit tests share: the shipped example blueprints,
//! edited and checked into models as the resolver makes them (on a fixed
//! day, so no temporary rule has expired).

use crate::blueprint::{Date, SourceFile};
use crate::model::Model;

/// `blueprints/examples/three-hosts.toml`: the cluster example.
pub const THREE_HOSTS: &str = include_str!("../../blueprints/examples/three-hosts.toml");

/// The day the examples are checked on.
pub const TODAY: Date = Date {
    year: 2026,
    month: 1,
    day: 1,
};

/// The model of the blueprint `text`, named `name`; it must be valid.
pub fn model(name: &str, text: String) -> Model {
    let source = SourceFile {
        name: name.into(),
        text,
    };
    waddlec_core::check(&source, TODAY)
        .unwrap_or_else(|e| panic!("{name} is valid: {e:?}"))
        .model
}

/// The cluster example's model, its text edited by `edit`.
pub fn cluster(edit: impl FnOnce(&str) -> String) -> Model {
    model("three-hosts.toml", edit(THREE_HOSTS))
}
