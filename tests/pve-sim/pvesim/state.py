"""In-memory cluster state: nodes, storages and volumes, VMs, tasks, pools.

Everything is guarded by `Node.lock`; `Node.snapshot()` is what state.json
holds. `Node` is the whole simulated cluster (one member unless several
`--node`s are given); `Node.current` is the node the request being handled
addresses (`/nodes/{node}/...`, else the local node that answers the API),
and `name`, `network` and `storages` are that node's. VMs and tasks are
cluster-wide dicts whose entries name their node (VMIDs are unique in a
cluster); a storage that is not `shared` has one `Storage` (its own volumes)
per node it is available on, a shared one a single `Storage` for all. Volume files live under DIR/storage/<storage id>/ with PVE's layout
(import/, template/iso/, template/cache/, images/<vmid>/ for directory
storages; vm-<vmid>-disk-<n> files for block storages such as zfspool).
Disk volumes are sparse placeholders of the right size: imported images are
not converted, only their size and source are recorded.
"""

import hashlib
import os
import re
import threading
import time

FILE_BASED_TYPES = ("dir", "nfs", "cifs", "cephfs", "glusterfs", "btrfs")
# The content types each storage plugin allows: `plugindata()->{content}->[0]` of
# pve-storage (at 0c56bad8) src/PVE/Storage/<Type>Plugin.pm (glusterfs: as NFS; it is
# gone from PVE 9's tree).
_FILES = ("images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import")
PLUGIN_CONTENT = {
    "dir": _FILES + ("none",), "btrfs": _FILES + ("none",), "nfs": _FILES, "cifs": _FILES, "glusterfs": _FILES,
    "cephfs": ("vztmpl", "iso", "backup", "snippets", "import"),
    "zfspool": ("images", "rootdir"), "lvm": ("images", "rootdir"), "lvmthin": ("images", "rootdir"),
    "rbd": ("images", "rootdir"),
}
ISO_RE = r"[^/]+\.(?:iso|img)"
VZTMPL_RE = r"[^/]+\.tar(?:\.(gz|xz|zst|bz2))?"
SAFE_CHARS = r"[a-zA-Z0-9\-\.\+\=\_]"


class ApiError(Exception):
    """An error response: 400 with `errors`, or a `die` (500) with its message."""

    def __init__(self, status, message, errors=None):
        super().__init__(message)
        self.status = status
        self.message = message if message.endswith("\n") or status == 501 else message + "\n"
        self.errors = errors


def param_error(errors):
    return ApiError(400, "Parameter verification failed.", errors)


def die(message):
    return ApiError(500, message)


class TaskFailed(Exception):
    """A worker's `die`: the task ends with this message as exitstatus."""


class Volume:
    def __init__(self, volid, content, fmt, size, path, vmid=None):
        self.volid = volid
        self.content = content
        self.format = fmt
        self.size = size
        self.path = path
        self.vmid = vmid
        self.ctime = int(time.time())
        self.sha256 = None
        self.virtual_size = size
        self.source = None

    def listing(self):
        entry = {"volid": self.volid, "content": self.content, "format": self.format,
                 "size": self.size, "ctime": self.ctime}
        if self.vmid is not None:
            entry["vmid"] = self.vmid
        return entry

    def snapshot(self):
        snap = self.listing()
        snap.update(sha256=self.sha256, virtual_size=self.virtual_size, source=self.source)
        return snap


class StorageDef:
    """One storage.cfg section: type, content, `shared`, `nodes` (None = every node)."""

    def __init__(self, sid, type_, content, shared=False, nodes=None):
        self.sid = sid
        self.type = type_
        self.content = list(content)
        self.shared = bool(shared)
        self.nodes = list(nodes) if nodes else None

    def available_on(self, node):
        """PVE::Storage::storage_check_node: no `nodes` list means every node."""
        return self.nodes is None or node in self.nodes


class Storage:
    def __init__(self, sid, type_, content, root, definition=None, node=None):
        self.sid = sid
        self.definition = definition or StorageDef(sid, type_, content)
        self.type = type_
        self.root = root
        self.node = node  # the node whose disk this is; None for a shared storage
        self.volumes = {}

    @property
    def content(self):
        return self.definition.content

    @content.setter
    def content(self, value):
        self.definition.content = list(value)

    @property
    def shared(self):
        return self.definition.shared

    @property
    def file_based(self):
        return self.type in FILE_BASED_TYPES

    @property
    def pve_path(self):
        """Where PVE would keep this storage (used in task log lines and messages)."""
        return "/var/lib/vz" if self.sid == "local" else f"/mnt/pve/{self.sid}"

    def parse_volname(self, volname):
        """(vtype, name, vmid, format) like the storage plugin's parse_volname, or raise."""
        if self.file_based:
            return self._parse_dir_volname(volname)
        match = re.match(r"^((vm|base|subvol|basevol)-(\d+)-\S+)$", volname)
        if not match:
            raise die(f"unable to parse zfs volume name '{volname}'")
        vtype = "rootdir" if match.group(2) in ("subvol", "basevol") else "images"
        return vtype, match.group(1), int(match.group(3)), "raw"

    def _parse_dir_volname(self, volname):
        patterns = (
            ("iso", rf"^iso/({ISO_RE})$", re.I, lambda m: "iso"),
            ("vztmpl", rf"^vztmpl/({VZTMPL_RE})$", re.I, lambda m: "t" + m.group(2) if m.group(2) else "tar"),
            ("import", rf"^import/({SAFE_CHARS}+\.(ova|ovf|qcow2|raw|vmdk))$", re.I, lambda m: m.group(2)),
            ("snippets", r"^snippets/([^/]+)$", 0, lambda m: "snippet"),
        )
        for vtype, pattern, flags, fmt in patterns:
            match = re.match(pattern, volname, flags)
            if match:
                return vtype, match.group(1), None, fmt(match)
        match = re.match(r"^(\d+)/((?:base|vm)-\d+-\S+\.(raw|qcow2|vmdk|subvol))$", volname)
        if match:
            return "images", match.group(2), int(match.group(1)), match.group(3)
        raise die(f"unable to parse directory volume name '{volname}'")

    def file_for(self, vtype, name, vmid=None):
        subdir = {"iso": "template/iso", "vztmpl": "template/cache", "import": "import",
                  "snippets": "snippets"}.get(vtype)
        if subdir:
            return os.path.join(self.root, subdir, name)
        if self.file_based:
            return os.path.join(self.root, "images", str(vmid), name)
        return os.path.join(self.root, name)

    def pve_file_for(self, vtype, name):
        subdir = {"iso": "template/iso", "vztmpl": "template/cache", "import": "import"}[vtype]
        return f"{self.pve_path}/{subdir}/{name}"

    def free_disk_index(self, vmid, taken=()):
        index = 0
        names = {v.split(":", 1)[1].rsplit("/", 1)[-1].split(".")[0] for v in self.volumes}
        names.update(taken)
        while f"vm-{vmid}-disk-{index}" in names:
            index += 1
        return index

    def alloc_disk(self, vmid, size, fmt=None, name=None):
        """vdisk_alloc: a new sparse volume vm-<vmid>-disk-<n> (or `name`, which
        storage_migrate keeps when it is free on the target); returns the Volume."""
        if not self.file_based:
            size = -(-size // (1 << 20)) << 20  # zvols are padded to whole MiB
            fmt = "raw"
        name = name or f"vm-{vmid}-disk-{self.free_disk_index(vmid)}"
        if self.file_based:
            fmt = fmt or "raw"
            name = f"{name}.{fmt}"
            volid = f"{self.sid}:{vmid}/{name}"
        else:
            volid = f"{self.sid}:{name}"
        path = self.file_for("images", name, vmid)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.truncate(size)
        volume = Volume(volid, "images", fmt, size, path, vmid)
        self.volumes[volid] = volume
        return volume

    def resize(self, volume, size):
        if not self.file_based:
            size = -(-size // (1 << 20)) << 20
        with open(volume.path, "r+b") as handle:
            handle.truncate(size)
        volume.size = volume.virtual_size = size
        return size

    def free(self, volid):
        volume = self.volumes.pop(volid)
        try:
            os.unlink(volume.path)
        except FileNotFoundError:
            pass

    def config(self):
        """The storage.cfg section as `GET /storage/{storage}` shows it (without digest)."""
        entry = {"storage": self.sid, "type": self.type, "content": ",".join(sorted(self.content))}
        if self.definition.nodes:
            entry["nodes"] = ",".join(self.definition.nodes)
        if self.shared:
            entry["shared"] = 1
        if self.file_based:
            entry["path"] = self.pve_path
        elif self.type == "zfspool":
            entry.update(pool="rpool/data", sparse=1)
        return entry

    def status(self):
        used = sum(v.size for v in self.volumes.values())
        total = 1 << 40
        return {"storage": self.sid, "type": self.type, "content": ",".join(sorted(self.content)),
                "active": 1, "enabled": 1, "shared": 1 if self.shared else 0, "total": total, "used": used,
                "avail": total - used, "used_fraction": used / total}


class Vm:
    def __init__(self, vmid, config, node=None):
        self.vmid = vmid
        self.node = node  # the node whose qemu-server/<vmid>.conf this is
        self.config = config
        self.status = "stopped"
        self.started = None
        self.agent_pings_left = 0
        self.pending = {}  # the [PENDING] section (`delete`: "key,!forced")
        self.running = None  # the config QEMU was started with (+ hotplugged changes)

    def digest(self):
        """SHA1 of the config file text, like PVE's `digest`."""
        return hashlib.sha1(self.config_text().encode()).hexdigest()

    def config_text(self):
        """write_vm_config's text: main section, then [PENDING] (qemu-server QemuServer.pm)."""
        text = _raw_config(self.config, False)
        if self.pending:
            text += "\n[PENDING]\n" + _raw_config(self.pending, True)
        return text


def _raw_config(config, pending):
    lines = []
    if "description" in config:
        description = config["description"]
        lines = [f"#{line}" for line in description.split("\n")] if description else (["#"] if pending else [])
    lines += [f"{k}: {v}" for k, v in sorted(config.items()) if k != "description"]
    return "".join(line + "\n" for line in lines)


class TaskLog:
    """What a worker prints; warnings are counted like PVE's log_warn."""

    def __init__(self):
        self.lines = []
        self.warnings = 0

    def print(self, line=""):
        self.lines.extend(str(line).split("\n"))

    def warn(self, message):
        self.warnings += 1
        self.lines.append(f"WARN: {message}")


class Task:
    _pid = 0x10000
    _lock = threading.Lock()

    def __init__(self, node, type_, id_, user, polls):
        with Task._lock:
            Task._pid += 1
            self.pid = Task._pid
        self.node = node
        self.type = type_
        self.id = str(id_)
        self.user = user
        self.starttime = int(time.time())
        self.pstart = int(time.monotonic() * 100) & 0xFFFFFFFF
        self.upid = (f"UPID:{node}:{self.pid:08X}:{self.pstart:08X}:{self.starttime:08X}:"
                     f"{type_}:{self.id}:{user}:")
        self.polls_left = polls
        self.log = TaskLog()
        self.exitstatus = None

    @property
    def running(self):
        return self.polls_left > 0

    def status(self, count_poll=True):
        data = {"upid": self.upid, "node": self.node, "pid": self.pid, "pstart": self.pstart,
                "starttime": self.starttime, "type": self.type, "id": self.id, "user": self.user,
                "status": "running" if self.running else "stopped"}
        if count_poll and self.polls_left > 0:
            self.polls_left -= 1
        if data["status"] == "stopped":
            data["exitstatus"] = self.exitstatus
        return data

    def log_lines(self):
        lines = list(self.log.lines)
        if not self.running:
            lines.append(self.final_line())
        return lines

    def final_line(self):
        if self.exitstatus == "OK":
            return "TASK OK"
        if self.exitstatus.startswith("WARNINGS: "):
            return "TASK " + self.exitstatus
        return "TASK ERROR: " + self.exitstatus

    def snapshot(self):
        return {"type": self.type, "id": self.id, "user": self.user,
                "status": "running" if self.running else "stopped", "exitstatus": self.exitstatus,
                "polls_left": self.polls_left, "log": self.log.lines + [self.final_line()]}


class Member:
    """One cluster node (corosync member): id, address, reachability, its network,
    and the SDN configuration version its last network reload applied."""

    def __init__(self, name, nodeid, network):
        self.name = name
        self.nodeid = nodeid
        self.network = network
        self.online = True
        self.sdn_version = None  # version of the running SDN config this node applied
        self.sdn_vnets = {}  # vnet -> {zone, type, mtu, ...} as its last reload configured them

    @property
    def ip(self):
        """The node's address (corosync ring0 / `remote_node_ip`): the address of its bridge
        with the default gateway, else of its first bridge with an address, else loopback."""
        return self.network.primary_address() or f"127.0.0.{self.nodeid}"


class Node:
    """The whole simulated cluster; api.py implements the endpoints on top of it."""

    def __init__(self, name, user, directory, storages, faults, network, members=None,
                 cluster_name="pve-sim"):
        """`members`: [(node name, HostNetwork)] of every node, the local one first
        (default: just `name` with `network`); `storages`: {sid: (type, content)} or
        {sid: StorageDef}."""
        members = members or [(name, network)]
        self.local = members[0][0]  # the node that answers the API (ready.json's `node`)
        self.current = self.local
        self.cluster_name = cluster_name
        self.members = {n: Member(n, i + 1, net) for i, (n, net) in enumerate(members)}
        self.start_offline = set()
        self.user = user
        self.caller = user  # auth id of the request being handled (set by App.dispatch)
        self.directory = directory
        self.faults = faults
        self.lock = threading.RLock()
        self.storage_defs = {}
        for sid, spec in storages.items():
            self.storage_defs[sid] = spec if isinstance(spec, StorageDef) else StorageDef(sid, *spec)
        self.node_storages = {n: {} for n in self.members}
        for sid, definition in self.storage_defs.items():
            shared = None
            for member in self.members:
                if not definition.available_on(member):
                    continue
                if definition.shared:
                    if shared is None:
                        shared = Storage(sid, definition.type, definition.content,
                                         os.path.join(directory, "storage", sid), definition, None)
                    storage = shared
                else:
                    root = os.path.join(directory, "storage", sid) if member == self.local else \
                        os.path.join(directory, "nodes", member, "storage", sid)
                    storage = Storage(sid, definition.type, definition.content, root, definition, member)
                os.makedirs(storage.root, exist_ok=True)
                self.node_storages[member][sid] = storage
        self.vms = {}
        self.tasks = {}
        self.pools = {}
        self.sdn = None  # sdn.SdnConfig, set by api.Api
        self.access = None  # access.AccessControl, set by pve_sim.build_app
        self.dirty = True
        self.boot = None  # boot.BootMode with --boot

    # --- the node a request addresses ----------------------------------------------

    @property
    def name(self):
        return self.current

    @property
    def network(self):
        return self.members[self.current].network

    @property
    def storages(self):
        """The storages available on the current node (storage.cfg order)."""
        return self.node_storages[self.current]

    @property
    def clustered(self):
        return len(self.members) > 1

    def on_node(self, name):
        """Context manager: handle the enclosed code as node `name` (tasks, storages, network)."""
        node = self

        class _On:
            def __enter__(self):
                self.saved = node.current
                node.current = name

            def __exit__(self, *exc):
                node.current = self.saved
        return _On()

    def sync_offline(self):
        """Which nodes are offline: `offline_nodes` of faults.json when present, else the
        `--offline` start set. The local node always answers, so it is never offline."""
        wanted = self.faults.peek("offline_nodes")
        offline = set(wanted) if isinstance(wanted, list) else set(self.start_offline)
        for member in self.members.values():
            online = member.name == self.local or member.name not in offline
            if online != member.online:
                member.online = online
                self.dirty = True

    def quorate(self):
        """corosync votequorum with one vote per node: more than half must be online."""
        online = sum(1 for m in self.members.values() if m.online)
        return online * 2 > len(self.members)

    def check_cfs_quorum(self):
        """pve-cluster Cluster.pm check_cfs_quorum: /etc/pve is read-only without quorum."""
        if not self.quorate():
            raise die("cluster not ready - no quorum?")

    def storage_cfg_digest(self):
        """SHA1 of the storage.cfg text (SectionConfig's digest)."""
        text = ""
        for sid, definition in self.storage_defs.items():
            storage = Storage(sid, definition.type, definition.content, "", definition)
            text += f"{storage.type}: {sid}\n"
            text += "".join(f"\t{k} {v}\n" for k, v in storage.config().items() if k not in ("storage", "type"))
            text += "\n"
        return hashlib.sha1(text.encode()).hexdigest()

    def volume(self, volid):
        sid, _, _ = volid.partition(":")
        storage = self.storages.get(sid)
        return storage.volumes.get(volid) if storage else None

    def run_task(self, type_, id_, worker):
        """fork_worker: run `worker(log)` now, report it as running for N polls."""
        polls = self.faults.take("task_polls")
        task = Task(self.name, type_, id_, self.caller, 1 if polls is None else int(polls))
        fault = self.faults.take("fail_task", lambda f: isinstance(f, dict) and _fault_matches_task(f, task))
        wanted = str(fault.get("exitstatus", "OK")) if fault else None
        if fault and wanted != "OK" and not wanted.startswith("WARNINGS: "):
            for line in fault.get("log", []):
                task.log.print(line)
            task.exitstatus = wanted
        else:
            task.exitstatus = self._run_worker(task, worker)
            if fault:
                for line in fault.get("log", []):
                    task.log.print(line)
                task.exitstatus = wanted
        self.tasks[task.upid] = task
        self.dirty = True
        return task.upid

    @staticmethod
    def _run_worker(task, worker):
        try:
            worker(task.log)
        except TaskFailed as err:
            return str(err).rstrip("\n")
        if task.log.warnings:
            return f"WARNINGS: {task.log.warnings}"
        return "OK"

    def snapshot(self):
        snap = self._snapshot()
        if self.boot:
            self.boot.annotate(snap)
        return snap

    def _storages_snapshot(self, node):
        return {sid: {"type": s.type, "content": s.content, "shared": 1 if s.shared else 0,
                      "nodes": s.definition.nodes,
                      "volumes": {v: dict(vol.snapshot(), node=s.node) for v, vol in sorted(s.volumes.items())}}
                for sid, s in self.node_storages[node].items()}

    def _snapshot(self):
        return {
            "node": self.local,
            "storages": self._storages_snapshot(self.local),
            "vms": {str(vmid): {"node": vm.node, "status": vm.status, "config": vm.config,
                                "pending": vm.pending, "running": vm.running, "digest": vm.digest()}
                    for vmid, vm in sorted(self.vms.items())},
            "tasks": {upid: dict(task.snapshot(), node=task.node) for upid, task in self.tasks.items()},
            "pools": self.pools,
            "network": self.members[self.local].network.snapshot(),
            "nodes": {m.name: {"nodeid": m.nodeid, "ip": m.ip, "online": 1 if m.online else 0,
                               "local": 1 if m.name == self.local else 0,
                               "storages": self._storages_snapshot(m.name),
                               "network": m.network.snapshot(),
                               "sdn": {"version": m.sdn_version, "vnets": m.sdn_vnets}}
                      for m in self.members.values()},
            "sdn": self.sdn.snapshot() if self.sdn else None,
            "access": self.access.snapshot() if self.access else None,
        }


def _fault_matches_task(fault, task):
    return fault.get("type") in (None, task.type) and str(fault.get("id", task.id)) == task.id
