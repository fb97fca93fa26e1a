"""The shared vectors every kit runs (kits/vectors/, written by keystead's examples/kit_vectors.rs)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from keystead_client import Lease, LeaseError, PublicKeys, apply_patch, verify_lease

VECTORS = Path(os.environ.get("KEYSTEAD_KIT_VECTORS") or Path(__file__).resolve().parents[2] / "vectors")

if not (VECTORS / "leases.json").exists():
    pytest.skip(f"no shared vectors in {VECTORS}", allow_module_level=True)

LEASES: dict[str, Any] = json.loads((VECTORS / "leases.json").read_text())


@pytest.mark.parametrize("case", LEASES["cases"], ids=[c["name"] for c in LEASES["cases"]])
def test_lease_vector(case: dict[str, Any]) -> None:
    expected = LEASES["expected"]

    def verify(skew: int) -> Lease:
        return verify_lease(
            case["lease"],
            PublicKeys.from_jwks(LEASES["jwks"]),
            tenant_id=expected["tenant_id"],
            product_id=expected["product_id"],
            machine_id=expected["machine_id"],
            now=LEASES["now"],
            skew_seconds=skew,
        )

    if case["error"] is None:
        lease = verify(LEASES["skew_seconds"])
        assert {k: getattr(lease, k) for k in ("iss", "sub", "exp", "iat")} == {
            k: LEASES["claims"][k] for k in ("iss", "sub", "exp", "iat")
        }
        assert list(lease.entitlements) == LEASES["claims"]["entitlements"]
    elif case["error"] == "":
        verify(LEASES["skew_seconds"])
        with pytest.raises(LeaseError):
            verify(0)
    else:
        with pytest.raises(LeaseError) as refused:
            verify(LEASES["skew_seconds"])
        assert refused.value.kind == case["error"]


def test_patch_vector(tmp_path: Path) -> None:
    about = json.loads((VECTORS / "patch.json").read_text())
    assert about["format"] == "zstd-ref-prefix"
    for part in ("old", "new", "patch"):
        data = (VECTORS / about[part]["file"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (about[part]["size"], about[part]["sha256"])
    out = tmp_path / "new.bin"
    apply_patch(VECTORS / about["old"]["file"], VECTORS / about["patch"]["file"], out)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == about["new"]["sha256"]
    assert out.read_bytes() == (VECTORS / about["new"]["file"]).read_bytes()
