//! The Talos machine-API messages waddlec sends and reads, written by hand
//! with the field numbers of `api/machine/machine.proto` and
//! `api/common/common.proto` at siderolabs/talos tag v1.12.11 (commit
//! 2e80771b). Fields waddlec never reads are left out: prost skips unknown
//! fields when decoding, and an absent field encodes as its default.
//! Generating them would need `protoc` at build time.

/// The service's gRPC paths (`service MachineService`, machine.proto v1.12.11).
pub(crate) mod path {
    pub const BOOTSTRAP: &str = "/machine.MachineService/Bootstrap";
    pub const VERSION: &str = "/machine.MachineService/Version";
    pub const SERVICE_LIST: &str = "/machine.MachineService/ServiceList";
    pub const ETCD_MEMBER_LIST: &str = "/machine.MachineService/EtcdMemberList";
    pub const ETCD_STATUS: &str = "/machine.MachineService/EtcdStatus";
    pub const ETCD_LEAVE_CLUSTER: &str = "/machine.MachineService/EtcdLeaveCluster";
    pub const ETCD_REMOVE_MEMBER_BY_ID: &str = "/machine.MachineService/EtcdRemoveMemberByID";
    pub const APPLY_CONFIGURATION: &str = "/machine.MachineService/ApplyConfiguration";
    pub const UPGRADE: &str = "/machine.MachineService/Upgrade";
}

/// `common.Metadata`, without its `google.rpc.Status status = 3`, which
/// repeats `error` and is skipped when decoding.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Metadata {
    /// The node the reply comes from (set by apid when it proxies).
    #[prost(string, tag = "1")]
    pub hostname: String,
    /// The upstream call failed (the rest of the reply is undefined).
    #[prost(string, tag = "2")]
    pub error: String,
}

/// Every reply message of the machine API carries `common.Metadata metadata = 1`.
pub(crate) trait Reply {
    fn metadata(&self) -> Option<&Metadata>;
}

macro_rules! reply {
    ($($message:ident),*) => {$(
        impl Reply for $message {
            fn metadata(&self) -> Option<&Metadata> {
                self.metadata.as_ref()
            }
        }
    )*};
}
reply!(
    Bootstrap,
    Version,
    ServiceList,
    EtcdMembers,
    EtcdStatus,
    EtcdLeaveCluster,
    EtcdRemoveMemberById,
    ApplyConfiguration,
    Upgrade
);

/// `google.protobuf.Empty`, the request of `Version`, `ServiceList`, `EtcdStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Empty {}

/// `machine.BootstrapRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct BootstrapRequest {
    /// Recover etcd from a snapshot uploaded with `EtcdRecover`.
    #[prost(bool, tag = "1")]
    pub recover_etcd: bool,
    /// Skip the snapshot's hash check (a copied data directory).
    #[prost(bool, tag = "2")]
    pub recover_skip_hash_check: bool,
}

/// `machine.BootstrapResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct BootstrapResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<Bootstrap>,
}

/// `machine.Bootstrap`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Bootstrap {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
}

/// `machine.VersionResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct VersionResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<Version>,
}

/// `machine.Version` (without `FeaturesInfo features = 4`).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Version {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
    #[prost(message, optional, tag = "2")]
    pub version: Option<VersionInfo>,
    #[prost(message, optional, tag = "3")]
    pub platform: Option<PlatformInfo>,
}

/// `machine.VersionInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct VersionInfo {
    /// The Talos version, e.g. `v1.12.11`.
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(string, tag = "2")]
    pub sha: String,
    #[prost(string, tag = "5")]
    pub os: String,
    #[prost(string, tag = "6")]
    pub arch: String,
}

/// `machine.PlatformInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PlatformInfo {
    /// e.g. `nocloud`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// e.g. `cloud`.
    #[prost(string, tag = "2")]
    pub mode: String,
}

/// `machine.ServiceListResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ServiceListResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<ServiceList>,
}

/// `machine.ServiceList`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ServiceList {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
    #[prost(message, repeated, tag = "2")]
    pub services: Vec<ServiceInfo>,
}

/// `machine.ServiceInfo` (without `ServiceEvents events = 3`).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ServiceInfo {
    #[prost(string, tag = "1")]
    pub id: String,
    /// e.g. `Running`, `Finished`, `Waiting`.
    #[prost(string, tag = "2")]
    pub state: String,
    #[prost(message, optional, tag = "4")]
    pub health: Option<ServiceHealth>,
}

/// `machine.ServiceHealth` (without `google.protobuf.Timestamp last_change = 4`).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ServiceHealth {
    #[prost(bool, tag = "1")]
    pub unknown: bool,
    #[prost(bool, tag = "2")]
    pub healthy: bool,
    #[prost(string, tag = "3")]
    pub last_message: String,
}

/// `machine.EtcdMemberListRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EtcdMemberListRequest {
    /// Ask the local etcd only, not the cluster through the control planes.
    #[prost(bool, tag = "1")]
    pub query_local: bool,
}

/// `machine.EtcdMemberListResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EtcdMemberListResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<EtcdMembers>,
}

/// `machine.EtcdMembers` (without the deprecated `repeated string legacy_members = 2`).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EtcdMembers {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
    #[prost(message, repeated, tag = "3")]
    pub members: Vec<EtcdMember>,
}

/// `machine.EtcdMember`: field numbers start at 2.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EtcdMember {
    #[prost(uint64, tag = "2")]
    pub id: u64,
    #[prost(string, tag = "3")]
    pub hostname: String,
    #[prost(string, repeated, tag = "4")]
    pub peer_urls: Vec<String>,
    #[prost(string, repeated, tag = "5")]
    pub client_urls: Vec<String>,
    #[prost(bool, tag = "6")]
    pub is_learner: bool,
}

/// `machine.EtcdStatusResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EtcdStatusResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<EtcdStatus>,
}

/// `machine.EtcdStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EtcdStatus {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
    #[prost(message, optional, tag = "2")]
    pub member_status: Option<EtcdMemberStatus>,
}

/// `machine.EtcdMemberStatus` (without the db sizes and raft indexes, 2, 3, 5, 7).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EtcdMemberStatus {
    #[prost(string, tag = "1")]
    pub protocol_version: String,
    /// The leader's member ID; 0 without a leader.
    #[prost(uint64, tag = "4")]
    pub leader: u64,
    #[prost(uint64, tag = "6")]
    pub raft_term: u64,
    #[prost(string, repeated, tag = "8")]
    pub errors: Vec<String>,
    #[prost(bool, tag = "9")]
    pub is_learner: bool,
    #[prost(uint64, tag = "10")]
    pub member_id: u64,
    #[prost(string, tag = "11")]
    pub storage_version: String,
}

/// `machine.EtcdLeaveClusterRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EtcdLeaveClusterRequest {}

/// `machine.EtcdLeaveClusterResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EtcdLeaveClusterResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<EtcdLeaveCluster>,
}

/// `machine.EtcdLeaveCluster`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EtcdLeaveCluster {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
}

/// `machine.EtcdRemoveMemberByIDRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EtcdRemoveMemberByIdRequest {
    #[prost(uint64, tag = "1")]
    pub member_id: u64,
}

/// `machine.EtcdRemoveMemberByIDResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EtcdRemoveMemberByIdResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<EtcdRemoveMemberById>,
}

/// `machine.EtcdRemoveMemberByID`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EtcdRemoveMemberById {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
}

/// `machine.ApplyConfigurationRequest.Mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub(crate) enum ApplyMode {
    Reboot = 0,
    Auto = 1,
    NoReboot = 2,
    Staged = 3,
    Try = 4,
}

/// `machine.ApplyConfigurationRequest`: fields 2 and 3 are unused.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ApplyConfigurationRequest {
    /// The whole machine config, multi-document YAML.
    #[prost(bytes = "vec", tag = "1")]
    pub data: Vec<u8>,
    #[prost(enumeration = "ApplyMode", tag = "4")]
    pub mode: i32,
    #[prost(bool, tag = "5")]
    pub dry_run: bool,
    /// `google.protobuf.Duration try_mode_timeout = 6`.
    #[prost(message, optional, tag = "6")]
    pub try_mode_timeout: Option<Duration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Duration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `machine.ApplyConfigurationResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ApplyConfigurationResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<ApplyConfiguration>,
}

/// `machine.ApplyConfiguration`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ApplyConfiguration {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
    /// Configuration validation warnings.
    #[prost(string, repeated, tag = "2")]
    pub warnings: Vec<String>,
    /// The mode used (AUTO resolves to REBOOT or NO_REBOOT).
    #[prost(enumeration = "ApplyMode", tag = "3")]
    pub mode: i32,
    /// What happened; on a dry run, the summary and the config diff.
    #[prost(string, tag = "4")]
    pub mode_details: String,
}

/// `machine.UpgradeRequest.RebootMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub(crate) enum RebootMode {
    Default = 0,
    Powercycle = 1,
}

/// `machine.UpgradeRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct UpgradeRequest {
    /// The installer image reference.
    #[prost(string, tag = "1")]
    pub image: String,
    /// Keep the node's ephemeral data (skips the etcd pre-check).
    #[prost(bool, tag = "2")]
    pub preserve: bool,
    /// Stage the upgrade for the next reboot instead of rebooting now.
    #[prost(bool, tag = "3")]
    pub stage: bool,
    /// Skip the etcd health pre-check.
    #[prost(bool, tag = "4")]
    pub force: bool,
    #[prost(enumeration = "RebootMode", tag = "5")]
    pub reboot_mode: i32,
}

/// `machine.UpgradeResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct UpgradeResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<Upgrade>,
}

/// `machine.Upgrade`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Upgrade {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
    #[prost(string, tag = "2")]
    pub ack: String,
    #[prost(string, tag = "3")]
    pub actor_id: String,
}
