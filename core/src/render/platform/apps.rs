//! SpiceDB, the platform's application: a CloudNativePG cluster with WAL
//! and base backups to object storage through the Barman Cloud plugin (the
//! in-tree `barmanObjectStore` is deprecated since CNPG 1.26), the
//! SpiceDBCluster on it, its GRPCRoute on the Gateway and a network policy
//! admitting only the Gateway and its own replicas. The database's
//! generation decides where it archives and, after a disaster, which
//! backups it is created from (`[platform.spicedb]` `generation`,
//! `restore_from`).

use serde_json::{json, Value};

use super::graph::Need;
use super::infrastructure::{self, GATEWAY_NS};
use super::objects::{external_secret, labels, namespace, object, Field};
use super::Component;
use crate::model::{Archive, Platform};
use crate::render::k8s::Metadata;

const NS: &str = "spicedb";
const CLUSTER: &str = "spicedb";
const PG: &str = "spicedb-pg";
const OBJECT_STORE: &str = "backups";
const S3_SECRET: &str = "s3-backups";
const PLUGIN: &str = "barman-cloud.cloudnative-pg.io";
const GRPC_PORT: u16 = 50051;
const DISPATCH_PORT: u16 = 50053;
/// The password inside a DSN's single quotes, as an ESO template: backslash
/// and quote escaped.
const DSN_PASSWORD: &str = r#"{{ .password | replace "\\" "\\\\" | replace "'" "\\'" }}"#;

fn object_store(platform: &Platform, namespace: &str) -> Value {
    let credential = |key: &str| json!({"name": S3_SECRET, "key": key});
    object(
        "barmancloud.cnpg.io/v1",
        "ObjectStore",
        Metadata::namespaced(namespace, OBJECT_STORE),
        json!({"spec": {
            "retentionPolicy": platform.backups.retention,
            "configuration": {
                "destinationPath": format!("s3://{}/{PG}", platform.backups.bucket),
                "endpointURL": platform.backups.endpoint,
                "s3Credentials": {
                    "accessKeyId": credential("ACCESS_KEY_ID"),
                    "secretAccessKey": credential("SECRET_ACCESS_KEY"),
                    "region": credential("REGION"),
                },
                "wal": {"compression": "gzip"},
                "data": {"compression": "gzip"},
            },
        }}),
    )
}

fn s3_credentials(platform: &Platform) -> Value {
    let item = platform.items.s3_credentials.as_str();
    external_secret(
        NS,
        S3_SECRET,
        &[
            Field {
                secret_key: "ACCESS_KEY_ID",
                item,
                property: "access-key-id",
            },
            Field {
                secret_key: "SECRET_ACCESS_KEY",
                item,
                property: "secret-access-key",
            },
        ],
        Some(json!({"data": {
            "ACCESS_KEY_ID": "{{ .ACCESS_KEY_ID }}",
            "SECRET_ACCESS_KEY": "{{ .SECRET_ACCESS_KEY }}",
            "REGION": platform.backups.region,
        }})),
    )
}

/// The server name a generation of the database archives under, inside
/// the ObjectStore's `destinationPath`: the Cluster's own name (the
/// plugin's default) for the first, `spicedb-pg-g<N>` for each later one,
/// so no restored database ever writes over the backups it came from.
fn server_name(generation: u32) -> String {
    if generation == 1 {
        PG.to_owned()
    } else {
        format!("{PG}-g{generation}")
    }
}

/// What the tree's README says of the database's life: its generation,
/// where it archives, and what it was created from.
pub fn archive_summary(archive: Archive) -> String {
    let origin = match archive.restore_from {
        Some(origin) => format!(
            "restored from generation {origin}'s backups (`{}`)",
            server_name(origin)
        ),
        None => "created empty (`initdb`)".to_owned(),
    };
    format!(
        "generation {}: archives as `{}`, {origin}",
        archive.generation,
        server_name(archive.generation)
    )
}

/// The PostgreSQL cluster: archiving as its generation's server name, and
/// created either empty (`initdb`) or, after a disaster, from an earlier
/// generation's backups (`bootstrap.recovery` from an external cluster
/// reading that generation's server name), so Flux's first apply of a
/// rebuilt platform is the restore.
fn pg_cluster(platform: &Platform) -> Value {
    let spicedb = &platform.spicedb;
    let archive = spicedb.archive;
    let mut spec = json!({
        "instances": spicedb.instances,
        "storage": {"storageClass": platform.storage_class, "size": spicedb.storage},
        "walStorage": {"storageClass": platform.storage_class, "size": spicedb.wal_storage},
        "plugins": [{
            "name": PLUGIN,
            "isWALArchiver": true,
            "parameters": {"barmanObjectName": OBJECT_STORE, "serverName": server_name(archive.generation)},
        }],
    });
    match archive.restore_from {
        Some(origin) => {
            spec["bootstrap"] = json!({"recovery": {"source": "origin", "database": "spicedb", "owner": "spicedb", "secret": {"name": "spicedb-pg-app"}}});
            spec["externalClusters"] = json!([{
                "name": "origin",
                "plugin": {"name": PLUGIN, "parameters": {"barmanObjectName": OBJECT_STORE, "serverName": server_name(origin)}},
            }]);
        }
        None => {
            spec["bootstrap"] = json!({"initdb": {"database": "spicedb", "owner": "spicedb", "secret": {"name": "spicedb-pg-app"}}});
        }
    }
    object(
        "postgresql.cnpg.io/v1",
        "Cluster",
        Metadata::namespaced(NS, PG),
        json!({ "spec": spec }),
    )
}

pub fn spicedb(platform: &Platform) -> Component {
    let gateway = &platform.gateway;
    let host = format!("{}.{}", platform.spicedb.host, gateway.apps_domain);
    // The listener serving the apps wildcard.
    let listener = gateway
        .https
        .iter()
        .position(|(h, _)| h.strip_prefix("*.") == Some(gateway.apps_domain.as_str()))
        .map_or_else(
            || infrastructure::https_listener(0),
            infrastructure::https_listener,
        );
    let password = Field {
        secret_key: "password",
        item: &platform.items.spicedb_postgres,
        property: "password",
    };
    // One 1Password item behind both the database role and SpiceDB's
    // datastore URI.
    let pg_app = external_secret(
        NS,
        "spicedb-pg-app",
        &[password],
        Some(
            json!({"type": "kubernetes.io/basic-auth", "data": {"username": "spicedb", "password": "{{ .password }}"}}),
        ),
    );
    let config = external_secret(
        NS,
        "spicedb-config",
        &[
            Field {
                secret_key: "psk",
                item: &platform.items.spicedb_preshared_key,
                property: "credential",
            },
            Field {
                secret_key: "password",
                item: &platform.items.spicedb_postgres,
                property: "password",
            },
        ],
        Some(json!({"data": {
            "preshared_key": "{{ .psk }}",
            // A keyword/value DSN (pgx reads both forms): a generated
            // password with `/ ? # %` breaks a URL; here it is quoted.
            "datastore_uri": format!(
                "host={PG}-rw.{NS}.svc port=5432 dbname=spicedb user=spicedb sslmode=require password='{DSN_PASSWORD}'"
            ),
        }})),
    );
    let scheduled = object(
        "postgresql.cnpg.io/v1",
        "ScheduledBackup",
        Metadata::namespaced(NS, "spicedb-pg-daily"),
        json!({"spec": {
            // Six fields, seconds first: 03:00 every day.
            "schedule": "0 0 3 * * *",
            "backupOwnerReference": "self",
            "cluster": {"name": PG},
            "method": "plugin",
            "pluginConfiguration": {"name": PLUGIN},
        }}),
    );
    let spicedb_cluster = object(
        "authzed.com/v1alpha1",
        "SpiceDBCluster",
        Metadata::namespaced(NS, CLUSTER),
        json!({"spec": {
            "version": platform.versions.spicedb,
            "channel": "stable",
            "secretName": "spicedb-config",
            "config": {"datastoreEngine": "postgres", "replicas": platform.spicedb.replicas, "logLevel": "info"},
        }}),
    );
    let route = object(
        "gateway.networking.k8s.io/v1",
        "GRPCRoute",
        Metadata::namespaced(NS, CLUSTER),
        json!({"spec": {
            "parentRefs": [{"name": gateway.name, "namespace": GATEWAY_NS, "sectionName": listener}],
            "hostnames": [host],
            "rules": [{"backendRefs": [{"name": CLUSTER, "port": GRPC_PORT}]}],
        }}),
    );
    let pods = labels(&[
        ("authzed.com/cluster", CLUSTER),
        ("authzed.com/cluster-component", "spicedb"),
    ]);
    let policy = object(
        "cilium.io/v2",
        "CiliumNetworkPolicy",
        Metadata::namespaced(NS, "spicedb-ingress"),
        json!({"spec": {
            "endpointSelector": {"matchLabels": pods},
            "ingress": [
                // Only the Gateway's Envoy: behind the edge's TCP
                // passthrough no client address survives to match on.
                {"fromEntities": ["ingress"], "toPorts": [{"ports": [{"port": GRPC_PORT.to_string(), "protocol": "TCP"}]}]},
                // Dispatch between SpiceDB's own replicas.
                {"fromEndpoints": [{"matchLabels": pods}], "toPorts": [{"ports": [{"port": DISPATCH_PORT.to_string(), "protocol": "TCP"}]}]},
            ],
        }}),
    );
    Component::new(
        "spicedb",
        "apps/spicedb",
        vec![
            Need { to: "cloudnative-pg", why: "the database is a CloudNativePG Cluster, backed up by its Barman Cloud plugin" },
            Need { to: "spicedb-operator", why: "SpiceDBCluster is the operator's resource" },
            Need { to: "democratic-csi", why: "the database's volumes come from the default StorageClass" },
            Need { to: "onepassword", why: "the database password, preshared key and S3 credentials come through the ClusterSecretStore" },
            Need { to: "cilium-gateway", why: "the GRPCRoute attaches to the Gateway's https listener" },
        ],
    )
    .file("namespace.yaml", vec![namespace(NS, false)])
    .file("secrets.yaml", vec![pg_app, config, s3_credentials(platform)])
    .file("postgres.yaml", vec![object_store(platform, NS), pg_cluster(platform), scheduled])
    .file("spicedb.yaml", vec![spicedb_cluster, route])
    .file("network-policy.yaml", vec![policy])
}
