"""The license verbs against a fake service: what is sent, what is stored, and each answer's typed error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fakes import KEY, Service, Signer, make_client

from keystead_client import (
    Client,
    FileLeaseStore,
    InvalidLicense,
    KeysteadError,
    LeaseError,
    LicenseExpired,
    LicenseRevoked,
    LicenseSuspended,
    MemoryLeaseStore,
    Offline,
    OfflineWithoutLease,
    OfflineWithValidLease,
    RateLimited,
    SeatsFull,
    ServiceError,
)


def test_activate_sends_a_fresh_nonce_and_stores_key_and_lease(service: Service) -> None:
    store = MemoryLeaseStore()
    client = make_client(service, store)
    answer = client.activate(KEY, label="Jane laptop")
    assert answer.valid and answer.activated and answer.entitlements == ("pro",)
    assert answer.lease is not None and answer.lease.machine_id == "machine-1"
    sent = service.calls("/licenses/activate")[0].body
    assert sent == {
        "key": KEY,
        "label": "Jane laptop",
        "product_id": "myapp",
        "machine_id": "machine-1",
        "nonce": answer.lease.nonce,
    }
    assert (store.key, store.lease) == (KEY, answer.lease.token)
    client.validate()
    nonces = [r.body["nonce"] for r in service.fake.requests if r.method == "POST"]
    assert len(set(nonces)) == 2 and all(len(n) >= 32 for n in nonces)


def test_a_lease_that_does_not_answer_this_request_is_refused(service: Service) -> None:
    def replay(claims: dict[str, Any]) -> None:
        claims["nonce"] = "an-old-nonce"

    service.fake.tamper = replay
    store = MemoryLeaseStore()
    with pytest.raises(LeaseError) as refused:
        make_client(service, store).activate(KEY)
    assert refused.value.kind == "wrong_nonce"
    assert store.lease is None and store.key is None


def test_with_pinned_keys_a_forged_lease_is_refused(service: Service) -> None:
    genuine = service.fake.signer.jwks()
    service.fake.signer = Signer(service.fake.signer.kid)  # a forger's key under the same kid
    store = MemoryLeaseStore()
    with pytest.raises(LeaseError) as refused:
        make_client(service, store, keys=genuine).activate(KEY)
    assert refused.value.kind == "bad_signature"
    assert store.lease is None


@pytest.mark.parametrize(
    ("status", "error", "raised", "kind"),
    [
        (404, "License not found", InvalidLicense, "invalid_license"),
        (403, "License revoked", LicenseRevoked, "license_revoked"),
        (403, "License suspended", LicenseSuspended, "license_suspended"),
        (403, "License expired", LicenseExpired, "license_expired"),
        (409, "Activation limit reached", SeatsFull, "seats_full"),
        (
            429,
            "Too many new machines for this license; try again within the hour",
            RateLimited,
            "rate_limited",
        ),
        (400, "Missing required field 'product_id'", ServiceError, "service_error"),
    ],
)
def test_activate_errors_are_typed(
    service: Service, status: int, error: str, raised: type[KeysteadError], kind: str
) -> None:
    service.fake.answers["activate"] = (status, {"error": error})
    with pytest.raises(raised) as refused:
        make_client(service).activate(KEY)
    assert (refused.value.status_code, refused.value.message, refused.value.kind) == (status, error, kind)


def test_the_real_answers_of_the_fake_map_the_same_way(service: Service) -> None:
    with pytest.raises(InvalidLicense):
        make_client(service).activate("MYAPP-NOT-A-KEY")
    service.fake.seats_full = True
    with pytest.raises(SeatsFull):
        make_client(service).activate(KEY)


@pytest.mark.parametrize(
    ("status", "raised"),
    [("revoked", LicenseRevoked), ("suspended", LicenseSuspended), ("expired", LicenseExpired)],
)
def test_validate_of_a_license_no_longer_valid_raises_and_forgets_the_lease(
    activated: Client, service: Service, status: str, raised: type[KeysteadError]
) -> None:
    service.fake.license_status = status
    with pytest.raises(raised) as refused:
        activated.validate()
    assert isinstance(refused.value, (LicenseRevoked, LicenseSuspended, LicenseExpired))
    license = refused.value.license
    assert license is not None and license.status == status and not license.valid
    with pytest.raises(OfflineWithoutLease):
        activated.status()
    assert activated.store.load_key() == KEY  # type: ignore[attr-defined]


def test_validate_of_a_key_not_found_forgets_the_lease(activated: Client, service: Service) -> None:
    service.fake.key = "THE-REPLACEMENT-KEY"
    with pytest.raises(InvalidLicense) as refused:
        activated.validate()
    assert refused.value.status_code == 404 and activated.store.load() is None


def test_validate_refreshes_the_stored_lease(activated: Client) -> None:
    first = activated.store.load()
    answer = activated.validate()
    assert answer.lease is not None and activated.store.load() == answer.lease.token != first


def test_validate_without_a_key_asks_for_activation(service: Service) -> None:
    with pytest.raises(InvalidLicense, match="activate"):
        make_client(service).validate()


def test_deactivate_gives_the_seat_back_and_forgets(activated: Client, service: Service) -> None:
    assert activated.deactivate() is True
    assert service.calls("/licenses/deactivate")[0].body == {
        "key": KEY,
        "product_id": "myapp",
        "machine_id": "machine-1",
    }
    assert activated.store.load() is None and activated.store.load_key() is None  # type: ignore[attr-defined]


def test_status_answers_offline_in_the_next_run(service: Service, tmp_path: Path) -> None:
    make_client(service, FileLeaseStore(tmp_path)).activate(KEY)  # type: ignore[arg-type]
    service.stop()
    restarted = make_client(service, FileLeaseStore(tmp_path))  # type: ignore[arg-type]
    lease = restarted.status()
    assert (lease.iss, lease.product_id, lease.machine_id, lease.status) == (
        "acme",
        "myapp",
        "machine-1",
        "active",
    )
    with pytest.raises(OfflineWithValidLease) as offline:
        restarted.validate()
    assert offline.value.lease.token == lease.token


def test_offline_without_a_good_lease(service: Service) -> None:
    client = make_client(service, MemoryLeaseStore(key=KEY))
    service.stop()
    with pytest.raises(OfflineWithoutLease):
        client.validate()
    with pytest.raises(OfflineWithoutLease):
        client.status()


def test_a_5xx_is_offline(activated: Client, service: Service) -> None:
    service.fake.answers["validate"] = (503, {"error": "Temporarily unavailable"})
    with pytest.raises(OfflineWithValidLease):
        activated.validate()
    service.fake.answers["activate"] = (502, None)
    with pytest.raises(Offline):
        make_client(service).activate(KEY)


def test_a_stored_lease_on_another_machine_does_not_run(service: Service) -> None:
    store = MemoryLeaseStore()
    make_client(service, store).activate(KEY)
    other = Client(service.url, "acme", "myapp", machine_id="machine-2", store=store)
    with pytest.raises(LeaseError) as refused:
        other.status()
    assert refused.value.kind == "wrong_machine"


def test_keys_are_fetched_once_and_again_only_for_an_unknown_kid(activated: Client, service: Service) -> None:
    activated.validate()
    activated.status()
    assert len(service.calls("/jwks.json")) == 1
    service.fake.signer = Signer("k-test-2")  # the tenant rotated its key
    activated.validate()
    assert len(service.calls("/jwks.json")) == 2


def test_pinned_keys_are_never_fetched(service: Service) -> None:
    client = make_client(service, keys=service.fake.signer.jwks())
    client.activate(KEY)
    client.status()
    service.fake.signer = Signer("k-test-2")
    with pytest.raises(LeaseError) as refused:
        client.validate()
    assert refused.value.kind == "unknown_kid"
    assert service.calls("/jwks.json") == []


def test_an_expired_stored_lease_says_so(service: Service) -> None:
    client = make_client(service)
    lease = client.activate(KEY).lease
    assert lease is not None
    with pytest.raises(LeaseError) as refused:
        client.status(now=lease.exp + 61)
    assert refused.value.kind == "expired"
