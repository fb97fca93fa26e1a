"""keystead's Python app kit: license checks, signed offline leases and license-gated updates.

from keystead_client import Client
client = Client("https://api.example.com", "acme", "myapp")
client.activate("MYAPP-...")   # online, once per machine
lease = client.status()        # offline, every start
"""

from .client import Client
from .errors import (
    DownloadError,
    InvalidLicense,
    KeysteadError,
    LeaseError,
    LeaseErrorKind,
    LicenseExpired,
    LicenseRevoked,
    LicenseSuspended,
    Offline,
    OfflineWithoutLease,
    OfflineWithValidLease,
    RateLimited,
    SeatsFull,
    ServiceError,
)
from .lease import Lease, PublicKeys, verify_lease
from .machine import machine_id
from .models import License, Patch, Release, ReleaseFile
from .store import FileLeaseStore, KeyedLeaseStore, LeaseStore, MemoryLeaseStore, data_dir
from .updates import apply_patch, sha256_file

__version__ = "0.1.0"

__all__ = [
    "Client",
    "DownloadError",
    "FileLeaseStore",
    "InvalidLicense",
    "KeyedLeaseStore",
    "KeysteadError",
    "Lease",
    "LeaseError",
    "LeaseErrorKind",
    "LeaseStore",
    "License",
    "LicenseExpired",
    "LicenseRevoked",
    "LicenseSuspended",
    "MemoryLeaseStore",
    "Offline",
    "OfflineWithValidLease",
    "OfflineWithoutLease",
    "Patch",
    "PublicKeys",
    "RateLimited",
    "Release",
    "ReleaseFile",
    "SeatsFull",
    "ServiceError",
    "apply_patch",
    "data_dir",
    "machine_id",
    "sha256_file",
    "verify_lease",
]
