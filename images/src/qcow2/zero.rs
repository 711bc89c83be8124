//! Recognising all-zero clusters, which the image leaves unallocated.
//!
//! A cluster is compared with a static zero cluster: slice equality on bytes
//! is a `memcmp`, which the C library vectorises, so this runs at memory
//! speed even in unoptimised builds and needs no per-byte loop of ours.

use super::layout::CLUSTER_SIZE;

static ZEROS: [u8; CLUSTER_SIZE as usize] = [0; CLUSTER_SIZE as usize];

/// True if every byte of `cluster` (at most one cluster long) is zero.
pub fn is_zero(cluster: &[u8]) -> bool {
    cluster == &ZEROS[..cluster.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_single_non_zero_byte_anywhere() {
        let mut cluster = vec![0u8; CLUSTER_SIZE as usize];
        assert!(is_zero(&cluster));
        for at in [0, 1, 4095, 32768, CLUSTER_SIZE as usize - 1] {
            cluster[at] = 0x80;
            assert!(!is_zero(&cluster), "byte {at}");
            cluster[at] = 0;
        }
        assert!(is_zero(&cluster[..100]));
        assert!(is_zero(&[]));
    }
}
