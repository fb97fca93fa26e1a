"""Updates against the fake service: the feed, the 303 to storage without the key, resuming, verifying, patches."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import zstandard
from fakes import KEY, Service

from keystead_client import Client, DownloadError, InvalidLicense, Offline, Release

OLD = os.urandom(200_000)
NEW = OLD[:50_000] + b"version 1.1.0" + OLD[50_000:] + b"a new tail"
NAME = "MyApp-1.1.0.tar.gz"


def make_patch(old: bytes, new: bytes) -> bytes:
    """What `release publish` makes (zstd with `old` as raw-content prefix), in python-zstandard's words."""
    dictionary = zstandard.ZstdCompressionDict(old, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return zstandard.ZstdCompressor(level=19, dict_data=dictionary).compress(new)


@pytest.fixture
def release(service: Service, activated: Client) -> Release:
    service.fake.add_release("1.1.0", NEW, {"1.0.0": (OLD, make_patch(OLD, NEW))})
    update = activated.check_update("1.0.0", "linux", "x86_64")
    assert update is not None
    return update


def storage_gets(service: Service) -> list[str]:
    return [r.headers.get("Range", "") for r in service.fake.requests if r.path.startswith("/s3/")]


def test_check_update_sends_the_key_and_reads_the_feed(
    service: Service, activated: Client, release: Release
) -> None:
    feed = service.calls("/products/myapp/releases")[0]
    assert feed.headers["X-License-Key"] == KEY
    assert (release.version, release.platform, release.arch, release.channel) == (
        "1.1.0",
        "linux",
        "x86_64",
        "stable",
    )
    assert release.installer is not None and release.installer.name == NAME
    assert release.patches[0].from_version == "1.0.0" and release.patches[0].target == NAME
    assert activated.check_update("1.1.0", "linux", "x86_64") is None


def test_check_update_with_an_unknown_key(service: Service, activated: Client) -> None:
    service.fake.key = "ANOTHER-KEY"
    with pytest.raises(InvalidLicense):
        activated.check_update("1.0.0", "linux", "x86_64")


def test_download_follows_the_redirect_without_the_key(
    service: Service, activated: Client, release: Release, tmp_path: Path
) -> None:
    dest = activated.download(release, tmp_path / NAME)
    assert dest.read_bytes() == NEW
    assert service.calls(f"/releases/1.1.0/{NAME}")[0].headers["X-License-Key"] == KEY
    assert storage_gets(service) == [""]
    assert service.fake.keys_seen_by_storage == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [NAME]


def test_an_interrupted_download_resumes_with_a_range(
    service: Service, activated: Client, release: Release, tmp_path: Path
) -> None:
    service.fake.break_after[NAME] = 70_000
    dest = tmp_path / NAME
    with pytest.raises(Offline):
        activated.download(release, dest)
    assert not dest.exists()
    assert (tmp_path / f"{NAME}.part").stat().st_size == 70_000
    activated.download(release, dest)
    assert dest.read_bytes() == NEW
    assert storage_gets(service) == ["", "bytes=70000-"]
    assert len(service.calls(f"/releases/1.1.0/{NAME}")) == 2  # a fresh presigned URL for the second attempt


def test_the_stop_after_hook_interrupts_like_a_broken_connection(
    activated: Client, release: Release, tmp_path: Path
) -> None:
    with pytest.raises(Offline):
        activated.download(release, tmp_path / NAME, _stop_after=1234)
    assert (tmp_path / f"{NAME}.part").stat().st_size == 1234
    assert activated.download(release, tmp_path / NAME).read_bytes() == NEW


def test_an_expired_presigned_url_is_asked_for_again(
    service: Service, activated: Client, release: Release, tmp_path: Path
) -> None:
    service.fake.expire_next = 1
    assert activated.download(release, tmp_path / NAME).read_bytes() == NEW
    assert len(service.calls(f"/releases/1.1.0/{NAME}")) == 2


def test_a_file_that_does_not_verify_never_takes_the_name(
    service: Service, activated: Client, release: Release, tmp_path: Path
) -> None:
    service.fake.files[NAME] = NEW[:-1] + b"!"
    with pytest.raises(DownloadError):
        activated.download(release, tmp_path / NAME)
    assert list(tmp_path.iterdir()) == []


def test_a_stale_partial_file_is_started_over(
    service: Service, activated: Client, release: Release, tmp_path: Path
) -> None:
    (tmp_path / f"{NAME}.part").write_bytes(b"x" * 1000)  # from another version, once
    assert activated.download(release, tmp_path / NAME).read_bytes() == NEW
    assert storage_gets(service) == ["bytes=1000-", ""]


def test_a_patch_from_the_installed_file_is_used(
    service: Service, activated: Client, release: Release, tmp_path: Path
) -> None:
    installed = tmp_path / "MyApp-1.0.0.tar.gz"
    installed.write_bytes(OLD)
    dest = activated.download(release, tmp_path / NAME, current_file=installed)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == hashlib.sha256(NEW).hexdigest()
    assert [r.path.rsplit("/", 1)[1] for r in service.fake.requests if r.path.startswith("/s3/")] == [
        f"{NAME}.from-1.0.0.patch"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([NAME, installed.name])


def test_a_patch_that_does_not_verify_falls_back_to_the_full_file(
    service: Service, activated: Client, release: Release, tmp_path: Path
) -> None:
    installed = tmp_path / "MyApp-1.0.0.tar.gz"
    installed.write_bytes(OLD)
    # A patch that applies but gives other bytes: the feed's SHA-256 of it is right, the result's is not.
    wrong = make_patch(OLD, NEW + b"?")
    service.fake.files[f"{NAME}.from-1.0.0.patch"] = wrong
    patch = release.patches[0]
    object.__setattr__(patch, "size", len(wrong))
    object.__setattr__(patch, "sha256", hashlib.sha256(wrong).hexdigest())
    assert activated.download(release, tmp_path / NAME, current_file=installed).read_bytes() == NEW
    assert len(storage_gets(service)) == 2


def test_a_corrupt_patch_download_falls_back_too(
    service: Service, activated: Client, release: Release, tmp_path: Path
) -> None:
    installed = tmp_path / "MyApp-1.0.0.tar.gz"
    installed.write_bytes(OLD)
    service.fake.files[f"{NAME}.from-1.0.0.patch"] = b"not a patch"
    assert activated.download(release, tmp_path / NAME, current_file=installed).read_bytes() == NEW


def test_no_patch_for_another_installed_file(
    service: Service, activated: Client, release: Release, tmp_path: Path
) -> None:
    installed = tmp_path / "MyApp-0.9.0.tar.gz"
    installed.write_bytes(b"something else")
    assert activated.download(release, tmp_path / NAME, current_file=installed).read_bytes() == NEW
    assert [r.path.rsplit("/", 1)[1] for r in service.fake.requests if r.path.startswith("/s3/")] == [NAME]
