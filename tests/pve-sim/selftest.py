#!/usr/bin/python3
"""Self-test of pve_sim.py (stdlib only): starts the simulator in a temp dir and drives it.

    python3 tests/pve-sim/selftest.py [--keep] [--big-upload-mib 1024]

Talks HTTPS through http.client with the certificate pinned to the
fingerprint from ready.json, prints one line per check, exits 1 if any
check failed. Covers: the start contract, keep-alive, auth, a real
multipart upload and a VM create importing it, download-url, that validation rejects
(and logs) bad requests, checksum mismatch, missing Content-Length, every
fault firing once, resize/start/agent/stop/destroy, pools, and that the
simulator's memory stays flat during a large streamed upload. Then a second
simulator as a 3-node cluster (pve3 offline): per-node VMs/volumes/networks/
tasks, cluster-wide VMIDs, shared and node-restricted storages,
/cluster/status and /cluster/resources, 595 for an offline node, the
offline_nodes fault, SDN zones/vnets/subnets with their refusals, pending vs
running and PUT /cluster/sdn, migration with its refusals, quorum, and the
new start options' refusals.
"""

import argparse
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = "5ec7e7e5-0000-4000-8000-5ec7e7e5ec7e"
TOKEN = f"root@pam!waddlec={SECRET}"
NODE = "waddle-proxmox01"
MIB = 1 << 20


# --- plumbing ---------------------------------------------------------------------


SINGLE_NODE_ARGS = [
    "--node", NODE, "--token", TOKEN, "--storage", "local=dir:iso,import,vztmpl,snippets",
    "--storage", "vmdata=zfspool:images,rootdir",
    # the host's hand-made network: the VMs below use vmbr1
    "--nic", "eno1", "--bridge", "vmbr0=203.0.113.10/24,ports=eno1,gateway=203.0.113.1",
    "--bridge", "vmbr1=10.10.0.1/24"]


class Simulator:
    def __init__(self, directory, args=None):
        self.dir = directory
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "pve_sim.py"), "--dir", directory, *(args or SINGLE_NODE_ARGS)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 20
        ready = os.path.join(directory, "ready.json")
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("simulator did not start: " + self.proc.stderr.read().decode())
            time.sleep(0.05)
        with open(ready, encoding="utf-8") as handle:
            self.ready = json.load(handle)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def peak_rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0

    def jsonl(self, name):
        with open(os.path.join(self.dir, name), encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def state(self):
        with open(os.path.join(self.dir, "state.json"), encoding="utf-8") as handle:
            return json.load(handle)

    def set_faults(self, faults):
        path = os.path.join(self.dir, "faults.json")
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            json.dump(faults, handle)
        os.replace(path + ".tmp", path)

    def faults(self):
        with open(os.path.join(self.dir, "faults.json"), encoding="utf-8") as handle:
            return json.load(handle)


class Response:
    def __init__(self, status, reason, headers, body):
        self.status, self.reason, self.headers, self.raw = status, reason, headers, body
        self.json = json.loads(body) if body else None

    @property
    def data(self):
        return self.json["data"]

    def __repr__(self):
        return f"<{self.status} {self.reason} {self.raw[:300]!r}>"


class Client:
    """Pins the simulator's certificate by SHA-256 fingerprint, keeps connections alive."""

    def __init__(self, ready, token=TOKEN):
        self.port = ready["port"]
        self.fingerprint = ready["fingerprint"]
        self.token = token
        self.conn = None
        self.connections_opened = 0

    def _connect(self):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # verified below by fingerprint instead
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=context, timeout=120)
        conn.connect()
        der = conn.sock.getpeercert(binary_form=True)
        digest = hashlib.sha256(der).hexdigest().upper()
        got = ":".join(digest[i:i + 2] for i in range(0, 64, 2))
        if got != self.fingerprint:
            raise RuntimeError(f"certificate fingerprint {got} != pinned {self.fingerprint}")
        self.connections_opened += 1
        return conn

    def _conn(self):
        if self.conn is None:
            self.conn = self._connect()
        return self.conn

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None

    def _finish(self, response):
        body = response.read()
        result = Response(response.status, response.reason, response.headers, body)
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        return result

    def call(self, method, path, params=None, json_body=None, auth=True, raw_query=None):
        headers = {"Authorization": f"PVEAPIToken={self.token}"} if auth else {}
        url = "/api2/json" + path
        body = None
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        elif params and method in ("POST", "PUT"):
            body = urllib.parse.urlencode(params).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif params:
            url += "?" + urllib.parse.urlencode(params)
        if raw_query:
            url += "?" + raw_query
        conn = self._conn()
        try:
            conn.request(method, url, body=body, headers=headers)
            return self._finish(conn.getresponse())
        except (http.client.HTTPException, OSError):
            self.close()
            raise

    def upload(self, storage, filename, chunks, size, content="import", checksum=None, algorithm=None,
               field_order=None, with_length=True, part_content_type=True):
        """A streamed multipart upload; `chunks` yields the file data."""
        boundary = "pvesimboundary" + os.urandom(8).hex()
        fields = {"content": content}
        if algorithm:
            fields["checksum-algorithm"] = algorithm
        if checksum:
            fields["checksum"] = checksum
        prefix = b""
        for name in field_order or ["content", "checksum-algorithm", "checksum"]:
            if name in fields:
                prefix += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                           f"{fields[name]}\r\n").encode()
        prefix += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"filename\"; "
                   f"filename=\"{filename}\"\r\n").encode()
        if part_content_type:
            prefix += b"Content-Type: application/octet-stream\r\n"
        prefix += b"\r\n"
        suffix = f"\r\n--{boundary}--\r\n".encode()
        conn = self._conn()
        try:
            conn.putrequest("POST", f"/api2/json/nodes/{NODE}/storage/{storage}/upload", skip_accept_encoding=True)
            conn.putheader("Authorization", f"PVEAPIToken={self.token}")
            conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
            if with_length:
                conn.putheader("Content-Length", str(len(prefix) + size + len(suffix)))
            conn.endheaders()
            conn.send(prefix)
            for chunk in chunks:
                conn.send(chunk)
            conn.send(suffix)
            return self._finish(conn.getresponse())
        except (http.client.HTTPException, OSError):
            self.close()
            raise

    def wait_task(self, upid, max_polls=50):
        polls = []
        for _ in range(max_polls):
            status = self.call("GET", f"/nodes/{NODE}/tasks/{urllib.parse.quote(upid, safe='')}/status")
            polls.append(status.data["status"])
            if status.data["status"] == "stopped":
                return status.data, polls
        raise RuntimeError(f"task {upid} did not finish: {polls}")

    def task_log(self, upid):
        return self.call("GET", f"/nodes/{NODE}/tasks/{urllib.parse.quote(upid, safe='')}/log").data


def qcow2_image(virtual_size, backing=False):
    """Just a qcow2 v3 header (what PVE's untrusted-image check looks at), padded to 64 KiB."""
    header = b"QFI\xfb" + (3).to_bytes(4, "big") + (0x200 if backing else 0).to_bytes(8, "big")
    header += (0).to_bytes(4, "big") + (16).to_bytes(4, "big") + virtual_size.to_bytes(8, "big")
    header += bytes(104 - len(header))
    return header + bytes(65536 - len(header))


def in_chunks(data, size=MIB):
    for offset in range(0, len(data), size):
        yield data[offset:offset + size]


# --- checks -----------------------------------------------------------------------------


class SelfTest:
    def __init__(self, sim):
        self.sim = sim
        self.api = Client(sim.ready)
        self.failures = []
        self.count = 0

    def check(self, description, condition, detail=""):
        self.count += 1
        if condition:
            print(f"ok   {description}")
        else:
            print(f"FAIL {description}  {detail}")
            self.failures.append(description)
        return condition

    def violations_since(self, mark):
        return self.sim.jsonl("violations.jsonl")[mark:]

    def expect_rejected(self, description, method, path, params, status, key=None, text=None, json_body=None):
        mark = len(self.sim.jsonl("violations.jsonl"))
        response = self.api.call(method, path, params, json_body=json_body)
        message = (response.json or {}).get("errors", {}).get(key, "") if key else (response.json or {}).get("message", "")
        logged = self.violations_since(mark)
        ok = response.status == status and (text is None or text in message) and len(logged) == 1 \
            and logged[0]["path"] == "/api2/json" + path
        self.check(f"{description} -> {status} and logged", ok, f"{response} violations={logged}")
        return response

    def upload_bytes(self, filename, data, **kw):
        return self.api.upload("local", filename, in_chunks(data), len(data), **kw)

    # --- scenarios ---------------------------------------------------------------------

    def start_contract(self):
        ready = self.sim.ready
        self.check("ready.json has url/port/fingerprint/node/token",
                   ready["url"] == f"https://127.0.0.1:{ready['port']}" and ready["node"] == NODE
                   and ready["token"] == TOKEN and len(ready["fingerprint"].split(":")) == 32, ready)
        version = self.api.call("GET", "/version")
        self.check("GET /version (certificate pinned by fingerprint)", version.status == 200
                   and version.data["release"] == "9.1", version)
        nodes = self.api.call("GET", "/nodes")
        self.check("GET /nodes lists the configured node", [n["node"] for n in nodes.data] == [NODE], nodes)
        storages = self.api.call("GET", f"/nodes/{NODE}/storage").data
        self.check("GET storage lists the configured storages",
                   {s["storage"]: s["content"] for s in storages} ==
                   {"local": "import,iso,snippets,vztmpl", "vmdata": "images,rootdir"}, storages)
        self.check("keep-alive: three requests used one connection", self.api.connections_opened == 1,
                   self.api.connections_opened)

    def auth(self):
        mark = len(self.sim.jsonl("violations.jsonl"))
        missing = self.api.call("GET", "/version", auth=False)
        wrong = Client(self.sim.ready, token=TOKEN[:-1] + "0").call("GET", "/version")
        self.check("missing token -> 401", missing.status == 401, missing)
        self.check("wrong token secret -> 401 Authentication failed!", wrong.status == 401
                   and wrong.reason == "Authentication failed!", wrong)
        self.check("both 401s logged as violations", len(self.violations_since(mark)) == 2)

    def upload_and_create(self):
        image = qcow2_image(2 << 30)
        digest = hashlib.sha256(image).hexdigest()
        upload = self.upload_bytes("debian.qcow2", image, checksum=digest, algorithm="sha256")
        self.check("multipart upload returns an imgcopy UPID", upload.status == 200
                   and upload.data.startswith(f"UPID:{NODE}:") and ":imgcopy::root@pam!waddlec:" in upload.data,
                   upload)
        status, polls = self.api.wait_task(upload.data)
        self.check("upload task: running for 1 poll, then stopped/OK",
                   polls == ["running", "stopped"] and status["exitstatus"] == "OK", (polls, status))
        self.check("task status splits the token task's owner (user root@pam, tokenid waddlec)",
                   status["user"] == "root@pam" and status["tokenid"] == "waddlec", status)
        unknown = self.api.call("GET", f"/nodes/{NODE}/tasks/" + urllib.parse.quote(
            upload.data.replace(":imgcopy:", ":qmstart:"), safe="") + "/status")
        self.check("status of an unknown task -> 400 upid: no such task", unknown.status == 400
                   and unknown.json["errors"] == {"upid": "no such task"}, unknown)
        log = self.api.task_log(upload.data)
        self.check("task log is [{n,t}] ending in TASK OK", log[0]["n"] == 1 and log[-1]["t"] == "TASK OK"
                   and any("checksum verified" in line["t"] for line in log), log)
        content = self.api.call("GET", f"/nodes/{NODE}/storage/local/content", {"content": "import"}).data
        self.check("uploaded volume listed with size and format",
                   content == [dict(content[0], volid="local:import/debian.qcow2", format="qcow2",
                                    size=len(image), content="import")] if content else False, content)
        self.upload_bytes("seed.raw", b"cidata" * 999)
        replaced = self.upload_bytes("seed.raw", b"cidata" * 1000)
        self.check("upload over an existing name replaces it (PVE overwrites)",
                   self.api.wait_task(replaced.data)[0]["exitstatus"] == "OK"
                   and self.volume("local:import/seed.raw")["size"] == 6000)
        create = self.api.call("POST", f"/nodes/{NODE}/qemu", {
            "vmid": 100, "name": "haproxy", "description": "Managed by waddlec.", "tags": "infra;haproxy",
            "ostype": "l26", "cpu": "host", "cores": 1, "memory": 2048, "onboot": 1, "agent": "enabled=1",
            "scsihw": "virtio-scsi-single", "bios": "ovmf",
            "efidisk0": "vmdata:1,efitype=4m,pre-enrolled-keys=0",
            "scsi0": "vmdata:0,import-from=local:import/debian.qcow2,discard=on",
            "scsi1": "vmdata:0,import-from=local:import/seed.raw,iothread=1",
            "boot": "order=scsi0", "net0": "virtio,bridge=vmbr1,macaddr=bc:24:11:75:9e:6c",
            "serial0": "socket", "vga": "serial0"})
        self.check("create with scsi0=vmdata:0,import-from=...,discard=on returns qmcreate UPID",
                   create.status == 200 and ":qmcreate:100:" in create.data, create)
        status, _ = self.api.wait_task(create.data)
        self.check("create task OK", status["exitstatus"] == "OK", (status, self.api.task_log(create.data)))
        config = self.api.call("GET", f"/nodes/{NODE}/qemu/100/config").data
        self.check("config: import-from replaced by the new volume and size",
                   config.get("scsi0") == "vmdata:vm-100-disk-1,discard=on,size=2G", config)
        self.check("config: efidisk0 allocated like PVE",
                   config.get("efidisk0") == "vmdata:vm-100-disk-0,efitype=4m,pre-enrolled-keys=0,size=1M", config)
        self.check("config: net0 printed as model=MAC, tags sorted, digest present",
                   config.get("net0") == "virtio=bc:24:11:75:9e:6c,bridge=vmbr1"
                   and config.get("tags") == "haproxy;infra" and len(config.get("digest", "")) == 40
                   and config.get("cores") == 1, config)
        vms = self.api.call("GET", f"/nodes/{NODE}/qemu").data
        listed = [(v["vmid"], v["name"], v["status"], v["tags"]) for v in vms]
        self.check("GET qemu lists vmid/name/status/tags", listed == [(100, "haproxy", "stopped", "haproxy;infra")], vms)
        again = self.api.call("POST", f"/nodes/{NODE}/qemu", {"vmid": 100, "scsi0": "vmdata:1"})
        self.check("create of an existing vmid -> 500 'VM 100 already exists'",
                   again.status == 500 and "VM 100 already exists" in again.reason, again)

    def validation(self):
        path = f"/nodes/{NODE}/qemu"
        good = {"vmid": 200, "scsi0": "vmdata:0,import-from=local:import/debian.qcow2"}
        self.expect_rejected("drive sub-key typo import-frm=", "POST", path,
                             dict(good, scsi0="vmdata:0,import-frm=local:import/debian.qcow2"), 400, "scsi0",
                             "invalid key in comma-separated list property: import-frm")
        self.expect_rejected("unknown top-level parameter", "POST", path, dict(good, colour="blue"), 400, "colour",
                             "property is not defined in schema")
        self.expect_rejected("bad vmid (99)", "POST", path, dict(good, vmid=99), 400, "vmid",
                             "value does not look like a valid VM ID")
        self.expect_rejected("bad vmid in the path (abc)", "GET", f"{path}/abc/config", None, 400, "vmid",
                             "type check ('integer') failed - got 'abc'")
        self.expect_rejected("bad enum (ostype=l27)", "POST", path, dict(good, ostype="l27"), 400, "ostype",
                             "does not have a value in the enumeration")
        self.expect_rejected("missing required parameter (vmid)", "POST", path, {"scsi0": "vmdata:1"}, 400, "vmid",
                             "property is missing and it is not optional")
        self.expect_rejected("unknown path", "GET", f"/nodes/{NODE}/no-such-thing", None, 501, None,
                             f"Method 'GET /nodes/{NODE}/no-such-thing' not implemented")
        self.expect_rejected("bad drive sub-value (media=floppy)", "POST", path,
                             dict(good, ide2="local:iso/x.iso,media=floppy"), 400, "ide2", "media")
        self.expect_rejected("import-from without STORAGE:0", "POST", path,
                             dict(good, scsi0="vmdata:8,import-from=local:import/debian.qcow2"), 400, "scsi0",
                             "'import-from' requires special syntax - use <storage ID>:0,import-from=<source>")
        self.expect_rejected("import-from an iso volume", "POST", path,
                             dict(good, scsi0="vmdata:0,import-from=local:iso/x.iso"), 400, "scsi0",
                             "has wrong type 'iso' - needs to be 'images' or 'import'")
        self.expect_rejected("JSON body: boolean for a string", "POST", "/pools", None, 400, "comment",
                             "type check ('string') failed - got JSON::PP::Boolean",
                             json_body={"poolid": "x", "comment": True})
        raw = "vmid=201&scsi0=vmdata:0,import-from=local:import/debian.qcow2"
        mark = len(self.sim.jsonl("violations.jsonl"))
        response = self.api.call("POST", path, raw_query=raw)
        self.check("unencoded '=' in a value is truncated like PVE (-> 400)",
                   response.status == 400 and "scsi0" in response.json["errors"]
                   and len(self.violations_since(mark)) == 1, response)

    def upload_failures(self):
        image = qcow2_image(1 << 30)
        wrong = "0" * 64
        upload = self.upload_bytes("other.qcow2", image, checksum=wrong, algorithm="sha256")
        status, _ = self.api.wait_task(upload.data)
        actual = hashlib.sha256(image).hexdigest()
        expected = f"checksum mismatch: got '{actual}' != expect '{wrong}'"
        self.check("checksum mismatch fails the task with PVE's message", status["exitstatus"] == expected, status)
        self.check("checksum mismatch: task log ends in TASK ERROR",
                   self.api.task_log(upload.data)[-1]["t"] == "TASK ERROR: " + expected)
        self.check("checksum mismatch: no volume, no spooled file", self.volume("local:import/other.qcow2") is None
                   and not os.listdir(os.path.join(self.sim.dir, "tmp")))
        backed = self.upload_bytes("backed.qcow2", qcow2_image(1 << 30, backing=True))
        status, _ = self.api.wait_task(backed.data)
        self.check("qcow2 with a backing file is refused like an untrusted image",
                   "backing file not allowed for untrusted image" in status["exitstatus"], status)
        mark = len(self.sim.jsonl("violations.jsonl"))
        refused = self.raw_upload_without_length()
        self.check("upload without Content-Length -> 501 'upload without content length header not supported'",
                   refused.startswith(b"HTTP/1.1 501 upload without content length header not supported"),
                   refused[:200])
        self.check("  ... and logged", len(self.violations_since(mark)) == 1)
        mark = len(self.sim.jsonl("violations.jsonl"))
        swapped = self.upload_bytes("swapped.raw", b"x" * 100, checksum=hashlib.sha256(b"x" * 100).hexdigest(),
                                    algorithm="sha256", field_order=["checksum", "checksum-algorithm", "content"])
        self.check("multipart fields out of PVE's order -> 501", swapped.status == 501
                   and "expected 'form-data'" in swapped.json["message"] and len(self.violations_since(mark)) == 1,
                   swapped)
        bare = self.upload_bytes("bare.raw", b"y" * 100, part_content_type=False)
        self.check("file part without a Content-Type header -> 501 (PVE would corrupt the file)",
                   bare.status == 501 and "no header line after Content-Disposition" in bare.json["message"], bare)
        bad_name = self.upload_bytes("disk.img", b"x" * 10)
        self.check("import upload with a non-import extension -> 400 filename",
                   bad_name.status == 400 and bad_name.json["errors"] == {"filename": "invalid filename or wrong extension"},
                   bad_name)

    def raw_upload_without_length(self):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", self.sim.ready["port"])) as raw:
            with context.wrap_socket(raw) as sock:
                sock.sendall((f"POST /api2/json/nodes/{NODE}/storage/local/upload HTTP/1.1\r\n"
                              f"Host: 127.0.0.1\r\nAuthorization: PVEAPIToken={TOKEN}\r\n"
                              "Content-Type: multipart/form-data; boundary=xyz\r\n\r\n").encode())
                answer = b""
                while True:
                    data = sock.recv(65536)
                    if not data:
                        return answer
                    answer += data

    def volume(self, volid):
        storage = volid.split(":")[0]
        return self.sim.state()["storages"][storage]["volumes"].get(volid)

    def faults(self):
        image = qcow2_image(3 << 30)
        digest = hashlib.sha256(image).hexdigest()
        self.sim.set_faults({"drop_upload_after_bytes": 20000, "once": True})
        tasks_before = len(self.sim.state()["tasks"])
        try:
            dropped = self.api.upload("local", "talos.qcow2", in_chunks(image, 4096), len(image),
                                      checksum=digest, algorithm="sha256")
            self.check("drop_upload_after_bytes: connection dropped", False, dropped)
        except (http.client.HTTPException, OSError) as err:
            self.check(f"drop_upload_after_bytes: connection dropped ({type(err).__name__})", True)
        self.check("  ... partial upload discarded: no volume, no spooled file, no task",
                   self.volume("local:import/talos.qcow2") is None
                   and not os.listdir(os.path.join(self.sim.dir, "tmp"))
                   and len(self.sim.state()["tasks"]) == tasks_before)
        self.check("  ... fault removed from faults.json (once)", self.sim.faults() == {}, self.sim.faults())
        again = self.upload_bytes("talos.qcow2", image, checksum=digest, algorithm="sha256")
        self.check("  ... re-run upload converges", self.api.wait_task(again.data)[0]["exitstatus"] == "OK")

        self.sim.set_faults({"faults": [{"drop_after_create": True, "once": True}]})
        params = {"vmid": 110, "name": "talos-cp1", "memory": 8192, "agent": "enabled=1",
                  "scsi0": "vmdata:0,import-from=local:import/talos.qcow2,discard=on", "net0": "virtio,bridge=vmbr1"}
        try:
            response = self.api.call("POST", f"/nodes/{NODE}/qemu", params)
            self.check("drop_after_create: connection dropped", False, response)
        except (http.client.HTTPException, OSError) as err:
            self.check(f"drop_after_create: connection dropped ({type(err).__name__})", True)
        vms = [v["vmid"] for v in self.api.call("GET", f"/nodes/{NODE}/qemu").data]
        self.check("  ... but the create task ran: VM 110 exists", 110 in vms, vms)
        self.check("  ... fault removed (once)", self.sim.faults() == {"faults": []}, self.sim.faults())
        rerun = self.api.call("POST", f"/nodes/{NODE}/qemu", params)
        self.check("  ... re-run sees 'already exists'", rerun.status == 500 and "already exists" in rerun.reason, rerun)

        self.sim.set_faults({"fail_task": {"type": "qmcreate", "exitstatus": "unable to create VM 111 - boom",
                                           "log": ["boom happened"]}, "once": True})
        failed = self.api.call("POST", f"/nodes/{NODE}/qemu", dict(params, vmid=111, name="talos-cp2"))
        status, _ = self.api.wait_task(failed.data)
        self.check("fail_task: task fails with the given exitstatus and log",
                   status["exitstatus"] == "unable to create VM 111 - boom"
                   and self.api.task_log(failed.data)[-2:] == [{"n": 1, "t": "boom happened"},
                                                                {"n": 2, "t": "TASK ERROR: unable to create VM 111 - boom"}],
                   (status, self.api.task_log(failed.data)))
        self.check("  ... VM 111 not created, no disks left behind",
                   not any(v.startswith("vmdata:vm-111") for v in self.sim.state()["storages"]["vmdata"]["volumes"])
                   and "111" not in self.sim.state()["vms"])
        second = self.api.call("POST", f"/nodes/{NODE}/qemu", dict(params, vmid=111, name="talos-cp2"))
        self.check("  ... fired once: the next create succeeds", self.api.wait_task(second.data)[0]["exitstatus"] == "OK")

        self.sim.set_faults({"task_polls": 3, "once": True})
        start = self.api.call("POST", f"/nodes/{NODE}/qemu/110/status/start")
        _, polls = self.api.wait_task(start.data)
        self.check("task_polls=3: running, running, running, stopped", polls == ["running"] * 3 + ["stopped"], polls)
        stop = self.api.call("POST", f"/nodes/{NODE}/qemu/110/status/stop")
        self.check("  ... fired once: next task back to 1 poll", self.api.wait_task(stop.data)[1] == ["running", "stopped"])

        self.sim.set_faults({"agent_pings_before_ready": 2, "once": True})
        self.api.wait_task(self.api.call("POST", f"/nodes/{NODE}/qemu/110/status/start").data)
        pings = [self.api.call("POST", f"/nodes/{NODE}/qemu/110/agent/ping") for _ in range(3)]
        self.check("agent_pings_before_ready=2: two 500 'QEMU guest agent is not running', then {result: {}}",
                   [p.status for p in pings] == [500, 500, 200] and pings[0].reason == "QEMU guest agent is not running"
                   and pings[2].data == {"result": {}}, pings)
        self.check("  ... fault consumed", self.sim.faults() == {}, self.sim.faults())

        self.sim.set_faults({"faults": [{"drop_response": {"method": "POST", "path": "^/pools$"}, "once": True}]})
        try:
            self.check("drop_response: connection dropped", False,
                       self.api.call("POST", "/pools", {"poolid": "dropped"}))
        except (http.client.HTTPException, OSError) as err:
            self.check(f"drop_response: connection dropped ({type(err).__name__}), but the pool exists",
                       "dropped" in [p["poolid"] for p in self.api.call("GET", "/pools").data])
        self.api.call("DELETE", "/pools", {"poolid": "dropped"})

        self.sim.set_faults({"faults": [{"fail_request": {"method": "GET", "path": "^/pools$", "status": 503,
                                                          "message": "injected"}, "once": True}]})
        injected = self.api.call("GET", "/pools")
        self.check("fail_request: injected error once", injected.status == 503
                   and self.api.call("GET", "/pools").status == 200, injected)

    def vm_lifecycle(self):
        resize = self.api.call("PUT", f"/nodes/{NODE}/qemu/100/resize", {"disk": "scsi0", "size": "+1G"})
        self.check("resize +1G OK", self.api.wait_task(resize.data)[0]["exitstatus"] == "OK", resize)
        scsi0 = self.api.call("GET", f"/nodes/{NODE}/qemu/100/config").data["scsi0"]
        self.check("  ... config size updated", scsi0.endswith("size=3G"), scsi0)
        shrink = self.api.call("PUT", f"/nodes/{NODE}/qemu/100/resize", {"disk": "scsi0", "size": "2G"})
        self.check("shrinking fails the task", self.api.wait_task(shrink.data)[0]["exitstatus"]
                   == "shrinking disks is not supported")
        same = self.api.call("PUT", f"/nodes/{NODE}/qemu/100/resize", {"disk": "scsi0", "size": "3G"})
        self.check("resize to the current size is a no-op OK", self.api.wait_task(same.data)[0]["exitstatus"] == "OK")
        stopped = self.api.call("POST", f"/nodes/{NODE}/qemu/100/agent/ping")
        self.check("agent ping on a stopped VM -> 500 'VM 100 is not running'",
                   stopped.status == 500 and stopped.reason == "VM 100 is not running", stopped)
        update = self.api.call("PUT", f"/nodes/{NODE}/qemu/100/config",
                               {"description": "new text", "tags": "b;a;A"})
        config = self.api.call("GET", f"/nodes/{NODE}/qemu/100/config").data
        self.check("PUT config updates description and tags", update.status == 200
                   and config["description"] == "new text" and config["tags"] == "a;b", (update, config))
        stale = self.api.call("POST", f"/nodes/{NODE}/qemu/100/config", {"onboot": 0, "digest": "0" * 40})
        self.check("POST config with a stale digest fails its task",
                   self.api.wait_task(stale.data)[0]["exitstatus"].startswith("detected modified configuration"))
        start = self.api.call("POST", f"/nodes/{NODE}/qemu/100/status/start")
        self.api.wait_task(start.data)
        status = self.api.call("GET", f"/nodes/{NODE}/qemu/100/status/current").data
        self.check("status/current after start", status["status"] == "running" and status["agent"] == 1, status)
        ping = self.api.call("POST", f"/nodes/{NODE}/qemu/100/agent/ping")
        self.check("agent ping on a running VM -> {result: {}}", ping.status == 200 and ping.data == {"result": {}})
        busy = self.api.call("DELETE", f"/nodes/{NODE}/qemu/100")
        self.check("destroy of a running VM -> 500", busy.status == 500 and "is running" in busy.reason, busy)
        in_use = self.api.call("DELETE", f"/nodes/{NODE}/storage/vmdata/content/vmdata:vm-100-disk-1")
        self.check("deleting a disk of an existing VM is refused", in_use.status == 500
                   and "Cannot remove image, a guest with VMID '100' exists!" in in_use.json["message"], in_use)
        self.api.wait_task(self.api.call("POST", f"/nodes/{NODE}/qemu/100/status/shutdown").data)
        destroy = self.api.call("DELETE", f"/nodes/{NODE}/qemu/100")
        self.check("destroy a stopped VM", self.api.wait_task(destroy.data)[0]["exitstatus"] == "OK", destroy)
        volumes = self.sim.state()["storages"]["vmdata"]["volumes"]
        self.check("  ... its disks are gone", not any(v.startswith("vmdata:vm-100-") for v in volumes), volumes)
        delete = self.api.call("DELETE", f"/nodes/{NODE}/storage/local/content/local:import/seed.raw")
        self.check("deleting an import volume works", delete.status == 200
                   and self.api.wait_task(delete.data)[0]["exitstatus"] == "OK"
                   and self.volume("local:import/seed.raw") is None, delete)

    def pools(self):
        created = self.api.call("POST", "/pools", json_body={"poolid": "waddlec-deploy-lock", "comment": "held"})
        again = self.api.call("POST", "/pools", {"poolid": "waddlec-deploy-lock"})
        self.check("pool create, then again -> 500 already exists", created.status == 200 and again.status == 500
                   and "pool 'waddlec-deploy-lock' already exists" in again.reason, again)
        listed = self.api.call("GET", "/pools").data
        self.check("GET /pools lists it", listed == [{"poolid": "waddlec-deploy-lock", "comment": "held"}], listed)
        deleted = self.api.call("DELETE", "/pools", {"poolid": "waddlec-deploy-lock"})
        gone = self.api.call("DELETE", "/pools", {"poolid": "waddlec-deploy-lock"})
        self.check("DELETE /pools?poolid=, then again -> 500 does not exist",
                   deleted.status == 200 and gone.status == 500 and "does not exist" in gone.reason, gone)

    def network(self):
        path = f"/nodes/{NODE}/network"
        listed = self.api.call("GET", path)
        by_name = {i["iface"]: i for i in listed.data}
        self.check("GET network: --nic eno1 (eth, exists, active), --bridge vmbr0 (bridge, active), no lo/changes",
                   set(by_name) == {"eno1", "vmbr0", "vmbr1"} and by_name["eno1"]["type"] == "eth"
                   and by_name["eno1"]["exists"] == 1 and by_name["vmbr0"]["active"] == 1
                   and by_name["vmbr0"]["cidr"] == "203.0.113.10/24" and by_name["vmbr0"]["bridge_ports"] == "eno1"
                   and by_name["vmbr0"]["autostart"] == 1 and "changes" not in listed.json, listed)
        create = self.api.call("POST", path, {"iface": "vmbr2", "type": "bridge", "cidr": "10.10.0.1/24",
                                              "autostart": 1, "comments": "waddlec"})
        self.check("POST network creates vmbr2 (null)", create.status == 200 and create.data is None, create)
        self.expect_rejected("create an existing interface", "POST", path, {"iface": "vmbr2", "type": "bridge"},
                             400, "iface", "interface already exists")
        self.expect_rejected("bridge port used by another bridge", "POST", path,
                             {"iface": "vmbr3", "type": "bridge", "bridge_ports": "eno1"}, 400, "bridge_ports",
                             "eno1 is already used on interface 'vmbr0'.")
        self.expect_rejected("a second default gateway", "POST", path,
                             {"iface": "vmbr3", "type": "bridge", "cidr": "10.20.0.1/24", "gateway": "10.20.0.254"},
                             400, "gateway", "Default gateway already exists on interface 'vmbr0'.")
        self.expect_rejected("netmask that is no mask", "POST", path,
                             {"iface": "vmbr3", "type": "bridge", "address": "10.20.0.1", "netmask": "255.0.255.0"},
                             400, "netmask", "value does not look like a valid IP netmask")
        self.expect_rejected("a bridge port that does not exist", "POST", path,
                             {"iface": "vmbr3", "type": "bridge", "bridge_ports": "eno7"}, 500, None,
                             "bridge 'vmbr3' - unable to find bridge port 'eno7'")
        pending = self.api.call("GET", path)
        vmbr2 = next((i for i in pending.data if i["iface"] == "vmbr2"), {})
        self.check("pending vmbr2 is listed without `active`, with `changes` (diff -u) beside `data`",
                   vmbr2.get("type") == "bridge" and "active" not in vmbr2 and vmbr2.get("autostart") == 1
                   and vmbr2.get("bridge_ports") == "" and vmbr2.get("comments") == "waddlec\n"
                   and "+auto vmbr2" in pending.json.get("changes", "")
                   and pending.json["changes"].startswith("--- /etc/network/interfaces\t"), pending)
        bridges = self.api.call("GET", path, {"type": "bridge"}).data
        self.check("type=bridge filter", sorted(i["iface"] for i in bridges) == ["vmbr0", "vmbr1", "vmbr2"], bridges)
        one = self.api.call("GET", f"{path}/vmbr2").data
        self.check("GET network/vmbr2", one.get("cidr") == "10.10.0.1/24" and one.get("netmask") == "24", one)
        missing = self.api.call("GET", f"{path}/vmbr9")
        self.check("GET network/vmbr9 -> 400 interface does not exist", missing.status == 400
                   and missing.json["errors"] == {"iface": "interface does not exist"}, missing)
        self.api.call("DELETE", path)
        reverted = [i["iface"] for i in self.api.call("GET", path).data]
        self.check("DELETE network reverts pending changes", "vmbr2" not in reverted, reverted)
        self.api.call("POST", path, {"iface": "vmbr2", "type": "bridge", "cidr": "10.10.0.1/24", "autostart": 1})
        update = self.api.call("PUT", f"{path}/vmbr2", {"type": "bridge", "cidr": "10.10.0.1/24", "autostart": 1,
                                                         "bridge_vlan_aware": 1})
        self.check("PUT network/vmbr2 updates the pending config", update.status == 200
                   and self.api.call("GET", f"{path}/vmbr2").data.get("bridge_vids") == "2-4094", update)
        reload = self.api.call("PUT", path)
        self.check("PUT network applies: srvreload task on 'networking'", reload.status == 200
                   and ":srvreload:networking:" in reload.data
                   and self.api.wait_task(reload.data)[0]["exitstatus"] == "OK", reload)
        applied = self.api.call("GET", path)
        vmbr2 = next((i for i in applied.data if i["iface"] == "vmbr2"), {})
        self.check("  ... vmbr2 is active, no pending changes", vmbr2.get("active") == 1
                   and "changes" not in applied.json and self.sim.state()["network"]["interfaces.new"] is None
                   and "iface vmbr2 inet static" in self.sim.state()["network"]["interfaces"], applied)

    def bridge_start(self):
        vm = f"/nodes/{NODE}/qemu/300"
        create = self.api.call("POST", f"/nodes/{NODE}/qemu", {
            "vmid": 300, "name": "pend", "memory": 2048, "cores": 1, "cpu": "host", "scsi0": "vmdata:1",
            "net0": "virtio,bridge=vmbr7,macaddr=bc:24:11:00:03:00"})
        self.api.wait_task(create.data)
        start = self.api.call("POST", f"{vm}/status/start")
        status, _ = self.api.wait_task(start.data)
        log = [line["t"] for line in self.api.task_log(start.data)]
        self.check("start with net0 on a missing bridge fails like qemu-server's pve-bridge",
                   status["exitstatus"] == "start failed: QEMU exited with code 1"
                   and log[0] == "bridge 'vmbr7' does not exist"
                   and log[1] == "kvm: -netdev type=tap,id=net0,ifname=tap300i0,script=/usr/libexec/qemu-server/"
                                 "pve-bridge,downscript=/usr/libexec/qemu-server/pve-bridgedown,vhost=on: network "
                                 "script /usr/libexec/qemu-server/pve-bridge failed with status 512"
                   and log[-1] == "TASK ERROR: start failed: QEMU exited with code 1"
                   and self.sim.state()["vms"]["300"]["status"] == "stopped", (status, log))
        self.api.call("POST", f"/nodes/{NODE}/network", {"iface": "vmbr7", "type": "bridge", "autostart": 1})
        pending = self.api.call("POST", f"{vm}/status/start")
        self.check("  ... still fails while vmbr7 is only pending (interfaces.new)",
                   self.api.wait_task(pending.data)[0]["exitstatus"] == "start failed: QEMU exited with code 1")
        self.api.wait_task(self.api.call("PUT", f"/nodes/{NODE}/network").data)
        applied = self.api.call("POST", f"{vm}/status/start")
        self.check("  ... starts once the network change is applied",
                   self.api.wait_task(applied.data)[0]["exitstatus"] == "OK")

    def pending_config(self):
        vm = f"/nodes/{NODE}/qemu/300"
        update = self.api.call("PUT", f"{vm}/config", {"memory": 4096, "cores": 2, "description": "now",
                                                        "delete": "cpu"})
        self.check("PUT config on a running VM: null", update.status == 200 and update.data is None, update)
        config = self.api.call("GET", f"{vm}/config").data
        current = self.api.call("GET", f"{vm}/config", {"current": 1}).data
        self.check("GET config has pending values applied, current=1 the running ones",
                   config["memory"] == "4096" and config["cores"] == 2 and "cpu" not in config
                   and current["memory"] == "2048" and current["cores"] == 1 and current["cpu"] == "host"
                   and config["description"] == current["description"] == "now", (config, current))
        pending = {i["key"]: i for i in self.api.call("GET", f"{vm}/pending").data}
        self.check("GET pending: key/value/pending/delete as qemu-server lists them",
                   pending["memory"] == {"key": "memory", "value": "2048", "pending": "4096"}
                   and pending["cores"] == {"key": "cores", "value": 1, "pending": 2}
                   and pending["cpu"] == {"key": "cpu", "value": "host", "delete": 1}
                   and pending["description"] == {"key": "description", "value": "now"}
                   and "digest" in pending, pending)
        state = self.sim.state()["vms"]["300"]
        status = self.api.call("GET", f"{vm}/status/current").data
        self.check("the VM still runs with 2048 MiB (state.json running/pending, status maxmem)",
                   state["running"]["memory"] == "2048" and state["pending"]["memory"] == "4096"
                   and state["config"]["memory"] == "2048" and status["maxmem"] == 2048 << 20
                   and status["cpus"] == 1, (state, status))
        mac = current["net0"].split(",")[0].split("=")[1]
        self.expect_rejected("live bridge change to a missing bridge", "PUT", f"{vm}/config",
                             {"net0": f"virtio={mac},bridge=vmbr8"}, 400, "net0",
                             "hotplug problem - bridge 'vmbr8' does not exist")
        self.api.call("PUT", f"{vm}/config", {"revert": "net0"})
        hot = self.api.call("POST", f"{vm}/config", {"net0": f"virtio={mac},bridge=vmbr1"})
        self.check("a live bridge change to an existing bridge is applied at once",
                   self.api.wait_task(hot.data)[0]["exitstatus"] == "OK"
                   and self.sim.state()["vms"]["300"]["config"]["net0"].endswith("bridge=vmbr1"))
        self.api.wait_task(self.api.call("POST", f"{vm}/status/shutdown").data)
        state = self.sim.state()["vms"]["300"]
        self.check("shutdown applies pending changes (vm_stop_cleanup)", state["pending"] == {}
                   and state["config"]["memory"] == "4096" and "cpu" not in state["config"], state)
        self.api.wait_task(self.api.call("POST", f"{vm}/status/start").data)
        status = self.api.call("GET", f"{vm}/status/current").data
        self.check("  ... and the next start runs with 4096 MiB", status["maxmem"] == 4096 << 20
                   and self.sim.state()["vms"]["300"]["running"]["memory"] == "4096", status)
        self.api.wait_task(self.api.call("POST", f"{vm}/status/stop").data)

    def big_upload(self, mib):
        before = self.sim.peak_rss_kib()
        digest = hashlib.sha256()

        def chunks():
            for index in range(mib):
                block = bytes(MIB) if index % 64 else index.to_bytes(8, "big") * (MIB // 8)
                digest.update(block)
                yield block

        started = time.time()
        sent = self.api.upload("local", "big.raw", chunks(), mib * MIB, checksum=None)
        status, _ = self.api.wait_task(sent.data)
        elapsed = time.time() - started
        after = self.sim.peak_rss_kib()
        volume = self.volume("local:import/big.raw")
        self.check(f"{mib} MiB streamed upload OK in {elapsed:.1f}s", status["exitstatus"] == "OK"
                   and volume["size"] == mib * MIB and volume["sha256"] == digest.hexdigest(), (status, volume))
        self.check(f"simulator peak RSS {before // 1024} MiB before, {after // 1024} MiB after (flat: < +64 MiB)",
                   after - before < 64 * 1024, (before, after))
        path = os.path.join(self.sim.dir, "storage", "local", "import", "big.raw")
        on_disk = os.stat(path).st_blocks * 512
        self.check(f"zero blocks stored sparsely ({on_disk // MIB} MiB on disk)", on_disk < mib * MIB // 4)

    def pvesh(self, *argv):
        env = dict(os.environ, PVE_SIM_SOCKET=self.sim.ready["pvesh_socket"], LANG="C", LC_ALL="C")
        proc = subprocess.run([os.path.join(HERE, "pvesh"), *argv], env=env, capture_output=True, text=True,
                              timeout=60)
        return proc.returncode, proc.stdout, proc.stderr

    def pvesh_channel(self):
        code, out, err = self.pvesh("get", "/version", "--output-format", "json")
        self.check("pvesh get /version --output-format json: compact JSON + newline, exit 0",
                   code == 0 and out == '{"release":"9.1","repoid":"e5010dce","version":"9.1.3"}\n' and err == "",
                   (code, out, err))
        code, out, _ = self.pvesh("get", "/version")
        self.check("pvesh text output (LANG=C): ASCII key/value table", code == 0 and out.split("\n")[:3] == [
            "+---------+----------+", "| key     | value    |", "+=========+==========+"], out)
        code, out, err = self.pvesh("create", "/pools", "--poolid", "pveshpool", "--comment", "via pvesh")
        last = self.sim.jsonl("requests.jsonl")[-1]
        self.check("pvesh create /pools: null result prints nothing, exit 0; journaled via pvesh as root@pam",
                   code == 0 and out == "" and err == "" and last["via"] == "pvesh" and last["user"] == "root@pam"
                   and last["path"] == "/api2/json/pools" and last["params"] == {"poolid": "pveshpool",
                                                                                 "comment": "via pvesh"},
                   (code, out, err, last))
        code, out, err = self.pvesh("create", "/pools", "--poolid", "pveshpool")
        self.check("pvesh: a handler's die -> the message on stderr, exit 255",
                   code == 255 and out == "" and err == "create pool failed: pool 'pveshpool' already exists\n",
                   (code, out, err))
        mark = len(self.sim.jsonl("violations.jsonl"))
        code, out, err = self.pvesh("create", f"/nodes/{NODE}/qemu", "--vmid", "99", "--scsi0", "vmdata:1")
        logged = self.violations_since(mark)
        self.check("pvesh: 400 with `param: message` lines and the short usage, exit 255, logged",
                   code == 255 and err == "400 Parameter verification failed.\n"
                   "vmid: invalid format - value does not look like a valid VM ID\n"
                   "pvesh create <api_path> [OPTIONS] [FORMAT_OPTIONS]\n"
                   and len(logged) == 1 and logged[0]["via"] == "pvesh", (code, err, logged))
        code, _, err = self.pvesh("get", "/version", "--bogus", "1")
        self.check("pvesh: unknown option -> Getopt warning + 400 unable to parse option",
                   code == 255 and err.startswith("Unknown option: bogus\n400 unable to parse option\n"), err)
        code, _, err = self.pvesh("get", "/no/such/path")
        self.check("pvesh: unknown path -> No 'get' handler defined, exit 1",
                   code == 1 and err == "No 'get' handler defined for '/no/such/path'\n", (code, err))
        code, out, _ = self.pvesh("set", "/pools/pveshpool", "--vms", "110", "--vms", "300", "--quiet")
        self.check("pvesh: a -list parameter repeated (--vms 110 --vms 300) is joined with ','",
                   code == 0 and self.sim.jsonl("requests.jsonl")[-1]["params"].get("vms") == "110,300"
                   and sorted(self.sim.state()["pools"]["pveshpool"]["vms"]) == [110, 300], (code, out))
        self.pvesh("set", "/pools/pveshpool", "--vms", "110,300", "--delete")
        code, out, _ = self.pvesh("get", "/pools/pveshpool", "--output-format", "json-pretty")
        self.check("pvesh json-pretty: JSON::XS layout (3 spaces, ' : ')",
                   code == 0 and out == '{\n   "comment" : "via pvesh",\n   "members" : []\n}\n', out)
        code, out, err = self.pvesh("delete", "/pools/pveshpool")
        self.check("pvesh delete /pools/pveshpool", code == 0 and out == "" and "pveshpool" not in
                   self.sim.state()["pools"], (code, out, err))
        code, _, err = self.pvesh("get", "/version", "--noproxy")
        self.check("pvesh: --noproxy after the command reaches the handler (400 not defined in schema)",
                   code == 255 and "noproxy: property is not defined in schema" in err, err)
        code, out, _ = self.pvesh("--noproxy", "get", "/version", "--output-format", "json")
        self.check("pvesh --noproxy get ... (the compatibility position) works", code == 0 and out.startswith("{"))
        code, out, err = self.pvesh("get", "/storage/vmdata", "--output-format", "json")
        config = json.loads(out) if code == 0 else {}
        self.check("pvesh get /storage/vmdata: the storage.cfg section + digest",
                   config.get("type") == "zfspool" and config.get("content") == "images,rootdir"
                   and len(config.get("digest", "")) == 40, (code, out, err))
        code, out, err = self.pvesh("set", "/storage/vmdata", "--content", "images,iso", "--output-format", "json")
        self.check("pvesh set /storage/vmdata --content images,iso: iso dropped with Plugin.pm's warning",
                   code == 0 and err == "storage does not support content type 'iso'\n"
                   and json.loads(out) == {"storage": "vmdata", "type": "zfspool"}
                   and self.sim.state()["storages"]["vmdata"]["content"] == ["images"], (code, out, err))
        code, _, err = self.pvesh("set", "/storage/vmdata", "--content", "iso")
        self.check("  ... nothing supported left -> die 'storage does not support content type none', exit 255",
                   code == 255 and err.endswith("update storage failed: storage does not support content type "
                                                "'none'\n"), (code, err))
        self.pvesh("set", "/storage/vmdata", "--content", "images,rootdir")
        update = self.api.call("PUT", "/storage/local", {"content": "iso,vztmpl,import,snippets,backup"})
        listed = self.api.call("GET", f"/nodes/{NODE}/storage", {"storage": "local"}).data
        self.check("PUT /storage/local content=... (dir allows backup) shows in the node's storage list",
                   update.status == 200 and listed[0]["content"] == "backup,import,iso,snippets,vztmpl",
                   (update, listed))
        stale = self.api.call("PUT", "/storage/local", {"content": "iso", "digest": "0" * 40})
        self.check("PUT /storage with a stale digest -> 500 modified configuration",
                   stale.status == 500 and "detected modified configuration" in stale.reason, stale)
        self.api.call("PUT", "/storage/local", {"content": "iso,vztmpl,import,snippets"})
        https = [r for r in self.sim.jsonl("requests.jsonl") if r["via"] == "api"]
        self.check("HTTPS requests are journaled with the token's auth id as `user`",
                   https and all(r["user"] in ("root@pam!waddlec", None) for r in https)
                   and https[-1]["user"] == "root@pam!waddlec", https[-1:])

    def access_control(self):
        code, _, err = self.pvesh("create", "/access/roles", "--roleid", "Deploy", "--privs", "VM.Audit,VM.Monitor")
        self.check("role with VM.Monitor (gone in PVE 9) -> 400 invalid privilege",
                   code == 255 and "privs: invalid format - invalid privilege 'VM.Monitor'" in err, err)
        self.pvesh("create", "/access/roles", "--roleid", "Deploy", "--privs",
                   "VM.Audit,VM.Allocate,VM.Config.Disk,VM.Config.CPU,VM.Config.Memory,VM.Config.Network,"
                   "VM.Config.Options,VM.Config.HWType,VM.PowerMgmt,VM.GuestAgent.Audit,Datastore.AllocateSpace,"
                   "Datastore.Audit,SDN.Use")
        role = self.api.call("GET", "/access/roles/Deploy").data
        self.check("custom role with VM.GuestAgent.Audit; read_role is {priv: 1}",
                   role.get("VM.GuestAgent.Audit") == 1 and "VM.Monitor" not in role and len(role) == 13, role)
        builtin = self.api.call("PUT", "/access/roles/PVEAdmin", {"privs": "VM.Audit"})
        self.check("built-in roles cannot be modified", builtin.status == 500
                   and "auto-generated role 'PVEAdmin' cannot be modified" in builtin.reason, builtin)
        self.pvesh("create", "/access/users", "--userid", "deployer@pve", "--comment", "waddlec")
        code, out, _ = self.pvesh("create", "/access/users/deployer@pve/token/ci", "--output-format", "json")
        token = json.loads(out) if code == 0 else {}
        self.check("token create returns full-tokenid, info (privsep 1) and a UUID value",
                   token.get("full-tokenid") == "deployer@pve!ci" and token.get("info") == {"privsep": 1}
                   and len(token.get("value", "")) == 36, out)
        ci = Client(self.sim.ready, token=f"deployer@pve!ci={token.get('value')}")
        listed = ci.call("GET", f"/nodes/{NODE}/qemu")
        self.check("a privsep token without ACLs sees no VMs; journaled as deployer@pve!ci",
                   listed.status == 200 and listed.data == []
                   and self.sim.jsonl("requests.jsonl")[-1]["user"] == "deployer@pve!ci", listed)
        denied = ci.call("GET", f"/nodes/{NODE}/qemu/110/config")
        self.check("GET config without VM.Audit -> 403 Permission check failed (/vms/110, VM.Audit)",
                   denied.status == 403 and denied.json["message"] == "Permission check failed (/vms/110, VM.Audit)\n",
                   denied)
        first = ci.call("POST", "/access/roles", {"roleid": "bad role!"})
        self.check("permissions are checked before parameters (403, not 400)", first.status == 403
                   and first.json["message"] == "Permission check failed (/access, Sys.Modify)\n", first)
        self.pvesh("set", "/access/acl", "--path", "/", "--roles", "Deploy", "--tokens", "deployer@pve!ci")
        self.check("privsep: token ACL alone gives nothing (intersection with the user's privileges)",
                   ci.call("GET", f"/nodes/{NODE}/qemu").data == [])
        self.pvesh("set", "/access/acl", "--path", "/", "--roles", "Deploy", "--users", "deployer@pve")
        self.pvesh("set", "/access/acl", "--path", "/vms/300", "--roles", "NoAccess", "--users", "deployer@pve")
        vms = [v["vmid"] for v in ci.call("GET", f"/nodes/{NODE}/qemu").data]
        self.check("with user + token ACLs on / the token lists VMs; NoAccess on /vms/300 hides it",
                   110 in vms and 300 not in vms, vms)
        acl = self.api.call("GET", "/access/acl").data
        self.check("GET /access/acl lists {path, type, ugid, roleid, propagate}",
                   {"path": "/vms/300", "type": "user", "ugid": "deployer@pve", "roleid": "NoAccess",
                    "propagate": 1} in acl and any(e["type"] == "token" for e in acl), acl)
        perms = ci.call("GET", "/access/permissions").data
        self.check("GET /access/permissions: the token's effective privileges per path",
                   perms.get("/", {}).get("VM.Audit") == 1 and "Sys.Modify" not in perms.get("/", {})
                   and perms.get("/vms/300") is None, perms)
        other_perms = ci.call("GET", "/access/permissions", {"userid": "root@pam"})
        self.check("  ... another user's -> 403 (/access, Sys.Audit)", other_perms.status == 403, other_perms)
        root_only = ci.call("POST", f"/nodes/{NODE}/qemu", {"vmid": 120, "scsi0": "vmdata:1", "args": "-S"})
        self.check("create with a key in no privilege category -> 500 only root can set 'args' config",
                   root_only.status == 500 and root_only.reason == "only root can set 'args' config", root_only)
        no_bridge = ci.call("POST", f"/nodes/{NODE}/qemu", {"vmid": 120, "scsi0": "vmdata:1",
                                                            "net0": "virtio,bridge=vmbr1"})
        self.check("create with a NIC: SDN.Use on /sdn/zones/localnetwork/vmbr1 is checked",
                   no_bridge.status == 200, no_bridge)
        ci.wait_task(no_bridge.data)
        other = next(u for u in self.sim.state()["tasks"] if ":root@pam!waddlec:" in u)
        foreign = ci.call("GET", f"/nodes/{NODE}/tasks/{urllib.parse.quote(other, safe='')}/status")
        tasks = ci.call("GET", f"/nodes/{NODE}/tasks").data
        self.check("tasks: own task visible, another's -> 403 (/nodes/N, Sys.Audit)",
                   foreign.status == 403 and "Sys.Audit" in foreign.json["message"]
                   and [t["user"] for t in tasks] == ["deployer@pve"] * len(tasks) and tasks, (foreign, tasks))
        upload = ci.upload("local", "x.raw", iter([b"x" * 10]), 10)
        self.check("upload without Datastore.AllocateTemplate -> 403 before the body",
                   upload.status == 403 and "Datastore.AllocateTemplate" in upload.json["message"], upload)
        self.api.call("PUT", "/access/users/deployer@pve", {"enable": 0})
        disabled = ci.call("GET", "/version")
        self.api.call("PUT", "/access/users/deployer@pve", {"enable": 1})
        wrong = Client(self.sim.ready, token="deployer@pve!ci=" + "1" * 36).call("GET", "/version")
        self.check("disabled user / wrong secret -> 401", disabled.status == 401 and wrong.status == 401,
                   (disabled, wrong))
        self.pvesh("delete", "/access/users/deployer@pve")
        gone = ci.call("GET", "/version")
        acl = self.api.call("GET", "/access/acl").data
        self.check("deleting the user removes its tokens and ACL entries (token -> 401)",
                   gone.status == 401 and not any("deployer@pve" in e["ugid"] for e in acl), (gone, acl))
        leaked = [n for n in os.listdir(self.sim.dir) if os.path.isfile(os.path.join(self.sim.dir, n))
                  and token.get("value", "none").encode() in open(os.path.join(self.sim.dir, n), "rb").read()]
        self.check("a created token's secret is in no file (state.json keeps no secret)", not leaked, leaked)

    def download_url(self):
        """POST .../download-url: the node fetches the URL itself, checks the checksum."""
        import http.server
        import threading
        image = qcow2_image(1 << 30)
        digest = hashlib.sha256(image).hexdigest()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                if self.path.startswith("/image.qcow2"):
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(image)))
                    self.end_headers()
                    self.wfile.write(image)
                else:
                    self.send_error(404)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        path = f"/nodes/{NODE}/storage/local/download-url"
        try:
            params = {"url": f"{base}/image.qcow2?X-Amz-Signature=abc", "content": "import",
                      "filename": "pulled.qcow2", "checksum": digest, "checksum-algorithm": "sha256"}
            pulled = self.api.call("POST", path, params)
            self.check("download-url returns a download UPID named by the file", pulled.status == 200
                       and ":download:pulled.qcow2:root@pam!waddlec:" in pulled.data, pulled)
            status, _ = self.api.wait_task(pulled.data)
            log = [line["t"] for line in self.api.task_log(pulled.data)]
            self.check("download task OK, its log as PVE's (URL, checksum verified, finished)",
                       status["exitstatus"] == "OK" and log[0].startswith(f"downloading {base}/image.qcow2")
                       and "calculating checksum...OK, checksum verified" in log
                       and log[-2].startswith("download of '"), (status, log))
            self.check("the downloaded volume is listed with its size",
                       self.volume("local:import/pulled.qcow2")["size"] == len(image))
            again = self.api.call("POST", path, params)
            status, _ = self.api.wait_task(again.data)
            log = [line["t"] for line in self.api.task_log(again.data)]
            self.check("download-url of a file already there with its checksum: OK, nothing fetched",
                       status["exitstatus"] == "OK" and any("no need to download" in line for line in log), log)
            wrong = self.api.call("POST", path, dict(params, filename="wrong.qcow2", checksum="0" * 64))
            status, _ = self.api.wait_task(wrong.data)
            self.check("a checksum mismatch fails the task, nothing stored",
                       status["exitstatus"] == f"checksum mismatch: got '{digest}' != expect '{'0' * 64}'"
                       and self.volume("local:import/wrong.qcow2") is None, status)
            missing = self.api.call("POST", path, dict(params, url=f"{base}/gone.qcow2", filename="gone.qcow2"))
            status, _ = self.api.wait_task(missing.data)
            self.check("an HTTP error fails the task as wget's exit code 8",
                       status["exitstatus"].startswith("download failed: command 'wget --progress=dot:giga -O ")
                       and status["exitstatus"].endswith("failed: exit code 8"), status)
            xz = self.api.call("POST", path, dict(params, filename="x.qcow2", compression="xz"))
            self.check("compression xz -> 400 (not a known compression)", xz.status == 400, xz)
            ftp = self.api.call("POST", path, dict(params, url="ftp://example.invalid/x.qcow2"))
            self.check("a URL not http(s) -> 400 by the schema's pattern", ftp.status == 400
                       and "url" in ftp.json["errors"], ftp)
        finally:
            server.shutdown()

    def journals(self):
        requests = self.sim.jsonl("requests.jsonl")
        self.check(f"requests.jsonl has every request ({len(requests)})",
                   len(requests) > 50 and all({"method", "path", "params", "status"} <= set(r) for r in requests))
        leaked = []
        for name in os.listdir(self.sim.dir):
            path = os.path.join(self.sim.dir, name)
            if os.path.isfile(path) and name != "ready.json":
                with open(path, "rb") as handle:
                    if SECRET.encode() in handle.read():
                        leaked.append(name)
        self.check("the token secret is in no file but ready.json", not leaked, leaked)
        state = self.sim.state()
        self.check("state.json holds VMs, tasks, pools", {"vms", "tasks", "pools", "storages"} <= set(state)
                   and "110" in state["vms"])

    def shutdown(self):
        started = time.time()
        code = self.sim.stop()
        self.check(f"SIGTERM stops the simulator (exit {code}, {time.time() - started:.1f}s)", code == 0)


# --- the cluster ---------------------------------------------------------------------------

CLUSTER_ARGS = [
    "--node", "pve1", "--node", "pve2", "--node", "pve3", "--offline", "pve3", "--token", TOKEN,
    "--storage", "local=dir:iso,import,vztmpl", "--storage", "vmdata=zfspool:images,rootdir",
    "--storage", "shared=nfs:images,iso,shared=1", "--storage", "only12=dir:images,nodes=pve1;pve2",
    "--nic", "eno1",
    "--bridge", "pve1/vmbr0=198.51.100.10/24,ports=eno1,gateway=198.51.100.1",
    "--bridge", "pve2/vmbr0=198.51.100.20/24,ports=eno1,gateway=198.51.100.1",
    "--bridge", "pve3/vmbr0=198.51.100.30/24,ports=eno1,gateway=198.51.100.1",
    "--bridge", "vmbr1=manual"]


class ClusterTest:
    """A 3-node cluster (pve3 offline at start): per-node state, offline nodes, SDN, migration."""

    def __init__(self, sim, test):
        self.sim = sim
        self.test = test
        self.api = Client(sim.ready)

    def check(self, description, condition, detail=""):
        return self.test.check("cluster: " + description, condition, detail)

    def call(self, method, path, params=None):
        return self.api.call(method, path, params)

    def wait(self, node, upid):
        for _ in range(50):
            status = self.call("GET", f"/nodes/{node}/tasks/{urllib.parse.quote(upid, safe='')}/status").data
            if status["status"] == "stopped":
                log = self.call("GET", f"/nodes/{node}/tasks/{urllib.parse.quote(upid, safe='')}/log",
                                {"limit": 500}).data
                return status, [line["t"] for line in log]
        raise RuntimeError(f"task {upid} did not finish")

    def run_ok(self, method, path, params=None):
        """A call that must start a task on the path's node which ends OK."""
        response = self.call(method, path, params)
        node = path.split("/")[2] if path.startswith("/nodes/") else self.sim.ready["node"]
        if response.status != 200:
            return response, None, []
        status, log = self.wait(node, response.data)
        return response, status, log

    def error(self, response):
        return (response.json or {}).get("message", "") if response.json else ""

    def offline(self, *nodes):
        self.sim.set_faults({"offline_nodes": list(nodes)})

    def run(self):
        for part in (self.membership, self.per_node_state, self.sdn, self.migration, self.quorum,
                     self.start_options):
            try:
                part()
            except Exception:
                self.check(f"scenario {part.__name__} ran without exception", False, traceback.format_exc())
                self.api.close()

    def membership(self):
        ready = self.sim.ready
        self.check("ready.json names the first node and lists all", ready["node"] == "pve1"
                   and ready["nodes"] == ["pve1", "pve2", "pve3"], ready)
        nodes = {n["node"]: n for n in self.call("GET", "/nodes").data}
        self.check("GET /nodes: every node, pve3 offline without live stats",
                   sorted(nodes) == ["pve1", "pve2", "pve3"] and nodes["pve1"]["status"] == "online"
                   and nodes["pve3"]["status"] == "offline" and "uptime" not in nodes["pve3"], nodes)
        status = self.call("GET", "/cluster/status").data
        cluster = [e for e in status if e["type"] == "cluster"]
        members = {e["name"]: e for e in status if e["type"] == "node"}
        self.check("/cluster/status: cluster entry (3 nodes, quorate) + one node entry each",
                   len(cluster) == 1 and cluster[0]["nodes"] == 3 and cluster[0]["quorate"] == 1
                   and sorted(members) == ["pve1", "pve2", "pve3"], status)
        self.check("/cluster/status: nodeid, local, online, ip per node",
                   [(members[n]["nodeid"], members[n]["local"], members[n]["online"], members[n]["ip"])
                    for n in ("pve1", "pve2", "pve3")]
                   == [(1, 1, 1, "198.51.100.10"), (2, 0, 1, "198.51.100.20"), (3, 0, 0, "198.51.100.30")],
                   members)
        mark = len(self.sim.jsonl("violations.jsonl"))
        response = self.call("GET", "/nodes/pve3/qemu")
        logged = self.sim.jsonl("violations.jsonl")[mark:]
        self.check("a proxied call to the offline node -> 595 No route to host, empty body, logged",
                   response.status == 595 and response.reason == "No route to host" and response.raw == b""
                   and len(logged) == 1 and logged[0]["status"] == 595, f"{response} {logged}")
        response = self.call("GET", "/nodes/pve9/qemu")
        self.check("an unknown node -> 500 hostname lookup failed",
                   response.status == 500 and "hostname lookup 'pve9' failed" in self.error(response), response)
        env = dict(os.environ, PVE_SIM_SOCKET=self.sim.ready["pvesh_socket"], LANG="C", LC_ALL="C")
        proc = subprocess.run([os.path.join(HERE, "pvesh"), "get", "/nodes/pve3/qemu"], env=env,
                              capture_output=True, text=True, timeout=60)
        code, out, err = proc.returncode, proc.stdout, proc.stderr
        self.check("pvesh to the offline node: proxy handler failed (ssh), exit 255",
                   code == 255 and "proxy handler failed: ssh: connect to host 198.51.100.30 port 22: "
                   "No route to host" in err, (code, out, err))

    def per_node_state(self):
        nets = {n: {i["iface"]: i for i in self.call("GET", f"/nodes/{n}/network").data} for n in ("pve1", "pve2")}
        self.check("per-node network: NODE/-prefixed bridges on their node, unprefixed ones everywhere",
                   nets["pve1"]["vmbr0"].get("cidr") == "198.51.100.10/24"
                   and nets["pve2"]["vmbr0"].get("cidr") == "198.51.100.20/24"
                   and "vmbr1" in nets["pve1"] and "vmbr1" in nets["pve2"], nets)
        self.offline()  # pve3 comes back
        storages = {s["storage"]: s for s in self.call("GET", "/nodes/pve3/storage").data}
        self.check("faults.json offline_nodes [] brings pve3 online; nodes= leaves only12 off it",
                   sorted(storages) == ["local", "shared", "vmdata"] and storages["shared"]["shared"] == 1
                   and storages["vmdata"]["shared"] == 0, storages)
        response = self.call("GET", "/nodes/pve3/storage/only12/content")
        self.check("a storage not on that node -> 500 storage 'only12' is not available on node 'pve3'",
                   response.status == 500 and self.error(response).startswith(
                       "storage 'only12' is not available on node 'pve3'"), response)
        response, status, _ = self.run_ok("POST", "/nodes/pve3/qemu", {"vmid": 102, "scsi0": "vmdata:1",
                                                                     "name": "on-three"})
        self.check("create on pve3: UPID names pve3, task OK",
                   response.status == 200 and response.data.startswith("UPID:pve3:")
                   and status["exitstatus"] == "OK", f"{response} {status}")
        self.offline("pve3")
        response, status, _ = self.run_ok("POST", "/nodes/pve1/qemu", {
            "vmid": 100, "scsi0": "vmdata:1", "net0": "virtio,bridge=vmbr1", "name": "one"})
        self.check("create on pve1 -> UPID:pve1:..., OK", response.status == 200
                   and response.data.startswith("UPID:pve1:") and status["exitstatus"] == "OK", response)
        upid_pve1 = response.data
        response = self.call("POST", "/nodes/pve2/qemu", {"vmid": 100, "scsi0": "vmdata:1"})
        self.check("VMIDs are cluster-wide: create 100 on pve2 -> 500 ... already exists on node 'pve1'",
                   response.status == 500 and self.error(response).startswith(
                       "unable to create VM 100 - VM 100 already exists on node 'pve1'"), response)
        _, status, _ = self.run_ok("POST", "/nodes/pve2/qemu", {
            "vmid": 101, "scsi0": "shared:1", "scsi1": "vmdata:1", "name": "two"})
        self.check("create 101 on pve2 (a shared and a local disk) OK", status and status["exitstatus"] == "OK",
                   status)
        listed = [v["vmid"] for v in self.call("GET", "/nodes/pve2/qemu").data]
        self.check("GET /nodes/pve2/qemu lists only pve2's VMs", listed == [101], listed)
        response = self.call("GET", "/nodes/pve2/qemu/100/config")
        self.check("another node's VM -> 500 Configuration file 'nodes/pve2/qemu-server/100.conf' does not exist",
                   response.status == 500 and "nodes/pve2/qemu-server/100.conf" in self.error(response), response)
        response = self.call("GET", f"/nodes/pve2/tasks/{urllib.parse.quote(upid_pve1, safe='')}/status")
        self.check("pve1's task asked on pve2 -> 400 upid: no such task",
                   response.status == 400 and response.json["errors"]["upid"].startswith("no such task"), response)
        state = self.sim.state()
        vmdata = {n: state["nodes"][n]["storages"]["vmdata"]["volumes"] for n in ("pve1", "pve2", "pve3")}
        shared = {n: state["nodes"][n]["storages"]["shared"]["volumes"] for n in ("pve1", "pve2", "pve3")}
        self.check("state.json: VMs name their node", (state["vms"]["100"]["node"], state["vms"]["101"]["node"],
                                                     state["vms"]["102"]["node"]) == ("pve1", "pve2", "pve3"),
                   {k: v["node"] for k, v in state["vms"].items()})
        self.check("state.json: local volumes per node (each node its own vmdata), node named",
                   list(vmdata["pve1"]) == ["vmdata:vm-100-disk-0"] and list(vmdata["pve2"]) == ["vmdata:vm-101-disk-0"]
                   and list(vmdata["pve3"]) == ["vmdata:vm-102-disk-0"]
                   and vmdata["pve2"]["vmdata:vm-101-disk-0"]["node"] == "pve2", vmdata)
        self.check("state.json: a shared volume is seen from every node once (node null)",
                   shared["pve1"] == shared["pve3"] and list(shared["pve2"]) == ["shared:101/vm-101-disk-0.raw"]
                   and shared["pve2"]["shared:101/vm-101-disk-0.raw"]["node"] is None, shared)
        content = [v["volid"] for v in self.call("GET", "/nodes/pve1/storage/shared/content").data]
        self.check("pve1 lists the shared volume pve2 created", content == ["shared:101/vm-101-disk-0.raw"], content)
        resources = self.call("GET", "/cluster/resources", {"type": "vm"}).data
        by_id = {r["id"]: r for r in resources}
        self.check("/cluster/resources type=vm: qemu/<vmid> with node; pve3's VM unknown",
                   sorted(by_id) == ["qemu/100", "qemu/101", "qemu/102"] and by_id["qemu/100"]["node"] == "pve1"
                   and by_id["qemu/100"]["status"] == "stopped" and by_id["qemu/100"]["name"] == "one"
                   and by_id["qemu/102"]["status"] == "unknown" and "name" not in by_id["qemu/102"]
                   and all(r["type"] == "qemu" for r in resources), resources)
        storage = {r["id"]: r for r in self.call("GET", "/cluster/resources", {"type": "storage"}).data}
        self.check("/cluster/resources type=storage: storage/<node>/<sid> per enabled node, offline unknown",
                   "storage/pve3/only12" not in storage and storage["storage/pve1/only12"]["status"] == "available"
                   and storage["storage/pve3/vmdata"]["status"] == "unknown"
                   and storage["storage/pve2/shared"]["shared"] == 1 and storage["storage/pve2/vmdata"]["shared"] == 0
                   and storage["storage/pve1/vmdata"]["plugintype"] == "zfspool"
                   and "maxdisk" in storage["storage/pve1/vmdata"], sorted(storage))
        nodes = {r["node"]: r["status"] for r in self.call("GET", "/cluster/resources", {"type": "node"}).data}
        self.check("/cluster/resources type=node: pve3 offline", nodes == {"pve1": "online", "pve2": "online",
                                                                          "pve3": "offline"}, nodes)

    def sdn(self):
        api = self.call
        def failed(response, prefix):
            return response.status == 500 and self.error(response).startswith(prefix)
        self.check("GET /cluster/sdn: the index", [e["id"] for e in api("GET", "/cluster/sdn").data]
                   == ["vnets", "zones", "controllers", "ipams", "dns", "fabrics"])
        self.check("simple zone created", api("POST", "/cluster/sdn/zones", {"zone": "zsimple", "type": "simple"})
                   .status == 200)
        response = api("POST", "/cluster/sdn/zones", {"zone": "zsimple2", "type": "simple", "peers": "10.0.0.1"})
        self.check("simple zone with peers -> 500 unexpected property 'peers'",
                   failed(response, "unexpected property 'peers'"), response)
        response = api("POST", "/cluster/sdn/zones", {"zone": "zvx", "type": "vxlan"})
        self.check("vxlan zone without peers -> 500 ... must have exactly one of peers / fabric defined",
                   failed(response, "create sdn zone object failed: 400 Parameter verification failed.\n"
                                    "fabric: must have exactly one of peers / fabric defined\n"), response)
        self.check("vxlan zone with peers and mtu created", api("POST", "/cluster/sdn/zones", {
            "zone": "zvx", "type": "vxlan", "peers": "198.51.100.10,198.51.100.20", "mtu": 1400}).status == 200)
        response = api("POST", "/cluster/sdn/zones", {"zone": "zvx", "type": "simple"})
        self.check("an existing zone -> 500 sdn zone object ID 'zvx' already defined",
                   failed(response, "create sdn zone object failed: sdn zone object ID 'zvx' already defined"),
                   response)
        response = api("POST", "/cluster/sdn/zones", {"zone": "zev", "type": "evpn"})
        self.check("evpn zone without controller -> 500 missing value for required option 'controller'",
                   failed(response, "missing value for required option 'controller'"), response)
        response = api("POST", "/cluster/sdn/zones", {"zone": "zev", "type": "evpn", "controller": "ctl",
                                                      "vrf-vxlan": 10})
        self.check("evpn zone with an unknown controller -> 500 controller ctl don't exist",
                   failed(response, "create sdn zone object failed: controller ctl don't exist"), response)
        response = api("POST", "/cluster/sdn/zones", {"zone": "toolongzone", "type": "simple"})
        self.check("zone id longer than 8 -> 400 (schema)", response.status == 400
                   and "zone" in response.json["errors"], response)
        response = api("POST", "/cluster/sdn/vnets", {"vnet": "vnbad", "zone": "zsimple", "tag": 5})
        self.check("tag on a simple zone vnet -> 500 ... tag: vlan tag is not allowed on simple zone",
                   failed(response, "create sdn vnet object failed: 400 Parameter verification failed.\n"
                                    "tag: vlan tag is not allowed on simple zone"), response)
        response = api("POST", "/cluster/sdn/vnets", {"vnet": "vx1", "zone": "zvx"})
        self.check("vxlan vnet without tag -> 500 ... tag: missing vxlan tag",
                   failed(response, "create sdn vnet object failed: 400 Parameter verification failed.\n"
                                    "tag: missing vxlan tag"), response)
        self.check("vxlan vnet with tag created", api("POST", "/cluster/sdn/vnets", {
            "vnet": "vx1", "zone": "zvx", "tag": 100}).status == 200)
        response = api("POST", "/cluster/sdn/vnets", {"vnet": "vx2", "zone": "zvx", "tag": 100})
        self.check("a second vnet with the same VNI -> 500 vxlan tag 100 already exist in vnet vx1",
                   failed(response, "create sdn vnet object failed: 400 Parameter verification failed.\n"
                                    "tag: vxlan tag 100 already exist in vnet vx1 in zone zvx"), response)
        response = api("POST", "/cluster/sdn/vnets", {"vnet": "vx3", "zone": "nozone"})
        self.check("a vnet in an unknown zone -> 500 unknown section type ''",
                   failed(response, "create sdn vnet object failed: unknown section type ''"), response)
        self.check("a simple vnet created", api("POST", "/cluster/sdn/vnets", {"vnet": "vnsim", "zone": "zsimple"})
                   .status == 200)
        response = api("POST", "/cluster/sdn/vnets/vx1/subnets", {"subnet": "10.10.0.0/24", "type": "subnet",
                                                                  "gateway": "10.20.0.1"})
        self.check("a gateway outside the subnet -> 500 ... gateway: 10.20.0.1 is not in subnet 10.10.0.0/24",
                   failed(response, "create sdn subnet object failed: 400 Parameter verification failed.\n"
                                    "gateway: 10.20.0.1 is not in subnet 10.10.0.0/24"), response)
        self.check("subnet with gateway and snat created", api("POST", "/cluster/sdn/vnets/vx1/subnets", {
            "subnet": "10.10.0.0/24", "type": "subnet", "gateway": "10.10.0.1", "snat": 1}).status == 200)
        subnet = api("GET", "/cluster/sdn/vnets/vx1/subnets/zvx-10.10.0.0-24")
        self.check("GET subnet zvx-10.10.0.0-24: cidr, zone, gateway, snat",
                   subnet.status == 200 and subnet.data["cidr"] == "10.10.0.0/24" and subnet.data["zone"] == "zvx"
                   and subnet.data["gateway"] == "10.10.0.1" and subnet.data["snat"] == 1, subnet)
        pending = {v["vnet"]: v for v in api("GET", "/cluster/sdn/vnets", {"pending": 1}).data}
        self.check("?pending=1 before apply: state new, values under pending",
                   pending["vx1"]["state"] == "new" and pending["vx1"]["pending"]["tag"] == 100
                   and pending["vx1"]["pending"]["zone"] == "zvx", pending)
        self.check("?running=1 before apply: nothing", api("GET", "/cluster/sdn/vnets", {"running": 1}).data == [])
        _, status, _ = self.run_ok("POST", "/nodes/pve1/qemu", {"vmid": 103, "scsi0": "vmdata:1",
                                                               "net0": "virtio,bridge=vx1"})
        response, status, log = self.run_ok("POST", "/nodes/pve1/qemu/103/status/start")
        self.check("a VM on a vnet that is not applied yet fails to start (bridge 'vx1' does not exist)",
                   status["exitstatus"] == "start failed: QEMU exited with code 1"
                   and "bridge 'vx1' does not exist" in log, log)
        response, status, log = self.run_ok("PUT", "/cluster/sdn")
        self.check("PUT /cluster/sdn: task reloadnetworkall on pve1, OK although pve3 is offline",
                   response.data.startswith("UPID:pve1:") and ":reloadnetworkall::" in response.data
                   and status["exitstatus"] == "OK" and "pve3: reloading network config" in log
                   and "command 'pvesh set /nodes/pve3/network --regenerate-frr 0' failed: exit code 255" in log,
                   f"{status} {log}")
        reloads = [t for t in self.call("GET", "/nodes/pve2/tasks", {"source": "all"}).data
                   if t["type"] == "srvreload"]
        self.check("each online node ran its own srvreload task", len(reloads) == 1, reloads)
        pending = {v["vnet"]: v for v in api("GET", "/cluster/sdn/vnets", {"pending": 1}).data}
        running = {v["vnet"]: v for v in api("GET", "/cluster/sdn/vnets", {"running": 1}).data}
        self.check("after apply: no pending state, the running config has the vnets",
                   "state" not in pending["vx1"] and running["vx1"]["tag"] == 100 and "vnsim" in running,
                   (pending, running))
        vnets = {i["iface"]: i for i in api("GET", "/nodes/pve2/network", {"type": "vnet"}).data}
        self.check("/nodes/pve2/network?type=vnet: the vnets as type vnet, active",
                   sorted(vnets) == ["vnsim", "vx1"] and vnets["vx1"]["type"] == "vnet"
                   and vnets["vx1"]["active"] == "1", vnets)
        plain = [i["iface"] for i in api("GET", "/nodes/pve2/network").data]
        self.check("without a type filter vnets are not listed (as Network.pm)", "vx1" not in plain, plain)
        zones = api("GET", "/nodes/pve1/sdn/zones").data
        self.check("/nodes/pve1/sdn/zones: available", sorted((z["zone"], z["status"]) for z in zones)
                   == [("zsimple", "available"), ("zvx", "available")], zones)
        state = self.sim.state()
        self.check("state.json: pve2 applied vx1 with the zone MTU 1400; pve3 applied nothing",
                   state["nodes"]["pve2"]["sdn"]["vnets"]["vx1"]["mtu"] == 1400
                   and state["nodes"]["pve2"]["sdn"]["vnets"]["vnsim"]["mtu"] == 1500
                   and state["nodes"]["pve3"]["sdn"]["version"] is None, state["nodes"]["pve2"]["sdn"])
        _, status, _ = self.run_ok("POST", "/nodes/pve1/qemu/103/status/start")
        self.check("after apply the VM on vx1 starts", status["exitstatus"] == "OK", status)
        api("PUT", "/cluster/sdn/vnets/vx1", {"alias": "changed"})
        pending = api("GET", "/cluster/sdn/vnets/vx1", {"pending": 1}).data
        self.check("an edit after apply: state changed, pending.alias",
                   pending.get("state") == "changed" and pending["pending"] == {"alias": "changed"}
                   and pending["tag"] == 100, pending)
        self.offline()
        zones = api("GET", "/nodes/pve3/sdn/zones").data
        self.check("pve3 back online without a reload: its zones are pending",
                   {z["status"] for z in zones} == {"pending"} and len(zones) == 2, zones)
        everything = api("GET", "/cluster/resources").data
        network = {r["id"]: r for r in everything if r["type"] == "network"}
        self.check("/cluster/resources: network/<node>/zone/<zone> entries (pve3 pending)",
                   network["network/pve3/zone/zvx"]["status"] == "pending"
                   and network["network/pve1/zone/zvx"]["status"] == "available"
                   and network["network/pve1/zone/zvx"]["zone-type"] == "vxlan"
                   and "network/pve1/zone/localnetwork" in network, sorted(network))
        self.check("/cluster/resources type=sdn: empty on PVE 9 (nodes broadcast `network`)",
                   api("GET", "/cluster/resources", {"type": "sdn"}).data == [])
        self.offline("pve3")
        response = api("DELETE", "/cluster/sdn/zones/zvx")
        self.check("deleting a zone with vnets -> 500 zone zvx is used by vnet vx1",
                   failed(response, "delete sdn zone object failed: zone zvx is used by vnet vx1"), response)
        response = api("DELETE", "/cluster/sdn/vnets/vx1")
        self.check("deleting a vnet with subnets -> 500 ... vnet: Can't delete vnet if subnets exists",
                   failed(response, "delete sdn vnet object failed: 400 Parameter verification failed.\n"
                                    "vnet: Can't delete vnet if subnets exists"), response)
        self.check("deleting the simple vnet", api("DELETE", "/cluster/sdn/vnets/vnsim").status == 200)
        pending = {v["vnet"]: v for v in api("GET", "/cluster/sdn/vnets", {"pending": 1}).data}
        self.check("a deleted vnet reads state deleted until applied", pending["vnsim"]["state"] == "deleted",
                   pending)

    def migration(self):
        api = self.call
        def failed(response, prefix):
            return response.status == 500 and self.error(response).startswith(prefix)
        response = api("POST", "/nodes/pve1/qemu/100/migrate", {"target": "pve1"})
        self.check("migrate to itself -> 400 target: target is local node.",
                   response.status == 400 and response.json["errors"]["target"] == "target is local node.", response)
        response = api("POST", "/nodes/pve1/qemu/100/migrate", {"target": "pve9"})
        self.check("an unknown target -> 500 no such cluster node 'pve9'",
                   failed(response, "no such cluster node 'pve9'"), response)
        response = api("POST", "/nodes/pve1/qemu/103/migrate", {"target": "pve2"})
        self.check("a running VM without online -> 500 can't migrate running VM without --online",
                   failed(response, "can't migrate running VM without --online"), response)
        response, status, log = self.run_ok("POST", "/nodes/pve1/qemu/103/migrate", {"target": "pve2", "online": 1})
        self.check("online with a local disk but without with-local-disks: task fails, migration aborted",
                   status["exitstatus"] == "migration aborted"
                   and any("can't migrate local disk 'vmdata:vm-103-disk-0': can't live migrate attached local "
                           "disks without with-local-disks option" in line for line in log)
                   and any("ERROR: migration aborted (duration" in line and "can't migrate VM - check log" in line
                           for line in log), log)
        response = api("POST", "/nodes/pve1/qemu/100/migrate", {"target": "pve2", "targetstorage": "local"})
        self.check("targetstorage without images -> 500 storage 'local' does not support vm images",
                   failed(response, "storage 'local' does not support vm images"), response)
        response = api("POST", "/nodes/pve1/qemu/100/migrate", {"target": "pve3", "targetstorage": "only12"})
        self.check("targetstorage not on the target -> 500 storage 'only12' is not available on node 'pve3'",
                   failed(response, "storage 'only12' is not available on node 'pve3'"), response)
        response, status, log = self.run_ok("POST", "/nodes/pve1/qemu/100/migrate", {"target": "pve3"})
        self.check("an offline target: the task fails (Can't connect to destination address using public key)",
                   status["exitstatus"] == "migration aborted" and any(
                       "Can't connect to destination address using public key" in line for line in log), log)
        self.run_ok("POST", "/nodes/pve1/qemu", {"vmid": 104, "scsi0": "only12:1"})
        response = api("POST", "/nodes/pve1/qemu/104/migrate", {"target": "pve3"})
        self.check("a disk on a storage the target lacks -> 500 storage 'only12' is not available on node 'pve3'",
                   failed(response, "storage 'only12' is not available on node 'pve3'"), response)
        pre = api("GET", "/nodes/pve1/qemu/104/migrate").data
        self.check("GET migrate: allowed_nodes, not_allowed_nodes (unavailable_storages), local_disks",
                   pre["running"] == 0 and pre["allowed_nodes"] == ["pve2"]
                   and pre["not_allowed_nodes"] == {"pve3": {"unavailable_storages": ["only12"]}}
                   and [d["volid"] for d in pre["local_disks"]] == ["only12:104/vm-104-disk-0.raw"], pre)
        response, status, log = self.run_ok("POST", "/nodes/pve1/qemu/100/migrate", {"target": "pve2"})
        self.check("offline migration of 100 to pve2: UPID on pve1 (qmigrate), OK, disk copied",
                   response.data.startswith("UPID:pve1:") and ":qmigrate:100:" in response.data
                   and status["exitstatus"] == "OK"
                   and any("volume 'vmdata:vm-100-disk-0' is 'vmdata:vm-100-disk-0' on the target" in line
                           for line in log) and "migration finished successfully" in log[-2], log)
        state = self.sim.state()
        self.check("after migration: VM 100 lives on pve2, its volume in pve2's vmdata, gone from pve1",
                   state["vms"]["100"]["node"] == "pve2"
                   and "vmdata:vm-100-disk-0" in state["nodes"]["pve2"]["storages"]["vmdata"]["volumes"]
                   and "vmdata:vm-100-disk-0" not in state["nodes"]["pve1"]["storages"]["vmdata"]["volumes"]
                   and api("GET", "/nodes/pve2/qemu/100/config").status == 200
                   and api("GET", "/nodes/pve1/qemu/100/config").status == 500, state["vms"]["100"])
        response, status, log = self.run_ok("POST", "/nodes/pve2/qemu/101/migrate",
                                            {"target": "pve1", "targetstorage": "only12"})
        config = api("GET", "/nodes/pve1/qemu/101/config").data
        state = self.sim.state()
        self.check("targetstorage: the local disk moves into only12 on pve1, the shared one stays",
                   status["exitstatus"] == "OK" and config["scsi0"].startswith("shared:101/vm-101-disk-0.raw")
                   and config["scsi1"].startswith("only12:101/vm-101-disk-0.raw")
                   and "only12:101/vm-101-disk-0.raw" in state["nodes"]["pve1"]["storages"]["only12"]["volumes"]
                   and not state["nodes"]["pve2"]["storages"]["vmdata"]["volumes"].get("vmdata:vm-101-disk-0"),
                   f"{config} {log}")
        response, status, log = self.run_ok("POST", "/nodes/pve1/qemu/103/migrate",
                                            {"target": "pve2", "online": 1, "with-local-disks": 1})
        state = self.sim.state()
        self.check("online migration with with-local-disks: running on pve2 afterwards",
                   status["exitstatus"] == "OK" and state["vms"]["103"]["node"] == "pve2"
                   and state["vms"]["103"]["status"] == "running", f"{status} {log}")
        response = api("POST", "/nodes/pve3/qemu/102/migrate", {"target": "pve1"})
        self.check("migrate from the offline node -> 595", response.status == 595, response)

    def quorum(self):
        self.offline("pve2", "pve3")
        status = self.call("GET", "/cluster/status").data
        response = self.call("POST", "/cluster/sdn/zones", {"zone": "zq", "type": "simple"})
        self.check("two of three nodes offline: not quorate, SDN writes -> cluster not ready - no quorum?",
                   status[0]["quorate"] == 0 and response.status == 500
                   and self.error(response).startswith("cluster not ready - no quorum?"), response)
        response = self.call("POST", "/nodes/pve1/qemu", {"vmid": 190, "scsi0": "vmdata:1"})
        self.check("... and VM create -> 500 cluster not ready - no quorum?", response.status == 500
                   and self.error(response).startswith("cluster not ready - no quorum?"), response)
        self.offline("pve3")

    def start_options(self):
        def refused(*args):
            proc = subprocess.run([sys.executable, os.path.join(HERE, "pve_sim.py"), "--dir",
                                   os.path.join(self.sim.dir, "never"), *args], capture_output=True, text=True,
                                  timeout=30)
            return proc.returncode == 2, proc.stderr.strip().splitlines()[-1:]
        for args, what in ((["--node", "a", "--offline", "a"], "--offline of the first node"),
                           (["--node", "a", "--offline", "b"], "--offline of an unknown node"),
                           (["--node", "a", "--bridge", "b/vmbr0=manual"], "--bridge for an unknown node"),
                           (["--node", "a", "--storage", "s=dir:images,nodes=b"], "--storage nodes= an unknown node"),
                           (["--node", "a", "--storage", "s=dir:images,shared=2"], "--storage shared=2")):
            ok, err = refused(*args)
            self.check(f"start option refused: {what}", ok, err)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument("--big-upload-mib", type=int, default=1024)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="pve-sim-selftest-")
    sim = Simulator(directory)
    test = SelfTest(sim)
    try:
        for scenario in (test.start_contract, test.auth, test.upload_and_create, test.download_url, test.validation,
                         test.upload_failures, test.faults, test.vm_lifecycle, test.pools, test.network,
                         test.bridge_start, test.pending_config, test.pvesh_channel, test.access_control,
                         lambda: test.big_upload(args.big_upload_mib), test.journals, test.shutdown):
            try:
                scenario()
            except Exception:  # a crashed scenario is a failure, the others still run
                test.check(f"scenario {getattr(scenario, '__name__', 'big_upload')} ran without exception",
                           False, traceback.format_exc())
                test.api.close()
    finally:
        sim.stop()
        if args.keep:
            print(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    directory = tempfile.mkdtemp(prefix="pve-sim-selftest-cluster-")
    cluster_sim = Simulator(directory, CLUSTER_ARGS)
    try:
        ClusterTest(cluster_sim, test).run()
        test.check("cluster: SIGTERM stops the simulator (exit 0)", cluster_sim.stop() == 0)
    finally:
        cluster_sim.stop()
        if args.keep:
            print(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    print(f"\n{test.count - len(test.failures)}/{test.count} checks passed")
    return 1 if test.failures else 0


if __name__ == "__main__":
    sys.exit(main())
