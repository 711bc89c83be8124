//! With Cloudflare as the DNS provider (the default), the token External
//! DNS and cert-manager use (1Password item
//! `platform.items.cloudflare_token`, field `credential`) is active and
//! can do what can be proven without changing anything: Cloudflare's
//! token verify says active (`net::cloudflare`); listing the zone
//! `project.domain` proves Zone:Read on it; reading one of its DNS records
//! proves DNS:Read. DNS:Edit, which both need, is proven only by writing a
//! record: the passing check says it was not checked, rather than
//! claiming it.

use super::onepassword::item_span;
use super::{credentials_missing, vault_field, Options, Secrets, Subject};
use crate::checks::Check;
use crate::net::cloudflare::{Cloudflare, CloudflareError};

const LAYER: &str = "cloudflare";

pub fn check(subject: &Subject<'_>, options: &Options, values: &mut Secrets<'_>) -> Vec<Check> {
    let Some(platform) = &subject.model.platform else {
        return Vec::new();
    };
    if platform.dns != crate::model::DnsProvider::Cloudflare {
        // Another provider: no Cloudflare token is read (`dns` checks
        // the RFC 2136 server).
        return Vec::new();
    }
    let item = &platform.items.cloudflare_token;
    let line = subject.line(&item_span(subject, item));
    let reference = vault_field(&platform.vault, item, "credential");
    let token = match values.get("platform.items.cloudflare_token", &reference) {
        Ok(token) => token,
        Err(why) => {
            return vec![credentials_missing(LAYER, "token", &reference, &why).from_line(line)]
        }
    };
    let api = match Cloudflare::new(&options.cloudflare_url, token, options.timeout) {
        Ok(api) => api,
        Err(err) => {
            return vec![Check::unreachable(
                LAYER,
                "token",
                err.to_string(),
                "the HTTP client could not be set up: check the system's TLS roots",
            )
            .from_line(line)]
        }
    };
    let zone = &subject.model.project.domain;
    let failed = |name: &str, err: CloudflareError, fix: String| match err {
        CloudflareError::Net(net) => Check::unreachable(
            LAYER,
            name,
            format!("Cloudflare's API did not answer: {net}"),
            "check your network (or --cloudflare-url), or raise --timeout",
        )
        .from_line(line.clone()),
        refused => Check::failed(LAYER, name, refused.to_string(), fix).from_line(line.clone()),
    };
    let new_token = format!(
        "create a token with Zone:Zone:Read and Zone:DNS:Edit on {zone} and put it in field `credential` of item `{item}`"
    );
    let mut checks = Vec::new();
    match api.verify_token() {
        Ok(status) if status.status == "active" => checks.push(
            Check::pass(
                LAYER,
                "token",
                match &status.expires_on {
                    Some(when) => format!("active, expires {when}"),
                    None => "active".to_string(),
                },
            )
            .from_line(line.clone()),
        ),
        Ok(status) => {
            return vec![Check::failed(
                LAYER,
                "token",
                format!(
                    "Cloudflare says the token of item `{item}` is {}",
                    status.status
                ),
                new_token,
            )
            .from_line(line)]
        }
        Err(err) => return vec![failed("token", err, new_token)],
    }
    let id = match api.zone_id(zone) {
        Ok(Some(id)) => {
            checks.push(
                Check::pass(LAYER, format!("zone {zone}"), "listed (Zone:Read)")
                    .from_line(line.clone()),
            );
            id
        }
        Ok(None) => {
            checks.push(
                Check::failed(
                    LAYER,
                    format!("zone {zone}"),
                    format!("the token sees no zone {zone}: it lacks Zone:Read on it, or the zone is in another account"),
                    new_token,
                )
                .from_line(line),
            );
            return checks;
        }
        Err(err) => {
            checks.push(failed(&format!("zone {zone}"), err, new_token));
            return checks;
        }
    };
    checks.push(match api.read_dns_records(&id) {
        Ok(_) => Check::pass(
            LAYER,
            format!("DNS records of {zone}"),
            "readable (DNS:Read); DNS:Edit is not checked: proving it means changing a record",
        )
        .from_line(line),
        Err(err) => failed(&format!("DNS records of {zone}"), err, new_token),
    });
    checks
}
