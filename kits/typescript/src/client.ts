/**
 * The client an app holds: the license calls (`activate`, `validate`, `deactivate`) with a fresh nonce each,
 * `status()` answered offline from the stored lease, and updates through the license-gated JSON feed.
 */

import { randomBytes } from "node:crypto";

import {
  InvalidLicense,
  type KeysteadError,
  LeaseError,
  LicenseExpired,
  LicenseRevoked,
  LicenseSuspended,
  OfflineWithValidLease,
  OfflineWithoutLease,
  ServiceError,
} from "./errors.js";
import { Unreachable, answerError, notActive, readJson, send } from "./http.js";
import { type Jwks, PublicKeys } from "./keys.js";
import { DEFAULT_SKEW_SECONDS, type Expected, type Lease, unixNow, verifyLease } from "./lease.js";
import { machineId as thisMachineId } from "./machine.js";
import { FileLeaseStore, type LeaseStore, type StoredState, emptyState } from "./store.js";
import {
  type DownloadOptions,
  type DownloadResult,
  type Release,
  downloadFile,
  installerOf,
  readFeed,
} from "./updates.js";

export interface ClientOptions {
  /** The keystead API's base URL, e.g. `https://abc123.execute-api.us-east-1.amazonaws.com`. */
  apiUrl: string;
  /** The seller's tenant id. */
  tenantId: string;
  /** This app's product id (an app sold in tiers names its base product). */
  productId: string;
  /** Other products whose leases this app accepts: tiers the seller set up as products of their own. */
  otherProducts?: string[];
  /** This machine's id; default `machineId(productId)`. */
  machineId?: string;
  /** Where the key, the lease and the keys are kept; default a `FileLeaseStore` in the app's data directory. */
  store?: LeaseStore;
  /** The tenant's JWKS shipped with the app (an object or its JSON text): then keys are never fetched. */
  keys?: Jwks | string;
  /** Clock-skew allowance for `iat` and `exp`, in seconds. */
  skewSeconds?: number;
  /** How long a request may wait for an answer, and a download for its next byte, in milliseconds. */
  timeoutMs?: number;
}

/** The license API's answer to `activate` and `validate`. */
export interface LicenseAnswer {
  valid: boolean;
  /** `active`, `suspended`, `revoked` or `expired`. */
  status: string;
  /** The license's own product (a tier's id for a tier). */
  productId: string;
  /** When the license ends (RFC 3339), or null. */
  expiresAt: string | null;
  activationLimit: number | null;
  activations: number;
  /** Whether this machine holds a seat. */
  activated: boolean | null;
  entitlements: string[];
  /** For products with a seat lease: when this machine's seat ends unless renewed (RFC 3339). */
  seatExpiresAt: string | null;
  /** The lease, verified against this very request's nonce; null when this machine holds no seat. */
  lease: Lease | null;
}

/** The answer to `deactivate`. */
export interface Deactivation {
  /** False when this machine held no seat. */
  deactivated: boolean;
  /** Seats still taken. */
  activations: number;
}

type Action = "activate" | "validate" | "deactivate";

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function count(value: unknown): number | null {
  return Number.isSafeInteger(value) ? (value as number) : null;
}

function text(value: unknown): string | null {
  return typeof value === "string" ? value : null;
}

/** The status to remember when the service refused the license itself (not the request), or null. */
function refusedStatus(error: unknown): string | null {
  if (error instanceof LicenseRevoked) return "revoked";
  if (error instanceof LicenseSuspended) return "suspended";
  if (error instanceof LicenseExpired) return "expired";
  if (error instanceof InvalidLicense && !(error instanceof LeaseError)) return "invalid";
  return null;
}

/** The error a license status other than active reads as. */
function statusError(status: string, answer: LicenseAnswer | null = null): KeysteadError {
  return (
    notActive(status, answer) ?? new InvalidLicense(status === "invalid" ? "License not found" : `License ${status}`)
  );
}

function readAnswer(
  action: Action,
  body: Record<string, unknown>,
  lease: Lease | null,
  productId: string,
): LicenseAnswer {
  if (typeof body.valid !== "boolean" || typeof body.status !== "string") {
    throw new ServiceError(`${action} answered without valid and status`, { statusCode: 200 });
  }
  return {
    valid: body.valid,
    status: body.status,
    productId: text(body.product_id) ?? productId,
    expiresAt: text(body.expires_at),
    activationLimit: count(body.activation_limit),
    activations: count(body.activations) ?? 0,
    activated: typeof body.activated === "boolean" ? body.activated : null,
    entitlements: Array.isArray(body.entitlements) ? body.entitlements.filter((e) => typeof e === "string") : [],
    seatExpiresAt: text(body.seat_expires_at),
    lease,
  };
}

export class Client {
  readonly apiUrl: string;
  readonly tenantId: string;
  readonly productId: string;
  readonly store: LeaseStore;
  readonly skewSeconds: number;
  readonly timeoutMs: number;
  private readonly otherProducts: readonly string[];
  private readonly pinnedKeys: Jwks | string | undefined;
  private machine: Promise<string> | undefined;
  private keys: PublicKeys | undefined;
  /** This client's store updates, one after another, so two calls do not lose each other's write. */
  private writes: Promise<unknown> = Promise.resolve();

  constructor(options: ClientOptions) {
    const { apiUrl, tenantId, productId } = options;
    if (!apiUrl || !tenantId || !productId) {
      throw new TypeError("new Client(...) needs apiUrl, tenantId and productId");
    }
    this.apiUrl = apiUrl.replace(/\/+$/, "");
    new URL(this.apiUrl); // a malformed URL fails here, not at the first call
    this.tenantId = tenantId;
    this.productId = productId;
    this.otherProducts = options.otherProducts ?? [];
    this.store = options.store ?? FileLeaseStore.forProduct(tenantId, productId);
    this.pinnedKeys = options.keys;
    this.skewSeconds = options.skewSeconds ?? DEFAULT_SKEW_SECONDS;
    this.timeoutMs = options.timeoutMs ?? 20_000;
    if (options.machineId !== undefined) {
      this.machine = Promise.resolve(options.machineId);
    }
  }

  /** This machine's id: the one given (to the constructor or `activate`), else `machineId(productId)`. */
  machineId(): Promise<string> {
    this.machine ??= thisMachineId(this.productId);
    return this.machine;
  }

  /**
   * Takes a seat for this machine (or `machine`, which becomes this client's machine id: pass the same to the
   * constructor next time) and stores the key and the lease, verified against this request's nonce. `label` is
   * what the seller and the buyer see for the machine (e.g. `os.hostname()`). Throws `InvalidLicense`,
   * `LicenseRevoked`/`Suspended`/`Expired`, `SeatsFull`, `RateLimited`, or an `Offline` error; a refused key
   * leaves the store as it was.
   */
  async activate(key: string, machine?: string, label?: string): Promise<LicenseAnswer> {
    const machineId = machine ?? (await this.machineId());
    const trimmed = key.trim();
    const answer = await this.licenseCall("activate", trimmed, machineId, label);
    if (answer.lease === null) {
      throw new ServiceError("activate answered without a lease", { statusCode: 200 });
    }
    this.machine = Promise.resolve(machineId);
    const lease = answer.lease.token;
    await this.update((state) => ({ ...state, key: trimmed, lease, status: answer.status }));
    return answer;
  }

  /**
   * Checks the stored key online with a fresh nonce, renews this machine's seat and stores the new lease. A license
   * that may no longer be used throws `LicenseRevoked`/`Suspended`/`Expired` (the answer as `.license`) or
   * `InvalidLicense`, and the lease is forgotten; a machine that holds no seat gets `activated: false` and no lease
   * (its stored lease is dropped). Offline: `OfflineWithValidLease` (go on with `.lease`) or `OfflineWithoutLease`.
   */
  async validate(): Promise<LicenseAnswer> {
    const key = await this.storedKey();
    let answer: LicenseAnswer;
    try {
      answer = await this.licenseCall("validate", key, await this.machineId());
    } catch (error) {
      const status = refusedStatus(error);
      if (status !== null) {
        await this.update((state) => ({ ...state, lease: null, status }));
      }
      throw error;
    }
    const lease = answer.valid ? (answer.lease?.token ?? null) : null;
    await this.update((state) => ({ ...state, lease, status: answer.status }));
    if (!answer.valid) {
      throw statusError(answer.status, answer);
    }
    return answer;
  }

  /** Gives this machine's seat back, then forgets the key and the lease (the cached public keys stay). */
  async deactivate(): Promise<Deactivation> {
    const key = await this.storedKey();
    const body = await this.post("deactivate", key, await this.machineId(), randomBytes(16).toString("hex"));
    await this.update((state) => ({ ...state, key: null, lease: null, status: null }));
    const activations = count(body.activations);
    if (typeof body.deactivated !== "boolean" || activations === null) {
      throw new ServiceError("deactivate answered without deactivated and activations", { statusCode: 200 });
    }
    return { deactivated: body.deactivated, activations };
  }

  /**
   * The stored lease, verified offline: what the license allows on this machine until `lease.expiresAt`. Throws a
   * `LeaseError` when it does not verify (`kind` says why; `expired`: validate online), the refusal the service
   * last gave (`LicenseRevoked`, …) when it took the lease back, and `OfflineWithoutLease` when none is stored.
   * Fetches the tenant's keys only when none are pinned, stored or cached, or the lease names a key they lack.
   */
  async status(now: number = unixNow()): Promise<Lease> {
    const state = await this.store.load();
    if (state?.lease == null) {
      if (state?.status != null && state.status !== "active") {
        throw statusError(state.status);
      }
      throw new OfflineWithoutLease("No lease is stored: activate this machine online");
    }
    try {
      return await this.verified(state.lease, await this.machineId(), undefined, now);
    } catch (error) {
      if (error instanceof Unreachable) {
        const why = `The public keys cannot be fetched (${error.message}) to verify the lease`;
        throw new OfflineWithoutLease(why, null, { cause: error });
      }
      throw error;
    }
  }

  /**
   * The newest release newer than `current` that this license may have, for this platform (`linux`, `darwin`,
   * `windows`), arch (`x86_64`, `aarch64`) and channel; or null.
   */
  async checkUpdate(current: string, platform: string, arch: string, channel = "stable"): Promise<Release | null> {
    const key = await this.storedKey();
    const url = new URL(`${this.productBase()}/releases`);
    url.search = new URLSearchParams({ platform, arch, channel, current }).toString();
    return this.offlineErrors(async () => {
      const response = await send(
        url,
        { headers: { "X-License-Key": key, Accept: "application/json" }, redirect: "manual" },
        this.timeoutMs,
      );
      if (response.status !== 200) {
        throw await answerError(response);
      }
      return readFeed(await readJson(response)).update;
    });
  }

  /**
   * Downloads the release's installer to `dest`, verified (size and SHA-256) before it takes that name; an
   * interrupted download leaves `dest + ".part"`, and calling again resumes it. An interruption that retries could
   * not mend throws an `Offline` error; a file that does not verify, `DownloadError` (and is deleted).
   */
  async download(release: Release, dest: string, options: DownloadOptions = {}): Promise<DownloadResult> {
    const file = installerOf(release);
    const context = {
      url: new URL(file.url, `${this.apiUrl}/`),
      licenseKey: await this.storedKey(),
      timeoutMs: this.timeoutMs,
    };
    return this.offlineErrors(() => downloadFile(file, dest, context, options));
  }

  /** The trusted keys: pinned, cached, stored, or fetched (and stored) once. */
  async publicKeys(): Promise<PublicKeys> {
    if (this.keys !== undefined) {
      return this.keys;
    }
    if (this.pinnedKeys !== undefined) {
      this.keys = await PublicKeys.fromJwks(this.pinnedKeys);
      return this.keys;
    }
    const stored = (await this.store.load())?.jwks;
    if (stored != null) {
      try {
        this.keys = await PublicKeys.fromJwks(stored);
        return this.keys;
      } catch {
        // A damaged copy: fetch a fresh one.
      }
    }
    return this.fetchKeys();
  }

  /** Fetches the tenant's JWKS and keeps it, in memory and in the store. */
  private async fetchKeys(): Promise<PublicKeys> {
    const response = await send(
      `${this.apiUrl}/v1/${encodeURIComponent(this.tenantId)}/jwks.json`,
      { headers: { Accept: "application/json" }, redirect: "manual" },
      this.timeoutMs,
    );
    if (response.status !== 200) {
      const error = await answerError(response);
      throw error instanceof Unreachable
        ? error
        : new ServiceError(`cannot fetch the public keys: ${error.message}`, { statusCode: response.status });
    }
    const keys = await PublicKeys.fromJwks(await readJson(response));
    this.keys = keys;
    await this.update((state) => ({ ...state, jwks: keys.jwks }));
    return keys;
  }

  /** Verifies a lease for `machineId`; an unknown kid refreshes the keys once (never pinned ones). */
  private async verified(token: string, machineId: string, nonce: string | undefined, now = unixNow()): Promise<Lease> {
    const expected: Expected = {
      tenantId: this.tenantId,
      productId: this.productId,
      otherProducts: this.otherProducts,
      machineId,
      ...(nonce === undefined ? {} : { nonce }),
    };
    try {
      return await verifyLease(token, await this.publicKeys(), expected, now, this.skewSeconds);
    } catch (error) {
      if (!(error instanceof LeaseError && error.kind === "unknown_kid") || this.pinnedKeys !== undefined) {
        throw error;
      }
      // Keys rotate, and a new one is published before it signs anything: one refresh settles it.
      let keys: PublicKeys;
      try {
        keys = await this.fetchKeys();
      } catch {
        throw error;
      }
      return verifyLease(token, keys, expected, now, this.skewSeconds);
    }
  }

  /** `activate` or `validate`: the answer, with its lease verified against the nonce just sent. */
  private async licenseCall(
    action: "activate" | "validate",
    key: string,
    machineId: string,
    label?: string,
  ): Promise<LicenseAnswer> {
    const nonce = randomBytes(16).toString("hex");
    const body = await this.post(action, key, machineId, nonce, label);
    const token = text(body.lease);
    const lease = token === null ? null : await this.verified(token, machineId, nonce);
    return readAnswer(action, body, lease, this.productId);
  }

  /** POSTs a license call and returns the `200`'s JSON object; any other answer is the error it stands for. */
  private async post(
    action: Action,
    key: string,
    machineId: string,
    nonce: string,
    label?: string,
  ): Promise<Record<string, unknown>> {
    const payload = {
      key,
      product_id: this.productId,
      machine_id: machineId,
      nonce,
      ...(label === undefined ? {} : { label }),
    };
    return this.offlineErrors(async () => {
      const response = await send(
        `${this.apiUrl}/v1/${encodeURIComponent(this.tenantId)}/licenses/${action}`,
        {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify(payload),
          redirect: "manual",
        },
        this.timeoutMs,
      );
      if (response.status !== 200) {
        throw await answerError(response);
      }
      const body = await readJson(response);
      if (!isRecord(body)) {
        throw new ServiceError(`${action} answered JSON that is not an object`, { statusCode: 200 });
      }
      return body;
    });
  }

  /** Runs `work`; a service that cannot be reached becomes the stored lease's verdict, as an `Offline` error. */
  private async offlineErrors<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      if (error instanceof Unreachable) {
        throw await this.offline(error);
      }
      throw error;
    }
  }

  /** The error for a service that cannot be reached: whether the stored lease lets the app run. */
  private async offline(cause: Unreachable): Promise<KeysteadError> {
    const why = cause.message;
    const token = (await this.store.load())?.lease;
    if (token == null) {
      return new OfflineWithoutLease(`The service cannot be reached (${why}) and no lease is stored`, null, { cause });
    }
    try {
      const lease = await this.verified(token, await this.machineId(), undefined);
      return new OfflineWithValidLease(`The service cannot be reached (${why}); the stored lease is valid`, lease, {
        cause,
      });
    } catch (error) {
      const reason = error instanceof LeaseError ? error : null;
      const detail = error instanceof Error ? error.message : String(error);
      return new OfflineWithoutLease(
        `The service cannot be reached (${why}) and the stored lease does not verify: ${detail}`,
        reason,
        { cause },
      );
    }
  }

  private async storedKey(): Promise<string> {
    const key = (await this.store.load())?.key;
    if (key == null) {
      throw new InvalidLicense("No license key: activate this machine first");
    }
    return key;
  }

  private productBase(): string {
    return `${this.apiUrl}/v1/${encodeURIComponent(this.tenantId)}/products/${encodeURIComponent(this.productId)}`;
  }

  /** Loads, changes and saves the stored state, one change at a time. */
  private update(change: (state: StoredState) => StoredState): Promise<void> {
    const next = this.writes.then(async () => {
      const state = (await this.store.load()) ?? emptyState();
      await this.store.save(change(state));
    });
    this.writes = next.catch(() => undefined);
    return next;
  }
}
