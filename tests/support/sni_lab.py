#!/usr/bin/python3
"""Test peers for the SNI router tests (run inside a test network namespace).

  sni_lab.py sinks LOG ADDR:PORT...   accept on each address; log "ADDR:PORT" per connection
  sni_lab.py tls HOST PORT [SNI]      send a real TLS ClientHello (no SNI when omitted)
  sni_lab.py http HOST PORT           send a plain HTTP request

Clients wait until the peer closes or 3 s pass; they never fail on a
handshake error, since the sinks are not TLS servers.
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


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "sinks":
        sinks(sys.argv[2], sys.argv[3:])
    elif mode == "tls":
        tls(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
    elif mode == "http":
        http(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown mode {mode}")
