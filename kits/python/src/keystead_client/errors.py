"""The errors of the kit: one base class, one class per answer an app handles differently.

The license API's statuses and messages are turned into these in one place (`error_from_answer`), so an app
never reads a status code. Each error has a `kind`, the word keystead's kits share for it; a `LeaseError`'s kind
is the shared test vectors' name for the check that failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .lease import Lease
    from .models import License

LeaseErrorKind = Literal[
    "malformed",
    "bad_algorithm",
    "wrong_type",
    "unknown_kid",
    "bad_signature",
    "wrong_tenant",
    "wrong_product",
    "wrong_machine",
    "wrong_nonce",
    "not_yet_valid",
    "expired",
    "not_active",
    "invalid_jwks",
]


class KeysteadError(Exception):
    """Anything this kit raises. `status_code` is the service's HTTP status when it answered."""

    kind: str = "keystead"

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


class InvalidLicense(KeysteadError):
    """The key is unknown (or of another product), or there is no key to check; a bad lease is a `LeaseError`."""

    kind = "invalid_license"


class LeaseError(InvalidLicense):
    """A lease that does not verify. `kind` says which check failed (the test vectors' names).

    `expired` means the lease ran out, not the license: validate online to get a new one.
    """

    def __init__(self, kind: LeaseErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: LeaseErrorKind = kind


class _NotActive(KeysteadError):
    """The license exists but may not be used. `license` is the validate answer, when there was one."""

    def __init__(
        self, message: str, *, status_code: int | None = None, license: License | None = None
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.license = license


class LicenseExpired(_NotActive):
    """The license itself has expired (a subscription that ended, a license with an end date)."""

    kind = "license_expired"


class LicenseSuspended(_NotActive):
    """The license is suspended (for example a failed subscription payment); it may come back."""

    kind = "license_suspended"


class LicenseRevoked(_NotActive):
    """The license was revoked: refunded, disputed, or revoked by the seller."""

    kind = "license_revoked"


class SeatsFull(KeysteadError):
    """Every seat of the license is taken: deactivate another machine first."""

    kind = "seats_full"


class RateLimited(KeysteadError):
    """Too many new machines in the hour, or too many downloads in the day: try again later."""

    kind = "rate_limited"


class ServiceError(KeysteadError):
    """The service refused the request for another reason (a malformed request, a missing right)."""

    kind = "service_error"


class DownloadError(KeysteadError):
    """A download that does not verify (size or SHA-256), a patch that does not apply, a release without installer."""

    kind = "download"


class Offline(KeysteadError):
    """The service could not be reached, or answered that it is unavailable (5xx)."""

    kind = "offline"


class OfflineWithValidLease(Offline):
    """The service could not be reached, but the stored lease verifies: the app may run. `lease` is it."""

    kind = "offline_with_valid_lease"

    def __init__(self, message: str, lease: Lease) -> None:
        super().__init__(message)
        self.lease = lease


class OfflineWithoutLease(Offline):
    """The service could not be reached and there is no usable lease (none stored, or it does not verify).

    `status()` raises it too when no lease is stored: there is nothing to run offline with. `reason` is the
    `LeaseError` of a stored lease that did not verify, if that was the cause.
    """

    kind = "offline_without_lease"

    def __init__(self, message: str, reason: LeaseError | None = None) -> None:
        super().__init__(message)
        self.reason = reason


def error_from_answer(status_code: int, message: str) -> KeysteadError:
    """The error for a non-2xx answer of the license API or a feed (5xx is handled as `Offline` by the caller)."""
    lowered = message.lower()
    if status_code in (401, 404):
        return InvalidLicense(message, status_code=status_code)
    if status_code == 403:
        if "revoked" in lowered:
            return LicenseRevoked(message, status_code=status_code)
        if "suspended" in lowered:
            return LicenseSuspended(message, status_code=status_code)
        if "expired" in lowered:
            return LicenseExpired(message, status_code=status_code)
    if status_code == 409:
        return SeatsFull(message, status_code=status_code)
    if status_code == 429:
        return RateLimited(message, status_code=status_code)
    return ServiceError(message, status_code=status_code)


def error_for_status(status: str, license: License) -> KeysteadError:
    """The error for a validate answer with `valid: false`, by the license's `status`."""
    message = f"License {status}"
    if status == "revoked":
        return LicenseRevoked(message, license=license)
    if status == "suspended":
        return LicenseSuspended(message, license=license)
    if status == "expired":
        return LicenseExpired(message, license=license)
    return InvalidLicense(message)
