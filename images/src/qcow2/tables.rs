//! The on-disk encodings (big-endian, as `docs/interop/qcow2.txt` in QEMU
//! specifies them): the header and the contents of refcount-table, refcount
//! block, L1 and L2 clusters. Pure functions of the layout and of where
//! clusters ended up; the writer decides what goes where.

use super::layout::{Layout, CLUSTER_BITS, CLUSTER_SIZE, REFBLOCK_ENTRIES, REFCOUNT_ORDER};

const MAGIC: u32 = 0x5146_49fb; // "QFI\xfb"
const VERSION: u32 = 3;
/// Header fields up to and including `compression_type`, padded to 8 bytes.
/// Header extensions would follow; there are none, and the zero bytes after
/// the header read as the end-of-extensions marker (type 0, length 0).
pub const HEADER_LENGTH: u32 = 112;
/// L1 and L2 entry flag: the cluster's refcount is exactly 1, so it may be
/// written in place. Every cluster we allocate has refcount 1.
const COPIED: u64 = 1 << 63;

/// The L1 or L2 entry pointing at host cluster `cluster`.
pub fn entry(cluster: u64) -> u64 {
    (cluster << CLUSTER_BITS) | COPIED
}

/// Writes `value` as the `index`th 8-byte big-endian entry of `table`.
pub fn put_entry(table: &mut [u8], index: usize, value: u64) {
    table[index * 8..index * 8 + 8].copy_from_slice(&value.to_be_bytes());
}

/// Fills `cluster` with the header cluster: the version 3 header with no
/// backing file, encryption, snapshots or feature bits, then zeros.
pub fn header(layout: &Layout, cluster: &mut [u8]) {
    cluster.fill(0);
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        cluster[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(&MAGIC.to_be_bytes());
    put(&VERSION.to_be_bytes());
    put(&0u64.to_be_bytes()); // backing_file_offset: no backing file
    put(&0u32.to_be_bytes()); // backing_file_size
    put(&CLUSTER_BITS.to_be_bytes());
    put(&layout.virtual_size.to_be_bytes());
    put(&0u32.to_be_bytes()); // crypt_method: none
    put(&u32_field(layout.l1_entries).to_be_bytes()); // l1_size
    put(&(layout.l1_cluster() * CLUSTER_SIZE).to_be_bytes());
    put(&(layout.refcount_table_cluster() * CLUSTER_SIZE).to_be_bytes());
    put(&u32_field(layout.refcount_table_clusters).to_be_bytes());
    put(&0u32.to_be_bytes()); // nb_snapshots
    put(&0u64.to_be_bytes()); // snapshots_offset
    put(&0u64.to_be_bytes()); // incompatible_features: none (not dirty, no data file)
    put(&0u64.to_be_bytes()); // compatible_features: no lazy refcounts
    put(&0u64.to_be_bytes()); // autoclear_features
    put(&REFCOUNT_ORDER.to_be_bytes());
    put(&HEADER_LENGTH.to_be_bytes());
    put(&[0]); // compression_type: zlib (nothing is compressed)
    debug_assert!(at <= HEADER_LENGTH as usize);
}

/// `Layout::new` caps the virtual size so these counts fit the header's
/// 32-bit fields (at most 4 Mi L1 entries, 2 refcount-table clusters).
fn u32_field(count: u64) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// Fills `cluster` with cluster `index` of the refcount table: the offsets of
/// every refcount block, in order.
pub fn refcount_table(layout: &Layout, index: u64, cluster: &mut [u8]) {
    cluster.fill(0);
    let entries = (cluster.len() / 8) as u64;
    let first = index * entries;
    let last = (first + entries).min(layout.refcount_blocks);
    for block in first..last {
        let offset = layout.refcount_block_cluster(block) * CLUSTER_SIZE;
        put_entry(cluster, (block - first) as usize, offset);
    }
}

/// Fills `cluster` with refcount block `index` of a file of `clusters`
/// clusters: every cluster below `clusters` is used exactly once, every one
/// after it is free.
pub fn refcount_block(index: u64, clusters: u64, cluster: &mut [u8]) {
    cluster.fill(0);
    let first = index * REFBLOCK_ENTRIES;
    let used = clusters.saturating_sub(first).min(REFBLOCK_ENTRIES) as usize;
    for refcount in cluster.chunks_exact_mut(2).take(used) {
        refcount.copy_from_slice(&1u16.to_be_bytes());
    }
}

/// Fills `cluster` with cluster `index` of the L1 table.
pub fn l1_table(l1: &[u64], index: u64, cluster: &mut [u8]) {
    cluster.fill(0);
    let entries = cluster.len() / 8;
    let first = index as usize * entries;
    for (slot, value) in l1.iter().skip(first).take(entries).enumerate() {
        put_entry(cluster, slot, *value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be32(bytes: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    fn be64(bytes: &[u8], at: usize) -> u64 {
        u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn header_fields_sit_where_the_specification_puts_them() {
        let layout = Layout::new(3 << 30).unwrap();
        let mut cluster = vec![0xaa; CLUSTER_SIZE as usize];
        header(&layout, &mut cluster);
        assert_eq!(&cluster[0..4], b"QFI\xfb");
        assert_eq!(be32(&cluster, 4), 3);
        assert_eq!(be64(&cluster, 8), 0);
        assert_eq!(be32(&cluster, 20), 16);
        assert_eq!(be64(&cluster, 24), 3 << 30);
        assert_eq!(be32(&cluster, 32), 0);
        assert_eq!(be32(&cluster, 36), 6);
        assert_eq!(be64(&cluster, 40), layout.l1_cluster() * CLUSTER_SIZE);
        assert_eq!(be64(&cluster, 48), CLUSTER_SIZE);
        assert_eq!(be32(&cluster, 56), 1);
        assert_eq!(be32(&cluster, 60), 0);
        assert_eq!(be64(&cluster, 72), 0);
        assert_eq!(be64(&cluster, 80), 0);
        assert_eq!(be64(&cluster, 88), 0);
        assert_eq!(be32(&cluster, 96), 4);
        assert_eq!(be32(&cluster, 100), 112);
        assert!(cluster[104..].iter().all(|&b| b == 0));
    }

    #[test]
    fn refcount_blocks_count_used_clusters_once() {
        let mut cluster = vec![0xaa; CLUSTER_SIZE as usize];
        refcount_block(0, 3, &mut cluster);
        assert_eq!(&cluster[..8], &[0, 1, 0, 1, 0, 1, 0, 0]);
        assert!(cluster[6..].iter().all(|&b| b == 0));
        refcount_block(1, REFBLOCK_ENTRIES + 1, &mut cluster);
        assert_eq!(&cluster[..4], &[0, 1, 0, 0]);
        refcount_block(1, 1, &mut cluster);
        assert!(cluster.iter().all(|&b| b == 0));
    }

    #[test]
    fn the_refcount_table_points_at_every_block() {
        let layout = Layout::new(2 << 30).unwrap();
        let mut cluster = vec![0xaa; CLUSTER_SIZE as usize];
        refcount_table(&layout, 0, &mut cluster);
        assert_eq!(be64(&cluster, 0), 2 * CLUSTER_SIZE);
        assert_eq!(be64(&cluster, 8), 3 * CLUSTER_SIZE);
        assert!(cluster[16..].iter().all(|&b| b == 0));
    }

    #[test]
    fn entries_carry_the_copied_flag() {
        assert_eq!(entry(5), 0x8000_0000_0005_0000);
        let mut cluster = vec![0xaa; CLUSTER_SIZE as usize];
        l1_table(&[entry(7), 0, entry(9)], 0, &mut cluster);
        assert_eq!(be64(&cluster, 0), entry(7));
        assert_eq!(be64(&cluster, 8), 0);
        assert_eq!(be64(&cluster, 16), entry(9));
        assert!(cluster[24..].iter().all(|&b| b == 0));
    }
}
