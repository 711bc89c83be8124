#!/usr/bin/env bash
# Raw → qcow2: `waddlec image convert` against `qemu-img convert -O qcow2`.
#
# Builds waddlec (release), then makes the same deterministic 2 GiB raw disk
# twice, with 704 MiB of data (64 extents of 11 MiB of AES-CTR keystream,
# one every 32 MiB):
#   zero-filled  the zeros in between written out, as a decompressed image
#                has them;
#   sparse       the zeros in between left as holes, as `truncate` (or a
#                tool that seeks over zeros) leaves them.
# For each, converts it with both tools, alternating, RUNS times each after
# one warm-up run each, and reports wall time, user CPU time and peak RSS
# from /usr/bin/time -v (package `time`), and waddlec's ratios to qemu-img.
# waddlec syncs its output before renaming it into place; qemu-img convert
# does not sync (its default cache mode for the target is `unsafe`), so it is
# also measured followed by `sync -d` on its output, the same work. The
# images are checked equal to the raw disk with `qemu-img compare`, and
# waddlec's two images (from either disk) byte for byte with each other.
#
# Goal: waddlec's wall time at most qemu-img+sync's; peak RSS under 64 MiB.
#
# Usage: images/benches/qcow2-vs-qemu-img.sh [WORKDIR]   (needs ~5 GiB free;
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
# Makes the raw disk $1; $2 is `zero-filled` or `sparse`.
make_raw() {
    local raw=$1
    echo "==> making $raw (2 GiB, 704 MiB of data, $2)"
    rm -f "$raw"
    if [[ $2 == zero-filled ]]; then
        dd if=/dev/zero of="$raw" bs=4M count=512 status=none
    else
        truncate -s 2G "$raw"
    fi
    # (A process substitution: openssl's SIGPIPE at the end is not a failure.)
    for ((extent = 0; extent < 64; extent++)); do
        dd of="$raw" bs=1M seek=$((extent * 32)) count=11 iflag=fullblock conv=notrunc status=none
    done < <(openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f -iv 0 -in /dev/zero 2>/dev/null)
    sync "$raw"
    echo "    $(sha256sum "$raw" | cut -d' ' -f1), $(du -m "$raw" | cut -f1) MiB allocated"
}

# Runs a command under /usr/bin/time -v; prints "seconds user-seconds kib".
measure() {
    local log=$work/time.log
    /usr/bin/time -v -o "$log" "$@" >/dev/null 2>&1
    awk -F': ' '
        /Elapsed \(wall clock\)/ {
            n = split($2, t, ":"); wall = 0; for (i = 1; i <= n; i++) wall = wall * 60 + t[i] }
        /User time \(seconds\)/ { user = $2 }
        /Maximum resident set size/ { rss = $2 }
        END { print wall, user, rss }' "$log"
}

# "min-wall median-wall median-user max-rss-MiB" of "seconds user kib" lines.
stats() {
    printf '%s\n' "$@" | sort -n -k1 |
        awk '{ w[NR] = $1; if ($3 > r) r = $3 }
             END { printf "%.2f %.2f ", w[1], w[int((NR + 1) / 2)] }'
    printf '%s\n' "$@" | sort -n -k2 |
        awk '{ u[NR] = $2; if ($3 > r) r = $3 }
             END { printf "%.2f %.1f\n", u[int((NR + 1) / 2)], r / 1024 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

# Benchmarks the conversions of raw disk $1 (labelled $2).
bench() {
    local raw=$1 label=$2
    local qemu_out=$work/qemu-img.qcow2 synced_out=$work/qemu-img-synced.qcow2
    local ours_out=$work/waddlec-$label.qcow2
    # `sync` first: qemu-img leaves its output to be written back, and no
    # run should pay for the one before it.
    run_qemu() { rm -f "$qemu_out"; sync; measure qemu-img convert -f raw -O qcow2 "$raw" "$qemu_out"; }
    # The same work as waddlec: the image is on disk when the command returns.
    run_synced() {
        rm -f "$synced_out"
        sync
        # shellcheck disable=SC2016 # expanded by the inner shell
        measure sh -c 'qemu-img convert -f raw -O qcow2 "$1" "$2" && sync -d "$2"' sh "$raw" "$synced_out"
    }
    run_ours() { rm -f "$ours_out"; sync; measure "$waddlec" image convert "$raw" "$ours_out"; }

    echo "==> $label: warm-up"
    run_qemu >/dev/null
    run_synced >/dev/null
    run_ours >/dev/null

    local qemu_results=() synced_results=() ours_results=()
    for ((run = 1; run <= runs; run++)); do
        qemu_results+=("$(run_qemu)")
        synced_results+=("$(run_synced)")
        ours_results+=("$(run_ours)")
        echo "run $run (wall s, user s, KiB): qemu-img ${qemu_results[-1]};" \
            "qemu-img+sync ${synced_results[-1]}; waddlec ${ours_results[-1]}"
    done

    qemu-img compare -f raw -F qcow2 "$raw" "$qemu_out" >/dev/null
    qemu-img compare -f raw -F qcow2 "$raw" "$ours_out" >/dev/null
    qemu-img check -q -f qcow2 "$ours_out"

    local qemu_min qemu_wall qemu_user qemu_rss synced_min synced_wall synced_user synced_rss
    local ours_min ours_wall ours_user ours_rss
    read -r qemu_min qemu_wall qemu_user qemu_rss < <(stats "${qemu_results[@]}")
    read -r synced_min synced_wall synced_user synced_rss < <(stats "${synced_results[@]}")
    read -r ours_min ours_wall ours_user ours_rss < <(stats "${ours_results[@]}")

    echo
    echo "$label raw disk:"
    printf '%-14s %10s %12s %12s %14s %12s\n' tool "min wall" "median wall" "median user" \
        "max peak RSS" "output size"
    row() { printf '%-14s %8s s %10s s %10s s %10s MiB %12s\n' "$@"; }
    row qemu-img "$qemu_min" "$qemu_wall" "$qemu_user" "$qemu_rss" "$(stat -c %s "$qemu_out")"
    row qemu-img+sync "$synced_min" "$synced_wall" "$synced_user" "$synced_rss" \
        "$(stat -c %s "$synced_out")"
    row waddlec "$ours_min" "$ours_wall" "$ours_user" "$ours_rss" "$(stat -c %s "$ours_out")"
    echo "waddlec / qemu-img+sync: median wall $(ratio "$ours_wall" "$synced_wall")x," \
        "median user CPU $(ratio "$ours_user" "$synced_user")x" \
        "(against qemu-img alone: wall $(ratio "$ours_wall" "$qemu_wall")x); goal wall <= 1.00x"
    echo "waddlec peak RSS: $ours_rss MiB; goal < 64 MiB"
    echo
    rm -f "$qemu_out" "$synced_out"
}

for label in zero-filled sparse; do
    make_raw "$work/$label.raw" "$label"
    bench "$work/$label.raw" "$label"
    rm -f "$work/$label.raw"
done
cmp "$work/waddlec-zero-filled.qcow2" "$work/waddlec-sparse.qcow2"
echo "waddlec's images of the zero-filled and the sparse disk are byte-identical"
