/**
 * Every error the kit throws: one class per answer an app handles differently, each with a `kind` (the words
 * keystead's kits share; a lease error's kind is the shared test vectors' name). Statuses and messages of the
 * service become these in one place (`http.ts`), so an app never reads a status code.
 */

import type { Lease } from "./lease.js";

/** What a refused-license error may carry: the service's status code, the answer, the cause. */
export interface KeysteadErrorOptions extends ErrorOptions {
  statusCode?: number;
}

/** The base class: everything this package throws is one. `statusCode` is the service's HTTP status, if it answered. */
export class KeysteadError extends Error {
  readonly kind: string;
  readonly statusCode: number | null;

  constructor(kind: string, message: string, options: KeysteadErrorOptions = {}) {
    super(message, options.cause === undefined ? {} : { cause: options.cause });
    this.kind = kind;
    this.statusCode = options.statusCode ?? null;
    this.name = new.target.name;
  }
}

/**
 * The key is unknown, or of another seller or product (`404`; the feeds' `401`), or no key is stored. A lease that
 * does not verify is a `LeaseError`, a kind of `InvalidLicense`.
 */
export class InvalidLicense extends KeysteadError {
  constructor(message = "License not found", options: KeysteadErrorOptions = {}) {
    super("invalid_license", message, options);
  }
}

/** Why a lease, or a key set, was refused: one kind per check, in the words of the shared test vectors. */
export type LeaseErrorKind =
  | "malformed"
  | "bad_algorithm"
  | "wrong_type"
  | "unknown_kid"
  | "bad_signature"
  | "wrong_tenant"
  | "wrong_product"
  | "wrong_machine"
  | "wrong_nonce"
  | "not_yet_valid"
  | "expired"
  | "not_active"
  | "invalid_jwks";

/**
 * A lease that does not verify; `kind` says which check failed. `expired` means the lease ran out, not the license:
 * `validate()` online for a new one. `unknown_kid` survived a refresh of the keys.
 */
export class LeaseError extends InvalidLicense {
  declare readonly kind: LeaseErrorKind;

  constructor(kind: LeaseErrorKind, message: string, options: KeysteadErrorOptions = {}) {
    super(message, options);
    (this as { kind: string }).kind = kind;
  }
}

/** The parts of a license answer a refusal carries (the full type is `LicenseAnswer`). */
export interface RefusedLicense {
  valid: boolean;
  status: string;
}

/** A license that exists but may not be used; `license` is the `validate` answer when there was one. */
abstract class NotActive extends KeysteadError {
  readonly license: RefusedLicense | null;

  constructor(kind: string, message: string, license: RefusedLicense | null, options: KeysteadErrorOptions) {
    super(kind, message, options);
    this.license = license;
  }
}

/** The license itself has expired (a subscription that ended, a license with an end date). */
export class LicenseExpired extends NotActive {
  constructor(message = "License expired", license: RefusedLicense | null = null, options: KeysteadErrorOptions = {}) {
    super("license_expired", message, license, options);
  }
}

/** The license is suspended (for example a failed subscription payment); it may come back. */
export class LicenseSuspended extends NotActive {
  constructor(
    message = "License suspended",
    license: RefusedLicense | null = null,
    options: KeysteadErrorOptions = {},
  ) {
    super("license_suspended", message, license, options);
  }
}

/** The license was revoked: refunded, disputed, or revoked by the seller. */
export class LicenseRevoked extends NotActive {
  constructor(message = "License revoked", license: RefusedLicense | null = null, options: KeysteadErrorOptions = {}) {
    super("license_revoked", message, license, options);
  }
}

/** Every seat of the license is taken: deactivate another machine first (`409`). */
export class SeatsFull extends KeysteadError {
  constructor(message = "Activation limit reached", options: KeysteadErrorOptions = {}) {
    super("seats_full", message, options);
  }
}

/** Too many new machines in the hour, or too many downloads in the day: try again later (`429`). */
export class RateLimited extends KeysteadError {
  constructor(message = "Too many requests", options: KeysteadErrorOptions = {}) {
    super("rate_limited", message, options);
  }
}

/**
 * The service refused the request for another reason: a malformed request (`400`), a release this license may not
 * have (`403` "License lacks an entitlement this release requires", …), an unknown release (`404`), or an answer
 * outside keystead's HTTP contract.
 */
export class ServiceError extends KeysteadError {
  constructor(message: string, options: KeysteadErrorOptions = {}) {
    super("service_error", message, options);
  }
}

/** A download that does not verify (size or SHA-256: the file was deleted), or a release without an installer. */
export class DownloadError extends KeysteadError {
  constructor(message: string, options: KeysteadErrorOptions = {}) {
    super("download", message, options);
  }
}

/** The service could not be reached, timed out, or answered that it is unavailable (`5xx`). */
export abstract class Offline extends KeysteadError {}

/** The service could not be reached, but the stored lease verifies: the app may run. `lease` is it. */
export class OfflineWithValidLease extends Offline {
  readonly lease: Lease;

  constructor(message: string, lease: Lease, options: KeysteadErrorOptions = {}) {
    super("offline_with_valid_lease", message, options);
    this.lease = lease;
  }
}

/**
 * The service could not be reached and there is no usable lease (none stored, or it does not verify: `reason`).
 * `status()` throws it too when no lease is stored: there is nothing to run offline with.
 */
export class OfflineWithoutLease extends Offline {
  readonly reason: LeaseError | null;

  constructor(message: string, reason: LeaseError | null = null, options: KeysteadErrorOptions = {}) {
    super("offline_without_lease", message, options);
    this.reason = reason;
  }
}
