"""Pending VM configuration: the [PENDING] section, hotplug and cold-plug.

Owns how a config update reaches a VM, transcribed from qemu-server (at
e6352be6) and pve-guest-common (AbstractConfig.pm, GuestHelpers.pm):

* `update` is `$update_vm_api`'s `$updatefn` (src/PVE/API2/Qemu.pm): every
  change is first written to the pending section (`delete` entries to
  `pending.delete`, `!key` when forced), `unusedN`/`tags` deletes act at
  once, a new drive is allocated and its string stored as pending; then
  `cleanup_pending`; then, if the VM runs, `vmconfig_hotplug_pending`,
  else `vmconfig_apply_pending`. Hotplug errors become
  `{key: "hotplug problem - <msg>"}` (400; in a task: `400 Parameter
  verification failed. key: hotplug problem - <msg>`);
* `hotplug` is `vmconfig_hotplug_pending` (src/PVE/QemuServer.pm): the
  fast-plug options (description, name, onboot, tags, protection, startup,
  cloud-init keys, ...) apply at once; with the VM's `hotplug` features
  (default `network,disk,usb`; `1` = default, `0` = none) `vcpus` needs
  `cpu`, `memory` needs `memory` (`memory can't be lower than 1024 MB`),
  nets need `network` unless only bridge/tag/trunks/firewall/rate/link_down
  change (re-plugged live; the new bridge must exist: `bridge 'x' does not
  exist`), disks need `disk` (never ide/sata/efidisk0/tpmstate0; option
  changes such as cache/discard/iothread stay pending), `agent` only if just
  `fstrim_cloned_disks` changed; `cores`, `sockets`, `cpu`, `bios`,
  `machine`, ... always stay pending ("skip");
* `apply` is `vmconfig_apply_pending` (cold plug), run by an update of a
  stopped VM, by `vm_start` before QEMU starts and by `vm_stop_cleanup`
  after a stop/shutdown;
* `current_config`/`pending_array` are `load_current_config` and
  `config_with_pending_array` (GET .../config without/with `current=1`,
  GET .../pending with `key`, `value`, `pending`, `delete` 1|2).
"""

import re

from .state import ApiError, TaskFailed, param_error

FAST_PLUG = {
    "description", "hookscript", "lock", "migrate_downtime", "migrate_speed", "name", "onboot",
    "protection", "shares", "startup", "tags", "vmstatestorage",
    "citype", "ciuser", "cipassword", "ciupgrade", "cicustom", "searchdomain", "nameserver", "sshkeys",
} | {f"ipconfig{i}" for i in range(32)}
DRIVE_RE = re.compile(r"^(ide\d+|sata\d+|scsi\d+|virtio\d+|efidisk0|tpmstate0)$")
STATICMEM = 1024
NOT_HOTPLUGGABLE_DISK_OPTIONS = ("aio", "discard", "iothread", "queues", "product", "cache", "ssd", "vendor", "ro")


class Skip(Exception):
    """qemu-server's `die "skip\\n"`: the change stays pending."""


def parse_pending_delete(data):
    result = {}
    text = re.sub(r"[,;]", " ", data or "").strip()
    for entry in text.split():
        match = re.match(r"^(!?)(.*)$", entry)
        result[match.group(2)] = 1 if match.group(1) else 0
    return result


def print_pending_delete(deletes):
    return ",".join(("!" if deletes[k] else "") + k for k in sorted(deletes))


def hotplug_features(config):
    value = config.get("hotplug", "1")
    if value == "0":
        return set()
    if value == "1":
        value = "network,disk,usb"
    return set(re.split(r"[,;\s]+", value.strip()))


class Pending:
    """Pending-change operations on a Vm (`vm.config`, `vm.pending`, `vm.running`)."""

    def __init__(self, api):
        self.api = api

    # --- pending section bookkeeping (PVE::AbstractConfig) ------------------------------

    @staticmethod
    def add_delete(vm, key, force):
        deletes = parse_pending_delete(vm.pending.get("delete"))
        deletes[key] = 1 if force else 0
        vm.pending["delete"] = print_pending_delete(deletes)

    @staticmethod
    def remove_delete(vm, key):
        deletes = parse_pending_delete(vm.pending.get("delete"))
        if key not in deletes:
            return
        del deletes[key]
        if deletes:
            vm.pending["delete"] = print_pending_delete(deletes)
        else:
            vm.pending.pop("delete", None)

    @staticmethod
    def cleanup(vm):
        for key in [k for k in vm.pending if k != "delete"]:
            if key in vm.config and vm.pending[key] == vm.config[key]:
                del vm.pending[key]
        deletes = {k: f for k, f in parse_pending_delete(vm.pending.get("delete")).items() if k in vm.config}
        if deletes:
            vm.pending["delete"] = print_pending_delete(deletes)
        else:
            vm.pending.pop("delete", None)

    # --- reads -------------------------------------------------------------------------------

    @staticmethod
    def current_config(vm, current):
        config = dict(vm.config)
        if not current:
            config.update({k: v for k, v in vm.pending.items() if k != "delete"})
            for key in parse_pending_delete(vm.pending.get("delete")):
                config.pop(key, None)
        return config

    def pending_array(self, vm):
        typed = self.api._typed_config_value
        deletes = parse_pending_delete(vm.pending.get("delete"))
        pending = {k: v for k, v in vm.pending.items() if k != "delete"}
        config = dict(vm.config, digest=vm.digest())
        if "cipassword" in config:
            config["cipassword"] = "**********"
        if "cipassword" in pending:
            pending["cipassword"] = "********** "
        result = []
        for key in sorted(config):
            item = {"key": key, "value": typed(key, config[key]) if key != "digest" else config[key]}
            if key in pending:
                item["pending"] = typed(key, pending.pop(key))
            if key in deletes:
                item["delete"] = 2 if deletes.pop(key) else 1
            result.append(item)
        result += [{"key": k, "pending": typed(k, v)} for k, v in sorted(pending.items())]
        result += [{"key": k, "delete": 2 if f else 1} for k, f in sorted(deletes.items())]
        return result

    # --- the update worker ($updatefn) ---------------------------------------------------------

    def update(self, vm, params, drives, to_delete, force, log, sync):
        api = self.api
        bootorder = self._bootorder(vm)
        for key in to_delete:
            value = vm.config.get(key, vm.pending.get(key))
            if value is None:
                log.print(f"cannot delete '{key}' - not set in current configuration!")
                continue
            was_pending = key in vm.pending
            vm.pending.pop(key, None)
            if "bootorder" not in to_delete and key in bootorder:
                bootorder.remove(key)
                vm.pending["boot"] = "order=" + ";".join(bootorder)
            if key.startswith("unused"):
                api.free_owned(vm, api.parse_drive(key, value).get("file"))
                vm.config.pop(key, None)
            elif key == "tags":
                vm.config.pop(key, None)
            else:
                if DRIVE_RE.match(key) and was_pending:
                    api.keep_unused(vm, api.parse_drive(key, value).get("file"))
                self.add_delete(vm, key, force)
        for key in sorted(params):
            value = params[key]
            if vm.pending.get(key) == value and key not in drives:
                continue
            if key in drives:
                if key in vm.pending:
                    api.keep_unused(vm, api.parse_drive(key, vm.pending[key]).get("file"))
                disks, _ = api.create_disks(vm.vmid, {key: drives[key]}, None, log)
                vm.pending[key] = disks[key]
            else:
                vm.pending[key] = value
            self.remove_delete(vm, key)
        self.cleanup(vm)
        if not vm.pending:
            return
        errors = {}
        if vm.status == "running":
            self.hotplug(vm, errors)
        else:
            self.apply(vm, log, errors)
        if errors:
            if sync:
                raise param_error(errors)
            # fork_worker: PVE::Exception stringified, chomped, newlines -> spaces
            text = "400 Parameter verification failed.\n" + "".join(f"{k}: {v}\n" for k, v in errors.items())
            raise TaskFailed(text[:-1].replace("\n", " "))

    def _bootorder(self, vm):
        match = re.search(r"(?:^|,)order=([^,]+)", vm.config.get("boot", ""))
        return [d for d in re.split(r"[;,\s]+", match.group(1)) if d] if match else []

    # --- vmconfig_apply_pending (cold plug) -----------------------------------------------------

    def apply(self, vm, log, errors=None):
        api = self.api
        errors = {} if errors is None else errors
        for key, force in sorted(parse_pending_delete(vm.pending.get("delete")).items()):
            if key in vm.config and DRIVE_RE.match(key):
                self._delete_or_detach_drive(vm, key, force)
            self.remove_delete(vm, key)
            vm.config.pop(key, None)
        self.cleanup(vm)
        for key in sorted(k for k in vm.pending if k != "delete"):
            if key in vm.config and DRIVE_RE.match(key):
                api.keep_unused(vm, api.parse_drive(key, vm.config[key]).get("file"))
            vm.config[key] = vm.pending.pop(key)

    def _delete_or_detach_drive(self, vm, key, force):
        drive = self.api.parse_drive(key, vm.config[key])
        if force and drive.get("media") != "cdrom":
            self.api.free_owned(vm, drive.get("file"))
        else:
            self.api.keep_unused(vm, drive.get("file"))

    # --- vmconfig_hotplug_pending ----------------------------------------------------------------

    def hotplug(self, vm, errors):
        for key in [k for k in vm.pending if k in FAST_PLUG]:
            vm.config[key] = vm.pending.pop(key)
        features = hotplug_features(vm.config)
        for key, force in sorted(parse_pending_delete(vm.pending.get("delete")).items()):
            try:
                self._hotplug_delete(vm, key, force, features)
            except Skip:
                continue
            except TaskFailed as err:
                errors[key] = f"hotplug problem - {err}\n"
                continue
            vm.config.pop(key, None)
            vm.running.pop(key, None)
            self.remove_delete(vm, key)
        for key in sorted(k for k in vm.pending if k != "delete"):
            value = vm.pending[key]
            try:
                self._hotplug_value(vm, key, value, features)
            except Skip:
                continue
            except TaskFailed as err:
                errors[key] = f"hotplug problem - {err}\n"
                continue
            vm.config[key] = value
            vm.running[key] = value
            del vm.pending[key]

    def _hotplug_delete(self, vm, key, force, features):
        if key == "hotplug":
            if re.search(r"cpu|memory", vm.config.get("hotplug", "")):
                raise Skip()
        elif key == "tablet" or key.startswith("usb"):
            if "usb" not in features:
                raise Skip()
        elif key == "vcpus":
            if "cpu" not in features:
                raise Skip()
        elif key == "balloon":
            if vm.config.get("balloon") == "0":
                raise Skip()
        elif key in FAST_PLUG or key in ("cpuunits", "cpulimit"):
            pass
        elif re.match(r"^net\d+$", key):
            if "network" not in features:
                raise Skip()
        elif DRIVE_RE.match(key):
            if "disk" not in features or re.match(r"^(efidisk|ide|sata|tpmstate)\d+$", key):
                raise Skip()
            if key in vm.config:
                self._delete_or_detach_drive(vm, key, force)
        elif key == "memory":
            if "memory" not in features:
                raise Skip()
        else:
            raise Skip()

    def _hotplug_value(self, vm, key, value, features):
        if key == "hotplug":
            if "memory" in value or "memory" in vm.config.get("hotplug", "") \
                    or "cpu" in value or "cpu" in vm.config.get("hotplug", ""):
                raise Skip()
        elif key == "tablet" or key.startswith("usb"):
            if "usb" not in features:
                raise Skip()
            if key.startswith("usb"):
                raise ApiError(501, "pve-sim: USB hotplug is not simulated")
        elif key == "vcpus":
            if "cpu" not in features:
                raise Skip()
        elif key == "balloon":
            old_enabled = vm.config.get("balloon", "1") != "0"
            if old_enabled != (value != "0"):
                raise Skip()
        elif re.match(r"^net\d+$", key):
            self._update_net(vm, key, value, "network" in features)
        elif DRIVE_RE.match(key):
            if key in ("efidisk0", "tpmstate0"):
                raise Skip()
            self._update_disk(vm, key, value, "disk" in features)
        elif key == "memory":
            if "memory" not in features:
                raise Skip()
            self._memory_hotplug(vm, value)
        elif key in ("cpuunits", "cpulimit"):
            pass
        elif key == "agent":
            self._update_agent(vm, value)
        else:
            raise Skip()

    def _update_net(self, vm, key, value, hotplug):
        """vmconfig_update_net."""
        parse = self.api.parse_net
        new = parse(key, value)
        if key in vm.config:
            old = parse(key, vm.config[key])
            if any(old.get(k) != new.get(k) for k in ("model", "macaddr", "queues", "mtu")) \
                    or not (new.get("bridge") and old.get("bridge")):
                if not hotplug:
                    raise Skip()
            else:
                if any(old.get(k) != new.get(k) for k in ("bridge", "tag", "trunks", "firewall")):
                    self.api.assert_bridge_exists(new["bridge"])
                return
        if not hotplug:
            raise Skip()
        if new.get("bridge"):
            self.api.assert_bridge_exists(new["bridge"])

    def _update_disk(self, vm, key, value, hotplug):
        """vmconfig_update_disk."""
        api = self.api
        drive = api.parse_drive(key, value)
        if key in vm.config:
            old = api.parse_drive(key, vm.config[key])
            if drive.get("media", "disk") != old.get("media", "disk"):
                raise TaskFailed("unable to change media type")
            if old.get("media") != "cdrom":
                if drive.get("file") != old.get("file"):
                    if not hotplug:
                        raise Skip()
                    api.keep_unused(vm, old.get("file"))
                else:
                    if any(drive.get(k) != old.get(k) for k in NOT_HOTPLUGGABLE_DISK_OPTIONS):
                        raise Skip()
                    return
            else:
                return  # change_medium
        if not hotplug or re.match(r"^(ide|sata)\d+$", key):
            raise Skip()

    def _memory_hotplug(self, vm, value):
        """PVE::QemuServer::Memory::qemu_memory_hotplug's checks."""
        memory_format = self.api.config_props["memory"]["format"]
        from .schema import parse_property_string  # noqa: PLC0415 (avoid an import cycle)
        new = int(parse_property_string(memory_format, value, "memory").get("current", 512))
        old = int(parse_property_string(memory_format, vm.config.get("memory", "512"), "memory").get("current", 512))
        if new == old:
            return
        static = STATICMEM * (int(vm.config.get("sockets", 1)) if vm.config.get("hugepages") == "1024" else 1)
        if new < static:
            # a Perl `die` without newline: the location is part of the message
            raise TaskFailed(f"memory can't be lower than {static} MB at "
                             "/usr/share/perl5/PVE/QemuServer/Memory.pm line 219.")

    def _update_agent(self, vm, value):
        """vmconfig_update_agent: only fstrim_cloned_disks is hot-pluggable."""
        if not vm.config.get("agent"):
            raise Skip()
        old, new = self.api.parse_agent(vm.config["agent"]), self.api.parse_agent(value)
        for option in set(old) | set(new):
            if option != "fstrim_cloned_disks" and old.get(option) != new.get(option):
                raise Skip()
