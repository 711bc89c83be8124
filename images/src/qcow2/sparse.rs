//! Reading a raw disk file without reading its holes.
//!
//! A raw disk made with `truncate` or `fallocate --dig-holes`, or written by
//! a tool that seeks over zeros, is mostly holes: ranges the file system
//! stores no blocks for and that read as zeros. Reading them costs as much
//! as reading data (the kernel zero-fills every page, then we compare every
//! byte with zero) to learn what the file system already knows. Here the
//! file system is asked where the data is (`lseek` with `SEEK_DATA` and
//! `SEEK_HOLE`, through `rustix`: the workspace forbids `unsafe`), clusters
//! lying wholly in a hole are reported as zero without being read, and the
//! others are read with positional reads. A cluster that is only partly a
//! hole is read whole: its hole part reads as zeros.
//!
//! The image is the same either way: a hole cluster is a zero cluster, and
//! zero clusters were never stored. A file system that cannot tell (the
//! `lseek` fails) is read as all data, as before.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use rustix::fs::SeekFrom;
use rustix::io::Errno;

use super::file::Progress;
use super::layout::CLUSTER_SIZE;
use super::writer::{Filled, RawDisk};

const CLUSTER: usize = CLUSTER_SIZE as usize;

/// A raw disk file of `size` bytes, read chunk by chunk, front to back.
pub struct SparseFile<'f, F> {
    file: &'f File,
    size: u64,
    /// The first data extent, `data..hole`, that ends after the last
    /// position asked about (`data == hole == size` if none is left).
    /// Positions only grow, so it stays right until one reaches `hole`.
    data: u64,
    hole: u64,
    progress: F,
}

impl<'f, F: FnMut(Progress)> SparseFile<'f, F> {
    /// `progress` is called after every chunk.
    pub fn new(file: &'f File, size: u64, progress: F) -> Self {
        SparseFile {
            file,
            size,
            data: 0,
            hole: 0,
            progress,
        }
    }

    /// Where the first data at or after `pos` starts (`size` if none).
    fn next_data(&mut self, pos: u64) -> u64 {
        if pos >= self.hole {
            let size = self.size;
            (self.data, self.hole) = match rustix::fs::seek(self.file, SeekFrom::Data(pos)) {
                Ok(data) if data >= size => (size, size),
                Ok(data) => match rustix::fs::seek(self.file, SeekFrom::Hole(data)) {
                    Ok(hole) => (data, hole.clamp(data + 1, size)),
                    Err(_) => (data, size),
                },
                // ENXIO: nothing but hole from `pos` to the end of the file.
                Err(Errno::NXIO) => (size, size),
                // The file system cannot tell: all data, read as it is.
                Err(_) => (pos, size),
            };
        }
        self.data.max(pos)
    }
}

impl<F: FnMut(Progress)> RawDisk for SparseFile<'_, F> {
    fn read_chunk(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<Filled> {
        let end = offset + buf.len() as u64;
        let mut holes = 0u64;
        for (index, start) in (offset..end).step_by(CLUSTER).enumerate() {
            if self.next_data(start) >= (start + CLUSTER_SIZE).min(end) {
                holes |= 1 << index;
            }
        }
        let is_hole = |at: usize| holes & (1 << (at / CLUSTER)) != 0;
        let mut at = 0;
        while at < buf.len() {
            if is_hole(at) {
                at += CLUSTER;
                continue;
            }
            // One read for each run of clusters that are not holes.
            let mut to = at;
            while to < buf.len() && !is_hole(to) {
                to = (to + CLUSTER).min(buf.len());
            }
            let read = fill_at(self.file, &mut buf[at..to], offset + at as u64)?;
            if read < to - at {
                return Ok(Filled {
                    bytes: at + read,
                    holes,
                });
            }
            at = to;
        }
        (self.progress)(Progress {
            done: end,
            total: self.size,
        });
        Ok(Filled {
            bytes: buf.len(),
            holes,
        })
    }

    fn goes_past(&mut self, size: u64) -> io::Result<bool> {
        Ok(fill_at(self.file, &mut [0], size)? > 0)
    }
}

/// Reads at `offset` until `buf` is full or the file ends; returns the bytes
/// read.
fn fill_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// A sparse file of `size` bytes with `len` bytes of 0xaa at each offset.
    fn sparse(size: u64, writes: &[(u64, usize)]) -> File {
        let file = tempfile::tempfile().unwrap();
        file.set_len(size).unwrap();
        for &(at, len) in writes {
            file.write_all_at(&vec![0xaa; len], at).unwrap();
        }
        file
    }

    #[test]
    fn clusters_wholly_in_holes_are_skipped_and_left_as_they_were() {
        // Data in cluster 1 (one byte) and cluster 15 (its last byte) only.
        let file = sparse(2 * MIB, &[(CLUSTER_SIZE + 7, 1), (MIB - 1, 1)]);
        let mut disk = SparseFile::new(&file, 2 * MIB, |_| {});
        let mut buf = vec![0x55; MIB as usize];
        let filled = disk.read_chunk(0, &mut buf).unwrap();
        assert_eq!(filled.bytes, buf.len());
        // tmpfs and ext4 both report holes at page granularity.
        assert_eq!(filled.holes, 0xffff & !(1 << 1) & !(1 << 15));
        assert_eq!(buf[CLUSTER + 7], 0xaa);
        assert_eq!(buf[CLUSTER + 8], 0, "the hole part of a data cluster");
        assert_eq!(buf[0], 0x55, "a hole cluster is not read");
        assert_eq!(buf[MIB as usize - 1], 0xaa);
        // The second MiB is one hole, reaching the end of the file.
        let filled = disk.read_chunk(MIB, &mut buf).unwrap();
        assert_eq!((filled.bytes, filled.holes), (buf.len(), 0xffff));
        assert!(!disk.goes_past(2 * MIB).unwrap());
        assert!(disk.goes_past(2 * MIB - 1).unwrap());
    }

    #[test]
    fn a_file_shorter_than_its_size_is_a_short_read() {
        let file = sparse(100_000, &[(0, 100_000)]);
        let mut disk = SparseFile::new(&file, MIB, |_| {});
        let mut buf = vec![0; MIB as usize];
        assert_eq!(disk.read_chunk(0, &mut buf).unwrap().bytes, 100_000);
    }
}
