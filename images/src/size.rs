//! Byte sizes of disks and memory, in the binary units Proxmox uses.
//!
//! `8G` means 8 GiB, as in `qm resize 100 scsi0 8G`. A bare number is refused:
//! "2048" is MiB to `qm --memory` but bytes to `qm resize`, and that ambiguity
//! is exactly the kind of mistake a blueprint must not be able to make.

use std::fmt;
use std::str::FromStr;

const KIB: u64 = 1024;
const MIB: u64 = KIB * 1024;
const GIB: u64 = MIB * 1024;
const TIB: u64 = GIB * 1024;

/// A size in bytes, written in a blueprint as `<number><unit>` (`512M`, `8G`, `1T`;
/// `MiB`/`GiB`/`TiB` spellings are accepted too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(u64);

/// Why a size string was refused; the message says how to write it instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseSizeError {
    #[error("size is empty; write a number and a unit, e.g. `8G`")]
    Empty,
    #[error("`{0}` has no unit; write it with K, M, G or T (binary units), e.g. `{0}M` or `{0}G`")]
    MissingUnit(String),
    #[error("`{input}` has an unknown unit `{unit}`; use K, M, G or T (KiB, MiB, GiB, TiB)")]
    UnknownUnit { input: String, unit: String },
    #[error("`{0}` does not start with a whole number; write e.g. `8G`")]
    NotANumber(String),
    #[error("`{0}` is zero; a size must be positive")]
    Zero(String),
    #[error("`{0}` is too large")]
    TooLarge(String),
}

impl ByteSize {
    pub const fn from_bytes(bytes: u64) -> Self {
        ByteSize(bytes)
    }

    pub const fn from_mib(mib: u64) -> Self {
        ByteSize(mib * MIB)
    }

    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// Whole mebibytes, if the size is a multiple of 1 MiB.
    pub fn whole_mib(self) -> Option<u64> {
        self.0.is_multiple_of(MIB).then_some(self.0 / MIB)
    }
}

/// The shortest exact Proxmox spelling: `8G` rather than `8192M`.
impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, factor) in [("T", TIB), ("G", GIB), ("M", MIB), ("K", KIB)] {
            if self.0 >= factor && self.0.is_multiple_of(factor) {
                return write!(f, "{}{unit}", self.0 / factor);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl FromStr for ByteSize {
    type Err = ParseSizeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(ParseSizeError::Empty);
        }
        let digits_end = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(digits_end);
        if number.is_empty() {
            return Err(ParseSizeError::NotANumber(input.to_string()));
        }
        let unit = unit.trim();
        if unit.is_empty() {
            return Err(ParseSizeError::MissingUnit(number.to_string()));
        }
        let factor = match unit {
            "K" | "KiB" => KIB,
            "M" | "MiB" => MIB,
            "G" | "GiB" => GIB,
            "T" | "TiB" => TIB,
            other => {
                return Err(ParseSizeError::UnknownUnit {
                    input: input.to_string(),
                    unit: other.to_string(),
                })
            }
        };
        let count: u64 = number
            .parse()
            .map_err(|_| ParseSizeError::TooLarge(input.to_string()))?;
        if count == 0 {
            return Err(ParseSizeError::Zero(input.to_string()));
        }
        count
            .checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| ParseSizeError::TooLarge(input.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_units() {
        assert_eq!("8G".parse::<ByteSize>().unwrap().bytes(), 8 * GIB);
        assert_eq!("2048M".parse::<ByteSize>().unwrap().bytes(), 2 * GIB);
        assert_eq!("20 GiB".parse::<ByteSize>().unwrap().bytes(), 20 * GIB);
        assert_eq!("1T".parse::<ByteSize>().unwrap().bytes(), TIB);
    }

    #[test]
    fn refuses_ambiguous_or_broken_sizes() {
        assert_eq!(
            "2048".parse::<ByteSize>(),
            Err(ParseSizeError::MissingUnit("2048".into()))
        );
        assert!(matches!(
            "8GB".parse::<ByteSize>(),
            Err(ParseSizeError::UnknownUnit { .. })
        ));
        assert!(matches!(
            "G".parse::<ByteSize>(),
            Err(ParseSizeError::NotANumber(_))
        ));
        assert!(matches!(
            "0G".parse::<ByteSize>(),
            Err(ParseSizeError::Zero(_))
        ));
        assert!(matches!(
            "99999999999999999999G".parse::<ByteSize>(),
            Err(ParseSizeError::TooLarge(_))
        ));
        assert!(matches!(
            "18446744073709551615T".parse::<ByteSize>(),
            Err(ParseSizeError::TooLarge(_))
        ));
    }

    #[test]
    fn displays_shortest_exact_unit() {
        assert_eq!(ByteSize::from_mib(8192).to_string(), "8G");
        assert_eq!(ByteSize::from_mib(1536).to_string(), "1536M");
        assert_eq!(ByteSize::from_mib(2048).whole_mib(), Some(2048));
        assert_eq!(ByteSize::from_bytes(1000).whole_mib(), None);
    }
}
