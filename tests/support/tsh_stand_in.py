#!/usr/bin/python3
"""Stand-in for Teleport's `tsh`, as the ProxyCommand that `tsh config`
writes for a cluster's nodes (Teleport's lib/config/openssh/openssh.go):

    tsh proxy ssh --cluster=CLUSTER --proxy=HOST:PORT %r@%h:%p

Only that command exists here. Its grammar is tsh's (tool/tsh/common/tsh.go,
kingpin): `--proxy` is a global flag and may come before `proxy`;
`--cluster` belongs to `proxy ssh`; flags are `--name=value` or
`--name value`; exactly one `[user@]host:port` argument. Anything else fails
as tsh does, `ERROR: ...` on stderr and exit status 1.

What it does is what the real one does for an OpenSSH node, minus the
proxy: it needs the profile `tsh login --proxy=HOST:PORT` leaves in
$TELEPORT_HOME (`current-profile` naming HOST, and `HOST.yaml`), else
`ERROR: Not logged in.`; it drops the `.CLUSTER` suffix from the host (tsh
does: the ssh config's `Host *.CLUSTER` names are not node names); it finds
the node among the cluster's registered nodes (here
$TELEPORT_HOME/nodes: `HOSTNAME ADDR:PORT` lines, as a node resource's
`spec.hostname` and `spec.addr`), else fails as for an unknown node; and it
relays the ssh client's stdin and stdout to the node's sshd. The port is the
one ssh passes (%p): 22 for an agentless node.

Every invocation is appended to $TELEPORT_HOME/calls.log, one line of
arguments, so a test can tell the path was used. Python 3 standard library
only.
"""

import os
import socket
import sys
import threading


def fail(message):
    sys.stderr.write(f"ERROR: {message}\n")
    sys.exit(1)


def parse(argv):
    """(proxy, cluster, user, host, port) from tsh's argument grammar."""
    flags = {}
    words = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if name not in ("proxy", "cluster"):
                fail(f"unknown long flag '--{name}'")
            if not eq:
                i += 1
                if i == len(argv):
                    fail(f"expected argument for flag '--{name}'")
                value = argv[i]
            if name == "cluster" and words[:2] != ["proxy", "ssh"]:
                fail("unknown long flag '--cluster'")
            flags[name] = value
        elif arg.startswith("-"):
            fail(f"unknown short flag '{arg}'")
        else:
            words.append(arg)
        i += 1
    if words[:2] != ["proxy", "ssh"]:
        fail(f"this stand-in knows only `tsh proxy ssh`, not {' '.join(words)!r}")
    if len(words) != 3:
        fail("required argument 'target' not provided" if len(words) < 3
             else f"unexpected {words[3]}")
    target = words[2]
    user, _, hostport = target.rpartition("@")
    host, colon, port = hostport.rpartition(":")
    if not colon or not host or not port.isdigit():
        fail(f"invalid target {target!r}: want [user@]host:port")
    if "proxy" not in flags:
        fail("--proxy is required: run `tsh login --proxy=HOST:PORT` first")
    return flags["proxy"], flags.get("cluster"), user, host, int(port)


def main():
    home = os.environ.get("TELEPORT_HOME") or os.path.expanduser("~/.tsh")
    with open(os.path.join(home, "calls.log"), "a") as log:
        log.write(" ".join(sys.argv[1:]) + "\n")
    proxy, cluster, _user, host, port = parse(sys.argv[1:])
    proxy_host = proxy.rsplit(":", 1)[0]
    try:
        with open(os.path.join(home, "current-profile")) as f:
            profile = f.read().strip()
    except FileNotFoundError:
        profile = None
    if profile != proxy_host or not os.path.exists(os.path.join(home, f"{proxy_host}.yaml")):
        fail("Not logged in.")
    cluster = cluster or proxy_host
    if host.endswith("." + cluster):
        host = host[: -len(cluster) - 1]
    nodes = {}
    try:
        with open(os.path.join(home, "nodes")) as f:
            for line in f:
                if line.strip():
                    name, addr = line.split()
                    nodes[name] = addr
    except FileNotFoundError:
        pass
    if host not in nodes:
        fail(f"failed connecting to node {host}. target host {host} not found")
    address = nodes[host].rsplit(":", 1)[0]
    try:
        conn = socket.create_connection((address, port), timeout=10)
    except OSError as err:
        fail(f"failed connecting to node {host}: {err}")
    conn.settimeout(None)

    def upstream():
        while True:
            data = os.read(0, 65536)
            if not data:
                break
            conn.sendall(data)
        try:
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    threading.Thread(target=upstream, daemon=True).start()
    while True:
        data = conn.recv(65536)
        if not data:
            break
        view = memoryview(data)
        while view:
            view = view[os.write(1, view):]


if __name__ == "__main__":
    main()
