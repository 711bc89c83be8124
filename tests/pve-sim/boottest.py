#!/usr/bin/python3
"""Self-test of pve_sim.py's boot mode (stdlib only, root, needs qemu-system-x86 + ovmf).

    python3 tests/pve-sim/boottest.py [--keep]

No OS image: the VM boots OVMF from an empty imported qcow2 disk. Creates a
network namespace that plays the host (vmbr0 + its uplink made here), starts
the simulator with --boot, and checks: a bridge created through the API and
applied appears in the namespace; import converts the qcow2 onto a raw
zfspool volume; the efidisk holds the OVMF vars template; qmstart runs QEMU
inside the namespace with the transcribed command line, its tap plugged into
the bridge and the NIC carrying the config's MAC; the task log says what was
scaled down; the API stays responsive while a shutdown waits; agent ping ->
500 `QEMU guest agent is not running`; shutdown with a short timeout ->
`VM quit/powerdown failed - got timeout`; stop -> process and tap gone;
destroy removes the VM's files; a VM on a missing bridge fails as without
boot mode; SIGTERM stops every QEMU and removes taps and created bridges.
Prints one line per check, exits 1 if any failed.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from pvesim.qga import qmp_cmd  # noqa: E402
from selftest import NODE, TOKEN, Client, in_chunks  # noqa: E402

MAC = "BC:24:11:B0:07:17"
VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"


def ip(ns, *args, check=True):
    result = subprocess.run(["ip", "-n", ns] + list(args), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip -n {ns} {' '.join(args)}: {result.stderr.strip()}")
    return result


def link(ns, name):
    result = ip(ns, "-j", "link", "show", "dev", name, check=False)
    return json.loads(result.stdout)[0] if result.returncode == 0 else None


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


class BootTest:
    def __init__(self, keep):
        self.keep = keep
        self.passed = self.failed = 0
        self.ns = f"pvesim-boot-{os.getpid()}"
        self.dir = tempfile.mkdtemp(prefix="pve-sim-boot-")
        self.proc = None
        self.api = None
        self.pids = []

    def check(self, name, condition, detail=""):
        if condition:
            self.passed += 1
            print(f"ok   {name}")
        else:
            self.failed += 1
            print(f"FAIL {name}" + (f": {detail}" if detail else ""))
        return condition

    # --- plumbing -------------------------------------------------------------------------

    def setup_netns(self):
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        ip(self.ns, "link", "set", "lo", "up")
        ip(self.ns, "link", "add", "eno1", "type", "veth", "peer", "name", "uplink")  # no dummy module here
        ip(self.ns, "link", "add", "vmbr0", "type", "bridge")
        ip(self.ns, "link", "set", "eno1", "master", "vmbr0")
        ip(self.ns, "addr", "add", "203.0.113.10/24", "dev", "vmbr0")
        ip(self.ns, "link", "set", "eno1", "up")
        ip(self.ns, "link", "set", "uplink", "up")
        ip(self.ns, "link", "set", "vmbr0", "up")

    def start_sim(self):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "pve_sim.py"), "--dir", self.dir, "--node", NODE, "--token", TOKEN,
             "--storage", "local=dir:iso,import,vztmpl,snippets", "--storage", "vmdata=zfspool:images,rootdir",
             "--nic", "eno1", "--bridge", "vmbr0=203.0.113.10/24,ports=eno1,gateway=203.0.113.1",
             "--boot", "--boot-netns", self.ns],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready = os.path.join(self.dir, "ready.json")
        deadline = time.time() + 20
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("simulator did not start: " + self.proc.stderr.read().decode())
            time.sleep(0.05)
        with open(ready, encoding="utf-8") as handle:
            self.api = Client(json.load(handle))

    def state(self):
        with open(os.path.join(self.dir, "state.json"), encoding="utf-8") as handle:
            return json.load(handle)

    def call(self, method, path, params=None):
        return self.api.call(method, path, params)

    def wait_task(self, upid, limit=60):
        deadline = time.time() + limit
        while time.time() < deadline:
            status = self.call("GET", f"/nodes/{NODE}/tasks/{upid}/status").data
            if status["status"] == "stopped":
                log = self.call("GET", f"/nodes/{NODE}/tasks/{upid}/log", {"limit": 500}).data
                return status["exitstatus"], [line["t"] for line in log]
            time.sleep(0.2)
        raise RuntimeError(f"task {upid} did not finish in {limit}s")

    def run_task(self, method, path, params=None, limit=60):
        response = self.call(method, path, params)
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response}")
        return self.wait_task(response.data, limit)

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in self.pids:
            try:
                if pid and pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print(f"kept {self.dir}")

    # --- the checks --------------------------------------------------------------------

    def run(self):
        started = time.time()
        self.setup_netns()
        self.start_sim()
        base = f"/nodes/{NODE}"

        # network: a bridge created through the API appears in the namespace when applied
        self.call("POST", f"{base}/network", {"iface": "vmbr1", "type": "bridge", "cidr": "10.10.0.1/24",
                                              "autostart": 1})
        self.check("a pending bridge is not in the namespace yet", link(self.ns, "vmbr1") is None)
        status, _ = self.run_task("PUT", f"{base}/network")
        info = link(self.ns, "vmbr1")
        addrs = json.loads(ip(self.ns, "-j", "addr", "show", "dev", "vmbr1").stdout)
        self.check("apply creates vmbr1 in the namespace, up, with its address",
                   status == "OK" and info and "UP" in info["flags"] and info.get("linkinfo", {}).get(
                       "info_kind", "bridge") == "bridge" and any(
                       a.get("local") == "10.10.0.1" and a.get("prefixlen") == 24
                       for a in addrs[0].get("addr_info", [])), f"{info} {addrs}")
        self.check("the test's own vmbr0 is left alone",
                   self.state()["boot"]["created_bridges"] == ["vmbr1"] and link(self.ns, "vmbr0") is not None)

        # an empty qcow2 "OS image", uploaded for import
        image = os.path.join(self.dir, "empty.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", image, "64M"], check=True)
        with open(image, "rb") as handle:
            data = handle.read()
        response = self.api.upload("local", "empty.qcow2", in_chunks(data), len(data))
        self.wait_task(response.data)

        params = {"vmid": 100, "name": "boottest", "cores": 2, "memory": 4096, "cpu": "x86-64-v2-AES",
                  "bios": "ovmf", "ostype": "l26", "efidisk0": "vmdata:1,efitype=4m,pre-enrolled-keys=0",
                  "scsihw": "virtio-scsi-single",
                  "scsi0": "vmdata:0,import-from=local:import/empty.qcow2,discard=on,iothread=1",
                  "net0": f"virtio,bridge=vmbr1,macaddr={MAC}", "agent": "enabled=1", "serial0": "socket",
                  "vga": "serial0", "boot": "order=scsi0;net0"}
        status, log = self.run_task("POST", f"{base}/qemu", params)
        self.check("create with import-from + efidisk0 succeeds", status == "OK", f"{status} {log}")
        volumes = self.state()["storages"]["vmdata"]["volumes"]
        disk = next((v for k, v in volumes.items() if v["virtual_size"] == 64 << 20), None)
        disk_path = os.path.join(self.dir, "storage", "vmdata", "vm-100-disk-1")
        info = subprocess.run(["qemu-img", "info", "--output=json", disk_path], capture_output=True, text=True)
        info = json.loads(info.stdout) if info.returncode == 0 else {}
        self.check("the import was converted to a raw volume of the source's virtual size",
                   disk is not None and info.get("format") == "raw" and info.get("virtual-size") == 64 << 20,
                   f"{volumes} {info}")
        with open(VARS, "rb") as a, open(os.path.join(self.dir, "storage", "vmdata", "vm-100-disk-0"), "rb") as b:
            self.check("efidisk0 holds the OVMF 4m vars template", b.read(os.path.getsize(VARS)) == a.read())
        status, _ = self.run_task("PUT", f"{base}/qemu/100/resize", {"disk": "scsi0", "size": "+64M"})
        self.check("resize grows the converted volume", status == "OK" and os.path.getsize(disk_path) == 128 << 20)

        # start: QEMU in the namespace, tap on the bridge, the config's MAC
        status, log = self.run_task("POST", f"{base}/qemu/100/status/start")
        self.check("qmstart succeeds", status == "OK", f"{status} {log}")
        self.check("the task log says what was scaled down",
                   "boot mode: memory 4096 MiB scaled to 2048 MiB for this machine" in log
                   and "boot mode: cores 2 scaled to 1 for this machine" in log, str(log))
        qemu = self.state()["vms"]["100"].get("qemu") or {}
        pid = qemu.get("pid")
        self.pids.append(pid)
        netns = subprocess.run(["ip", "netns", "identify", str(pid)], capture_output=True, text=True).stdout.strip()
        self.check("a QEMU process runs inside the namespace", pid and pid_alive(pid) and netns == self.ns,
                   f"pid {pid} netns {netns!r}")
        cmdline = qemu.get("cmdline", [])
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            real = [a.decode() for a in handle.read().split(b"\0")[:-1]]
        self.check("state.json shows the command line QEMU runs with", real == cmdline, f"{real} != {cmdline}")
        text = " ".join(cmdline)
        wanted = ["-no-shutdown", "-nodefaults", "-nographic", "-m 2048", "-smp 1,sockets=1,cores=1,maxcpus=1",
                  "-cpu qemu64,+aes,+pni,+popcnt,+sse4.1,+sse4.2,+ssse3",
                  "virtio-scsi-pci,id=virtioscsi0,bus=pci.3,addr=0x1,iothread=iothread-virtioscsi0",
                  "scsi-hd,bus=virtioscsi0.0,channel=0,scsi-id=0,lun=0,drive=drive-scsi0,id=scsi0,"
                  "device_id=drive-scsi0,bootindex=100,write-cache=on",
                  f"virtio-net-pci,mac={MAC},netdev=net0,bus=pci.0,addr=0x12,id=net0,"
                  "rx_queue_size=1024,tx_queue_size=256,bootindex=101,host_mtu=1500",
                  "type=tap,id=net0,ifname=tap100i0,script=no,downscript=no",
                  "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
                  f"socket,path={self.dir}/vms/100/qga.sock,server=on,wait=off,id=qga0",
                  "isa-serial,chardev=serial0", "pflash0=pflash0,pflash1=drive-efidisk0,accel=tcg"]
        missing = [w for w in wanted if w not in text]
        self.check("the command line is qemu-server's", not missing, f"missing {missing} in {text}")
        tap = link(self.ns, "tap100i0")
        self.check("tap100i0 is enslaved to vmbr1 and up", tap and tap.get("master") == "vmbr1"
                   and "UP" in tap["flags"], str(tap))
        filters = qmp_cmd(qemu["qmp_socket"], "query-rx-filter")
        self.check("the NIC carries the config's MAC", [f["main-mac"].upper() for f in filters] == [MAC],
                   str(filters))
        current = self.call("GET", f"{base}/qemu/100/status/current").data
        self.check("status/current: running with QEMU's pid", current["status"] == "running"
                   and current["pid"] == pid, str(current))

        # agent: nothing answers in the guest
        t0 = time.time()
        response = self.call("POST", f"{base}/qemu/100/agent/ping")
        self.check("agent ping -> 500 QEMU guest agent is not running",
                   response.status == 500 and "QEMU guest agent is not running" in response.reason,
                   f"{response} after {time.time() - t0:.1f}s")

        # shutdown: no OS answers ACPI; the API stays responsive meanwhile
        response = self.call("POST", f"{base}/qemu/100/status/shutdown", {"timeout": 2})
        upid = response.data
        t0 = time.time()
        version = self.call("GET", "/version")
        self.check("the API answers while a shutdown task waits",
                   version.status == 200 and time.time() - t0 < 1.5, f"{time.time() - t0:.1f}s")
        running = self.call("GET", f"{base}/tasks/{upid}/status").data
        self.check("the shutdown task reads running while it waits", running["status"] == "running", str(running))
        status, log = self.wait_task(upid)
        self.check("shutdown with a short timeout fails like qemu-server",
                   status == "VM quit/powerdown failed - got timeout", f"{status} {log}")
        self.check("... and the VM keeps running", pid_alive(pid)
                   and self.call("GET", f"{base}/qemu/100/status/current").data["status"] == "running")

        # stop: quit over QMP
        status, log = self.run_task("POST", f"{base}/qemu/100/status/stop")
        time.sleep(0.2)
        self.check("stop: task OK, QEMU gone, tap gone, VM stopped",
                   status == "OK" and not pid_alive(pid) and link(self.ns, "tap100i0") is None
                   and self.call("GET", f"{base}/qemu/100/status/current").data["status"] == "stopped",
                   f"{status} {log}")

        # destroy: the VM's files go
        vm_dir = os.path.join(self.dir, "vms", "100")
        had_files = os.path.isdir(vm_dir)
        status, _ = self.run_task("DELETE", f"{base}/qemu/100")
        self.check("destroy removes the VM's files", status == "OK" and had_files and not os.path.exists(vm_dir)
                   and not os.path.exists(disk_path))

        # a missing bridge fails the start as without boot mode
        self.run_task("POST", f"{base}/qemu", {"vmid": 101, "memory": 512, "net0": "virtio,bridge=vmbr9"})
        status, log = self.run_task("POST", f"{base}/qemu/101/status/start")
        self.check("start on a missing bridge fails as before",
                   status == "start failed: QEMU exited with code 1" and "bridge 'vmbr9' does not exist" in log,
                   f"{status} {log}")

        # SIGTERM: everything goes
        self.run_task("POST", f"{base}/qemu", {"vmid": 102, "memory": 512, "bios": "ovmf", "vga": "serial0",
                                               "efidisk0": "vmdata:1,efitype=4m,pre-enrolled-keys=0",
                                               "net0": "virtio,bridge=vmbr1", "serial0": "socket"})
        status, log = self.run_task("POST", f"{base}/qemu/102/status/start")
        pid = (self.state()["vms"]["102"].get("qemu") or {}).get("pid")
        self.pids.append(pid)
        self.check("a second VM starts", status == "OK" and pid and pid_alive(pid), f"{status} {log}")
        os.kill(pid, signal.SIGKILL)  # QEMU dies under the VM (as a guest poweroff ends it via qmeventd)
        deadline = time.time() + 5
        current = f"{base}/qemu/102/status/current"
        while time.time() < deadline and self.call("GET", current).data["status"] != "stopped":
            time.sleep(0.1)
        self.check("a QEMU that exits by itself is noticed: VM stopped, tap gone",
                   self.call("GET", f"{base}/qemu/102/status/current").data["status"] == "stopped"
                   and link(self.ns, "tap102i0") is None)
        status, log = self.run_task("POST", f"{base}/qemu/102/status/start")
        pid = (self.state()["vms"]["102"].get("qemu") or {}).get("pid")
        self.pids.append(pid)
        self.check("... and it starts again", status == "OK" and pid and pid_alive(pid), f"{status} {log}")
        self.api.close()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(20)
        self.check("SIGTERM: the simulator exits 0", code == 0, self.proc.stderr.read().decode()[-2000:])
        self.check("SIGTERM: its QEMU is gone", not pid_alive(pid))
        self.check("SIGTERM: taps and the created bridge are gone, vmbr0 stays",
                   link(self.ns, "tap102i0") is None and link(self.ns, "vmbr1") is None
                   and link(self.ns, "vmbr0") is not None)
        print(f"\n{self.passed}/{self.passed + self.failed} checks passed in {time.time() - started:.1f}s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args()
    test = BootTest(args.keep)
    try:
        test.run()
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        test.failed += 1
    finally:
        test.cleanup()
    return 1 if test.failed else 0


if __name__ == "__main__":
    sys.exit(main())
