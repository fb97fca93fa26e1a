"""Lease checks beyond the shared vectors: the nonce, the skew edges, the claims' types, the JWKS."""

from __future__ import annotations

from typing import Any

import pytest
from fakes import Signer, claims, segment

from keystead_client import Lease, LeaseError, PublicKeys, verify_lease

SIGNER = Signer()
KEYS = PublicKeys.from_jwks(SIGNER.jwks())
NOW = 1_800_000_000


def verify(token: str, **options: Any) -> Lease:
    return verify_lease(
        token, KEYS, tenant_id="acme", product_id="myapp", machine_id="machine-1", now=NOW, **options
    )


def kind(token: str, **options: Any) -> str:
    with pytest.raises(LeaseError) as refused:
        verify(token, **options)
    return refused.value.kind


def lease(**overrides: Any) -> str:
    return SIGNER.sign(claims(**{"iat": NOW - 10, "exp": NOW + 3600, **overrides}))


def test_a_fresh_lease_must_carry_the_nonce_just_sent() -> None:
    assert verify(lease(nonce="n-1"), nonce="n-1").nonce == "n-1"
    assert kind(lease(nonce="n-0"), nonce="n-1") == "wrong_nonce"
    assert kind(lease(), nonce="n-1") == "wrong_nonce"
    assert verify(lease(nonce="n-0")).entitlements == ("pro",)  # a stored lease is checked without one


def test_the_skew_allowance_is_exactly_the_given_seconds() -> None:
    assert verify(lease(exp=NOW - 59)).exp == NOW - 59
    assert kind(lease(exp=NOW - 60)) == "expired"
    assert verify(lease(iat=NOW + 60)).iat == NOW + 60
    assert kind(lease(iat=NOW + 61)) == "not_yet_valid"
    assert kind(lease(exp=NOW - 30), skew_seconds=0) == "expired"


def test_the_header_is_checked_before_any_key_is_used() -> None:
    header = {"alg": "EdDSA", "kid": SIGNER.kid, "typ": "keystead-lease+jwt"}
    assert kind(SIGNER.sign(claims(), {**header, "typ": "JWT"})) == "wrong_type"
    assert kind(SIGNER.sign(claims(), {**header, "crit": ["exp"]})) == "malformed"
    assert kind(SIGNER.sign(claims(), {"alg": "EdDSA", "typ": "keystead-lease+jwt"})) == "malformed"
    assert kind(SIGNER.sign(claims(), {**header, "alg": "ES256"})) == "bad_algorithm"
    assert kind(f"{segment(header)}.{segment(claims())}") == "malformed"


def test_claims_of_the_wrong_type_or_missing_are_malformed() -> None:
    assert kind(lease(iat="yesterday")) == "malformed"
    assert kind(lease(exp=True)) == "malformed"
    assert kind(lease(entitlements="pro")) == "malformed"
    assert kind(lease(sub=...)) == "malformed"
    assert verify(lease(license_expires_at="2027-01-01T00:00:00Z", extra="ignored")).license_expires_at


def test_base64url_must_be_strict() -> None:
    header, body, signature = lease().split(".")
    assert kind(f"{header}.{body}.{signature}=") == "bad_signature"
    assert kind(f"{header}=.{body}.{signature}") == "malformed"
    assert kind(f"{header}.{body}+.{signature}") == "bad_signature"  # the signature covers the text as sent


def test_a_jwks_keeps_only_ed25519_signing_keys() -> None:
    entry = SIGNER.jwks()["keys"][0]
    keys = PublicKeys.from_jwks(
        {
            "keys": [
                {"kty": "RSA", "kid": "r", "n": "x", "e": "AQAB"},
                {**entry, "kid": "enc", "use": "enc"},
                entry,
            ]
        }
    )
    assert SIGNER.kid in keys and "enc" not in keys and len(keys) == 1
    broken: dict[str, Any]
    for broken in (
        {"keys": []},
        {"nokeys": 1},
        {"keys": [entry, entry]},
        {"keys": [{**entry, "x": "short"}]},
    ):
        with pytest.raises(LeaseError) as refused:
            PublicKeys.from_jwks(broken)
        assert refused.value.kind == "invalid_jwks"
