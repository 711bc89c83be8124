//! `[versions]`: every pin the blueprint gives is an exact version (E0119),
//! Talos and Kubernetes ones the releases the renderers speak (E0118), and
//! a pin is required only by a component the blueprint uses: the Talos
//! cluster needs Talos, Kubernetes and Cilium, Teleport its release, Debian
//! VMs the Debian release, Flux the Flux Operator, the platform tree its
//! charts and images. A missing one is refused at the component that needs
//! it (E0003); the components' resolvers ask for theirs with [`required`].

use super::{names, Checker};
use crate::blueprint::{Blueprint, Located, Span};
use crate::diagnostics::rules;

/// The Talos release the machine-config renderer speaks (multi-document
/// network config, `grubUseUKICmdline`), and the Kubernetes minors it
/// supports (Talos 1.12's support matrix: 1.30 to 1.35). Anything else is
/// the version skew talhelper users meet as unknown-field errors at apply
/// time, or a kubelet Talos refuses to run.
const TALOS_RELEASE: &str = "v1.12.";
const OLDEST_KUBERNETES_MINOR: u32 = 30;
const NEWEST_KUBERNETES_MINOR: u32 = 35;

/// A pin as a missing one's help shows it: what waddlec is tested with.
const EXAMPLES: &[(&str, &str)] = &[
    ("debian", "12"),
    ("talos", "v1.12.4"),
    ("kubernetes", "1.35.1"),
    ("teleport", "18.2.1"),
    ("cilium", "1.19.0"),
    ("democratic_csi", "0.15.1"),
    ("flux_operator", "0.40.0"),
    ("cert_manager", "1.19.3"),
    ("external_dns", "1.20.0"),
    ("external_secrets", "2.0.0"),
    ("onepassword_connect", "2.3.0"),
    ("cloudnative_pg", "1.28.1"),
    ("spicedb_operator", "1.22.0"),
];

/// Checks the spelling of every pin the blueprint gives, used or not.
pub(super) fn check(checker: &mut Checker, blueprint: &Blueprint) {
    let v = &blueprint.versions;
    checker.check_str(
        &v.proxmox,
        "versions.proxmox",
        &rules::UNPINNED_VERSION,
        names::check_version,
    );
    let pins = [
        ("debian", &v.debian),
        ("talos", &v.talos),
        ("kubernetes", &v.kubernetes),
        ("teleport", &v.teleport),
        ("cilium", &v.cilium),
        ("democratic_csi", &v.democratic_csi),
        ("flux_operator", &v.flux_operator),
        ("cert_manager", &v.cert_manager),
        ("external_dns", &v.external_dns),
        ("external_secrets", &v.external_secrets),
        ("onepassword_connect", &v.onepassword_connect),
        ("cloudnative_pg", &v.cloudnative_pg),
        ("spicedb_operator", &v.spicedb_operator),
        ("cilium_cli", &v.cilium_cli),
        ("spicedb", &v.spicedb),
        ("cloudnative_pg_chart", &v.cloudnative_pg_chart),
        ("barman_cloud_plugin_chart", &v.barman_cloud_plugin_chart),
        ("democratic_csi_image", &v.democratic_csi_image),
    ];
    for (key, value) in pins {
        if let Some(value) = value {
            checker.check_str(
                value,
                &format!("versions.{key}"),
                &rules::UNPINNED_VERSION,
                names::check_version,
            );
        }
    }
    if let Some(talos) = &v.talos {
        check_talos(checker, talos);
    }
    if let Some(kubernetes) = &v.kubernetes {
        check_kubernetes(checker, kubernetes);
    }
}

/// The pin `key` that `component` needs, reported as missing at `at` (the
/// component's own setting) when the blueprint has none.
pub(super) fn required<'a>(
    checker: &mut Checker,
    pin: &'a Option<Located<String>>,
    key: &str,
    component: &str,
    at: Span,
) -> Option<&'a Located<String>> {
    if pin.is_none() {
        let path = format!("versions.{key}");
        let diagnostic = checker.error(
            &rules::MISSING_KEY,
            at,
            &path,
            format!("`{path}` is missing: {component} needs it"),
        );
        diagnostic.label = format!("needs `{path}`");
        let example = EXAMPLES
            .iter()
            .find(|(name, _)| *name == key)
            .map_or("…", |(_, example)| example);
        diagnostic.help = Some(format!("pin it in `[versions]`: `{key} = \"{example}\"`"));
    }
    pin.as_ref()
}

/// [`required`] as the model keeps it. After a refusal the empty string
/// stands in, so that checking goes on; the model is then never handed out.
pub(super) fn required_string(
    checker: &mut Checker,
    pin: &Option<Located<String>>,
    key: &str,
    component: &str,
    at: Span,
) -> String {
    required(checker, pin, key, component, at).map_or_else(String::new, |pin| pin.to_string())
}

/// An optional pin, or waddlec's.
pub(super) fn or_default(pin: &Option<Located<String>>, default: &str) -> String {
    pin.as_ref()
        .map_or(default.to_string(), |pin| pin.to_string())
}

fn check_talos(checker: &mut Checker, talos: &Located<String>) {
    if !talos.starts_with('v') {
        checker
            .error(
                &rules::UNPINNED_VERSION,
                talos.span(),
                "versions.talos",
                format!("Talos versions are written with a `v` (`v{}`), as Image Factory and installer tags use them", **talos),
            )
            .label = "missing `v`".into();
    } else if !talos.starts_with(TALOS_RELEASE) {
        checker.error(
            &rules::VERSION_SKEW,
            talos.span(),
            "versions.talos",
            format!(
                "waddlec renders machine configs for Talos {TALOS_RELEASE}x, not `{}`: another release \
                 would reject or silently ignore keys (version skew)",
                **talos
            ),
        );
    }
}

fn check_kubernetes(checker: &mut Checker, kubernetes: &Located<String>) {
    // A version that is no pin at all is reported by `names::check_version`.
    let mut parts = kubernetes.trim_start_matches('v').split('.');
    let major = parts.next().and_then(|m| m.parse::<u32>().ok());
    let minor = parts.next().and_then(|m| m.parse::<u32>().ok());
    let supported = OLDEST_KUBERNETES_MINOR..=NEWEST_KUBERNETES_MINOR;
    if let (Some(major), Some(minor)) = (major, minor) {
        if major != 1 || !supported.contains(&minor) {
            let diagnostic = checker.error(
                &rules::VERSION_SKEW,
                kubernetes.span(),
                "versions.kubernetes",
                format!(
                    "Talos {TALOS_RELEASE}x supports Kubernetes 1.{OLDEST_KUBERNETES_MINOR} to \
                     1.{NEWEST_KUBERNETES_MINOR}, not `{}`",
                    **kubernetes
                ),
            );
            diagnostic.label = "outside Talos' support matrix".into();
            diagnostic.help = Some(format!(
                "pin a Kubernetes 1.{OLDEST_KUBERNETES_MINOR}–1.{NEWEST_KUBERNETES_MINOR} release, \
                 e.g. `kubernetes = \"1.{NEWEST_KUBERNETES_MINOR}.1\"`"
            ));
        }
    }
}
