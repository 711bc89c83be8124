"""Boot mode (`--boot --boot-netns NS`): the simulated node really runs its VMs.

The API behaviour stays the simulator's; what changes is what lies under it:

* network: ifreload creates the configured, up Linux bridges in the network
  namespace NS that plays the host (`ip -n NS link add ... type bridge`,
  address, up) and deletes the ones it created when they leave the config;
  devices it did not create (the test's vmbr0 and uplink) are left alone.
  `device_exists` (/sys/class/net/<dev> on PVE) asks NS.
* disks: `import-from` converts the source onto the new volume with
  `qemu-img convert -p -n -f SRC -O FMT` (qemu-server QemuImage.pm
  `convert`; `--target-is-zero` stands in for pve-qemu's `zeroinit:` driver,
  `-t none` is left out: volumes are plain files here); a new efidisk0 gets
  the OVMF vars template (OVMF.pm `create_efidisk`).
* qmstart builds the command line (qemu_cmd.py), creates and plugs the taps
  (pve-bridge -> pve-common PVE/Network.pm `tap_create`: `ip link set TAP up
  promisc on mtu <bridge mtu>`, `tap_plug`: `ip link set TAP master BRIDGE`)
  and runs QEMU as a tracked child inside NS (`ip netns exec NS ...`). It
  waits until QMP answers; if QEMU exits first the task fails with its
  stderr and `start failed: QEMU exited with code N` (vm_start's message).
* qmstop / qmshutdown are real: `quit` / `system_powerdown` over QMP, or
  `guest-shutdown` through the agent when it is enabled and answers
  (QemuServer.pm `_do_vm_stop`), waiting up to `timeout` (default 60) for the
  process to end; then `VM quit/powerdown failed - got timeout`, or with
  forceStop (always for qmstop) SIGTERM, 10 s, SIGKILL. These two tasks run
  in a thread: the API answers with the UPID at once and the task reads
  `running` until the worker ends (plus the usual N polls).
* QEMU runs with `-no-shutdown` as on PVE, so a guest that powers off only
  stops; the simulator plays qmeventd (src/qmeventd/qmeventd.c): QEMU
  connects to DIR/qmeventd.sock, a SHUTDOWN event is answered with `quit`
  (SIGKILL 5 s later if needed). When the process ends, its taps and sockets
  go and the VM reads `stopped` (`qm cleanup`: pending changes are applied by
  stop/shutdown tasks only, as vm_stop_cleanup is called with
  $apply_pending_changes there and not from qm cleanup).
* agent ping: `guest-ping` over DIR/vms/<vmid>/qga.sock (QMPClient.pm's
  guest-sync-delimited framing, 3 s: Agent.pm qga_check_running), then the
  ping itself (5 s).
* on exit every QEMU gets `quit` (SIGKILL after 3 s), taps and the bridges
  boot mode created are deleted.
"""

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

from . import ifaces as ifmod
from . import qemu_cmd
from .qga import QmpError, qga_cmd, qmp_cmd
from .schema import parse_property_string
from .state import Task, TaskFailed, die

QEMU = "qemu-system-x86_64"


class AsyncTask(Task):
    """A task whose worker runs in a thread: `running` until it ends (and for N polls)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.done = threading.Event()

    @property
    def running(self):
        return not self.done.is_set() or self.polls_left > 0

    def snapshot(self):
        snap = super().snapshot() if self.exitstatus is not None else dict(
            type=self.type, id=self.id, user=self.user, status="running", exitstatus=None,
            polls_left=self.polls_left, log=list(self.log.lines))
        return snap


class QemuProcess:
    def __init__(self, vmid, proc, cmd, vm_dir, taps):
        self.vmid = vmid
        self.proc = proc
        self.cmd = cmd
        self.vm_dir = vm_dir
        self.taps = taps
        self.exited = threading.Event()
        self.started = time.time()

    @property
    def qmp(self):
        return os.path.join(self.vm_dir, "qmp.sock")

    @property
    def qga(self):
        return os.path.join(self.vm_dir, "qga.sock")

    def snapshot(self):
        return {"pid": self.proc.pid, "cmdline": self.cmd, "console_log": os.path.join(self.vm_dir, "console.log"),
                "qmp_socket": self.qmp, "qga_socket": self.qga, "taps": [t["ifname"] for t in self.taps]}


class BootMode:
    def __init__(self, directory, netns, memory_cap=2048, cores_cap=1, ovmf_code=None, ovmf_vars=None,
                 accel="tcg", qemu=QEMU):
        self.dir = os.path.abspath(directory)
        self.netns = netns
        self.memory_cap = memory_cap
        self.cores_cap = cores_cap
        self.ovmf_code = ovmf_code
        self.ovmf_vars = ovmf_vars
        self.accel = accel
        self.qemu = shutil.which(qemu) or qemu
        self.qemu_version = qemu_version(self.qemu)
        self.vms_dir = os.path.join(self.dir, "vms")
        shutil.rmtree(self.vms_dir, ignore_errors=True)
        os.makedirs(self.vms_dir)
        self.procs = {}
        self.created_bridges = {}  # name -> cidr (None: no address)
        self.node = None
        self.api = None
        self.event_socket = os.path.join(self.dir, "qmeventd.sock")
        self._start_qmeventd()

    def attach(self, node, api):
        self.node = node
        self.api = api
        node.boot = self
        node.network.boot = self
        self.sync_bridges(node.network)

    # --- ip(8) in the host namespace ---------------------------------------------------

    def ip(self, *args, check=True):
        result = subprocess.run(["ip", "-n", self.netns] + list(args), capture_output=True, text=True)
        if check and result.returncode != 0:
            raise TaskFailed(f"command 'ip {' '.join(args)}' failed: {result.stderr.strip()}")
        return result

    def link(self, name):
        result = self.ip("-j", "link", "show", "dev", name, check=False)
        if result.returncode != 0:
            return None
        data = json.loads(result.stdout or "[]")
        return data[0] if data else None

    def link_exists(self, name):
        return self.link(name) is not None

    def bridge_mtu(self, bridge):
        """PVE::Network::read_bridge_mtu."""
        info = self.link(bridge)
        if info is None:
            raise TaskFailed(f"bridge '{bridge}' does not exist")
        return int(info["mtu"])

    # --- network: ifreload --------------------------------------------------------------

    def sync_bridges(self, network):
        """After `ifreload -a`: create the up bridges missing from the namespace, drop the ones
        boot mode created that are gone from the config, keep their address in step."""
        ifaces, _ = ifmod.parse(network.active_text, network.nics, ())
        wanted = {name: d.get("cidr") for name, d in ifaces.items()
                  if d.get("type") == "bridge" and name in network.up}
        for name in sorted(set(self.created_bridges) - set(wanted)):
            self.ip("link", "del", "dev", name, check=False)
            del self.created_bridges[name]
        for name, cidr in sorted(wanted.items()):
            if name in self.created_bridges:
                if self.created_bridges[name] != cidr:
                    self.ip("addr", "flush", "dev", name, check=False)
                    if cidr:
                        self.ip("addr", "add", cidr, "dev", name, check=False)
                    self.created_bridges[name] = cidr
                continue
            if self.link_exists(name):
                continue  # made by the test (or the host): not ours
            # ifupdown2: bridge-stp off, bridge-fd 0
            self.ip("link", "add", "name", name, "type", "bridge", "stp_state", "0", "forward_delay", "0",
                    check=False)
            if cidr:
                self.ip("addr", "add", cidr, "dev", name, check=False)
            self.ip("link", "set", "dev", name, "up", check=False)
            self.created_bridges[name] = cidr

    # --- disks ----------------------------------------------------------------------------

    def import_volume(self, source, target, target_storage, log):
        """QemuImage.pm convert: qemu-img convert -p -n -f SRC -O FMT SRC DST (progress lines
        become `transferred X of Y (P%)`)."""
        fmt = source.format if source.format in ("qcow2", "raw", "vmdk") else "raw"
        cmd = ["qemu-img", "convert", "-p", "-n", "--target-is-zero", "-f", fmt, "-O", target.format,
               source.path, target.path]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise TaskFailed(f"copy failed: command '{' '.join(cmd)}' failed: exit code {result.returncode}\n"
                             + result.stderr.strip())
        from .perlish import format_size
        size = source.virtual_size
        log.print(f"transferred {format_size(size)} of {format_size(size)} (100.00%)")

    def init_efidisk(self, volume, drive):
        """OVMF.pm create_efidisk: the vars template converted onto the new volume."""
        template = qemu_cmd.vars_template(self.ovmf_vars, drive) if drive.get("efitype") == "4m" \
            else "/usr/share/OVMF/OVMF_VARS.fd"
        with open(template, "rb") as src, open(volume.path, "r+b") as dst:
            shutil.copyfileobj(src, dst)

    def volume_info(self, volid):
        volume = self.node.volume(volid)
        if volume is None:
            raise TaskFailed(f"volume '{volid}' does not exist")
        storage = self.node.storages[volid.split(":")[0]]
        return volume.path, volume.format, storage.type

    # --- start --------------------------------------------------------------------------

    def parse(self, key, value):
        fmt = self.api.config_props[key]["format"]
        if key.startswith("net"):
            return self.api.parse_net(key, value)
        return parse_property_string(fmt, value, key)

    def start(self, vm, log):
        vmid = vm.vmid
        if vmid in self.procs:
            raise TaskFailed(f"VM {vmid} already running")
        vm_dir = os.path.join(self.vms_dir, str(vmid))
        os.makedirs(vm_dir, exist_ok=True)
        for name in ("qmp.sock", "qga.sock", "qemu.pid", "console.log", "qemu.err"):
            try:
                os.unlink(os.path.join(vm_dir, name))
            except FileNotFoundError:
                pass
        env = qemu_cmd.Env(qemu=self.qemu, qemu_version=self.qemu_version, vm_dir=vm_dir,
                           event_socket=self.event_socket, volume=self.volume_info, bridge_mtu=self.bridge_mtu,
                           parse=self.parse, memory_cap=self.memory_cap, cores_cap=self.cores_cap,
                           ovmf_code=self.ovmf_code, ovmf_vars=self.ovmf_vars, accel=self.accel,
                           vhost=os.path.exists("/dev/vhost-net"))
        cmd, notes, taps = qemu_cmd.build(vmid, vm.config, env)
        for note in notes:
            log.print(note)
        plugged = []
        try:
            for tap in taps:
                mtu = self.bridge_mtu(tap["bridge"])
                if self.link_exists(tap["ifname"]):  # stale from a crash
                    self.ip("link", "del", "dev", tap["ifname"], check=False)
                self.ip("tuntap", "add", "dev", tap["ifname"], "mode", "tap")
                plugged.append(tap)
                self.ip("link", "set", "dev", tap["ifname"], "up", "promisc", "on", "mtu", str(mtu))
                self.ip("link", "set", "dev", tap["ifname"], "master", tap["bridge"])
            err_path = os.path.join(vm_dir, "qemu.err")
            with open(err_path, "wb") as err:
                proc = subprocess.Popen(["ip", "netns", "exec", self.netns] + cmd, stdin=subprocess.DEVNULL,
                                        stdout=err, stderr=err, start_new_session=True, close_fds=True)
        except Exception:
            self._del_taps(plugged)
            raise
        qp = QemuProcess(vmid, proc, cmd, vm_dir, taps)
        self.procs[vmid] = qp
        threading.Thread(target=self._watch, args=(qp,), name=f"qemu-{vmid}", daemon=True).start()
        deadline = time.monotonic() + 30
        with unlocked(self.node.lock):
            while True:
                if proc.poll() is not None or qp.exited.is_set():
                    qp.exited.wait(5)
                    with open(err_path, encoding="utf-8", errors="replace") as handle:
                        for line in handle.read().splitlines():
                            log.print(line)
                    raise TaskFailed(f"start failed: QEMU exited with code {proc.returncode}")
                try:
                    qmp_cmd(qp.qmp, "query-status", timeout=2)
                    break
                except QmpError:
                    if time.monotonic() > deadline:
                        self._kill(qp)
                        raise TaskFailed("start failed: QEMU did not answer on its QMP socket within 30 s")
                    time.sleep(0.1)

    def _watch(self, qp):
        qp.proc.wait()
        with self.node.lock:
            self._del_taps(qp.taps)
            for name in ("qmp.sock", "qga.sock", "qemu.pid"):
                try:
                    os.unlink(os.path.join(qp.vm_dir, name))
                except FileNotFoundError:
                    pass
            if self.procs.get(qp.vmid) is qp:
                del self.procs[qp.vmid]
                vm = self.node.vms.get(qp.vmid)
                if vm is not None and vm.status == "running":
                    vm.status = "stopped"
                    vm.started = None
                    vm.running = None
            self.node.dirty = True
        qp.exited.set()

    def _del_taps(self, taps):
        for tap in taps:
            self.ip("link", "del", "dev", tap["ifname"], check=False)

    def _kill(self, qp, sig=signal.SIGKILL):
        try:
            qp.proc.send_signal(sig)
        except ProcessLookupError:
            pass

    # --- stop / shutdown ------------------------------------------------------------------

    def power_off(self, api, vm, p, task_type):
        shutdown = task_type == "qmshutdown"
        qp = self.procs.get(vm.vmid)
        if qp is None:
            def worker(log):  # not running: as without boot mode
                log.print(f"VM {vm.vmid} not running")
                vm.status, vm.started, vm.running = "stopped", None, None
                if vm.pending:
                    api.pending.apply(vm, log)

            return self.node.run_task(task_type, vm.vmid, worker)
        timeout = int(p["timeout"]) if p.get("timeout") is not None else None
        force = p.get("forceStop") == "1" if shutdown else True  # API vm_stop passes $force = 1

        def worker(log):
            self._do_vm_stop(vm, qp, log, timeout, shutdown, force)
            with self.node.lock:
                if vm.pending and self.node.vms.get(vm.vmid) is vm:  # vm_stop_cleanup(..., 1)
                    api.pending.apply(vm, log)

        return self.run_task_async(task_type, vm.vmid, worker)

    def _do_vm_stop(self, vm, qp, log, timeout, shutdown, force):
        """QemuServer.pm _do_vm_stop (polling every 0.1 s instead of 1 s)."""
        try:
            if shutdown:
                if agent_on(vm.config) and self._qga_running(qp, log):
                    qga_cmd(qp.qga, "guest-shutdown", timeout=timeout or 600, allow_close=True)
                else:
                    qmp_cmd(qp.qmp, "system_powerdown")
            else:
                qmp_cmd(qp.qmp, "quit", timeout=60)
            failed = None
        except QmpError as err:
            failed = err
        if failed is None:
            timeout = 60 if timeout is None else timeout
            if timeout > 0 and qp.exited.wait(timeout):
                return
            if not force:
                raise TaskFailed("VM quit/powerdown failed - got timeout")
            log.warn("VM still running - terminating now with SIGTERM")
            self._kill(qp, signal.SIGTERM)
        else:
            if qp.exited.is_set():
                log.warn("Unexpected: VM shutdown command failed, but VM not running anymore..")
                return
            if not force:
                raise TaskFailed("VM quit/powerdown failed")
            log.warn("VM quit/powerdown failed - terminating now with SIGTERM")
            self._kill(qp, signal.SIGTERM)
        if not qp.exited.wait(10):
            log.warn("VM still running - terminating now with SIGKILL")
            self._kill(qp)
            qp.exited.wait(5)

    def _qga_running(self, qp, log, warn=True):
        """Agent.pm qga_check_running: guest-ping with a 3 s timeout."""
        try:
            qga_cmd(qp.qga, "guest-ping", timeout=3)
            return True
        except QmpError as err:
            if warn:
                log.warn(f"QEMU Guest Agent is not running - {err}")
            return False

    def run_task_async(self, type_, id_, worker):
        node = self.node
        if node.faults.peek("fail_task") is not None:  # injected failures: the synchronous path
            return node.run_task(type_, id_, worker)
        polls = node.faults.take("task_polls")
        task = AsyncTask(node.name, type_, id_, node.caller, 1 if polls is None else int(polls))
        node.tasks[task.upid] = task
        node.dirty = True

        def run():
            try:
                worker(task.log)
                status = f"WARNINGS: {task.log.warnings}" if task.log.warnings else "OK"
            except TaskFailed as err:
                status = str(err).rstrip("\n")
            except Exception as err:  # noqa: BLE001 - a task must end
                status = f"pve-sim internal error: {err!r}"
            with node.lock:
                task.exitstatus = status
                task.done.set()
                node.dirty = True

        threading.Thread(target=run, name=f"task-{type_}-{id_}", daemon=True).start()
        return task.upid

    # --- agent ----------------------------------------------------------------------------

    def agent_ping(self, vm):
        """Agent.pm agent_cmd(..., 'ping'): assert_agent_available (qga_check_running, no
        warning), then guest-ping."""
        qp = self.procs.get(vm.vmid)
        if vm.agent_pings_left > 0:  # the agent_pings_before_ready fault
            vm.agent_pings_left -= 1
            raise die("QEMU guest agent is not running")
        if qp is None:
            raise die(f"VM {vm.vmid} is not running")
        with unlocked(self.node.lock):
            if not self._qga_running(qp, None, warn=False):
                raise die("QEMU guest agent is not running")
            try:
                result = qga_cmd(qp.qga, "guest-ping")
            except QmpError as err:
                raise die(f"VM {vm.vmid} qmp command 'guest-ping' failed - {err}") from None
        return {"result": result if result is not None else {}}

    # --- resize / destroy / state / exit ---------------------------------------------------------

    def block_resize(self, vm, disk, volid, size):
        """Blockdev.pm resize on a running VM: block_resize of the format node."""
        qp = self.procs.get(vm.vmid)
        if qp is None:
            return
        try:
            qmp_cmd(qp.qmp, "block_resize", {"node-name": qemu_cmd.node_name("fmt", disk, volid), "size": size})
        except QmpError as err:
            raise TaskFailed(f"VM {vm.vmid} qmp command 'block_resize' failed - {err}") from None

    def forget(self, vmid):
        shutil.rmtree(os.path.join(self.vms_dir, str(vmid)), ignore_errors=True)

    def pid(self, vmid):
        qp = self.procs.get(vmid)
        return qp.proc.pid if qp else None

    def annotate(self, snap):
        for vmid, qp in self.procs.items():
            if str(vmid) in snap["vms"]:
                snap["vms"][str(vmid)]["qemu"] = qp.snapshot()
        snap["boot"] = {"netns": self.netns, "created_bridges": sorted(self.created_bridges)}

    def shutdown_all(self):
        """Simulator exit: every QEMU quits (SIGKILL after 3 s), taps and created bridges go."""
        procs = list(self.procs.values())
        for qp in procs:
            try:
                qmp_cmd(qp.qmp, "quit", timeout=2)
            except QmpError:
                self._kill(qp)
        for qp in procs:
            if not qp.exited.wait(3):
                self._kill(qp)
                qp.proc.wait()
                qp.exited.wait(2)
            self._del_taps(qp.taps)
        for name in sorted(self.created_bridges):
            self.ip("link", "del", "dev", name, check=False)
        self.created_bridges.clear()
        try:
            self._event_server.close()
            os.unlink(self.event_socket)
        except OSError:
            pass

    # --- qmeventd ----------------------------------------------------------------------------

    def _start_qmeventd(self):
        try:
            os.unlink(self.event_socket)
        except FileNotFoundError:
            pass
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(self.event_socket)
        server.listen(16)
        self._event_server = server
        threading.Thread(target=self._qmeventd_accept, name="qmeventd", daemon=True).start()

    def _qmeventd_accept(self):
        while True:
            try:
                conn, _ = self._event_server.accept()
            except OSError:
                return
            threading.Thread(target=self._qmeventd_client, args=(conn,), daemon=True).start()

    def _qmeventd_client(self, conn):
        """qmeventd.c: identify QEMU by SO_PEERCRED, qmp_capabilities, on SHUTDOWN send quit
        (terminate_client), SIGKILL if it is still there after the kill timeout (5 s)."""
        pid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
        qp = next((q for q in list(self.procs.values()) if q.proc.pid == pid), None)
        buf = b""
        try:
            conn.sendall(b'{"execute":"qmp_capabilities"}\n')
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    try:
                        msg = json.loads(line)
                    except ValueError:
                        continue
                    if msg.get("event") == "SHUTDOWN":
                        conn.sendall(b'{"execute":"quit"}\n')
                        if qp is not None:
                            threading.Timer(5, lambda: qp.exited.is_set() or self._kill(qp)).start()
        except OSError:
            return
        finally:
            conn.close()


class unlocked:
    """Release an RLock held by this thread (any depth) for a blocking wait."""

    def __init__(self, lock):
        self.lock = lock
        self.state = None

    def __enter__(self):
        if self.lock._is_owned():
            self.state = self.lock._release_save()

    def __exit__(self, *exc):
        if self.state is not None:
            self.lock._acquire_restore(self.state)


def agent_on(config):
    value = config.get("agent")
    if not value:
        return False
    first = value.split(",")[0]
    if "=" not in first:
        return first in ("1", "on", "yes", "true")
    return bool(re.search(r"(^|,)enabled=(1|on|yes|true)(,|$)", value))


def qemu_version(binary):
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        raise SystemExit(f"pve-sim: --boot needs {binary}: {err}") from None
    match = re.search(r"version (\d+)\.(\d+)", out)
    if not match:
        raise SystemExit(f"pve-sim: cannot read the QEMU version from {out!r}")
    return int(match.group(1)), int(match.group(2))


def add_boot_args(parser):
    """pve_sim.py's boot-mode options (README.md "Boot mode")."""
    group = parser.add_argument_group("boot mode (QEMU really runs the VMs)")
    group.add_argument("--boot", action="store_true", help="start real QEMU processes for the VMs")
    group.add_argument("--boot-netns", metavar="NAME", help="network namespace that plays the host (required)")
    group.add_argument("--boot-memory-cap", type=int, default=2048, metavar="MIB",
                       help="a VM gets min(memory, MIB) (default 2048)")
    group.add_argument("--boot-cores-cap", type=int, default=1, metavar="N",
                       help="a VM gets min(cores, N) cores, one socket (default 1)")
    group.add_argument("--boot-accel", default="tcg", choices=("tcg", "kvm"),
                       help="QEMU accelerator (default tcg; kvm only where /dev/kvm really works)")
    group.add_argument("--ovmf-code", default="/usr/share/OVMF/OVMF_CODE_4M.fd")
    group.add_argument("--ovmf-vars", default="/usr/share/OVMF/OVMF_VARS_4M.fd")
