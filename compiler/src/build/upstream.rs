//! Upstream inputs for builds with secrets (and deploy's rebuild): each
//! manifest and the Cilium chart fetched once into the download cache and
//! pinned in the blueprint's lock file; the images the bootstrap starts
//! pinned by digest beside them — a tag's digest from its registry, the
//! chart's images' digests from the chart's own `values.yaml` — and all of
//! it handed to the renderers as `UpstreamInputs`.

use std::io::Read;
use std::path::Path;

use serde_json::Value;
use waddlec_core::model::{Model, CILIUM_IMAGE_TABLES};
use waddlec_core::render::cluster::cilium::CHART_ARCHIVE_LIMIT;
use waddlec_core::render::cluster::upstream::{
    self, image_manifest_url, TaggedImage, UpstreamInputs, UpstreamManifest,
};

use crate::lock::{Lock, LockError};
use crate::net::fetch::{Cache, FetchError};
use crate::net::registry;

pub struct Upstream {
    lock: Lock,
    cache: Cache,
    locked: bool,
}

impl Upstream {
    /// The lock beside `blueprint` and the cache in `cache`; with `locked`,
    /// nothing the lock does not pin is fetched.
    pub fn open(blueprint: &Path, cache: Cache, locked: bool) -> Result<Self, LockError> {
        Ok(Upstream {
            lock: Lock::load(&Lock::path_for(blueprint))?,
            cache,
            locked,
        })
    }

    /// Everything upstream the model's renderers need.
    pub fn inputs(&mut self, model: &Model) -> Result<UpstreamInputs, FetchError> {
        let mut inputs = UpstreamInputs::default();
        for manifest in upstream::manifests(model) {
            let text = String::from_utf8(self.fetch(&manifest)?)
                .map_err(|e| unusable(&manifest, format!("not UTF-8: {e}")))?;
            inputs.texts.insert(manifest.url, text);
        }
        if let Some(chart) = upstream::cilium_chart(model) {
            let archive = self.fetch(&chart)?;
            if archive.len() > CHART_ARCHIVE_LIMIT {
                return Err(unusable(
                    &chart,
                    format!(
                        "{} bytes: a ConfigMap holds at most {CHART_ARCHIVE_LIMIT}",
                        archive.len()
                    ),
                ));
            }
            for (table, pinned) in chart_images(&chart, &archive)? {
                self.pin_digest(&chart.description, &table, &pinned)?;
                inputs
                    .images
                    .insert(upstream::chart_image_key(&table), pinned.reference());
            }
            if !inputs
                .images
                .contains_key(&upstream::chart_image_key("image"))
            {
                return Err(unusable(
                    &chart,
                    "its values name no digest for the agent `image`".into(),
                ));
            }
            inputs.archives.insert(chart.url, archive);
        }
        for image in upstream::tagged_images(model) {
            let digest = self.digest(&image)?;
            inputs.images.insert(
                image.reference.clone(),
                format!("{}@sha256:{digest}", image.reference),
            );
        }
        Ok(inputs)
    }

    /// The bytes of `manifest`, from the cache or downloaded, as pinned.
    fn fetch(&mut self, manifest: &UpstreamManifest) -> Result<Vec<u8>, FetchError> {
        tracing::info!(url = %manifest.url, "embedding {}", manifest.description);
        let path = self.cache.fetch(
            &mut self.lock,
            self.locked,
            &manifest.description,
            &manifest.url,
            &|_, _| {},
        )?;
        std::fs::read(&path).map_err(|source| FetchError::Cache {
            path: path.display().to_string(),
            source,
        })
    }

    /// A tag's digest: pinned, else (not `--locked`) asked of its registry
    /// and recorded.
    fn digest(&mut self, image: &TaggedImage) -> Result<String, FetchError> {
        let url = image.manifest_url();
        if let Some(pinned) = self.lock.pinned(&url) {
            return Ok(pinned.to_string());
        }
        let name = format!("image {}", image.reference);
        if self.locked {
            return Err(FetchError::NotLocked { name, url });
        }
        tracing::info!(%url, "resolving the digest of {}", image.reference);
        let digest = registry::manifest_digest(&url)?;
        self.lock.record(&name, &url, &digest);
        Ok(digest)
    }

    /// Records (or checks) a digest the pinned chart names.
    fn pin_digest(
        &mut self,
        chart: &str,
        table: &str,
        image: &ChartImage,
    ) -> Result<(), FetchError> {
        let url = image_manifest_url(&image.tagged);
        let name = format!("image {} ({chart}, `{table}`)", image.tagged);
        match self.lock.pinned(&url) {
            Some(pinned) if pinned != image.digest => Err(FetchError::Mismatch {
                name,
                url,
                expected: pinned.to_string(),
                actual: image.digest.clone(),
            }),
            Some(_) => Ok(()),
            None => {
                self.lock.record(&name, &url, &image.digest);
                Ok(())
            }
        }
    }

    /// Writes pins recorded by this build (verified ones are kept even if
    /// the build later fails).
    pub fn save(&self) -> Result<(), LockError> {
        self.lock.save()
    }
}

/// An image a chart names: `repository:tag` and its digest (hex).
struct ChartImage {
    tagged: String,
    digest: String,
}

impl ChartImage {
    fn reference(&self) -> String {
        format!("{}@sha256:{}", self.tagged, self.digest)
    }
}

fn unusable(input: &UpstreamManifest, problem: String) -> FetchError {
    FetchError::Unusable {
        name: input.description.clone(),
        url: input.url.clone(),
        problem,
    }
}

/// The images of the chart's image tables that name a digest, read from
/// `cilium/values.yaml` in the archive.
fn chart_images(
    chart: &UpstreamManifest,
    archive: &[u8],
) -> Result<Vec<(String, ChartImage)>, FetchError> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let mut text = None;
    let entries = tar
        .entries()
        .map_err(|e| unusable(chart, format!("not a tar.gz: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| unusable(chart, format!("not a tar.gz: {e}")))?;
        let is_values = entry
            .path()
            .is_ok_and(|p| p.as_os_str() == "cilium/values.yaml");
        if is_values {
            let mut values = String::new();
            entry
                .read_to_string(&mut values)
                .map_err(|e| unusable(chart, format!("cilium/values.yaml: {e}")))?;
            text = Some(values);
            break;
        }
    }
    let text = text.ok_or_else(|| unusable(chart, "no cilium/values.yaml".into()))?;
    let values: Value = serde_saphyr::from_str(&text)
        .map_err(|e| unusable(chart, format!("cilium/values.yaml: {e}")))?;
    let mut images = Vec::new();
    for table in CILIUM_IMAGE_TABLES {
        let node = table
            .split('.')
            .try_fold(&values, |node, part| node.get(part));
        let Some(node) = node else { continue };
        let field = |key: &str| node.get(key).and_then(Value::as_str).unwrap_or_default();
        // The operator's image is one per cloud: `operator-generic` here.
        let (repository, digest) = if *table == "operator.image" {
            (
                format!("{}-generic{}", field("repository"), field("suffix")),
                field("genericDigest"),
            )
        } else {
            (field("repository").to_string(), field("digest"))
        };
        let Some(hex) = digest.strip_prefix("sha256:") else {
            continue;
        };
        let valid = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid || repository.is_empty() || field("tag").is_empty() {
            return Err(unusable(
                chart,
                format!("`{table}` names no well-formed image and digest"),
            ));
        }
        images.push((
            table.to_string(),
            ChartImage {
                tagged: format!("{repository}:{}", field("tag")),
                digest: hex.to_string(),
            },
        ));
    }
    Ok(images)
}
