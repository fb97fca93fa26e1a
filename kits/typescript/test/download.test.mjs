// Updates: the JSON feed, and downloads through the service's 303 to a presigned URL, resumed with Range and
// verified before the file takes its name. The "bucket" is a second handler of a local server.

import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFile, readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";

import {
  Client,
  DownloadError,
  InvalidLicense,
  MemoryLeaseStore,
  OfflineWithoutLease,
  ServiceError,
} from "../dist/index.js";
import { json, startServer, tempDir } from "../test-support/helpers.mjs";

const FILE = randomBytes(300_000);
const SHA256 = createHash("sha256").update(FILE).digest("hex");

/**
 * The service and the bucket. `bucket.interruptFirst`: the first bucket request sends half the file and breaks off.
 * `bucket.expired`: presigned URLs of these numbers answer 403. `bucket.ignoreRange`: answer 200 to a Range.
 */
async function fakeFeed(t, { sha256 = SHA256 } = {}) {
  const bucket = { interruptFirst: false, expired: new Set(), ignoreRange: false, presigned: 0, stall: false };
  const server = await startServer((req, res) => {
    const url = new URL(req.url, "http://x");
    if (url.pathname.startsWith("/v1/")) {
      if (req.headers["x-license-key"] !== "KEY-1") return json(res, 401, { error: "Missing or unknown license key" });
      if (url.pathname === "/v1/acme/products/myapp/releases") {
        const q = url.searchParams;
        const release = {
          version: "1.1.0",
          build: "1.1.0",
          channel: "stable",
          platform: q.get("platform"),
          arch: q.get("arch"),
          notes: "Faster.",
          min_os: null,
          critical: false,
          entitlements: [],
          created_at: "2027-01-01T00:00:00Z",
          published_at: "2027-01-01T00:00:00Z",
          files: [
            {
              name: "app.bin.blockmap",
              url: "/v1/acme/products/myapp/releases/1.1.0/app.bin.blockmap",
              size: 1,
              sha256: "00",
              sha512: "",
              kind: "blockmap",
            },
            {
              name: "app.bin",
              url: "/v1/acme/products/myapp/releases/1.1.0/app.bin",
              size: FILE.length,
              sha256,
              sha512: "x",
              kind: "installer",
            },
          ],
          patches: [
            {
              name: "app.bin.from-1.0.0.patch",
              url: "/p",
              size: 10,
              sha256: "AB",
              sha512: "",
              from_version: "1.0.0",
              from_sha256: "CD",
              target: "app.bin",
              format: "zstd-ref-prefix",
            },
          ],
        };
        const newer = q.get("current") === "1.0.0";
        return json(res, 200, {
          product_id: "myapp",
          channel: q.get("channel"),
          releases: newer ? [release] : [],
          update: newer ? release : null,
        });
      }
      if (url.pathname === "/v1/acme/products/myapp/releases/1.1.0/app.bin") {
        bucket.presigned += 1;
        res.writeHead(303, { location: `/bucket/app.bin?X-Amz-Signature=${bucket.presigned}` });
        return res.end();
      }
      return json(res, 404, { error: "Unknown file" });
    }
    if (url.pathname === "/bucket/app.bin") {
      assert.equal(req.headers["x-license-key"], undefined, "the license key never reaches the bucket");
      assert.equal(req.headers.authorization, undefined);
      if (bucket.expired.has(Number(url.searchParams.get("X-Amz-Signature")))) {
        res.writeHead(403, { "content-type": "application/xml" });
        return res.end("<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>");
      }
      const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
      if (bucket.interruptFirst) {
        bucket.interruptFirst = false;
        res.writeHead(200, { "content-length": FILE.length });
        res.write(FILE.subarray(0, FILE.length / 2));
        return new Promise((resolve) =>
          setTimeout(() => {
            res.socket.destroy();
            resolve();
          }, 50),
        );
      }
      if (bucket.stall) {
        res.writeHead(200, { "content-length": FILE.length });
        res.write(FILE.subarray(0, 1000));
        return new Promise(() => {}); // never another byte
      }
      if (range && !bucket.ignoreRange) {
        const start = Number(range[1]);
        if (start >= FILE.length) {
          res.writeHead(416, { "content-range": `bytes */${FILE.length}` });
          return res.end();
        }
        res.writeHead(206, {
          "content-range": `bytes ${start}-${FILE.length - 1}/${FILE.length}`,
          "content-length": FILE.length - start,
        });
        return res.end(FILE.subarray(start));
      }
      res.writeHead(200, { "content-length": FILE.length });
      return res.end(FILE);
    }
    return json(res, 404, { error: "Not found" });
  });
  t.after(async () => {
    await server.close();
    assert.deepEqual(server.errors, [], "the fake service saw what it should not have");
  });
  const client = new Client({
    apiUrl: server.url,
    tenantId: "acme",
    productId: "myapp",
    machineId: "machine-1",
    timeoutMs: 2000,
    store: new MemoryLeaseStore({ key: "KEY-1", lease: null, jwks: null, status: "active" }),
  });
  const { dir, remove } = await tempDir();
  t.after(remove);
  const bucketRequests = () => server.requests.filter((r) => r.url.startsWith("/bucket/"));
  return { server, bucket, client, dir, bucketRequests };
}

test("checkUpdate asks the JSON feed with the key and gives the update in the kit's shape", async (t) => {
  const { server, client } = await fakeFeed(t);
  const update = await client.checkUpdate("1.0.0", "linux", "x86_64");
  assert.equal(update.version, "1.1.0");
  assert.equal(update.platform, "linux");
  assert.equal(update.publishedAt, "2027-01-01T00:00:00Z");
  assert.equal(update.files[1].kind, "installer");
  assert.equal(update.patches[0].fromVersion, "1.0.0");
  assert.equal(update.patches[0].fromSha256, "cd");
  const [asked] = server.requests;
  assert.equal(asked.url, "/v1/acme/products/myapp/releases?platform=linux&arch=x86_64&channel=stable&current=1.0.0");
  assert.equal(asked.headers["x-license-key"], "KEY-1");
  assert.equal(await client.checkUpdate("1.1.0", "linux", "x86_64", "beta"), null);
  assert.match(server.requests[1].url, /channel=beta/);
});

test("checkUpdate without a key, or with one the feed does not know", async (t) => {
  const { server } = await fakeFeed(t);
  const empty = new Client({
    apiUrl: server.url,
    tenantId: "acme",
    productId: "myapp",
    machineId: "m",
    store: new MemoryLeaseStore(),
  });
  await assert.rejects(empty.checkUpdate("1.0.0", "linux", "x86_64"), InvalidLicense);
  const wrong = new Client({
    apiUrl: server.url,
    tenantId: "acme",
    productId: "myapp",
    machineId: "m",
    store: new MemoryLeaseStore({ key: "KEY-2", lease: null, jwks: null, status: null }),
  });
  await assert.rejects(
    wrong.checkUpdate("1.0.0", "linux", "x86_64"),
    (e) => e instanceof InvalidLicense && e.statusCode === 401,
  );
});

test("a download follows the 303 without the key, and is verified before it takes its name", async (t) => {
  const { client, dir, bucketRequests } = await fakeFeed(t);
  const release = await client.checkUpdate("1.0.0", "linux", "x86_64");
  const dest = join(dir, "app.bin");
  const progress = [];
  const result = await client.download(release, dest, {
    onProgress: (received, total) => progress.push([received, total]),
  });
  assert.deepEqual(result, { path: dest, size: FILE.length, sha256: SHA256, resumedFrom: 0 });
  assert.ok((await readFile(dest)).equals(FILE));
  assert.deepEqual(await readdir(dir), ["app.bin"]);
  assert.deepEqual(progress.at(-1), [FILE.length, FILE.length]);
  assert.equal(bucketRequests().length, 1);
});

test("an interrupted transfer resumes with Range within the same download", async (t) => {
  const { bucket, client, dir, bucketRequests } = await fakeFeed(t);
  bucket.interruptFirst = true;
  const release = await client.checkUpdate("1.0.0", "linux", "x86_64");
  const dest = join(dir, "app.bin");
  const result = await client.download(release, dest);
  assert.equal(result.sha256, SHA256);
  assert.ok((await readFile(dest)).equals(FILE));
  const [first, second] = bucketRequests();
  assert.equal(first.headers.range, undefined);
  assert.equal(second.headers.range, `bytes=${FILE.length / 2}-`);
  assert.deepEqual(await readdir(dir), ["app.bin"]);
});

test("an aborted download leaves a partial file that the next download resumes", async (t) => {
  const { client, dir, bucketRequests } = await fakeFeed(t);
  const release = await client.checkUpdate("1.0.0", "linux", "x86_64");
  const dest = join(dir, "app.bin");
  const controller = new AbortController();
  await assert.rejects(
    client.download(release, dest, { signal: controller.signal, onProgress: () => controller.abort() }),
    (e) => e.name === "AbortError",
  );
  await assert.rejects(stat(dest), { code: "ENOENT" });
  // Wherever the first attempt stopped, cut the partial file at a byte of our choosing.
  const cut = 123_457;
  await writeFile(`${dest}.part`, FILE.subarray(0, cut));
  const result = await client.download(release, dest);
  assert.equal(result.resumedFrom, cut);
  assert.equal(bucketRequests().at(-1).headers.range, `bytes=${cut}-`);
  assert.ok((await readFile(dest)).equals(FILE));
});

test("an expired presigned URL (S3's 403) asks the service for a fresh one", async (t) => {
  const { server, bucket, client, dir } = await fakeFeed(t);
  bucket.expired = new Set([1]);
  const release = await client.checkUpdate("1.0.0", "linux", "x86_64");
  const dest = join(dir, "app.bin");
  await writeFile(`${dest}.part`, FILE.subarray(0, 1000));
  const result = await client.download(release, dest);
  assert.equal(result.sha256, SHA256);
  assert.equal(bucket.presigned, 2);
  const service = server.requests.filter((r) => r.url.endsWith("/releases/1.1.0/app.bin"));
  assert.ok(service.every((r) => r.headers["x-license-key"] === "KEY-1"));
});

test("a bucket that ignores Range gives the whole file, which replaces the partial one", async (t) => {
  const { bucket, client, dir } = await fakeFeed(t);
  bucket.ignoreRange = true;
  const release = await client.checkUpdate("1.0.0", "linux", "x86_64");
  const dest = join(dir, "app.bin");
  await writeFile(`${dest}.part`, Buffer.alloc(5000, 7)); // not even the right bytes
  await client.download(release, dest);
  assert.ok((await readFile(dest)).equals(FILE));
});

test("a file that does not match the release is deleted, never renamed", async (t) => {
  const { client, dir } = await fakeFeed(t, { sha256: "0".repeat(64) });
  const release = await client.checkUpdate("1.0.0", "linux", "x86_64");
  const dest = join(dir, "app.bin");
  await assert.rejects(client.download(release, dest), (e) => e instanceof DownloadError && /SHA-256/.test(e.message));
  assert.deepEqual(await readdir(dir), []);
  // A partial file longer than the release's file is not trusted either.
  await writeFile(`${dest}.part`, Buffer.concat([FILE, Buffer.from("extra")]));
  await assert.rejects(client.download(release, dest), DownloadError);
  assert.deepEqual(await readdir(dir), []);
});

test("a stalled transfer gives up as offline, keeping what arrived", async (t) => {
  const { bucket, client, dir } = await fakeFeed(t);
  const release = await client.checkUpdate("1.0.0", "linux", "x86_64");
  bucket.stall = true;
  const dest = join(dir, "app.bin");
  const fast = new Client({
    apiUrl: client.apiUrl,
    tenantId: "acme",
    productId: "myapp",
    machineId: "machine-1",
    timeoutMs: 200,
    store: client.store,
  });
  await assert.rejects(fast.download(release, dest), OfflineWithoutLease);
  assert.equal((await stat(`${dest}.part`)).size, 1000);
  bucket.stall = false;
  assert.equal((await fast.download(release, dest)).resumedFrom, 1000);
});

test("a release without an installer, or an unknown file, is an error", async (t) => {
  const { client, dir } = await fakeFeed(t);
  const release = await client.checkUpdate("1.0.0", "linux", "x86_64");
  await assert.rejects(client.download({ ...release, files: [release.files[0]] }, join(dir, "x")), DownloadError);
  const gone = { ...release, files: [{ ...release.files[1], url: "/v1/acme/products/myapp/releases/9.9.9/app.bin" }] };
  await assert.rejects(client.download(gone, join(dir, "x")), (e) => e instanceof ServiceError && e.statusCode === 404);
});
