"""A seller's webhook receiver for the tests (tests/it/webhooks.rs): it verifies every delivery with the Standard
Webhooks reference library, exactly as the spec publishes it (PyPI `standardwebhooks`), and writes one JSON line per
request to --log: the webhook-id, whether the signature verified, the event's type and the answer it gave.

It answers 500 to the first --fail-first requests of each webhook-id, and to a share --fail-ratio of all requests
(seeded: --seed), else 200 (after a successful verification; 401 when verification fails). The secret is read
from --secret-file on every request: the test writes it once `keystead webhook add` has printed it.

Usage: python webhook_receiver.py --secret-file F --log F [--fail-first N] [--fail-ratio R] [--seed S]
Prints the port it listens on (127.0.0.1) as its first line.
"""

import argparse
import json
import random
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

parser = argparse.ArgumentParser()
parser.add_argument("--secret-file", required=True)
parser.add_argument("--log", required=True)
parser.add_argument("--fail-first", type=int, default=0)
parser.add_argument("--fail-ratio", type=float, default=0.0)
parser.add_argument("--seed", type=int, default=1)
args = parser.parse_args()

lock = threading.Lock()
rng = random.Random(args.seed)
seen = {}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        msg_id = headers.get("webhook-id", "")
        try:
            with open(args.secret_file) as f:
                secret = f.read().strip()
            payload = Webhook(secret).verify(body, headers)
            verified, kind = True, payload.get("type")
        except Exception as e:  # noqa: BLE001 - any failure to verify is recorded as such
            verified, kind = False, repr(e)
        with lock:
            attempt = seen.get(msg_id, 0) + 1
            seen[msg_id] = attempt
            if not verified:
                status = 401
            elif attempt <= args.fail_first or rng.random() < args.fail_ratio:
                status = 500
            else:
                status = 200
            with open(args.log, "a") as log:
                log.write(json.dumps({
                    "id": msg_id,
                    "verified": verified,
                    "type": kind,
                    "status": status,
                    "signature": headers.get("webhook-signature", ""),
                    "timestamp": headers.get("webhook-timestamp", ""),
                    "body": body.decode("utf-8", "replace"),
                }) + "\n")
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
sys.stdout.close()
server.serve_forever()
