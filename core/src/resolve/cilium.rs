//! `[talos.cilium]`: the Helm values the bootstrap Job installs Cilium with.
//!
//! waddlec's values come first: the keys the cluster depends on are fixed
//! (each with the reason), a few tunable defaults follow, and the blueprint's
//! `values` are merged over the defaults. The result is checked twice against
//! the chart's own `values.schema.json` (embedded, 1.19.0): types through the
//! schema, and unknown keys through its `properties` tree — the schema has no
//! `additionalProperties`, so a removed key such as `externalIPs.enabled`
//! would otherwise be a silent no-op.
//!
//! Images: a released chart names each of its images by digest beside the
//! tag (`useDigest: true`), and the build pins those digests in the lock
//! beside the chart. `useDigest` is fixed on for every image table, and
//! the blueprint may set nothing there but `pullPolicy`: a `repository`,
//! `tag`, `digest` or `override` would run an image the lock does not pin.

use serde_json::{json, Map, Value};

use super::Checker;
use crate::blueprint::{Blueprint, Located};
use crate::diagnostics::rules;
use crate::model::{CiliumInstall, CILIUM_IMAGE_TABLES};

/// The chart version whose values schema waddlec embeds.
pub const CHART_VERSION: &str = "1.19.0";
const VALUES_SCHEMA: &str = include_str!("../../data/cilium-1.19.0/values.schema.json");
const DEFAULT_CLI: &str = "v0.19.0";
const CLI_IMAGE: &str = "quay.io/cilium/cilium-cli";

/// Values the cluster depends on, as (dotted key, value, why).
fn fixed() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "ipam.mode",
            json!("kubernetes"),
            "Talos allocates pod CIDRs through Kubernetes",
        ),
        (
            "kubeProxyReplacement",
            json!(true),
            "the machine configs disable kube-proxy",
        ),
        (
            "k8sServiceHost",
            json!("localhost"),
            "Cilium reaches the API through KubePrism before any Service works",
        ),
        ("k8sServicePort", json!(7445), "KubePrism listens on 7445"),
        (
            "cgroup.autoMount.enabled",
            json!(false),
            "Talos mounts cgroup v2 itself",
        ),
        (
            "cgroup.hostRoot",
            json!("/sys/fs/cgroup"),
            "Talos mounts cgroup v2 there",
        ),
        (
            "securityContext.capabilities.ciliumAgent",
            json!([
                "CHOWN",
                "KILL",
                "NET_ADMIN",
                "NET_RAW",
                "IPC_LOCK",
                "SYS_ADMIN",
                "SYS_RESOURCE",
                "DAC_OVERRIDE",
                "FOWNER",
                "SETGID",
                "SETUID",
                "SYSLOG"
            ]),
            "Talos forbids loading kernel modules: the chart's default without SYS_MODULE",
        ),
        (
            "securityContext.capabilities.cleanCiliumState",
            json!(["NET_ADMIN", "SYS_ADMIN", "SYS_RESOURCE"]),
            "Talos forbids loading kernel modules: the chart's default without SYS_MODULE",
        ),
        (
            "l2announcements.enabled",
            json!(true),
            "the blueprint's VIPs are announced over ARP",
        ),
        (
            "gatewayAPI.enabled",
            json!(true),
            "public traffic enters through the Cilium Gateway",
        ),
        (
            "gatewayAPI.enableAlpn",
            json!(true),
            "gRPC routes need HTTP/2 negotiated over TLS",
        ),
        (
            "gatewayAPI.enableAppProtocol",
            json!(true),
            "backends declare h2c through appProtocol",
        ),
        (
            "gatewayAPI.gatewayClass.create",
            json!("true"),
            "`auto` skips the GatewayClass when the CRDs are not served yet, as at bootstrap",
        ),
    ]
}

/// Tunable defaults the blueprint may override.
fn defaults() -> Vec<(&'static str, Value)> {
    vec![
        // L2 announcement leases renew per service; the chart's 5/10 is too
        // low once a few LoadBalancer services exist (l2-announcements docs).
        ("k8sClientRateLimit.qps", json!(20)),
        ("k8sClientRateLimit.burst", json!(40)),
        ("operator.replicas", json!(2)),
    ]
}

pub fn cilium(checker: &mut Checker, blueprint: &Blueprint) -> Option<CiliumInstall> {
    let talos = blueprint.talos.as_ref()?;
    let version = super::versions::required(
        checker,
        &blueprint.versions.cilium,
        "cilium",
        "the Talos cluster's CNI (`[talos]`)",
        talos.cluster.span(),
    )?;
    if **version != CHART_VERSION {
        checker
            .error(
                &rules::VERSION_SKEW,
                version.span(),
                "versions.cilium",
                format!("waddlec installs Cilium {CHART_VERSION} (its values schema and Gateway API CRDs are pinned to it), not `{}`", **version),
            )
            .help = Some(format!("set `cilium = \"{CHART_VERSION}\"`"));
        return None;
    }
    let schema: Value = serde_json::from_str(VALUES_SCHEMA).expect("the embedded schema is JSON");
    let mut values = Value::Object(Map::new());
    for (key, value) in defaults() {
        set(&mut values, key, value);
    }
    let mut ok = true;
    if let Some(user) = &talos.cilium.values {
        for (path, reason) in fixed_conflicts(user)
            .into_iter()
            .chain(image_conflicts(user))
        {
            ok = false;
            checker
                .error(
                    &rules::FIXED_SETTING,
                    user.span(),
                    format!("talos.cilium.values.{path}"),
                    format!("`{path}` is set by waddlec: {reason}"),
                )
                .help = Some("remove it from `[talos.cilium] values`".into());
        }
        for (path, known) in unknown_keys(&schema, &Value::Object(user.value.clone()), "") {
            ok = false;
            let diagnostic = checker.error(
                &rules::UNKNOWN_KEY,
                user.span(),
                format!("talos.cilium.values.{path}"),
                format!("`{path}` is not a value of the Cilium {CHART_VERSION} chart"),
            );
            diagnostic.help = Some(match closest(&path, &known) {
                Some(near) => format!("did you mean `{near}`? (removed keys, such as `externalIPs.enabled` in 1.19, are refused too)"),
                None => "the chart's values.yaml lists every key; removed keys are refused".into(),
            });
        }
        if !ok {
            return None;
        }
        merge(&mut values, &Value::Object(user.value.clone()));
    }
    for (key, value, _) in fixed() {
        set(&mut values, key, value);
    }
    for table in CILIUM_IMAGE_TABLES {
        set(&mut values, &format!("{table}.useDigest"), json!(true));
    }
    let span = talos
        .cilium
        .values
        .as_ref()
        .map(Located::span)
        .unwrap_or(version.span());
    let validator = jsonschema::validator_for(&schema).expect("the embedded schema compiles");
    for error in validator.iter_errors(&values) {
        ok = false;
        let at = error.instance_path().to_string();
        checker.error(
            &rules::INVALID_VALUE,
            span.clone(),
            format!("talos.cilium.values{}", at.replace('/', ".")),
            format!(
                "Cilium value `{}`: {error}",
                at.trim_start_matches('/').replace('/', ".")
            ),
        );
    }
    let cli = blueprint
        .versions
        .cilium_cli
        .as_ref()
        .map_or(DEFAULT_CLI.to_string(), |v| v.to_string());
    ok.then(|| CiliumInstall {
        version: version.to_string(),
        cli_image: format!("{CLI_IMAGE}:{cli}"),
        values,
    })
}

/// Fixed keys the blueprint tries to set, with the reason they are fixed.
fn fixed_conflicts(user: &Map<String, Value>) -> Vec<(String, &'static str)> {
    let user = Value::Object(user.clone());
    fixed()
        .into_iter()
        .filter_map(|(key, _, why)| {
            // The fixed key itself, or a table above it set to a non-table.
            let mut node = &user;
            for part in key.split('.') {
                node = node.get(part)?;
                if !node.is_object() {
                    break;
                }
            }
            Some((key.to_string(), why))
        })
        .collect()
}

/// Keys of the chart's image tables the blueprint sets (only `pullPolicy`
/// is its to choose), with the reason.
fn image_conflicts(user: &Map<String, Value>) -> Vec<(String, &'static str)> {
    const WHY: &str = "the chart's images run by the digests it names, pinned in the lock file; this would run another image or drop the digest";
    let user = Value::Object(user.clone());
    let mut found = Vec::new();
    for table in CILIUM_IMAGE_TABLES {
        let mut node = Some(&user);
        for part in table.split('.') {
            node = node.and_then(|n| n.as_object()).and_then(|n| n.get(part));
        }
        match node {
            Some(Value::Object(keys)) => found.extend(
                keys.keys()
                    .filter(|key| *key != "pullPolicy")
                    .map(|key| (format!("{table}.{key}"), WHY)),
            ),
            Some(_) => found.push((table.to_string(), WHY)),
            None => {}
        }
    }
    found
}

/// Sets a dotted key, creating tables on the way.
fn set(values: &mut Value, key: &str, value: Value) {
    let mut node = values;
    let parts: Vec<&str> = key.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        let map = node.as_object_mut().expect("waddlec's values are tables");
        node = map
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    node.as_object_mut()
        .expect("waddlec's values are tables")
        .insert(parts[parts.len() - 1].to_string(), value);
}

/// Helm's merge: tables merge key by key, anything else replaces.
fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                match into.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge(existing, value)
                    }
                    _ => {
                        into.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (into, from) => *into = from.clone(),
    }
}

/// Keys of `values` the schema does not define, as dotted paths, each with
/// the keys defined at that level (for a suggestion). A schema node with
/// `properties` lists its keys; one without (`podAnnotations: {type:
/// object}`) is a free-form map.
fn unknown_keys(schema: &Value, values: &Value, prefix: &str) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    match values {
        Value::Object(map) => {
            let known = properties(schema);
            if known.is_empty() {
                return found;
            }
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                let children: Vec<&Value> =
                    known.iter().filter_map(|props| props.get(key)).collect();
                if children.is_empty() {
                    let names = known
                        .iter()
                        .flat_map(|props| props.keys())
                        .map(|k| {
                            if prefix.is_empty() {
                                k.clone()
                            } else {
                                format!("{prefix}.{k}")
                            }
                        })
                        .collect();
                    found.push((path, names));
                } else if let Some(child) = children.first() {
                    found.extend(unknown_keys(child, value, &path));
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    found.extend(unknown_keys(item_schema, item, &format!("{prefix}[{i}]")));
                }
            }
        }
        _ => {}
    }
    found
}

/// The `properties` tables of a schema node, including its `anyOf` branches.
fn properties(schema: &Value) -> Vec<&Map<String, Value>> {
    let mut all: Vec<&Map<String, Value>> = schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .collect();
    for branch in schema
        .get("anyOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        all.extend(properties(branch));
    }
    all
}

/// The known key closest to `path` by edit distance, if close at all.
fn closest(path: &str, known: &[String]) -> Option<String> {
    known
        .iter()
        .map(|k| (edit_distance(&path.to_lowercase(), &k.to_lowercase()), k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min()
        .map(|(_, k)| k.clone())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        serde_json::from_str(VALUES_SCHEMA).unwrap()
    }

    #[test]
    fn removed_and_misspelled_keys_are_unknown() {
        let values = json!({"externalIPs": {"enabled": true}, "l2announcements": {"enable": true}, "operator": {"replicas": 1}});
        let unknown: Vec<String> = unknown_keys(&schema(), &values, "")
            .into_iter()
            .map(|(path, _)| path)
            .collect();
        assert_eq!(unknown, ["externalIPs", "l2announcements.enable"]);
    }

    #[test]
    fn free_form_maps_take_any_key() {
        let values = json!({"podAnnotations": {"example.org/anything": "x"}});
        assert!(unknown_keys(&schema(), &values, "").is_empty());
    }

    #[test]
    fn the_suggestion_is_the_nearest_sibling() {
        let values = json!({"l2announcements": {"enable": true}});
        let (_, known) = unknown_keys(&schema(), &values, "").remove(0);
        assert_eq!(
            closest("l2announcements.enable", &known).as_deref(),
            Some("l2announcements.enabled")
        );
    }

    #[test]
    fn only_the_pull_policy_of_an_image_is_the_blueprints() {
        let user = json!({
            "image": {"useDigest": false, "pullPolicy": "Always"},
            "envoy": {"image": {"override": "example.org/envoy:latest"}},
            "certgen": {"image": "example.org/certgen"},
            "operator": {"replicas": 1},
        });
        let paths: Vec<String> = image_conflicts(user.as_object().unwrap())
            .into_iter()
            .map(|(path, _)| path)
            .collect();
        assert_eq!(
            paths,
            ["image.useDigest", "envoy.image.override", "certgen.image"]
        );
    }

    #[test]
    fn merge_keeps_sibling_keys() {
        let mut base = json!({"operator": {"replicas": 2, "image": {"tag": "x"}}});
        merge(&mut base, &json!({"operator": {"replicas": 1}}));
        assert_eq!(
            base,
            json!({"operator": {"replicas": 1, "image": {"tag": "x"}}})
        );
    }

    #[test]
    fn waddlec_values_are_schema_valid_and_known() {
        let mut values = json!({});
        for (key, value) in defaults() {
            set(&mut values, key, value);
        }
        for (key, value, _) in fixed() {
            set(&mut values, key, value);
        }
        for table in CILIUM_IMAGE_TABLES {
            set(&mut values, &format!("{table}.useDigest"), json!(true));
        }
        assert!(unknown_keys(&schema(), &values, "").is_empty());
        let validator = jsonschema::validator_for(&schema()).unwrap();
        assert!(validator.is_valid(&values));
    }
}
