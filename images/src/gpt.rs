//! Raw disks with a GUID partition table, written by us into a plain file.
//!
//! Owns the on-disk GPT layout (UEFI 2.10 §5.3): the protective MBR, the
//! primary header and entry array at the start, the backup array and header at
//! the end, and the partitions' contents copied in between at 1 MiB
//! boundaries. Every GUID is given by the caller, nothing depends on the clock
//! or the host, and no loop device or `sgdisk` is involved. Runs of zeros in a
//! partition image are left as holes, so the raw file stays sparse; the bytes
//! read back are the same either way.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::guid::Guid;

/// GPT always counts in 512-byte logical blocks here (what qemu and Proxmox
/// present for a raw or qcow2 disk).
pub const SECTOR: u64 = 512;
/// Partitions start and end on 1 MiB boundaries, as partitioning tools do.
const ALIGN: u64 = 1024 * 1024;
const ENTRY_COUNT: u32 = 128;
const ENTRY_SIZE: u32 = 128;
/// Sectors taken by the entry array: 128 entries of 128 bytes.
const ARRAY_SECTORS: u64 = (ENTRY_COUNT as u64 * ENTRY_SIZE as u64) / SECTOR;
const HEADER_SIZE: u32 = 92;
/// A partition name is at most 36 UTF-16 code units.
const NAME_UNITS: usize = 36;

/// The partition type of an EFI system partition.
pub const ESP_TYPE: Guid = Guid::from_u128(0xc12a7328_f81f_11d2_ba4b_00a0c93ec93b);
/// The partition type of an x86-64 root filesystem (Discoverable Partitions
/// Specification), which systemd's gpt-auto generator also recognises.
pub const ROOT_X86_64_TYPE: Guid = Guid::from_u128(0x4f68bce3_e8cd_4db1_96e7_fbcaf984b709);

/// One partition to write: its identity and the image file holding its
/// contents. The partition is the image's size rounded up to 1 MiB.
#[derive(Clone, Debug)]
pub struct GptPartition<'a> {
    pub type_guid: Guid,
    pub guid: Guid,
    pub name: &'a str,
    pub image: &'a Path,
}

/// Why a disk could not be written.
#[derive(Debug, thiserror::Error)]
pub enum GptError {
    #[error("partition name `{0}` is longer than GPT's 36 UTF-16 units; shorten it")]
    NameTooLong(String),
    #[error("a GPT disk needs at least one partition")]
    NoPartitions,
    #[error("more than {ENTRY_COUNT} partitions do not fit in the GPT entry array")]
    TooManyPartitions,
    #[error("cannot read partition image {path}: {source}")]
    ReadImage { path: PathBuf, source: io::Error },
    #[error("cannot write disk image {path}: {source}")]
    WriteDisk { path: PathBuf, source: io::Error },
}

/// Where one partition lies, in sectors.
struct Extent {
    first_lba: u64,
    last_lba: u64,
}

/// Writes a raw disk to `out` (replacing it): a GPT naming `disk_guid` and
/// `partitions` in order, each partition filled from its image.
pub fn write_disk(
    out: &Path,
    disk_guid: Guid,
    partitions: &[GptPartition],
) -> Result<(), GptError> {
    if partitions.is_empty() {
        return Err(GptError::NoPartitions);
    }
    if partitions.len() > ENTRY_COUNT as usize {
        return Err(GptError::TooManyPartitions);
    }
    let mut extents = Vec::with_capacity(partitions.len());
    let mut next = ALIGN;
    for partition in partitions {
        if partition.name.encode_utf16().count() > NAME_UNITS {
            return Err(GptError::NameTooLong(partition.name.to_string()));
        }
        let length = std::fs::metadata(partition.image)
            .map_err(|source| GptError::ReadImage {
                path: partition.image.to_path_buf(),
                source,
            })?
            .len();
        let size = length.div_ceil(ALIGN).max(1) * ALIGN;
        extents.push(Extent {
            first_lba: next / SECTOR,
            last_lba: (next + size) / SECTOR - 1,
        });
        next += size;
    }
    // The backup array and header need 33 sectors; a whole aligned MiB keeps
    // the disk size a multiple of 1 MiB.
    let total_sectors = (next + ALIGN) / SECTOR;

    let entries = entry_array(partitions, &extents);
    let entries_crc = crc32fast::hash(&entries);
    let primary = Header {
        my_lba: 1,
        alternate_lba: total_sectors - 1,
        entries_lba: 2,
        total_sectors,
        disk_guid,
        entries_crc,
    };
    let backup = Header {
        my_lba: total_sectors - 1,
        alternate_lba: 1,
        entries_lba: total_sectors - 1 - ARRAY_SECTORS,
        ..primary
    };

    let write_error = |source| GptError::WriteDisk {
        path: out.to_path_buf(),
        source,
    };
    let disk = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(out)
        .map_err(write_error)?;
    disk.set_len(total_sectors * SECTOR).map_err(write_error)?;
    disk.write_all_at(&protective_mbr(total_sectors), 0)
        .map_err(write_error)?;
    disk.write_all_at(&primary.to_bytes(), SECTOR)
        .map_err(write_error)?;
    disk.write_all_at(&entries, 2 * SECTOR)
        .map_err(write_error)?;
    for (partition, extent) in partitions.iter().zip(&extents) {
        copy_sparse(partition.image, &disk, extent.first_lba * SECTOR, out)?;
    }
    disk.write_all_at(&entries, backup.entries_lba * SECTOR)
        .map_err(write_error)?;
    disk.write_all_at(&backup.to_bytes(), backup.my_lba * SECTOR)
        .map_err(write_error)?;
    disk.sync_all().map_err(write_error)
}

/// The MBR in sector 0 that marks the whole disk as one GPT-protective
/// partition (type 0xEE), so MBR-only tools leave it alone.
fn protective_mbr(total_sectors: u64) -> [u8; SECTOR as usize] {
    let mut mbr = [0u8; SECTOR as usize];
    let covered = u32::try_from(total_sectors - 1).unwrap_or(u32::MAX);
    let entry = &mut mbr[446..462];
    entry[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    entry[4] = 0xee;
    entry[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
    entry[8..12].copy_from_slice(&1u32.to_le_bytes());
    entry[12..16].copy_from_slice(&covered.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    mbr
}

fn entry_array(partitions: &[GptPartition], extents: &[Extent]) -> Vec<u8> {
    let mut array = vec![0u8; (ENTRY_COUNT * ENTRY_SIZE) as usize];
    for (index, (partition, extent)) in partitions.iter().zip(extents).enumerate() {
        let entry = &mut array[index * ENTRY_SIZE as usize..][..ENTRY_SIZE as usize];
        entry[0..16].copy_from_slice(&partition.type_guid.to_gpt_bytes());
        entry[16..32].copy_from_slice(&partition.guid.to_gpt_bytes());
        entry[32..40].copy_from_slice(&extent.first_lba.to_le_bytes());
        entry[40..48].copy_from_slice(&extent.last_lba.to_le_bytes());
        // Attributes (48..56) stay 0.
        for (unit, slot) in partition
            .name
            .encode_utf16()
            .zip(entry[56..128].chunks_exact_mut(2))
        {
            slot.copy_from_slice(&unit.to_le_bytes());
        }
    }
    array
}

/// A GPT header; the primary and the backup differ only in where they and
/// their entry arrays lie.
#[derive(Clone, Copy)]
struct Header {
    my_lba: u64,
    alternate_lba: u64,
    entries_lba: u64,
    total_sectors: u64,
    disk_guid: Guid,
    entries_crc: u32,
}

impl Header {
    fn to_bytes(self) -> [u8; SECTOR as usize] {
        let mut sector = [0u8; SECTOR as usize];
        let header = &mut sector[..HEADER_SIZE as usize];
        header[0..8].copy_from_slice(b"EFI PART");
        header[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        header[12..16].copy_from_slice(&HEADER_SIZE.to_le_bytes());
        // 16..20: header CRC, computed last over the header with this field 0.
        header[24..32].copy_from_slice(&self.my_lba.to_le_bytes());
        header[32..40].copy_from_slice(&self.alternate_lba.to_le_bytes());
        let first_usable = 2 + ARRAY_SECTORS;
        let last_usable = self.total_sectors - 2 - ARRAY_SECTORS;
        header[40..48].copy_from_slice(&first_usable.to_le_bytes());
        header[48..56].copy_from_slice(&last_usable.to_le_bytes());
        header[56..72].copy_from_slice(&self.disk_guid.to_gpt_bytes());
        header[72..80].copy_from_slice(&self.entries_lba.to_le_bytes());
        header[80..84].copy_from_slice(&ENTRY_COUNT.to_le_bytes());
        header[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
        header[88..92].copy_from_slice(&self.entries_crc.to_le_bytes());
        let crc = crc32fast::hash(header);
        header[16..20].copy_from_slice(&crc.to_le_bytes());
        sector
    }
}

/// Copies `image` into `disk` at `offset`, skipping all-zero blocks (the disk
/// file was just sized, so they already read as zeros).
fn copy_sparse(image: &Path, disk: &File, offset: u64, disk_path: &Path) -> Result<(), GptError> {
    let read_error = |source| GptError::ReadImage {
        path: image.to_path_buf(),
        source,
    };
    let mut source = File::open(image).map_err(read_error)?;
    let mut buffer = vec![0u8; ALIGN as usize];
    // Compared as slices (one memcmp), which stays fast in unoptimised builds.
    let zeros = vec![0u8; ALIGN as usize];
    let mut position = offset;
    loop {
        let filled = fill(&mut source, &mut buffer).map_err(read_error)?;
        if filled == 0 {
            return Ok(());
        }
        let block = &buffer[..filled];
        if block != &zeros[..filled] {
            disk.write_all_at(block, position)
                .map_err(|source| GptError::WriteDisk {
                    path: disk_path.to_path_buf(),
                    source,
                })?;
        }
        position += filled as u64;
    }
}

/// Reads until `buffer` is full or the input ends; returns how much was read.
fn fill(source: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match source.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const DISK: Guid = Guid::from_u128(0x5b1e2f3a_0000_4000_8000_000000000001);
    const FIRST: Guid = Guid::from_u128(0x5b1e2f3a_0000_4000_8000_000000000002);
    const SECOND: Guid = Guid::from_u128(0x5b1e2f3a_0000_4000_8000_000000000003);

    /// A disk with a 1 MiB partition and a 2.5 MiB one (rounded up to 3 MiB),
    /// both with data at their ends so misplaced copies show.
    fn sample_disk(dir: &Path) -> PathBuf {
        let first = dir.join("first.img");
        let second = dir.join("second.img");
        let mut one = vec![0u8; 1024 * 1024];
        one[0] = 1;
        *one.last_mut().unwrap() = 0x11;
        let mut two = vec![0u8; 2 * 1024 * 1024 + 512 * 1024];
        two[5] = 2;
        *two.last_mut().unwrap() = 0x22;
        std::fs::write(&first, &one).unwrap();
        std::fs::write(&second, &two).unwrap();
        let disk = dir.join("disk.raw");
        write_disk(
            &disk,
            DISK,
            &[
                GptPartition {
                    type_guid: ESP_TYPE,
                    guid: FIRST,
                    name: "esp",
                    image: &first,
                },
                GptPartition {
                    type_guid: ROOT_X86_64_TYPE,
                    guid: SECOND,
                    name: "root",
                    image: &second,
                },
            ],
        )
        .unwrap();
        disk
    }

    /// The table as `sfdisk --json` (util-linux, an independent reader)
    /// sees it.
    fn sfdisk_table(disk: &Path) -> serde_json::Value {
        let output = Command::new("sfdisk")
            .arg("--json")
            .arg(disk)
            .output()
            .expect("sfdisk is missing: apt-get install fdisk");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        json["partitiontable"].clone()
    }

    #[test]
    fn sfdisk_reads_back_the_layout_and_identities() {
        let dir = tempfile::tempdir().unwrap();
        let disk = sample_disk(dir.path());
        // 1 MiB lead + 1 MiB + 3 MiB + 1 MiB tail.
        assert_eq!(std::fs::metadata(&disk).unwrap().len(), 6 * 1024 * 1024);
        let table = sfdisk_table(&disk);
        assert_eq!(table["label"], "gpt");
        assert_eq!(table["id"], "5B1E2F3A-0000-4000-8000-000000000001");
        assert_eq!(table["firstlba"], 34);
        assert_eq!(table["lastlba"], 12254);
        let partitions = table["partitions"].as_array().unwrap();
        assert_eq!(partitions.len(), 2, "{table}");
        for (partition, (start, size, type_guid, uuid, name)) in partitions.iter().zip([
            (
                2048,
                2048,
                "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
                "5B1E2F3A-0000-4000-8000-000000000002",
                "esp",
            ),
            (
                4096,
                6144,
                "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
                "5B1E2F3A-0000-4000-8000-000000000003",
                "root",
            ),
        ]) {
            assert_eq!(partition["start"], start, "{partition}");
            assert_eq!(partition["size"], size, "{partition}");
            assert_eq!(partition["type"], type_guid, "{partition}");
            assert_eq!(partition["uuid"], uuid, "{partition}");
            assert_eq!(partition["name"], name, "{partition}");
        }
        let verify = Command::new("sfdisk")
            .arg("--verify")
            .arg(&disk)
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "{}",
            String::from_utf8_lossy(&verify.stdout)
        );
    }

    #[test]
    fn contents_land_at_their_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let disk = std::fs::read(sample_disk(dir.path())).unwrap();
        let mib = 1024 * 1024;
        assert_eq!(disk[mib], 1);
        assert_eq!(disk[2 * mib - 1], 0x11);
        assert_eq!(disk[2 * mib + 5], 2);
        assert_eq!(disk[2 * mib + 2 * mib + 512 * 1024 - 1], 0x22);
        assert_eq!(&disk[510..512], &[0x55, 0xaa]);
        assert_eq!(&disk[512..520], b"EFI PART");
        assert_eq!(&disk[disk.len() - 512..][..8], b"EFI PART");
    }

    #[test]
    fn the_backup_table_alone_is_enough() {
        let dir = tempfile::tempdir().unwrap();
        let disk = sample_disk(dir.path());
        let file = OpenOptions::new().write(true).open(&disk).unwrap();
        file.write_all_at(&[0u8; 512], SECTOR).unwrap();
        drop(file);
        let table = sfdisk_table(&disk);
        assert_eq!(table["id"], "5B1E2F3A-0000-4000-8000-000000000001");
        assert_eq!(table["partitions"].as_array().unwrap().len(), 2, "{table}");
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes() {
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        let first = std::fs::read(sample_disk(one.path())).unwrap();
        let second = std::fs::read(sample_disk(two.path())).unwrap();
        assert!(first == second);
    }

    #[test]
    fn refuses_long_names() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("p.img");
        std::fs::write(&image, [0u8; 512]).unwrap();
        let name = "n".repeat(37);
        let error = write_disk(
            &dir.path().join("d.raw"),
            DISK,
            &[GptPartition {
                type_guid: ESP_TYPE,
                guid: FIRST,
                name: &name,
                image: &image,
            }],
        )
        .unwrap_err();
        assert!(matches!(error, GptError::NameTooLong(_)));
    }
}
