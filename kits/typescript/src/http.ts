/**
 * Talking to keystead over HTTP with the global `fetch`: the one place that turns a network failure or a status
 * into the kit's typed errors, so the license calls, the feed and downloads agree on what each answer means.
 */

import {
  InvalidLicense,
  type KeysteadError,
  LicenseExpired,
  LicenseRevoked,
  LicenseSuspended,
  type RefusedLicense,
  RateLimited,
  SeatsFull,
  ServiceError,
} from "./errors.js";

/**
 * The service could not be reached, timed out, broke off, or answered `5xx`. Never thrown to the app: the client
 * turns it into `OfflineWithValidLease` or `OfflineWithoutLease`, with this as the `cause`.
 */
export class Unreachable extends Error {
  constructor(
    message: string,
    readonly statusCode: number | null = null,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "Unreachable";
  }
}

/** Sends a request; a network failure or a timeout becomes `Unreachable` (the caller's own abort stays an abort). */
export async function send(url: string | URL, init: RequestInit, timeoutMs: number): Promise<Response> {
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = init.signal ? AbortSignal.any([init.signal, timeout]) : timeout;
  try {
    return await fetch(url, { ...init, signal });
  } catch (error) {
    init.signal?.throwIfAborted();
    const why = timeout.aborted ? `no answer within ${timeoutMs} ms` : "the service could not be reached";
    throw new Unreachable(`${why} (${new URL(url).origin})`, null, { cause: error });
  }
}

/** The JSON body of a `200`, or `ServiceError`. */
export async function readJson(response: Response): Promise<unknown> {
  try {
    return await response.json();
  } catch (error) {
    throw new ServiceError(`the answer (${response.status}) is not JSON`, {
      statusCode: response.status,
      cause: error,
    });
  }
}

/** The `error` message of a `{"error": "..."}` body, or `HTTP <status>`. */
async function errorMessage(response: Response): Promise<string> {
  const text = await response.text().catch(() => "");
  try {
    const body: unknown = JSON.parse(text);
    if (typeof body === "object" && body !== null && typeof (body as { error?: unknown }).error === "string") {
      return (body as { error: string }).error;
    }
  } catch {
    // Not JSON: the status says enough.
  }
  return `HTTP ${response.status}`;
}

/**
 * The error for a license that may not be used, from the `status` a validate answer reports (`revoked`, …) or a
 * `403`'s message (`License revoked`, …); null for anything else.
 */
export function notActive(
  statusOrMessage: string,
  license: RefusedLicense | null = null,
  statusCode?: number,
): KeysteadError | null {
  const word = statusOrMessage.toLowerCase().replace(/^license /, "");
  const message = statusOrMessage.startsWith("License ") ? statusOrMessage : `License ${statusOrMessage}`;
  const options = statusCode === undefined ? {} : { statusCode };
  switch (word) {
    case "revoked":
      return new LicenseRevoked(message, license, options);
    case "suspended":
      return new LicenseSuspended(message, license, options);
    case "expired":
      return new LicenseExpired(message, license, options);
    default:
      return null;
  }
}

/** The error for an answer that is not a success, by the statuses of the license API and the feeds. */
export async function answerError(response: Response): Promise<KeysteadError | Unreachable> {
  const statusCode = response.status;
  const message = await errorMessage(response);
  switch (statusCode) {
    case 401:
      // The feeds: a missing or unknown key.
      return new InvalidLicense(message, { statusCode });
    case 404:
      // The license API: an unknown key, or another product's. The feeds: an unknown product, version or file.
      return message === "License not found"
        ? new InvalidLicense(message, { statusCode })
        : new ServiceError(message, { statusCode });
    case 403:
      return notActive(message, null, statusCode) ?? new ServiceError(message, { statusCode });
    case 409:
      return new SeatsFull(message, { statusCode });
    case 429:
      return new RateLimited(message, { statusCode });
    default:
      return statusCode >= 500
        ? new Unreachable(`the service answered ${statusCode}: ${message}`, statusCode)
        : new ServiceError(`${message} (HTTP ${statusCode})`, { statusCode });
  }
}
