//! `waddlec image convert`: the exit codes and the file it leaves, as a
//! user sees them. The format itself is tested against qemu-img in
//! `images/tests/qcow2.rs`.

use std::fs;

use crate::support::{require, run, sh, shell_quote, text, waddlec};

#[test]
fn converts_a_raw_disk_into_a_qcow2_image_qemu_accepts() {
    require("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    let (raw, qcow2) = (dir.path().join("disk.raw"), dir.path().join("disk.qcow2"));
    let mut disk = vec![0u8; 4 << 20];
    disk[3 << 20..(3 << 20) + 5].copy_from_slice(b"hello");
    fs::write(&raw, &disk).unwrap();
    let output = run(waddlec().args(["image", "convert"]).arg(&raw).arg(&qcow2));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("4.0 MiB disk, 1 data clusters"),
        "{}",
        text(&output.stderr)
    );
    sh(&format!(
        "qemu-img check -f qcow2 {}",
        shell_quote(&qcow2.display().to_string())
    ));
    sh(&format!(
        "qemu-img compare -f raw -F qcow2 {} {}",
        shell_quote(&raw.display().to_string()),
        shell_quote(&qcow2.display().to_string())
    ));
}

#[test]
fn an_unreadable_input_exits_74_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(waddlec()
        .args(["image", "convert"])
        .arg(dir.path().join("missing.raw"))
        .arg(dir.path().join("out.qcow2")));
    assert_eq!(output.status.code(), Some(74), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("missing.raw"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_size_that_is_not_whole_sectors_is_refused_as_usage() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("odd.raw");
    fs::write(&raw, [1u8; 1000]).unwrap();
    let output = run(waddlec()
        .args(["image", "convert"])
        .arg(&raw)
        .arg(dir.path().join("out.qcow2")));
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("multiple of 512"),
        "{}",
        text(&output.stderr)
    );
    assert!(!dir.path().join("out.qcow2").exists());
}
