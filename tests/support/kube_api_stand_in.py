#!/usr/bin/env python3
"""A stand-in Kubernetes API server for the cluster bootstrap and status tests.

TLS with a client certificate required and verified against the cluster's
Kubernetes CA. Serves what `waddlec cluster bootstrap` asks, with the
states a real cluster goes through: /readyz fails until asked N times, nodes
are NotReady until asked M times (or never), the Teleport token Secret has no
token until asked K times. Server-side applies are checked (content type,
field manager, force) and stored.

With --state FILE (read again on every request, so a test may rewrite it),
it also serves lists of the resources the file holds, for `waddlec status`:

    {"resources": [{"group": "helm.toolkit.fluxcd.io", "version": "v2",
                    "plural": "helmreleases", "kind": "HelmRelease",
                    "namespaced": true, "forbidden": false,
                    "hang_seconds": 0, "items": [...]}]}

at the API's paths (/api/v1/PLURAL, /apis/GROUP/VERSION/PLURAL, with
/namespaces/NS/ before PLURAL for a namespaced list) in the list envelope
the API server writes (apiVersion, kind `<Kind>List`, metadata with a
resourceVersion, items; a custom resource's items carry their apiVersion
and kind), filtered by an equality `labelSelector`. The items' status
shapes are the test's, each citing its controller. A resource the file
does not hold gets the answer of the API server's not-found handler, Go's
`http.NotFound` text (k8s.io/apiserver `pkg/util/notfoundhandler`); a
`forbidden` one a 403 `Status` in the authorizer's words (`cannot list
resource ... at the cluster scope`) naming the client certificate's CN as
the user; one with `hang_seconds` answers only after that long (an API
server stuck on etcd).

Every request is logged as one JSON line with the client certificate's
subject.
"""

import argparse
import base64
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

parser = argparse.ArgumentParser()
parser.add_argument("--listen", required=True)
parser.add_argument("--cert", required=True)
parser.add_argument("--key", required=True)
parser.add_argument("--client-ca", required=True)
parser.add_argument("--log", required=True)
parser.add_argument("--nodes", default="")
parser.add_argument("--ready-after", type=int, default=2)
parser.add_argument("--nodes-ready-after", type=int, default=2, help="-1: never")
parser.add_argument("--token-after", type=int, default=1)
parser.add_argument("--token", default="")
parser.add_argument("--state", help="resources to list, as JSON (see above)")
args = parser.parse_args()

lock = threading.Lock()
counts = {}
applied = {}


def count(name):
    with lock:
        counts[name] = counts.get(name, 0) + 1
        return counts[name]


def status(code, reason, message, details=None):
    """A `Status` object as the API server writes one (metav1.Status)."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details or {},
        "code": code,
    }


def parse_list_path(path):
    """(group, version, namespace, plural) of a list path, else None."""
    parts = path.strip("/").split("/")
    if parts[:1] == ["api"]:
        group, rest = "", parts[1:]
    elif parts[:1] == ["apis"] and len(parts) >= 2:
        group, rest = parts[1], parts[2:]
    else:
        return None
    if len(rest) == 2:
        return group, rest[0], None, rest[1]
    if len(rest) == 4 and rest[1] == "namespaces":
        return group, rest[0], rest[2], rest[3]
    return None


def selector_matches(selector, labels):
    for term in filter(None, selector.split(",")):
        key, sep, value = term.partition("==") if "==" in term else term.partition("=")
        if not sep or "!" in key:
            raise ValueError(term)
        if labels.get(key) != value:
            return False
    return True


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

    def reply(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def listed(self, url):
        """The list a --state file holds for this path, or None."""
        if not args.state:
            return None
        parsed = parse_list_path(url.path)
        if parsed is None:
            return None
        group, version, namespace, plural = parsed
        with open(args.state) as f:
            state = json.load(f)
        for resource in state["resources"]:
            if (resource["group"], resource["version"], resource["plural"]) != (group, version, plural):
                continue
            if namespace is not None and not resource["namespaced"]:
                return None
            api_version = f"{group}/{version}" if group else version
            time.sleep(resource.get("hang_seconds", 0))
            if resource.get("forbidden"):
                user = self.subject().get("commonName", "system:anonymous")
                scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
                named = f"{plural}.{group}" if group else plural
                message = (
                    f'{named} is forbidden: User "{user}" cannot list resource "{plural}" '
                    f'in API group "{group}" {scope}'
                )
                return 403, status(403, "Forbidden", message, {"group": group, "kind": plural})
            selector = parse_qs(url.query).get("labelSelector", [""])[0]
            items = []
            for item in resource["items"]:
                meta = item.get("metadata", {})
                if namespace is not None and meta.get("namespace") != namespace:
                    continue
                try:
                    if not selector_matches(selector, meta.get("labels", {})):
                        continue
                except ValueError as e:
                    return 400, status(400, "BadRequest", f"unable to parse requirement: {e}")
                if group:
                    item = {"apiVersion": api_version, "kind": resource["kind"], **item}
                items.append(item)
            return 200, {
                "apiVersion": api_version,
                "kind": resource["kind"] + "List",
                "metadata": {"resourceVersion": "4242"},
                "items": items,
            }
        return None

    def do_GET(self):
        self.record()
        url = urlparse(self.path)
        path = url.path
        if path == "/readyz":
            if count("readyz") > args.ready_after:
                return self.reply(200, b"ok")
            return self.reply(500, b"[-]etcd failed")
        listed = self.listed(url)
        if listed is not None:
            return self.reply(*listed)
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
        # The end of the delegation chain, once discovery is complete.
        return self.reply(404, b"404 page not found\n", "text/plain; charset=utf-8")

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
