//! Write-behind: gets the disk writing while the conversion still runs.
//!
//! Linux starts writing dirty pages back only once they pass a share of
//! memory, so an image of a few hundred MiB sits in the page cache until the
//! final `fsync`, which then waits for all of it. Here every `SYNC_EVERY`
//! bytes written, a helper thread syncs the file so far, while the
//! conversion goes on; the final sync finds little left to do. The bytes
//! written are the same either way.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread;

/// Bytes written between two early syncs.
const SYNC_EVERY: u64 = 16 << 20;

/// Runs `write` with a writer into `file` that syncs behind itself. Returns
/// what `write` returned, or the error of an early sync: Linux reports a
/// failed write-back once per open file, so an error seen early must not be
/// dropped.
pub fn write_behind<T>(
    file: &File,
    write: impl FnOnce(WriteBehind<'_>) -> T,
) -> Result<T, io::Error> {
    thread::scope(|scope| {
        let (kick, kicks) = mpsc::sync_channel::<()>(1);
        let syncer = scope.spawn(move || -> io::Result<()> {
            for () in kicks {
                file.sync_data()?;
            }
            Ok(())
        });
        let result = write(WriteBehind {
            file,
            unsynced: 0,
            kick,
        });
        syncer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        Ok(result)
    })
}

/// A `File` writer that asks for an early sync every `SYNC_EVERY` bytes.
pub struct WriteBehind<'f> {
    file: &'f File,
    unsynced: u64,
    kick: SyncSender<()>,
}

impl Write for WriteBehind<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.file.write(buf)?;
        self.unsynced += written as u64;
        if self.unsynced >= SYNC_EVERY {
            self.unsynced = 0;
            // A sync already waiting covers these bytes too; a syncer that
            // failed has its error collected by `write_behind`.
            match self.kick.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
            }
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for WriteBehind<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn writes_and_seeks_land_in_the_file() {
        let mut file = tempfile::tempfile().unwrap();
        let big = vec![7u8; (SYNC_EVERY + 5) as usize];
        write_behind(&file, |mut writer| {
            writer.write_all(&big).unwrap();
            writer.seek(SeekFrom::Start(1)).unwrap();
            writer.write_all(b"xy").unwrap();
            writer.flush().unwrap();
        })
        .unwrap();
        let mut back = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut back).unwrap();
        assert_eq!(back.len(), big.len());
        assert_eq!(&back[..4], &[7, b'x', b'y', 7]);
    }
}
