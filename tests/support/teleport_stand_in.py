#!/usr/bin/python3
"""Stand-in for Teleport's `teleport` binary, baked into the Teleport VM's
image by the twin test (tests/e2e/twin.rs) where the real release cannot be
downloaded. `teleport start --config=FILE --pid-file=FILE` opens the ports
the real proxy and auth service would (teleport.yaml's proxy web 3080, SSH
proxy 3023, reverse tunnel 3024, auth 3025 is internal, the Kubernetes
proxy 3026) and answers each connection with what it saw, so a test on the
far side of the edge can tell it arrived:

  3080: reads the first TLS record, answers `teleport:3080 sni=NAME` (the
        ClientHello's server name, `-` if none), then closes;
  others: answers `teleport:PORT` and closes.

Every other invocation prints `fixture teleport` (as the other fixture
binaries do) and exits 0. Python 3 standard library only: the image has
python3 for cloud-init.
"""

import os
import socket
import sys
import threading

PORTS = (3080, 3023, 3024, 3026)


def server_name(hello):
    """The SNI of a TLS ClientHello record, or None."""
    try:
        if hello[0] != 0x16 or hello[5] != 0x01:
            return None
        at = 5 + 4 + 2 + 32  # record header, handshake header, version, random
        at += 1 + hello[at]  # session id
        at += 2 + int.from_bytes(hello[at:at + 2], "big")  # cipher suites
        at += 1 + hello[at]  # compression methods
        end = at + 2 + int.from_bytes(hello[at:at + 2], "big")
        at += 2
        while at + 4 <= end:
            kind = int.from_bytes(hello[at:at + 2], "big")
            length = int.from_bytes(hello[at + 2:at + 4], "big")
            body = hello[at + 4:at + 4 + length]
            if kind == 0:  # server_name: list length, type 0, name length, name
                return body[5:5 + int.from_bytes(body[3:5], "big")].decode()
            at += 4 + length
    except (IndexError, UnicodeDecodeError):
        return None
    return None


def handle(conn, port):
    with conn:
        conn.settimeout(5)
        try:
            if port == 3080:
                hello = b""
                while len(hello) < 5 or len(hello) < 5 + int.from_bytes(hello[3:5], "big"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    hello += chunk
                conn.sendall(f"teleport:3080 sni={server_name(hello) or '-'}".encode())
            else:
                conn.sendall(f"teleport:{port}".encode())
        except OSError:
            pass


def serve(port):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(16)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn, port), daemon=True).start()


def main(argv):
    if not argv or argv[0] != "start":
        print("fixture teleport")
        return 0
    for arg in argv[1:]:
        if arg.startswith("--pid-file="):
            with open(arg.split("=", 1)[1], "w", encoding="ascii") as handle:
                handle.write(f"{os.getpid()}\n")
    threads = [threading.Thread(target=serve, args=(port,), daemon=True) for port in PORTS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
