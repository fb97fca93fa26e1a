"""A stable id for this machine, per product, that does not reveal the OS's own machine id.

A convenience, not a defence: anyone who controls the machine can report any id they like. It only lets a
seat follow a machine across reinstalls of the app, and keeps two products' ids for one machine unlinkable.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

from .store import data_dir, write_private

_LINUX_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")


def machine_id(product_id: str, *, fallback_dir: str | os.PathLike[str] | None = None) -> str:
    """Hex SHA-256 of `product_id + ":" + the OS machine id` (/etc/machine-id, macOS's IOPlatformUUID,
    Windows's MachineGuid). Without one, a random id kept in `fallback_dir` (default `<data>/keystead/`)."""
    os_id = os_machine_id() or _fallback_id(Path(fallback_dir) if fallback_dir else data_dir("keystead"))
    return hashlib.sha256(f"{product_id}:{os_id}".encode()).hexdigest()


def os_machine_id() -> str | None:
    """The operating system's machine id, or None when it has none to give."""
    if sys.platform == "darwin":
        return _macos_platform_uuid()
    if sys.platform == "win32":
        return _windows_machine_guid()
    for name in _LINUX_FILES:
        try:
            value = Path(name).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if value:
            return value
    return None


def _macos_platform_uuid() -> str | None:
    try:
        output = subprocess.run(
            ["ioreg", "-rd1", "-c", "IOPlatformExpertDevice"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'"IOPlatformUUID"\s*=\s*"([^"]+)"', output)
    return match.group(1) if match else None


def _windows_machine_guid() -> str | None:
    if sys.platform != "win32":
        return None
    import winreg

    try:
        with winreg.OpenKey(
            winreg.HKEY_LOCAL_MACHINE,
            r"SOFTWARE\Microsoft\Cryptography",
            0,
            winreg.KEY_READ | winreg.KEY_WOW64_64KEY,
        ) as key:
            value, _ = winreg.QueryValueEx(key, "MachineGuid")
    except OSError:
        return None
    return value if isinstance(value, str) and value else None


def _fallback_id(directory: Path) -> str:
    """A random id made once and kept in `directory/machine-id`."""
    path = directory / "machine-id"
    try:
        existing = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        existing = ""
    if existing:
        return existing
    made = secrets.token_hex(16)
    write_private(path, made + "\n")
    return made
