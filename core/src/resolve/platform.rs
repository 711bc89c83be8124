//! `[platform]`: the settings of the GitOps tree, defaults applied. It
//! needs the cluster (`[talos]`), the repository Flux syncs (`[flux]`),
//! 1Password Connect (the only way credentials reach it) and a VIP on the
//! cluster's bridge answering 443 for the Gateway.

use super::{names, versions, Checker};
use crate::blueprint::{
    Blueprint, DnsProviderName, Located, PlatformDns, PlatformSpiceDb, Span, TsigAlgorithm,
};
use crate::diagnostics::rules;
use crate::model::{self, BridgeRole, CheckedString};

pub fn platform(
    checker: &mut Checker,
    blueprint: &Blueprint,
    bridges: &[model::Bridge],
    vips: &[model::Vip],
    edge: Option<&model::Edge>,
) -> Option<model::Platform> {
    let platform = blueprint.platform.as_ref()?;
    let span = platform.vault.span();
    let mut ok = true;
    for (table, present) in [
        ("talos", blueprint.talos.is_some()),
        ("flux", blueprint.flux.is_some()),
        (
            "onepassword_connect",
            blueprint.onepassword_connect.is_some(),
        ),
    ] {
        if !present {
            ok = false;
            checker
                .error(
                    &rules::MISSING_KEY,
                    span.clone(),
                    table,
                    format!("`[platform]` needs `[{table}]`: the tree is synced by Flux into the Talos cluster and reads its credentials through 1Password Connect"),
                )
                .help = Some(format!("add `[{table}]` or remove `[platform]`"));
        }
    }
    let talos = blueprint.talos.as_ref()?;
    let cluster_bridge = bridges.iter().find(|b| b.name == *talos.bridge)?;
    let gateway = gateway(vips, cluster_bridge, edge);
    if gateway.is_none() {
        ok = false;
        checker
            .error(
                &rules::MISSING_KEY,
                span.clone(),
                "edge.route",
                format!("the platform's Gateway needs a `[[vip]]` on `{}` that the edge routes a wildcard host to (`*.apps.<domain>`)", cluster_bridge.name),
            )
            .help = Some("add `[[vip]] name = \"gateway\"` on the cluster's bridge with `ports = [80, 443]`, and `[[edge.route]] sni = \"*.apps.<domain>\"` with `to = \"gateway:443\"`".into());
    }
    if let Some(class) = &platform.storage.class {
        checker.check_str_with_help(
            class,
            "platform.storage.class",
            &rules::INVALID_DNS_NAME,
            names::check_lowercase_label,
            names::LOWERCASE_LABEL_HELP,
        );
    }
    if let Some(host) = &platform.spicedb.host {
        checker.check_str_with_help(
            host,
            "platform.spicedb.host",
            &rules::INVALID_DNS_NAME,
            names::check_lowercase_label,
            names::LOWERCASE_LABEL_HELP,
        );
    }
    checker.check_str(
        &platform.vault,
        "platform.vault",
        &rules::INVALID_IDENTIFIER,
        check_item,
    );
    let dataset: model::ZfsDataset = checker.parse(
        &platform.storage.dataset,
        "platform.storage.dataset",
        &rules::INVALID_IDENTIFIER,
    );
    checker.check_str(
        &platform.storage.ssh_public_key,
        "platform.storage.ssh_public_key",
        &rules::INVALID_VALUE,
        |key| public_key(key).map(|_| ()),
    );
    let endpoint = model::HttpsUrl::parse(platform.backups.endpoint.trim_end_matches('/'))
        .unwrap_or_else(|reason| {
            let diagnostic = checker.error(
                &rules::INVALID_LOCATION,
                platform.backups.endpoint.span(),
                "platform.backups.endpoint",
                format!("`platform.backups.endpoint` {reason}"),
            );
            diagnostic.label = "here".into();
            diagnostic.help = Some(model::HttpsUrl::HELP.into());
            model::HttpsUrl::example()
        });
    let region: model::S3Region = checker.parse(
        &platform.backups.region,
        "platform.backups.region",
        &rules::INVALID_IDENTIFIER,
    );
    checker.check_str_with_help(
        &platform.backups.bucket,
        "platform.backups.bucket",
        &rules::INVALID_DNS_NAME,
        names::check_lowercase_label,
        names::LOWERCASE_LABEL_HELP,
    );
    for (value, path) in [
        (&platform.spicedb.storage, "platform.spicedb.storage"),
        (
            &platform.spicedb.wal_storage,
            "platform.spicedb.wal_storage",
        ),
    ] {
        if let Some(value) = value {
            checker.check_str(value, path, &rules::INVALID_SIZE, check_quantity);
        }
    }
    if let Some(retention) = &platform.backups.retention {
        checker.check_str(
            retention,
            "platform.backups.retention",
            &rules::INVALID_VALUE,
            |r| {
                let (number, unit) = r.split_at(r.len().saturating_sub(1));
                if !number.is_empty()
                    && number.chars().all(|c| c.is_ascii_digit())
                    && ["d", "w", "m"].contains(&unit)
                {
                    Ok(())
                } else {
                    Err(format!(
                        "`{r}` is not a Barman retention such as `30d`, `4w` or `3m`"
                    ))
                }
            },
        );
    }
    let items = &platform.items;
    for (value, path) in [
        (&items.cloudflare_token, "platform.items.cloudflare_token"),
        (&items.dns_tsig_key, "platform.items.dns_tsig_key"),
        (&items.s3_credentials, "platform.items.s3_credentials"),
        (
            &items.spicedb_preshared_key,
            "platform.items.spicedb_preshared_key",
        ),
        (&items.spicedb_postgres, "platform.items.spicedb_postgres"),
        (&items.csi_ssh_key, "platform.items.csi_ssh_key"),
        (&items.iscsi_chap, "platform.items.iscsi_chap"),
    ] {
        if let Some(value) = value {
            checker.check_str(value, path, &rules::INVALID_IDENTIFIER, check_item);
        }
    }
    let counts = [
        (&platform.spicedb.replicas, "platform.spicedb.replicas"),
        (&platform.spicedb.instances, "platform.spicedb.instances"),
    ];
    for (value, path) in counts {
        if let Some(value) = value.as_ref().filter(|v| v.value == 0 || v.value > 9) {
            ok = false;
            checker.error(
                &rules::OUT_OF_RANGE,
                value.span(),
                path,
                format!("`{path}` is {}; give 1 to 9", value.value),
            );
        }
    }
    let archive = archive(checker, &platform.spicedb);
    let dns = dns(checker, &platform.dns, &span);
    let public = bridges.iter().find(|b| b.role == BridgeRole::Public)?;
    let text = |value: &Option<Located<String>>, default: &str| {
        value
            .as_ref()
            .map_or(default.to_string(), |v| v.to_string())
    };
    let count = |value: &Option<Located<u32>>| value.as_ref().map_or(2, |v| v.value);
    let versions = versions(checker, blueprint, span);
    if !ok {
        return None;
    }
    Some(model::Platform {
        vault: platform.vault.to_string(),
        storage_class: text(&platform.storage.class, "zfs-iscsi"),
        dataset,
        csi_public_key: public_key(&platform.storage.ssh_public_key).ok()?,
        storage_quota: platform.storage.quota.as_ref().map(|quota| quota.0),
        storage_host: cluster_bridge.host_address,
        backups: model::Backups {
            bucket: platform.backups.bucket.to_string(),
            endpoint,
            region,
            retention: text(&platform.backups.retention, "30d"),
        },
        spicedb: model::SpiceDb {
            host: text(&platform.spicedb.host, "spicedb"),
            replicas: count(&platform.spicedb.replicas),
            instances: count(&platform.spicedb.instances),
            storage: text(&platform.spicedb.storage, "10Gi"),
            wal_storage: text(&platform.spicedb.wal_storage, "5Gi"),
            archive: archive?,
        },
        items: model::PlatformItems {
            cloudflare_token: text(&items.cloudflare_token, "cloudflare-api-token"),
            dns_tsig_key: text(&items.dns_tsig_key, "dns-tsig-key"),
            s3_credentials: text(&items.s3_credentials, "s3-backups"),
            spicedb_preshared_key: text(&items.spicedb_preshared_key, "spicedb-preshared-key"),
            spicedb_postgres: text(&items.spicedb_postgres, "spicedb-postgres"),
            csi_ssh_key: text(&items.csi_ssh_key, "democratic-csi-ssh"),
            iscsi_chap: text(&items.iscsi_chap, "democratic-csi-iscsi-chap"),
        },
        gateway: gateway?,
        dns: dns?,
        public_address: public.host_address,
        // Set by `resolve` once the forwards are known.
        public_address6: None,
        versions,
    })
}

/// The pins of what the tree installs: each required, or waddlec's default.
fn versions(checker: &mut Checker, blueprint: &Blueprint, at: Span) -> model::PlatformVersions {
    let v = &blueprint.versions;
    let mut required = |pin: &Option<Located<String>>, key: &str| {
        versions::required_string(
            checker,
            pin,
            key,
            "the platform tree (`[platform]`)",
            at.clone(),
        )
    };
    model::PlatformVersions {
        democratic_csi: required(&v.democratic_csi, "democratic_csi"),
        cert_manager: required(&v.cert_manager, "cert_manager"),
        external_dns: required(&v.external_dns, "external_dns"),
        external_secrets: required(&v.external_secrets, "external_secrets"),
        onepassword_connect: required(&v.onepassword_connect, "onepassword_connect"),
        cloudnative_pg: required(&v.cloudnative_pg, "cloudnative_pg"),
        spicedb_operator: required(&v.spicedb_operator, "spicedb_operator"),
        spicedb: versions::or_default(&v.spicedb, "v1.47.1"),
        cloudnative_pg_chart: versions::or_default(&v.cloudnative_pg_chart, "0.27.1"),
        barman_cloud_plugin_chart: versions::or_default(&v.barman_cloud_plugin_chart, "0.5.0"),
        democratic_csi_image: versions::or_default(&v.democratic_csi_image, "v1.9.4"),
    }
}

/// A 1Password vault or item title as ExternalSecrets name it.
fn check_item(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " ._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a plain 1Password title (letters, digits, space, `.`, `_`, `-`)"
        ))
    }
}

/// `10Gi`: a Kubernetes quantity in binary units.
fn check_quantity(size: &str) -> Result<(), String> {
    let digits = size.trim_end_matches(['M', 'G', 'T', 'i']);
    let unit = &size[digits.len()..];
    if !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && ["Mi", "Gi", "Ti"].contains(&unit)
    {
        Ok(())
    } else {
        Err(format!("`{size}` is not a volume size such as `10Gi`"))
    }
}

/// The VIP on the cluster's bridge the edge sends TLS to, with every host
/// and port it sends; it needs at least one wildcard host, where apps live.
fn gateway(
    vips: &[model::Vip],
    bridge: &model::Bridge,
    edge: Option<&model::Edge>,
) -> Option<model::Gateway> {
    let edge = edge?;
    let on_bridge = |name: &str| {
        vips.iter()
            .find(|v| v.name == name && bridge.network.contains(&v.address))
    };
    let vip = edge
        .routes
        .iter()
        .find_map(|r| on_bridge(&r.backend.name))?;
    let https: Vec<(String, u16)> = edge
        .routes
        .iter()
        .filter(|r| r.backend.name == vip.name)
        .map(|r| {
            let host = match &r.host {
                model::SniHost::Exact(host) => host.clone(),
                model::SniHost::Wildcard { suffix } => format!("*{suffix}"),
            };
            (host, r.backend.port.0)
        })
        .collect();
    let apps_domain = https
        .iter()
        .find_map(|(host, _)| host.strip_prefix("*.").map(str::to_string))?;
    Some(model::Gateway {
        name: vip.name.clone(),
        address: vip.address,
        http_port: edge
            .http
            .as_ref()
            .filter(|h| h.name == vip.name)
            .map(|h| h.port.0),
        https,
        apps_domain,
    })
}

/// `ssh-ed25519 AAAA… comment` → `ssh-ed25519 AAAA…`: an OpenSSH public
/// key line, checked enough to be safe in `authorized_keys`.
fn public_key(line: &str) -> Result<String, String> {
    let mut parts = line.split_whitespace();
    let (Some(kind), Some(key)) = (parts.next(), parts.next()) else {
        return Err(format!(
            "`{line}` is not an SSH public key (`ssh-ed25519 AAAA… comment`)"
        ));
    };
    let known = [
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ssh-rsa",
    ];
    if !known.contains(&kind) {
        return Err(format!(
            "`{kind}` is not an SSH key type ({})",
            known.join(", ")
        ));
    }
    if !key.starts_with("AAAA")
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
    {
        return Err("the key is not base64 (`AAAA…`): paste the `.pub` file's line".into());
    }
    Ok(format!("{kind} {key}"))
}

/// The database's backup generation and the one it restores from: a
/// generation counts from 1, and a restore reads an earlier one (E0136).
fn archive(checker: &mut Checker, spicedb: &PlatformSpiceDb) -> Option<model::Archive> {
    let generation = spicedb.generation.as_ref().map_or(1, |g| g.value);
    if let Some(zero) = spicedb.generation.as_ref().filter(|g| g.value == 0) {
        checker
            .error(
                &rules::OUT_OF_RANGE,
                zero.span(),
                "platform.spicedb.generation",
                "`platform.spicedb.generation` is 0; generations count from 1",
            )
            .help = Some("give 1 for the database's first life, one more with each restore".into());
        return None;
    }
    let restore_from = spicedb.restore_from.as_ref();
    if let Some(restore) = restore_from.filter(|r| r.value == 0 || r.value >= generation) {
        let lost = restore.value.max(1);
        let help = if generation == 1 {
            format!(
                "generation 1 has no earlier backups; to rebuild from generation {lost}'s \
                 backups, set `generation = {}` and keep `restore_from = {lost}`",
                lost + 1
            )
        } else {
            let earlier = match generation - 1 {
                1 => "generation 1".to_owned(),
                last => format!("one of generations 1 to {last}"),
            };
            format!(
                "restore {earlier}, or raise `generation` to {} to restore generation {lost}",
                lost + 1
            )
        };
        checker
            .error(
                &rules::UNKNOWN_RESTORE_GENERATION,
                restore.span(),
                "platform.spicedb.restore_from",
                format!(
                    "`restore_from = {}` is not a generation before this one ({generation})",
                    restore.value
                ),
            )
            .help = Some(help);
        return None;
    }
    Some(model::Archive {
        generation,
        restore_from: restore_from.map(|r| r.value),
    })
}

/// The DNS provider: Cloudflare unless `[platform.dns]` says `rfc2136`,
/// which then needs its server and key (E0003); a key of the other
/// provider is refused rather than ignored (E0137).
fn dns(checker: &mut Checker, dns: &PlatformDns, platform: &Span) -> Option<model::DnsProvider> {
    let provider = dns.provider.as_ref().map(|p| p.value);
    if provider.unwrap_or(DnsProviderName::Cloudflare) == DnsProviderName::Cloudflare {
        let stray = [
            ("server", dns.server.as_ref().map(Located::span)),
            ("tsig_key", dns.tsig_key.as_ref().map(Located::span)),
            (
                "tsig_algorithm",
                dns.tsig_algorithm.as_ref().map(Located::span),
            ),
        ];
        let mut ok = true;
        for (key, span) in stray {
            if let Some(span) = span {
                ok = false;
                checker
                    .error(
                        &rules::DNS_SETTING_FOR_OTHER_PROVIDER,
                        span,
                        format!("platform.dns.{key}"),
                        format!(
                            "`platform.dns.{key}` configures RFC 2136 updates, but the provider \
                             is Cloudflare, which reads only its token"
                        ),
                    )
                    .help = Some(format!(
                    "remove `{key}`, or set `provider = \"rfc2136\"` in `[platform.dns]`"
                ));
            }
        }
        return ok.then_some(model::DnsProvider::Cloudflare);
    }
    let at = dns
        .provider
        .as_ref()
        .map_or_else(|| platform.clone(), Located::span);
    let mut missing = |key: &str, example: &str, what: &str| {
        checker
            .error(
                &rules::MISSING_KEY,
                at.clone(),
                format!("platform.dns.{key}"),
                format!("the RFC 2136 provider needs `platform.dns.{key}`"),
            )
            .help = Some(format!(
            "add `{key} = {example}` ({what}) to `[platform.dns]`"
        ));
    };
    if dns.server.is_none() {
        missing("server", "\"192.0.2.53:53\"", "your authoritative server");
    }
    if dns.tsig_key.is_none() {
        missing(
            "tsig_key",
            "\"externaldns\"",
            "the key's name on the server",
        );
    }
    if let Some(key) = &dns.tsig_key {
        checker.check_str(
            key,
            "platform.dns.tsig_key",
            &rules::INVALID_IDENTIFIER,
            |k| {
                let ok = !k.is_empty()
                    && k.len() <= 253
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c));
                if ok {
                    Ok(())
                } else {
                    Err(format!(
                        "`{k}` is not a TSIG key name (letters, digits, `.`, `-`, `_`)"
                    ))
                }
            },
        );
    }
    Some(model::DnsProvider::Rfc2136 {
        server: dns.server.as_ref()?.value,
        tsig_key: dns.tsig_key.as_ref()?.to_string(),
        algorithm: dns
            .tsig_algorithm
            .as_ref()
            .map_or(TsigAlgorithm::HmacSha256, |a| a.value),
    })
}
