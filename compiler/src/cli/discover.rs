//! Finding the project from wherever waddlec runs, as cargo and git do.
//!
//! `-C DIR` first makes waddlec run as if started in DIR. A command whose
//! blueprint is not given then takes `$WADDLEC_BLUEPRINT` if set, else the
//! first `blueprints/waddle.toml` found going up from the current directory.
//! The directory it was found in is the project root: the other relative
//! defaults (`out`, `dist`, `secrets/kubeconfig`, `secrets/talosconfig`)
//! are taken from there too,
//! so `waddlec build` in `blueprints/` writes `../out` as it would at the
//! top. Paths given on the command line stay relative to where waddlec runs.
//! The root is named relative to the current directory (`../..`), never by
//! an absolute path, so what waddlec prints does not depend on where the
//! checkout lives.
//!
//! This works by rewriting the clap defaults before the command line is
//! parsed a second time; the first parse finds `-C` and handles `--help`,
//! `--version` and usage errors with the defaults as documented.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use super::{exit, Cli};

/// The blueprint a command reads when given none, relative to the root.
pub const BLUEPRINT: &str = "blueprints/waddle.toml";
/// The environment variable naming the blueprint to use when none is given.
pub const BLUEPRINT_ENV: &str = "WADDLEC_BLUEPRINT";
/// Defaults that are paths in the project, taken from its root.
const ROOTED: [&str; 5] = [
    BLUEPRINT,
    "out",
    "dist",
    "secrets/kubeconfig",
    "secrets/talosconfig",
];

/// The project root relative to the current directory, when not `.`.
static ROOT: OnceLock<PathBuf> = OnceLock::new();

/// `path` (a default relative to the project root) relative to the current
/// directory.
pub fn rooted(path: &str) -> PathBuf {
    ROOT.get()
        .map_or_else(|| PathBuf::from(path), |root| root.join(path))
}

/// Where the default blueprint comes from.
enum Found {
    /// `$WADDLEC_BLUEPRINT`: the root is the current directory.
    Env(PathBuf),
    /// `blueprints/waddle.toml` under this root (`.`, `..`, `../..`…).
    Root(PathBuf),
    /// Nowhere: these directories were searched.
    Nowhere(Vec<PathBuf>),
}

/// Parses the command line, applies `-C` and finds the project. On failure
/// prints why and returns the exit code (0 for `--help` and `--version`).
pub fn parse() -> Result<Cli, u8> {
    let args: Vec<_> = std::env::args_os().collect();
    let matches = Cli::command()
        .try_get_matches_from(&args)
        .map_err(print_clap)?;
    let cli = Cli::from_arg_matches(&matches).map_err(print_clap)?;
    if let Some(dir) = &cli.directory {
        if let Err(err) = std::env::set_current_dir(dir) {
            eprintln!("error: -C {}: {err}", dir.display());
            return Err(exit::USAGE);
        }
    }
    let found = find();
    let (default_blueprint, root) = match found {
        Found::Env(blueprint) => (blueprint, None),
        Found::Root(root) if root == Path::new(".") => (PathBuf::from(BLUEPRINT), None),
        Found::Root(root) => (root.join(BLUEPRINT), Some(root)),
        Found::Nowhere(searched) => {
            if blueprint_defaulted(&matches) {
                not_found(&searched);
                return Err(exit::IO);
            }
            return Ok(cli);
        }
    };
    if root.is_none() && default_blueprint == Path::new(BLUEPRINT) {
        return Ok(cli);
    }
    let command = with_defaults(Cli::command(), &|default| {
        if default == BLUEPRINT {
            Some(default_blueprint.clone())
        } else {
            root.as_ref().map(|root| root.join(default))
        }
    });
    if let Some(root) = root {
        let _ = ROOT.set(root);
    }
    let matches = command.try_get_matches_from(&args).map_err(print_clap)?;
    Cli::from_arg_matches(&matches).map_err(print_clap)
}

fn print_clap(err: clap::Error) -> u8 {
    let _ = err.print();
    if err.use_stderr() {
        exit::USAGE
    } else {
        exit::OK
    }
}

/// The environment variable, else the nearest directory with the default
/// blueprint, going up from the current one.
fn find() -> Found {
    if let Some(path) = std::env::var_os(BLUEPRINT_ENV).filter(|v| !v.is_empty()) {
        return Found::Env(PathBuf::from(path));
    }
    let Ok(start) = std::env::current_dir() else {
        return Found::Nowhere(Vec::new());
    };
    let mut root = PathBuf::from(".");
    let mut searched = Vec::new();
    for dir in start.ancestors() {
        if dir.join(BLUEPRINT).is_file() {
            return Found::Root(root);
        }
        searched.push(dir.to_path_buf());
        root = if root == Path::new(".") {
            PathBuf::from("..")
        } else {
            root.join("..")
        };
    }
    Found::Nowhere(searched)
}

/// True if the command run reads a blueprint and none was given.
fn blueprint_defaulted(matches: &ArgMatches) -> bool {
    let mut leaf = matches;
    while let Some((_, sub)) = leaf.subcommand() {
        leaf = sub;
    }
    leaf.ids().any(|id| id.as_str() == "blueprint")
        && leaf.value_source("blueprint") == Some(ValueSource::DefaultValue)
}

fn not_found(searched: &[PathBuf]) {
    let dirs: Vec<String> = searched.iter().map(|d| d.display().to_string()).collect();
    eprintln!(
        "error: no blueprint given and none found: looked for {BLUEPRINT} in {}\n\
         help: name one (`waddlec build path/to/blueprint.toml`), run waddlec in the \
         project (or with -C DIR), or set {BLUEPRINT_ENV}",
        if dirs.is_empty() {
            "no directory (the current directory is unreadable)".to_string()
        } else {
            dirs.join(", ")
        }
    );
}

/// `command` with every default in `ROOTED` replaced by what `replace`
/// gives for it (if anything), in every subcommand.
fn with_defaults(
    command: clap::Command,
    replace: &dyn Fn(&str) -> Option<PathBuf>,
) -> clap::Command {
    command
        .mut_args(|arg| {
            let default = match arg.get_default_values() {
                [one] => one.to_str().filter(|d| ROOTED.contains(d)),
                _ => None,
            };
            match default.and_then(replace) {
                // clap holds defaults as `'static` (owned ones need its
                // `string` feature); a few paths, once per run.
                Some(path) => {
                    arg.default_value(&*Box::leak(path.into_os_string().into_boxed_os_str()))
                }
                None => arg,
            }
        })
        .mut_subcommands(|sub| with_defaults(sub, replace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooted_defaults_are_replaced_in_every_subcommand_and_nothing_else() {
        let command = with_defaults(Cli::command(), &|default| {
            Some(Path::new("../..").join(default))
        });
        let matches = command
            .clone()
            .try_get_matches_from(["waddlec", "cluster", "bootstrap"])
            .unwrap();
        let cluster = matches.subcommand().unwrap().1.subcommand().unwrap().1;
        assert_eq!(
            cluster.get_one::<PathBuf>("blueprint").unwrap(),
            Path::new("../../blueprints/waddle.toml")
        );
        assert!(blueprint_defaulted(&matches));
        let matches = command
            .try_get_matches_from(["waddlec", "deploy", "my.toml"])
            .unwrap();
        let deploy = matches.subcommand().unwrap().1;
        assert_eq!(
            deploy.get_one::<PathBuf>("tree").unwrap(),
            Path::new("../../dist")
        );
        assert_eq!(
            deploy.get_one::<PathBuf>("blueprint").unwrap(),
            Path::new("my.toml")
        );
        assert!(!blueprint_defaulted(&matches));
        assert_eq!(deploy.get_one::<u64>("agent_timeout"), Some(&300));
    }

    #[test]
    fn commands_without_a_blueprint_never_need_one() {
        let matches = Cli::command()
            .try_get_matches_from(["waddlec", "explain", "E0102"])
            .unwrap();
        assert!(!blueprint_defaulted(&matches));
    }
}
