"""A fake keystead service on a local http.server, speaking the real one's shapes, and a lease signer.

The service answers the license API, the JWKS, the JSON feed and the `303` downloads; its "S3" serves the files
with `Range`, can expire a presigned URL, break a download off after some bytes, and notes any license key it
is sent (it must never see one).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from keystead_client import Client, MemoryLeaseStore

KEY = "MYAPP-W5MNA-88HHJ-RAYE2-FGSS8-PP1SN-S2WF6"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def segment(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


class Signer:
    """A tenant's signing key: signs leases and publishes its JWKS."""

    def __init__(self, kid: str = "k-test-1") -> None:
        self.kid = kid
        self.private = Ed25519PrivateKey.generate()

    def jwks(self) -> dict[str, Any]:
        x = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {
            "keys": [
                {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "kid": self.kid,
                    "x": b64url(x),
                    "alg": "EdDSA",
                    "use": "sig",
                }
            ]
        }

    def sign(self, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
        header = header or {"alg": "EdDSA", "kid": self.kid, "typ": "keystead-lease+jwt"}
        signing_input = f"{segment(header)}.{segment(claims)}"
        return f"{signing_input}.{b64url(self.private.sign(signing_input.encode()))}"


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": "acme",
        "sub": "lic_1",
        "product_id": "myapp",
        "machine_id": "machine-1",
        "status": "active",
        "entitlements": ["pro"],
        "license_expires_at": None,
        "iat": now - 10,
        "exp": now + 3600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeKeystead:
    """The state the handler serves from; tests change it between calls."""

    signer: Signer = field(default_factory=Signer)
    key: str = KEY
    license_status: str = "active"
    seats_full: bool = False
    # An answer that replaces the license API's own for a verb: (status, JSON body).
    answers: dict[str, tuple[int, Any]] = field(default_factory=dict)
    # Changes the lease's claims (e.g. a stale nonce) before signing.
    tamper: Callable[[dict[str, Any]], None] | None = None
    releases: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    # S3: break the next GET of a file off after this many bytes; answer the next n GETs 403 (expired URL).
    break_after: dict[str, int] = field(default_factory=dict)
    expire_next: int = 0
    requests: list[Recorded] = field(default_factory=list)
    keys_seen_by_storage: list[str] = field(default_factory=list)
    base_url: str = ""

    def license_answer(self, verb: str, body: dict[str, Any]) -> tuple[int, Any]:
        if verb in self.answers:
            return self.answers[verb]
        if body.get("key") != self.key:
            return 404, {"error": "License not found"}
        if verb == "deactivate":
            return 200, {"deactivated": True, "activations": 0}
        active = self.license_status == "active"
        if verb == "activate" and not active:
            return 403, {"error": f"License {self.license_status}"}
        if verb == "activate" and self.seats_full:
            return 409, {"error": "Activation limit reached"}
        answer: dict[str, Any] = {
            "valid": active,
            "status": self.license_status,
            "product_id": "myapp",
            "expires_at": None,
            "activation_limit": 3,
            "activations": 1,
            "activated": True,
            "entitlements": ["pro"],
        }
        if active:
            lease_claims = claims(machine_id=body.get("machine_id"), nonce=body.get("nonce", ...))
            if self.tamper:
                self.tamper(lease_claims)
            answer["lease"] = self.signer.sign(lease_claims)
        return 200, answer

    def add_release(
        self, version: str, installer: bytes, patches: dict[str, tuple[bytes, bytes]] | None = None
    ) -> None:
        """A release whose installer is `installer`; `patches` maps a from-version to (old file, patch bytes)."""
        name = f"MyApp-{version}.tar.gz"
        self.files[name] = installer

        def asset(file_name: str, data: bytes) -> dict[str, Any]:
            return {
                "name": file_name,
                "url": f"/v1/acme/products/myapp/releases/{version}/{file_name}",
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "sha512": base64.b64encode(hashlib.sha512(data).digest()).decode(),
            }

        patch_list = []
        for from_version, (old, patch) in (patches or {}).items():
            patch_name = f"{name}.from-{from_version}.patch"
            self.files[patch_name] = patch
            patch_list.append(
                {
                    **asset(patch_name, patch),
                    "kind": "patch",
                    "from_version": from_version,
                    "from_sha256": hashlib.sha256(old).hexdigest(),
                    "target": name,
                    "format": "zstd-ref-prefix",
                }
            )
        self.releases.insert(
            0,
            {
                "version": version,
                "build": None,
                "channel": "stable",
                "platform": "linux",
                "arch": "x86_64",
                "notes": f"What is new in {version}",
                "min_os": None,
                "critical": False,
                "entitlements": [],
                "created_at": "2026-05-01T10:00:00Z",
                "published_at": "2026-05-01T10:00:00Z",
                "files": [{**asset(name, installer), "kind": "installer"}],
                "patches": patch_list,
            },
        )


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self, body: Any = None) -> tuple[list[str], dict[str, list[str]]]:
        url = urllib.parse.urlsplit(self.path)
        self.server.fake.requests.append(Recorded(self.command, url.path, dict(self.headers.items()), body))
        return url.path.strip("/").split("/"), urllib.parse.parse_qs(url.query)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        parts, _ = self._record(body)
        fake = self.server.fake
        if parts[:3] == ["v1", "acme", "licenses"] and len(parts) == 4:
            self._reply(*fake.license_answer(parts[3], body))
        else:
            self._reply(404, {"error": "Not found"})

    def do_GET(self) -> None:
        parts, query = self._record()
        fake = self.server.fake
        if parts == ["v1", "acme", "jwks.json"]:
            return self._reply(200, fake.signer.jwks())
        if parts[0] == "s3":
            return self._storage(urllib.parse.unquote(parts[1]))
        if parts[:4] != ["v1", "acme", "products", "myapp"] or parts[4:5] != ["releases"]:
            return self._reply(404, {"error": "Not found"})
        if self.headers.get("X-License-Key") != fake.key:
            return self._reply(401, {"error": "A license key is required"}, {"WWW-Authenticate": "Bearer"})
        if len(parts) == 5:
            current = query.get("current", [None])[0]
            newer = [r for r in fake.releases if current is None or r["version"] > current]
            return self._reply(
                200,
                {
                    "product_id": "myapp",
                    "channel": "stable",
                    "releases": newer,
                    "update": newer[0] if newer else None,
                },
            )
        name = urllib.parse.unquote(parts[6])
        if name not in fake.files:
            return self._reply(404, {"error": "Not found"})
        location = f"{fake.base_url}/s3/{urllib.parse.quote(name)}?X-Amz-Signature=abc"
        self._reply(303, None, {"Location": location})

    def _storage(self, name: str) -> None:
        fake = self.server.fake
        for header in ("X-License-Key", "Authorization"):
            if header in self.headers:
                fake.keys_seen_by_storage.append(self.headers[header])
        if fake.expire_next > 0:
            fake.expire_next -= 1
            return self._reply(403, None)
        data = fake.files[name]
        start, status, headers = 0, 200, {}
        wanted = self.headers.get("Range")
        if wanted:
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                return self._reply(416, None, {"Content-Range": f"bytes */{len(data)}"})
            status, headers = 206, {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
        body = data[start:]
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = fake.break_after.pop(name, None)
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeKeystead


class Service:
    """The fake service running on 127.0.0.1 in a thread, until `stop()`."""

    def __init__(self, fake: FakeKeystead | None = None) -> None:
        self.fake = fake or FakeKeystead()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self.fake
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.fake.base_url = self.url
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops answering: connections are refused from then on. Stopping twice is harmless."""
        if not self._thread.is_alive():
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def calls(self, path_end: str) -> list[Recorded]:
        return [r for r in self.fake.requests if r.path.endswith(path_end)]


def make_client(service: Service, store: MemoryLeaseStore | None = None, **options: object) -> Client:
    """A client of the fake service for machine-1, with an in-memory store."""
    return Client(
        service.url,
        "acme",
        "myapp",
        machine_id="machine-1",
        store=store if store is not None else MemoryLeaseStore(),
        timeout=5,
        **options,  # type: ignore[arg-type]
    )
