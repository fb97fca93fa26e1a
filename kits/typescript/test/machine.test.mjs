// The machine id: stable, per product, and never the OS id itself.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";

import { machineId } from "../dist/index.js";
import { fallbackMachineId, hashMachineId, osMachineId } from "../dist/machine.js";
import { tempDir } from "../test-support/helpers.mjs";

test("the machine id is stable, per product, and a hash", async (t) => {
  const { dir, remove } = await tempDir();
  t.after(remove);
  const first = await machineId("myapp", { dataDir: dir });
  assert.match(first, /^[0-9a-f]{64}$/);
  assert.equal(await machineId("myapp", { dataDir: dir }), first);
  assert.notEqual(await machineId("otherapp", { dataDir: dir }), first);
  const raw = await osMachineId();
  if (raw !== null) {
    assert.ok(!first.includes(raw.toLowerCase()), "the OS id is not sent as it is");
    assert.equal(first, createHash("sha256").update(`myapp:${raw}`).digest("hex"));
  }
});

test("on Linux the OS id is /etc/machine-id (or D-Bus's)", { skip: process.platform !== "linux" }, async () => {
  const read = (path) =>
    readFile(path, "utf8").then(
      (s) => s.trim() || null,
      () => null,
    );
  const expected = (await read("/etc/machine-id")) ?? (await read("/var/lib/dbus/machine-id"));
  assert.equal(await osMachineId(), expected);
});

test("without an OS id, a random id is made once and kept", async (t) => {
  const { dir, remove } = await tempDir();
  t.after(remove);
  const first = await fallbackMachineId(join(dir, "keystead"));
  assert.match(first, /^[0-9a-f]{32}$/);
  assert.equal(await fallbackMachineId(join(dir, "keystead")), first);
  const [a, b] = await Promise.all([fallbackMachineId(join(dir, "race")), fallbackMachineId(join(dir, "race"))]);
  assert.equal(a, b);
  assert.equal(hashMachineId("myapp", first), createHash("sha256").update(`myapp:${first}`).digest("hex"));
});
