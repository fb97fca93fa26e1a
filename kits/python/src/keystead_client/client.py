"""The app's one object: activates this machine, keeps its signed lease, answers offline, fetches updates.

Every online call sends a fresh nonce and accepts only a lease that carries it, so a replayed or forged answer
is refused. When the service cannot be reached, the stored lease decides: `OfflineWithValidLease` (run) or
`OfflineWithoutLease` (ask to go online).
"""

from __future__ import annotations

import json
import os
import secrets
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import (
    InvalidLicense,
    KeysteadError,
    LeaseError,
    OfflineWithoutLease,
    OfflineWithValidLease,
    ServiceError,
    error_for_status,
    error_from_answer,
)
from .http import Http, Unreachable, error_message
from .lease import Lease, PublicKeys, verify_lease
from .machine import machine_id as default_machine_id
from .models import License, Release
from .store import FileLeaseStore, KeyedLeaseStore, LeaseStore
from .updates import Downloader


class Client:
    """A client of one tenant's license API for one product, on this machine.

    `store` keeps the key, the last good lease and the public keys (default: a `FileLeaseStore` in the app's
    data folder). `keys` is a pinned JWKS (a dict): then the keys are never fetched.
    """

    def __init__(
        self,
        api_url: str,
        tenant_id: str,
        product_id: str,
        *,
        machine_id: str | None = None,
        store: LeaseStore | None = None,
        keys: Mapping[str, Any] | None = None,
        skew_seconds: int = 60,
        timeout: float = 10,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.tenant_id = tenant_id
        self.product_id = product_id
        self.store: LeaseStore = store if store is not None else FileLeaseStore.for_app(tenant_id, product_id)
        self.machine_id = machine_id or default_machine_id(product_id)
        self.skew_seconds = skew_seconds
        self._pinned = keys is not None
        self._keys = PublicKeys.from_jwks(keys) if keys is not None else None
        self._http = Http(timeout)
        self._key: str | None = self.store.load_key() if isinstance(self.store, KeyedLeaseStore) else None

    # The license API

    def activate(self, key: str, machine: str | None = None, label: str | None = None) -> License:
        """Takes a seat for this machine (or `machine`, which becomes this client's machine id) and stores
        the key and the lease. Raises `InvalidLicense`, `LicenseRevoked`/`Suspended`/`Expired`, `SeatsFull`,
        `RateLimited`, or an `Offline` error."""
        if machine is not None:
            self.machine_id = machine
        body: dict[str, Any] = {"key": key}
        if label is not None:
            body["label"] = label
        answer = self._license_call("activate", body)
        if answer.lease is None:
            raise ServiceError("activate answered without a lease")
        self._key = key
        if isinstance(self.store, KeyedLeaseStore):
            self.store.save_key(key)
        self.store.save(answer.lease.token)
        return answer

    def validate(self) -> License:
        """Checks the stored key online and refreshes the stored lease. A license that is no longer valid
        raises `LicenseRevoked`/`Suspended`/`Expired` (with the answer as `.license`) and forgets the lease; a
        machine that holds no seat gets `activated=False`, no lease, and its stored lease is dropped."""
        try:
            answer = self._license_call("validate", {"key": self._require_key()})
        except LeaseError:
            raise  # an answer that does not verify proves nothing: the stored lease stays
        except InvalidLicense:
            self.store.clear()  # the key is gone (replaced, or never was): its lease goes with it
            raise
        if not answer.valid:
            self.store.clear()
            raise error_for_status(answer.status, answer)
        if answer.lease is None:
            self.store.clear()
        else:
            self.store.save(answer.lease.token)
        return answer

    def deactivate(self) -> bool:
        """Gives this machine's seat back and forgets the lease and the key. True when it held a seat."""
        body = {"key": self._require_key(), "product_id": self.product_id, "machine_id": self.machine_id}
        status, document = self._post("deactivate", body)
        if status != 200 or not isinstance(document, dict):
            raise error_from_answer(status, error_message(document, status))
        self.store.clear()
        if isinstance(self.store, KeyedLeaseStore):
            self.store.save_key(None)
        self._key = None
        return document.get("deactivated") is True

    def status(self, *, now: float | None = None) -> Lease:
        """The stored lease, verified offline: what the license allows until the lease's `exp`. Raises
        `LeaseError` when it does not verify (`kind` says why; `expired`: validate online), and
        `OfflineWithoutLease` when no lease is stored."""
        token = self.store.load()
        if token is None:
            raise OfflineWithoutLease("no lease stored: activate this machine online")
        return self._verify(token, now=now)

    # Updates

    def check_update(self, current: str, platform: str, arch: str, channel: str = "stable") -> Release | None:
        """The newest release newer than `current` this license may have, or None."""
        query = urllib.parse.urlencode(
            {"platform": platform, "arch": arch, "channel": channel, "current": current}
        )
        url = f"{self._product_url()}/releases?{query}"
        try:
            status, document = self._http.json("GET", url, headers={"X-License-Key": self._require_key()})
        except Unreachable as error:
            raise self._offline(str(error)) from None
        if status >= 500:
            raise self._offline(f"the service answered HTTP {status}")
        if status != 200 or not isinstance(document, dict):
            raise error_from_answer(status, error_message(document, status))
        update = document.get("update")
        return Release.from_json(update) if isinstance(update, dict) else None

    def download(
        self,
        release: Release,
        dest: str | os.PathLike[str],
        *,
        current_file: str | os.PathLike[str] | None = None,
        _stop_after: int | None = None,
    ) -> Path:
        """Downloads the release's installer to `dest`, verified (size and SHA-256); nothing else ever has
        that name. With `current_file` (the installed file), a patch from it is used when one verifies.
        An interrupted download raises an `Offline` error; calling again resumes it. `_stop_after` (tests
        only) interrupts after that many bytes."""
        downloader = Downloader(self._http, self.api_url + "/", self._require_key(), self._offline)
        return downloader.download(
            release,
            Path(dest),
            current_file=Path(current_file) if current_file is not None else None,
            stop_after=_stop_after,
        )

    # Inside

    def _license_call(self, verb: str, body: dict[str, Any]) -> License:
        nonce = secrets.token_hex(16)
        body = {**body, "product_id": self.product_id, "machine_id": self.machine_id, "nonce": nonce}
        status, document = self._post(verb, body)
        if status != 200 or not isinstance(document, dict):
            raise error_from_answer(status, error_message(document, status))
        token = document.get("lease")
        lease = self._verify(token, nonce=nonce) if isinstance(token, str) else None
        return License.from_json(document, lease)

    def _post(self, verb: str, body: dict[str, Any]) -> tuple[int, Any]:
        """POSTs to the license API; an unreachable or unavailable service raises the offline error."""
        url = f"{self.api_url}/v1/{_segment(self.tenant_id)}/licenses/{verb}"
        try:
            status, document = self._http.json("POST", url, json_body=body)
        except Unreachable as error:
            raise self._offline(str(error)) from None
        if status >= 500:
            raise self._offline(f"the service answered HTTP {status}: {error_message(document, status)}")
        return status, document

    def _verify(self, token: str, *, nonce: str | None = None, now: float | None = None) -> Lease:
        """Verifies a lease, fetching the public keys the first time and once more for an unknown `kid`."""
        keys = self._public_keys()
        try:
            return self._verify_with(token, keys, nonce, now)
        except LeaseError as error:
            if error.kind != "unknown_kid" or self._pinned:
                raise
            try:
                keys = self._fetch_keys()
            except KeysteadError:
                raise error from None
            return self._verify_with(token, keys, nonce, now)

    def _verify_with(self, token: str, keys: PublicKeys, nonce: str | None, now: float | None) -> Lease:
        return verify_lease(
            token,
            keys,
            tenant_id=self.tenant_id,
            product_id=self.product_id,
            machine_id=self.machine_id,
            now=time.time() if now is None else now,
            nonce=nonce,
            skew_seconds=self.skew_seconds,
        )

    def _public_keys(self) -> PublicKeys:
        """The keys in memory, else the ones stored beside the lease, else fetched (and then stored)."""
        if self._keys is not None:
            return self._keys
        stored = self.store.load_jwks() if isinstance(self.store, KeyedLeaseStore) else None
        if stored is not None:
            try:
                self._keys = PublicKeys.from_json(stored)
                return self._keys
            except LeaseError:
                pass  # a damaged file: fetch a fresh one
        return self._fetch_keys()

    def _fetch_keys(self) -> PublicKeys:
        url = f"{self.api_url}/v1/{_segment(self.tenant_id)}/jwks.json"
        try:
            status, document = self._http.json("GET", url)
        except Unreachable as error:
            raise OfflineWithoutLease(f"cannot fetch the public keys: {error}") from None
        if status != 200 or not isinstance(document, dict):
            raise ServiceError(f"cannot fetch the public keys: HTTP {status}", status_code=status)
        self._keys = PublicKeys.from_jwks(document)
        if isinstance(self.store, KeyedLeaseStore):
            self.store.save_jwks(json.dumps(document))
        return self._keys

    def _offline(self, why: str) -> KeysteadError:
        """The error for a service that cannot be reached: whether the stored lease lets the app run."""
        token = self.store.load()
        if token is None:
            return OfflineWithoutLease(f"the service cannot be reached ({why}) and no lease is stored")
        try:
            lease = self._verify(token)
        except LeaseError as error:
            return OfflineWithoutLease(
                f"the service cannot be reached ({why}) and the stored lease does not verify: {error}", error
            )
        except KeysteadError as error:
            return OfflineWithoutLease(f"the service cannot be reached ({why}): {error}")
        return OfflineWithValidLease(
            f"the service cannot be reached ({why}); the stored lease is valid", lease
        )

    def _require_key(self) -> str:
        if self._key is None:
            raise InvalidLicense("no license key: activate this machine first")
        return self._key

    def _product_url(self) -> str:
        return f"{self.api_url}/v1/{_segment(self.tenant_id)}/products/{_segment(self.product_id)}"


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")
