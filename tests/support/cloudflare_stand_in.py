#!/usr/bin/python3
"""Stand-in for Cloudflare's API v4, the three read-only calls preflight makes.

Shapes from Cloudflare's public API reference:
  GET /client/v4/user/tokens/verify
      developers.cloudflare.com/api/resources/user/subresources/tokens/methods/verify/
      result {id, status: active|disabled|expired, expires_on?, not_before?}
  GET /client/v4/zones?name=NAME
      developers.cloudflare.com/api/resources/zones/methods/list/
      result [{id, name, status, ...}]: only zones the token may read
  GET /client/v4/zones/{zone_id}/dns_records?per_page=N
      developers.cloudflare.com/api/resources/dns/subresources/records/methods/list/
Every answer is the envelope {success, errors: [{code, message}], messages,
result} (developers.cloudflare.com/fundamentals/api/how-to/make-api-calls/).
A token Cloudflare does not know gets HTTP 401 with error 1000 "Invalid API
Token"; a call the token has no permission for, HTTP 403 with error 10000
"Authentication error" (as the API answers them).

State: the JSON file named by argv[1]:
  {"tokens": {TOKEN: {"status": "active", "zones": ["example.org"],
                      "dns_read": true}},
   "hang": false}
With "hang" true, the server accepts every connection and never answers.
It prints its port on stdout once listening, and appends each request's
method and path (never its Authorization header) to argv[1] + ".log".
"""

import hashlib
import http.server
import json
import sys
import time
import urllib.parse

STATE = sys.argv[1]


def load():
    with open(STATE, encoding="utf-8") as handle:
        return json.load(handle)


def zone_id(name):
    return hashlib.md5(name.encode()).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, result=None, errors=()):
        body = json.dumps({
            "success": status < 300,
            "errors": [{"code": c, "message": m} for c, m in errors],
            "messages": [],
            "result": result,
        }).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        state = load()
        with open(STATE + ".log", "a", encoding="utf-8") as log:
            log.write(f"GET {self.path}\n")
        if state.get("hang"):
            time.sleep(3600)
            return
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return self.answer(400, errors=[(6003, "Invalid request headers")])
        token = state["tokens"].get(auth[len("Bearer "):])
        if token is None:
            return self.answer(401, errors=[(1000, "Invalid API Token")])
        if url.path == "/client/v4/user/tokens/verify":
            result = {"id": "ed17574386854bf78a67040be0a770b0", "status": token.get("status", "active")}
            if token.get("expires_on"):
                result["expires_on"] = token["expires_on"]
            return self.answer(200, result)
        if token.get("status", "active") != "active":
            return self.answer(401, errors=[(1000, "Invalid API Token")])
        if url.path == "/client/v4/zones":
            names = query.get("name", [])
            zones = [{"id": zone_id(z), "name": z, "status": "active"}
                     for z in token.get("zones", []) if not names or z in names]
            return self.answer(200, zones)
        parts = url.path.split("/")
        if len(parts) == 6 and parts[:4] == ["", "client", "v4", "zones"] and parts[5] == "dns_records":
            if parts[4] not in [zone_id(z) for z in token.get("zones", [])] or not token.get("dns_read"):
                return self.answer(403, errors=[(10000, "Authentication error")])
            return self.answer(200, [{"id": "372e67954025e0ba6aaa6d586b9e0b59", "type": "A",
                                      "name": "www." + token["zones"][0], "content": "198.51.100.4"}])
        return self.answer(404, errors=[(7003, "Could not route to " + url.path)])


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
