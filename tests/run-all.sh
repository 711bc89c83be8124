#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this).
#
# Installs what the tests hand artifacts to (Debian bookworm packages:
# haproxy 2.6, cloud-init 22.4.2, iptables with both backends, shellcheck,
# iproute2, python3, openssl, sshd for `sshd -t`, mtools and dosfstools for
# seed disks, xz-utils for image fixtures),
# then: formatting, clippy, every unit and end-to-end test, and the
# committed review tree checked against a fresh build.
# Needs root: the network tests create namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(haproxy cloud-init iptables shellcheck iproute2 python3 python3-yaml procps openssl openssh-server mtools dosfstools xz-utils)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "==> installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Install only: no service (sshd, haproxy, cloud-init) may start here.
    policy_rc_d=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        policy_rc_d=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$policy_rc_d"
        chmod 755 "$policy_rc_d"
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [[ -n "$policy_rc_d" ]]; then
        rm -f "$policy_rc_d"
    fi
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --workspace --locked
echo "==> waddlec build --check (committed out/ is current)"
cargo run --quiet --locked -p waddlec -- build --check
