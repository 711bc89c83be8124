//! What the two FAT writers, `seed_disk` and `esp`, share about driving
//! `fatfs` 0.3.6 reproducibly: the fixed clocks it is told instead of a real
//! one, writing one whole file, and the repair of the directories it creates.
//!
//! fatfs stamps every entry it creates or writes with the time its
//! `TimeProvider` gives (built without `chrono`, it reads no clock itself).
//! It takes that provider as a `&'static`, so a time known only at run time
//! (an ESP's `SOURCE_DATE_EPOCH`) needs a provider that lives for the rest of
//! the process: [`clock_at`] makes one per distinct time and hands the same
//! one out again, so a process leaks at most one small value per epoch it
//! builds with.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::{Mutex, PoisonError};

use fatfs::{Date, DateTime, Dir, Time, TimeProvider};

/// A clock stopped at one time, in FAT's terms (a date and a local time
/// with no zone; we store UTC).
#[derive(Debug)]
pub(crate) struct FixedClock(DateTime);

/// 1980-01-01 00:00:00, the earliest time a FAT entry can hold.
pub(crate) static DOS_EPOCH: FixedClock = FixedClock(DateTime {
    date: Date {
        year: 1980,
        month: 1,
        day: 1,
    },
    time: Time {
        hour: 0,
        min: 0,
        sec: 0,
        millis: 0,
    },
});

/// The latest second a FAT date can hold: 2107-12-31 23:59:59 UTC.
const LAST_FAT_SECOND: u64 = 4_354_819_199;
/// 1980-01-01 00:00:00 UTC in seconds since the Unix epoch.
const FIRST_FAT_SECOND: u64 = 315_532_800;

impl TimeProvider for FixedClock {
    fn get_current_date(&self) -> Date {
        self.0.date
    }

    fn get_current_date_time(&self) -> DateTime {
        self.0
    }
}

/// The clock stopped at `unix_seconds` (UTC), or `None` when FAT cannot hold
/// that time (before 1980 or after 2107). Equal times share one clock.
pub(crate) fn clock_at(unix_seconds: u64) -> Option<&'static FixedClock> {
    static CLOCKS: Mutex<Vec<&'static FixedClock>> = Mutex::new(Vec::new());
    let time = date_time(unix_seconds)?;
    let mut clocks = CLOCKS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(clock) = clocks.iter().copied().find(|clock| clock.0 == time) {
        return Some(clock);
    }
    let clock: &'static FixedClock = Box::leak(Box::new(FixedClock(time)));
    clocks.push(clock);
    Some(clock)
}

/// `unix_seconds` as a UTC calendar date and time, if FAT can hold it.
fn date_time(unix_seconds: u64) -> Option<DateTime> {
    if !(FIRST_FAT_SECOND..=LAST_FAT_SECOND).contains(&unix_seconds) {
        return None;
    }
    let (year, month, day) = civil_from_days(unix_seconds / 86_400);
    let second_of_day = unix_seconds % 86_400;
    // In range: the year is 1980..=2107 and the rest are calendar fields.
    let field = |value: u64| u16::try_from(value).ok();
    Some(DateTime {
        date: Date {
            year: field(year)?,
            month: field(month)?,
            day: field(day)?,
        },
        time: Time {
            hour: field(second_of_day / 3600)?,
            min: field(second_of_day / 60 % 60)?,
            sec: field(second_of_day % 60)?,
            millis: 0,
        },
    })
}

/// The proleptic Gregorian (year, month, day) of a day count since
/// 1970-01-01 (Howard Hinnant's `civil_from_days`, for days on or after it).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shifted so eras (400 years) and years start on 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Creates the file `path` (`/`-separated, below `dir`, its directories
/// already there) and writes all of `contents` to it. The caller makes sure
/// the name is new: fatfs opens an existing file instead of failing.
pub(crate) fn write_file<T: fatfs::ReadWriteSeek>(
    dir: &Dir<T>,
    path: &str,
    contents: &[u8],
) -> io::Result<()> {
    let mut file = dir.create_file(path)?;
    file.write_all(contents)?;
    // Dropping the file would flush too, but only log a failure.
    file.flush()
}

/// Bytes of one directory entry.
const ENTRY: usize = 32;
/// Where an entry keeps its attributes, and the attributes read here.
const ATTRIBUTES: usize = 11;
const DIRECTORY: u8 = 0x10;
const LONG_NAME: u8 = 0x0f;
/// The first name byte of a deleted entry, and of the end of a directory.
const DELETED: u8 = 0xe5;
const END: u8 = 0;
const DOT: &[u8; 11] = b".          ";
const DOT_DOT: &[u8; 11] = b"..         ";
/// FAT32 cluster numbers at or above this end a chain.
const END_OF_CHAIN: u32 = 0x0fff_fff8;

/// Repairs what fatfs 0.3.6 gets wrong in every directory it creates, on the
/// FAT32 volume `disk` (no longer mounted): `.` and `..` must be a
/// directory's first two entries, but fatfs writes a long-name entry before
/// each; and `..` must say 0 when the parent is the root, but fatfs gives the
/// root's cluster. Each directory's first four entries become `.`, `..`
/// (pointing at the right parent) and two deleted entries. A directory that
/// does not start with long name, `.`, long name, `..` is refused: that is
/// not the fatfs this repairs.
pub(crate) fn repair_dot_entries<D: Read + Write + Seek>(disk: &mut D) -> io::Result<()> {
    let volume = Fat32::read(disk)?;
    let mut directories = vec![volume.root_cluster];
    while let Some(directory) = directories.pop() {
        let parent = if directory == volume.root_cluster {
            0
        } else {
            directory
        };
        for entry in volume.read_chain(disk, directory)?.chunks_exact(ENTRY) {
            if entry[0] == END {
                break;
            }
            let name = &entry[..DOT.len()];
            if entry[0] == DELETED
                || entry[ATTRIBUTES] == LONG_NAME
                || entry[ATTRIBUTES] & DIRECTORY == 0
                || name == DOT
                || name == DOT_DOT
            {
                continue;
            }
            let child = first_cluster(entry);
            volume.repair_directory(disk, child, parent)?;
            directories.push(child);
        }
    }
    Ok(())
}

/// Where a FAT32 volume keeps its FAT and its clusters.
pub(crate) struct Fat32 {
    fat_offset: u64,
    /// Where the clusters start: the boot sectors and FATs come before.
    pub(crate) data_offset: u64,
    cluster_bytes: u64,
    clusters: u32,
    root_cluster: u32,
}

impl Fat32 {
    /// Reads the boot sector's geometry.
    pub(crate) fn read<D: Read + Seek>(disk: &mut D) -> io::Result<Self> {
        let mut boot = [0u8; 512];
        disk.seek(SeekFrom::Start(0))?;
        disk.read_exact(&mut boot)?;
        let u16_at = |at: usize| u64::from(u16::from_le_bytes([boot[at], boot[at + 1]]));
        let u32_at =
            |at: usize| u32::from_le_bytes([boot[at], boot[at + 1], boot[at + 2], boot[at + 3]]);
        let sector_bytes = u16_at(11);
        let sectors_per_cluster = u64::from(boot[13]);
        let reserved_sectors = u16_at(14);
        let fats = u64::from(boot[16]);
        let total_sectors = u64::from(u32_at(32));
        let sectors_per_fat = u64::from(u32_at(36));
        // FAT32: no fixed root directory, no 16-bit FAT size.
        if u16_at(17) != 0 || u16_at(22) != 0 || sectors_per_cluster == 0 {
            return Err(invalid("the volume is not FAT32"));
        }
        let data_sector = reserved_sectors + fats * sectors_per_fat;
        let clusters = total_sectors.saturating_sub(data_sector) / sectors_per_cluster;
        Ok(Fat32 {
            fat_offset: reserved_sectors * sector_bytes,
            data_offset: data_sector * sector_bytes,
            cluster_bytes: sectors_per_cluster * sector_bytes,
            clusters: u32::try_from(clusters).map_err(|_| invalid("too many clusters"))?,
            root_cluster: u32_at(44),
        })
    }

    /// Where `cluster`'s bytes start, if the volume has that cluster.
    fn offset(&self, cluster: u32) -> io::Result<u64> {
        if !(2..self.clusters.saturating_add(2)).contains(&cluster) {
            return Err(invalid(format!("cluster {cluster} is not on the volume")));
        }
        Ok(self.data_offset + u64::from(cluster - 2) * self.cluster_bytes)
    }

    /// The bytes of every cluster in the chain that starts at `first`.
    fn read_chain<D: Read + Seek>(&self, disk: &mut D, first: u32) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        let mut cluster = first;
        for _ in 0..self.clusters {
            let start = bytes.len();
            bytes.resize(start + self.cluster_bytes as usize, 0);
            disk.seek(SeekFrom::Start(self.offset(cluster)?))?;
            disk.read_exact(&mut bytes[start..])?;
            let mut next = [0u8; 4];
            disk.seek(SeekFrom::Start(self.fat_offset + 4 * u64::from(cluster)))?;
            disk.read_exact(&mut next)?;
            cluster = u32::from_le_bytes(next) & 0x0fff_ffff;
            if cluster >= END_OF_CHAIN {
                return Ok(bytes);
            }
        }
        Err(invalid(format!("the cluster chain at {first} loops")))
    }

    /// Makes the directory at `cluster` start with `.` and `..` (pointing at
    /// `parent`), from fatfs 0.3.6's long name, `.`, long name, `..`.
    fn repair_directory<D: Read + Write + Seek>(
        &self,
        disk: &mut D,
        cluster: u32,
        parent: u32,
    ) -> io::Result<()> {
        let offset = self.offset(cluster)?;
        let mut head = [0u8; 4 * ENTRY];
        disk.seek(SeekFrom::Start(offset))?;
        disk.read_exact(&mut head)?;
        let slot = |index: usize| &head[index * ENTRY..(index + 1) * ENTRY];
        let written_by_fatfs_0_3 = slot(0)[ATTRIBUTES] == LONG_NAME
            && slot(1)[..DOT.len()] == DOT[..]
            && slot(2)[ATTRIBUTES] == LONG_NAME
            && slot(3)[..DOT_DOT.len()] == DOT_DOT[..]
            && first_cluster(slot(1)) == cluster;
        if !written_by_fatfs_0_3 {
            return Err(invalid(format!(
                "the directory at cluster {cluster} does not start the way fatfs 0.3.6 writes one"
            )));
        }
        let mut repaired = [0u8; 4 * ENTRY];
        repaired[..ENTRY].copy_from_slice(slot(1));
        repaired[ENTRY..2 * ENTRY].copy_from_slice(slot(3));
        set_first_cluster(&mut repaired[ENTRY..2 * ENTRY], parent);
        repaired[2 * ENTRY] = DELETED;
        repaired[3 * ENTRY] = DELETED;
        disk.seek(SeekFrom::Start(offset))?;
        disk.write_all(&repaired)
    }
}

/// The first cluster a directory entry names (high half at 20, low at 26).
fn first_cluster(entry: &[u8]) -> u32 {
    u32::from(u16::from_le_bytes([entry[20], entry[21]])) << 16
        | u32::from(u16::from_le_bytes([entry[26], entry[27]]))
}

fn set_first_cluster(entry: &mut [u8], cluster: u32) {
    let [low_0, low_1, high_0, high_1] = cluster.to_le_bytes();
    entry[20..22].copy_from_slice(&[high_0, high_1]);
    entry[26..28].copy_from_slice(&[low_0, low_1]);
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fatfs::{FatType, FileSystem, FormatVolumeOptions, FsOptions};
    use std::io::Cursor;

    fn ymd_hms(time: DateTime) -> (u16, u16, u16, u16, u16, u16) {
        (
            time.date.year,
            time.date.month,
            time.date.day,
            time.time.hour,
            time.time.min,
            time.time.sec,
        )
    }

    #[test]
    fn unix_seconds_become_utc_calendar_fields() {
        let at = |seconds| date_time(seconds).map(ymd_hms);
        assert_eq!(at(1_700_000_000), Some((2023, 11, 14, 22, 13, 20)));
        assert_eq!(at(951_827_696), Some((2000, 2, 29, 12, 34, 56)));
        assert_eq!(at(FIRST_FAT_SECOND), Some((1980, 1, 1, 0, 0, 0)));
        assert_eq!(at(LAST_FAT_SECOND), Some((2107, 12, 31, 23, 59, 59)));
        assert_eq!(at(FIRST_FAT_SECOND - 1), None);
        assert_eq!(at(LAST_FAT_SECOND + 1), None);
        assert_eq!(at(0), None);
    }

    #[test]
    fn dot_entries_come_first_and_the_root_is_zero_once_repaired() {
        let mut disk = Cursor::new(vec![0u8; 33 << 20]);
        fatfs::format_volume(
            &mut disk,
            FormatVolumeOptions::new().fat_type(FatType::Fat32),
        )
        .unwrap();
        {
            let fs =
                FileSystem::new(&mut disk, FsOptions::new().time_provider(&DOS_EPOCH)).unwrap();
            fs.root_dir().create_dir("a").unwrap();
            fs.root_dir().create_dir("a/b").unwrap();
            fs.unmount().unwrap();
        }
        repair_dot_entries(&mut disk).unwrap();

        let volume = Fat32::read(&mut disk).unwrap();
        let image = disk.get_ref();
        let entry = |cluster: u32, index: usize| {
            let start = volume.offset(cluster).unwrap() as usize + index * ENTRY;
            &image[start..start + ENTRY]
        };
        // Each name is behind its long-name entry: `a` is the root's second
        // entry, `b` the sixth of `a`, after `.`, `..` and two deleted ones.
        let a = first_cluster(entry(volume.root_cluster, 1));
        let b = first_cluster(entry(a, 5));
        for (cluster, parent) in [(a, 0), (b, a)] {
            assert_eq!(&entry(cluster, 0)[..11], DOT, "{cluster}");
            assert_eq!(first_cluster(entry(cluster, 0)), cluster);
            assert_eq!(&entry(cluster, 1)[..11], DOT_DOT, "{cluster}");
            assert_eq!(first_cluster(entry(cluster, 1)), parent);
            assert_eq!(entry(cluster, 2)[0], DELETED);
            assert_eq!(entry(cluster, 3)[0], DELETED);
        }
        assert_eq!(&entry(a, 5)[..11], b"B          ");

        // A directory fatfs 0.3.6 did not write, such as a repaired one, is
        // refused rather than changed.
        let before = disk.get_ref().clone();
        let error = repair_dot_entries(&mut disk).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("fatfs 0.3.6"), "{error}");
        assert!(disk.get_ref() == &before);
    }

    #[test]
    fn equal_times_share_one_clock() {
        let one = clock_at(1_700_000_000).unwrap();
        let two = clock_at(1_700_000_000).unwrap();
        assert!(std::ptr::eq(one, two));
        assert!(!std::ptr::eq(one, clock_at(1_700_000_002).unwrap()));
        assert_eq!(
            ymd_hms(DOS_EPOCH.get_current_date_time()),
            ymd_hms(clock_at(FIRST_FAT_SECOND).unwrap().get_current_date_time())
        );
    }
}
