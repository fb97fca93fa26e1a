"""The service's answers as typed values: a license check, a release with its files and patches.

Each is read once from the JSON at the edge (`from_json`); fields the kit does not know are ignored, so the
service can add some.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .lease import Lease


def _str(data: Mapping[str, Any], name: str, default: str = "") -> str:
    value = data.get(name)
    return value if isinstance(value, str) else default


def _opt_str(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) else None


def _int(data: Mapping[str, Any], name: str, default: int = 0) -> int:
    value = data.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _strings(data: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = data.get(name)
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


@dataclass(frozen=True)
class License:
    """An answer of `activate` or `validate`. `lease` is the verified lease, when the answer carried one."""

    valid: bool
    status: str
    product_id: str
    expires_at: str | None
    activation_limit: int
    activations: int
    activated: bool | None
    entitlements: tuple[str, ...]
    seat_expires_at: str | None
    lease: Lease | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any], lease: Lease | None) -> License:
        activated = data.get("activated")
        return cls(
            valid=data.get("valid") is True,
            status=_str(data, "status"),
            product_id=_str(data, "product_id"),
            expires_at=_opt_str(data, "expires_at"),
            activation_limit=_int(data, "activation_limit"),
            activations=_int(data, "activations"),
            activated=activated if isinstance(activated, bool) else None,
            entitlements=_strings(data, "entitlements"),
            seat_expires_at=_opt_str(data, "seat_expires_at"),
            lease=lease,
        )


@dataclass(frozen=True)
class ReleaseFile:
    """A file of a release: the installer, an electron blockmap, a Sparkle delta."""

    name: str
    url: str
    size: int
    sha256: str
    sha512: str
    kind: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReleaseFile:
        return cls(
            name=_str(data, "name"),
            url=_str(data, "url"),
            size=_int(data, "size"),
            sha256=_str(data, "sha256").lower(),
            sha512=_str(data, "sha512"),
            kind=_str(data, "kind"),
        )


@dataclass(frozen=True)
class Patch:
    """A binary patch to the file `target` from the file whose SHA-256 is `from_sha256` (`format` zstd-ref-prefix)."""

    name: str
    url: str
    size: int
    sha256: str
    sha512: str
    from_version: str
    from_sha256: str
    target: str
    format: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Patch:
        return cls(
            name=_str(data, "name"),
            url=_str(data, "url"),
            size=_int(data, "size"),
            sha256=_str(data, "sha256").lower(),
            sha512=_str(data, "sha512"),
            from_version=_str(data, "from_version"),
            from_sha256=_str(data, "from_sha256").lower(),
            target=_str(data, "target"),
            format=_str(data, "format"),
        )


@dataclass(frozen=True)
class Release:
    """One version of the product for one platform and arch, as the JSON feed lists it."""

    version: str
    build: str | None
    channel: str
    platform: str
    arch: str
    notes: str | None
    min_os: str | None
    critical: bool
    entitlements: tuple[str, ...]
    created_at: str | None
    published_at: str | None
    files: tuple[ReleaseFile, ...]
    patches: tuple[Patch, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Release:
        build = data.get("build")
        files = data.get("files")
        patches = data.get("patches")
        return cls(
            version=_str(data, "version"),
            build=str(build) if isinstance(build, (str, int)) and not isinstance(build, bool) else None,
            channel=_str(data, "channel", "stable"),
            platform=_str(data, "platform"),
            arch=_str(data, "arch"),
            notes=_opt_str(data, "notes"),
            min_os=_opt_str(data, "min_os"),
            critical=data.get("critical") is True,
            entitlements=_strings(data, "entitlements"),
            created_at=_opt_str(data, "created_at"),
            published_at=_opt_str(data, "published_at"),
            files=tuple(ReleaseFile.from_json(f) for f in files if isinstance(f, Mapping))
            if isinstance(files, list)
            else (),
            patches=tuple(Patch.from_json(p) for p in patches if isinstance(p, Mapping))
            if isinstance(patches, list)
            else (),
        )

    @property
    def installer(self) -> ReleaseFile | None:
        """The file an update installs: the first of kind `installer`."""
        return next((f for f in self.files if f.kind == "installer"), None)

    def patch_from(self, current_sha256: str) -> Patch | None:
        """A patch that turns the file whose SHA-256 is `current_sha256` into this release's installer."""
        installer = self.installer
        if installer is None:
            return None
        return next(
            (
                p
                for p in self.patches
                if p.from_sha256 == current_sha256.lower()
                and p.target == installer.name
                and p.format == "zstd-ref-prefix"
            ),
            None,
        )
