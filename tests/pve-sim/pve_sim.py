#!/usr/bin/python3
"""pve-sim: a stateful Proxmox VE 9.1 API simulator for waddlec's tests.

Start:  python3 tests/pve-sim/pve_sim.py --dir DIR [--node NAME]... [--offline NODE]... [--token TOKEN]
                                          [--storage ID=TYPE:CONTENT,...[,shared=1][,nodes=A;B]]...
                                          [--schema apidata.json] [--nic NAME]...
                                          [--bridge [NODE/]NAME=CIDR,ports=NIC[,gateway=IP]]...
Serves HTTPS on 127.0.0.1 (OS-assigned port) with a throwaway self-signed
certificate and writes DIR/ready.json when it accepts connections. Runs
until SIGTERM/SIGINT. Python 3 standard library only (plus the openssl CLI
for the certificate). README.md documents the contract in full.

What it owns:
  * the contract: every request is matched against PVE's own API schema
    (apidata.json from pve-docs) and rejected like PVE rejects it -- unknown
    paths/methods (501), unknown/missing/ill-typed parameters, enums, ranges,
    patterns, named formats and property strings such as drive options (400).
    Unimplemented format names are rejected, never waved through;
  * PVE's transport quirks: token auth, urlencoded/JSON bodies, the 64 KiB
    body limit, no chunked bodies, multipart upload parsing (field order,
    Content-Length required), connection close after errors and uploads;
  * state for the calls a deploy makes: storages and volumes (uploads with
    checksum verification, listing, deletion), VM create with disk
    allocation and `import-from`, config read/update, resize, start/stop/
    shutdown, destroy, guest-agent ping, pools, tasks with PVE UPIDs;
  * a cluster when several --node are given (pvesim/cluster.py): any node
    answers for all, per-node VMs, local volumes, networks and tasks,
    cluster-wide VMIDs, shared and node-restricted storages, /cluster/status,
    /cluster/resources, offline nodes (595 like pve-http-server's proxy,
    quorum), VM migration between nodes; SDN zones/vnets/subnets with the
    pending model and `PUT /cluster/sdn` (pvesim/sdn.py);
  * fault injection via DIR/faults.json (dropped connections, failing tasks,
    slow tasks, slow guest agent);
  * journals: DIR/requests.jsonl, DIR/violations.jsonl, DIR/state.json.

Users, roles, ACLs and API tokens are simulated (pvesim/access.py): created
tokens authenticate and are permission-checked like on PVE; the start token
and pvesh (DIR/pvesh.sock, root@pam) are superusers.

What it deliberately does not simulate: corosync itself (membership is
the --node list, reachability --offline/faults.json; names that are no
--node fail like an unknown host), HA, replication, SDN controllers,
fabrics, IPAM/DNS plugins, DHCP and vlan/qinq/faucet zones, groups and realms, tickets and CSRF, real disk contents (disks are sparse files of the
right size; imports are not converted), QEMU itself (VMs start instantly, no
config locks; pending changes and hotplug are modelled, see pvesim/pending.py), task concurrency (a task's
effects happen when it is started; its status reads `running` for the first
N polls), backups/restore, snapshots, remote (cross-cluster) migration and
the live migration of QEMU state (a migration moves config, status and
volumes), containers, Ceph, and
every endpoint not listed in README.md (those are validated, then 501).
"""

import argparse
import hashlib
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pvesim.access import AccessControl  # noqa: E402
from pvesim.api import Api  # noqa: E402
from pvesim.boot import BootMode, add_boot_args  # noqa: E402
from pvesim.files import Faults, Journal, redact_token_secret, write_json_atomic  # noqa: E402
from pvesim.formats import STORAGE_CONTENT_TYPES, FormatError, cidrv4, ipv4, pve_iface  # noqa: E402
from pvesim.network import DEFAULT_BRIDGES, DEFAULT_NICS, HostNetwork  # noqa: E402
from pvesim.schema import ApiSchema  # noqa: E402
from pvesim.server import App, PveshServer, SimServer  # noqa: E402
from pvesim.state import Node, StorageDef  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCHEMA = os.path.normpath(os.path.join(HERE, "..", "data", "schemas", "proxmox", "apidata.json"))
DEFAULT_TOKEN = "root@pam!waddlec=00000000-0000-0000-0000-000000000000"
DEFAULT_STORAGES = ["local=dir:iso,import,vztmpl", "vmdata=zfspool:images,rootdir"]
STORAGE_TYPES = ("dir", "nfs", "cifs", "cephfs", "glusterfs", "btrfs", "zfspool", "lvm", "lvmthin", "rbd")
TOKEN_RE = r"^[^\s:/]+@[A-Za-z][A-Za-z0-9.\-_]+![A-Za-z][A-Za-z0-9.\-_]+=.+$"


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Stateful Proxmox VE API simulator (see README.md).")
    parser.add_argument("--dir", required=True, help="working directory (state, journals, files)")
    parser.add_argument("--node", action="append", metavar="NAME",
                        help="repeatable: the cluster's nodes, the first answers the API (default: pve)")
    parser.add_argument("--offline", action="append", default=[], metavar="NODE",
                        help="repeatable: a --node (not the first) that is unreachable from the start")
    parser.add_argument("--cluster-name", default="pve-sim", help="the cluster name of /cluster/status")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="USER@REALM!TOKENID=SECRET")
    parser.add_argument("--storage", action="append",
                        metavar="ID=TYPE:CONTENT[,CONTENT...][,shared=0|1][,nodes=NODE[;NODE...]]",
                        help=f"repeatable; replaces the defaults {DEFAULT_STORAGES}")
    parser.add_argument("--nic", action="append", metavar="NAME",
                        help=f"repeatable: a physical NIC of the host; replaces the default {DEFAULT_NICS}")
    parser.add_argument("--bridge", action="append",
                        metavar="[NODE/]NAME=CIDR|manual[,ports=NIC[+NIC]][,gateway=IP]",
                        help="repeatable: an active, autostarted Linux bridge (of every node, or of NODE); "
                             "replaces the default vmbr0=203.0.113.10/24,ports=eno1,gateway=203.0.113.1")
    parser.add_argument("--schema", default=os.environ.get("PVE_SIM_SCHEMA", DEFAULT_SCHEMA))
    parser.add_argument("--verbose", action="store_true", help="log requests and errors to stderr")
    add_boot_args(parser)
    args = parser.parse_args(argv)
    if args.boot and not args.boot_netns:
        parser.error("--boot needs --boot-netns NAME")
    if not re.match(TOKEN_RE, args.token):
        parser.error("--token must look like USER@REALM!TOKENID=SECRET")
    args.nodes = args.node or ["pve"]
    for name in args.nodes:
        if not re.match(r"^[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?$", name):
            parser.error("--node must be a valid node name")
    if len(set(args.nodes)) != len(args.nodes):
        parser.error("--node: each node name may be given once")
    args.node = args.nodes[0]
    for name in args.offline:
        if name not in args.nodes:
            parser.error(f"--offline {name!r}: not a --node ({', '.join(args.nodes)})")
        if name == args.node:
            parser.error(f"--offline {name!r}: the first --node answers the API and cannot be offline")
    if args.boot and len(args.nodes) > 1:
        parser.error("--boot simulates one node: give a single --node")
    args.storages = parse_storages(parser, args.storage or DEFAULT_STORAGES, args.nodes)
    args.nics = args.nic or DEFAULT_NICS
    args.node_bridges = parse_node_bridges(parser, args.bridge, args.nics, args.nodes)
    args.bridges = args.node_bridges[args.node]
    return args


def parse_node_bridges(parser, specs, nics, nodes):
    """{node: [bridge]}: an unprefixed --bridge belongs to every node, `NODE/NAME=...` to
    NODE only; without any --bridge every node gets the default vmbr0."""
    if not specs:
        return {node: DEFAULT_BRIDGES for node in nodes}
    per_node = {node: [] for node in nodes}
    for spec in specs:
        match = re.match(r"^([a-zA-Z0-9][a-zA-Z0-9\-]*)/(.*)$", spec)
        targets = nodes
        if match:
            if match.group(1) not in nodes:
                parser.error(f"--bridge {spec!r}: node {match.group(1)!r} is not a --node ({', '.join(nodes)})")
            targets, spec = [match.group(1)], match.group(2)
        for node in targets:
            per_node[node].append(spec)
    return {node: parse_bridges(parser, per_node[node], nics) for node in nodes}


def parse_bridges(parser, specs, nics):
    """--bridge vmbr0=203.0.113.10/24,ports=eno1,gateway=203.0.113.1 (or NAME=manual)."""
    bridges, used = [], set()
    for spec in specs:
        match = re.match(r"^([^=,]+)=([^,]+)((?:,(?:ports|gateway)=[^,]*)*)$", spec)
        if not match:
            parser.error(f"--bridge {spec!r}: expected NAME=CIDR|manual[,ports=NIC[+NIC...]][,gateway=IP]")
        name, address = match.group(1), match.group(2)
        options = dict(part.split("=", 1) for part in match.group(3).split(",")[1:])
        try:
            pve_iface(name)
            if address != "manual":
                cidrv4(address)
            if options.get("gateway"):
                ipv4(options["gateway"])
        except FormatError as err:
            parser.error(f"--bridge {spec!r}: {err.message.strip()}")
        ports = [p for p in options.get("ports", "").split("+") if p]
        for port in ports:
            if port not in nics:
                parser.error(f"--bridge {spec!r}: port {port!r} is not a --nic ({', '.join(nics)})")
            if port in used:
                parser.error(f"--bridge {spec!r}: port {port!r} is already used by another bridge")
            used.add(port)
        bridges.append({"iface": name, "cidr": None if address == "manual" else address,
                        "ports": " ".join(ports), "gateway": options.get("gateway")})
    if sum(1 for b in bridges if b["gateway"]) > 1:
        parser.error("--bridge: only one bridge may have a gateway (PVE: 'Default gateway already exists')")
    return bridges


def parse_storages(parser, specs, nodes):
    """--storage ID=TYPE:CONTENT[,CONTENT...][,shared=0|1][,nodes=NODE[;NODE...]]: a
    storage.cfg section; `shared=1` = one set of volumes seen by every node, `nodes` =
    available on those nodes only (storage.cfg's `nodes` list)."""
    storages = {}
    for spec in specs:
        match = re.match(r"^([a-z][a-z0-9\-_.]*[a-z0-9])=([a-z]+):([a-z,]+(?:,(?:shared|nodes)=[^,]*)*)$",
                         spec, re.I)
        if not match:
            parser.error(f"--storage {spec!r}: expected ID=TYPE:CONTENT[,CONTENT...][,shared=0|1]"
                         "[,nodes=NODE[;NODE...]]")
        sid, type_ = match.group(1), match.group(2)
        items = match.group(3).split(",")
        content = [i for i in items if "=" not in i]
        attrs = dict(i.split("=", 1) for i in items if "=" in i)
        if attrs.get("shared", "0") not in ("0", "1"):
            parser.error(f"--storage {spec!r}: shared must be 0 or 1")
        on_nodes = [n for n in attrs.get("nodes", "").split(";") if n] or None
        for name in on_nodes or []:
            if name not in nodes:
                parser.error(f"--storage {spec!r}: node {name!r} is not a --node ({', '.join(nodes)})")
        if type_ not in STORAGE_TYPES:
            parser.error(f"--storage {spec!r}: unknown type {type_!r} (one of {', '.join(STORAGE_TYPES)})")
        unknown = [c for c in content if c not in STORAGE_CONTENT_TYPES]
        if unknown:
            parser.error(f"--storage {spec!r}: unknown content type(s) {unknown}")
        storages[sid] = StorageDef(sid, type_, content, attrs.get("shared") == "1", on_nodes)
    return storages


def make_certificate(directory):
    """A throwaway P-256 certificate; returns (cert, key, SHA-256 fingerprint 'AB:CD:...')."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "2", "-subj", "/CN=pve-sim", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", key, "-out", cert],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with open(cert, encoding="ascii") as handle:
        der = ssl.PEM_cert_to_DER_cert(handle.read())
    digest = hashlib.sha256(der).hexdigest().upper()
    return cert, key, ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def tls_context(cert, key):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def build_app(args, fingerprint):
    directory = os.path.abspath(args.dir)
    tmp_dir = os.path.join(directory, "tmp")
    os.makedirs(tmp_dir, exist_ok=True)
    for journal in ("requests.jsonl", "violations.jsonl"):
        open(os.path.join(directory, journal), "w", encoding="utf-8").close()
    schema = ApiSchema(args.schema)
    faults = Faults(directory)
    user = args.token.rsplit("=", 1)[0]
    members = [(name, HostNetwork(args.nics, args.node_bridges[name])) for name in args.nodes]
    node = Node(args.node, user, directory, args.storages, faults, members[0][1], members, args.cluster_name)
    node.start_offline = set(args.offline)
    node.sync_offline()
    node.access = AccessControl(node, args.token)
    api = Api(node, schema, fingerprint)
    if args.boot:
        BootMode(directory, args.boot_netns, args.boot_memory_cap, args.boot_cores_cap, args.ovmf_code,
                 args.ovmf_vars, args.boot_accel).attach(node, api)
    journal = Journal(directory, redact_token_secret(args.token))
    return App(schema, node, api, journal, faults, args.token,
               os.path.join(directory, "state.json"), tmp_dir, args.verbose)


def reset_directory(directory):
    """Start clean: no stale ready.json, no volumes from an earlier run (faults.json is kept)."""
    os.makedirs(directory, exist_ok=True)
    try:
        os.unlink(os.path.join(directory, "ready.json"))
    except FileNotFoundError:
        pass
    try:
        os.unlink(os.path.join(directory, "pvesh.sock"))
    except FileNotFoundError:
        pass
    for sub in ("storage", "nodes", "tmp"):
        shutil.rmtree(os.path.join(directory, sub), ignore_errors=True)


def main(argv=None):
    args = parse_args(argv if argv is not None else sys.argv[1:])
    reset_directory(args.dir)
    cert, key, fingerprint = make_certificate(args.dir)
    app = build_app(args, fingerprint)
    app.save_state()
    server = SimServer(("127.0.0.1", 0), tls_context(cert, key), app)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="pve-sim", daemon=True)
    thread.start()
    socket_path = os.path.join(os.path.abspath(args.dir), "pvesh.sock")
    pvesh_server = PveshServer(socket_path, app)
    threading.Thread(target=pvesh_server.serve_forever, name="pve-sim-pvesh", daemon=True).start()

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    write_json_atomic(os.path.join(args.dir, "ready.json"), {
        "url": f"https://127.0.0.1:{port}", "port": port, "fingerprint": fingerprint,
        "node": args.node, "nodes": args.nodes, "token": args.token, "pid": os.getpid(),
        "pvesh_socket": socket_path,
    })
    if args.verbose:
        print(f"pve-sim: listening on https://127.0.0.1:{port} (node {args.node})", file=sys.stderr)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    pvesh_server.shutdown()
    pvesh_server.server_close()
    if app.node.boot:
        app.node.boot.shutdown_all()
    try:
        os.unlink(socket_path)
    except FileNotFoundError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
