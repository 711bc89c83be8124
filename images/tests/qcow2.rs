//! Raw → qcow2 conversion checked by QEMU itself: every image must pass
//! `qemu-img check`, read back identical to its raw source under
//! `qemu-img compare`, and allocate exactly the clusters that hold data
//! (`qemu-img map`). Fails (never skips) without qemu-img:
//! `tests/run-all.sh` installs it.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test here

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use waddle_images::qcow2::{convert_file, Qcow2Summary, CLUSTER_SIZE};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// A raw disk of `size` bytes, zero except for `writes`, created sparse.
struct Raw {
    dir: tempfile::TempDir,
    path: PathBuf,
    /// Every cluster that holds a non-zero byte.
    data_clusters: BTreeSet<u64>,
}

impl Raw {
    fn new(size: u64, writes: &[(u64, u64)]) -> Raw {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.raw");
        let file = File::create(&path).unwrap();
        file.set_len(size).unwrap();
        let mut data_clusters = BTreeSet::new();
        for &(at, len) in writes {
            assert!(len > 0 && at + len <= size);
            // Bytes 1..=251, so no written byte is zero.
            let bytes: Vec<u8> = (at..at + len).map(|i| (i % 251) as u8 + 1).collect();
            file.write_all_at(&bytes, at).unwrap();
            data_clusters.extend(at / CLUSTER_SIZE..=(at + len - 1) / CLUSTER_SIZE);
        }
        Raw {
            dir,
            path,
            data_clusters,
        }
    }

    /// Converts to `name` beside the raw disk, then checks the image with
    /// qemu-img: clean, identical content, exactly the data clusters mapped.
    fn convert_and_check(&self, name: &str) -> (PathBuf, Qcow2Summary) {
        let qcow2 = self.dir.path().join(name);
        let summary = convert_file(&self.path, &qcow2, |_| {}).unwrap();
        assert_eq!(fs::metadata(&qcow2).unwrap().len(), summary.file_size);
        assert_eq!(summary.data_clusters, self.data_clusters.len() as u64);
        qemu_img(&["check", "-f", "qcow2"], &[&qcow2]);
        let compare = qemu_img(
            &["compare", "-f", "raw", "-F", "qcow2"],
            &[&self.path, &qcow2],
        );
        assert!(compare.contains("Images are identical"), "{compare}");
        assert_eq!(allocated_clusters(&qcow2), self.data_clusters);
        (qcow2, summary)
    }
}

/// Runs qemu-img with `args` then `paths`; panics with its output on failure.
fn qemu_img(args: &[&str], paths: &[&Path]) -> String {
    let output: Output = Command::new("qemu-img")
        .args(args)
        .args(paths)
        .output()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run qemu-img ({err}); run tests/run-all.sh, which installs the test dependencies"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "qemu-img {args:?} {paths:?} failed:\n{text}"
    );
    text
}

/// The virtual clusters `qemu-img map` reports as holding data.
fn allocated_clusters(qcow2: &Path) -> BTreeSet<u64> {
    let json = qemu_img(&["map", "--output=json", "-f", "qcow2"], &[qcow2]);
    let extents: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let mut clusters = BTreeSet::new();
    for extent in extents {
        let (start, length) = (
            extent["start"].as_u64().unwrap(),
            extent["length"].as_u64().unwrap(),
        );
        if extent["data"].as_bool().unwrap() {
            assert_eq!(start % CLUSTER_SIZE, 0, "{extent}");
            assert!(extent["offset"].as_u64().is_some(), "{extent}");
            clusters.extend(start / CLUSTER_SIZE..(start + length).div_ceil(CLUSTER_SIZE));
        } else if length > 0 {
            // (A zero-byte disk maps as one empty extent.)
            assert_eq!(extent["zero"], true, "{extent}");
        }
    }
    clusters
}

#[test]
fn data_at_the_start() {
    Raw::new(8 * MIB, &[(0, 100 * KIB)]).convert_and_check("out.qcow2");
}

#[test]
fn data_at_the_end() {
    Raw::new(8 * MIB, &[(8 * MIB - 512, 512)]).convert_and_check("out.qcow2");
}

#[test]
fn data_across_a_cluster_boundary() {
    let raw = Raw::new(4 * MIB, &[(CLUSTER_SIZE - 100, 200)]);
    assert_eq!(raw.data_clusters, BTreeSet::from([0, 1]));
    raw.convert_and_check("out.qcow2");
}

#[test]
fn sparse_zero_ranges_allocate_nothing() {
    let raw = Raw::new(
        64 * MIB,
        &[
            (0, 1),
            (5 * CLUSTER_SIZE + 7, 3),
            (40 * MIB, 3 * MIB),
            (63 * MIB, 1),
        ],
    );
    let (_, summary) = raw.convert_and_check("out.qcow2");
    assert_eq!(summary.data_clusters, 1 + 1 + 48 + 1);
}

#[test]
fn a_size_that_is_not_a_whole_number_of_clusters() {
    let size = 3 * MIB + 5 * 512;
    let raw = Raw::new(size, &[(size - 1024, 1024), (MIB, 512)]);
    let (qcow2, _) = raw.convert_and_check("out.qcow2");
    let info = qemu_img(&["info", "--output=json", "-f", "qcow2"], &[&qcow2]);
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["virtual-size"], size);
}

#[test]
fn an_all_zero_disk_is_only_metadata() {
    let raw = Raw::new(256 * MIB, &[]);
    let (_, summary) = raw.convert_and_check("out.qcow2");
    // Header, refcount table, refcount block, L1 table.
    assert_eq!(summary.file_size, 4 * CLUSTER_SIZE);
}

#[test]
fn a_zero_byte_disk() {
    let (_, summary) = Raw::new(0, &[]).convert_and_check("out.qcow2");
    assert_eq!(
        summary.file_size,
        3 * CLUSTER_SIZE,
        "header and refcounts, no L1"
    );
}

#[test]
fn spans_without_data_get_no_l2_table() {
    // Three 512 MiB spans (the last one partial); the middle one is empty.
    let size = GIB + 64 * MIB;
    let raw = Raw::new(size, &[(100 * MIB, 1), (GIB + MIB, 2 * CLUSTER_SIZE)]);
    let (qcow2, summary) = raw.convert_and_check("out.qcow2");
    // Front (header, refcount table and block, L1) + 3 data + 2 L2 tables.
    assert_eq!(summary.file_size, (4 + 3 + 2) * CLUSTER_SIZE);
    let l1 = fs::read(&qcow2).unwrap()[3 * CLUSTER_SIZE as usize..][..24].to_vec();
    assert_eq!(l1[8..16], [0; 8], "the empty span has no L2 table");
}

#[test]
fn the_image_is_plain_qcow2_v3_that_proxmox_accepts() {
    let raw = Raw::new(16 * MIB, &[(MIB, 4 * KIB)]);
    let (qcow2, _) = raw.convert_and_check("out.qcow2");
    let info = qemu_img(&["info", "--output=json", "-f", "qcow2"], &[&qcow2]);
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["cluster-size"], 65536, "{info}");
    assert!(info.get("backing-filename").is_none(), "{info}");
    let specific = &info["format-specific"]["data"];
    assert_eq!(specific["compat"], "1.1", "{info}");
    assert_eq!(specific["refcount-bits"], 16, "{info}");
    assert_eq!(specific["lazy-refcounts"], false, "{info}");
    assert_eq!(specific["corrupt"], false, "{info}");
    assert_eq!(specific["extended-l2"], false, "{info}");
    assert!(specific.get("data-file").is_none(), "{info}");
    let header = fs::read(&qcow2).unwrap();
    assert_eq!(
        &header[72..96],
        &[0; 24],
        "no incompatible, compatible or autoclear feature bit"
    );
    assert_eq!(&header[100..104], &112u32.to_be_bytes(), "header length");
    assert_eq!(&header[112..120], &[0; 8], "no header extension");
}

#[test]
fn two_conversions_are_byte_identical() {
    let raw = Raw::new(
        20 * MIB + 512,
        &[(0, 10 * KIB), (7 * MIB - 3, MIB), (20 * MIB, 512)],
    );
    let (first, _) = raw.convert_and_check("first.qcow2");
    let (second, _) = raw.convert_and_check("second.qcow2");
    assert_eq!(fs::read(first).unwrap(), fs::read(second).unwrap());
}

#[test]
fn a_sparse_disk_gives_the_same_image_as_the_same_disk_written_out() {
    // The same content twice: once with holes (as `truncate` leaves them),
    // once with every zero written, so skipping holes unread must agree
    // with reading every byte.
    let size = 64 * MIB;
    let writes = [
        (0, 3 * KIB),
        (CLUSTER_SIZE + 100, 10),
        (5 * MIB - 7, 2 * MIB),
        (size - 512, 512),
    ];
    let sparse = Raw::new(size, &writes);
    let written = Raw::new(size, &writes);
    // Holes read as zeros; writing them back allocates them.
    let content = fs::read(&written.path).unwrap();
    File::options()
        .write(true)
        .open(&written.path)
        .unwrap()
        .write_all_at(&content, 0)
        .unwrap();
    let allocated = |path: &Path| fs::metadata(path).unwrap().blocks() * 512;
    assert!(
        allocated(&sparse.path) < 4 * MIB,
        "the sparse disk has holes"
    );
    assert!(allocated(&written.path) >= size, "the other has none");
    let (from_sparse, _) = sparse.convert_and_check("out.qcow2");
    let (from_written, _) = written.convert_and_check("out.qcow2");
    assert_eq!(
        fs::read(from_sparse).unwrap(),
        fs::read(from_written).unwrap()
    );
}
