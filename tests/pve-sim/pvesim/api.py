"""Behaviour of the simulated endpoints (called after schema validation).

Each handler gets the validated parameters (strings; booleans as '1'/'0')
and returns the `data` of the response, or raises ApiError (400 with
`errors`, 500 with PVE's message). Checks that PVE does synchronously raise
here; checks PVE does inside a worker fail the task instead (TaskFailed).
Messages follow qemu-server, pve-storage, pve-manager and pve-access-control.
"""

import hashlib
import os
import random
import ssl
import urllib.error
import urllib.request
import re
import tarfile
import time
import uuid

from .access_api import AccessApi
from .cluster import ClusterApi
from .network import NetworkApi
from .sdn import SdnApi
from .pending import Pending
from .perlish import format_size, parse_size, split_list
from .schema import parse_property_string, print_property_string
from .state import PLUGIN_CONTENT, SAFE_CHARS, ApiError, TaskFailed, Vm, Volume, die, param_error

NEW_DISK_RE = re.compile(r"^(([^/:\s]+):)?(\d+(\.\d+)?)$")
DRIVE_KEY_RE = re.compile(r"^(ide|sata|scsi|virtio)(\d+)$|^(efidisk0|tpmstate0)$")
EFIVARS_SIZE = {"4m": 540672, "2m": 131072}
TPMSTATE_SIZE = 4 << 20
CLOUDINIT_SIZE = 4 << 20
MODIFIED = "detected modified configuration - file changed by other user? Try again."


class RequestContext:
    """Per-request extras: the spooled upload for POST .../upload, result
    attributes PVE puts next to `data` (e.g. `changes`), and the caller's
    permissions (`perms`, None for a superuser)."""

    def __init__(self, upload=None, perms=None, identity=None):
        self.upload = upload
        self.warnings = []  # `warn` output: syslog for the API, stderr for pvesh
        self.attribs = {}
        self.perms = perms
        self.identity = identity

    def allowed(self, path, privs, any_=False):
        """A permission check with noerr: always true for a superuser."""
        return self.perms is None or self.perms.check_full(path, privs, any_, True)

    def require(self, path, privs, any_=False):
        """A permission check that answers 403 `Permission check failed (path, priv)`."""
        if self.perms is not None:
            self.perms.check_full(path, privs, any_)

    def can_see_bridge(self, bridge):
        """Network.pm index: root sees every bridge, others need SDN.Audit or SDN.Use
        on /sdn/zones/localnetwork/<bridge> (RPCEnvironment::check_sdn_bridge)."""
        return self.perms is None or self.perms.check_sdn_bridge("localnetwork", bridge,
                                                                 ["SDN.Audit", "SDN.Use"], noerr=True)


# qemu-server (at e6352be6) src/PVE/API2/Qemu.pm $cpuoptions, $memoryoptions, $hwtypeoptions,
# $generaloptions, $vmpoweroptions, $diskoptions, $cloudinitoptions ($check_vm_modify_config_perm)
CPU_OPTIONS = {"cores", "cpu", "runningcpu", "cpulimit", "cpuunits", "numa", "smp", "sockets", "vcpus"}
MEMORY_OPTIONS = {"memory", "balloon", "shares", "allow-ksm"}
HWTYPE_OPTIONS = {"acpi", "hotplug", "kvm", "machine", "runningmachine", "scsihw", "smbios1", "tablet", "vga",
                  "watchdog", "audio0", "rng0"}
GENERAL_OPTIONS = {"agent", "autostart", "bios", "description", "keyboard", "localtime", "migrate_downtime",
                   "migrate_speed", "name", "onboot", "ostype", "protection", "reboot", "startdate", "startup",
                   "tdf", "template"}
DISK_OPTIONS = {"boot", "bootdisk", "vmstatestorage"}
CLOUDINIT_OPTIONS = {"cicustom", "cipassword", "citype", "ciuser", "ciupgrade", "nameserver", "searchdomain",
                     "sshkeys"}


def check_vm_modify_config_perm(ctx, vmid, pool, keys):
    """$check_vm_modify_config_perm: the privilege each config key needs on /vms/<vmid>."""
    perms = ctx.perms
    if perms is None:
        return
    for opt in sorted(keys):
        if DRIVE_KEY_RE.match(opt) or opt == "cdrom" or opt == "tags" or \
                re.match(r"^(?:unused|serial|usb|hostpci|virtiofs)\d+$", opt):
            continue
        if opt in CPU_OPTIONS or re.match(r"^numa\d+$", opt):
            perms.check_vm_perm(vmid, pool, ["VM.Config.CPU"])
        elif opt in MEMORY_OPTIONS:
            perms.check_vm_perm(vmid, pool, ["VM.Config.Memory"])
        elif opt in HWTYPE_OPTIONS:
            perms.check_vm_perm(vmid, pool, ["VM.Config.HWType"])
        elif opt in GENERAL_OPTIONS:
            perms.check_vm_perm(vmid, pool, ["VM.Config.Options"])
            if opt == "startup":
                perms.check("/", ["Sys.Modify"])
        elif opt == "freeze":
            perms.check_vm_perm(vmid, pool, ["VM.PowerMgmt"])
        elif opt in DISK_OPTIONS:
            perms.check_vm_perm(vmid, pool, ["VM.Config.Disk"])
        elif re.match(r"^net\d+$", opt) or opt == "running-nets-host-mtu":
            perms.check_vm_perm(vmid, pool, ["VM.Config.Network"])
        elif opt in CLOUDINIT_OPTIONS or re.match(r"^ipconfig\d+$", opt):
            perms.check_vm_perm(vmid, pool, ["VM.Config.Cloudinit", "VM.Config.Network"], any_=True)
        elif opt == "vmstate":
            perms.check_vm_perm(vmid, pool, ["VM.Config.Disk", "VM.PowerMgmt"])
        else:
            raise die(f"only root can set '{opt}' config")


def check_serial_perm(ctx, vmid, pool, params):
    """$check_vm_create_serial_perm: `socket` needs VM.Config.HWType, devices need root."""
    if ctx.perms is None:
        return
    for opt in sorted(params):
        if re.match(r"^serial\d+$", opt):
            if params[opt] == "socket":
                ctx.perms.check_vm_perm(vmid, pool, ["VM.Config.HWType"])
            else:
                raise die(f"only root can set '{opt}' config for real devices")


def parse_volume_id(volid):
    match = re.match(r"^([a-z][a-z0-9\-\_\.]*[a-z0-9]):(.+)$", volid or "", re.I | re.S)
    return (match.group(1), match.group(2)) if match else (None, None)


def _trunk_tags(part):
    match = re.match(r"^(\d+)-(\d+)$", part)
    return range(int(match.group(1)), int(match.group(2)) + 1) if match else [int(part)] if part.isdigit() else []


def unique_tags(tags):
    """PVE::GuestHelpers::get_unique_tags with the default tag-style (sorted, case-insensitive)."""
    seen, result = set(), []
    for tag in split_list(tags):
        if tag.lower() not in seen:
            seen.add(tag.lower())
            result.append(tag)
    return ";".join(sorted(result, key=str.lower))


def random_mac():
    return "BC:24:11:" + ":".join(f"{random.randrange(256):02X}" for _ in range(3))


class Api:
    def __init__(self, node, schema, fingerprint):
        self.node = node
        self.schema = schema
        self.fingerprint = fingerprint
        create, _ = schema.resolve("/nodes/x/qemu")
        self.config_props = schema.properties(create.info["POST"])
        self.routes = {
            ("GET", "/version"): self.version,
            ("GET", "/nodes"): self.nodes,
            ("GET", "/nodes/{node}/storage"): self.storage_index,
            ("GET", "/nodes/{node}/storage/{storage}/content"): self.content_index,
            ("DELETE", "/nodes/{node}/storage/{storage}/content/{volume}"): self.content_delete,
            ("POST", "/nodes/{node}/storage/{storage}/upload"): self.upload,
            ("POST", "/nodes/{node}/storage/{storage}/download-url"): self.download_url,
            ("GET", "/nodes/{node}/tasks"): self.task_index,
            ("GET", "/nodes/{node}/tasks/{upid}/status"): self.task_status,
            ("GET", "/nodes/{node}/tasks/{upid}/log"): self.task_log,
            ("GET", "/nodes/{node}/qemu"): self.vm_index,
            ("POST", "/nodes/{node}/qemu"): self.vm_create,
            ("GET", "/nodes/{node}/qemu/{vmid}/config"): self.vm_config,
            ("POST", "/nodes/{node}/qemu/{vmid}/config"): self.vm_update_async,
            ("PUT", "/nodes/{node}/qemu/{vmid}/config"): self.vm_update_sync,
            ("GET", "/nodes/{node}/qemu/{vmid}/status/current"): self.vm_status,
            ("POST", "/nodes/{node}/qemu/{vmid}/status/start"): self.vm_start,
            ("POST", "/nodes/{node}/qemu/{vmid}/status/stop"): self.vm_stop,
            ("POST", "/nodes/{node}/qemu/{vmid}/status/shutdown"): self.vm_shutdown,
            ("PUT", "/nodes/{node}/qemu/{vmid}/resize"): self.vm_resize,
            ("DELETE", "/nodes/{node}/qemu/{vmid}"): self.vm_destroy,
            ("POST", "/nodes/{node}/qemu/{vmid}/agent/ping"): self.agent_ping,
            ("GET", "/storage/{storage}"): self.storage_read,
            ("PUT", "/storage/{storage}"): self.storage_update,
            ("GET", "/pools"): self.pool_index,
            ("POST", "/pools"): self.pool_create,
            ("PUT", "/pools"): self.pool_update,
            ("DELETE", "/pools"): self.pool_delete,
            ("GET", "/pools/{poolid}"): self.pool_read,
            ("PUT", "/pools/{poolid}"): self.pool_update,
            ("DELETE", "/pools/{poolid}"): self.pool_delete,
        }
        self.routes[("GET", "/nodes/{node}/qemu/{vmid}/pending")] = self.vm_pending
        self.sdn = SdnApi(self)
        self.cluster = ClusterApi(self)
        self.routes.update(self.sdn.routes)
        self.routes.update(self.cluster.routes)
        network_api = NetworkApi(node)
        network_api.sdn = self.sdn
        self.routes.update(network_api.routes)
        self.routes.update(AccessApi(node.access).routes)
        self.pending = Pending(self)

    def handler(self, method, schema_path):
        return self.routes.get((method, schema_path))

    # --- lookups -----------------------------------------------------------

    def storage(self, sid):
        """PVE::Storage::storage_config + storage_check_node: a storage whose `nodes` list
        leaves this node out is `not available on node`."""
        storage = self.node.storages.get(sid)
        if storage is None:
            if sid in self.node.storage_defs:
                raise die(f"storage '{sid}' is not available on node '{self.node.name}'")
            raise die(f"storage '{sid}' does not exist")
        return storage

    def parse_volname(self, volid):
        """(Storage, vtype, name, owner vmid, format) of a volume ID (need not exist)."""
        sid, volname = parse_volume_id(volid)
        if sid is None:
            raise die(f"unable to parse volume ID '{volid}'")
        storage = self.storage(sid)
        return (storage,) + storage.parse_volname(volname)

    def vm(self, vmid):
        """PVE::QemuConfig->load_config: nodes/<this node>/qemu-server/<vmid>.conf."""
        vm = self.node.vms.get(int(vmid))
        if vm is None or vm.node != self.node.name:
            raise die(f"Configuration file 'nodes/{self.node.name}/qemu-server/{int(vmid)}.conf' does not exist")
        return vm

    # --- cluster / node ----------------------------------------------------

    def version(self, p, ctx):
        return {"version": "9.1.3", "release": "9.1", "repoid": "e5010dce"}

    def nodes(self, p, ctx):
        """pve-manager API2/Nodes.pm index: extract_node_stats per cluster node (an offline
        node keeps its last static values, no cpu/mem/uptime) + ssl_fingerprint (every
        simulated node serves the simulator's one certificate)."""
        return [self.cluster.node_stats(member, fingerprint=self.fingerprint)
                for member in self.node.members.values()]

    # --- storage -------------------------------------------------------------

    def storage_index(self, p, ctx):
        if p.get("storage") and p["storage"] not in self.node.storages:
            raise param_error({"storage": "No such storage."})
        wanted = set(split_list(p.get("content")))
        result = []
        for sid, storage in sorted(self.node.storages.items()):
            if p.get("storage") and sid != p["storage"]:
                continue
            if wanted and not wanted & set(storage.content):
                continue
            if not ctx.allowed(f"/storage/{sid}", ["Datastore.Audit", "Datastore.AllocateSpace"], any_=True):
                continue
            result.append(storage.status())
        return result

    def _storage_config(self, sid):
        """PVE::Storage::storage_config: `storage 'x' does not exist`."""
        if sid not in self.node.storages:
            raise die(f"storage '{sid}' does not exist")
        return self.node.storages[sid]

    def storage_read(self, p, ctx):
        """pve-storage API2/Storage/Config.pm `read` ($api_storage_config): the section + digest."""
        return dict(self._storage_config(p["storage"]).config(), digest=self.node.storage_cfg_digest())

    def storage_update(self, p, ctx):
        """pve-storage API2/Storage/Config.pm `update`: digest check, then the plugin's
        check_config; `content` is decoded by Plugin.pm `decode_value` (unsupported
        types are dropped with a warning; nothing left -> die). Errors are prefixed
        `update storage failed: ` (lock_storage_config)."""
        sid = p.pop("storage")
        digest = p.pop("digest", None)
        unsupported = sorted(k for k in p if k not in ("content",))
        if unsupported or p.get("delete"):
            raise ApiError(501, f"pve-sim: updating storage option(s) {', '.join(unsupported)} is not simulated")
        if digest and digest != self.node.storage_cfg_digest():
            raise die("update storage failed: detected modified configuration - file changed by other user? "
                      "Try again.")
        storage = self._storage_config(sid)
        if "content" in p:
            valid = PLUGIN_CONTENT[storage.type]
            content = []
            for item in split_list(p["content"]):
                if item not in valid:
                    ctx.warnings.append(f"storage does not support content type '{item}'")
                    continue
                if item not in content:
                    content.append(item)
            if "none" in content and len(content) > 1:
                raise die("update storage failed: unable to combine 'none' with other content types")
            if not content and "none" not in valid:
                raise die("update storage failed: storage does not support content type 'none'")
            storage.content = [c for c in content if c != "none"]
        return {"storage": sid, "type": storage.type}

    def content_index(self, p, ctx):
        storage = self.storage(p["storage"])
        result = []
        for volid, volume in sorted(storage.volumes.items()):
            if p.get("content") and volume.content != p["content"]:
                continue
            if p.get("vmid") and volume.vmid != int(p["vmid"]):
                continue
            try:  # Content.pm index: entries the caller may not access are skipped
                self.check_volume_access(ctx, volid)
            except ApiError:
                continue
            result.append(volume.listing())
        return result

    def content_delete(self, p, ctx):
        volid, storage = self._real_volume_id(p.get("storage"), p["volume"])
        _, vtype, _, owner, _ = self.parse_volname(volid)
        ctx.require(f"/storage/{storage.sid}", ["Datastore.Allocate"])  # Content.pm delete (non-backup)
        if vtype in ("images", "rootdir") and owner in self.node.vms:
            raise die(f"Cannot remove image, a guest with VMID '{owner}' exists!\n"
                      "You can delete the image from the guest's hardware pane")

        def worker(log):
            if volid not in storage.volumes:
                log.warn(f"disk image '{volid}' does not exist")
                return
            storage.free(volid)
            log.print(f"Removed volume '{volid}'")

        upid = self.node.run_task("imgdel", f"{owner if owner else 'vm'}@{storage.sid}", worker)
        if p.get("delay"):  # PVE waited up to `delay` seconds for the task and it finished
            self.node.tasks[upid].polls_left = 0
            return None
        return upid

    def _real_volume_id(self, sid, volume):
        if ":" in volume:
            vsid, _ = parse_volume_id(volume)
            if vsid is None:
                raise param_error({"volume": f"unable to parse volume ID '{volume}'\n"})
            if sid and vsid != sid:
                raise param_error({"volume": f"storage ID mismatch ({vsid} != {sid})\n"})
            return volume, self.storage(vsid)
        if not sid:
            raise param_error({"volume": "no storage specified"})
        return f"{sid}:{volume}", self.storage(sid)

    # --- upload ----------------------------------------------------------------

    def upload(self, p, ctx):
        upload = ctx.upload
        storage = self.storage(p["storage"])
        if not storage.file_based:
            raise die(f"can't upload to storage type '{storage.type}'")
        content = p["content"]
        filename = re.sub(r"[^a-zA-Z0-9_.-]", "_", re.sub(r"^.*[/\\]", "", p["filename"].rstrip("\n")))
        image_format = self._check_upload_name(content, filename)
        if content not in storage.content:
            raise die(f"storage '{storage.sid}' does not support '{content}' content")
        volid = f"{storage.sid}:{content}/{filename}"
        pve_dest = storage.pve_file_for(content, filename)

        def worker(log):
            log.print(f"starting file import from: {upload.pve_path}")
            self._verify_upload_checksum(p, upload, log)
            self._check_untrusted_upload(upload, image_format)
            log.print(f"target node: {self.node.name}")
            log.print(f"target file: {pve_dest}")
            log.print(f"file size is: {upload.size}")
            log.print(f"command: cp -- {upload.pve_path} {pve_dest}")
            self._store_upload(storage, volid, content, filename, image_format, upload)
            log.print("finished file import successfully")

        try:
            return self.node.run_task("imgcopy", "", worker)
        finally:
            upload.discard()

    # --- download-url ---------------------------------------------------------

    def download_url(self, p, ctx):
        """pve-storage Status.pm download_url: the checks before the worker, then
        PVE::Tools::download_file_from_url in a `download` task (wget there; a
        streamed urllib GET here, its failure reported as wget's exit code)."""
        storage = self.storage(p["storage"])
        if not storage.file_based:
            raise die(f"can't upload to storage type '{storage.type}', not a file based storage!")
        content, url = p["content"], p["url"]
        if content not in storage.content:
            raise die(f"storage '{storage.sid}' is not configured for content-type '{content}'")
        filename = re.sub(r"[^a-zA-Z0-9_.-]", "_", re.sub(r"^.*[/\\]", "", p["filename"].rstrip("\n")))
        image_format = self._check_upload_name(content, filename)
        # apidata.json leaves this enum out (it is computed in Perl): Plugin.pm's
        # KNOWN_COMPRESSION_FORMATS.
        if p.get("compression") and p["compression"] not in ("gz", "lzo", "zst", "bz2"):
            raise param_error({"compression": f"value '{p['compression']}' does not have a value "
                                              "in the enumeration 'gz, lzo, zst, bz2'"})
        volid = f"{storage.sid}:{content}/{filename}"
        dest = storage.file_for(content, filename)
        pve_dest = storage.pve_file_for(content, filename)
        algorithm = p.get("checksum-algorithm")
        expected = (p.get("checksum") or "").lower()
        verify = p.get("verify-certificates", "1") != "0"

        def worker(log):
            if p.get("compression") and content != "iso":
                raise TaskFailed(f"decompression not supported for {content}")
            log.print(f"downloading {url} to {pve_dest}")
            if os.path.isfile(dest):
                if not algorithm:
                    raise TaskFailed(f"refusing to override existing file '{pve_dest}'")
                got = _file_hash(dest, algorithm)
                if got == expected:
                    log.print("calculating checksum of existing file...OK, got correct file already, no need to download")
                    return
                log.print("calculating checksum of existing file...")
                raise TaskFailed(f"checksum mismatch: got '{got}' != expect '{expected}', aborting")
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            tmp = f"{dest}.tmp.{os.getpid()}"
            pve_tmp = f"{pve_dest}.tmp.{os.getpid()}"
            try:
                size = _wget(url, tmp, verify, log, pve_tmp)
                if algorithm:
                    got = _file_hash(tmp, algorithm)
                    if got != expected:
                        log.print("calculating checksum...")
                        raise TaskFailed(f"checksum mismatch: got '{got}' != expect '{expected}'")
                    log.print("calculating checksum...OK, checksum verified")
                problem = image_problem(tmp, image_format, pve_tmp) if image_format else None
                if problem:
                    raise TaskFailed(problem)
                os.replace(tmp, dest)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            fmt = image_format or ("iso" if content == "iso" else "t" + filename.rsplit(".", 1)[-1])
            volume = Volume(volid, content, fmt, size, dest)
            volume.sha256 = _file_hash(dest, "sha256")
            volume.virtual_size = image_virtual_size(dest, image_format) or size
            storage.volumes[volid] = volume
            log.print(f"download of '{url}' to '{pve_dest}' finished")

        return self.node.run_task("download", filename, worker)

    @staticmethod
    def _check_upload_name(content, filename):
        if content == "iso" and not re.search(r"[^/]+\.(?:iso|img)$", filename, re.I):
            raise param_error({"filename": "wrong file extension"})
        if content == "vztmpl" and not re.search(r"[^/]+\.tar(?:\.(gz|xz|zst|bz2))?$", filename, re.I):
            raise param_error({"filename": "wrong file extension"})
        if content == "import":
            match = re.search(rf"{SAFE_CHARS}+\.(ova|qcow2|raw|vmdk)$", filename)
            if not match:
                raise param_error({"filename": "invalid filename or wrong extension"})
            return match.group(1)
        return None

    @staticmethod
    def _verify_upload_checksum(p, upload, log):
        algorithm = p.get("checksum-algorithm")
        if not algorithm:
            return
        got = upload.checksums.get(algorithm, "")
        if got.lower() == p["checksum"].lower():
            log.print("calculating checksum...OK, checksum verified")
            return
        log.print("calculating checksum...")
        raise TaskFailed(f"checksum mismatch: got '{got}' != expect '{p['checksum']}'")

    @staticmethod
    def _check_untrusted_upload(upload, image_format):
        """file_size_info(..., untrusted=1) / assert_ova_contents on the spooled file."""
        if image_format == "ova":
            try:
                with tarfile.open(upload.path) as tar:
                    has_ovf = any(name.endswith(".ovf") for name in tar.getnames())
            except (tarfile.TarError, OSError):
                has_ovf = False
            if not has_ovf:
                raise TaskFailed("ova archive has no .ovf file inside")
            return
        problem = image_problem(upload.path, image_format, upload.pve_path)
        if problem:
            raise TaskFailed(problem)

    @staticmethod
    def _store_upload(storage, volid, content, filename, image_format, upload):
        path = storage.file_for(content, filename)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.replace(upload.path, path)  # PVE overwrites an existing file of that name
        fmt = image_format or ("iso" if content == "iso" else "t" + (filename.rsplit(".", 1)[-1]))
        volume = Volume(volid, content, fmt, upload.size, path)
        volume.sha256 = upload.checksums["sha256"]
        volume.virtual_size = image_virtual_size(path, image_format) or upload.size
        storage.volumes[volid] = volume

    # --- tasks -------------------------------------------------------------------

    def task(self, upid):
        if not re.match(r"^UPID:[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?:[0-9A-Fa-f]{8}:[0-9A-Fa-f]{8,9}:"
                        r"[0-9A-Fa-f]{8}:[^:\s]+:[^:\s]*:[^:\s]+:$", upid):
            raise param_error({"upid": "unable to parse worker upid"})
        task = self.node.tasks.get(upid)
        if task is None or task.node != self.node.name:  # Tasks.pm: no log file on this node
            raise param_error({"upid": "no such task"})
        return task

    def _check_task_access(self, ctx, task, node):
        """Tasks.pm: the owner (a user also owns its tokens' tasks), else Sys.Audit on /nodes/<node>."""
        if ctx.perms is not None and not ctx.perms.owns(task.user):
            ctx.require(f"/nodes/{node}", ["Sys.Audit"])

    def task_status(self, p, ctx):
        self._check_task_access(ctx, self.task(p["upid"]), p["node"])
        data = token_task(self.task(p["upid"]).status())
        self.node.dirty = True
        return data

    def task_log(self, p, ctx):
        self._check_task_access(ctx, self.task(p["upid"]), p["node"])
        lines = self.task(p["upid"]).log_lines()
        start, limit = int(p.get("start", 0)), int(p.get("limit", 50))
        return [{"n": i + 1, "t": t} for i, t in enumerate(lines)][start:start + limit]

    def task_index(self, p, ctx):
        source = p.get("source", "archive")
        auditor = ctx.allowed(f"/nodes/{p['node']}", ["Sys.Audit"])
        result = []
        for task in sorted(self.node.tasks.values(), key=lambda t: -t.starttime):
            if task.node != self.node.name:  # each node keeps its own task index
                continue
            if not auditor and not ctx.perms.owns(task.user):
                continue
            if (source == "archive" and task.running) or (source == "active" and not task.running):
                continue
            if p.get("typefilter") and task.type != p["typefilter"]:
                continue
            if p.get("vmid") and task.id != p["vmid"]:
                continue
            if p.get("errors") == "1" and (task.running or task.exitstatus == "OK"
                                           or task.exitstatus.startswith("WARNINGS: ")):
                continue
            entry = token_task({k: v for k, v in task.status(count_poll=False).items() if k != "exitstatus"})
            if not task.running:
                entry["status"] = task.exitstatus
                entry["endtime"] = task.starttime
            else:
                del entry["status"]
            result.append(entry)
        start, limit = int(p.get("start", 0)), int(p.get("limit", 50))
        return result[start:start + limit]

    # --- qemu: read --------------------------------------------------------------

    def vm_index(self, p, ctx):
        return [self._vm_summary(vm) for vmid, vm in sorted(self.node.vms.items())
                if vm.node == self.node.name and ctx.allowed(f"/vms/{vmid}", ["VM.Audit"])]

    def vm_status(self, p, ctx):
        vm = self.vm(p["vmid"])
        data = self._vm_summary(vm)
        data.update(qmpstatus=vm.status, ha={"managed": 0})
        if agent_enabled(vm.config):
            data["agent"] = 1
        if vm.status == "running":
            data.update({"running-qemu": "10.1.2", "running-machine": "pc-i440fx-10.1+pve0"})
        return data

    def _vm_summary(self, vm):
        config = vm.running if vm.status == "running" and vm.running else vm.config  # what QEMU runs with
        memory = parse_property_string(self.config_props["memory"]["format"], config.get("memory", "512"), "memory")
        cpus = int(config.get("cores", 1)) * int(config.get("sockets", 1))
        data = {"vmid": vm.vmid, "name": config.get("name", f"VM {vm.vmid}"), "status": vm.status,
                "cpus": int(config.get("vcpus", cpus)), "maxmem": int(memory.get("current", 512)) << 20,
                "maxdisk": self._boot_disk_size(config), "mem": 0, "cpu": 0, "disk": 0,
                "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0,
                "uptime": int(time.time() - vm.started) if vm.status == "running" else 0}
        if vm.status == "running":
            data["pid"] = (self.node.boot and self.node.boot.pid(vm.vmid)) or 10000 + vm.vmid
        for key in ("tags", "lock"):
            if key in config:
                data[key] = config[key]
        if config.get("template") == "1":
            data["template"] = 1
        return data

    def _boot_disk_size(self, config):
        for key in sorted(k for k in config if DRIVE_KEY_RE.match(k)):
            drive = self.parse_drive(key, config[key])
            if drive.get("media") != "cdrom" and drive.get("size"):
                return parse_size(drive["size"]) or 0
        return 0

    def vm_config(self, p, ctx):
        vm = self.vm(p["vmid"])
        if p.get("snapshot"):
            if p.get("current") == "1":
                message = "cannot use 'snapshot' parameter with 'current'"
                raise param_error({"snapshot": message, "current": message})
            raise die(f"snapshot '{p['snapshot']}' does not exist")
        config = self.pending.current_config(vm, p.get("current") == "1")
        data = {key: self._typed_config_value(key, value) for key, value in config.items()}
        if "cipassword" in data:
            data["cipassword"] = "**********"
        data["digest"] = vm.digest()
        return data

    def vm_pending(self, p, ctx):
        return self.pending.pending_array(self.vm(p["vmid"]))

    def _typed_config_value(self, key, value):
        """Config values come back as numbers when their schema type is numeric/boolean."""
        type_ = self.config_props.get(key, {}).get("type")
        if type_ in ("integer", "boolean"):
            return int(value)
        if type_ == "number":
            return float(value) if "." in value else int(value)
        return value

    # --- qemu: drives --------------------------------------------------------------

    def drive_format(self, key):
        return self.config_props[key]["format"]

    def parse_drive(self, key, value):
        return parse_property_string(self.drive_format(key), value, key)

    def print_drive(self, key, drive):
        drive = dict(drive)
        if drive.get("size") is not None and not isinstance(drive["size"], str):
            drive["size"] = format_size(drive["size"])
        return print_property_string(drive, self.drive_format(key))

    def parse_drives(self, params):
        return {key: self.parse_drive(key, value) for key, value in params.items() if DRIVE_KEY_RE.match(key)}

    def check_storage_access(self, drives, default_storage, ctx=None, vmid=None):
        """$check_storage_access of qemu-server's API2/Qemu.pm (synchronous, 400/500/403)."""
        for key, drive in sorted(drives.items()):
            self._check_target_access(key, drive, default_storage, ctx, vmid)
            source = drive.get("import-from")
            if not source:
                continue
            if source.startswith("/"):
                raise die("Only root can pass arbitrary filesystem paths.")
            _, vtype, _, src_vmid, fmt = self.parse_volname(source)
            if vtype not in ("images", "import"):
                raise param_error({key: f"{source} has wrong type '{vtype}' - needs to be 'images' or 'import'"})
            if vtype == "import" and fmt in ("ova", "ovf"):
                raise ApiError(501, "pve-sim: importing from OVA/OVF archives is not simulated")
            if src_vmid:
                ctx and ctx.require(f"/vms/{src_vmid}", ["VM.Clone"])
            else:
                self.check_volume_access(ctx, source, vmid)

    def _check_target_access(self, key, drive, default_storage, ctx=None, vmid=None):
        volid = drive.get("file")
        cdrom = drive.get("media") == "cdrom"
        sid, volname = parse_volume_id(volid)
        if not volid or volid in ("none", "cloudinit") or volname == "cloudinit":
            return
        if cdrom and volid == "cdrom":
            ctx and ctx.require("/", ["Sys.Console"])
            return
        match = NEW_DISK_RE.match(volid)
        if not cdrom and match:
            sid = match.group(2) or default_storage
            if not sid:
                raise die("no storage ID specified (and no default storage)")
            ctx and ctx.require(f"/storage/{sid}", ["Datastore.AllocateSpace"])
            if "images" not in self.storage(sid).content:
                raise param_error({"storage": f"storage '{sid}' does not support vm images"})
            return
        self.check_volume_access(ctx, volid, vmid)
        if sid:
            vtype = self.parse_volname(volid)[1]
            if vtype not in ("images", "iso"):
                raise param_error({key: "content type needs to be 'images' or 'iso'"})

    def check_volume_access(self, ctx, volid, vmid=None):
        """pve-storage (at 0c56bad8) src/PVE/Storage.pm check_volume_access."""
        sid, _ = parse_volume_id(volid)
        if not sid:
            if ctx is not None and ctx.perms is not None:
                raise die("Only root can pass arbitrary filesystem paths.")
            if volid.startswith("/"):
                raise die("Only root can pass arbitrary filesystem paths.")
            return
        if ctx is None or ctx.perms is None:
            return
        _, vtype, _, owner, _ = self.parse_volname(volid)
        if ctx.allowed(f"/storage/{sid}", ["Datastore.Allocate"]):
            return
        if vtype in ("iso", "vztmpl", "import"):
            ctx.require(f"/storage/{sid}", ["Datastore.AllocateSpace", "Datastore.Audit"], any_=True)
        elif owner is not None and vmid is not None and int(owner) == int(vmid):
            return
        elif vtype in ("images", "rootdir") and owner:
            ctx.require(f"/storage/{sid}", ["Datastore.Audit"])
            ctx.require(f"/vms/{owner}", ["VM.Config.Disk"])
        else:
            raise die(f"missing privileges to access {volid}")

    def check_bridge_access(self, ctx, params):
        """qemu-server QemuServer.pm check_bridge_access -> pve-guest-common
        GuestHelpers.pm check_vnet_access (zone `localnetwork`, or the vnet's zone in the
        running SDN config)."""
        if ctx is None or ctx.perms is None:
            return
        for key in sorted(k for k in params if re.match(r"^net\d+$", k)):
            net = self.parse_net(key, params[key])
            bridge = net.get("bridge")
            if bridge is None:
                continue
            tag, trunks = net.get("tag"), net.get("trunks")
            base = f"/sdn/zones/{self.sdn.zone_of_vnet(bridge) or 'localnetwork'}/{bridge}"
            if tag:
                ctx.perms.check(f"{base}/{tag}", ["SDN.Use"])
            for trunk in sorted({t for part in split_list(trunks or "") for t in _trunk_tags(part)}):
                ctx.perms.check(f"{base}/{trunk}", ["SDN.Use"])
            if not (tag or trunks):
                ctx.perms.check(base, ["SDN.Use"])

    def check_drive_param(self, drives):
        """$check_drive_param of qemu-server's API2/Qemu.pm (synchronous, 400)."""
        for key, drive in sorted(drives.items()):
            if drive.get("import-from"):
                match = NEW_DISK_RE.match(drive.get("file") or "")
                if not match or float(match.group(3)) != 0:
                    raise param_error({key: "'import-from' requires special syntax - "
                                            "use <storage ID>:0,import-from=<source>"})
                required = {"efidisk0": ("efitype", "pre-enrolled-keys"), "tpmstate0": ("version",)}
                for option in required.get(key, ()):
                    if drive.get(option) is None:
                        raise param_error({key: f"need to specify '{option}' when using 'import-from'"})
            volid = drive.get("file") or ""
            sid, volname = parse_volume_id(volid)
            if sid and not NEW_DISK_RE.match(volid) and volname != "cloudinit":
                if self.parse_volname(volid)[1] == "iso" and drive.get("media") != "cdrom":
                    raise param_error({key: "explicit 'media=cdrom' is required for iso images"})

    def create_disks(self, vmid, drives, default_storage, log):
        """create_disks: allocate/import/attach; frees what it made on failure."""
        created, result = [], {}
        try:
            for key in sorted(drives):
                result[key] = self._create_disk(vmid, key, dict(drives[key]), default_storage, log, created)
        except TaskFailed:
            for volume in created:
                self.node.storages[volume.volid.split(":")[0]].free(volume.volid)
            raise
        return result, created

    def _create_disk(self, vmid, key, drive, default_storage, log, created):
        volid = drive.get("file")
        sid, volname = parse_volume_id(volid)
        if not volid or volid in ("none", "cdrom"):
            drive.pop("size", None)
            return self.print_drive(key, drive)
        if volname == "cloudinit" or volid == "cloudinit":
            volume = self._alloc(sid or default_storage, vmid, CLOUDINIT_SIZE, created)
            drive.update(file=volume.volid, media="cdrom")
            drive.pop("format", None)
            text = self.print_drive(key, drive)
            log.print(f"{key}: successfully created disk '{text}'")
            return text
        match = NEW_DISK_RE.match(volid)
        if match:
            storage_id = match.group(2) or default_storage
            source = drive.pop("import-from", None)
            if source:
                volume = self._import_disk(vmid, key, storage_id, source, log, created)
            else:
                volume = self._alloc(storage_id, vmid, self._new_disk_size(key, drive, match), created)
                if key == "efidisk0" and self.node.boot:  # boot mode: the OVMF vars template
                    self.node.boot.init_efidisk(volume, drive)
            drive.update(file=volume.volid, size=volume.size)
            drive.pop("format", None)
            text = self.print_drive(key, drive)
            log.print(f"{key}: successfully created disk '{text}'")
            return text
        volume = self.node.volume(volid)
        if volume is None:
            raise TaskFailed(f"volume {volid} does not exist")
        drive["size"] = volume.size
        return self.print_drive(key, drive)

    def _new_disk_size(self, key, drive, match):
        if key == "efidisk0":
            return EFIVARS_SIZE[drive.get("efitype", "2m")]
        if key == "tpmstate0":
            return TPMSTATE_SIZE
        size = int(float(match.group(3)) * (1 << 30))
        if size <= 0:
            raise TaskFailed(f"{key}: pve-sim: refusing to allocate an empty volume")
        return size

    def _alloc(self, sid, vmid, size, created):
        volume = self.node.storages[sid].alloc_disk(vmid, size)
        created.append(volume)
        return volume

    def _import_disk(self, vmid, key, storage_id, source, log, created):
        storage, vtype, _, _, _ = self.parse_volname(source)
        volume = self.node.volume(source)
        if volume is None:
            if vtype == "import":
                raise TaskFailed(f"failed to stat '{storage.pve_file_for('import', source.split('/', 1)[1])}'")
            raise TaskFailed(f"cannot import from '{source}' - could not get size of {source}")
        size = volume.virtual_size
        log.print(f"create full clone of drive {key} ({source})")
        target = self._alloc(storage_id, vmid, size, created)
        target.source = source
        target.sha256 = volume.sha256
        if self.node.boot:  # boot mode: qemu-img convert onto the new volume (boot.py)
            self.node.boot.import_volume(volume, target, storage_id, log)
        else:
            log.print(f"transferred {format_size(size)} of {format_size(size)} (100.00%)")
        return target

    def _print_net(self, key, value):
        net = parse_property_string(self.config_props[key]["format"], value, key)
        net.setdefault("macaddr", random_mac())
        rest = ",".join(f"{k}={v}" for k, v in sorted(net.items()) if k not in ("model", "macaddr"))
        return f"{net['model']}={net['macaddr']}" + ("," + rest if rest else "")

    def _normalize_settings(self, params):
        """What PVE rewrites before storing: cdrom alias, MACs, tags."""
        if "cdrom" in params:
            value = params.pop("cdrom")
            params["ide2"] = value if "media=" in value else value + ",media=cdrom"
        for key in [k for k in params if re.match(r"^net\d+$", k)]:
            params[key] = self._print_net(key, params[key])
        if "tags" in params:
            params["tags"] = unique_tags(params["tags"])

    # --- qemu: create ------------------------------------------------------------

    def vm_create(self, p, ctx):
        vmid = int(p.pop("vmid"))
        p.pop("node")
        if p.pop("archive", None) is not None:
            raise ApiError(501, "pve-sim: restoring backups (archive) is not simulated")
        pool, start = p.pop("pool", None), p.pop("start", None) == "1"
        default_storage = p.pop("storage", None)
        for ignored in ("bwlimit", "force", "unique", "live-restore", "ha-managed", "import-working-storage"):
            p.pop(ignored, None)
        self.node.check_cfs_quorum()  # create_vm: before the pool check
        if pool is not None and pool not in self.node.pools:
            if ctx.perms is not None:  # RPCEnvironment::check_pool_exist
                raise ApiError(403, f"Permission check failed (pool '{pool}' does not exist)")
            raise die(f"pool '{pool}' does not exist")
        if default_storage is not None:
            ctx.require(f"/storage/{default_storage}", ["Datastore.AllocateSpace"])
        if start and ctx.perms is not None:
            ctx.perms.check_vm_perm(vmid, pool, ["VM.PowerMgmt"])
        if ctx.perms is not None and not ctx.allowed(f"/vms/{vmid}", ["VM.Allocate"]) and \
                not (pool and ctx.allowed(f"/pool/{pool}", ["VM.Allocate"])):
            raise ApiError(403, "Permission check failed")
        self._normalize_settings(p)
        drives = self.parse_drives(p)
        self.check_storage_access(drives, default_storage, ctx, vmid)
        check_vm_modify_config_perm(ctx, vmid, pool, p.keys())
        check_serial_perm(ctx, vmid, pool, p)
        self.check_bridge_access(ctx, p)
        self.check_drive_param(drives)
        if vmid in self.node.vms:
            # qemu-server create_vm: PVE::Cluster::check_vmid_unused over the cluster's vmlist
            raise die(f"unable to create VM {vmid} - VM {vmid} already exists on node "
                      f"'{self.node.vms[vmid].node}'")
        settings = {k: v for k, v in p.items() if k not in drives}

        def worker(log):
            try:
                disks, _ = self.create_disks(vmid, drives, default_storage, log)
            except TaskFailed as err:
                raise TaskFailed(f"unable to create VM {vmid} - {err}") from None
            config = dict(settings, **disks)
            self._add_create_defaults(config)
            self.node.vms[vmid] = Vm(vmid, config, self.node.name)
            if pool:
                self.node.pools[pool]["vms"].append(vmid)
            if start:  # PVE::API2::Qemu->vm_start: its own qmstart task
                log.print("Execute autostart")
                vm = self.node.vms[vmid]
                self.node.run_task("qmstart", vmid, lambda start_log: self._start_worker(vm, start_log))

        return self.node.run_task("qmcreate", vmid, worker)

    def _add_create_defaults(self, config):
        if "boot" not in config:
            devices = self._default_boot_devices(config)
            if devices:
                config["boot"] = "order=" + ";".join(devices)
        config.setdefault("smbios1", f"uuid={uuid.uuid4()}")
        if config.get("vmgenid", "1") == "1":
            config["vmgenid"] = str(uuid.uuid4())
        config["meta"] = f"creation-qemu=10.1.2,ctime={int(time.time())}"

    def _default_boot_devices(self, config):
        def order(key):
            match = DRIVE_KEY_RE.match(key)
            buses = ("ide", "sata", "scsi", "virtio")
            return (buses.index(match.group(1)), int(match.group(2))) if match.group(1) else (9, 0)

        disks = sorted((k for k in config if DRIVE_KEY_RE.match(k) and k not in ("efidisk0", "tpmstate0")), key=order)
        parsed = {k: self.parse_drive(k, config[k]) for k in disks}
        devices = [next((k for k in disks if parsed[k].get("media") != "cdrom"), None),
                   next((k for k in disks if parsed[k].get("media") == "cdrom"), None),
                   next((f"net{i}" for i in range(32) if f"net{i}" in config), None)]
        return [d for d in devices if d]

    # --- qemu: config update ---------------------------------------------------------

    def vm_update_sync(self, p, ctx):
        worker, vmid = self._prepare_update(p, ctx)
        try:
            worker(_NullLog(), sync=True)
        except TaskFailed as err:
            raise die(str(err))
        return None

    def vm_update_async(self, p, ctx):
        delay = p.pop("background_delay", None)
        worker, vmid = self._prepare_update(p, ctx)
        upid = self.node.run_task("qmconfig", vmid, worker)
        if delay:  # PVE waited up to `delay` seconds for the task and it finished
            self.node.tasks[upid].polls_left = 0
            status = self.node.tasks[upid].exitstatus
            if status == "OK" or status.startswith("WARNINGS: "):
                return None
            raise die(f"failed to update VM {vmid}: {status}")
        return upid

    def _prepare_update(self, p, ctx=None):
        vmid = int(p.pop("vmid"))
        p.pop("node")
        vm = self.vm(vmid)
        digest, delete, revert = p.pop("digest", None), p.pop("delete", None), p.pop("revert", None)
        force = p.pop("force", None) == "1"
        p.pop("skiplock", None)
        params_text = " ".join(f"-{k} {'<hidden>' if k == 'cipassword' else v}" for k, v in sorted(p.items()))
        if not delete and not revert and not p:
            raise die("no options specified")
        to_delete = split_list(delete)
        for key in to_delete:
            if key in p:
                raise param_error({"delete": f"you can't use '-{key}' and -delete {key}' at the same time"})
            if key not in self.config_props:
                raise param_error({"delete": f"unknown option '{key}'"})
        reverts = split_list(revert)
        for key in reverts:
            if key not in self.config_props:
                raise param_error({"revert": f"unknown option '{key}'"})
            if key in p:
                raise param_error({"delete": f"you can't use '-{key}' and -revert {key}' at the same time"})
        self._normalize_settings(p)
        drives = self.parse_drives(p)
        self._check_update_perms(ctx, vm, p, drives, to_delete)
        self.check_storage_access(drives, None, ctx, vmid)
        self.check_bridge_access(ctx, p)
        self.check_drive_param(drives)

        def worker(log, sync=False):
            if digest and digest != vm.digest():
                raise TaskFailed(MODIFIED)
            log.print(f"update VM {vmid}: {params_text}")
            for key in reverts:
                if key in vm.pending and DRIVE_KEY_RE.match(key):
                    self.keep_unused(vm, self.parse_drive(key, vm.pending[key]).get("file"))
                vm.pending.pop(key, None)
                self.pending.remove_delete(vm, key)
            self.pending.update(vm, p, drives, to_delete, force, log, sync)

        return worker, vmid

    def _check_update_perms(self, ctx, vm, params, drives, to_delete):
        """$update_vm_api: per-key privileges for deleted and set keys; drives need
        VM.Config.Disk (VM.Config.CDROM for a cdrom); a changed or deleted NIC also
        needs SDN.Use on its old bridge."""
        if ctx is None or ctx.perms is None:
            return
        check_vm_modify_config_perm(ctx, vm.vmid, None, to_delete)
        check_vm_modify_config_perm(ctx, vm.vmid, None, params.keys())
        for key in sorted(set(to_delete) | set(params)):
            if DRIVE_KEY_RE.match(key) or key.startswith("unused"):
                cdrom = key in drives and drives[key].get("media") == "cdrom"
                ctx.perms.check_vm_perm(vm.vmid, None, ["VM.Config.CDROM" if cdrom else "VM.Config.Disk"])
            elif re.match(r"^net\d+$", key):
                current = vm.pending.get(key, vm.config.get(key))
                if current is not None:
                    self.check_bridge_access(ctx, {key: current})
        check_serial_perm(ctx, vm.vmid, None, params)

    def free_owned(self, vm, volid):
        """try_deallocate_drive: free a volume the VM owns (a foreign one is only detached)."""
        volume = self.node.volume(volid) if volid else None
        if volume is not None and volume.vmid == vm.vmid:
            self.node.storages[volid.split(":")[0]].free(volid)

    def keep_unused(self, vm, volid):
        """vmconfig_register_unused_drive: an owned volume no longer referenced becomes unusedN."""
        volume = self.node.volume(volid) if volid else None
        if volume is None or volume.vmid != vm.vmid:
            return
        for key, value in list(vm.config.items()) + list(vm.pending.items()):
            if (DRIVE_KEY_RE.match(key) or key.startswith("unused")) and \
                    self.parse_drive(key, value).get("file") == volid:
                return
        index = next(i for i in range(256) if f"unused{i}" not in vm.config)
        vm.config[f"unused{index}"] = volid

    def parse_net(self, key, value):
        return parse_property_string(self.config_props[key]["format"], value, key)  # `virtio=MAC` via keyAlias

    def parse_agent(self, value):
        return parse_property_string(self.config_props["agent"]["format"], value, "agent")

    def node_device_exists(self, name):
        """/sys/class/net/<name> on the current node: its own interfaces, or a vnet its last
        SDN reload created (ifreload of /etc/network/interfaces.d/sdn)."""
        return self.node.network.device_exists(name) or name in self.node.members[self.node.name].sdn_vnets

    def bridge_problem(self, net):
        """Why pve-bridge cannot plug this NIC, or None: the bridge must exist
        (read_bridge_mtu); on a vnet, a tag/trunks need a vlan-aware vnet (pve-network
        `Zones/Plugin.pm` tap_plug: `vm vlans are not allowed on vnet X`)."""
        bridge = net["bridge"]
        if not self.node_device_exists(bridge):
            return f"bridge '{bridge}' does not exist"
        vnet = self.node.members[self.node.name].sdn_vnets.get(bridge)
        if vnet and not vnet.get("vlanaware") and (net.get("tag") or net.get("trunks")):
            return f"vm vlans are not allowed on vnet {bridge} at /usr/share/perl5/PVE/Network/SDN/Zones/Plugin.pm line 246."
        return None

    def assert_bridge_exists(self, bridge):
        """PVE::Network::read_bridge_mtu: /sys/class/net/<bridge>/mtu must exist."""
        if not self.node_device_exists(bridge):
            raise TaskFailed(f"bridge '{bridge}' does not exist")

    # --- qemu: power, resize, destroy, agent -------------------------------------

    def vm_start(self, p, ctx):
        vm = self.vm(p["vmid"])
        return self.node.run_task("qmstart", vm.vmid, lambda log: self._start_worker(vm, log))

    def _start_worker(self, vm, log):
        """vm_start_nolock: pending changes are applied, then QEMU runs the pve-bridge
        script for every bridged NIC (qemu-server src/usr/pve-bridge ->
        PVE::Network::tap_create -> read_bridge_mtu)."""
        if vm.status == "running":
            raise TaskFailed(f"VM {vm.vmid} already running")
        if vm.pending:
            self.pending.apply(vm, log)
        for index in range(32):
            key = f"net{index}"
            if key not in vm.config:
                continue
            net = self.parse_net(key, vm.config[key])
            problem = self.bridge_problem(net)
            if not problem:
                continue
            # print_netdev_full's -netdev argument; QEMU reports the script's exit status
            vhost = ",vhost=on" if net["model"] == "virtio" else ""
            queues = f",queues={net['queues']}" if net.get("queues") and net["model"] == "virtio" else ""
            log.print(problem)
            log.print(f"kvm: -netdev type=tap,id={key},ifname=tap{vm.vmid}i{index},"
                      "script=/usr/libexec/qemu-server/pve-bridge,"
                      f"downscript=/usr/libexec/qemu-server/pve-bridgedown{vhost}{queues}: "
                      "network script /usr/libexec/qemu-server/pve-bridge failed with status 512")
            raise TaskFailed("start failed: QEMU exited with code 1")
        if self.node.boot:  # boot mode: QEMU really runs (boot.py)
            self.node.boot.start(vm, log)
        self._power_on(vm)

    def _power_on(self, vm):
        vm.running = dict(vm.config)
        vm.status = "running"
        vm.started = time.time()
        pings = self.node.faults.take("agent_pings_before_ready")
        vm.agent_pings_left = int(pings or 0)

    def vm_stop(self, p, ctx):
        return self._power_off(p, "qmstop")

    def vm_shutdown(self, p, ctx):
        return self._power_off(p, "qmshutdown")

    def _power_off(self, p, task_type):
        vm = self.vm(p["vmid"])
        if self.node.boot:  # boot mode: QMP quit / powerdown / guest-shutdown (boot.py)
            return self.node.boot.power_off(self, vm, p, task_type)

        def worker(log):
            if vm.status != "running":
                log.print(f"VM {vm.vmid} not running")
            vm.status = "stopped"
            vm.started = None
            vm.running = None
            if vm.pending:  # vm_stop_cleanup(..., $apply_pending_changes = 1)
                self.pending.apply(vm, log)

        return self.node.run_task(task_type, vm.vmid, worker)

    def vm_resize(self, p, ctx):
        vm = self.vm(p["vmid"])
        disk, size_text, digest = p["disk"], p["size"], p.get("digest")
        if ctx.perms is not None and disk in vm.config:  # resize_vm: space on the disk's storage
            sid, _ = parse_volume_id(self.parse_drive(disk, vm.config[disk]).get("file"))
            if sid:
                ctx.require(f"/storage/{sid}", ["Datastore.AllocateSpace"])

        def worker(log):
            if digest and digest != vm.digest():
                raise TaskFailed(MODIFIED)
            if disk not in vm.config:
                raise TaskFailed(f"disk '{disk}' does not exist")
            drive = self.parse_drive(disk, vm.config[disk])
            if not drive.get("file"):
                raise TaskFailed(f"disk '{disk}' has no associated volume")
            if drive.get("media") == "cdrom":
                raise TaskFailed("you can't resize a cdrom")
            volume = self.node.volume(drive["file"])
            if volume is None:
                raise TaskFailed(f"Could not determine current size of volume '{drive['file']}'")
            match = re.match(r"^(\+)?(\d+(\.\d+)?)([KMGT])?$", size_text)
            if not match:
                raise TaskFailed(f"invalid size string '{size_text}'")
            amount = parse_size(match.group(2) + (match.group(4) or ""))
            new_size = volume.size + amount if match.group(1) else amount
            if new_size < volume.size:
                raise TaskFailed("shrinking disks is not supported")
            if new_size == volume.size:
                return
            storage = self.node.storages[drive["file"].split(":")[0]]
            drive["size"] = storage.resize(volume, new_size)
            if self.node.boot and vm.status == "running":
                self.node.boot.block_resize(vm, disk, drive["file"], new_size)
            vm.config[disk] = self.print_drive(disk, drive)

        return self.node.run_task("resize", vm.vmid, worker)

    def vm_destroy(self, p, ctx):
        vm = self.vm(p["vmid"])
        if vm.config.get("protection") == "1":
            raise die(f"can't remove VM {vm.vmid} - protection mode enabled")
        if vm.status == "running":
            raise die(f"VM {vm.vmid} is running - destroy failed")
        unreferenced = p.get("destroy-unreferenced-disks") == "1"

        def worker(log):
            referenced = {self.parse_drive(k, v).get("file") for k, v in vm.config.items()
                          if DRIVE_KEY_RE.match(k) or k.startswith("unused")}
            for storage in self.node.storages.values():
                for volid, volume in list(storage.volumes.items()):
                    if volume.vmid == vm.vmid and (volid in referenced or unreferenced):
                        storage.free(volid)
                        log.print(f"Removed volume '{volid}'")
            del self.node.vms[vm.vmid]
            if self.node.boot:
                self.node.boot.forget(vm.vmid)
            for pool in self.node.pools.values():
                if vm.vmid in pool["vms"]:
                    pool["vms"].remove(vm.vmid)

        return self.node.run_task("qmdestroy", vm.vmid, worker)

    def agent_ping(self, p, ctx):
        vm = self.vm(p["vmid"])
        if "agent" not in vm.config:
            raise die("No QEMU guest agent configured")
        if vm.status != "running":
            raise die(f"VM {vm.vmid} is not running")
        if self.node.boot:  # boot mode: guest-ping over the qga socket (boot.py)
            return self.node.boot.agent_ping(vm)
        if not agent_enabled(vm.config) or vm.agent_pings_left > 0:
            vm.agent_pings_left = max(0, vm.agent_pings_left - 1)
            raise die("QEMU guest agent is not running")
        return {"result": {}}

    # --- pools -------------------------------------------------------------------------

    def _pool(self, poolid, action=None):
        if poolid not in self.node.pools:
            prefix = f"{action} pool failed: " if action else ""
            raise die(f"{prefix}pool '{poolid}' does not exist")
        return self.node.pools[poolid]

    def _pool_members(self, pool):
        members = []
        for vmid in pool["vms"]:
            vm = self.node.vms.get(vmid)
            if vm:
                members.append({"id": f"qemu/{vmid}", "type": "qemu", "vmid": vmid, "node": vm.node,
                                "name": vm.config.get("name", f"VM {vmid}"), "status": vm.status})
        for sid in pool["storage"]:  # Pool.pm: one member per node the storage is enabled on
            definition = self.node.storage_defs.get(sid)
            for node in self.node.members:
                if definition and definition.available_on(node):
                    members.append({"id": f"storage/{node}/{sid}", "type": "storage", "storage": sid, "node": node})
        return members

    def pool_index(self, p, ctx):
        if p.get("poolid") and not ctx.allowed(f"/pool/{p['poolid']}", ["Pool.Audit"]):
            return []
        if p.get("poolid"):
            pool = self._pool(p["poolid"])
            entry = {"poolid": p["poolid"], "members": self._pool_members(pool)}
            if pool.get("comment") is not None:
                entry["comment"] = pool["comment"]
            return [entry]
        return [dict({"poolid": pid}, **({"comment": pool["comment"]} if pool.get("comment") is not None else {}))
                for pid, pool in sorted(self.node.pools.items()) if ctx.allowed(f"/pool/{pid}", ["Pool.Audit"])]

    def pool_read(self, p, ctx):
        pool = self._pool(p["poolid"])
        data = {"members": self._pool_members(pool)}
        if pool.get("comment") is not None:
            data["comment"] = pool["comment"]
        return data

    def pool_create(self, p, ctx):
        poolid = p["poolid"]
        if poolid in self.node.pools:
            raise die(f"create pool failed: pool '{poolid}' already exists")
        parent = poolid.rsplit("/", 1)[0] if "/" in poolid else None
        if parent and parent not in self.node.pools:
            raise die(f"create pool failed: parent '{parent}' does not exist")
        self.node.pools[poolid] = {"comment": p.get("comment"), "vms": [], "storage": []}
        return None

    def pool_update(self, p, ctx):
        pool = self._pool(p["poolid"], "update")
        if ctx.perms is not None:  # Pool.pm update_pool: the right to modify permissions on members
            for vmid in split_list(p.get("vms")):
                ctx.perms.check_perm_modify(f"/vms/{vmid}")
            for sid in split_list(p.get("storage")):
                ctx.perms.check_perm_modify(f"/storage/{sid}")
        if "comment" in p:
            pool["comment"] = p["comment"]
        remove = p.get("delete") == "1"
        for vmid in (int(v) for v in split_list(p.get("vms"))):
            if remove:
                if vmid in pool["vms"]:
                    pool["vms"].remove(vmid)
            elif vmid not in self.node.vms:
                raise die(f"update pool failed: VM {vmid} does not exist")
            elif vmid not in pool["vms"]:
                pool["vms"].append(vmid)
        for sid in split_list(p.get("storage")):
            if remove:
                if sid in pool["storage"]:
                    pool["storage"].remove(sid)
            elif sid not in pool["storage"]:
                self.storage(sid)
                pool["storage"].append(sid)
        return None

    def pool_delete(self, p, ctx):
        poolid = p["poolid"]
        pool = self._pool(poolid, "delete")
        for vmid in pool["vms"]:
            if vmid in self.node.vms:
                raise die(f"delete pool failed: pool '{poolid}' is not empty (contains VM {vmid})")
        for sid in pool["storage"]:
            raise die(f"delete pool failed: pool '{poolid}' is not empty (contains storage '{sid}')")
        if any(other.startswith(poolid + "/") for other in self.node.pools):
            raise die(f"delete pool failed: pool '{poolid}' is not empty (contains child pools)")
        del self.node.pools[poolid]
        return None


def token_task(task):
    """Tasks.pm $convert_token_task: `user@realm!id` -> user `user@realm`, tokenid `id`."""
    if "!" in task["user"]:
        task["user"], task["tokenid"] = task["user"].split("!", 1)
    return task


class _NullLog:
    def print(self, line=""):
        pass

    def warn(self, message):
        pass


def agent_enabled(config):
    value = config.get("agent")
    if value is None:
        return False
    first = value.split(",")[0]
    if "=" not in first:
        return first in ("1", "on", "yes", "true")
    return bool(re.search(r"(^|,)enabled=(1|on|yes|true)(,|$)", value))


# --- untrusted image checks (what `qemu-img info` tells PVE) ---------------------


def _qcow2_header(path):
    with open(path, "rb") as handle:
        return handle.read(104)


def _file_hash(path, algorithm):
    """PVE::Tools::get_file_hash: the lowercase hex digest, streamed."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _wget(url, path, verify, log, pve_path):
    """`wget --progress=dot:giga -O PATH URL` under run_command(errmsg => "download
    failed"): wget exits 8 when the server answers with an error, 4 when the
    network fails, 5 on a TLS verification failure."""
    context = None if verify else ssl._create_unverified_context()  # noqa: S323 (as --no-check-certificate)
    command = f"wget --progress=dot:giga -O {pve_path} {url}"
    try:
        with urllib.request.urlopen(url, timeout=60, context=context) as response, open(path, "wb") as out:
            size = 0
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
                size += len(chunk)
    except urllib.error.HTTPError as err:
        log.print(f"HTTP request sent, awaiting response... {err.code} {err.reason}")
        raise TaskFailed(f"download failed: command '{command}' failed: exit code 8") from None
    except ssl.SSLError:
        raise TaskFailed(f"download failed: command '{command}' failed: exit code 5") from None
    except (urllib.error.URLError, OSError):
        raise TaskFailed(f"download failed: command '{command}' failed: exit code 4") from None
    return size


def image_problem(path, image_format, pve_path):
    """PVE::Storage::Plugin::file_size_info(..., untrusted=1) on an uploaded image."""
    if image_format == "qcow2":
        header = _qcow2_header(path)
        if len(header) < 72 or header[:4] != b"QFI\xfb":
            return "failed to query file information with qemu-img"
        backing_offset = int.from_bytes(header[8:16], "big")
        version = int.from_bytes(header[4:8], "big")
        incompatible = int.from_bytes(header[72:80], "big") if version >= 3 and len(header) >= 80 else 0
        if incompatible & 0x4:
            return f"{pve_path}: 'data-file' references are not allowed!"
        if backing_offset:
            return f"backing file not allowed for untrusted image '{pve_path}'!"
    elif image_format == "vmdk":
        with open(path, "rb") as handle:
            if handle.read(4) != b"KDMV":
                return "failed to query file information with qemu-img"
    return None


def image_virtual_size(path, image_format):
    if image_format == "qcow2":
        header = _qcow2_header(path)
        if len(header) >= 32 and header[:4] == b"QFI\xfb":
            return int.from_bytes(header[24:32], "big")
    if image_format == "vmdk":
        with open(path, "rb") as handle:
            header = handle.read(20)
        if len(header) == 20 and header[:4] == b"KDMV":
            return int.from_bytes(header[12:20], "little") * 512
    return None

