//! Scalar value types of the blueprint language. Each parses (and refuses) its
//! own spelling while the TOML is read, so a bad value is reported at its own
//! span with a message that says how to write it.

use std::borrow::Cow;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer};
use serde::Deserialize;
use waddle_images::ByteSize;

/// Marks a deserialisation error whose source line may hold a secret: the
/// diagnostic for it is shown without the offending source text.
pub const SECRET_ERROR_MARKER: &str = "[literal-secret] ";

/// A TCP/UDP port, 1–65535.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port(pub u16);

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = i64::deserialize(deserializer)?;
        match u16::try_from(raw) {
            Ok(port) if port > 0 => Ok(Port(port)),
            _ => Err(de::Error::custom(format!(
                "port {raw} is out of range; a port is a whole number from 1 to 65535"
            ))),
        }
    }
}

impl JsonSchema for Port {
    fn schema_name() -> Cow<'static, str> {
        "Port".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "integer", "minimum": 1, "maximum": 65535 })
    }
}

/// A disk or memory size such as `8G` (binary units, as Proxmox reads them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub ByteSize);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse::<ByteSize>()
            .map(Size)
            .map_err(|err| de::Error::custom(format!("invalid size: {err}")))
    }
}

impl JsonSchema for Size {
    fn schema_name() -> Cow<'static, str> {
        "Size".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[1-9][0-9]*\\s*(K|M|G|T|KiB|MiB|GiB|TiB)$",
            "description": "A size in binary units, e.g. `2G` or `512M`."
        })
    }
}

/// Where a secret lives. Blueprints name secrets, they never contain them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRef {
    /// `op://vault/item/field` (1Password).
    OnePassword {
        vault: String,
        item: String,
        field: String,
    },
    /// `env:NAME`
    Env(String),
    /// `file:PATH`
    File(String),
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::OnePassword { vault, item, field } => {
                write!(f, "op://{vault}/{item}/{field}")
            }
            SecretRef::Env(name) => write!(f, "env:{name}"),
            SecretRef::File(path) => write!(f, "file:{path}"),
        }
    }
}

impl SecretRef {
    fn parse(raw: &str) -> Result<Self, String> {
        if let Some(rest) = raw.strip_prefix("op://") {
            let parts: Vec<&str> = rest.split('/').collect();
            if parts.len() == 3 && parts.iter().all(|p| !p.trim().is_empty()) {
                return Ok(SecretRef::OnePassword {
                    vault: parts[0].to_string(),
                    item: parts[1].to_string(),
                    field: parts[2].to_string(),
                });
            }
            return Err(
                "a 1Password reference has three parts: `op://VAULT/ITEM/FIELD`".to_string(),
            );
        }
        if let Some(name) = raw.strip_prefix("env:") {
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if valid {
                return Ok(SecretRef::Env(name.to_string()));
            }
            return Err(
                "an environment reference is `env:NAME`, NAME made of letters, digits and `_`"
                    .to_string(),
            );
        }
        if let Some(path) = raw.strip_prefix("file:") {
            if !path.is_empty() {
                return Ok(SecretRef::File(path.to_string()));
            }
            return Err("a file reference is `file:PATH`".to_string());
        }
        Err(format!(
            "{SECRET_ERROR_MARKER}this is not a secret reference, and a literal secret must never be \
             written in a blueprint (it would end up in git); store the value in 1Password, a file \
             or the environment and write `op://VAULT/ITEM/FIELD`, `file:PATH` or `env:NAME`"
        ))
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        SecretRef::parse(&raw).map_err(de::Error::custom)
    }
}

impl JsonSchema for SecretRef {
    fn schema_name() -> Cow<'static, str> {
        "SecretRef".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^(op://[^/]+/[^/]+/[^/]+|env:WADDLE_[A-Z0-9_]+|file:[^/~].*)$",
            "description": "Where a secret lives: `op://VAULT/ITEM/FIELD`, `env:WADDLE_NAME` or `file:PATH`. Never the secret itself. A `file:` path is relative to the blueprint and stays beside it or in a `secrets/` directory above it (`file:../secrets/NAME`); an `env:` name starts with `WADDLE_` (E0130)."
        })
    }
}

/// Where the Talos secrets bundle is kept (`talos.secrets`): a store waddlec
/// writes (`secrets init`) as well as reads, so a reference it can only
/// read (`env:`) is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BundleRef {
    /// `file:PATH`: a plain 0600 file, kept out of git.
    File(String),
    /// `op://VAULT/ITEM/FILE`: a 1Password Document item and its file name.
    OnePassword {
        vault: String,
        item: String,
        file: String,
    },
    /// `age:PATH`: a file encrypted with age to `[talos.age]`'s
    /// recipients, which may be committed.
    Age(String),
}

impl fmt::Display for BundleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleRef::File(path) => write!(f, "file:{path}"),
            BundleRef::OnePassword { vault, item, file } => {
                write!(f, "op://{vault}/{item}/{file}")
            }
            BundleRef::Age(path) => write!(f, "age:{path}"),
        }
    }
}

impl BundleRef {
    fn parse(raw: &str) -> Result<Self, String> {
        if let Some(path) = raw.strip_prefix("age:") {
            if path.is_empty() {
                return Err("an age-encrypted bundle's reference is `age:PATH`".to_string());
            }
            return Ok(BundleRef::Age(path.to_string()));
        }
        match SecretRef::parse(raw)? {
            SecretRef::File(path) => Ok(BundleRef::File(path)),
            SecretRef::OnePassword { vault, item, field } => Ok(BundleRef::OnePassword {
                vault,
                item,
                file: field,
            }),
            SecretRef::Env(_) => Err(
                "an `env:` reference can only be read, and the Talos bundle is kept where \
                 `waddlec secrets init` can write it: `file:PATH`, `age:PATH` (encrypted to \
                 `[talos.age]` recipients, fit for git) or `op://VAULT/ITEM/FILE` (a 1Password \
                 document)"
                    .to_string(),
            ),
        }
    }
}

impl<'de> Deserialize<'de> for BundleRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        BundleRef::parse(&raw).map_err(de::Error::custom)
    }
}

impl JsonSchema for BundleRef {
    fn schema_name() -> Cow<'static, str> {
        "BundleRef".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^(op://[^/]+/[^/]+/[^/]+|file:[^/~].*|age:[^/~].*)$",
            "description": "Where the Talos secrets bundle is kept: `file:PATH` (a 0600 file, never committed), `age:PATH` (encrypted to `[talos.age]` recipients, may be committed) or `op://VAULT/ITEM/FILE` (a 1Password Document item). The talosctl admin identity and the Debian VMs' SSH host keys are kept beside it, in the same store. Paths are relative to the blueprint and stay beside it or in a `secrets/` directory above it (E0130)."
        })
    }
}

/// `NAME:PORT`: a port on a VM or VIP of the blueprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetRef {
    pub name: String,
    pub port: Port,
}

impl fmt::Display for TargetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.port)
    }
}

impl<'de> Deserialize<'de> for TargetRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        let Some((name, port)) = raw.rsplit_once(':') else {
            return Err(de::Error::custom(format!(
                "target `{raw}` has no port; write `NAME:PORT` with the name of a VM or VIP, e.g. `{raw}:443`"
            )));
        };
        if name.is_empty() {
            return Err(de::Error::custom(format!(
                "target `{raw}` has no name; write `NAME:PORT` with the name of a VM or VIP"
            )));
        }
        let port = match port.parse::<u32>() {
            Ok(p) if (1..=65535).contains(&p) => Port(p as u16),
            Ok(p) => {
                return Err(de::Error::custom(format!(
                    "port {p} in target `{raw}` is out of range; a port is a whole number from 1 to 65535"
                )))
            }
            Err(_) => {
                return Err(de::Error::custom(format!(
                    "`{port}` in target `{raw}` is not a port number; write `NAME:PORT`"
                )))
            }
        };
        Ok(TargetRef {
            name: name.to_string(),
            port,
        })
    }
}

impl JsonSchema for TargetRef {
    fn schema_name() -> Cow<'static, str> {
        "TargetRef".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[A-Za-z0-9-]+:[0-9]{1,5}$",
            "description": "`NAME:PORT`, NAME being a VM or VIP of this blueprint."
        })
    }
}

/// A calendar date (`2026-12-31`), used for the lifetime of temporary rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let datetime = toml::value::Datetime::deserialize(deserializer).map_err(|_| {
            de::Error::custom("expected a TOML date such as `2026-12-31` (written without quotes)")
        })?;
        match (datetime.date, datetime.time) {
            (Some(date), None) => Ok(Date {
                year: date.year,
                month: date.month,
                day: date.day,
            }),
            _ => Err(de::Error::custom(
                "expected a plain date such as `2026-12-31`, without a time of day",
            )),
        }
    }
}

impl JsonSchema for Date {
    fn schema_name() -> Cow<'static, str> {
        "Date".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "format": "date" })
    }
}
