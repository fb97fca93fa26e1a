"""The machine id: stable, per product, never the OS id itself, with a kept random fallback."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from keystead_client import machine, machine_id


def test_it_hashes_the_product_with_the_os_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "os_machine_id", lambda: "0123456789abcdef0123456789abcdef")
    first = machine_id("myapp")
    assert (
        first == machine_id("myapp") == hashlib.sha256(b"myapp:0123456789abcdef0123456789abcdef").hexdigest()
    )
    assert first != machine_id("otherapp")
    assert "0123456789abcdef" not in first


def test_without_an_os_id_a_random_one_is_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(machine, "os_machine_id", lambda: None)
    first = machine_id("myapp", fallback_dir=tmp_path)
    assert machine_id("myapp", fallback_dir=tmp_path) == first
    assert len((tmp_path / "machine-id").read_text().strip()) == 32
    assert machine_id("myapp", fallback_dir=tmp_path / "elsewhere") != first


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's /etc/machine-id")
def test_on_linux_it_reads_the_machine_id_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing, present = tmp_path / "missing", tmp_path / "machine-id"
    present.write_text("feedc0de\n")
    monkeypatch.setattr(machine, "_LINUX_FILES", (str(missing), str(present)))
    assert machine.os_machine_id() == "feedc0de"


def test_on_macos_it_reads_the_platform_uuid(monkeypatch: pytest.MonkeyPatch) -> None:
    output = '+-o Mac  <class IOPlatformExpertDevice>\n    "IOPlatformUUID" = "4C4C4544-0042-3510-8051-B7C04F4E4B32"\n'

    class Ran:
        stdout = output

    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: Ran())
    assert machine.os_machine_id() == "4C4C4544-0042-3510-8051-B7C04F4E4B32"
