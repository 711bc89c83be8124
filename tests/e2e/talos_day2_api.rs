//! The day-2 calls of the Talos machine-API client (`TalosClient`) end to
//! end against a simulated cluster of stand-in apids sharing one simulated
//! etcd (`support::talos_cluster`): each call's happy path and the node's
//! refusals, etcd quorum, a dead member left by a replace without leave, and
//! nodes that reboot into a new config or version, slowly, or never.

use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;
use waddlec::net::talos_api::{
    ApplyMode, Probe, TalosApiError, TalosClient, TalosIdentity, UpgradeRequest,
};
use waddlec::secrets::talos::TalosCredentials;
use waddlec::secrets::{talos_admin, talos_bundle};

use crate::support::apid::{client_with_role, pem_text};
use crate::support::talos_cluster::{machine_config, TalosCluster, START_VERSION};

const IMAGE: &str = "factory.talos.dev/nocloud-installer/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba:v1.12.11";
const WAIT: Duration = Duration::from_secs(15);

fn new_credentials() -> TalosCredentials {
    let now = OffsetDateTime::now_utc();
    let bundle = talos_bundle::generate(now).unwrap();
    let admin = talos_admin::issue(&bundle, now).unwrap();
    TalosCredentials { bundle, admin }
}

/// A cluster of `cps` control planes and `workers` workers, and admin clients
/// of each node.
struct Lab {
    credentials: TalosCredentials,
    cluster: TalosCluster,
}

impl Lab {
    fn new(cps: usize, workers: usize) -> Lab {
        let credentials = new_credentials();
        let cluster = TalosCluster::start(&credentials.bundle, cps, workers);
        Lab {
            credentials,
            cluster,
        }
    }

    fn client(&self, i: usize) -> TalosClient {
        let identity = TalosIdentity::from_credentials(&self.credentials).unwrap();
        TalosClient::new(&self.cluster.endpoint(i), &identity).unwrap()
    }

    fn client_as(&self, i: usize, role: &str) -> TalosClient {
        let credentials = client_with_role(&self.credentials.bundle, role);
        let identity = TalosIdentity::from_credentials(&credentials).unwrap();
        TalosClient::new(&self.cluster.endpoint(i), &identity).unwrap()
    }
}

fn refused(err: &TalosApiError) -> (Code, String) {
    match err {
        TalosApiError::Refused { code, message, .. } => (*code, message.clone()),
        other => panic!("not a refusal: {other}"),
    }
}

#[test]
fn version_and_probe_follow_the_node_up_and_down() {
    let lab = Lab::new(3, 1);
    let client = lab.client(0);

    let version = client.version().unwrap();
    assert_eq!(version.tag, START_VERSION);
    assert_eq!(version.platform, "nocloud");
    assert!(matches!(client.probe().unwrap(), Probe::Up(_)));

    lab.cluster.power_off(0);
    assert!(lab.cluster.wait_for(0, false, WAIT));
    std::thread::sleep(Duration::from_millis(200));
    let Probe::Down(why) = client.probe().unwrap() else {
        panic!("a node powered off answers")
    };
    assert!(
        why.contains("refused") || why.contains("Connection"),
        "{why}"
    );
    let err = client.version().unwrap_err();
    assert!(matches!(err, TalosApiError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("Version"), "{err}");

    // Not back within the deadline: the error names the node and why.
    let start = Instant::now();
    let err = client.wait_until_up(Duration::from_secs(2)).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(matches!(err, TalosApiError::Deadline { .. }), "{err}");
    assert!(err.to_string().contains(&lab.cluster.name(0)), "{err}");

    // Back: waiting ends with the version it runs.
    lab.cluster.power_on(0);
    assert_eq!(client.wait_until_up(WAIT).unwrap().tag, START_VERSION);
}

#[test]
fn etcd_members_status_and_service_health() {
    let lab = Lab::new(3, 1);
    let cp1 = lab.client(0);

    let members = cp1.etcd_members().unwrap();
    let hostnames: Vec<&str> = members.iter().map(|m| m.hostname.as_str()).collect();
    assert_eq!(hostnames, ["cp1", "cp2", "cp3"]);
    let ids: Vec<u64> = lab.cluster.members().iter().map(|m| m.id).collect();
    assert_eq!(members.iter().map(|m| m.id).collect::<Vec<_>>(), ids);
    assert!(members.iter().all(|m| !m.is_learner));
    assert_eq!(members[0].peer_urls, ["https://10.10.0.10:2380"]);
    assert_eq!(members[1].client_urls, ["https://10.10.0.11:2379"]);
    assert_eq!(members[0].id_hex().len(), 16);

    let status = cp1.etcd_status().unwrap();
    assert_eq!(Some(status.member_id), lab.cluster.member_of(0));
    assert!(ids.contains(&status.leader), "{status:?}");
    assert!(status.errors.is_empty());
    let etcd = cp1.etcd_service().unwrap().unwrap();
    assert_eq!((etcd.state.as_str(), etcd.healthy), ("Running", Some(true)));

    // A worker has no etcd: etcd calls are Unimplemented, as on a real one.
    let worker = lab.client(3);
    let (code, message) = refused(&worker.etcd_members().unwrap_err());
    assert_eq!(code, Code::Unimplemented);
    assert_eq!(
        message,
        "member list is only available on control plane nodes"
    );
    assert!(worker.etcd_service().unwrap().is_none());
    assert_eq!(
        refused(&worker.etcd_status().unwrap_err()).0,
        Code::Unimplemented
    );

    // An unhealthy member: its node says so; the list still has it.
    lab.cluster.set_member_unhealthy(1, true);
    let cp2 = lab.client(1);
    let etcd = cp2.etcd_service().unwrap().unwrap();
    assert_eq!(etcd.healthy, Some(false), "{etcd:?}");
    let (code, message) = refused(&cp2.etcd_status().unwrap_err());
    assert_eq!(code, Code::Unknown);
    assert!(message.contains("failed to query etcd status"), "{message}");
    assert_eq!(cp1.etcd_members().unwrap().len(), 3);
    let sick: Vec<_> = lab
        .cluster
        .members()
        .into_iter()
        .filter(|m| !m.healthy)
        .collect();
    assert_eq!(sick.len(), 1);
    assert_eq!(sick[0].hostname, "cp2");

    // Two of three down: no leader, no member list.
    lab.cluster.power_off(2);
    let (code, message) = refused(&cp1.etcd_members().unwrap_err());
    assert_eq!(
        (code, message.as_str()),
        (Code::Unknown, "etcdserver: no leader")
    );
    assert!(!lab.cluster.has_quorum());
}

#[test]
fn leave_and_remove_never_go_below_quorum() {
    let lab = Lab::new(3, 0);
    let (cp1, cp2) = (lab.client(0), lab.client(1));

    // cp3 is down: cp2 leaving would leave one healthy voter of two.
    lab.cluster.power_off(2);
    let err = cp2.etcd_leave_cluster().unwrap_err();
    let (code, message) = refused(&err);
    assert_eq!(code, Code::Unknown);
    assert_eq!(
        message,
        "failed to leave cluster: etcdserver: unhealthy cluster"
    );
    assert!(err.to_string().contains("EtcdLeaveCluster"), "{err}");
    assert_eq!(lab.cluster.members().len(), 3);

    // Removing the down member is safe: it is not part of the active quorum.
    let dead = lab.cluster.member_of(2).unwrap();
    cp1.etcd_remove_member(dead).unwrap();
    let members = lab.cluster.members();
    assert_eq!(members.len(), 2);
    assert!(members.iter().all(|m| m.healthy && m.id != dead));
    // Again: gone.
    let (code, message) = refused(&cp1.etcd_remove_member(dead).unwrap_err());
    assert_eq!(
        (code, message.as_str()),
        (Code::NotFound, "etcdserver: member not found")
    );

    // From two healthy members one may leave; its etcd stops.
    cp2.etcd_leave_cluster().unwrap();
    let members = lab.cluster.members();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].hostname, "cp1");
    let etcd = cp2.etcd_service().unwrap().unwrap();
    assert_eq!((etcd.state.as_str(), etcd.healthy), ("Finished", None));
    assert!(lab.cluster.has_quorum());

    // The last member cannot be removed while it is the quorum.
    let last = lab.cluster.member_of(0).unwrap();
    let (code, message) = refused(&cp1.etcd_remove_member(last).unwrap_err());
    assert_eq!(code, Code::Unknown);
    assert!(
        message.ends_with("etcdserver: unhealthy cluster"),
        "{message}"
    );

    // A rebooted node that left joins again as a new member.
    lab.cluster.power_off(1);
    lab.cluster.power_on(1);
    let members = lab.cluster.members();
    assert_eq!(members.len(), 2);
    assert!(members.iter().all(|m| m.healthy));
}

#[test]
fn a_replace_without_leave_leaves_a_dead_member_that_blocks_upgrades() {
    let lab = Lab::new(3, 0);
    let cp1 = lab.client(0);
    let old = lab.cluster.member_of(2).unwrap();

    // A new VM under a new hostname: it joins, the old member stays, dead.
    lab.cluster.replace_without_leave(2, "cp3b");
    let members = cp1.etcd_members().unwrap();
    let hostnames: Vec<&str> = members.iter().map(|m| m.hostname.as_str()).collect();
    assert_eq!(hostnames, ["cp1", "cp2", "cp3", "cp3b"]);
    let health: Vec<(String, bool)> = lab
        .cluster
        .members()
        .into_iter()
        .map(|m| (m.hostname, m.healthy))
        .collect();
    assert_eq!(
        health,
        [
            ("cp1".into(), true),
            ("cp2".into(), true),
            ("cp3".into(), false),
            ("cp3b".into(), true)
        ]
    );

    // An upgrade of a control plane is refused while a member is dead.
    let upgrade = UpgradeRequest {
        image: IMAGE.into(),
        ..Default::default()
    };
    let (code, message) = refused(&cp1.upgrade(&upgrade).unwrap_err());
    assert_eq!(code, Code::Unknown);
    assert!(
        message.contains(&format!("etcd member {old:016x} is not healthy")),
        "{message}"
    );

    // Removed through another node (`node` header): healthy again.
    let through = lab.client(1).proxy_to(&lab.cluster.name(0));
    through.etcd_remove_member(old).unwrap();
    let calls = lab.cluster.calls();
    let last = calls.last().unwrap();
    assert_eq!(
        (last.entry, last.target, last.method.as_str()),
        (1, Some(0), "EtcdRemoveMemberByID")
    );
    assert_eq!(lab.cluster.members().len(), 3);
    assert!(lab.cluster.members().iter().all(|m| m.healthy));

    // With the old hostname, the replacement takes the member's place.
    let before = lab.cluster.member_of(1).unwrap();
    lab.cluster.replace_without_leave(1, "cp2");
    let members = lab.cluster.members();
    assert_eq!(members.len(), 3);
    assert!(
        members.iter().all(|m| m.healthy && m.id != before),
        "{members:?}"
    );
}

#[test]
fn apply_configuration_live_with_reboot_staged_and_dry_run() {
    let lab = Lab::new(3, 0);
    let cp1 = lab.client(0);
    let current = machine_config(true, "cp1");
    let kubelet = current.replace("kubelet:v1.35.0", "kubelet:v1.35.1");

    // Dry run: the diff, nothing changed.
    let dry = cp1
        .apply_configuration(kubelet.as_bytes(), ApplyMode::NoReboot, true)
        .unwrap();
    assert_eq!(dry.mode, ApplyMode::NoReboot);
    let diff = dry.diff.unwrap();
    assert!(
        diff.contains("-    image: ghcr.io/siderolabs/kubelet:v1.35.0"),
        "{diff}"
    );
    assert!(
        diff.contains("+    image: ghcr.io/siderolabs/kubelet:v1.35.1"),
        "{diff}"
    );
    assert!(
        dry.details.starts_with("Dry run summary:"),
        "{}",
        dry.details
    );
    assert_eq!(lab.cluster.config(0), current.as_bytes());
    let same = cp1
        .apply_configuration(current.as_bytes(), ApplyMode::Auto, true)
        .unwrap();
    assert_eq!(same.diff.as_deref(), Some(""));

    // Live: AUTO picks NO_REBOOT, the node runs the bytes sent.
    let applied = cp1
        .apply_configuration(kubelet.as_bytes(), ApplyMode::Auto, false)
        .unwrap();
    assert_eq!(applied.mode, ApplyMode::NoReboot);
    assert_eq!(applied.details, "Applied configuration without a reboot");
    assert_eq!(applied.diff, None);
    assert_eq!(lab.cluster.config(0), kubelet.as_bytes());
    assert!(lab.cluster.is_up(0));

    // A change outside the live paths: NO_REBOOT is refused with the reason.
    let env = kubelet.replace("machine:\n", "machine:\n  env:\n    GODEBUG: x\n");
    let (code, message) = refused(
        &cp1.apply_configuration(env.as_bytes(), ApplyMode::NoReboot, false)
            .unwrap_err(),
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(
        message.starts_with("this config change can't be applied in immediate mode"),
        "{message}"
    );
    assert!(message.contains("GODEBUG"), "{message}");

    // STAGED: kept for the next boot.
    let staged = cp1
        .apply_configuration(env.as_bytes(), ApplyMode::Staged, false)
        .unwrap();
    assert_eq!(staged.mode, ApplyMode::Staged);
    assert_eq!(lab.cluster.config(0), kubelet.as_bytes());
    assert_eq!(lab.cluster.staged_config(0).unwrap(), env.as_bytes());

    // AUTO with a reboot: the node goes away and comes back on the config.
    lab.cluster.set_reboot_time(0, Duration::from_secs(2));
    let rebooted = cp1
        .apply_configuration(env.as_bytes(), ApplyMode::Auto, false)
        .unwrap();
    assert_eq!(rebooted.mode, ApplyMode::Reboot);
    assert!(rebooted
        .details
        .starts_with("Applied configuration with a reboot"));
    // While it goes down, more configuration is refused.
    if let Err(err) = cp1.apply_configuration(env.as_bytes(), ApplyMode::Auto, false) {
        let (code, _) = match &err {
            TalosApiError::Refused { code, message, .. } => (*code, message.clone()),
            _ => (Code::Unavailable, String::new()),
        };
        assert!(
            matches!(code, Code::FailedPrecondition | Code::Unavailable),
            "{err}"
        );
    }
    assert!(lab.cluster.wait_for(0, false, WAIT));
    assert!(!lab.cluster.members().iter().all(|m| m.healthy));
    cp1.wait_until_up(WAIT).unwrap();
    assert_eq!(lab.cluster.config(0), env.as_bytes());
    assert!(lab.cluster.members().iter().all(|m| m.healthy));
}

#[test]
fn apply_configuration_refuses_configs_talos_would_not_take() {
    let lab = Lab::new(1, 0);
    let cp1 = lab.client(0);
    let cases: [(&str, &str); 3] = [
        ("machine: [unclosed", "failed to parse config"),
        (
            "version: v1alpha1\nmachine:\n  network: {}\n",
            "unknown machine type \"\"",
        ),
        (
            "apiVersion: v1alpha1\nkind: HostnameConfig\nhostname: x\n",
            "doesn't contain v1alpha1 config",
        ),
    ];
    for (config, expected) in cases {
        let err = cp1
            .apply_configuration(config.as_bytes(), ApplyMode::Auto, false)
            .unwrap_err();
        let (code, message) = refused(&err);
        assert_eq!(code, Code::InvalidArgument, "{config}: {message}");
        assert!(message.contains(expected), "{config}: {message}");
    }
    assert_eq!(
        lab.cluster.config(0),
        machine_config(true, "cp1").as_bytes()
    );
}

#[test]
fn upgrade_reboots_into_the_new_version_and_checks_etcd_first() {
    let lab = Lab::new(3, 0);
    let cp1 = lab.client(0);
    let upgrade = UpgradeRequest {
        image: IMAGE.into(),
        ..Default::default()
    };

    // An image the registry does not have: refused at once, no reboot.
    let missing = UpgradeRequest {
        image: IMAGE.replace("v1.12.11", "v1.12.99"),
        ..Default::default()
    };
    lab.cluster.missing_image(&missing.image);
    let (code, message) = refused(&cp1.upgrade(&missing).unwrap_err());
    assert_eq!(code, Code::Unknown);
    assert!(
        message.starts_with("error validating installer image"),
        "{message}"
    );
    assert!(lab.cluster.is_up(0));

    // A member unhealthy: refused; `force` skips the check (then staged).
    lab.cluster.set_member_unhealthy(1, true);
    let (_, message) = refused(&cp1.upgrade(&upgrade).unwrap_err());
    assert!(message.contains("all members must be healthy"), "{message}");
    let forced = UpgradeRequest {
        force: true,
        stage: true,
        ..upgrade.clone()
    };
    assert_eq!(
        cp1.upgrade(&forced).unwrap().ack,
        "Upgrade request received"
    );
    assert_eq!(lab.cluster.version(0), START_VERSION);
    lab.cluster.set_member_unhealthy(1, false);

    // The upgrade: down, back on the image's version, member healthy again.
    let ack = cp1.upgrade(&upgrade).unwrap();
    assert_eq!(ack.ack, "Upgrade request received");
    assert!(!ack.actor_id.is_empty());
    assert!(lab.cluster.wait_for(0, false, WAIT));
    assert!(matches!(cp1.probe().unwrap(), Probe::Down(_)));
    let back = cp1.wait_until_version("v1.12.11", WAIT).unwrap();
    assert_eq!(back.tag, "v1.12.11");
    assert!(lab.cluster.members().iter().all(|m| m.healthy));

    // A node that never comes back: the wait ends naming it; its member
    // stays, unhealthy, so the next control plane's upgrade is refused.
    lab.cluster.never_return(1);
    let cp2 = lab.client(1);
    cp2.upgrade(&upgrade).unwrap();
    let err = cp2
        .wait_until_version("v1.12.11", Duration::from_secs(3))
        .unwrap_err();
    assert!(matches!(err, TalosApiError::Deadline { .. }), "{err}");
    assert!(err.to_string().contains(&lab.cluster.name(1)), "{err}");
    assert!(!lab.cluster.is_up(1));
    assert!(lab.cluster.has_quorum());
    let sick: Vec<_> = lab
        .cluster
        .members()
        .into_iter()
        .filter(|m| !m.healthy)
        .collect();
    assert_eq!(sick.len(), 1);
    assert_eq!(sick[0].hostname, "cp2");
    let (_, message) = refused(&lab.client(2).upgrade(&upgrade).unwrap_err());
    assert!(message.contains("is not healthy"), "{message}");
}

#[test]
fn upgrade_of_two_members_is_refused_and_a_worker_skips_etcd() {
    let lab = Lab::new(2, 1);
    let upgrade = UpgradeRequest {
        image: IMAGE.into(),
        ..Default::default()
    };
    let (_, message) = refused(&lab.client(0).upgrade(&upgrade).unwrap_err());
    assert!(
        message.contains("etcd member count(2) is insufficient"),
        "{message}"
    );
    // A tag that is no version is no installer image.
    let bad = UpgradeRequest {
        image: "ghcr.io/siderolabs/installer:latest".into(),
        ..Default::default()
    };
    let (code, _) = refused(&lab.client(2).upgrade(&bad).unwrap_err());
    assert_eq!(code, Code::Unknown);

    lab.cluster.set_reboot_time(2, Duration::from_millis(300));
    let worker = lab.client(2);
    worker.upgrade(&upgrade).unwrap();
    // Answered before the reboot: still the old version for a moment.
    let err = worker
        .wait_until_version("v1.12.11", Duration::ZERO)
        .unwrap_err();
    assert!(err.to_string().contains("running Talos v1.12.0"), "{err}");
    assert_eq!(
        worker.wait_until_version("v1.12.11", WAIT).unwrap().tag,
        "v1.12.11"
    );
}

#[test]
fn roles_and_the_node_header_are_enforced_as_apid_does() {
    let lab = Lab::new(3, 0);

    // A reader sees, never changes.
    let reader = lab.client_as(0, "os:reader");
    assert_eq!(reader.version().unwrap().tag, START_VERSION);
    assert_eq!(reader.etcd_members().unwrap().len(), 3);
    for err in [
        reader.etcd_leave_cluster().unwrap_err(),
        reader.etcd_remove_member(1).unwrap_err(),
        reader
            .apply_configuration(b"x", ApplyMode::Auto, true)
            .unwrap_err(),
        reader
            .upgrade(&UpgradeRequest {
                image: IMAGE.into(),
                ..Default::default()
            })
            .unwrap_err(),
    ] {
        let (code, message) = refused(&err);
        assert_eq!(
            (code, message.as_str()),
            (Code::PermissionDenied, "not authorized")
        );
    }
    assert_eq!(lab.cluster.members().len(), 3);
    let calls = lab.cluster.calls();
    assert!(calls.iter().all(|c| c.roles == ["os:reader"]), "{calls:?}");
    // etcd:backup may list members, not read versions.
    let backup = lab.client_as(0, "os:etcd:backup");
    assert_eq!(backup.etcd_members().unwrap().len(), 3);
    assert_eq!(
        refused(&backup.version().unwrap_err()).0,
        Code::PermissionDenied
    );

    // Another cluster's admin: refused before any call. With TLS 1.3 the
    // refusal comes after the handshake, and the connection may be reset
    // before its alert is read: either way the error points at the
    // certificate.
    let stranger = new_credentials();
    let foreign = TalosIdentity::from_credentials(&TalosCredentials {
        bundle: lab.credentials.bundle.clone(),
        admin: stranger.admin,
    })
    .unwrap();
    let err = TalosClient::new(&lab.cluster.endpoint(0), &foreign)
        .unwrap()
        .version()
        .unwrap_err();
    match &err {
        TalosApiError::Tls { .. } => assert!(err.to_string().contains("OS CA"), "{err}"),
        TalosApiError::Unreachable { problem, .. } => {
            assert!(problem.contains("refuses our client certificate"), "{err}")
        }
        other => panic!("{other}"),
    }
    assert!(lab.cluster.calls().iter().all(|c| c.roles != ["os:admin"]));

    // Through cp1 to cp3, by address or hostname; to a down or unknown node
    // the forwarding apid answers Unavailable.
    let via = lab.client(0).proxy_to(&lab.cluster.name(2));
    assert_eq!(via.version().unwrap().tag, START_VERSION);
    assert_eq!(via.node(), lab.cluster.name(2));
    let by_hostname = lab.client(0).proxy_to(&lab.cluster.hostname(2));
    assert_eq!(
        by_hostname.etcd_status().unwrap().member_id,
        lab.cluster.member_of(2).unwrap()
    );
    lab.cluster.power_off(2);
    assert!(matches!(via.probe().unwrap(), Probe::Down(_)));
    let (code, message) = refused(&via.version().unwrap_err());
    assert_eq!(code, Code::Unavailable);
    assert!(message.contains("connection refused"), "{message}");
    let nowhere = lab.client(0).proxy_to("10.10.0.99");
    assert_eq!(
        refused(&nowhere.version().unwrap_err()).0,
        Code::Unavailable
    );
}

#[test]
fn unknown_methods_and_services_are_unimplemented() {
    let lab = Lab::new(1, 0);
    let credentials = &lab.credentials;
    let endpoint = lab.cluster.endpoint(0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = pem::parse(pem_text(&credentials.admin.key)).unwrap();
    let key = pem::encode(&pem::Pem::new("PRIVATE KEY", key.into_contents()));
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem_text(
            &credentials.bundle.certs.os.crt,
        )))
        .identity(Identity::from_pem(pem_text(&credentials.admin.crt), key))
        .domain_name(endpoint.server_name.clone());
    let status = |path: &'static str| {
        runtime.block_on(async {
            let channel = Endpoint::from_shared(format!("https://{}", endpoint.connect))
                .unwrap()
                .tls_config(tls.clone())
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.unwrap();
            grpc.unary(
                tonic::Request::new(()),
                PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::<(), ()>::default(),
            )
            .await
            .unwrap_err()
        })
    };
    let reboot = status("/machine.MachineService/Reboot");
    assert_eq!(reboot.code(), Code::Unimplemented);
    assert_eq!(
        reboot.message(),
        "unknown method Reboot for service machine.MachineService"
    );
    let other = status("/storage.StorageService/Disks");
    assert_eq!(other.message(), "unknown service storage.StorageService");
}
