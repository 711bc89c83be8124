//! The Proxmox VE API simulator (`tests/pve-sim/`) checks itself: the
//! deploy tests trust it to refuse what Proxmox refuses.

use std::process::Command;

use crate::support::{repo_root, run, text};

/// The simulator's own checks (`tests/pve-sim/selftest.py`): it accepts what
/// Proxmox accepts and rejects what Proxmox rejects — a misspelled drive
/// sub-key, an unknown parameter, a bad VMID or enum, an unknown path — so
/// "no violations" in the deploy tests means something.
#[test]
fn the_simulator_rejects_what_the_api_schema_rejects() {
    let output =
        run(Command::new("/usr/bin/python3").arg(repo_root().join("tests/pve-sim/selftest.py")));
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}
