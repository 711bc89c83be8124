//! `waddlec build` as a library function: the destination checked before
//! any work, the blueprint compiled (with secrets and upstream manifests for
//! the deployable tree), seed disks and images added to the deployable
//! tree, `--strict` applied, then the tree compared with what is on disk
//! (`check`) or written (staged, then renamed into place). The CLI parses
//! arguments, implements [`Ui`] and prints; every way this can fail is a
//! [`BuildError`] with its exit code.

use std::path::{Path, PathBuf};

use super::images::{bake_images, TreeImages};
use super::upstream::Upstream;
use super::{compile_with, CompileError, SecretSource, UpstreamSource};
use crate::bake::seed_disks::{seed_disks, SeedDiskError};
use crate::bake::{BakeError, Upstreams};
use crate::blueprint::Date;
use crate::diagnostics::Diagnostics;
use crate::emit::{self, Staleness, WriteError};
use crate::lock::LockError;
use crate::net::fetch::Cache;
use crate::source::SourceFile;

/// What to build, and how.
pub struct Request<'a> {
    pub source: &'a SourceFile,
    /// The blueprint's path: its directory resolves `file:` references, and
    /// its lock file (`<name>.lock`) pins upstream inputs.
    pub blueprint: &'a Path,
    /// The tree to write or, with `check`, compare.
    pub out: &'a Path,
    /// The deployable tree: read every secret, embed upstream manifests,
    /// make seed disks (and images, with `images`).
    pub with_secrets: bool,
    /// With `with_secrets`: fetch and bake the disk images (or pull them
    /// from the artifact store).
    pub images: bool,
    /// With `images`: upload every image the artifact store lacks.
    pub push: bool,
    /// Fetch only what the lock file pins.
    pub locked: bool,
    pub upstreams: &'a Upstreams,
    /// Downloads, Debian bases and baked images.
    pub cache_dir: &'a Path,
    /// Compare with `out` instead of writing it.
    pub check: bool,
    /// Warnings fail the build.
    pub strict: bool,
    /// Only decides whether expired temporary rules are warned about.
    pub today: Date,
}

/// What the workflow needs from whoever runs it.
pub trait Ui {
    /// Progress of a long step (`fetching …`, `baking …`), in bytes.
    fn progress(&self, what: &str, done: u64, total: Option<u64>);
    /// The long steps are over.
    fn progress_done(&self);
}

/// A build that did not fail, with the blueprint's warnings and the
/// manifest (as JSON, for `--format json`).
#[derive(Debug)]
pub struct Built {
    pub outcome: Outcome,
    pub warnings: Diagnostics,
    pub manifest: Option<serde_json::Value>,
}

/// How a build that did not fail ended.
#[derive(Debug)]
pub enum Outcome {
    /// The tree was written: this many files.
    Written { files: usize },
    /// `check`: the tree is exactly what this build would write.
    Fresh,
    /// `check`: the tree differs.
    Stale(Staleness),
}

/// Why a build stopped. Messages name what to do next.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error(
        "{} holds the review tree, which is committed; write the tree with secrets elsewhere (default: dist/)",
        .0.display()
    )]
    ReviewTree(PathBuf),
    /// `out` is a file or someone else's directory: refused before any work.
    #[error(transparent)]
    Destination(WriteError),
    /// The lock file could not be read or written.
    #[error(transparent)]
    Pins(LockError),
    #[error(transparent)]
    Seeds(#[from] SeedDiskError),
    #[error(transparent)]
    Bake(#[from] BakeError),
    #[error(transparent)]
    Store(crate::store::StoreError),
    #[error("--push uploads baked images: use it with --with-secrets and without --no-images")]
    PushWithoutImages,
    #[error("--push needs an artifact store: add `[artifacts]` to the blueprint")]
    NoStore,
    /// Warnings under `strict`: the diagnostics to show.
    #[error("warnings are fatal under --strict")]
    Strict(Diagnostics),
    #[error("cannot read {}: {source}", path.display())]
    ReadTree {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(WriteError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Builds (or checks) the tree `request` describes.
pub fn run(request: &Request<'_>, ui: &dyn Ui) -> Result<Built, BuildError> {
    let out = request.out;
    if request.push && !(request.with_secrets && request.images) {
        return Err(BuildError::PushWithoutImages);
    }
    if request.with_secrets && is_review_tree(out) {
        return Err(BuildError::ReviewTree(out.to_path_buf()));
    }
    if !request.check {
        emit::check_destination(out).map_err(BuildError::Destination)?;
    }
    let blueprint_dir = blueprint_dir(request.blueprint);
    let mut compiled = if request.with_secrets {
        // The deployable tree embeds upstream manifests; the review tree
        // names them, so it builds offline.
        let cache = Cache::new(request.cache_dir);
        let mut upstream =
            Upstream::open(request.blueprint, cache, request.locked).map_err(BuildError::Pins)?;
        let compiled = compile_with(
            request.source,
            request.today,
            SecretSource::Resolve(&blueprint_dir),
            UpstreamSource::Fetch(&mut upstream),
        );
        // Pins are kept even when a later step fails: they were verified.
        upstream.save().map_err(BuildError::Pins)?;
        compiled?
    } else {
        compile_with(
            request.source,
            request.today,
            SecretSource::Redacted,
            UpstreamSource::Placeholders,
        )?
    };
    let mut image_files = Vec::new();
    if request.with_secrets {
        let seeds = seed_disks(&compiled.artifacts)?;
        compiled.add_artifacts(seeds);
        if request.images {
            let cache = Cache::new(request.cache_dir);
            let TreeImages { list, files } = bake_images(
                &compiled,
                request.blueprint,
                &cache,
                request.locked,
                request.push,
                request.upstreams,
                ui,
            )?;
            compiled.add_artifacts(vec![list]);
            image_files = files;
        }
    }
    if request.strict && compiled.warnings.has_warnings() {
        return Err(BuildError::Strict(compiled.warnings));
    }
    let manifest = serde_json::to_value(&compiled.manifest).ok();
    let outcome = if request.check {
        let staleness =
            emit::compare(out, &compiled.artifacts).map_err(|source| BuildError::ReadTree {
                path: out.to_path_buf(),
                source,
            })?;
        if staleness.is_fresh() {
            Outcome::Fresh
        } else {
            Outcome::Stale(staleness)
        }
    } else {
        emit::write_tree_with(out, &compiled.artifacts, &image_files).map_err(BuildError::Write)?;
        Outcome::Written {
            files: compiled.artifacts.len(),
        }
    };
    Ok(Built {
        outcome,
        warnings: compiled.warnings,
        manifest,
    })
}

/// The directory `file:` secret references are relative to.
pub fn blueprint_dir(blueprint: &Path) -> PathBuf {
    match blueprint.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// True if `dir` holds a review tree (its manifest says secrets are
/// redacted): the committed tree must never receive secrets.
fn is_review_tree(dir: &Path) -> bool {
    emit::Manifest::read(dir).is_some_and(|manifest| manifest.secrets == emit::Secrets::Redacted)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::exit::{self, Code as _};

    /// Counts progress reports; the review tree bakes nothing, so none.
    #[derive(Default)]
    struct Quiet(Cell<usize>);

    impl Ui for Quiet {
        fn progress(&self, _: &str, _: u64, _: Option<u64>) {
            self.0.set(self.0.get() + 1);
        }
        fn progress_done(&self) {}
    }

    const BLUEPRINT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../blueprints/waddle.toml");

    fn source() -> SourceFile {
        SourceFile {
            name: "blueprints/waddle.toml".into(),
            text: std::fs::read_to_string(BLUEPRINT).unwrap(),
        }
    }

    fn upstreams() -> Upstreams {
        Upstreams {
            factory: "http://127.0.0.1:9/".into(),
            teleport_cdn: "http://127.0.0.1:9/".into(),
            debian_snapshots: "http://127.0.0.1:9/".into(),
        }
    }

    fn request<'a>(
        source: &'a SourceFile,
        out: &'a Path,
        upstreams: &'a Upstreams,
        check: bool,
    ) -> Request<'a> {
        Request {
            source,
            blueprint: Path::new(BLUEPRINT),
            out,
            with_secrets: false,
            images: false,
            push: false,
            locked: true,
            upstreams,
            cache_dir: out,
            check,
            strict: false,
            today: Date {
                year: 2026,
                month: 1,
                day: 1,
            },
        }
    }

    #[test]
    fn writes_the_review_tree_then_finds_it_fresh_then_stale() {
        let (source, upstreams) = (source(), upstreams());
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let ui = Quiet::default();

        let built = run(&request(&source, &out, &upstreams, false), &ui).unwrap();
        let Outcome::Written { files } = built.outcome else {
            panic!("expected a written tree, got {:?}", built.outcome);
        };
        assert!(files > 10, "{files} files");
        assert!(is_review_tree(&out));
        assert_eq!(ui.0.get(), 0, "the review tree bakes nothing");

        let checked = run(&request(&source, &out, &upstreams, true), &ui).unwrap();
        assert!(matches!(checked.outcome, Outcome::Fresh));
        assert_eq!(checked.outcome.exit_code(), exit::OK);

        std::fs::write(out.join("stray.txt"), "not built\n").unwrap();
        let checked = run(&request(&source, &out, &upstreams, true), &ui).unwrap();
        let Outcome::Stale(staleness) = &checked.outcome else {
            panic!("expected stale, got {:?}", checked.outcome);
        };
        assert_eq!(staleness.extra, ["stray.txt"]);
        assert_eq!(checked.outcome.exit_code(), exit::STALE);
    }

    #[test]
    fn refuses_a_file_as_destination_before_any_work() {
        let (source, upstreams) = (source(), upstreams());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("notes.txt");
        std::fs::write(&file, "mine\n").unwrap();

        let err = run(
            &request(&source, &file, &upstreams, false),
            &Quiet::default(),
        )
        .unwrap_err();
        assert!(matches!(err, BuildError::Destination(_)), "{err}");
        assert_eq!(err.exit_code(), exit::USAGE);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine\n");
    }

    #[test]
    fn refuses_secrets_into_the_review_tree() {
        let (source, upstreams) = (source(), upstreams());
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        run(
            &request(&source, &out, &upstreams, false),
            &Quiet::default(),
        )
        .unwrap();

        let mut with_secrets = request(&source, &out, &upstreams, false);
        with_secrets.with_secrets = true;
        let err = run(&with_secrets, &Quiet::default()).unwrap_err();
        assert!(matches!(err, BuildError::ReviewTree(_)), "{err}");
        assert_eq!(err.exit_code(), exit::USAGE);
    }

    #[test]
    fn an_invalid_blueprint_writes_nothing() {
        let upstreams = upstreams();
        let source = SourceFile {
            name: "bad.toml".into(),
            text: "[host\n".into(),
        };
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let err = run(
            &request(&source, &out, &upstreams, false),
            &Quiet::default(),
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), exit::INVALID);
        assert!(!out.exists());
    }
}
