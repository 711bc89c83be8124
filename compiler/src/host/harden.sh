#!/bin/bash
# waddlec host init, on the Proxmox host as root: sshd takes keys only
# (a drop-in), and the host's own name resolves (/etc/hosts: pve-cluster
# needs it). Idempotent; prints `changed: …` (or, with `check`,
# `would change: …`) per change.
#
# Usage: harden.sh ROOT NODE ADDRESS check|apply NONCE [SECONDS]
#
# The sshd change can never lock the operator out: after sshd reloads, a
# watchdog restores the previous configuration unless a new login (which
# can only be by key now) creates ROOT/run/waddlec-sshd-proof.NONCE within
# SECONDS (default 60). A configuration sshd rejects (`sshd -t`) or whose
# effective values are not keys-only (`sshd -T`: an earlier drop-in wins)
# is never loaded.
set -euo pipefail

root=$1 node=$2 address=$3 mode=$4 nonce=$5 seconds=${6:-60}
config=$root/etc/ssh/sshd_config
dropin=$root/etc/ssh/sshd_config.d/00-waddlec.conf
proof=$root/run/waddlec-sshd-proof.$nonce
want='# Written by waddlec host init: log in with keys only; root by key only.
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
PermitRootLogin prohibit-password'

report() {
    if [[ $mode == check ]]; then echo "would change: $1"; else echo "changed: $1"; fi
}

# The host's name in /etc/hosts, as the Proxmox installer writes it.
hosts=$root/etc/hosts
if ! awk -v n="$node" '
    /^[[:space:]]*#/ { next }
    { for (i = 2; i <= NF; i++) if ($i == n || index($i, n ".") == 1) found = 1 }
    END { exit !found }' "$hosts" 2>/dev/null; then
    report "$hosts: $address $node (the host's name did not resolve)"
    if [[ $mode == apply ]]; then
        printf '%s %s\n' "$address" "$node" >>"$hosts"
    fi
fi

# sshd: a drop-in only works if the main config includes the directory
# (Debian's does, first thing, so the drop-in's values win).
if ! grep -qiE "^[[:space:]]*Include[[:space:]]+(${root//./\\.})?/etc/ssh/sshd_config\.d/\*\.conf" "$config"; then
    echo "error: $config does not include /etc/ssh/sshd_config.d/*.conf (Debian's default does); add that line first, then run host init again" >&2
    exit 3
fi
if [[ -f $dropin ]] && [[ "$(cat "$dropin")" == "$want" ]]; then
    exit 0
fi
report "sshd: keys only, root by key only ($dropin)"
if [[ $mode == check ]]; then
    exit 0
fi

backup=$dropin.waddlec-previous
rm -f "$backup"
if [[ -f $dropin ]]; then cp -p "$dropin" "$backup"; fi
restore() {
    if [[ -f $backup ]]; then mv -f "$backup" "$dropin"; else rm -f "$dropin"; fi
}
mkdir -p "${dropin%/*}" "$root/run"
printf '%s\n' "$want" >"$dropin.new"
chmod 644 "$dropin.new"
mv -f "$dropin.new" "$dropin"
if ! problem=$(sshd -t -f "$config" 2>&1); then
    restore
    echo "error: sshd rejects the configuration with the drop-in, which was removed again: $problem" >&2
    exit 4
fi
effective=$(sshd -T -f "$config" -C user=root,host=localhost,addr=127.0.0.1 2>&1) || true
for line in "pubkeyauthentication yes" "passwordauthentication no" "permitrootlogin without-password"; do
    if ! grep -qx "$line" <<<"$effective"; then
        restore
        echo "error: with the drop-in, sshd's effective setting is not \`$line\` (another file in sshd_config.d sets it first?); nothing was changed" >&2
        exit 4
    fi
done
systemctl reload ssh
# The watchdog: detached, so this session can end and a new one prove
# that logging in still works.
# shellcheck disable=SC2016 # expanded by the watchdog's own shell
setsid bash -c '
    proof=$1 seconds=$2 backup=$3 dropin=$4
    for _ in $(seq "$seconds"); do
        if [[ -e $proof ]]; then rm -f "$proof" "$backup"; exit 0; fi
        sleep 1
    done
    if [[ -f $backup ]]; then mv -f "$backup" "$dropin"; else rm -f "$dropin"; fi
    systemctl reload ssh
' watchdog "$proof" "$seconds" "$backup" "$dropin" </dev/null >/dev/null 2>&1 &
echo "awaiting proof: $proof"
