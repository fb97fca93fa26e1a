"""Where the license key, the last good lease and the tenant's public keys are kept between runs.

A lease store is any object with `load()`, `save(lease)` and `clear()`. A store that also has `load_key()`,
`save_key(key)`, `load_jwks()` and `save_jwks(text)` (a `KeyedLeaseStore`, as both stores here are) keeps the
license key and the JWKS too, so `validate()` and an offline `status()` work in the next run.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class LeaseStore(Protocol):
    def load(self) -> str | None: ...
    def save(self, lease: str) -> None: ...
    def clear(self) -> None: ...


@runtime_checkable
class KeyedLeaseStore(LeaseStore, Protocol):
    def load_key(self) -> str | None: ...
    def save_key(self, key: str | None) -> None: ...
    def load_jwks(self) -> str | None: ...
    def save_jwks(self, jwks: str) -> None: ...


def data_dir(*parts: str) -> Path:
    """The per-user data folder of an app: `$XDG_DATA_HOME/...` (default `~/.local/share/...`) on Linux,
    `~/Library/Application Support/...` on macOS, `%APPDATA%\\...` on Windows."""
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base.joinpath(*parts)


def write_private(path: Path, text: str) -> None:
    """Writes `text` to `path` atomically (a reader sees the old or the new file, never half of one), readable
    by the user only (`mkstemp` creates it so): the file may hold a license key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class FileLeaseStore:
    """Keeps `lease.json` (`{"key": ..., "lease": ...}`) and `jwks.json` in a folder, by default the app's
    data folder `<data>/<tenant_id>/<product_id>/`."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    @classmethod
    def for_app(cls, tenant_id: str, product_id: str) -> FileLeaseStore:
        return cls(data_dir(tenant_id, product_id))

    @property
    def path(self) -> Path:
        return self.directory / "lease.json"

    def _read(self) -> dict[str, str]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(document, dict):
            return {}
        return {k: v for k, v in document.items() if isinstance(v, str)}

    def _write(self, document: dict[str, str]) -> None:
        if document:
            write_private(self.path, json.dumps(document, indent=2) + "\n")
        else:
            self.path.unlink(missing_ok=True)

    def load(self) -> str | None:
        return self._read().get("lease")

    def save(self, lease: str) -> None:
        self._write({**self._read(), "lease": lease})

    def clear(self) -> None:
        document = self._read()
        document.pop("lease", None)
        self._write(document)

    def load_key(self) -> str | None:
        return self._read().get("key")

    def save_key(self, key: str | None) -> None:
        document = self._read()
        if key is None:
            document.pop("key", None)
        else:
            document["key"] = key
        self._write(document)

    def load_jwks(self) -> str | None:
        try:
            return (self.directory / "jwks.json").read_text(encoding="utf-8")
        except OSError:
            return None

    def save_jwks(self, jwks: str) -> None:
        write_private(self.directory / "jwks.json", jwks)


class MemoryLeaseStore:
    """A store that forgets everything when the process ends: for tests, or an app that persists elsewhere."""

    def __init__(self, lease: str | None = None, key: str | None = None, jwks: str | None = None) -> None:
        self.lease, self.key, self.jwks = lease, key, jwks

    def load(self) -> str | None:
        return self.lease

    def save(self, lease: str) -> None:
        self.lease = lease

    def clear(self) -> None:
        self.lease = None

    def load_key(self) -> str | None:
        return self.key

    def save_key(self, key: str | None) -> None:
        self.key = key

    def load_jwks(self) -> str | None:
        return self.jwks

    def save_jwks(self, jwks: str) -> None:
        self.jwks = jwks
