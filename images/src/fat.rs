//! What the FAT writers share about driving `fatfs` 0.3.6 reproducibly: the
//! fixed clock it is told instead of a real one, and writing one whole file.
//!
//! fatfs stamps every entry it creates or writes with the time its
//! `TimeProvider` gives (built without `chrono`, it reads no clock itself).

use std::io::{self, Write};

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

impl TimeProvider for FixedClock {
    fn get_current_date(&self) -> Date {
        self.0.date
    }

    fn get_current_date_time(&self) -> DateTime {
        self.0
    }
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
