"""Offline verification of keystead leases: JWS compact tokens signed with the tenant's Ed25519 key.

The same checks, in the same order, as the `keystead-verify` crate. The algorithm is pinned to EdDSA: the
token's `alg` is compared with it and never used to choose one, so `none` and `HS256` tokens are refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .errors import LeaseError

ALG = "EdDSA"
LEASE_TYP = "keystead-lease+jwt"
STATUS_ACTIVE = "active"
CLOCK_SKEW_SECONDS = 60

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


@dataclass(frozen=True)
class Lease:
    """A verified lease: its claims, and the token itself (to store it)."""

    token: str
    iss: str
    sub: str
    product_id: str
    machine_id: str
    status: str
    entitlements: tuple[str, ...]
    license_expires_at: str | None
    iat: int
    exp: int
    nonce: str | None = None


class PublicKeys:
    """The Ed25519 keys a lease may be signed with, by `kid`: a tenant's JWKS."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey]) -> None:
        self._keys = dict(keys)

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any]) -> PublicKeys:
        """Reads a JWKS document (a dict). Keys other than OKP/Ed25519 signing keys are ignored; at least
        one must remain."""
        entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if not isinstance(entries, list):
            raise LeaseError("invalid_jwks", "invalid JWKS: no keys list")
        keys: dict[str, Ed25519PublicKey] = {}
        for entry in entries:
            if not isinstance(entry, Mapping):
                continue
            if entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
                continue
            if entry.get("alg", ALG) != ALG or entry.get("use", "sig") != "sig":
                continue
            kid, x = entry.get("kid"), entry.get("x")
            if not isinstance(kid, str) or not isinstance(x, str):
                raise LeaseError("invalid_jwks", "invalid JWKS: an Ed25519 key without kid or x")
            if kid in keys:
                raise LeaseError("invalid_jwks", f"invalid JWKS: duplicate kid {kid!r}")
            raw = _b64url_decode(x)
            if raw is None or len(raw) != 32:
                raise LeaseError("invalid_jwks", f"invalid JWKS: key {kid!r}: x is not 32 base64url bytes")
            keys[kid] = Ed25519PublicKey.from_public_bytes(raw)
        if not keys:
            raise LeaseError("invalid_jwks", "invalid JWKS: no Ed25519 signing key")
        return cls(keys)

    @classmethod
    def from_json(cls, text: str | bytes) -> PublicKeys:
        """Reads a JWKS document from its JSON text."""
        try:
            document = json.loads(text)
        except ValueError as error:
            raise LeaseError("invalid_jwks", f"invalid JWKS: {error}") from None
        return cls.from_jwks(document)

    def get(self, kid: str) -> Ed25519PublicKey | None:
        return self._keys.get(kid)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __len__(self) -> int:
        return len(self._keys)


def verify_lease(
    token: str,
    keys: PublicKeys,
    *,
    tenant_id: str,
    product_id: str,
    machine_id: str,
    now: float | None = None,
    nonce: str | None = None,
    skew_seconds: int = CLOCK_SKEW_SECONDS,
) -> Lease:
    """Verifies a lease at `now` (unix seconds; the system clock when None) and returns it.

    Checks, in order, the first failure raising `LeaseError`: three segments and a header that decodes; `alg` is
    exactly EdDSA; `typ`; `kid` is one of `keys`; the signature; the claims decode; `iss` is the tenant;
    `product_id`; `machine_id`; `nonce` (when given: the one just sent); `iat <= now + skew`;
    `exp + skew > now`; `status` is active.
    """
    now = time.time() if now is None else now
    parts = token.split(".")
    if len(parts) != 3:
        raise LeaseError("malformed", "malformed lease: a lease has three dot-separated segments")
    header_b64, claims_b64, signature_b64 = parts

    header = _json_object(header_b64)
    if header is None:
        raise LeaseError("malformed", "malformed lease: header is not a base64url JSON object")
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise LeaseError("malformed", "malformed lease: header has no alg")
    if alg != ALG:
        raise LeaseError("bad_algorithm", f"unsupported algorithm {alg!r}: only EdDSA is accepted")
    if header.get("typ") != LEASE_TYP:
        raise LeaseError("wrong_type", f"not a keystead lease (typ is not {LEASE_TYP})")
    if "crit" in header:
        # RFC 7515 4.1.11: extensions not understood must be refused; keystead uses none.
        raise LeaseError("malformed", "malformed lease: header has crit")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise LeaseError("malformed", "malformed lease: header has no kid")
    key = keys.get(kid)
    if key is None:
        raise LeaseError("unknown_kid", f"unknown signing key {kid!r}: refresh the JWKS")

    signature = _b64url_decode(signature_b64)
    if signature is None or len(signature) != 64:
        raise LeaseError("bad_signature", "bad signature")
    try:
        key.verify(signature, f"{header_b64}.{claims_b64}".encode("ascii"))
    except InvalidSignature:
        raise LeaseError("bad_signature", "bad signature") from None

    claims = _json_object(claims_b64)
    lease = _lease_from_claims(token, claims) if claims is not None else None
    if lease is None:
        raise LeaseError("malformed", "malformed lease: claims do not decode")

    if lease.iss != tenant_id:
        raise LeaseError("wrong_tenant", "lease issued by another tenant")
    if lease.product_id != product_id:
        raise LeaseError("wrong_product", "lease is for another product")
    if lease.machine_id != machine_id:
        raise LeaseError("wrong_machine", "lease is for another machine")
    if nonce is not None and lease.nonce != nonce:
        raise LeaseError("wrong_nonce", "lease does not answer this request (nonce mismatch)")
    if lease.iat > now + skew_seconds:
        raise LeaseError("not_yet_valid", "lease issued in the future (check the system clock)")
    if lease.exp + skew_seconds <= now:
        raise LeaseError("expired", "lease expired: validate online for a new one")
    if lease.status != STATUS_ACTIVE:
        raise LeaseError("not_active", f"license is not active (status {lease.status!r})")
    return lease


def _b64url_decode(text: str) -> bytes | None:
    """Strict base64url without padding (RFC 7515): None for anything else, non-canonical trailing bits included."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != text:
        return None
    return raw


def _json_object(segment: str) -> dict[str, Any] | None:
    raw = _b64url_decode(segment)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _lease_from_claims(token: str, claims: dict[str, Any]) -> Lease | None:
    """The claims as a `Lease`, or None when one is missing or of the wrong type. Unknown claims are ignored."""

    def string(name: str) -> str | None:
        value = claims.get(name)
        return value if isinstance(value, str) else None

    def integer(name: str) -> int | None:
        value = claims.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    strings = [string(name) for name in ("iss", "sub", "product_id", "machine_id", "status")]
    iat, exp = integer("iat"), integer("exp")
    entitlements = claims.get("entitlements")
    license_expires_at = claims.get("license_expires_at")
    nonce = claims.get("nonce")
    if (
        any(value is None for value in strings)
        or iat is None
        or exp is None
        or not isinstance(entitlements, list)
        or not all(isinstance(e, str) for e in entitlements)
        or not (license_expires_at is None or isinstance(license_expires_at, str))
        or not (nonce is None or isinstance(nonce, str))
    ):
        return None
    iss, sub, product_id, machine_id, status = (value or "" for value in strings)
    return Lease(
        token=token,
        iss=iss,
        sub=sub,
        product_id=product_id,
        machine_id=machine_id,
        status=status,
        entitlements=tuple(entitlements),
        license_expires_at=license_expires_at,
        iat=iat,
        exp=exp,
        nonce=nonce,
    )
