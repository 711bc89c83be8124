//! The machine-API messages as the stand-in apid decodes and encodes them,
//! written again from `api/machine/machine.proto` at siderolabs/talos tag
//! v1.12.11 (not shared with waddlec's client, so a wrong field number on
//! either side shows in the tests). Fields the stand-in never fills are left
//! out.

/// `common.Metadata` (without `google.rpc.Status status = 3`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metadata {
    #[prost(string, tag = "1")]
    pub hostname: String,
    #[prost(string, tag = "2")]
    pub error: String,
}

/// `google.protobuf.Empty`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<Version>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Version {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
    #[prost(message, optional, tag = "2")]
    pub version: Option<VersionInfo>,
    #[prost(message, optional, tag = "3")]
    pub platform: Option<PlatformInfo>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionInfo {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(string, tag = "2")]
    pub sha: String,
    #[prost(string, tag = "3")]
    pub built: String,
    #[prost(string, tag = "4")]
    pub go_version: String,
    #[prost(string, tag = "5")]
    pub os: String,
    #[prost(string, tag = "6")]
    pub arch: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PlatformInfo {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub mode: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ServiceListResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<ServiceList>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ServiceList {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
    #[prost(message, repeated, tag = "2")]
    pub services: Vec<ServiceInfo>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ServiceInfo {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub state: String,
    #[prost(message, optional, tag = "4")]
    pub health: Option<ServiceHealth>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ServiceHealth {
    #[prost(bool, tag = "1")]
    pub unknown: bool,
    #[prost(bool, tag = "2")]
    pub healthy: bool,
    #[prost(string, tag = "3")]
    pub last_message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EtcdMemberListRequest {
    #[prost(bool, tag = "1")]
    pub query_local: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EtcdMemberListResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<EtcdMembers>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EtcdMembers {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
    #[prost(string, repeated, tag = "2")]
    pub legacy_members: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    pub members: Vec<EtcdMember>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EtcdMember {
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

#[derive(Clone, PartialEq, prost::Message)]
pub struct EtcdStatusResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<EtcdStatus>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EtcdStatus {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
    #[prost(message, optional, tag = "2")]
    pub member_status: Option<EtcdMemberStatus>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EtcdMemberStatus {
    #[prost(string, tag = "1")]
    pub protocol_version: String,
    #[prost(int64, tag = "2")]
    pub db_size: i64,
    #[prost(int64, tag = "3")]
    pub db_size_in_use: i64,
    #[prost(uint64, tag = "4")]
    pub leader: u64,
    #[prost(uint64, tag = "5")]
    pub raft_index: u64,
    #[prost(uint64, tag = "6")]
    pub raft_term: u64,
    #[prost(uint64, tag = "7")]
    pub raft_applied_index: u64,
    #[prost(string, repeated, tag = "8")]
    pub errors: Vec<String>,
    #[prost(bool, tag = "9")]
    pub is_learner: bool,
    #[prost(uint64, tag = "10")]
    pub member_id: u64,
    #[prost(string, tag = "11")]
    pub storage_version: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EtcdLeaveClusterRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EtcdLeaveClusterResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<MetadataOnly>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EtcdRemoveMemberByIdRequest {
    #[prost(uint64, tag = "1")]
    pub member_id: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EtcdRemoveMemberByIdResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<MetadataOnly>,
}

/// `machine.EtcdLeaveCluster`, `machine.EtcdRemoveMemberByID`: metadata only.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetadataOnly {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
}

/// `machine.ApplyConfigurationRequest.Mode`: REBOOT 0, AUTO 1, NO_REBOOT 2,
/// STAGED 3, TRY 4.
pub mod mode {
    pub const REBOOT: i32 = 0;
    pub const AUTO: i32 = 1;
    pub const NO_REBOOT: i32 = 2;
    pub const STAGED: i32 = 3;
    pub const TRY: i32 = 4;

    /// The enum's name as Go's `Mode.String()` prints it.
    pub fn name(mode: i32) -> String {
        match mode {
            REBOOT => "REBOOT".into(),
            AUTO => "AUTO".into(),
            NO_REBOOT => "NO_REBOOT".into(),
            STAGED => "STAGED".into(),
            TRY => "TRY".into(),
            other => other.to_string(),
        }
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ApplyConfigurationRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub data: Vec<u8>,
    #[prost(int32, tag = "4")]
    pub mode: i32,
    #[prost(bool, tag = "5")]
    pub dry_run: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ApplyConfigurationResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<ApplyConfiguration>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ApplyConfiguration {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
    #[prost(string, repeated, tag = "2")]
    pub warnings: Vec<String>,
    #[prost(int32, tag = "3")]
    pub mode: i32,
    #[prost(string, tag = "4")]
    pub mode_details: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UpgradeRequest {
    #[prost(string, tag = "1")]
    pub image: String,
    #[prost(bool, tag = "2")]
    pub preserve: bool,
    #[prost(bool, tag = "3")]
    pub stage: bool,
    #[prost(bool, tag = "4")]
    pub force: bool,
    /// DEFAULT 0, POWERCYCLE 1.
    #[prost(int32, tag = "5")]
    pub reboot_mode: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UpgradeResponse {
    #[prost(message, repeated, tag = "1")]
    pub messages: Vec<Upgrade>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Upgrade {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<Metadata>,
    #[prost(string, tag = "2")]
    pub ack: String,
    #[prost(string, tag = "3")]
    pub actor_id: String,
}
