//! GUIDs (UUIDs): the fixed identities of a disk, its partitions and its
//! filesystems.
//!
//! Images are reproducible only if every identity is given rather than drawn
//! at random, so callers pass GUIDs in and this type carries them to the GPT
//! writer (which stores them in the mixed-endian on-disk order) and to mke2fs
//! (which takes the text form).

use std::fmt;
use std::str::FromStr;

/// A GUID held in the byte order of its text form
/// (`c12a7328-f81f-11d2-ba4b-00a0c93ec93b`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Guid([u8; 16]);

/// Why a GUID string was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a GUID; write it as 8-4-4-4-12 hex digits, e.g. `5b1e2f3a-0000-4000-8000-000000000003`")]
pub struct ParseGuidError(String);

impl Guid {
    /// `0xc12a7328_f81f_11d2_ba4b_00a0c93ec93b` is the GUID written
    /// `c12a7328-f81f-11d2-ba4b-00a0c93ec93b`.
    pub const fn from_u128(value: u128) -> Self {
        Guid(value.to_be_bytes())
    }

    /// The 16 bytes as GPT stores them: the first three fields little-endian,
    /// the last two as written.
    pub fn to_gpt_bytes(self) -> [u8; 16] {
        let mut bytes = self.0;
        bytes[0..4].reverse();
        bytes[4..6].reverse();
        bytes[6..8].reverse();
        bytes
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, byte) in self.0.iter().enumerate() {
            if matches!(index, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for Guid {
    type Err = ParseGuidError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refuse = || ParseGuidError(text.to_string());
        let groups: Vec<&str> = text.split('-').collect();
        let lengths: Vec<usize> = groups.iter().map(|group| group.len()).collect();
        if lengths != [8, 4, 4, 4, 12] {
            return Err(refuse());
        }
        let digits = groups.concat();
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(&digits, &mut bytes).map_err(|_| refuse())?;
        Ok(Guid(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ESP: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";

    #[test]
    fn text_round_trips_and_matches_the_u128_form() {
        let parsed: Guid = ESP.parse().unwrap();
        assert_eq!(parsed.to_string(), ESP);
        assert_eq!(
            parsed,
            Guid::from_u128(0xc12a7328_f81f_11d2_ba4b_00a0c93ec93b)
        );
        assert_eq!(
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B".parse::<Guid>(),
            Ok(parsed)
        );
    }

    #[test]
    fn gpt_order_swaps_the_first_three_fields() {
        let guid: Guid = ESP.parse().unwrap();
        assert_eq!(
            hex::encode(guid.to_gpt_bytes()),
            "28732ac11ff8d211ba4b00a0c93ec93b"
        );
    }

    #[test]
    fn refuses_malformed_text() {
        for bad in [
            "",
            "c12a7328f81f11d2ba4b00a0c93ec93b",
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93",
            "g12a7328-f81f-11d2-ba4b-00a0c93ec93b",
            "c12a7328-f81f-11d2-ba4b00-a0c93ec93b",
        ] {
            assert!(bad.parse::<Guid>().is_err(), "{bad}");
        }
    }
}
