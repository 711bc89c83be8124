#!/usr/bin/env bash
# Bare host to serving edge: the wall time of each phase of the twin
# (tests/e2e/twin.rs: a bare Proxmox host rebuilt as namespaces, the API
# simulator in boot mode running QEMU under TCG, the operator's sequence
# from README.md, then the edge proven by traffic), and the total.
#
# The other tool here is the hand-built bring-up the seed describes (OpenTofu,
# shell scripts, `qm importdisk`, iptables pasted in a shell): it has no
# machine-run equivalent to time side by side, so the figures are absolute;
# the goal is bare host -> serving edge under 10 minutes on a 2-core machine
# with a warm image cache (Debian bases in target/tmp/debian-bases).
#
# Phases printed by the test, as `twin: PHASE SECONDS s`:
#   host-init           pin, API identity and token, sshd hardening
#   bake                build --with-secrets: the Debian and Talos images
#   deploy              bridges, uploads, VMs created and booted to their agent
#   boot-to-serving     firewall, listeners, until every edge probe passes
#   bare-host-to-serving  from the start of the test
#   restart-to-serving  stop + start through the API until the edge serves
#   replace-to-serving  rebake, --allow-replace haproxy, edge serves again
#   total
#
# Usage: compiler/benches/twin.sh   (as root: namespaces; ~15 min cold)
set -euo pipefail
cd "$(dirname "$0")/../.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! cargo test --locked --quiet -p waddlec --test e2e -- twin --nocapture >"$log" 2>&1; then
    tail -50 "$log" >&2
    exit 1
fi
echo "phase                       seconds"
grep '^twin: ' "$log" | sed 's/^twin: //; s/ s$//' | awk '{ printf "%-26s %8s\n", $1, $2 }'
