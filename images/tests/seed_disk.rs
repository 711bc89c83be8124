//! The seed disk as its readers see it: `blkid` (util-linux) for the type and
//! label, mtools for the long names and the contents, `fsck.fat` (dosfstools)
//! for the structure. A missing tool fails the test: tests/run-all.sh
//! installs them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use tempfile::TempDir;
use waddle_images::seed_disk::{cidata_fat, SeedDiskError, MAX_SEED_DISK_SIZE, ROOT_DIR_ENTRIES};

const MIB: usize = 1024 * 1024;

/// A Debian VM's seed: ~30 KiB of cloud-config, meta-data, network-config.
fn realistic_seed() -> Vec<(&'static str, Vec<u8>)> {
    let mut user_data = String::from("#cloud-config\nwrite_files:\n");
    let mut n = 0;
    while user_data.len() < 30 * 1024 {
        user_data.push_str(&format!(
            "  - path: /etc/waddle/part-{n:03}.conf\n    permissions: '0644'\n    content: |\n      \
             # part {n} of a configuration delivered by the seed\n      key-{n} = value-{n}\n"
        ));
        n += 1;
    }
    let meta_data = "instance-id: i-2b5c0e8f41d7a913\nlocal-hostname: haproxy\n";
    let network_config = "version: 2\nethernets:\n  eth0:\n    match:\n      macaddress: \
                          \"bc:24:11:00:00:11\"\n    set-name: eth0\n    addresses: \
                          [10.10.0.11/24]\n    routes:\n      - to: default\n        via: \
                          10.10.0.1\n    nameservers:\n      addresses: [10.10.0.1]\n";
    vec![
        ("user-data", user_data.into_bytes()),
        ("meta-data", meta_data.as_bytes().to_vec()),
        ("network-config", network_config.as_bytes().to_vec()),
    ]
}

fn borrowed<'a>(files: &'a [(&'static str, Vec<u8>)]) -> Vec<(&'static str, &'a [u8])> {
    files
        .iter()
        .map(|(name, data)| (*name, data.as_slice()))
        .collect()
}

fn build(files: &[(&'static str, Vec<u8>)]) -> Vec<u8> {
    cidata_fat(&borrowed(files)).expect("seed disk builds")
}

/// Writes `image` to a file in a fresh temp dir.
fn image_file(image: &[u8]) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("seed.img");
    std::fs::write(&path, image).expect("write image");
    (dir, path)
}

/// Runs `tool` (from Debian package `package`), failing the test when it is
/// missing or fails; returns its stdout.
fn run(tool: &str, package: &str, args: &[&str]) -> Vec<u8> {
    let output = match Command::new(tool).args(args).output() {
        Ok(output) => output,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{tool}` (Debian package {package}) is not installed; run tests/run-all.sh, which \
             installs the test dependencies"
        ),
        Err(err) => panic!("cannot run `{tool}`: {err}"),
    };
    assert!(
        output.status.success(),
        "`{tool} {}` failed ({}):\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// `blkid -o export` as key/value pairs.
fn blkid(image: &Path) -> Vec<(String, String)> {
    let out = run("blkid", "util-linux", &["-o", "export", path_arg(image)]);
    String::from_utf8(out)
        .expect("blkid prints text")
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn blkid_value(image: &Path, key: &str) -> String {
    blkid(image)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("blkid reports no {key}"))
}

/// The root directory's long names, as `mdir -b` lists them.
fn mdir_names(image: &Path) -> BTreeSet<String> {
    let out = run("mdir", "mtools", &["-b", "-i", path_arg(image), "::"]);
    String::from_utf8(out)
        .expect("mdir prints text")
        .lines()
        .map(|line| {
            line.strip_prefix("::/")
                .unwrap_or_else(|| panic!("unexpected mdir -b line {line:?}"))
                .to_string()
        })
        .collect()
}

fn mtype(image: &Path, name: &str) -> Vec<u8> {
    run(
        "mtype",
        "mtools",
        &["-i", path_arg(image), &format!("::{name}")],
    )
}

fn fsck_clean(image: &Path) {
    let out = run("fsck.fat", "dosfstools", &["-n", path_arg(image)]);
    let out = String::from_utf8_lossy(&out);
    // A clean volume gives the version line and the summary, nothing else.
    assert_eq!(out.lines().count(), 2, "fsck.fat -n reports:\n{out}");
}

#[test]
fn blkid_sees_a_vfat_volume_labelled_cidata() {
    let (_dir, path) = image_file(&build(&realistic_seed()));
    let found = blkid(&path);
    for expected in [("TYPE", "vfat"), ("LABEL", "CIDATA")] {
        assert!(
            found
                .iter()
                .any(|(k, v)| (k.as_str(), v.as_str()) == expected),
            "blkid -o export misses {expected:?}: {found:?}"
        );
    }
}

#[test]
fn mtools_lists_the_long_names_and_reads_the_exact_contents() {
    let seed = realistic_seed();
    let (_dir, path) = image_file(&build(&seed));
    let expected: BTreeSet<String> = seed.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(mdir_names(&path), expected);
    for (name, data) in &seed {
        assert!(mtype(&path, name) == *data, "{name} reads back altered");
    }
    let listing = String::from_utf8(run("mdir", "mtools", &["-i", path_arg(&path), "::"]))
        .expect("mdir prints text");
    assert!(listing.contains("Volume in drive : is CIDATA"), "{listing}");
    for (name, _) in &seed {
        let line = listing
            .lines()
            .find(|line| line.ends_with(&format!(" {name}")))
            .unwrap_or_else(|| panic!("mdir does not list {name}:\n{listing}"));
        assert!(
            line.contains("1980-01-01"),
            "{name} is not dated 1980-01-01: {line}"
        );
    }
}

#[test]
fn fsck_fat_finds_nothing_to_fix() {
    let (_dir, path) = image_file(&build(&realistic_seed()));
    fsck_clean(&path);
}

#[test]
fn identical_input_builds_identical_bytes_in_any_order() {
    let seed = realistic_seed();
    let first = build(&seed);
    assert_eq!(first.len(), MIB, "a 30 KiB seed takes the smallest disk");
    assert!(first == build(&seed), "two builds differ");
    let mut reversed = seed.clone();
    reversed.reverse();
    assert!(
        first == build(&reversed),
        "the order of the files changes the image"
    );
}

#[test]
fn different_content_gives_a_different_image_and_serial() {
    let seed = realistic_seed();
    let mut changed = seed.clone();
    changed[1].1 = b"instance-id: i-0000000000000001\nlocal-hostname: haproxy\n".to_vec();
    let (a, b) = (build(&seed), build(&changed));
    assert!(a != b, "different meta-data, same image");
    let (_da, path_a) = image_file(&a);
    let (_db, path_b) = image_file(&b);
    assert_ne!(blkid_value(&path_a, "UUID"), blkid_value(&path_b, "UUID"));
}

/// Pins the layout: a new fatfs or a change of geometry changes the bytes of
/// every seed disk, which must be a deliberate change of this hash.
#[test]
fn the_layout_is_pinned() {
    let image = cidata_fat(&[
        ("meta-data", b"instance-id: i-1\n"),
        ("user-data", b"#cloud-config\n"),
    ])
    .expect("builds");
    let hex: String = Sha256::digest(&image)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        hex,
        "b5431fc483871ecc9d2c2fbad99765a47ac4da5b12e901c401ffd39af7aab226"
    );
}

#[test]
fn the_disk_grows_by_whole_mib_as_the_files_need() {
    // 1.5 MiB of user-data cannot fit 1 MiB; 2 MiB holds it, in 1 KiB clusters.
    let big: Vec<u8> = (0..MIB + MIB / 2).map(|i| (i % 251) as u8).collect();
    let seed = vec![("user-data", big), ("meta-data", Vec::new())];
    let image = build(&seed);
    assert_eq!(image.len(), 2 * MIB);
    let (_dir, path) = image_file(&image);
    fsck_clean(&path);
    assert!(
        mtype(&path, "user-data") == seed[0].1,
        "user-data reads back altered"
    );
    assert!(
        mtype(&path, "meta-data").is_empty(),
        "empty meta-data reads back non-empty"
    );
}

#[test]
fn a_seed_too_big_for_the_largest_disk_is_refused() {
    let max = MAX_SEED_DISK_SIZE.bytes() as usize;
    // Just under the largest disk's size: only trying it shows it does not fit.
    for size in [max - 1, max + 1] {
        let data = vec![b'x'; size];
        match cidata_fat(&[("user-data", &data)]) {
            Err(SeedDiskError::TooBig { content, limit }) => {
                assert_eq!(content, size as u64);
                assert_eq!(limit, MAX_SEED_DISK_SIZE);
            }
            other => panic!("{size} bytes of user-data: {other:?}"),
        }
    }
}

#[test]
fn names_that_are_not_plain_file_names_are_refused() {
    let too_long = "a".repeat(256);
    for name in [
        "",
        ".",
        "..",
        ".hidden",
        "trailing.",
        "dir/user-data",
        "/user-data",
        "dir\\user-data",
        "user data",
        "user:data",
        "üser-data",
        too_long.as_str(),
    ] {
        match cidata_fat(&[(name, b"x")]) {
            Err(SeedDiskError::BadName(refused)) => assert_eq!(refused, name),
            other => panic!("{name:?}: {other:?}"),
        }
    }
    let longest = "a".repeat(255);
    assert!(cidata_fat(&[(longest.as_str(), b"x")]).is_ok());
}

#[test]
fn names_equal_but_for_case_are_refused() {
    match cidata_fat(&[("user-data", b"a"), ("User-Data", b"b")]) {
        Err(SeedDiskError::DuplicateName(name)) => assert_eq!(name, "User-Data"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_root_directory_takes_as_many_names_as_it_has_entries() {
    // 13-character names take two entries each (short name + one long-name
    // entry); with the label's entry, 255 of them fill 511 of 512 entries.
    let per_file = 2;
    let fit = (usize::from(ROOT_DIR_ENTRIES) - 1) / per_file;
    let names: Vec<String> = (0..=fit).map(|i| format!("config-{i:06}")).collect();
    assert!(names.iter().all(|n| n.len() == 13));
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), n.as_bytes())).collect();

    match cidata_fat(&files) {
        Err(SeedDiskError::RootDirectoryFull {
            files: count,
            needed,
        }) => {
            assert_eq!((count, needed), (fit + 1, 1 + (fit + 1) * per_file));
        }
        other => panic!("{} names: {other:?}", fit + 1),
    }

    // One fewer fits, every short alias distinct, every name and content intact.
    let image = cidata_fat(&files[..fit]).expect("builds");
    let (_dir, path) = image_file(&image);
    fsck_clean(&path);
    let expected: BTreeSet<String> = names[..fit].iter().cloned().collect();
    assert_eq!(mdir_names(&path), expected);
    for name in [&names[0], &names[fit / 2], &names[fit - 1]] {
        assert_eq!(mtype(&path, name), name.as_bytes());
    }
}
