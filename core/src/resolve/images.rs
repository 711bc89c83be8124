//! The Debian archive behind the baked images (`[debian]`) and the package
//! names images add (`[[image]] packages`): a snapshot timestamp that parses
//! and becomes the images' one time, a mirror override that is a plain
//! http(s) URL (and a warning), package names Debian would accept.

use time::macros::format_description;
use time::PrimitiveDateTime;

use super::Checker;
use crate::blueprint::{Blueprint, Located};
use crate::diagnostics::{rules, Diagnostic};
use crate::model::{CheckedString, DebianArchive, HttpUrl};

/// The Debian releases images can be built from, by `versions.debian`.
const SUITES: &[(&str, &str)] = &[("12", "bookworm")];

/// The archive, if any VM boots a Debian image; reports what is missing or
/// malformed.
pub fn debian(checker: &mut Checker, blueprint: &Blueprint) -> Option<DebianArchive> {
    check_packages(checker, blueprint);
    let Some(debian) = &blueprint.debian else {
        let first_debian_vm = blueprint.vms.first()?;
        checker
            .error(
                &rules::MISSING_KEY,
                first_debian_vm.image.span(),
                "debian",
                format!(
                    "VM `{}` boots a Debian image, but the blueprint has no `[debian]` archive to build it from",
                    *first_debian_vm.name
                ),
            )
            .help = Some(
            "add `[debian]` with `snapshot = \"20251120T000000Z\"` (a snapshot.debian.org timestamp)"
                .into(),
        );
        return None;
    };
    let version = match blueprint.vms.first() {
        Some(vm) => super::versions::required(
            checker,
            &blueprint.versions.debian,
            "debian",
            &format!("VM `{}`, which boots a Debian image,", *vm.name),
            vm.image.span(),
        ),
        None => blueprint.versions.debian.as_ref(),
    };
    let suite = version.and_then(|version| {
        let suite = SUITES
            .iter()
            .find(|(v, _)| **v == **version)
            .map(|(_, s)| *s);
        if suite.is_none() {
            checker
                .error(
                    &rules::VERSION_SKEW,
                    version.span(),
                    "versions.debian",
                    format!("Debian `{}` images cannot be built", **version),
                )
                .help = Some("images are built from Debian 12 (`debian = \"12\"`)".into());
        }
        suite
    });
    let epoch = snapshot_epoch(checker, &debian.snapshot);
    let mirror = debian
        .mirror
        .as_ref()
        .map(|mirror| check_mirror(checker, mirror));
    // Checked either way; part of the model only where a VM boots it.
    if blueprint.vms.is_empty() {
        return None;
    }
    Some(DebianArchive {
        suite: suite?.to_string(),
        snapshot: debian.snapshot.to_string(),
        source_date_epoch: epoch?,
        mirror,
    })
}

/// `20251120T000000Z` → seconds since the epoch.
fn snapshot_epoch(checker: &mut Checker, snapshot: &Located<String>) -> Option<u64> {
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    let parsed = snapshot
        .strip_suffix('Z')
        .filter(|_| snapshot.len() == 16)
        .and_then(|_| PrimitiveDateTime::parse(snapshot, format).ok())
        .map(|time| time.assume_utc().unix_timestamp())
        .and_then(|seconds| u64::try_from(seconds).ok());
    if parsed.is_none() {
        checker
            .error(
                &rules::INVALID_VALUE,
                snapshot.span(),
                "debian.snapshot",
                format!("`{}` is not a snapshot.debian.org timestamp", **snapshot),
            )
            .help = Some("write it as snapshot.debian.org does, in UTC: `20251120T000000Z`".into());
    }
    parsed
}

/// The mirror without a trailing `/`, and the warning that it is live.
fn check_mirror(checker: &mut Checker, mirror: &Located<String>) -> HttpUrl {
    let url = match HttpUrl::parse(mirror.trim_end_matches('/')) {
        Ok(url) => url,
        Err(reason) => {
            checker
                .error(
                    &rules::INVALID_LOCATION,
                    mirror.span(),
                    "debian.mirror",
                    format!("`debian.mirror` {reason}"),
                )
                .help =
                Some("write the archive's root, e.g. `http://deb.debian.org/debian`".into());
            return HttpUrl::example();
        }
    };
    checker.report(
        Diagnostic::new(
            &rules::LIVE_DEBIAN_MIRROR,
            mirror.span(),
            format!(
                "Debian images are baked from the live mirror `{}`, whose packages change over time",
                **mirror
            ),
        )
        .with_path("debian.mirror")
        .with_label("live mirror")
        .with_help("remove `mirror` to build from the pinned snapshot"),
    );
    url
}

fn check_packages(checker: &mut Checker, blueprint: &Blueprint) {
    for (i, image) in blueprint.images.iter().enumerate() {
        for (j, package) in image.packages.iter().enumerate() {
            checker.check_str(
                package,
                &format!("image[{i}].packages[{j}]"),
                &rules::INVALID_IDENTIFIER,
                check_package_name,
            );
        }
    }
}

/// Debian policy §5.6.1: lowercase letters, digits, `+`, `-`, `.`; at least
/// two characters, starting with a letter or digit.
fn check_package_name(name: &str) -> Result<(), String> {
    let ok = name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a Debian package name (lowercase letters, digits, `+-.`)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_follow_debian_policy() {
        for good in ["haproxy", "linux-image-cloud-amd64", "g++", "libc6.1"] {
            assert!(check_package_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a", "HAProxy", "-x", "pkg;rm", "a b", "pkg=1.0"] {
            assert!(check_package_name(bad).is_err(), "{bad}");
        }
    }
}
