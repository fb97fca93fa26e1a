"""Downloading a release: through the service's `303` to a presigned URL, resumable, verified before use.

Nothing but a verified file ever has the destination's name: bytes arrive in `<dest>.part` and are renamed
only once their size and SHA-256 match the feed's. A patch (zstd with the installed file as reference
prefix) is tried first when one applies, and the full file is fetched when it does not verify.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.parse
from collections.abc import Callable
from email.message import Message
from pathlib import Path
from typing import IO

import zstandard

from .errors import DownloadError, KeysteadError, ServiceError, error_from_answer
from .http import Http, Unreachable, error_message
from .models import Patch, Release, ReleaseFile

_CHUNK = 256 * 1024
_REDIRECTS = (301, 302, 303, 307, 308)
# Asking the service for a fresh presigned URL when S3 says the last one expired, or starting over when a
# partial file does not fit: a few times, then give up.
_ATTEMPTS = 3

Asset = ReleaseFile | Patch


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def apply_patch(
    old: str | os.PathLike[str], patch: str | os.PathLike[str], out: str | os.PathLike[str]
) -> None:
    """Applies a `zstd-ref-prefix` patch (what `zstd --patch-from` makes) to `old`, writing `out`."""
    dictionary = zstandard.ZstdCompressionDict(
        Path(old).read_bytes(), dict_type=zstandard.DICT_TYPE_RAWCONTENT
    )
    # The patch's window spans the old and the new file: up to 2 GiB, as `release publish` makes them.
    decompressor = zstandard.ZstdDecompressor(dict_data=dictionary, max_window_size=2**31)
    try:
        with open(patch, "rb") as source, open(out, "wb") as target:
            decompressor.copy_stream(source, target)
    except zstandard.ZstdError as error:
        raise DownloadError(f"the patch does not apply: {error}") from error


def verifies(path: Path, asset: Asset) -> bool:
    """Whether the file has the size and SHA-256 the feed gave."""
    try:
        return path.stat().st_size == asset.size and sha256_file(path) == asset.sha256
    except OSError:
        return False


class Downloader:
    """Fetches a release's files from the feed's URLs with the license key; `offline` makes the error for a
    service or download that cannot be reached."""

    def __init__(self, http: Http, base_url: str, key: str, offline: Callable[[str], KeysteadError]) -> None:
        self._http = http
        self._base_url = base_url
        self._key = key
        self._offline = offline

    def download(
        self,
        release: Release,
        dest: Path,
        *,
        current_file: Path | None = None,
        stop_after: int | None = None,
    ) -> Path:
        installer = release.installer
        if installer is None:
            raise DownloadError(f"release {release.version} has no installer")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if current_file is not None:
            patch = release.patch_from(sha256_file(current_file))
            if patch is not None and self._patch(patch, installer, current_file, dest, stop_after):
                return dest
        self.fetch(installer, dest, stop_after=stop_after)
        return dest

    def _patch(
        self, patch: Patch, installer: ReleaseFile, current_file: Path, dest: Path, stop_after: int | None
    ) -> bool:
        """Makes `dest` from the installed file and a patch; False when the patch or its result does not verify."""
        patch_file = dest.with_name(dest.name + ".patch")
        patched = dest.with_name(dest.name + ".patched.part")
        try:
            self.fetch(patch, patch_file, stop_after=stop_after)
            apply_patch(current_file, patch_file, patched)
            if not verifies(patched, installer):
                return False
            os.replace(patched, dest)
            return True
        except DownloadError:
            return False
        finally:
            patch_file.unlink(missing_ok=True)
            patched.unlink(missing_ok=True)

    def fetch(self, asset: Asset, dest: Path, *, stop_after: int | None = None) -> None:
        """Downloads one file to `dest`, resuming `<dest>.part`, and renames it there once it verifies."""
        part = dest.with_name(dest.name + ".part")
        for _ in range(_ATTEMPTS):
            offset = part.stat().st_size if part.exists() else 0
            if offset > asset.size:
                part.unlink()
                offset = 0
            missing = offset < asset.size or asset.size == 0
            if missing and not self._receive(
                self._presigned_url(asset), part, offset, asset.size, stop_after
            ):
                continue
            if verifies(part, asset):
                os.replace(part, dest)
                return
            part.unlink(missing_ok=True)
            if offset == 0:
                raise DownloadError(f"{asset.name}: the download does not match its size and SHA-256")
            # A resumed file that does not verify may have started from stale bytes: once more, whole.
        raise DownloadError(f"{asset.name}: the download did not complete after {_ATTEMPTS} attempts")

    def _presigned_url(self, asset: Asset) -> str:
        """Asks the service for the file: it answers a redirect to a short-lived presigned URL."""
        url = urllib.parse.urljoin(self._base_url, asset.url)
        try:
            with self._http.open("GET", url, headers={"X-License-Key": self._key}) as answer:
                location = answer.headers.get("Location")
                if answer.status in _REDIRECTS and location:
                    return urllib.parse.urljoin(url, location)
                status, document = answer.status, answer.read_json()
        except Unreachable as error:
            raise self._offline(str(error)) from None
        if status >= 500:
            raise self._offline(f"the service answered HTTP {status}")
        if status < 300:
            raise ServiceError(f"{asset.name}: expected a redirect, got HTTP {status}", status_code=status)
        raise error_from_answer(status, error_message(document, status))

    def _receive(self, url: str, part: Path, offset: int, size: int, stop_after: int | None) -> bool:
        """GETs the rest of the file into `part` (never with the license key: the URL is the storage's).
        False when the URL expired or the range did not fit, so the caller should try again."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            with self._http.open("GET", url, headers=headers) as answer:
                if answer.status in (401, 403):  # the presigned URL expired
                    return False
                resumed = answer.status == 206
                if answer.status == 416 or (resumed and not _starts_at(answer.headers, offset)):
                    part.unlink(missing_ok=True)
                    return False
                if answer.status >= 500:
                    raise self._offline(f"the download answered HTTP {answer.status}")
                if answer.status not in (200, 206):
                    raise ServiceError(
                        f"the download answered HTTP {answer.status}", status_code=answer.status
                    )
                # 200 is the whole file, whatever was asked. Read at most one byte more than the feed's size:
                # enough to know it does not verify.
                start = offset if resumed else 0
                limit = size + 1 - start
                if stop_after is not None:
                    limit = min(limit, stop_after)
                announced = _content_length(answer.headers)
                received = 0
                with open(part, "ab" if resumed else "wb") as out:
                    while received < limit and (chunk := _read(answer.body, min(_CHUNK, limit - received))):
                        out.write(chunk)
                        received += len(chunk)
        except Unreachable as error:
            raise self._offline(f"download interrupted: {error}") from None
        # urllib reads a body cut off by a closed connection as a short one: keep it, resume it next time.
        stopped = stop_after is not None and received == stop_after and start + received < size
        if stopped or (announced is not None and received < min(announced, limit)):
            raise self._offline("download interrupted: the connection closed early")
        return True


def _read(body: IO[bytes], size: int) -> bytes:
    try:
        return body.read(size)
    except (OSError, http.client.HTTPException) as error:
        raise Unreachable(str(error)) from error


def _content_length(headers: Message) -> int | None:
    value = headers.get("Content-Length") or ""
    return int(value) if value.isdigit() else None


def _starts_at(headers: Message, offset: int) -> bool:
    match = re.match(r"bytes (\d+)-", headers.get("Content-Range") or "")
    return match is not None and int(match.group(1)) == offset
