//! The streaming conversion: reads the raw disk once, front to back, in
//! fixed-size chunks; writes every cluster that holds a non-zero byte at the
//! next free cluster of the file, each 512 MiB span's L2 table right after
//! that span's data, and finally the front (header, refcounts, L1) into the
//! space the layout reserved for it.
//!
//! The disk comes as a `RawDisk`: any `Read` (every byte read), or a file
//! whose holes are skipped (`sparse`).
//!
//! Reading and writing overlap: the calling thread reads chunks and marks
//! their all-zero clusters, and a second thread writes the others, so the
//! two copies through the kernel (page cache → buffer → page cache) run on
//! two cores. The chunks go round a fixed pool of `BUFFERS` buffers.
//!
//! Memory: `BUFFERS` chunks (4 × 1 MiB), one L2 table (64 KiB), one cluster
//! for encoding the front (64 KiB), and the L1 table (8 bytes per 512 MiB
//! of virtual size: 32 bytes for 2 GiB, 16 KiB for 1 TiB). Nothing else
//! grows with the image: refcounts are derived from the final cluster count
//! (see `layout`), not stored per cluster.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread;

use super::error::Qcow2Error;
use super::layout::{Layout, CLUSTER_SIZE, L2_ENTRIES};
use super::tables;
use super::zero::is_zero;

/// Bytes read at once: large enough that system calls cost nothing next to
/// the copying, small enough to stay in cache. A whole number of clusters
/// that divides a 512 MiB span, so a chunk never straddles two L2 tables.
const CHUNK_SIZE: usize = 1 << 20;
/// Chunks in flight between the reading and the writing thread.
const BUFFERS: usize = 4;
const CLUSTER: usize = CLUSTER_SIZE as usize;
const _: () = assert!(CHUNK_SIZE.is_multiple_of(CLUSTER));
// One bit per cluster of a chunk says whether it holds data.
const _: () = assert!(CHUNK_SIZE / CLUSTER <= 64);
const _: () = assert!((L2_ENTRIES * CLUSTER_SIZE).is_multiple_of(CHUNK_SIZE as u64));

/// A chunk buffer whose bytes start on a page boundary. The kernel copies
/// file data into it with `rep movsb`, which on AMD Zen is far slower when
/// the destination is not aligned like the page-cache source (measured on
/// the benchmark's 2 GiB disk: 0.46 s of copying into a `Vec` from `malloc`,
/// which starts 16 bytes into a page, against 0.2 s page-aligned).
struct Buffer(Vec<u8>);

const PAGE: usize = 4096;

impl Buffer {
    fn new() -> Self {
        Buffer(vec![0; CHUNK_SIZE + PAGE])
    }

    fn start(&self) -> usize {
        // `align_offset` may give up (usize::MAX); unaligned is still correct.
        Some(self.0.as_ptr().align_offset(PAGE))
            .filter(|&offset| offset < PAGE)
            .unwrap_or(0)
    }

    fn bytes(&self) -> &[u8] {
        let start = self.start();
        &self.0[start..start + CHUNK_SIZE]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        let start = self.start();
        &mut self.0[start..start + CHUNK_SIZE]
    }
}

/// What a conversion wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Qcow2Summary {
    /// The disk's size as the guest sees it (the raw image's size).
    pub virtual_size: u64,
    /// Clusters holding data; every other cluster of the disk reads as zero
    /// without taking space.
    pub data_clusters: u64,
    /// Bytes of the qcow2 file: data clusters plus metadata.
    pub file_size: u64,
}

/// From the reading thread to the writing one.
enum Message {
    /// `data[..len]`, whole clusters, starting at cluster `first` of the
    /// disk; bit `i` of `non_zero` is set if cluster `i` holds data.
    Chunk {
        first: u64,
        data: Buffer,
        len: usize,
        non_zero: u64,
    },
    /// The input ended exactly at the virtual size: finish the image.
    End,
}

/// Converts the raw disk image read from `input`, exactly `virtual_size`
/// bytes long, into a qcow2 v3 image written to `output` from offset 0.
/// `output` should be empty: the image is written in place and nothing past
/// its end is truncated. If reading fails, the image is left unfinished
/// (no header).
///
/// The same input always gives the same bytes.
pub fn convert(
    input: impl Read,
    virtual_size: u64,
    output: impl Write + Seek + Send,
) -> Result<Qcow2Summary, Qcow2Error> {
    convert_disk(Stream(input), virtual_size, output)
}

/// Where the reading thread gets the raw disk from, a chunk at a time, in
/// order, front to back.
pub(super) trait RawDisk {
    /// Fills `buf` with the disk's bytes from `offset` (a cluster boundary)
    /// on, except whole clusters the disk knows to read as zeros: those it
    /// may leave as they are, setting bit `i` of `holes` for cluster `i`.
    fn read_chunk(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<Filled>;
    /// True if the disk has bytes at or after `size`.
    fn goes_past(&mut self, size: u64) -> io::Result<bool>;
}

/// What `RawDisk::read_chunk` did.
pub(super) struct Filled {
    /// Bytes of the chunk there were: fewer than asked if the disk ended.
    pub(super) bytes: usize,
    /// Bit `i` is set if cluster `i` of the chunk was skipped as a hole.
    pub(super) holes: u64,
}

/// A disk read as a stream, every byte of it.
struct Stream<R>(R);

impl<R: Read> RawDisk for Stream<R> {
    fn read_chunk(&mut self, _: u64, buf: &mut [u8]) -> io::Result<Filled> {
        Ok(Filled {
            bytes: fill(&mut self.0, buf)?,
            holes: 0,
        })
    }

    fn goes_past(&mut self, _: u64) -> io::Result<bool> {
        Ok(fill(&mut self.0, &mut [0])? > 0)
    }
}

/// `convert`, from a disk that may know where its holes are.
pub(super) fn convert_disk(
    mut input: impl RawDisk,
    virtual_size: u64,
    output: impl Write + Seek + Send,
) -> Result<Qcow2Summary, Qcow2Error> {
    let layout = Layout::new(virtual_size)?;
    let (to_writer, chunks) = mpsc::sync_channel(BUFFERS);
    let (to_reader, free) = mpsc::channel();
    for _ in 0..BUFFERS {
        let _ = to_reader.send(Buffer::new());
    }
    thread::scope(|scope| {
        let writer = scope.spawn(move || write_image(output, layout, &chunks, &to_reader));
        let read = read_chunks(&mut input, virtual_size, &free, &to_writer);
        drop(to_writer);
        let written = writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        match (read, written) {
            (Err(err), _) | (Ok(()), Err(err)) => Err(err),
            (Ok(()), Ok(Some(summary))) => Ok(summary),
            // The reader sent `End` unless the writer had already failed.
            (Ok(()), Ok(None)) => Err(Qcow2Error::Write(io::Error::other(
                "the writer stopped before the end of the input",
            ))),
        }
    })
}

/// The reading side: fills free buffers and sends them on, then `End`.
/// Returns early, without an error of its own, if the writer has stopped.
fn read_chunks(
    input: &mut impl RawDisk,
    virtual_size: u64,
    free: &Receiver<Buffer>,
    to_writer: &SyncSender<Message>,
) -> Result<(), Qcow2Error> {
    let mut offset = 0;
    while offset < virtual_size {
        let Ok(mut buffer) = free.recv() else {
            return Ok(());
        };
        let len = (virtual_size - offset).min(CHUNK_SIZE as u64) as usize;
        let data = buffer.bytes_mut();
        let filled = input
            .read_chunk(offset, &mut data[..len])
            .map_err(Qcow2Error::Read)?;
        if filled.bytes < len {
            return Err(Qcow2Error::ShortInput {
                read: offset + filled.bytes as u64,
                expected: virtual_size,
            });
        }
        // The disk's last cluster may be partial: it is stored whole, with
        // zeros after the end of the disk.
        let padded = len.next_multiple_of(CLUSTER);
        data[len..padded].fill(0);
        // Checked here, while the chunk is still in this core's cache.
        // Holes are zero clusters, and are not looked at.
        let non_zero = data[..padded]
            .chunks_exact(CLUSTER)
            .enumerate()
            .filter(|(index, cluster)| filled.holes & (1 << index) == 0 && !is_zero(cluster))
            .fold(0, |bits, (index, _)| bits | 1 << index);
        if to_writer
            .send(Message::Chunk {
                first: offset / CLUSTER_SIZE,
                data: buffer,
                len: padded,
                non_zero,
            })
            .is_err()
        {
            return Ok(());
        }
        offset += len as u64;
    }
    if input.goes_past(virtual_size).map_err(Qcow2Error::Read)? {
        return Err(Qcow2Error::LongInput {
            expected: virtual_size,
        });
    }
    let _ = to_writer.send(Message::End);
    Ok(())
}

/// The writing side: adds chunks as they come and hands their buffers back;
/// finishes the image on `End`. `None` if the reader gave up first.
fn write_image(
    output: impl Write + Seek,
    layout: Layout,
    chunks: &Receiver<Message>,
    to_reader: &Sender<Buffer>,
) -> Result<Option<Qcow2Summary>, Qcow2Error> {
    let mut image = Image::new(output, layout)?;
    for message in chunks {
        match message {
            Message::Chunk {
                first,
                data,
                len,
                non_zero,
            } => {
                image.add_chunk(first, &data.bytes()[..len], non_zero)?;
                let _ = to_reader.send(data);
            }
            Message::End => return image.finish().map(Some),
        }
    }
    Ok(None)
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn fill(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// The image being written: where the next cluster goes, the L1 table and the
/// L2 table of the span being read.
struct Image<W> {
    output: W,
    layout: Layout,
    /// Next free cluster of the file; every cluster before it is used once.
    next_cluster: u64,
    data_clusters: u64,
    l1: Vec<u64>,
    /// The L2 table of span `span`, encoded; written only if it maps any data.
    l2: Vec<u8>,
    span: u64,
    l2_used: bool,
}

impl<W: Write + Seek> Image<W> {
    fn new(mut output: W, layout: Layout) -> Result<Self, Qcow2Error> {
        let data_start = layout.front_clusters();
        output
            .seek(SeekFrom::Start(data_start * CLUSTER_SIZE))
            .map_err(Qcow2Error::Write)?;
        Ok(Image {
            output,
            layout,
            next_cluster: data_start,
            data_clusters: 0,
            l1: vec![0; layout.l1_entries as usize],
            l2: vec![0; CLUSTER],
            span: 0,
            l2_used: false,
        })
    }

    /// Adds whole clusters of the disk, starting at cluster `first`, all in
    /// one span; bit `i` of `non_zero` is set if cluster `i` holds data.
    /// Those take the next clusters of the file in order, and each run of
    /// them is written with one call.
    fn add_chunk(&mut self, first: u64, chunk: &[u8], non_zero: u64) -> Result<(), Qcow2Error> {
        let span = first / L2_ENTRIES;
        if span != self.span {
            self.finish_span()?;
            self.span = span;
        }
        let mut run: Option<usize> = None;
        for index in 0..chunk.len() / CLUSTER {
            if non_zero & (1 << index) == 0 {
                if let Some(start) = run.take() {
                    self.write(&chunk[start * CLUSTER..index * CLUSTER])?;
                }
                continue;
            }
            run.get_or_insert(index);
            let slot = ((first + index as u64) % L2_ENTRIES) as usize;
            tables::put_entry(&mut self.l2, slot, tables::entry(self.next_cluster));
            self.next_cluster += 1;
            self.data_clusters += 1;
            self.l2_used = true;
        }
        if let Some(start) = run {
            self.write(&chunk[start * CLUSTER..])?;
        }
        Ok(())
    }

    /// Writes the current span's L2 table after its data, if it maps any.
    fn finish_span(&mut self) -> Result<(), Qcow2Error> {
        if !self.l2_used {
            return Ok(());
        }
        self.l1[self.span as usize] = tables::entry(self.next_cluster);
        self.next_cluster += 1;
        self.output.write_all(&self.l2).map_err(Qcow2Error::Write)?;
        self.l2.fill(0);
        self.l2_used = false;
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), Qcow2Error> {
        self.output.write_all(bytes).map_err(Qcow2Error::Write)
    }

    /// Writes the last L2 table, then the front: header, refcount table,
    /// refcount blocks (every cluster so far used once) and L1 table.
    fn finish(mut self) -> Result<Qcow2Summary, Qcow2Error> {
        self.finish_span()?;
        let layout = self.layout;
        let clusters = self.next_cluster;
        debug_assert!(clusters <= layout.max_clusters());
        self.output
            .seek(SeekFrom::Start(0))
            .map_err(Qcow2Error::Write)?;
        let mut cluster = vec![0u8; CLUSTER];
        tables::header(&layout, &mut cluster);
        self.write(&cluster)?;
        for index in 0..layout.refcount_table_clusters {
            tables::refcount_table(&layout, index, &mut cluster);
            self.write(&cluster)?;
        }
        for index in 0..layout.refcount_blocks {
            tables::refcount_block(index, clusters, &mut cluster);
            self.write(&cluster)?;
        }
        for index in 0..layout.l1_clusters {
            tables::l1_table(&self.l1, index, &mut cluster);
            self.write(&cluster)?;
        }
        self.output.flush().map_err(Qcow2Error::Write)?;
        Ok(Qcow2Summary {
            virtual_size: layout.virtual_size,
            data_clusters: self.data_clusters,
            file_size: clusters * CLUSTER_SIZE,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    const MIB: u64 = 1 << 20;

    fn disk(size: u64, data: &[(u64, &[u8])]) -> Vec<u8> {
        let mut disk = vec![0; size as usize];
        for (at, bytes) in data {
            disk[*at as usize..*at as usize + bytes.len()].copy_from_slice(bytes);
        }
        disk
    }

    fn convert_bytes(raw: &[u8]) -> (Qcow2Summary, Vec<u8>) {
        let mut out = Cursor::new(Vec::new());
        let summary = convert(raw, raw.len() as u64, &mut out).unwrap();
        (summary, out.into_inner())
    }

    #[test]
    fn non_zero_clusters_follow_the_front_in_disk_order_then_their_l2_table() {
        let raw = disk(
            8 * MIB,
            &[(0, b"boot"), (5 * MIB + 3, b"x"), (8 * MIB - 1, b"z")],
        );
        let (summary, qcow2) = convert_bytes(&raw);
        // Front: header, refcount table, one refcount block, one L1 cluster.
        let front = 4 * CLUSTER;
        assert_eq!(summary.data_clusters, 3);
        assert_eq!(summary.file_size, (front + 4 * CLUSTER) as u64);
        assert_eq!(qcow2.len() as u64, summary.file_size);
        assert_eq!(&qcow2[front..front + 4], b"boot");
        assert_eq!(
            qcow2[front + CLUSTER + 3 + (5 * MIB as usize) % CLUSTER],
            b'x'
        );
        assert_eq!(qcow2[front + 3 * CLUSTER - 1], b'z');
        let l2 = &qcow2[front + 3 * CLUSTER..];
        let l2_entry =
            |slot: usize| u64::from_be_bytes(l2[slot * 8..slot * 8 + 8].try_into().unwrap());
        assert_eq!(l2_entry(0), tables::entry(4));
        assert_eq!(l2_entry(80), tables::entry(5));
        assert_eq!(l2_entry(127), tables::entry(6));
        assert_eq!(l2_entry(1), 0);
    }

    #[test]
    fn the_same_input_gives_the_same_bytes() {
        let raw = disk(3 * MIB + 512, &[(65530, b"across a cluster boundary")]);
        assert_eq!(convert_bytes(&raw), convert_bytes(&raw));
    }

    #[test]
    fn reads_that_return_little_or_are_interrupted_are_retried() {
        struct Trickle<'a>(&'a [u8], bool);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.1 = !self.1;
                if self.1 {
                    return Err(io::ErrorKind::Interrupted.into());
                }
                let n = buf.len().min(self.0.len()).min(4093);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let raw = disk(MIB, &[(70000, b"data")]);
        let mut out = Cursor::new(Vec::new());
        convert(Trickle(&raw, false), MIB, &mut out).unwrap();
        assert_eq!(out.into_inner(), convert_bytes(&raw).1);
    }

    #[test]
    fn input_shorter_or_longer_than_the_size_is_refused() {
        let raw = vec![0u8; 4096];
        let err = convert(&raw[..], 8192, Cursor::new(Vec::new())).unwrap_err();
        assert!(
            matches!(
                err,
                Qcow2Error::ShortInput {
                    read: 4096,
                    expected: 8192
                }
            ),
            "{err}"
        );
        let err = convert(&raw[..], 2048, Cursor::new(Vec::new())).unwrap_err();
        assert!(
            matches!(err, Qcow2Error::LongInput { expected: 2048 }),
            "{err}"
        );
    }

    #[test]
    fn a_failed_read_leaves_the_image_without_a_header() {
        struct Broken(u64);
        impl Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk on fire"));
                }
                let n = buf.len().min(self.0 as usize);
                buf[..n].fill(1);
                self.0 -= n as u64;
                Ok(n)
            }
        }
        let mut out = Cursor::new(Vec::new());
        let err = convert(Broken(3 * MIB), 8 * MIB, &mut out).unwrap_err();
        assert!(matches!(err, Qcow2Error::Read(_)), "{err}");
        assert!(err.to_string().contains("disk on fire"), "{err}");
        assert!(!out.into_inner().starts_with(b"QFI"));
    }

    #[test]
    fn a_failed_write_is_reported_and_stops_the_reading() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("no space left"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        impl Seek for Full {
            fn seek(&mut self, _: SeekFrom) -> io::Result<u64> {
                Ok(0)
            }
        }
        let raw = disk(64 * MIB, &[(0, b"data")]);
        let err = convert(&raw[..], raw.len() as u64, Full).unwrap_err();
        assert!(matches!(err, Qcow2Error::Write(_)), "{err}");
        assert!(err.to_string().contains("no space left"), "{err}");
    }
}
