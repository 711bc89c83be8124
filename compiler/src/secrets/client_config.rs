//! Merging waddlec's entries into the operator's own client configs: the
//! kubeconfig kubectl reads (`~/.kube/config` or `$KUBECONFIG`'s first
//! file) and the talosconfig talosctl reads (`~/.talos/config` or
//! `$TALOSCONFIG`); the CLI picks the file.
//!
//! Only the entries waddlec's own config names are replaced (a kubeconfig's
//! clusters, users and contexts by `name`, a talosconfig's contexts by key;
//! each in place, or added at the end), and the current context becomes
//! waddlec's. Everything else is read into types that keep every field they
//! do not know, and written back as the same data (comments and layout are
//! not kept). The file is replaced atomically at 0600 (through a symbolic
//! link, its target), or created with a 0700 directory. A file that is not
//! such a config is refused, naming its line and column but never its
//! content: it holds other clusters' keys.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{files, Secret, SecretError};
use crate::yaml;

/// Which client config a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Kubeconfig,
    Talosconfig,
}

impl Kind {
    fn shape(self) -> &'static str {
        match self {
            Kind::Kubeconfig => {
                "a kubeconfig: a mapping whose `clusters`, `users` and `contexts` are lists of entries with a `name`"
            }
            Kind::Talosconfig => {
                "a talosconfig: a mapping whose `contexts` maps names to contexts"
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}{location}: not {}, so waddlec does not touch it (nothing written); fix the file, or write waddlec's own file elsewhere with --out",
        path.display(),
        kind.shape()
    )]
    NotAConfig {
        path: PathBuf,
        kind: Kind,
        /// `:LINE:COL`, when the parser knows it.
        location: String,
    },
    #[error("internal error: waddlec's own {0:?} does not merge: {1}")]
    Internal(Kind, String),
    #[error(transparent)]
    Write(#[from] SecretError),
}

/// Why a merge failed, before the file is known.
enum Refusal {
    /// `theirs` is not a config: where (`:LINE:COL`, or empty).
    Theirs(String),
    /// Ours, or the result, would not serialise: a bug.
    Internal(String),
}

/// What a merge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The file written (a symbolic link's target).
    pub path: PathBuf,
    /// The entries written, as `kind name` (`context waddle-waddlec`).
    pub entries: Vec<String>,
    /// The current context now, and before (if there was one).
    pub current: String,
    pub previous: Option<String>,
}

/// Merges `ours` (a whole config of `kind`, as waddlec renders it) into the
/// file at `path`, or creates it.
pub fn merge_into(path: &Path, kind: Kind, ours: &Secret) -> Result<Merged, MergeError> {
    // Through a symbolic link (dotfiles), its target is what kubectl reads.
    let path = match fs::canonicalize(path) {
        Ok(target) => target,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => path.to_path_buf(),
        Err(source) => {
            return Err(MergeError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let theirs = match fs::read_to_string(&path) {
        Ok(text) => Some(Secret::new(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(MergeError::Read { path, source }),
    };
    let (text, merged) = merge(kind, theirs.as_ref(), ours).map_err(|refusal| match refusal {
        Refusal::Theirs(location) => MergeError::NotAConfig {
            path: path.clone(),
            kind,
            location,
        },
        Refusal::Internal(problem) => MergeError::Internal(kind, problem),
    })?;
    files::replace(&path, text.expose())?;
    Ok(Merged { path, ..merged })
}

/// The merge itself: `theirs` (absent: empty) with `ours`' entries.
fn merge(kind: Kind, theirs: Option<&Secret>, ours: &Secret) -> Result<(Secret, Merged), Refusal> {
    let internal = |err: yaml::YamlError| Refusal::Internal(err.to_string());
    let ours_internal = |_| Refusal::Internal("it does not parse".into());
    match kind {
        Kind::Kubeconfig => {
            let mut config: Kubeconfig = parse(theirs).map_err(Refusal::Theirs)?;
            let ours: Kubeconfig = parse(Some(ours)).map_err(ours_internal)?;
            let previous = config.current_context.take();
            let mut entries = Vec::new();
            for (label, mine, theirs) in [
                ("cluster", ours.clusters, &mut config.clusters),
                ("user", ours.users, &mut config.users),
                ("context", ours.contexts, &mut config.contexts),
            ] {
                let list = theirs.get_or_insert_with(Vec::new);
                for entry in mine.unwrap_or_default() {
                    entries.push(format!("{label} {}", entry.name));
                    match list.iter_mut().find(|e| e.name == entry.name) {
                        Some(slot) => *slot = entry,
                        None => list.push(entry),
                    }
                }
            }
            let current = ours.current_context.unwrap_or_default();
            config.current_context = Some(current.clone());
            config.api_version = config.api_version.or(ours.api_version);
            config.kind = config.kind.or(ours.kind);
            let text = yaml::document(&config).map_err(internal)?;
            Ok((
                Secret::new(text),
                Merged {
                    path: PathBuf::new(),
                    entries,
                    current,
                    previous,
                },
            ))
        }
        Kind::Talosconfig => {
            let mut config: Talosconfig = parse(theirs).map_err(Refusal::Theirs)?;
            let ours: Talosconfig = parse(Some(ours)).map_err(ours_internal)?;
            let previous = config.context.take();
            let contexts = config.contexts.get_or_insert_with(BTreeMap::new);
            let mut entries = Vec::new();
            for (name, context) in ours.contexts.unwrap_or_default() {
                entries.push(format!("context {name}"));
                contexts.insert(name, context);
            }
            let current = ours.context.unwrap_or_default();
            config.context = Some(current.clone());
            let text = yaml::document(&config).map_err(internal)?;
            Ok((
                Secret::new(text),
                Merged {
                    path: PathBuf::new(),
                    entries,
                    current,
                    previous,
                },
            ))
        }
    }
}

/// `text` as a `T`; nothing (or only whitespace and comments) is the empty
/// config. The error is only where, never what: the text holds keys.
fn parse<T: for<'de> Deserialize<'de> + Default>(text: Option<&Secret>) -> Result<T, String> {
    let Some(text) = text else {
        return Ok(T::default());
    };
    let blank = text
        .expose()
        .lines()
        .all(|line| line.trim().is_empty() || line.trim_start().starts_with('#'));
    if blank {
        return Ok(T::default());
    }
    // No snippet: it would quote the text. kubectl reads YAML 1.1 (`yes`
    // is true, `010` is 8): read as it does, so what is written back means
    // the same to it.
    let options = serde_saphyr::options! { with_snippet: false, legacy_octal_numbers: true };
    serde_saphyr::from_str_with_options(text.expose(), options).map_err(|err| {
        err.location()
            .map(|at| format!(":{}:{}", at.line(), at.column()))
            .unwrap_or_default()
    })
}

/// A kubeconfig, every field it does not name kept as it was (`rest`).
/// Fields in kubectl's order; absent lists stay absent.
#[derive(Default, Serialize, Deserialize)]
struct Kubeconfig {
    #[serde(
        rename = "apiVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    api_version: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    clusters: Option<Vec<Entry>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    contexts: Option<Vec<Entry>>,
    #[serde(
        rename = "current-context",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    current_context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    users: Option<Vec<Entry>>,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

/// A named cluster, user or context: its `name`, and the rest as it was.
#[derive(Serialize, Deserialize)]
struct Entry {
    name: String,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

/// A talosconfig: the current context and the contexts by name, every
/// other field kept as it was.
#[derive(Default, Serialize, Deserialize)]
struct Talosconfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    contexts: Option<BTreeMap<String, Value>>,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> Value {
        serde_saphyr::from_str(text).expect("YAML")
    }

    fn merged(kind: Kind, theirs: Option<&str>, ours: &str) -> (Value, Merged) {
        let theirs = theirs.map(|t| Secret::new(t.to_string()));
        let Ok((text, merged)) = merge(kind, theirs.as_ref(), &Secret::new(ours.to_string()))
        else {
            panic!("merges")
        };
        (value(text.expose()), merged)
    }

    const OURS: &str = "\
apiVersion: v1
kind: Config
clusters:
- name: lab-waddlec
  cluster: {server: 'https://10.0.0.20:6443', certificate-authority-data: Q0E=}
users:
- name: lab-waddlec-admin
  user: {client-certificate-data: Q1JU, client-key-data: S0VZ}
contexts:
- name: lab-waddlec
  context: {cluster: lab-waddlec, user: lab-waddlec-admin}
current-context: lab-waddlec
";

    /// What kubectl and other tools write: exec credentials, extensions,
    /// preferences, a field this code does not know, and an entry of ours
    /// from an earlier merge in the middle.
    const THEIRS: &str = "\
apiVersion: v1
kind: Config
preferences: {colors: true}
clusters:
- name: prod
  cluster:
    server: https://prod.example:6443
    insecure-skip-tls-verify: true
    extensions:
    - name: client.authentication.k8s.io/exec
      extension: {audience: prod, ttl: 3600}
- name: lab-waddlec
  cluster: {server: 'https://old:6443', certificate-authority-data: T0xE}
- name: kind-kind
  cluster: {server: 'https://127.0.0.1:40000', certificate-authority-data: S0lORA==}
users:
- name: prod-admin
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: aws
      args: [eks, get-token, --cluster-name, prod]
      env: null
      interactiveMode: IfAvailable
contexts:
- name: prod
  context: {cluster: prod, user: prod-admin, namespace: apps}
current-context: prod
x-tool-state: {last: 2026-01-01, count: 3}
";

    #[test]
    fn a_kubeconfig_keeps_everything_but_waddlec_s_entries() {
        let (after, merged) = merged(Kind::Kubeconfig, Some(THEIRS), OURS);
        let before = value(THEIRS);
        assert_eq!(merged.current, "lab-waddlec");
        assert_eq!(merged.previous.as_deref(), Some("prod"));
        assert_eq!(
            merged.entries,
            [
                "cluster lab-waddlec",
                "user lab-waddlec-admin",
                "context lab-waddlec"
            ]
        );
        assert_eq!(after["current-context"], "lab-waddlec");
        // Ours replaced in place, added where missing.
        let ours = value(OURS);
        assert_eq!(after["clusters"][1], ours["clusters"][0]);
        assert_eq!(after["users"][1], ours["users"][0]);
        assert_eq!(after["contexts"][1], ours["contexts"][0]);
        // Without ours and the current context, the same data as before.
        let mut rest = after.clone();
        let mut expected = before.clone();
        rest["clusters"].as_array_mut().unwrap().remove(1);
        expected["clusters"].as_array_mut().unwrap().remove(1);
        rest["users"].as_array_mut().unwrap().remove(1);
        rest["contexts"].as_array_mut().unwrap().remove(1);
        rest["current-context"] = Value::Null;
        expected["current-context"] = Value::Null;
        assert_eq!(rest, expected);
        // Merging the result again changes nothing.
        let text = yaml::document(&after).unwrap();
        let (again, _) = super::tests::merged(Kind::Kubeconfig, Some(&text), OURS);
        assert_eq!(again, after);
    }

    #[test]
    fn nothing_or_an_empty_file_becomes_waddlec_s_config() {
        for theirs in [None, Some(""), Some("# empty\n\n")] {
            let (after, merged) = merged(Kind::Kubeconfig, theirs, OURS);
            assert_eq!(after, value(OURS), "{theirs:?}");
            assert_eq!(merged.previous, None);
        }
        // kubectl's own empty config: lists are null.
        let empty = "apiVersion: v1\nclusters: null\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {}\nusers: null\n";
        let (after, merged) = merged(Kind::Kubeconfig, Some(empty), OURS);
        assert_eq!(after["clusters"], value(OURS)["clusters"]);
        assert_eq!(after["preferences"], serde_json::json!({}));
        assert_eq!(merged.previous.as_deref(), Some(""));
    }

    #[test]
    fn a_file_that_is_not_a_config_is_refused_by_place_never_content() {
        let secret = "c2VjcmV0LWtleS1tYXRlcmlhbA==";
        for text in [
            format!("clusters: {secret}\n"),
            format!("users:\n- user: {{token: {secret}}}\n"),
            format!("- {secret}\n"),
            format!("key: [{secret}\n"),
        ] {
            let theirs = Secret::new(text.clone());
            let Err(Refusal::Theirs(location)) =
                merge(Kind::Kubeconfig, Some(&theirs), &Secret::new(OURS))
            else {
                panic!("{text} refused")
            };
            assert!(location.starts_with(':'), "{text}: {location:?}");
            let err = MergeError::NotAConfig {
                path: PathBuf::from("/home/op/.kube/config"),
                kind: Kind::Kubeconfig,
                location,
            };
            let message = err.to_string();
            assert!(message.starts_with("/home/op/.kube/config:"), "{message}");
            assert!(!message.contains(secret), "{message}");
        }
    }

    #[test]
    fn yaml_1_1_scalars_keep_the_meaning_kubectl_gives_them() {
        let theirs =
            "clusters:\n- name: a\n  cluster: {insecure-skip-tls-verify: yes, octal: 010, quoted: '010'}\n";
        let (after, _) = merged(Kind::Kubeconfig, Some(theirs), OURS);
        let cluster = &after["clusters"][0]["cluster"];
        assert_eq!(cluster["insecure-skip-tls-verify"], true);
        assert_eq!(cluster["octal"], 8);
        assert_eq!(cluster["quoted"], "010");
    }

    #[test]
    fn a_talosconfig_keeps_other_contexts() {
        let ours = "context: lab-waddlec-teleport\ncontexts:\n  lab-waddlec: {endpoints: [10.0.0.10], nodes: [10.0.0.10], ca: Q0E=, crt: Q1JU, key: S0VZ}\n  lab-waddlec-teleport: {endpoints: ['127.0.0.1:50000'], nodes: [10.0.0.10], ca: Q0E=, crt: Q1JU, key: S0VZ}\n";
        let theirs = "context: home\ncontexts:\n  home: {endpoints: [192.168.1.2], ca: QQ==, crt: Qg==, key: Qw==, auth: {siderov1: {identity: me@example.org}}}\n  lab-waddlec: {endpoints: [old], ca: T0xE, crt: T0xE, key: T0xE}\n";
        let (after, merged) = merged(Kind::Talosconfig, Some(theirs), ours);
        assert_eq!(merged.current, "lab-waddlec-teleport");
        assert_eq!(merged.previous.as_deref(), Some("home"));
        assert_eq!(after["contexts"]["home"], value(theirs)["contexts"]["home"]);
        assert_eq!(
            after["contexts"]["lab-waddlec"],
            value(ours)["contexts"]["lab-waddlec"]
        );
        assert_eq!(
            after["contexts"]["lab-waddlec-teleport"]["endpoints"],
            serde_json::json!(["127.0.0.1:50000"])
        );
        assert_eq!(after["contexts"].as_object().unwrap().len(), 3);
    }
}
