"""The lease store: where it lives on each system, what it keeps, and that any object with three methods will do."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest
from fakes import KEY, Service, make_client

from keystead_client import FileLeaseStore, KeyedLeaseStore, LeaseStore, MemoryLeaseStore, data_dir


def test_the_file_store_keeps_key_and_lease_readable_by_the_user_only(tmp_path: Path) -> None:
    store = FileLeaseStore(tmp_path / "acme" / "myapp")
    assert store.load() is None and store.load_key() is None
    store.save_key(KEY)
    store.save("lease-1")
    store.save("lease-2")
    assert json.loads(store.path.read_text()) == {"key": KEY, "lease": "lease-2"}
    if sys.platform != "win32":
        assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    store.clear()
    assert (store.load(), store.load_key()) == (None, KEY)
    store.save_key(None)
    assert not store.path.exists()
    assert list(store.directory.iterdir()) == []  # no temporary file left behind


def test_the_file_store_keeps_the_jwks_beside_the_lease(tmp_path: Path) -> None:
    store = FileLeaseStore(tmp_path)
    store.save_jwks('{"keys":[]}')
    assert (tmp_path / "jwks.json").read_text() == '{"keys":[]}' == store.load_jwks()


def test_a_damaged_file_reads_as_nothing_stored(tmp_path: Path) -> None:
    store = FileLeaseStore(tmp_path)
    store.path.write_text("{not json")
    assert store.load() is None
    store.save("lease")
    assert store.load() == "lease"


@pytest.mark.parametrize(
    ("platform", "env", "expected"),
    [
        ("linux", {"XDG_DATA_HOME": "/xdg"}, "/xdg/acme/myapp"),
        ("linux", {}, "~/.local/share/acme/myapp"),
        ("darwin", {}, "~/Library/Application Support/acme/myapp"),
        ("win32", {"APPDATA": "/appdata"}, "/appdata/acme/myapp"),
    ],
)
def test_the_default_store_is_in_the_app_data_folder(
    monkeypatch: pytest.MonkeyPatch, platform: str, env: dict[str, str], expected: str
) -> None:
    monkeypatch.setattr(sys, "platform", platform)
    for name in ("XDG_DATA_HOME", "APPDATA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert data_dir("acme", "myapp") == Path(expected).expanduser()
    assert FileLeaseStore.for_app("acme", "myapp").path == Path(expected).expanduser() / "lease.json"


def test_both_stores_have_the_whole_protocol(tmp_path: Path) -> None:
    for store in (FileLeaseStore(tmp_path), MemoryLeaseStore()):
        assert isinstance(store, LeaseStore) and isinstance(store, KeyedLeaseStore)


class ThreeMethods:
    """An app's own store: the lease in its settings, nothing else."""

    def __init__(self) -> None:
        self.value: str | None = None

    def load(self) -> str | None:
        return self.value

    def save(self, lease: str) -> None:
        self.value = lease

    def clear(self) -> None:
        self.value = None


def test_a_store_with_three_methods_is_enough(service: Service) -> None:
    store = ThreeMethods()
    client = make_client(service, store)  # type: ignore[arg-type]
    client.activate(KEY)
    assert store.value is not None
    assert client.status().machine_id == "machine-1"
    assert client.validate().valid  # the key is kept in memory after activate
    assert client.deactivate() is True
    assert store.value is None
