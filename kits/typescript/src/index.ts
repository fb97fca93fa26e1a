/**
 * keystead's app kit for Node and Electron's main process: license activation with signed leases that verify
 * offline, and updates through the license-gated JSON feed. No runtime dependencies: WebCrypto and fetch.
 */

export { Client, type ClientOptions, type Deactivation, type LicenseAnswer } from "./client.js";
export {
  DownloadError,
  InvalidLicense,
  KeysteadError,
  type KeysteadErrorOptions,
  LeaseError,
  type LeaseErrorKind,
  LicenseExpired,
  LicenseRevoked,
  LicenseSuspended,
  Offline,
  OfflineWithValidLease,
  OfflineWithoutLease,
  RateLimited,
  type RefusedLicense,
  SeatsFull,
  ServiceError,
} from "./errors.js";
export { type Jwk, type Jwks, PublicKeys } from "./keys.js";
export {
  DEFAULT_SKEW_SECONDS,
  type Expected,
  LEASE_ALG,
  LEASE_TYP,
  type Lease,
  type LeaseClaims,
  unixNow,
  verifyLease,
} from "./lease.js";
export { type MachineIdOptions, machineId } from "./machine.js";
export {
  FileLeaseStore,
  type LeaseStore,
  MemoryLeaseStore,
  type StoredState,
  dataHome,
  defaultStoreDir,
} from "./store.js";
export {
  type DownloadOptions,
  type DownloadResult,
  type Release,
  type ReleaseFeed,
  type ReleaseFile,
  type ReleasePatch,
} from "./updates.js";
