//! The kinds the Kubernetes layer judges: where each is listed (group,
//! version, plural: the versions the platform tree renders and the pinned
//! releases serve), how a check names one, which component installs its
//! CRD, how its status is judged, and what to do about an unhealthy one.

use crate::net::kube_api::Resource;
use crate::render::platform::Applied;

use super::verdict::{self, Listed, Verdict};

/// A kind the layer judges, and how.
pub struct Kind {
    /// How checks name one (`helmrelease cert-manager/cert-manager`).
    pub label: &'static str,
    /// As the tree spells it.
    pub kind: &'static str,
    pub resource: Resource,
    /// The component whose Kustomization installs its CRD.
    pub installed_by: &'static str,
    pub judge: fn(&Listed) -> Verdict,
    /// What to do about an unhealthy one, given namespace and name.
    pub fix: fn(&str, &str) -> String,
}

pub const KUSTOMIZATION: Kind = Kind {
    label: "kustomization",
    kind: "Kustomization",
    resource: Resource {
        group: "kustomize.toolkit.fluxcd.io",
        version: "v1",
        plural: "kustomizations",
    },
    installed_by: "the FluxInstance `flux`",
    judge: verdict::flux,
    fix: |ns, name| {
        format!(
            "see why in `flux events --for Kustomization/{name} -n {ns}` (DependencyNotReady: fix the one it waits for first), then `flux reconcile kustomization {name} -n {ns} --with-source` (`flux resume` when it is suspended)"
        )
    },
};

pub const SPICEDB: Kind = Kind {
    label: "spicedb",
    kind: "SpiceDBCluster",
    resource: Resource {
        group: "authzed.com",
        version: "v1alpha1",
        plural: "spicedbclusters",
    },
    installed_by: "spicedb-operator",
    judge: verdict::spicedb,
    fix: |ns, name| {
        format!(
            "`kubectl -n {ns} describe spicedbcluster {name}` and the SpiceDB operator's log; the migration Job's log when a migration failed"
        )
    },
};

/// Every kind judged, in the order checked.
pub const KINDS: [Kind; 6] = [
    KUSTOMIZATION,
    Kind {
        label: "helmrelease",
        kind: "HelmRelease",
        resource: Resource {
            group: "helm.toolkit.fluxcd.io",
            version: "v2",
            plural: "helmreleases",
        },
        installed_by: "the FluxInstance `flux`",
        judge: verdict::flux,
        fix: |ns, name| {
            format!(
                "see why in `flux events --for HelmRelease/{name} -n {ns}` and the release's pods (`kubectl -n {ns} get pods`), then `flux reconcile helmrelease {name} -n {ns} --with-source` (`flux resume` when it is suspended)"
            )
        },
    },
    Kind {
        label: "certificate",
        kind: "Certificate",
        resource: Resource {
            group: "cert-manager.io",
            version: "v1",
            plural: "certificates",
        },
        installed_by: "cert-manager",
        judge: verdict::ready,
        fix: |ns, name| {
            format!(
                "`kubectl -n {ns} describe certificate {name}` (or `cmctl status certificate {name} -n {ns}`) shows the order and its challenge; check the ClusterIssuer (`kubectl get clusterissuer`) and its Cloudflare token"
            )
        },
    },
    Kind {
        label: "externalsecret",
        kind: "ExternalSecret",
        resource: Resource {
            group: "external-secrets.io",
            version: "v1",
            plural: "externalsecrets",
        },
        installed_by: "external-secrets",
        judge: verdict::ready,
        fix: |ns, name| {
            format!(
                "`kubectl -n {ns} describe externalsecret {name}` names the key it could not read; check that 1Password item and the ClusterSecretStore (`kubectl get clustersecretstore`)"
            )
        },
    },
    Kind {
        label: "postgres",
        kind: "Cluster",
        resource: Resource {
            group: "postgresql.cnpg.io",
            version: "v1",
            plural: "clusters",
        },
        installed_by: "cloudnative-pg",
        judge: verdict::postgres,
        fix: |ns, name| {
            format!(
                "`kubectl cnpg status {name} -n {ns}` (the cnpg plugin) or `kubectl -n {ns} get pods -l cnpg.io/cluster={name}` and their logs"
            )
        },
    },
    SPICEDB,
];

pub const NODES: Resource = Resource {
    group: "",
    version: "v1",
    plural: "nodes",
};

pub const ENDPOINT_SLICES: Resource = Resource {
    group: "discovery.k8s.io",
    version: "v1",
    plural: "endpointslices",
};

/// The kind this layer judges an applied object as, matched by group and
/// kind (any version: the API server serves one object at all of them).
pub fn judged_kind(applied: &Applied) -> Option<&'static Kind> {
    let group = applied.api_version.rsplit_once('/').map_or("", |(g, _)| g);
    KINDS
        .iter()
        .find(|k| k.kind == applied.kind && k.resource.group == group)
}

/// `helmreleases.helm.toolkit.fluxcd.io`, `nodes`: as kubectl names them.
pub fn kubectl_name(resource: &Resource) -> String {
    if resource.group.is_empty() {
        resource.plural.to_owned()
    } else {
        format!("{}.{}", resource.plural, resource.group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every judged object the tree renders is listed at the version the
    /// tree renders it at: a renderer moving to another API version fails
    /// here, not in a cluster.
    #[test]
    fn the_tree_s_judged_kinds_are_listed_at_the_versions_it_renders() {
        let source = crate::source::SourceFile {
            name: "waddle.toml".into(),
            text: include_str!("../../../../blueprints/waddle.toml").into(),
        };
        let today = crate::blueprint::Date {
            year: 2000,
            month: 1,
            day: 1,
        };
        let model = waddlec_core::check(&source, today)
            .map(|checked| checked.model)
            .unwrap_or_else(|_| panic!("the bundled blueprint checks"));
        let applied = crate::render::platform::applied(&model);
        let mut judged = 0;
        for object in &applied {
            let Some(kind) = judged_kind(object) else {
                continue;
            };
            judged += 1;
            assert_eq!(
                object.api_version,
                format!("{}/{}", kind.resource.group, kind.resource.version),
                "{} {}",
                object.kind,
                object.name
            );
        }
        for kind in &KINDS {
            assert!(
                applied.iter().any(|a| a.kind == kind.kind),
                "the example blueprint renders no {}",
                kind.kind
            );
        }
        assert!(judged > 20, "{judged}");
    }
}
