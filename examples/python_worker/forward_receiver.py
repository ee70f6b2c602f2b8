#!/usr/bin/env python3
"""Receives the jobs `wa-worker run --forward URL --forward-secret S` POSTs, and verifies their
Standard Webhooks signatures (https://www.standardwebhooks.com) with the standard library alone.

Run with:

    python3 examples/python_worker/forward_receiver.py --secret "$WA_FORWARD_SECRET" \
        [--cert server-chain.pem --key server.key] [--port 8443]

then point a worker at it: `wa-worker --forward https://host:8443/ --forward-secret ...`
(`--forward-ca-cert ca.pem` when a private CA signed the certificate).

It prints one line per request: `verified <job id> attempt=<n>` (answered 204),
`duplicate <job id>` for a webhook-id it has already verified (answered 204 again, nothing
done twice), or `refused: ...` (answered 401). A Standard Webhooks library
(`pip install standardwebhooks`: `Webhook(secret).verify(body, headers)`) does the same check.
"""

import argparse
import base64
import hashlib
import hmac
import json
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# A signature older or newer than this (seconds) is refused: a captured request cannot be
# replayed later. The Standard Webhooks libraries use the same tolerance.
TOLERANCE = 5 * 60
PREFIX = "whsec_"


def keys_from(secrets):
    """The HMAC keys of a comma-separated list: `whsec_<base64>`, or a plain string (the key is
    its UTF-8 bytes), as wa-worker reads WA_FORWARD_SECRET."""
    keys = []
    for secret in secrets.split(","):
        secret = secret.strip()
        if secret.startswith(PREFIX):
            keys.append(base64.b64decode(secret[len(PREFIX):], validate=True))
        else:
            keys.append(secret.encode())
    return keys


def verify(keys, headers, body, now=None):
    """True when one of the `v1,` signatures is the HMAC-SHA256, by one of the keys, of
    `<webhook-id>.<webhook-timestamp>.<body>` (the raw body bytes, before any parsing), and the
    timestamp is within TOLERANCE of now."""
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp", "")
    if not msg_id or not timestamp.isdigit():
        return False
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > TOLERANCE:
        return False
    signed = f"{msg_id}.{timestamp}.".encode() + body
    given = [s[3:] for s in headers.get("webhook-signature", "").split(" ") if s.startswith("v1,")]
    for key in keys:
        want = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        # compare_digest: the time taken says nothing about how much of a forgery was right
        if any(hmac.compare_digest(want, g) for g in given):
            return True
    return False


class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the worker's pooled client expects

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if not verify(self.server.keys, self.headers, body):
            self.answer(401, "refused: bad or stale signature")
            return
        msg_id = self.headers["webhook-id"]
        if msg_id in self.server.seen:
            self.answer(204, f"duplicate {msg_id}")
            return
        job = json.loads(body)
        # ... handle the job here (idempotently: it can arrive again after a worker crash) ...
        self.server.seen.add(msg_id)
        self.answer(204, f"verified {job['id']} attempt={self.headers.get('x-wa-attempt')}")

    def answer(self, status, line):
        print(line, flush=True)
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass  # one line per request is printed above


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--secret", required=True, help="as WA_FORWARD_SECRET (comma-separated)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--cert", help="PEM certificate chain: serve HTTPS")
    parser.add_argument("--key", help="PEM private key of --cert")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Receiver)
    server.keys = keys_from(args.secret)
    server.seen = set()
    scheme = "http"
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    host, port = server.server_address[:2]
    print(f"listening on {scheme}://{host}:{port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
