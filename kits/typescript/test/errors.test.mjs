// The typed errors: their kinds and classes, and which answer of the service becomes which.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  DownloadError,
  InvalidLicense,
  KeysteadError,
  LeaseError,
  LicenseExpired,
  LicenseRevoked,
  LicenseSuspended,
  Offline,
  OfflineWithValidLease,
  OfflineWithoutLease,
  RateLimited,
  SeatsFull,
  ServiceError,
} from "../dist/index.js";
import { Unreachable, answerError } from "../dist/http.js";

test("every error is a KeysteadError with a kind and its class name", () => {
  const lease = { token: "t" };
  const cases = [
    [new InvalidLicense(), "invalid_license"],
    [new LeaseError("wrong_machine", "m"), "wrong_machine"],
    [new LicenseExpired(), "license_expired"],
    [new LicenseSuspended(), "license_suspended"],
    [new LicenseRevoked(), "license_revoked"],
    [new SeatsFull(), "seats_full"],
    [new RateLimited(), "rate_limited"],
    [new ServiceError("x"), "service_error"],
    [new DownloadError("x"), "download"],
    [new OfflineWithValidLease("x", lease), "offline_with_valid_lease"],
    [new OfflineWithoutLease("x"), "offline_without_lease"],
  ];
  for (const [error, kind] of cases) {
    assert.ok(error instanceof KeysteadError && error instanceof Error);
    assert.equal(error.kind, kind);
    assert.equal(error.name, error.constructor.name);
  }
  assert.ok(new LeaseError("expired", "e") instanceof InvalidLicense, "a bad lease is an invalid license");
  assert.ok(new OfflineWithValidLease("x", lease) instanceof Offline);
  assert.ok(new OfflineWithoutLease("x") instanceof Offline);
  assert.equal(new OfflineWithValidLease("x", lease).lease, lease);
  assert.equal(new LicenseRevoked("License revoked", { valid: false, status: "revoked" }).license.status, "revoked");
});

const answer = (status, error) =>
  new Response(JSON.stringify({ error }), { status, headers: { "content-type": "application/json" } });

test("the service's answers become the documented errors", async () => {
  const cases = [
    [404, "License not found", InvalidLicense],
    [401, "Missing license key", InvalidLicense],
    [403, "License revoked", LicenseRevoked],
    [403, "License suspended", LicenseSuspended],
    [403, "License expired", LicenseExpired],
    [403, "License expired before this release", ServiceError],
    [403, "License lacks an entitlement this release requires", ServiceError],
    [409, "Activation limit reached", SeatsFull],
    [429, "Too many new machines for this license; try again within the hour", RateLimited],
    [400, "Missing required field 'product_id'", ServiceError],
    [404, "Unknown version", ServiceError],
    [503, "Service unavailable", Unreachable],
    [500, "Internal error", Unreachable],
  ];
  for (const [status, message, type] of cases) {
    const error = await answerError(answer(status, message));
    assert.ok(error instanceof type, `${status} ${message}: ${error}`);
    assert.equal(error.statusCode, status);
    if (!(error instanceof Unreachable)) assert.match(error.message, new RegExp(message.replace(/[()]/g, ".")));
  }
  const plain = await answerError(new Response("<html>", { status: 502 }));
  assert.ok(plain instanceof Unreachable);
});
