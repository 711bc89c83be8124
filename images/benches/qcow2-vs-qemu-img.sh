#!/usr/bin/env bash
# Raw → qcow2: `waddlec image convert` against `qemu-img convert -O qcow2`.
#
# Builds waddlec (release), makes a deterministic 2 GiB raw disk with 704 MiB
# of data (64 extents of 11 MiB of AES-CTR keystream, one every 32 MiB, zeros
# written out in between, as a decompressed image has them), then converts it
# with both tools, alternating, RUNS times each after one warm-up run each,
# and reports wall time and peak RSS from /usr/bin/time -v (package `time`).
# waddlec syncs its output before renaming it into place; qemu-img convert
# does not sync (its default cache mode for the target is `unsafe`), so it is
# also measured followed by `sync -d` on its output, the same work. The
# images are checked equal to the raw disk with `qemu-img compare`.
#
# Goal: waddlec's wall time at most qemu-img's; peak RSS under 64 MiB.
#
# Usage: images/benches/qcow2-vs-qemu-img.sh [WORKDIR]   (needs ~3.5 GiB free;
# default: a temporary directory, removed afterwards). RUNS=5 by default.
set -euo pipefail
cd "$(dirname "$0")/../.."

runs=${RUNS:-5}
for tool in qemu-img openssl /usr/bin/time; do
    command -v "$tool" >/dev/null || {
        echo "error: $tool is missing (apt-get install qemu-utils openssl time)" >&2
        exit 1
    }
done

cargo build --release --locked --quiet -p waddlec
waddlec="${CARGO_TARGET_DIR:-target}/release/waddlec"

if [[ $# -gt 0 ]]; then
    work=$1
    mkdir -p "$work"
else
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
fi
raw=$work/disk.raw

echo "==> making $raw (2 GiB, 704 MiB of data)"
rm -f "$raw"
# A fully written file of zeros, then the data extents over it.
dd if=/dev/zero of="$raw" bs=4M count=512 status=none
# (A process substitution: openssl's SIGPIPE at the end is not a failure.)
for ((extent = 0; extent < 64; extent++)); do
    dd of="$raw" bs=1M seek=$((extent * 32)) count=11 iflag=fullblock conv=notrunc status=none
done < <(openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f -iv 0 -in /dev/zero 2>/dev/null)
sync "$raw"
sha256sum "$raw"

# Runs a command under /usr/bin/time -v; prints "seconds kib".
measure() {
    local log=$work/time.log
    /usr/bin/time -v -o "$log" "$@" >/dev/null 2>&1
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {
        n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s }' "$log")
    rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$log")
    echo "$wall $rss"
}

qemu_out=$work/qemu-img.qcow2
synced_out=$work/qemu-img-synced.qcow2
ours_out=$work/waddlec.qcow2
# `sync` first: qemu-img leaves its output to be written back, and no run
# should pay for the one before it.
run_qemu() { rm -f "$qemu_out"; sync; measure qemu-img convert -f raw -O qcow2 "$raw" "$qemu_out"; }
# The same work as waddlec: the image is on disk when the command returns.
run_synced() {
    rm -f "$synced_out"
    sync
    # shellcheck disable=SC2016 # expanded by the inner shell
    measure sh -c 'qemu-img convert -f raw -O qcow2 "$1" "$2" && sync -d "$2"' sh "$raw" "$synced_out"
}
run_ours() { rm -f "$ours_out"; sync; measure "$waddlec" image convert "$raw" "$ours_out"; }

echo "==> warm-up"
run_qemu >/dev/null
run_synced >/dev/null
run_ours >/dev/null

qemu_results=()
synced_results=()
ours_results=()
for ((run = 1; run <= runs; run++)); do
    qemu_results+=("$(run_qemu)")
    synced_results+=("$(run_synced)")
    ours_results+=("$(run_ours)")
    echo "run $run (s, KiB): qemu-img ${qemu_results[-1]};" \
        "qemu-img+sync ${synced_results[-1]}; waddlec ${ours_results[-1]}"
done

qemu-img compare -f raw -F qcow2 "$raw" "$qemu_out" >/dev/null
qemu-img compare -f raw -F qcow2 "$raw" "$ours_out" >/dev/null
qemu-img check -q -f qcow2 "$ours_out"

# "min-wall median-wall max-rss-MiB" of "seconds kib" lines.
stats() {
    printf '%s\n' "$@" | sort -n -k1 |
        awk '{ w[NR] = $1; if ($2 > r) r = $2 }
             END { printf "%.2f %.2f %.1f\n", w[1], w[int((NR + 1) / 2)], r / 1024 }'
}
read -r qemu_min qemu_wall qemu_rss < <(stats "${qemu_results[@]}")
read -r synced_min synced_wall synced_rss < <(stats "${synced_results[@]}")
read -r ours_min ours_wall ours_rss < <(stats "${ours_results[@]}")

echo
printf '%-14s %10s %12s %14s %12s\n' tool "min wall" "median wall" "max peak RSS" "output size"
row() { printf '%-14s %8s s %10s s %10s MiB %12s\n' "$@"; }
row qemu-img "$qemu_min" "$qemu_wall" "$qemu_rss" "$(stat -c %s "$qemu_out")"
row qemu-img+sync "$synced_min" "$synced_wall" "$synced_rss" "$(stat -c %s "$synced_out")"
row waddlec "$ours_min" "$ours_wall" "$ours_rss" "$(stat -c %s "$ours_out")"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "waddlec / qemu-img median wall: $(ratio "$ours_wall" "$qemu_wall")x" \
    "(against qemu-img+sync: $(ratio "$ours_wall" "$synced_wall")x); goal <= 1.00x"
echo "waddlec peak RSS: $ours_rss MiB; goal < 64 MiB"
