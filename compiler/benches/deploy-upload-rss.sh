#!/usr/bin/env bash
# Deploy upload memory: peak RSS of `waddlec deploy` uploading a 2 GiB image
# to the Proxmox API simulator (tests/pve-sim), over TLS, as multipart with
# its sha256, then creating the VM that boots it.
#
# Builds waddlec (release), starts the simulator, makes a deployable tree of
# the bundled blueprint (throwaway secrets, no baked images; offline: the
# upstream manifests it embeds are the stand-ins of tests/data/upstream/,
# seeded into a private download cache and pinned in the lock file as the
# end-to-end tests do, and the build runs --locked), puts a 2 GiB
# sparse qcow2 (a small qcow2 grown with `truncate`: 2 GiB of bytes to send)
# in place of the HAProxy image, and deploys with --skip-host. Reports wall
# time and peak RSS from /usr/bin/time -v (package `time`), and the bytes the
# simulator stored.
#
# Goal: peak RSS under 64 MiB, whatever the image size.
#
# Usage: compiler/benches/deploy-upload-rss.sh   (needs ~2.5 GiB free in TMPDIR)
set -euo pipefail
cd "$(dirname "$0")/../.."

for tool in qemu-img /usr/bin/time /usr/bin/python3 sha256sum; do
    command -v "$tool" >/dev/null || {
        echo "error: $tool is missing (apt-get install qemu-utils time python3)" >&2
        exit 1
    }
done

cargo build --release --locked --quiet -p waddlec
target_dir=${CARGO_TARGET_DIR:-target}
[[ $target_dir == /* ]] || target_dir=$PWD/$target_dir
waddlec=$target_dir/release/waddlec

work=$(mktemp -d)
sim_pid=
cleanup() {
    [[ -n $sim_pid ]] && kill "$sim_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

token='root@pam!waddlec=5b0c9d1e-8a7f-4c3b-9e2d-1f0a6b7c8d9e'
/usr/bin/python3 tests/pve-sim/pve_sim.py --dir "$work/sim" --node waddle-proxmox01 \
    --token "$token" >"$work/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 100); do
    [[ -f $work/sim/ready.json ]] && break
    sleep 0.1
done
ready() { /usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$work/sim/ready.json" "$1"; }
url=$(ready url)
fingerprint=$(ready fingerprint)

lab=$work/lab
mkdir -p "$lab"
sed -e 's|^secrets = "file:.*"|secrets = "file:secrets/cluster.yaml"|' \
    -e "s|^api_token = .*|api_token = \"env:WADDLE_BENCH_PVE_TOKEN\"\napi_fingerprint = \"$fingerprint\"|" \
    -e 's|^client_secret = .*|client_secret = "env:WADDLE_BENCH_GITHUB_SECRET"|' \
    blueprints/waddle.toml >"$lab/blueprint.toml"
export WADDLE_BENCH_PVE_TOKEN=$token WADDLE_BENCH_GITHUB_SECRET=bench-secret
# The stand-ins at the URLs waddlec fetches them from
# (core/src/render/cluster/upstream.rs; tests/e2e/support/mod.rs
# `seed_upstream` does the same). Should these URLs drift from waddlec's,
# the --locked build below fails (exit 5) rather than going online.
export WADDLEC_CACHE_DIR=$work/cache
/usr/bin/python3 - "$lab/blueprint.toml" "$WADDLEC_CACHE_DIR" tests/data/upstream <<'PYTHON'
import hashlib, pathlib, sys, tomllib

blueprint, cache, stand_ins = (pathlib.Path(arg) for arg in sys.argv[1:])
flux = tomllib.loads(blueprint.read_text())["versions"]["flux_operator"].lstrip("v")
gateway = "v1.4.1"
github = "https://github.com"
inputs = [
    ("10-gateway-api-crds", f"gateway-api {gateway} standard CRDs",
     f"{github}/kubernetes-sigs/gateway-api/releases/download/{gateway}/standard-install.yaml"),
    ("40-flux-operator", f"flux-operator v{flux} install.yaml",
     f"{github}/controlplaneio-fluxcd/flux-operator/releases/download/v{flux}/install.yaml"),
]
(cache / "sha256").mkdir(parents=True, exist_ok=True)
lock = ["version = 1"]
for stand_in, name, url in sorted(inputs, key=lambda i: i[2]):
    text = (stand_ins / f"{stand_in}.yaml").read_bytes()
    sha = hashlib.sha256(text).hexdigest()
    (cache / "sha256" / sha).write_bytes(text)
    lock.append(f'\n[[input]]\nname = "{name}"\nurl = "{url}"\nsha256 = "{sha}"')
blueprint.with_suffix(".lock").write_text("\n".join(lock) + "\n")
PYTHON
(
    cd "$lab"
    "$waddlec" secrets init blueprint.toml >"$work/secrets.log" 2>&1 || {
        cat "$work/secrets.log" >&2
        exit 1
    }
    "$waddlec" build blueprint.toml --with-secrets --no-images --locked >"$work/build.log" 2>&1 || {
        cat "$work/build.log" >&2
        exit 1
    }
)

file=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[0]['boot']['file'])" "$lab/dist/host/images.json")
image=$lab/dist/images/$file
mkdir -p "$lab/dist/images"
qemu-img create -q -f qcow2 "$image" 2G
truncate -s 2G "$image"
sha=$(sha256sum "$image" | cut -d' ' -f1)
printf '[{"file": "%s", "vms": ["haproxy"], "sha256": "%s", "bytes": %s, "inputs": []}]\n' \
    "$file" "$sha" "$(stat -c %s "$image")" >"$lab/dist/images.json"

cd "$lab"
# Exit 6: the other VMs' images are not in this tree, so their steps are held
# back; the upload measured here is done.
status=0
/usr/bin/time -v -o "$work/time.txt" "$waddlec" deploy blueprint.toml --tree dist --api "$url" \
    --skip-host --yes --agent-timeout 30 >"$work/deploy.out" 2>"$work/deploy.err" || status=$?
if ((status != 0 && status != 6)); then
    cat "$work/deploy.out" "$work/deploy.err" >&2
    exit 1
fi
wall=$(sed -n "s/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p" "$work/time.txt")
rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time.txt")
stored=$(find "$work/sim" -name "$file" -printf '%s\n' | head -1)
printf 'uploaded %s (%s bytes stored by the simulator)\n' "$file" "${stored:-?}"
printf 'waddlec deploy: wall %s, peak RSS %s MiB (goal < 64 MiB)\n' "$wall" "$((rss / 1024))"
