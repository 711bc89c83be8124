#!/usr/bin/env bash
# The artifact store: what it saves.
#
# Runs tests/e2e/artifact_store.rs (release build) against a real S3 server
# (s3s-fs, installed by tests/run-all.sh) and the Proxmox API simulator, on
# the bundled blueprint's images (the two Debian images baked for real, the
# Talos image the fixture the image lab serves), and prints:
#
#   bake-and-push          CI: build --with-secrets --push from a cache with
#                          the Debian bases already built (target/tmp/
#                          debian-bases: the best case for baking; a cold
#                          bake adds mmdebstrap, minutes per base), the
#                          push included
#   pull-into-empty-cache  an operator's build on another cache without the
#                          image tools: every image pulled and verified
#   image-bytes            the images' total size
#   deploy-bytes-*         the bytes deploy sends to Proxmox from this
#                          machine for an empty host (request bodies of
#                          uploads), with the images in the store (the host
#                          pulls them: seeds only) and without
#
# and the ratios. The S3 server, the simulator and waddlec share this
# machine's loopback: the times are CPU and disk, not a network's.
#
# Usage: compiler/benches/artifact-store.sh   (as root; ~3 GiB in TMPDIR)
set -euo pipefail
cd "$(dirname "$0")/../.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! cargo test --release --locked --quiet -p waddlec --test e2e -- \
    artifact_store --nocapture >"$log" 2>&1; then
    tail -50 "$log" >&2
    exit 1
fi
value() { sed -n "s/^store: $1 \([0-9.]*\).*/\1/p" "$log"; }
bake=$(value bake-and-push)
pull=$(value pull-into-empty-cache)
image=$(value image-bytes)
with=$(value deploy-bytes-with-store)
without=$(value deploy-bytes-without-store)
awk -v bake="$bake" -v pull="$pull" -v image="$image" -v with="$with" -v without="$without" 'BEGIN {
    printf "%-36s %12.1f s\n", "bake and push (warm Debian bases)", bake
    printf "%-36s %12.1f s   (%.1fx faster)\n", "pull into an empty cache", pull, bake / pull
    printf "%-36s %12.1f MiB\n", "images", image / 1048576
    printf "%-36s %12.1f MiB\n", "deploy, sent from here, no store", without / 1048576
    printf "%-36s %12.1f MiB   (%.0fx fewer bytes)\n", "deploy, sent from here, with store", with / 1048576, without / with
}'
