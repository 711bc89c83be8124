#!/usr/bin/python3
"""Stand-in for Teleport's proxy web listener (teleport.yaml's
proxy_service.web_listen_addr, 3080), for `waddlec status` tests:

  teleport_web_stand_in.py --listen ADDR:PORT --cert FILE --key FILE
                           --version 18.2.1 --cluster NAME

A TLS server presenting CERT for every server name, speaking HTTP/1.1.
`GET /webapi/ping` answers 200 with the JSON object Teleport's proxy
returns, `webclient.PingResponse` of gravitational/teleport
`api/client/webclient/webclient.go`: `auth`, `proxy`, `server_version`,
`min_client_version`, `cluster_name`, `automatic_upgrades`, `edition`,
`fips` (the values of a community proxy with local auth). Any other path
answers 404 with `{"error": {"message": "not found"}}`, the shape of
`webclient.PingErrorResponse`. Python 3 standard library only.
"""

import argparse
import http.server
import json
import ssl

parser = argparse.ArgumentParser()
parser.add_argument("--listen", required=True)
parser.add_argument("--cert", required=True)
parser.add_argument("--key", required=True)
parser.add_argument("--version", required=True)
parser.add_argument("--cluster", required=True)
args = parser.parse_args()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.split("?")[0] == "/webapi/ping":
            return self.reply(200, {
                "auth": {"type": "local", "second_factor": "on", "local": {"name": ""}},
                "proxy": {
                    "kube": {"enabled": True, "listen_addr": "0.0.0.0:3026"},
                    "ssh": {"listen_addr": "[::]:3023", "tunnel_listen_addr": "0.0.0.0:3024",
                            "web_listen_addr": "0.0.0.0:3080"},
                    "db": {},
                    "tls_routing_enabled": False,
                },
                "server_version": args.version,
                "min_client_version": "17.0.0-aa",
                "cluster_name": args.cluster,
                "automatic_upgrades": False,
                "edition": "community",
                "fips": False,
            })
        return self.reply(404, {"error": {"message": "not found"}})

    def log_message(self, *_):
        pass


host, port = args.listen.rsplit(":", 1)
server = http.server.ThreadingHTTPServer((host, int(port)), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(args.cert, args.key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
