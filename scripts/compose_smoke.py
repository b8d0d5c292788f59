#!/usr/bin/env python3
"""One lead in, one signed delivery out: the smoke test of a running Hookline.

    python3 scripts/compose_smoke.py http://127.0.0.1:8000 172.18.0.1

The first argument is where the APIs answer (the compose gateway); the
second is this machine's address as the worker sees it (the compose
network's gateway), where a receiver listens for the delivery. The operator
token comes from HOOKLINE_OPERATOR_TOKEN (compose's example one by default).
Standard library only; exits non-zero with one line saying what failed.
"""

import base64
import hashlib
import hmac
import http.server
import json
import os
import sys
import threading
import time
import urllib.request

BASE, RECEIVER_HOST = sys.argv[1].rstrip("/"), sys.argv[2]
TOKEN = os.environ.get("HOOKLINE_OPERATOR_TOKEN", "change-me-operator-token")
received = []


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        received.append((dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def call(method, path, token, body=None):
    req = urllib.request.Request(
        BASE + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as res:
        return json.loads(res.read() or b"null")


def main():
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]

    org = call("POST", "/api/v1/orgs", TOKEN, {"name": "Smoke"})
    key = org["api_key"]["key"]
    hook = call("POST", "/api/v1/webhooks", key, {"url": f"http://{RECEIVER_HOST}:{port}/hook", "events": ["*"]})
    secret = hook["secret"]
    accepted = call("POST", "/api/v1/events/leads", key, {"id": "smoke-1", "name": "Ada", "email": "ada@example.com"})

    deadline = time.time() + 60
    while not received and time.time() < deadline:
        time.sleep(0.2)
    if not received:
        sys.exit(f"no delivery within 60 s for event {accepted.get('event_id')}")
    headers, body = received[0]
    headers = {k.lower(): v for k, v in headers.items()}
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    key_bytes = base64.b64decode(secret.split("_", 1)[1])
    expected = base64.b64encode(hmac.new(key_bytes, signed, hashlib.sha256).digest()).decode()
    offered = [s.split(",", 1)[1] for s in headers["webhook-signature"].split() if s.startswith("v1,")]
    if expected not in offered:
        sys.exit("the delivery's webhook-signature does not verify with the endpoint's secret")
    event = json.loads(body)
    if event["data"]["id"] != "smoke-1":
        sys.exit(f"the delivery carries {event['data']} instead of the lead sent")
    print(f"smoke: lead accepted ({accepted['event_id']}), delivered and signed ({headers['webhook-id']})")


if __name__ == "__main__":
    main()
