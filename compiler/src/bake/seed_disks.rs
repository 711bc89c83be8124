//! Seed disks: each VM's rendered NoCloud files (`vms/<vm>/seed/…`) as a
//! FAT volume labelled `CIDATA` (`waddle_images::cidata_fat`), attached as
//! a second disk. Deterministic and small, so they are artifacts of the
//! deployable tree (`vms/<vm>/seed.img`), not cache entries; a seed that
//! carries secrets is 0600 like its files.

use std::collections::BTreeMap;

use crate::artifact::Artifact;

use crate::plan::images::SEED_FILES;

#[derive(Debug, thiserror::Error)]
#[error("seed disk of VM `{vm}`: {source}")]
pub struct SeedDiskError {
    vm: String,
    #[source]
    source: waddle_images::SeedDiskError,
}

/// One seed disk per VM whose seed files are among `artifacts`.
pub fn seed_disks(artifacts: &[Artifact]) -> Result<Vec<Artifact>, SeedDiskError> {
    let mut seeds: BTreeMap<&str, Vec<&Artifact>> = BTreeMap::new();
    for artifact in artifacts {
        let Some(rest) = artifact.path.strip_prefix("vms/") else {
            continue;
        };
        if let Some((vm, file)) = rest.split_once("/seed/") {
            if SEED_FILES.contains(&file) {
                seeds.entry(vm).or_default().push(artifact);
            }
        }
    }
    seeds
        .into_iter()
        .map(|(vm, files)| {
            let named: Vec<(&str, &[u8])> = files
                .iter()
                .map(|a| {
                    let name = a.path.rsplit('/').next().unwrap_or_default();
                    (name, a.contents.as_slice())
                })
                .collect();
            let image = waddle_images::cidata_fat(&named).map_err(|source| SeedDiskError {
                vm: vm.to_string(),
                source,
            })?;
            let mut artifact = Artifact {
                path: format!("vms/{vm}/seed.img"),
                kind: "nocloud-seed-disk",
                contents: image,
                executable: false,
                secret: false,
                guest: None,
            };
            if files.iter().any(|a| a.secret) {
                artifact = artifact.secret();
            }
            Ok(artifact)
        })
        .collect()
}
