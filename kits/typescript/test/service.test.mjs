// The kit against the real keystead service, run by the lead's Rust harness three times over one lease store:
// `online` (activate, status, update, an interrupted then resumed download), `offline` (the service is stopped),
// `revoked` (after a refund). Skipped unless KEYSTEAD_KIT_API is set.
//
// KEYSTEAD_KIT_API, KEYSTEAD_KIT_TENANT, KEYSTEAD_KIT_PRODUCT, KEYSTEAD_KIT_KEY, KEYSTEAD_KIT_STATE (a directory shared
// by the three runs), KEYSTEAD_KIT_PHASE (online | offline | revoked).

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, stat, truncate } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";

import { Client, FileLeaseStore, LicenseRevoked, OfflineWithValidLease, machineId } from "../dist/index.js";

const env = process.env;
const api = env.KEYSTEAD_KIT_API;
const phase = env.KEYSTEAD_KIT_PHASE ?? "online";

function only(name) {
  if (!api) return "KEYSTEAD_KIT_API is not set: the lead's harness runs this against the real service";
  return phase === name ? false : `this run is the ${phase} phase`;
}

function required(name) {
  const value = env[name];
  assert.ok(value, `${name} must be set`);
  return value;
}

/** The app as it starts each time: its machine id, and the lease store in the shared state directory. */
async function app() {
  const state = required("KEYSTEAD_KIT_STATE");
  const productId = required("KEYSTEAD_KIT_PRODUCT");
  const machine = await machineId(productId, { dataDir: state });
  const client = new Client({
    apiUrl: api,
    tenantId: required("KEYSTEAD_KIT_TENANT"),
    productId,
    machineId: machine,
    store: new FileLeaseStore(join(state, "typescript")),
    timeoutMs: 15_000,
  });
  return { client, machine, state, productId };
}

async function sha256Of(path) {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk);
  return hash.digest("hex");
}

test(
  "online: activate, status, an update, and a download interrupted then resumed",
  { skip: only("online") },
  async () => {
    const { client, machine, state } = await app();
    assert.match(machine, /^[0-9a-f]{64}$/);

    const answer = await client.activate(required("KEYSTEAD_KIT_KEY"), undefined, "keystead kit (TypeScript)");
    assert.equal(answer.valid, true);
    assert.equal(answer.activated, true);
    assert.equal(answer.lease.machineId, machine);

    const lease = await client.status();
    assert.equal(lease.machineId, machine);
    assert.equal(lease.status, "active");
    assert.equal(lease.tenantId, client.tenantId);

    const update = await client.checkUpdate("1.0.0", "linux", "x86_64");
    assert.ok(update, "an update from 1.0.0");
    assert.equal(update.version, "1.1.0");
    const installer = update.files.find((f) => f.kind === "installer");
    assert.ok(installer, "the release has an installer");

    const dir = join(state, "typescript-downloads");
    await mkdir(dir, { recursive: true });
    const dest = join(dir, installer.name);
    // The first attempt is cut off after its first chunk…
    const controller = new AbortController();
    await assert.rejects(
      client.download(update, dest, { signal: controller.signal, onProgress: () => controller.abort() }),
      (e) => e.name === "AbortError",
    );
    await assert.rejects(stat(dest), { code: "ENOENT" }, "nothing takes the file's name before it is verified");
    // …at a byte no later than the middle, wherever the first chunk ended.
    const half = Math.floor(installer.size / 2);
    if ((await stat(`${dest}.part`)).size > half) await truncate(`${dest}.part`, half);
    const partial = (await stat(`${dest}.part`)).size;

    const result = await client.download(update, dest);
    assert.equal(result.resumedFrom, partial);
    assert.ok(partial > 0 || installer.size < 2, "the second attempt resumed a partial file");
    assert.equal(result.size, installer.size);
    assert.equal(result.sha256, installer.sha256);
    assert.equal(await sha256Of(dest), installer.sha256);
    await assert.rejects(stat(`${dest}.part`), { code: "ENOENT" });
  },
);

test(
  "offline: status answers from the stored lease; validate is OfflineWithValidLease",
  { skip: only("offline") },
  async () => {
    const { client, machine } = await app();
    const lease = await client.status();
    assert.equal(lease.machineId, machine);
    assert.equal(lease.status, "active");
    await assert.rejects(client.validate(), (error) => {
      assert.ok(error instanceof OfflineWithValidLease, String(error));
      assert.equal(error.lease.machineId, machine);
      assert.equal(error.lease.token, lease.token);
      return true;
    });
  },
);

test(
  "revoked: validate reports the revocation and status no longer answers valid",
  { skip: only("revoked") },
  async () => {
    const { client } = await app();
    await assert.rejects(client.validate(), (error) => {
      assert.ok(error instanceof LicenseRevoked, String(error));
      assert.equal(error.kind, "license_revoked");
      return true;
    });
    await assert.rejects(client.status(), LicenseRevoked);
  },
);
