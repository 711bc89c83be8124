//! Where everything goes in the qcow2 file, decided from the virtual size
//! alone before the first byte of input is read.
//!
//! The file is a run of 64 KiB clusters with no gaps:
//!
//! ```text
//! [header][refcount table][refcount blocks][L1 table] | [data…][L2] [data…][L2] …
//!  └──────────────── the front: reserved, written last ┘  └ streamed, one L2 per 512 MiB span
//! ```
//!
//! The front is sized for the worst case (every virtual cluster allocated,
//! every L2 table needed), so it never has to move. Since host clusters are
//! handed out densely from the start of the file, the refcount of host cluster
//! `i` is simply "1 if `i` is below the final cluster count": the refcount
//! blocks need no per-cluster state at all.

use super::error::Qcow2Error;

/// log2 of the cluster size: 64 KiB, QEMU's default.
pub const CLUSTER_BITS: u32 = 16;
/// Bytes per cluster.
pub const CLUSTER_SIZE: u64 = 1 << CLUSTER_BITS;
/// 8-byte entries per L2 table (one cluster): 8192, covering 512 MiB.
pub const L2_ENTRIES: u64 = CLUSTER_SIZE / 8;
/// log2 of the refcount width in bits: 16-bit refcounts.
pub const REFCOUNT_ORDER: u32 = 4;
/// 16-bit refcounts per refcount block (one cluster): 32768, covering 2 GiB
/// of the file.
pub const REFBLOCK_ENTRIES: u64 = CLUSTER_SIZE * 8 / (1 << REFCOUNT_ORDER);
/// 8-byte entries per refcount-table cluster.
pub const REFTABLE_ENTRIES_PER_CLUSTER: u64 = CLUSTER_SIZE / 8;
/// Virtual sizes are whole 512-byte sectors, as QEMU requires of qcow2.
pub const SECTOR_SIZE: u64 = 512;
/// QEMU refuses L1 tables over 32 MiB (`QCOW_MAX_L1_SIZE`): with 64 KiB
/// clusters that caps the virtual size at 2 PiB.
const MAX_L1_ENTRIES: u64 = (32 << 20) / 8;
/// The largest virtual size QEMU opens with 64 KiB clusters.
pub const MAX_VIRTUAL_SIZE: u64 = MAX_L1_ENTRIES * L2_ENTRIES * CLUSTER_SIZE;

/// Cluster counts and positions of one image's metadata.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// The disk's size in bytes, as the guest sees it.
    pub virtual_size: u64,
    /// Virtual clusters (the last one may be partial).
    pub virtual_clusters: u64,
    /// L1 entries: one per 512 MiB span of the disk.
    pub l1_entries: u64,
    pub l1_clusters: u64,
    pub refcount_table_clusters: u64,
    pub refcount_blocks: u64,
}

impl Layout {
    /// The layout of a `virtual_size`-byte disk.
    pub fn new(virtual_size: u64) -> Result<Self, Qcow2Error> {
        if !virtual_size.is_multiple_of(SECTOR_SIZE) {
            return Err(Qcow2Error::UnalignedSize { size: virtual_size });
        }
        if virtual_size > MAX_VIRTUAL_SIZE {
            return Err(Qcow2Error::TooLarge {
                size: virtual_size,
                max: MAX_VIRTUAL_SIZE,
            });
        }
        let virtual_clusters = virtual_size.div_ceil(CLUSTER_SIZE);
        let l1_entries = virtual_clusters.div_ceil(L2_ENTRIES);
        let l1_clusters = (l1_entries * 8).div_ceil(CLUSTER_SIZE);
        // Everything but the refcount structures, in the worst case: the
        // header, the L1 table, every data cluster and every L2 table.
        let others = 1 + l1_clusters + virtual_clusters + l1_entries;
        // The refcount structures count themselves too: grow them until they
        // cover the whole worst-case file (converges in two or three rounds).
        let (mut blocks, mut table) = (0, 0);
        loop {
            let needed_blocks = (others + blocks + table).div_ceil(REFBLOCK_ENTRIES);
            let needed_table = needed_blocks.div_ceil(REFTABLE_ENTRIES_PER_CLUSTER);
            if (needed_blocks, needed_table) == (blocks, table) {
                break;
            }
            (blocks, table) = (needed_blocks, needed_table);
        }
        Ok(Layout {
            virtual_size,
            virtual_clusters,
            l1_entries,
            l1_clusters,
            refcount_table_clusters: table,
            refcount_blocks: blocks,
        })
    }

    /// First cluster of the refcount table (right after the header).
    pub fn refcount_table_cluster(&self) -> u64 {
        1
    }

    /// Cluster of refcount block `index`.
    pub fn refcount_block_cluster(&self, index: u64) -> u64 {
        self.refcount_table_cluster() + self.refcount_table_clusters + index
    }

    /// First cluster of the L1 table.
    pub fn l1_cluster(&self) -> u64 {
        self.refcount_block_cluster(self.refcount_blocks)
    }

    /// Clusters reserved at the start of the file; data begins after them.
    pub fn front_clusters(&self) -> u64 {
        self.l1_cluster() + self.l1_clusters
    }

    /// The most clusters the file can have: every virtual cluster and every
    /// L2 table allocated.
    pub fn max_clusters(&self) -> u64 {
        self.front_clusters() + self.virtual_clusters + self.l1_entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn an_empty_disk_has_a_header_and_one_refcount_block() {
        let layout = Layout::new(0).unwrap();
        assert_eq!(layout.l1_entries, 0);
        assert_eq!(layout.l1_clusters, 0);
        assert_eq!(layout.refcount_table_clusters, 1);
        assert_eq!(layout.refcount_blocks, 1);
        assert_eq!(layout.front_clusters(), 3);
    }

    #[test]
    fn a_two_gib_disk() {
        let layout = Layout::new(2 * GIB).unwrap();
        assert_eq!(layout.virtual_clusters, 32768);
        assert_eq!(layout.l1_entries, 4);
        assert_eq!(layout.l1_clusters, 1);
        // 32768 data + 4 L2 + header + L1 + the refcount structures spill
        // just past one block's 32768 clusters.
        assert_eq!(layout.refcount_blocks, 2);
        assert_eq!(layout.refcount_table_clusters, 1);
        assert_eq!(layout.refcount_block_cluster(0), 2);
        assert_eq!(layout.l1_cluster(), 4);
        assert_eq!(layout.front_clusters(), 5);
        assert_eq!(layout.max_clusters(), 5 + 32768 + 4);
    }

    #[test]
    fn refcount_blocks_cover_the_worst_case_file() {
        for size in [
            512,
            CLUSTER_SIZE,
            CLUSTER_SIZE + 512,
            2 * GIB - CLUSTER_SIZE * 8,
            2 * GIB,
            1 << 40,
            (1 << 44) + 512,
            MAX_VIRTUAL_SIZE,
        ] {
            let layout = Layout::new(size).unwrap();
            assert!(
                layout.max_clusters() <= layout.refcount_blocks * REFBLOCK_ENTRIES,
                "{size}: {layout:?}"
            );
            assert!(
                layout.refcount_blocks
                    <= layout.refcount_table_clusters * REFTABLE_ENTRIES_PER_CLUSTER,
                "{size}: {layout:?}"
            );
            assert!(layout.l1_entries * L2_ENTRIES * CLUSTER_SIZE >= size);
        }
    }

    #[test]
    fn sizes_qemu_cannot_open_are_refused() {
        assert!(matches!(
            Layout::new(1000),
            Err(Qcow2Error::UnalignedSize { size: 1000 })
        ));
        assert!(matches!(
            Layout::new(MAX_VIRTUAL_SIZE + 512),
            Err(Qcow2Error::TooLarge {
                max: MAX_VIRTUAL_SIZE,
                ..
            })
        ));
    }
}
