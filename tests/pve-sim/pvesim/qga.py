"""Boot mode: talking to a running QEMU over its QMP and guest-agent sockets.

QMP as qemu-server's PVE/QMPClient.pm does it (greeting, `qmp_capabilities`,
one command, its `return`/`error`), and the guest agent as QMPClient.pm
sends to a `qga` peer: `guest-sync-delimited` with a fresh id followed by
the command in the same write, then wait for the 0xFF delimiter, the sync
answer carrying that id, and the command's answer. No answer within the
timeout -> "got timeout" (mux_timeout). Default timeouts are QMPClient's:
5 s for most commands, 3 s for the guest-ping of Agent.pm qga_check_running.
"""

import json
import random
import socket
import time


class QmpError(Exception):
    pass


def _recv_line(sock, buf, deadline):
    while b"\n" not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise QmpError("got timeout")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            raise QmpError("got timeout") from None
        if not chunk:
            raise QmpError("connection closed")
        buf += chunk
    line, _, rest = buf.partition(b"\n")
    return line, rest


def qmp_cmd(path, execute, arguments=None, timeout=5.0):
    """One QMP command on the unix socket `path`; returns `return` or raises QmpError."""
    deadline = time.monotonic() + timeout
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as err:
            raise QmpError(f"unable to connect to VM socket - {err}") from None
        buf = b""
        sent_caps = False
        sent_cmd = False
        while True:
            line, buf = _recv_line(sock, buf, deadline)
            msg = json.loads(line)
            if "QMP" in msg and not sent_caps:
                sock.sendall(json.dumps({"execute": "qmp_capabilities", "id": "caps"}).encode() + b"\n")
                sent_caps = True
                continue
            if msg.get("id") == "caps":
                command = {"execute": execute, "id": "cmd"}
                if arguments:
                    command["arguments"] = arguments
                sock.sendall(json.dumps(command).encode() + b"\n")
                sent_cmd = True
                continue
            if sent_cmd and msg.get("id") == "cmd":
                if "error" in msg:
                    raise QmpError(msg["error"].get("desc", "error"))
                return msg.get("return")
            # events and other noise are skipped
    finally:
        sock.close()


def qga_cmd(path, execute, arguments=None, timeout=5.0, allow_close=False):
    """A guest-agent command the way QMPClient.pm sends it to a `qga` peer."""
    deadline = time.monotonic() + timeout
    sync_id = random.randrange(1, 1 << 31)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as err:
            raise QmpError(f"unable to connect to VM qga socket - {err}") from None
        payload = json.dumps({"execute": "guest-sync-delimited", "arguments": {"id": sync_id}}) + "\n"
        payload += json.dumps({"execute": execute, "arguments": arguments or {}}) + "\n"
        sock.sendall(payload.encode())
        buf = b""
        while True:
            # skip everything up to the last 0xFF delimiter, then: sync answer, command answer
            if b"\xff" in buf:
                buf = buf.rsplit(b"\xff", 1)[1]
            lines = buf.split(b"\n")
            complete = [line for line in lines[:-1] if line.strip()]
            while len(complete) >= 2:
                sync = json.loads(complete[0])
                if sync.get("return") == sync_id:
                    answer = json.loads(complete[1])
                    if "error" in answer:
                        raise QmpError(answer["error"].get("desc", "error"))
                    return answer.get("return")
                complete = complete[1:]  # an answer to an earlier sync
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QmpError("got timeout")
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                raise QmpError("got timeout") from None
            if not chunk:
                if allow_close:  # guest-shutdown & co. may close without an answer
                    return None
                raise QmpError("connection closed")
            buf += chunk
    finally:
        sock.close()
