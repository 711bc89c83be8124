#!/usr/bin/env python3
"""A stand-in Kubernetes API server for the cluster bootstrap tests.

TLS with a client certificate required and verified against the cluster's
Kubernetes CA. Serves only what `waddlec cluster bootstrap` asks, with the
states a real cluster goes through: /readyz fails until asked N times, nodes
are NotReady until asked M times (or never), the Teleport token Secret has no
token until asked K times. Server-side applies are checked (content type,
field manager, force) and stored. Every request is logged as one JSON line
with the client certificate's subject.
"""

import argparse
import base64
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

parser = argparse.ArgumentParser()
parser.add_argument("--listen", required=True)
parser.add_argument("--cert", required=True)
parser.add_argument("--key", required=True)
parser.add_argument("--client-ca", required=True)
parser.add_argument("--log", required=True)
parser.add_argument("--nodes", required=True)
parser.add_argument("--ready-after", type=int, default=2)
parser.add_argument("--nodes-ready-after", type=int, default=2, help="-1: never")
parser.add_argument("--token-after", type=int, default=1)
parser.add_argument("--token", required=True)
args = parser.parse_args()

lock = threading.Lock()
counts = {}
applied = {}


def count(name):
    with lock:
        counts[name] = counts.get(name, 0) + 1
        return counts[name]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):
        pass

    def subject(self):
        cert = self.connection.getpeercert() or {}
        return {k: v for rdn in cert.get("subject", ()) for (k, v) in rdn}

    def record(self, extra=None):
        entry = {"method": self.command, "path": self.path, "subject": self.subject()}
        entry.update(extra or {})
        with lock, open(args.log, "a") as log:
            log.write(json.dumps(entry) + "\n")

    def reply(self, status, body):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.record()
        path = urlparse(self.path).path
        if path == "/readyz":
            if count("readyz") > args.ready_after:
                return self.reply(200, b"ok")
            return self.reply(500, b"[-]etcd failed")
        if path == "/api/v1/nodes":
            n = count("nodes")
            ready = args.nodes_ready_after >= 0 and n > args.nodes_ready_after
            items = [
                {
                    "metadata": {"name": name},
                    "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
                }
                for name in args.nodes.split(",")
            ]
            return self.reply(200, {"kind": "NodeList", "items": items})
        if path == "/api/v1/namespaces/teleport/secrets/teleport-token":
            if count("token") > args.token_after:
                token = base64.b64encode(args.token.encode()).decode()
                return self.reply(200, {"kind": "Secret", "data": {"token": token}})
            return self.reply(200, {"kind": "Secret", "data": {}})
        return self.reply(404, {"kind": "Status", "message": f"{path} not found"})

    def do_PATCH(self):
        url = urlparse(self.path)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        query = parse_qs(url.query)
        ok = (
            self.headers["Content-Type"] == "application/apply-patch+yaml"
            and query.get("fieldManager") == ["waddlec"]
            and query.get("force") == ["true"]
        )
        obj = json.loads(body)
        self.record({"object": obj, "server_side_apply": ok})
        if not ok:
            return self.reply(400, {"kind": "Status", "message": "not a server-side apply"})
        with lock:
            applied[url.path] = obj
        return self.reply(200, obj)


server = ThreadingHTTPServer((args.listen.rsplit(":", 1)[0], int(args.listen.rsplit(":", 1)[1])), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(args.cert, args.key)
context.load_verify_locations(args.client_ca)
context.verify_mode = ssl.CERT_REQUIRED
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
