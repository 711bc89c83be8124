"""In-memory node state: storages and volumes, VMs, tasks, pools.

Everything is guarded by `Node.lock`; `Node.snapshot()` is what state.json
holds. Volume files live under DIR/storage/<storage id>/ with PVE's layout
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


class Storage:
    def __init__(self, sid, type_, content, root):
        self.sid = sid
        self.type = type_
        self.content = content
        self.root = root
        self.volumes = {}

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

    def alloc_disk(self, vmid, size, fmt=None):
        """vdisk_alloc: a new sparse volume vm-<vmid>-disk-<n>; returns the Volume."""
        if not self.file_based:
            size = -(-size // (1 << 20)) << 20  # zvols are padded to whole MiB
            fmt = "raw"
        name = f"vm-{vmid}-disk-{self.free_disk_index(vmid)}"
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
        if self.file_based:
            entry["path"] = self.pve_path
        elif self.type == "zfspool":
            entry.update(pool="rpool/data", sparse=1)
        return entry

    def status(self):
        used = sum(v.size for v in self.volumes.values())
        total = 1 << 40
        return {"storage": self.sid, "type": self.type, "content": ",".join(sorted(self.content)),
                "active": 1, "enabled": 1, "shared": 0, "total": total, "used": used,
                "avail": total - used, "used_fraction": used / total}


class Vm:
    def __init__(self, vmid, config):
        self.vmid = vmid
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


class Node:
    """The whole simulated node; api.py implements the endpoints on top of it."""

    def __init__(self, name, user, directory, storages, faults, network):
        self.name = name
        self.network = network
        self.user = user
        self.caller = user  # auth id of the request being handled (set by App.dispatch)
        self.directory = directory
        self.faults = faults
        self.lock = threading.RLock()
        self.storages = {}
        for sid, (type_, content) in storages.items():
            self.storages[sid] = Storage(sid, type_, content, os.path.join(directory, "storage", sid))
            os.makedirs(self.storages[sid].root, exist_ok=True)
        self.vms = {}
        self.tasks = {}
        self.pools = {}
        self.access = None  # access.AccessControl, set by pve_sim.build_app
        self.dirty = True
        self.boot = None  # boot.BootMode with --boot

    def storage_cfg_digest(self):
        """SHA1 of the storage.cfg text (SectionConfig's digest)."""
        text = ""
        for sid, storage in self.storages.items():
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

    def _snapshot(self):
        return {
            "node": self.name,
            "storages": {sid: {"type": s.type, "content": s.content,
                               "volumes": {v: vol.snapshot() for v, vol in sorted(s.volumes.items())}}
                         for sid, s in self.storages.items()},
            "vms": {str(vmid): {"status": vm.status, "config": vm.config, "pending": vm.pending,
                                "running": vm.running, "digest": vm.digest()}
                    for vmid, vm in sorted(self.vms.items())},
            "tasks": {upid: task.snapshot() for upid, task in self.tasks.items()},
            "pools": self.pools,
            "network": self.network.snapshot(),
            "access": self.access.snapshot() if self.access else None,
        }


def _fault_matches_task(fault, task):
    return fault.get("type") in (None, task.type) and str(fault.get("id", task.id)) == task.id
