//! `[artifacts]`, the artifact store: its endpoint a plain http(s) URL, its
//! region, bucket and prefix checked types (they are in every request's
//! path and signature, and in the URLs Proxmox downloads from), its
//! credentials references like every other secret (checked by `secrets`).

use super::Checker;
use crate::blueprint::Blueprint;
use crate::diagnostics::rules;
use crate::model::{ArtifactStore, CheckedString, HttpUrl};

pub fn store(checker: &mut Checker, blueprint: &Blueprint) -> Option<ArtifactStore> {
    let artifacts = blueprint.artifacts.as_ref()?;
    let endpoint =
        HttpUrl::parse(artifacts.endpoint.trim_end_matches('/')).unwrap_or_else(|reason| {
            let diagnostic = checker.error(
                &rules::INVALID_LOCATION,
                artifacts.endpoint.span(),
                "artifacts.endpoint",
                format!("`artifacts.endpoint` {reason}"),
            );
            diagnostic.label = "here".into();
            diagnostic.help =
                Some("write the service's root, e.g. `https://s3.fr-par.scw.cloud`".into());
            HttpUrl::example()
        });
    Some(ArtifactStore {
        endpoint,
        region: checker.parse(
            &artifacts.region,
            "artifacts.region",
            &rules::INVALID_IDENTIFIER,
        ),
        bucket: checker.parse(
            &artifacts.bucket,
            "artifacts.bucket",
            &rules::INVALID_IDENTIFIER,
        ),
        prefix: artifacts
            .prefix
            .as_ref()
            .map(|prefix| checker.parse(prefix, "artifacts.prefix", &rules::UNSAFE_PATH)),
        access_key_id: artifacts.access_key_id.value.clone(),
        secret_access_key: artifacts.secret_access_key.value.clone(),
    })
}
