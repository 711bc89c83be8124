#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this).
#
# Installs what the tests hand artifacts to (Debian bookworm packages:
# haproxy 2.6, cloud-init 22.4.2, iptables with both backends, shellcheck,
# iproute2, python3, openssl, sshd for `sshd -t`, mtools and dosfstools to
# read and check seed disks and ESPs, xz-utils for image fixtures,
# mmdebstrap for Debian bases, fdisk for sfdisk, systemd for
# `systemd-analyze verify`, groff-base to check the manual pages, sudo for
# `visudo -c` of the sudoers rule the host setup installs, iputils-ping
# (`ping -M do` proves the VXLAN VNet's MTU), perl (JSON::PP,
# as the host setup reads `qm guest exec`'s answer on Proxmox), age (the
# reference implementation) to decrypt what waddlec encrypts, kubectl (if
# none is installed, Debian's kubernetes-client) to read merged kubeconfigs;
# and from
# bookworm-backports: e2fsprogs >= 1.47.1 for reproducible `mke2fs -d`,
# qemu-utils 10 for `qemu-img`, qemu-system-x86 and ovmf to boot images),
# then: formatting, clippy, cargo-deny (licenses, bans), the S3 server
# the artifact-store tests talk to (s3s-fs, pinned), every unit and
# end-to-end test, and the
# committed review tree checked against a fresh build.
# Needs root: the network tests create namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(haproxy cloud-init iptables shellcheck iproute2 python3 python3-pip python3-yaml procps openssl openssh-server mtools dosfstools xz-utils mmdebstrap fdisk libarchive13 systemd curl groff-base sudo iputils-ping age perl)
backports=(e2fsprogs qemu-utils qemu-system-x86 ovmf)
installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}
missing=()
for package in "${packages[@]}"; do
    installed "$package" || missing+=("$package")
done
# kubectl reads the kubeconfigs `kubeconfig --merge` writes: any kubectl
# will do, else Debian's.
command -v kubectl >/dev/null || missing+=(kubernetes-client)
missing_backports=()
for package in "${backports[@]}"; do
    installed "$package" || missing_backports+=("$package")
done
# Debian 12's own e2fsprogs (1.47.0) cannot make ext4 from a tar reproducibly.
if ! dpkg --compare-versions "$(dpkg-query -W -f='${Version}' e2fsprogs 2>/dev/null)" ge 1.47.1; then
    missing_backports+=(e2fsprogs)
fi
if ((${#missing[@]} + ${#missing_backports[@]})); then
    echo "==> installing ${missing[*]} ${missing_backports[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ((${#missing_backports[@]})) && ! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo 'deb http://deb.debian.org/debian bookworm-backports main' >/etc/apt/sources.list.d/bookworm-backports.list
    fi
    # Install only: no service (sshd, haproxy, cloud-init) may start here.
    policy_rc_d=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        policy_rc_d=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$policy_rc_d"
        chmod 755 "$policy_rc_d"
    fi
    apt-get update -qq
    if ((${#missing[@]})); then
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    if ((${#missing_backports[@]})); then
        apt-get install -y -qq --no-install-recommends -t bookworm-backports "${missing_backports[@]}" >/dev/null
    fi
    if [[ -n "$policy_rc_d" ]]; then
        rm -f "$policy_rc_d"
    fi
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo deny check licenses bans"
# Pinned; installed once. (No advisories: their database is on GitHub, out
# of reach here; see deny.toml.)
deny_version=0.20.2
if [[ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $deny_version" ]]; then
    cargo install --locked --quiet "cargo-deny@$deny_version"
fi
cargo deny check licenses bans
# A real S3 server (SigV4 checked) for the artifact-store tests; see
# tests/e2e/support/s3_server.rs for why this one. Pinned; installed once.
s3s_version=0.14.1
if [[ "$(s3s-fs --version 2>/dev/null)" != "s3s-fs $s3s_version" ]]; then
    echo "==> cargo install s3s-fs $s3s_version"
    cargo install --locked --quiet --features binary "s3s-fs@$s3s_version"
fi
echo "==> cargo test"
cargo test --workspace --locked
echo "==> waddlec build --check (committed out/ is current)"
cargo run --quiet --locked -p waddlec -- build --check
