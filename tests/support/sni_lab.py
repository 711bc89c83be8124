#!/usr/bin/python3
"""Test peers for the SNI router tests (run inside a test network namespace).

  sni_lab.py sinks LOG ADDR:PORT...   accept on each address; log "ADDR:PORT" per connection
  sni_lab.py tls HOST PORT [SNI]      send a real TLS ClientHello (no SNI when omitted)
  sni_lab.py http HOST PORT           send a plain HTTP request

Clients wait until the peer closes or 3 s pass; they never fail on a
handshake error, since the sinks are not TLS servers.

Peers that say who they are (the network proof, tests/e2e/edge_proof.rs):

  sni_lab.py serve LOG CERT KEY KIND:ADDR:PORT...
      listen on each ADDR:PORT; KIND is `tls` (a TLS server with CERT/KEY),
      `http` (answers one HTTP request), `tcp` or `udp` (CERT and KEY may
      be `-` without `tls`). Per connection, append "ADDR:PORT peer=IP"
      (TLS: plus " sni=NAME", "-" without SNI) to LOG, then send "ADDR:PORT"
      back (TLS: inside the session; HTTP: as the body). UDP: per datagram,
      "ADDR:PORT/udp peer=IP" logged and "ADDR:PORT/udp" sent back to it.
      An IPv6 ADDR is written in brackets, `tcp:[fd00::5]:443`, and so
      in the log and the answer.
  sni_lab.py probe KIND,SRC,HOST,PORT[,SNI]...
      connect from SRC to HOST:PORT, all probes at once; KIND is `tls` (a
      real ClientHello, no SNI when omitted), `hello` (the same ClientHello,
      but whatever comes back is read as plain bytes: for a peer that only
      reports what it saw), `http` (a GET), `tcp` or `udp` (one datagram
      from a socket connected to HOST:PORT, so only an answer from there
      counts). Prints one line per probe, in order: "reached DATA" (what
      the peer sent), "closed" (accepted, then closed without a word),
      "timeout" (no answer to the SYN or datagram within 2 s) or "refused".
"""
import socket
import ssl
import sys
import threading


def sinks(log, targets):
    lock = threading.Lock()

    def serve(listener, label):
        while True:
            conn, _ = listener.accept()
            with lock, open(log, "a") as f:
                f.write(label + "\n")
            conn.close()

    threads = []
    for target in targets:
        host, port = target.rsplit(":", 1)
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, int(port)))
        listener.listen(16)
        t = threading.Thread(target=serve, args=(listener, target), daemon=True)
        t.start()
        threads.append(t)
    print("ready", flush=True)
    for t in threads:
        t.join()


def tls(host, port, sni):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, int(port)), timeout=3) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=sni) as tls_socket:
                tls_socket.recv(1)
        except (ssl.SSLError, OSError):
            pass


def http(host, port):
    with socket.create_connection((host, int(port)), timeout=3) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
        try:
            s.recv(1)
        except OSError:
            pass


def serve(log, cert, key, specs):
    lock = threading.Lock()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if cert != "-":
        context.load_cert_chain(cert, key)
    names = {}

    def remember_sni(tls_socket, name, _context):
        names[id(tls_socket)] = name

    context.sni_callback = remember_sni

    def record(line):
        with lock, open(log, "a") as f:
            f.write(line + "\n")

    def handle(kind, label, conn, peer):
        conn.settimeout(3)
        try:
            if kind == "tls":
                try:
                    conn = context.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    record(f"{label} peer={peer} handshake-failed")
                    return
                record(f"{label} peer={peer} sni={names.pop(id(conn), None) or '-'}")
                conn.sendall(label.encode())
                try:
                    conn = conn.unwrap()
                except (ssl.SSLError, OSError):
                    pass
            elif kind == "http":
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                record(f"{label} peer={peer}")
                body = label.encode()
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            else:
                record(f"{label} peer={peer}")
                conn.sendall(label.encode())
        except OSError:
            pass
        finally:
            conn.close()

    def accept(kind, listener, label):
        while True:
            conn, address = listener.accept()
            threading.Thread(target=handle, args=(kind, label, conn, address[0]), daemon=True).start()

    def answer(listener, label):
        while True:
            _, address = listener.recvfrom(4096)
            record(f"{label} peer={address[0]}")
            listener.sendto(label.encode(), address)

    threads = []
    for spec in specs:
        # KIND:HOST:PORT, an IPv6 HOST in brackets: `tcp:[fd00::5]:443`.
        kind, rest = spec.split(":", 1)
        host, port = rest.rsplit(":", 1)
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        if kind == "udp":
            listener = socket.socket(family, socket.SOCK_DGRAM)
            listener.bind((host, int(port)))
            t = threading.Thread(target=answer, args=(listener, f"{shown}:{port}/udp"), daemon=True)
            t.start()
            threads.append(t)
            continue
        if kind not in ("tls", "http", "tcp"):
            sys.exit(f"unknown listener kind {kind}")
        listener = socket.socket(family)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, int(port)))
        listener.listen(16)
        t = threading.Thread(target=accept, args=(kind, listener, f"{shown}:{port}"), daemon=True)
        t.start()
        threads.append(t)
    print("ready", flush=True)
    for t in threads:
        t.join()


def probe_udp(source, host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as udp:
        udp.bind((source, 0))
        udp.settimeout(2)
        udp.connect((host, int(port)))
        udp.send(b"probe")
        try:
            return f"reached {udp.recv(4096).decode(errors='replace')}"
        except TimeoutError:
            return "timeout"
        except ConnectionRefusedError:
            return "refused"


def probe_one(spec):
    kind, source, host, port, *sni = spec.split(",")
    if kind == "udp":
        return probe_udp(source, host, port)
    try:
        raw = socket.create_connection((host, int(port)), timeout=2, source_address=(source, 0))
    except (socket.timeout, TimeoutError):
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        return f"error {e.strerror}"
    with raw:
        raw.settimeout(3)
        peer = raw
        if kind == "tls":
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            try:
                peer = context.wrap_socket(raw, server_hostname=sni[0] if sni else None)
            except (ssl.SSLError, OSError):
                return "closed"
        elif kind == "hello":
            raw.sendall(client_hello(sni[0] if sni else None))
        elif kind == "http":
            raw.sendall(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
        elif kind != "tcp":
            return f"error unknown probe kind {kind}"
        data = b""
        try:
            while True:
                chunk = peer.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (ssl.SSLError, OSError):
            pass
        if kind == "http":
            data = data.partition(b"\r\n\r\n")[2]
        return f"reached {data.decode(errors='replace')}" if data else "closed"


def client_hello(sni):
    """The bytes of a real TLS ClientHello (Python's own TLS client)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_object = context.wrap_bio(incoming, outgoing, server_hostname=sni)
    try:
        tls_object.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def probe(specs):
    results = [None] * len(specs)

    def run(i, spec):
        results[i] = probe_one(spec)

    threads = [threading.Thread(target=run, args=(i, s)) for i, s in enumerate(specs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for result in results:
        print(result)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "sinks":
        sinks(sys.argv[2], sys.argv[3:])
    elif mode == "tls":
        tls(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
    elif mode == "http":
        http(sys.argv[2], sys.argv[3])
    elif mode == "serve":
        serve(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
    elif mode == "probe":
        probe(sys.argv[2:])
    else:
        sys.exit(f"unknown mode {mode}")
