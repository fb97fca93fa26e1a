"""The kit against the real keystead service, run by the lead's harness in three phases over one state folder.

Skipped unless KEYSTEAD_KIT_API is set. KEYSTEAD_KIT_PHASE picks the one test that runs:
`online` (activate, status, update, an interrupted then resumed download, a patch), `offline` (the service is
stopped: the stored lease answers), `revoked` (after a refund: the license is refused and the lease dropped).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keystead_client import (
    Client,
    FileLeaseStore,
    LeaseError,
    LicenseRevoked,
    Offline,
    OfflineWithoutLease,
    OfflineWithValidLease,
    machine_id,
    sha256_file,
)
from keystead_client.updates import Downloader

if not os.environ.get("KEYSTEAD_KIT_API"):
    pytest.skip("KEYSTEAD_KIT_API is not set: no keystead service to test against", allow_module_level=True)

PHASE = os.environ.get("KEYSTEAD_KIT_PHASE", "")


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is required with KEYSTEAD_KIT_API")
    return value


def phase(name: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(name != PHASE, reason=f"KEYSTEAD_KIT_PHASE is {PHASE!r}, not {name!r}")


def client() -> Client:
    """The app as it starts on each run: the same machine, the same lease store."""
    state = Path(env("KEYSTEAD_KIT_STATE"))
    product = env("KEYSTEAD_KIT_PRODUCT")
    return Client(
        env("KEYSTEAD_KIT_API"),
        env("KEYSTEAD_KIT_TENANT"),
        product,
        machine_id=machine_id(product, fallback_dir=state),
        store=FileLeaseStore(state),
        timeout=10,
    )


@phase("online")
def test_online(monkeypatch: pytest.MonkeyPatch) -> None:
    app = client()
    answer = app.activate(env("KEYSTEAD_KIT_KEY"), label="python kit test")
    assert answer.valid and answer.activated and answer.lease is not None

    lease = app.status()
    assert (lease.status, lease.machine_id, lease.iss) == ("active", app.machine_id, app.tenant_id)

    release = app.check_update("1.0.0", "linux", "x86_64")
    assert release is not None and release.version == "1.1.0"
    installer = release.installer
    assert installer is not None
    old_file = Path(env("KEYSTEAD_KIT_OLD_FILE"))
    patch = release.patch_from(sha256_file(old_file))
    assert patch is not None and patch.target == installer.name

    downloads = Path(env("KEYSTEAD_KIT_STATE")) / "downloads"
    dest = downloads / installer.name
    with pytest.raises(Offline):
        app.download(release, dest, _stop_after=max(1, installer.size // 2))
    assert not dest.exists()
    assert (downloads / f"{installer.name}.part").stat().st_size == max(1, installer.size // 2)
    app.download(release, dest)
    assert sha256_file(dest) == installer.sha256 and dest.stat().st_size == installer.size

    fetched: list[str] = []
    fetch = Downloader.fetch

    def spy(self: Downloader, asset, target, **options):  # type: ignore[no-untyped-def]
        fetched.append(asset.name)
        return fetch(self, asset, target, **options)

    monkeypatch.setattr(Downloader, "fetch", spy)
    patched = app.download(release, downloads / "patched" / installer.name, current_file=old_file)
    assert fetched == [patch.name], "the patch, not the full file, was downloaded"
    assert patched.read_bytes() == dest.read_bytes()


@phase("offline")
def test_offline() -> None:
    app = client()
    lease = app.status()
    assert lease.status == "active"
    with pytest.raises(OfflineWithValidLease) as offline:
        app.validate()
    assert offline.value.lease.sub == lease.sub


@phase("revoked")
def test_revoked() -> None:
    app = client()
    with pytest.raises(LicenseRevoked) as revoked:
        app.validate()
    license = revoked.value.license
    assert license is not None and license.status == "revoked" and not license.valid
    with pytest.raises((OfflineWithoutLease, LeaseError)):
        app.status()
