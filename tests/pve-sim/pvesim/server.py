"""The HTTPS front end: what pveproxy/pve-http-server does before an API handler runs.

Per request, in PVE's order: method check, Transfer-Encoding check, /api2/json
prefix, API-token authentication, body (urlencoded, JSON, or a streamed
multipart upload), parameter merge (query wins; `_dc` dropped; URI
parameters may not be repeated), route lookup in the schema (501), token
permission (`allowtoken`), schema validation (400), node check, then the
simulated handler. Responses close the connection for status >= 400 and
after uploads, like pve-http-server; everything else keeps it alive.
"""

import json
import os
import re
import socket
import socketserver
import ssl
import struct
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from .access import Identity, Perms
from .api import RequestContext
from .files import write_json_atomic
from .multipart import CHUNK, MultipartUpload, UploadedFile, UploadFailed
from .perlish import num_str
from .pvesh import Pvesh
from .state import ApiError

KNOWN_METHODS = ("GET", "POST", "PUT", "DELETE")
MAX_POST = 64 * 1024
SECRET_PARAM = re.compile(r"password|secret|token|^key$", re.I)
UPLOAD_PATH = re.compile(r"^/nodes/([^/]+)/storage/([^/]+)/upload$")


class DropConnection(Exception):
    """A fault: close the TCP connection without sending a response."""


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, tls, app):
        self.tls = tls
        self.app = app
        super().__init__(address, Handler)

    def handle_error(self, request, client_address):
        if self.app.verbose:
            super().handle_error(request, client_address)


class App:
    """Everything a request needs: schema, node state, API, journal, faults."""

    def __init__(self, schema, node, api, journal, faults, token, state_path, tmp_dir, verbose):
        self.schema = schema
        self.node = node
        self.api = api
        self.journal = journal
        self.faults = faults
        self.token = token
        self.state_path = state_path
        self.tmp_dir = tmp_dir
        self.verbose = verbose
        self.state_lock = threading.Lock()

    def save_state(self):
        with self.state_lock:  # snapshots are written in the order they were taken
            with self.node.lock:
                if not self.node.dirty:
                    return
                snapshot = self.node.snapshot()
                self.node.dirty = False
            write_json_atomic(self.state_path, snapshot)

    def dispatch(self, method, rel_path, params, identity, upload=None, on_params=None, fault_match=None,
                 warnings=None):
        """Route lookup, URI parameters, token/permission checks, schema validation, node
        check, injected failures, then the handler: (data, result attributes, method info).
        Shared by the HTTPS API and the pvesh channel (`identity` says who calls)."""
        node, uri_params = self.schema.resolve(rel_path)
        info = node.info.get(method) if node else None
        if info is None:
            raise ApiError(501, f"Method '{method} {rel_path}' not implemented")
        for key in params:
            if uri_params.get(key) is not None:
                raise ApiError(400, "Parameter verification failed.",
                               {key: "duplicate parameter (already defined in URI)"})
        params = dict(params, **uri_params)
        if on_params:
            on_params(params)
        if identity.tokenid is not None and not info.get("allowtoken", 1):
            raise ApiError(403, f"Permission check failed (URI '{rel_path}' not available with "
                                "API token, need proper ticket.)")
        perms = None
        if not identity.superuser:  # RPCEnvironment::check_api2_permissions, before validation
            perms = Perms(self.node.access, identity.authid)
            with self.node.lock:
                perms.check_api2_permissions(info.get("permissions"), params)
        if upload and "tmpfilename" in params:
            raise ApiError(400, "Parameter verification failed.",
                           {"tmpfilename": "'tmpfilename' query parameter is not allowed for file uploads"})
        if upload:
            params["tmpfilename"] = upload.pve_path
        errors = self.schema.validate(info, params)
        if errors:
            raise ApiError(400, "Parameter verification failed.", errors)
        with self.node.lock:
            self.node.sync_offline()
            target = self._check_node(params, info, identity)
        if fault_match:
            spec = self.faults.take("fail_request", fault_match)
            if spec:
                raise ApiError(int(spec.get("status", 500)), spec.get("message", "pve-sim: injected failure"),
                               spec.get("errors"))
        handler = self.api.handler(method, node.path)
        if handler is None:
            raise ApiError(501, f"Method '{method} {rel_path}' not implemented by pve-sim")
        clean = {k: ("1" if v else "0") if isinstance(v, bool) else v for k, v in params.items() if v is not None}
        ctx = RequestContext(upload, perms=perms, identity=identity)
        with self.node.lock:
            self.node.caller = identity.authid  # the owner of tasks this handler starts
            self.node.current = target  # the node this request is handled on
            try:
                result = handler(clean, ctx)
            finally:
                self.node.current = self.node.local
            if method != "GET":
                self.node.dirty = True
        if warnings is not None:
            warnings.extend(ctx.warnings)
        return result, ctx.attribs, info

    def pvesh_call(self, method, rel_path, params, identity, warnings=None):
        """One API call made by pvesh (in-process in PVE): validated and journaled like an
        HTTPS request, with `"via": "pvesh"`; returns the data or raises ApiError."""
        record = {"method": method, "path": "/api2/json" + rel_path, "params": dict(params),
                  "via": identity.via, "user": identity.authid}

        def set_params(merged):
            record["params"] = dict(merged)

        try:
            result, _, _ = self.dispatch(method, rel_path, params, identity, on_params=set_params,
                                         warnings=warnings)
        except ApiError as err:
            record["status"] = err.status
            self._journal_pvesh(record, err)
            raise
        except Exception as err:  # a simulator bug: loud, like the HTTPS side
            traceback.print_exc()
            record["status"] = 500
            failure = ApiError(500, f"pve-sim internal error: {err!r}")
            self._journal_pvesh(record, failure)
            raise failure from None
        record["status"] = 200
        self._journal_pvesh(record, None)
        return result

    def pvesh_rejected(self, method, path, argv, err):
        """pvesh refused the command line before any API call (argument grammar, pvesh's
        own validation, unknown path): journaled as a rejected pvesh request."""
        record = {"method": method, "path": "/api2/json" + path if path.startswith("/") else path,
                  "params": {"argv": list(argv)}, "via": "pvesh", "user": "root@pam", "status": err.status}
        self._journal_pvesh(record, err)

    def _journal_pvesh(self, record, error):
        self.save_state()
        record["params"] = redact_params(record["params"])
        self.journal.request(record)
        if error is not None:
            self.journal.violation(violation_record(record, error))

    def _check_node(self, params, info, identity):
        """The node a request is handled on. Any cluster member answers for all: a method
        with `proxyto` is proxied to the named node (pve-http-server
        `src/PVE/APIServer/AnyEvent.pm` `proxy_request`, after pve-manager
        `PVE/HTTPServer.pm` resolved it with PVE::Cluster::remote_node_ip). An unknown
        name fails the address lookup (500); an unreachable node makes AnyEvent::HTTP's
        connect fail, and the proxy relays its pseudo status `595` with the errno text
        as the reason and no body; pvesh proxies through ssh instead (pve-manager
        `PVE/CLI/pvesh.pm` `proxy_handler`: `run_command` with errmsg `proxy handler
        failed`)."""
        node = params.get("node")
        if not isinstance(node, str) or node == "localhost":
            return self.node.local
        member = self.node.members.get(node)
        if member is None:
            raise ApiError(500, f"hostname lookup '{node}' failed - failed to get address info for: "
                                f"{node}: Name or service not known")
        if not member.online and info.get("proxyto") == "node":
            if identity.via == "pvesh":
                raise ApiError(500, f"proxy handler failed: ssh: connect to host {member.ip} port 22: "
                                    "No route to host")
            raise ApiError(595, "No route to host")
        return node


def redact_params(params):
    return {k: "***" if SECRET_PARAM.search(k) and k != "tmpfilename" else v for k, v in params.items()}


def violation_record(record, err):
    if err.errors:
        reason = "Parameter verification failed: " + "; ".join(
            f"{k}: {v.strip()}" for k, v in sorted(err.errors.items()))
    else:
        reason = err.message.strip()
    violation = {"method": record["method"], "path": record["path"], "status": err.status, "reason": reason,
                 "errors": err.errors, "params": record["params"], "user": record.get("user")}
    if record.get("via") == "pvesh":
        violation["via"] = "pvesh"
    return violation


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pve-api-daemon/3.0"
    sys_version = ""
    timeout = 600

    def version_string(self):
        return self.server_version

    def setup(self):
        # TLS handshake here, in the connection's own thread.
        self.request = self.server.tls.wrap_socket(self.request, server_side=True)
        super().setup()

    def log_message(self, format, *args):  # noqa: A002 (BaseHTTPRequestHandler's name)
        if self.server.app.verbose:
            sys.stderr.write("pve-sim: " + (format % args) + "\n")

    def handle_one_request(self):
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline:
                self.close_connection = True
                return
            if len(self.raw_requestline) > 65536:
                self.send_error(414)
                return
            if not self.parse_request():
                return
            Exchange(self).run()
            self.wfile.flush()
        except (OSError, ssl.SSLError):
            self.close_connection = True


def decode_urlencoded(data):
    """pve-http-server's decode_urlencoded: split on [&;], then on '=' (extra '=' parts are lost)."""
    result = {}
    if not data:
        return result
    for pair in re.split(r"[&;]", data):
        fields = pair.split("=")
        key = _unescape(fields[0])
        if len(fields) > 1:
            value = _unescape(fields[1])
            if result.get(key) is not None:
                value = result[key] + "\0" + value
            result[key] = value
        else:
            result[key] = None
    return result


def _unescape(text):
    raw = re.sub(r"%([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), text.replace("+", " "))
    try:
        return raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return raw


def perl_json_value(value):
    """A decoded JSON value as the Perl handler sees it (numbers become strings)."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, list, dict)):
        return value
    return num_str(value)


class Exchange:
    """One request/response."""

    def __init__(self, handler):
        self.handler = handler
        self.app = handler.server.app
        self.method = handler.command
        url = urlsplit(handler.path)
        self.path = unquote(url.path)
        self.query = url.query
        self.rel_path = None
        self.params = {}
        self.status = None
        self.upload_bytes = None
        self.identity = None
        self.body_read = 0  # bytes of the request body consumed so far

    # --- flow ------------------------------------------------------------------

    def run(self):
        """Journals and state.json are written before the response goes out, so a
        client that reads them right after a response sees this request."""
        try:
            self._process()
        except ApiError as err:
            self._respond_error(err)
        except UploadFailed as err:
            self._respond_error(ApiError(501, str(err)))
        except DropConnection:
            self.status = "dropped"
            self._before_reply()
            self._drop()
        except (ConnectionError, TimeoutError, ssl.SSLError):
            self.status = "client disconnected"
            self._before_reply()
            raise
        except Exception as err:  # a simulator bug: answer loudly instead of hanging up
            traceback.print_exc()
            self._respond_error(ApiError(500, f"pve-sim internal error: {err!r}"))

    def _before_reply(self, error=None):
        self.app.save_state()
        self._journal_request()
        if error is not None:
            self._journal_violation(error)

    def _process(self):
        self._check_transport()
        self._authenticate()
        params, upload = self._read_params()
        try:
            params.pop("_dc", None)
            self.params = params
            result, attribs = self._call(params, upload)
        finally:
            if upload:
                upload.discard()
        if self._fault_drops_response():
            raise DropConnection()
        self._respond(200, "OK", dict(attribs, data=result), close=upload is not None)

    def _check_transport(self):
        if self.method not in KNOWN_METHODS:
            raise ApiError(501, f"method '{self.method}' not available")
        encoding = self.handler.headers.get("Transfer-Encoding")
        if encoding and encoding.lower() == "chunked":
            raise ApiError(501, "chunked transfer encoding not supported")
        if encoding:
            raise ApiError(501, f"Unknown transfer encoding '{encoding}'")
        match = re.match(r"^/api2/+([a-z][a-z0-9]+)(/.*)?$", self.path)
        if not self.path.startswith("/api2"):
            raise ApiError(501, f"no such file '{self.path}'")
        if not match:
            raise ApiError(501, "no such uri")
        if match.group(1) != "json":
            raise ApiError(501, f"pve-sim: only the json format is simulated, not '{match.group(1)}'")
        self.rel_path = match.group(2) or "/"

    def _authenticate(self):
        header = self.handler.headers.get("Authorization") or ""
        match = re.search(r"(?:^|\s)PVEAPIToken(?:=| )([^;]*)", header)
        token = unquote(match.group(1)) if match else None
        if not token:
            raise ApiError(401, "No ticket")
        if token == self.app.token:  # the start token: a superuser (README.md)
            userid, tokenid = token.rsplit("=", 1)[0].split("!", 1)
            self.identity = Identity(userid, tokenid, superuser=True)
            return
        # pve-manager HTTPServer.pm auth_handler: verify_token fails -> "Authentication failed!"
        with self.app.node.lock:
            userid, tokenid = self.app.node.access.verify_token(token)
        self.identity = Identity(userid, tokenid)

    def _read_params(self):
        """(parameters, spooled upload or None): body parameters, then the query string's."""
        headers = self.handler.headers
        length_text = headers.get("Content-Length")
        if length_text is not None and not re.match(r"^\d+$", length_text.strip()):
            raise ApiError(400, "bad request")
        length = int(length_text) if length_text else 0
        if self.method == "POST" and UPLOAD_PATH.match(self.rel_path):
            self._check_upload_permission()
            return self._read_upload(length)
        query = decode_urlencoded(self.query)
        if not length:
            return query, None
        if self.method not in ("POST", "PUT"):
            raise ApiError(501, f"Unexpected content for method '{self.method}'")
        if length > MAX_POST:
            raise ApiError(501, "for data too large")
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype not in ("", "application/x-www-form-urlencoded", "application/json"):
            raise ApiError(506, f"upload 'Content-Type '{headers.get('Content-Type')}' not implemented")
        body = self.handler.rfile.read(length)
        self.body_read = len(body)
        if len(body) != length:
            raise DropConnection()
        params = self._json_params(body) if ctype == "application/json" else decode_urlencoded(body.decode("latin-1"))
        params.update(query)
        return params, None

    @staticmethod
    def _json_params(body):
        try:
            data = json.loads(body.decode("utf-8"))
        except ValueError as err:
            raise ApiError(400, f"malformed JSON body: {err}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "pve-sim: a JSON body must be an object")
        return {key: perl_json_value(value) for key, value in data.items()}

    def _check_upload_permission(self):
        """Datastore.AllocateTemplate on /storage/{storage} is checked before the body is read."""
        if self.identity.superuser:
            return
        node, uri_params = self.app.schema.resolve(self.rel_path)
        info = node.info.get("POST") if node else None
        if info is not None:
            with self.app.node.lock:
                Perms(self.app.node.access, self.identity.authid).check_api2_permissions(
                    info.get("permissions"), dict(decode_urlencoded(self.query), **uri_params))

    def _read_upload(self, length):
        headers = self.handler.headers
        if not length:
            raise ApiError(501, "upload without content length header not supported")
        ctype = headers.get("Content-Type") or ""
        boundary = re.search(r"(?:^|[;,])\s*boundary\s*=\s*(\S+?)\s*(?:[;,]|$)", ctype)
        if not boundary or ctype.split(";")[0].strip() != "multipart/form-data":
            raise ApiError(501, f"upload 'Content-Type '{ctype}' not implemented")
        upload = UploadedFile(self.app.tmp_dir)
        fields = decode_urlencoded(self.query)  # multipart fields override these, as in PVE
        parser = MultipartUpload(boundary.group(1).strip('"'), fields, upload)
        drop_after = self.app.faults.peek("drop_upload_after_bytes")
        try:
            self._stream_body(parser, length, drop_after)
            parser.finish()
        except BaseException:
            parser.abort()
            raise
        return fields, upload

    def _stream_body(self, parser, length, drop_after):
        remaining = length
        self.upload_bytes = 0
        while remaining > 0:
            want = min(CHUNK, remaining)
            if drop_after is not None:
                want = min(want, max(0, int(drop_after) - self.upload_bytes))
                if want == 0:
                    self.app.faults.take("drop_upload_after_bytes")  # it fired: consume if "once"
                    raise DropConnection()
            chunk = self.handler.rfile.read(want)
            if not chunk:
                raise DropConnection()  # the client went away
            self.upload_bytes += len(chunk)
            self.body_read = self.upload_bytes
            remaining -= len(chunk)
            parser.feed(chunk)

    # --- dispatch -------------------------------------------------------------------

    def _call(self, params, upload):
        result, attribs, _ = self.app.dispatch(self.method, self.rel_path, params, self.identity, upload,
                                               on_params=self._set_params, fault_match=self._fault_matches)
        return result, attribs

    def _set_params(self, params):
        self.params = params

    # --- faults -------------------------------------------------------------------

    def _fault_matches(self, spec):
        if not isinstance(spec, dict):
            return False
        return spec.get("method", self.method) == self.method and \
            re.search(spec.get("path", ""), self.rel_path or "") is not None

    def _fault_drops_response(self):
        if self.method == "POST" and re.match(r"^/nodes/[^/]+/qemu/?$", self.rel_path):
            if self.app.faults.take("drop_after_create"):
                return True
        return self.app.faults.take("drop_response", self._fault_matches) is not None

    # --- responses -------------------------------------------------------------------

    def _respond_error(self, err):
        body = None  # PVE sends no body with a 401, nor with a failed proxy connection (595)
        if err.status not in (401, 595):
            body = {"data": None, "message": err.message}
            if err.errors:
                body["errors"] = err.errors
        self._respond(err.status, err.message, body, close=True, error=err)

    def _respond(self, status, reason, body, close, error=None):
        self.status = status
        self._before_reply(error)
        close = close or self.handler.close_connection  # the client asked for it (or HTTP/1.0)
        payload = b"" if body is None else json.dumps(body).encode("utf-8")
        reason = (reason or "").split("\n")[0].encode("latin-1", "replace").decode("latin-1") or "Error"
        handler = self.handler
        handler.send_response(status, reason)
        handler.send_header("Content-Type", "application/json;charset=UTF-8")
        handler.send_header("Content-Length", str(len(payload)))
        handler.send_header("Cache-Control", "max-age=0")
        handler.send_header("Pragma", "no-cache")
        handler.send_header("Connection", "close" if close else "Keep-Alive")
        handler.end_headers()
        handler.wfile.write(payload)
        if close:
            handler.close_connection = True
            self._drain_unread_body()

    def _drain_unread_body(self):
        """A request refused before its body was read (401, 403 on an upload): read up to
        16 MiB of it so closing the socket sends FIN, not an RST that would destroy the
        answer in the client's receive buffer."""
        try:
            length = int(self.handler.headers.get("Content-Length") or 0)
        except ValueError:
            return
        remaining = min(length - self.body_read, 16 << 20)
        if remaining <= 0:
            return
        try:
            self.handler.wfile.flush()
            self.handler.connection.settimeout(2)
            while remaining > 0:
                chunk = self.handler.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)
        except (OSError, ssl.SSLError):
            pass

    def _drop(self):
        self.handler.close_connection = True
        sock = self.handler.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # --- journals ----------------------------------------------------------------------

    def _logged_params(self):
        return redact_params(self.params)

    def _record(self):
        return {"method": self.method, "path": self.path, "params": self._logged_params(),
                "status": self.status, "via": "api", "user": self.identity.authid if self.identity else None}

    def _journal_request(self):
        record = self._record()
        if self.upload_bytes is not None:
            record["upload_bytes"] = self.upload_bytes
        self.app.journal.request(record)

    def _journal_violation(self, err):
        self.app.journal.violation(violation_record(self._record(), err))


# --- the root channel: DIR/pvesh.sock ---------------------------------------------


class PveshServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """HTTP over the unix socket DIR/pvesh.sock. Only this socket runs commands as
    root@pam: it serves `POST /pvesh` with `{"argv": [...], "term": {...}}` and answers
    `{"stdout", "stderr", "exit"}` (the `pvesh` script prints them and exits)."""

    daemon_threads = True

    def __init__(self, path, app):
        self.app = app
        if os.path.exists(path):
            os.unlink(path)
        super().__init__(path, PveshHandler)
        os.chmod(path, 0o666)  # tests run pvesh as another user in another namespace


class PveshHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def address_string(self):
        return "pvesh.sock"

    def log_message(self, format, *args):  # noqa: A002
        if self.server.app.verbose:
            sys.stderr.write("pve-sim pvesh: " + (format % args) + "\n")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            request = json.loads(self.rfile.read(length).decode("utf-8"))
            argv = [str(a) for a in request["argv"]]
            term = request.get("term") or {}
        except (ValueError, KeyError, TypeError) as err:
            self._reply(400, {"error": f"bad pvesh request: {err}"})
            return
        if self.path != "/pvesh":
            self._reply(404, {"error": "only POST /pvesh"})
            return
        try:
            stdout, stderr, code = Pvesh(self.server.app, term).run(argv)
        except Exception as err:  # a simulator bug
            traceback.print_exc()
            stdout, stderr, code = "", f"pve-sim internal error: {err!r}\n", 255
        self._reply(200, {"stdout": stdout, "stderr": stderr, "exit": code})

    def _reply(self, status, body):
        payload = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
