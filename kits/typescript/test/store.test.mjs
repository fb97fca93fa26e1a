// The lease store: what it writes, where, and how it survives damage.

import assert from "node:assert/strict";
import { readFile, readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";

import { FileLeaseStore, MemoryLeaseStore, dataHome, defaultStoreDir } from "../dist/index.js";
import { tempDir } from "../test-support/helpers.mjs";

const state = {
  key: "MYAPP-W5MNA-88HHJ",
  lease: "a.b.c",
  jwks: { keys: [{ kty: "OKP", crv: "Ed25519", kid: "k1", x: "x" }] },
  status: "active",
};

test("a file store keeps the state in <dir>/lease.json, for this user only", async (t) => {
  const { dir, remove } = await tempDir();
  t.after(remove);
  const store = new FileLeaseStore(join(dir, "app"));
  assert.equal(store.path, join(dir, "app", "lease.json"));
  assert.equal(await store.load(), null);
  await store.save(state);
  assert.deepEqual(await store.load(), state);
  assert.deepEqual(await readdir(join(dir, "app")), ["lease.json"], "no temporary file is left behind");
  const document = JSON.parse(await readFile(store.path, "utf8"));
  assert.equal(document.format, "keystead-lease-store/1");
  if (process.platform !== "win32") {
    assert.equal((await stat(store.path)).mode & 0o777, 0o600);
    assert.equal((await stat(join(dir, "app"))).mode & 0o777, 0o700);
  }
  await store.save({ ...state, lease: null });
  assert.equal((await store.load()).lease, null);
  await store.clear();
  assert.equal(await store.load(), null);
  await store.clear();
});

test("a damaged store file reads as no state", async (t) => {
  const { dir, remove } = await tempDir();
  t.after(remove);
  const store = new FileLeaseStore(dir);
  await writeFile(store.path, "{not json");
  assert.equal(await store.load(), null);
  await writeFile(store.path, JSON.stringify({ key: 42, lease: "t", jwks: "nope" }));
  assert.deepEqual(await store.load(), { key: null, lease: "t", jwks: null, status: null });
});

test("the default store is in the platform's data directory, per tenant and product", () => {
  const dir = defaultStoreDir("acme", "myapp");
  assert.equal(dir, join(dataHome(), "acme", "myapp"));
  assert.equal(FileLeaseStore.forProduct("acme", "myapp").path, join(dir, "lease.json"));
  for (const bad of ["..", ".", "", "a/b", "a\\b"]) {
    assert.throws(() => defaultStoreDir(bad, "myapp"), TypeError);
    assert.throws(() => defaultStoreDir("acme", bad), TypeError);
  }
});

test("XDG_DATA_HOME is honoured on Linux, and ignored when relative", { skip: process.platform !== "linux" }, () => {
  const saved = process.env.XDG_DATA_HOME;
  try {
    process.env.XDG_DATA_HOME = "/srv/data";
    assert.equal(defaultStoreDir("acme", "myapp"), "/srv/data/acme/myapp");
    process.env.XDG_DATA_HOME = "relative/data";
    assert.ok(dataHome().endsWith(join(".local", "share")));
  } finally {
    if (saved === undefined) delete process.env.XDG_DATA_HOME;
    else process.env.XDG_DATA_HOME = saved;
  }
});

test("a memory store hands out copies", async () => {
  const store = new MemoryLeaseStore(state);
  const loaded = await store.load();
  loaded.key = "changed";
  assert.equal((await store.load()).key, state.key);
  await store.clear();
  assert.equal(await store.load(), null);
});
