//! `waddlec preflight`: every external thing a blueprint names exists and
//! works, checked read-only before anything changes — also the first step
//! of `deploy` and `cluster bootstrap`. This module says which checks a
//! blueprint implies and in which order; one module per kind of check
//! makes them: `secrets` (every secret reference resolves), `onepassword`
//! (the items and fields the platform's ExternalSecrets read), `backups`
//! (the backup bucket answers to its credentials), `git` (the Flux
//! repository answers to the deploy key), `cloudflare` (the DNS token is
//! active and reads the zone; with Cloudflare as the DNS provider) and
//! `dns` (an RFC 2136 provider's server answers for the zone; each edge
//! name resolves to the public address of the host that runs the edge VM,
//! in a `[cluster]` too). Each gives [`Check`]s naming the blueprint line they
//! come from (`file:line:col`, from the parsed document's spans).
//!
//! Nothing here writes anywhere but to temp files of its own (the deploy
//! key for ssh), and nothing prints a secret value: values are
//! [`Secret`]s, read once into [`Secrets`] and shared by the checks that
//! need them; what a check says names references, never values. Every
//! network call goes through `crate::net`, with the caller's timeout and
//! the base URLs and resolver tests point at local stand-ins.

mod backups;
mod cloudflare;
mod dns;
mod git;
mod onepassword;
mod secrets;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::blueprint::{Blueprint, SecretRef};
use crate::checks::{Check, Report};
use crate::model::Model;
use crate::secrets::Secret;
use crate::source::{SourceFile, Span};

/// A kind of check, as `--only` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Secrets,
    Onepassword,
    Backups,
    Git,
    Cloudflare,
    Dns,
}

/// How to reach what the checks ask, and which checks to make.
pub struct Options {
    /// The kinds to check; empty: every kind the blueprint implies.
    pub only: Vec<Kind>,
    /// How long any one service may take to answer before it counts as
    /// unreachable.
    pub timeout: Duration,
    /// Cloudflare's API base URL (`net::cloudflare::DEFAULT_URL`).
    pub cloudflare_url: String,
    /// The DNS resolver to ask; `None`: the system's.
    pub resolver: Option<SocketAddr>,
    /// The backup bucket's S3 endpoint instead of `platform.backups.endpoint`.
    pub backups_endpoint: Option<String>,
}

/// What every check reads: the blueprint as written (for its lines), its
/// model, its directory (`file:` references are relative to it).
pub struct Subject<'a> {
    pub source: &'a SourceFile,
    pub document: &'a Blueprint,
    pub model: &'a Model,
    pub base: &'a Path,
}

impl Subject<'_> {
    /// `file:line:col` of `span`.
    fn line(&self, span: &Span) -> String {
        let (line, col) = crate::diagnostics::report::line_col(&self.source.text, span.start);
        format!("{}:{line}:{col}", self.source.name)
    }
}

/// Runs the checks `options` asks for, in order: secrets first (the other
/// checks use their values), then 1Password, the bucket, git, Cloudflare
/// and DNS.
pub fn run(subject: &Subject<'_>, options: &Options) -> Report {
    let wanted = |kind| options.only.is_empty() || options.only.contains(&kind);
    let mut values = Secrets::new(subject.base);
    let mut report = Report::default();
    if wanted(Kind::Secrets) {
        report.extend(secrets::check(subject, &mut values));
    }
    if wanted(Kind::Onepassword) {
        report.extend(onepassword::check(subject, &mut values));
    }
    if wanted(Kind::Backups) {
        report.extend(backups::check(subject, options, &mut values));
    }
    if wanted(Kind::Git) {
        report.extend(git::check(subject, options, &mut values));
    }
    if wanted(Kind::Cloudflare) {
        report.extend(cloudflare::check(subject, options, &mut values));
    }
    if wanted(Kind::Dns) {
        report.extend(dns::update_server(subject, options));
        report.extend(dns::check(subject, options));
    }
    report
}

/// Secret values read during one run, each reference read once; a failed
/// read is kept as its message (which names the reference, never a value).
pub struct Secrets<'a> {
    base: &'a Path,
    read: BTreeMap<String, Result<Secret, String>>,
}

impl<'a> Secrets<'a> {
    fn new(base: &'a Path) -> Self {
        Secrets {
            base,
            read: BTreeMap::new(),
        }
    }

    /// The value of `reference`, at blueprint key `key`.
    fn get(&mut self, key: &str, reference: &SecretRef) -> Result<Secret, String> {
        self.read
            .entry(reference.to_string())
            .or_insert_with(|| {
                crate::secrets::read(key, reference, self.base).map_err(|e| e.to_string())
            })
            .clone()
    }
}

/// The 1Password reference of `field` of item `item` in the platform vault.
fn vault_field(vault: &str, item: &str, field: &str) -> SecretRef {
    SecretRef::OnePassword {
        vault: vault.to_string(),
        item: item.to_string(),
        field: field.to_string(),
    }
}

/// The check of a service whose credentials could not be read: it was not
/// asked, so it is unreachable, and the credentials' own check says why.
fn credentials_missing(layer: &str, name: &str, reference: &SecretRef, why: &str) -> Check {
    Check::unreachable(
        layer,
        name,
        format!("not asked: its credentials {reference} could not be read ({why})"),
        "make the credentials readable (see the 1password checks), then run preflight again",
    )
}
