//! The backup bucket answers to its credentials: a HeadBucket (`HEAD
//! /BUCKET`, SigV4-signed by `net::s3`) of `platform.backups.bucket` at
//! its endpoint, signed with the access key the platform's ExternalSecret
//! gives CloudNativePG (1Password item `platform.items.s3_credentials`,
//! fields `access-key-id` and `secret-access-key`). Reads nothing from
//! the bucket, writes nothing.

use super::onepassword::item_span;
use super::{credentials_missing, vault_field, Options, Secrets, Subject};
use crate::checks::Check;
use crate::model::checked::{HttpUrl, S3Bucket};
use crate::model::ArtifactStore;
use crate::net::s3::{S3Error, S3};
use crate::net::NetError;

const LAYER: &str = "backups";

pub fn check(subject: &Subject<'_>, options: &Options, values: &mut Secrets<'_>) -> Vec<Check> {
    let (Some(platform), Some(written)) = (&subject.model.platform, &subject.document.platform)
    else {
        return Vec::new();
    };
    let backups = &platform.backups;
    let name = format!("bucket {}", backups.bucket);
    let line = subject.line(&written.backups.bucket.span);
    let item = &platform.items.s3_credentials;
    let mut read = |field: &str| {
        let reference = vault_field(&platform.vault, item, field);
        values
            .get("platform.items.s3_credentials", &reference)
            .map_err(|why| (reference, why))
    };
    let (access_key_id, secret_access_key) =
        match (read("access-key-id"), read("secret-access-key")) {
            (Ok(id), Ok(key)) => (id, key),
            (Err((reference, why)), _) | (_, Err((reference, why))) => {
                return vec![credentials_missing(LAYER, &name, &reference, &why)
                    .from_line(subject.line(&item_span(subject, item)))]
            }
        };
    let endpoint = options
        .backups_endpoint
        .clone()
        .unwrap_or_else(|| backups.endpoint.to_string());
    let store = match (HttpUrl::parse(&endpoint), S3Bucket::parse(&backups.bucket)) {
        (Ok(endpoint), Ok(bucket)) => ArtifactStore {
            endpoint,
            region: backups.region.clone(),
            bucket,
            prefix: None,
            access_key_id: vault_field(&platform.vault, item, "access-key-id"),
            secret_access_key: vault_field(&platform.vault, item, "secret-access-key"),
        },
        (Err(why), _) | (_, Err(why)) => {
            return vec![Check::failed(
                LAYER,
                name,
                format!("cannot address the bucket: {why}"),
                "fix platform.backups",
            )
            .from_line(line)]
        }
    };
    let result = S3::new(&store, access_key_id, secret_access_key)
        .map_err(S3Error::Net)
        .and_then(|s3| s3.head_bucket(options.timeout));
    vec![match result {
        Ok(()) => Check::pass(
            LAYER,
            name,
            format!("{endpoint} answers to the credentials of item `{item}`"),
        ),
        Err(S3Error::Status { status, code, .. }) => {
            let code = code.map(|c| format!(" ({c})")).unwrap_or_default();
            let (why, fix) = match status {
                403 => (
                    format!("{endpoint} refused the credentials of item `{item}`: HTTP 403{code}"),
                    format!("put an access key allowed to use bucket `{}` in item `{item}` (fields access-key-id, secret-access-key)", backups.bucket),
                ),
                404 => (
                    format!("{endpoint} has no bucket `{}`: HTTP 404{code}", backups.bucket),
                    "create the bucket, or fix platform.backups.bucket and .endpoint".to_string(),
                ),
                _ => (
                    format!("{endpoint} answered HTTP {status}{code}"),
                    "check platform.backups.endpoint and the provider's status".to_string(),
                ),
            };
            Check::failed(LAYER, name, why, fix)
        }
        Err(S3Error::Net(NetError::Request { problem, .. })) => Check::unreachable(
            LAYER,
            name,
            format!("{endpoint} did not answer: {problem}"),
            "check the endpoint and your network, or raise --timeout",
        ),
        Err(other) => Check::unreachable(
            LAYER,
            name,
            other.to_string(),
            "check the endpoint and your network",
        ),
    }
    .from_line(line)]
}
