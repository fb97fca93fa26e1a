// The client against a fake license API: what it sends, what it keeps, and what it throws, online and offline.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  Client,
  InvalidLicense,
  LeaseError,
  LicenseRevoked,
  LicenseSuspended,
  MemoryLeaseStore,
  OfflineWithValidLease,
  OfflineWithoutLease,
  RateLimited,
  SeatsFull,
  ServiceError,
} from "../dist/index.js";
import { claims, deadUrl, fakeLicenseApi, tenantKey, unixNow } from "../test-support/helpers.mjs";

async function setup(t, options = {}) {
  const api = await fakeLicenseApi();
  t.after(() => api.close());
  const store = new MemoryLeaseStore();
  const client = new Client({
    apiUrl: api.url,
    tenantId: "acme",
    productId: "myapp",
    machineId: "machine-1",
    store,
    ...options,
  });
  return { api, store, client };
}

/** The same store, seen by the app on a later start with the service down. */
async function offlineClient(store, options = {}) {
  return new Client({
    apiUrl: await deadUrl(),
    tenantId: "acme",
    productId: "myapp",
    machineId: "machine-1",
    store,
    ...options,
  });
}

const posts = (api, action) =>
  api.requests.filter((r) => r.url === `/v1/acme/licenses/${action}`).map((r) => JSON.parse(r.body));

test("activate sends the documented body, verifies the lease and keeps the key, the lease and the keys", async (t) => {
  const { api, store, client } = await setup(t);
  const answer = await client.activate("  KEY-1 ", undefined, "Jane laptop");
  assert.equal(answer.valid, true);
  assert.equal(answer.activated, true);
  assert.deepEqual(answer.entitlements, ["pro"]);
  assert.equal(answer.lease.machineId, "machine-1");
  const [sent] = posts(api, "activate");
  assert.deepEqual(Object.keys(sent).sort(), ["key", "label", "machine_id", "nonce", "product_id"]);
  assert.equal(sent.key, "KEY-1");
  assert.equal(sent.product_id, "myapp");
  assert.match(sent.nonce, /^[0-9a-f]{32}$/);
  assert.equal(answer.lease.nonce, sent.nonce);
  const state = await store.load();
  assert.equal(state.key, "KEY-1");
  assert.equal(state.lease, answer.lease.token);
  assert.deepEqual(
    state.jwks.keys.map((k) => k.kid),
    ["k1"],
  );
  assert.equal(state.status, "active");
});

test("every online call sends a fresh nonce", async (t) => {
  const { api, client } = await setup(t);
  await client.activate("KEY-1");
  await client.validate();
  await client.validate();
  const nonces = [...posts(api, "activate"), ...posts(api, "validate")].map((b) => b.nonce);
  assert.equal(new Set(nonces).size, 3);
});

test("status answers offline from the stored lease", async (t) => {
  const { store, client } = await setup(t);
  await client.activate("KEY-1");
  const offline = await offlineClient(store);
  const lease = await offline.status();
  assert.equal(lease.machineId, "machine-1");
  assert.deepEqual(lease.entitlements, ["pro"]);
  // Another machine reading a copied store gets nothing from it.
  const copied = new Client({
    apiUrl: "http://127.0.0.1:9",
    tenantId: "acme",
    productId: "myapp",
    machineId: "machine-2",
    store,
  });
  await assert.rejects(copied.status(), (e) => e instanceof LeaseError && e.kind === "wrong_machine");
  // Past its exp (and the skew), the lease no longer counts.
  await assert.rejects(offline.status(lease.expiresAt + 61), (e) => e instanceof LeaseError && e.kind === "expired");
  assert.equal((await offline.status(lease.expiresAt + 59)).token, lease.token);
});

test("validate offline: OfflineWithValidLease with the lease, or OfflineWithoutLease", async (t) => {
  const { store, client } = await setup(t);
  await client.activate("KEY-1");
  const offline = await offlineClient(store);
  await assert.rejects(offline.validate(), (error) => {
    assert.ok(error instanceof OfflineWithValidLease, String(error));
    assert.equal(error.lease.machineId, "machine-1");
    assert.ok(error.cause);
    return true;
  });
  const lease = (await store.load()).lease;
  await store.save({ ...(await store.load()), lease: `${lease.slice(0, -6)}AAAAAA` });
  await assert.rejects(offline.validate(), (error) => {
    assert.ok(error instanceof OfflineWithoutLease, String(error));
    assert.equal(error.reason.kind, "bad_signature");
    return true;
  });
  await store.save({ key: "KEY-1", lease: null, jwks: null, status: "active" });
  await assert.rejects(offline.validate(), (e) => e instanceof OfflineWithoutLease && e.reason === null);
  await assert.rejects(offline.status(), OfflineWithoutLease);
});

test("a 5xx is offline too", async (t) => {
  const { api, client } = await setup(t);
  await client.activate("KEY-1");
  api.answer = () => [503, { error: "Service temporarily unavailable" }];
  await assert.rejects(client.validate(), (e) => e instanceof OfflineWithValidLease && e.cause.statusCode === 503);
});

test("a revoked license: validate throws LicenseRevoked, forgets the lease, and status no longer answers valid", async (t) => {
  const { api, store, client } = await setup(t);
  await client.activate("KEY-1");
  api.licenses.get("KEY-1").status = "revoked";
  await assert.rejects(client.validate(), (error) => {
    assert.ok(error instanceof LicenseRevoked, String(error));
    assert.equal(error.kind, "license_revoked");
    assert.equal(error.license.valid, false);
    return true;
  });
  const state = await store.load();
  assert.equal(state.lease, null);
  assert.equal(state.key, "KEY-1");
  await assert.rejects(client.status(), LicenseRevoked);
  await assert.rejects((await offlineClient(store)).status(), LicenseRevoked);
});

test("a suspended license on activate is refused and the store stays as it was", async (t) => {
  const { api, store, client } = await setup(t);
  await client.activate("KEY-1");
  const before = await store.load();
  api.licenses.set("KEY-2", { status: "suspended", seats: new Set() });
  await assert.rejects(client.activate("KEY-2"), (e) => e instanceof LicenseSuspended && e.statusCode === 403);
  await assert.rejects(client.activate("NOPE"), (e) => e instanceof InvalidLicense && e.kind === "invalid_license");
  assert.deepEqual(await store.load(), before);
});

test("an unknown key on validate forgets the lease", async (t) => {
  const { api, store, client } = await setup(t);
  await client.activate("KEY-1");
  api.licenses.delete("KEY-1");
  await assert.rejects(client.validate(), InvalidLicense);
  assert.equal((await store.load()).lease, null);
  await assert.rejects(client.status(), InvalidLicense);
});

test("seats full, rate limits and malformed requests are typed", async (t) => {
  const { api, client } = await setup(t);
  api.limit = 0;
  await assert.rejects(client.activate("KEY-1"), (e) => e instanceof SeatsFull && e.kind === "seats_full");
  api.answer = () => [429, { error: "Too many new machines for this license; try again within the hour" }];
  await assert.rejects(client.activate("KEY-1"), (e) => e instanceof RateLimited && /hour/.test(e.message));
  api.answer = () => [400, { error: "Invalid nonce: use at most 128 printable characters" }];
  await assert.rejects(client.activate("KEY-1"), (e) => e instanceof ServiceError && e.statusCode === 400);
  await assert.rejects(client.validate(), (e) => e instanceof InvalidLicense && /activate/.test(e.message));
});

test("a replayed answer (an old nonce) is refused and nothing is stored", async (t) => {
  const { api, store, client } = await setup(t);
  await client.activate("KEY-1");
  const before = await store.load();
  const now = unixNow();
  api.answer = (action) =>
    action === "validate"
      ? [
          200,
          {
            valid: true,
            status: "active",
            product_id: "myapp",
            activations: 1,
            activated: true,
            entitlements: ["pro"],
            lease: api.key.lease(claims(now, { nonce: "an-earlier-request" })),
          },
        ]
      : undefined;
  await assert.rejects(client.validate(), (e) => e instanceof LeaseError && e.kind === "wrong_nonce");
  assert.deepEqual(await store.load(), before);
});

test("a forged answer (another key) is refused", async (t) => {
  const { api, client } = await setup(t);
  const forger = tenantKey("k1");
  api.answer = (action, request) => [
    200,
    {
      valid: true,
      status: "active",
      product_id: "myapp",
      activations: 1,
      activated: true,
      entitlements: [],
      lease: forger.lease(claims(unixNow(), { nonce: request.nonce })),
    },
  ];
  await assert.rejects(client.activate("KEY-1"), (e) => e instanceof LeaseError && e.kind === "bad_signature");
});

test("a rotated key is fetched once, then kept", async (t) => {
  const { api, store, client } = await setup(t);
  await client.activate("KEY-1");
  api.key = tenantKey("k2");
  const answer = await client.validate();
  assert.equal(answer.lease.kid, "k2");
  const jwksFetches = api.requests.filter((r) => r.url === "/v1/acme/jwks.json").length;
  assert.equal(jwksFetches, 2, "once at activation, once for the new kid");
  assert.deepEqual(
    (await store.load()).jwks.keys.map((k) => k.kid),
    ["k2"],
  );
  await client.validate();
  assert.equal(api.requests.filter((r) => r.url === "/v1/acme/jwks.json").length, 2);
  // Offline, the stored keys verify the stored lease.
  assert.equal((await (await offlineClient(store)).status()).kid, "k2");
});

test("a lease signed by a key nobody publishes is unknown_kid after one refresh", async (t) => {
  const { api, client } = await setup(t);
  const stranger = tenantKey("k-stranger");
  api.answer = (action, request) => [
    200,
    {
      valid: true,
      status: "active",
      product_id: "myapp",
      activations: 1,
      activated: true,
      entitlements: [],
      lease: stranger.lease(claims(unixNow(), { nonce: request.nonce })),
    },
  ];
  await assert.rejects(client.activate("KEY-1"), (e) => e instanceof LeaseError && e.kind === "unknown_kid");
  assert.equal(api.requests.filter((r) => r.url === "/v1/acme/jwks.json").length, 2);
});

test("pinned keys are never fetched, and never refreshed", async (t) => {
  const api = await fakeLicenseApi();
  t.after(() => api.close());
  const store = new MemoryLeaseStore();
  const client = new Client({
    apiUrl: api.url,
    tenantId: "acme",
    productId: "myapp",
    machineId: "machine-1",
    store,
    keys: JSON.stringify(api.key.jwks),
  });
  await client.activate("KEY-1");
  assert.equal((await client.status()).machineId, "machine-1");
  api.key = tenantKey("k2");
  await assert.rejects(client.validate(), (e) => e instanceof LeaseError && e.kind === "unknown_kid");
  assert.equal(api.requests.filter((r) => r.url.includes("jwks")).length, 0);
  assert.equal((await store.load()).jwks, null);
});

test("a machine without a seat: validate answers activated false and drops the lease", async (t) => {
  const { api, store, client } = await setup(t);
  await client.activate("KEY-1");
  api.licenses.get("KEY-1").seats.clear();
  const answer = await client.validate();
  assert.equal(answer.valid, true);
  assert.equal(answer.activated, false);
  assert.equal(answer.lease, null);
  assert.equal((await store.load()).lease, null);
  await assert.rejects(client.status(), OfflineWithoutLease);
});

test("activate for a machine id of the app's own makes it the client's", async (t) => {
  const { api, client } = await setup(t);
  const answer = await client.activate("KEY-1", "studio-mac");
  assert.equal(answer.lease.machineId, "studio-mac");
  assert.equal(await client.machineId(), "studio-mac");
  assert.equal((await client.status()).machineId, "studio-mac");
  assert.ok(api.licenses.get("KEY-1").seats.has("studio-mac"));
});

test("deactivate frees the seat and forgets the key and the lease", async (t) => {
  const { api, store, client } = await setup(t);
  await client.activate("KEY-1");
  assert.deepEqual(await client.deactivate(), { deactivated: true, activations: 0 });
  const state = await store.load();
  assert.equal(state.key, null);
  assert.equal(state.lease, null);
  assert.ok(state.jwks, "the public keys stay");
  assert.equal(posts(api, "deactivate")[0].machine_id, "machine-1");
  await assert.rejects(client.deactivate(), InvalidLicense);
  await assert.rejects(client.status(), OfflineWithoutLease);
});

test("the skew allowance is the client's option", async (t) => {
  const { api, store, client } = await setup(t, { skewSeconds: 0 });
  api.now = () => unixNow() + 30; // the service's clock is 30 s ahead of ours
  await assert.rejects(client.activate("KEY-1"), (e) => e instanceof LeaseError && e.kind === "not_yet_valid");
  const tolerant = new Client({ apiUrl: api.url, tenantId: "acme", productId: "myapp", machineId: "machine-1", store });
  assert.equal((await tolerant.activate("KEY-1")).valid, true);
});

test("a refused activation for another machine id leaves the client's machine id alone", async (t) => {
  const { api, client } = await setup(t);
  api.limit = 0;
  await assert.rejects(client.activate("KEY-1", "studio-mac"), SeatsFull);
  assert.equal(await client.machineId(), "machine-1");
});

test("offline with a stored lease but no keys anywhere, status cannot verify it", async (t) => {
  const { api, store, client } = await setup(t);
  await client.activate("KEY-1");
  await store.save({ ...(await store.load()), jwks: null });
  await assert.rejects((await offlineClient(store)).status(), OfflineWithoutLease);
  // With the keys pinned in the app, the same store verifies offline.
  const pinned = await offlineClient(store, { keys: api.key.jwks });
  assert.equal((await pinned.status()).machineId, "machine-1");
});
