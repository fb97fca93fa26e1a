// Shared test helpers: a local HTTP server, and a tenant signing key that signs leases as keystead does.

import { createPrivateKey, generateKeyPairSync, sign } from "node:crypto";
import { createServer } from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Starts an HTTP server on 127.0.0.1 with `handler(req, res, body)`; `url` is its base, `requests` what it saw,
 * `errors` what the handler threw (an assertion in a handler answers 500, so tests check `errors` too).
 */
export async function startServer(handler) {
  const requests = [];
  const errors = [];
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = Buffer.concat(chunks).toString("utf8");
    requests.push({ method: req.method, url: req.url, headers: req.headers, body });
    try {
      await handler(req, res, body);
    } catch (error) {
      errors.push(error);
      res.statusCode = 500;
      res.end(String(error));
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    errors,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(resolve);
      }),
  };
}

export function json(res, status, value, headers = {}) {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(value));
}

const b64 = (value) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

/** A tenant key pair: `jwks` publishes it, `lease(claims)` signs a lease the way keystead-verify's `sign` does. */
export function tenantKey(kid = "k-test-1", seed) {
  const privateKey = seed
    ? createPrivateKey({
        key: Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]),
        format: "der",
        type: "pkcs8",
      })
    : generateKeyPairSync("ed25519").privateKey;
  const x = privateKey.export({ format: "jwk" }).x;
  return {
    kid,
    jwk: { kty: "OKP", crv: "Ed25519", kid, x, use: "sig", alg: "EdDSA" },
    jwks: { keys: [{ kty: "OKP", crv: "Ed25519", kid, x, use: "sig", alg: "EdDSA" }] },
    lease(claims, header = { alg: "EdDSA", kid, typ: "keystead-lease+jwt" }) {
      const input = `${b64(header)}.${b64(claims)}`;
      return `${input}.${sign(null, Buffer.from(input), privateKey).toString("base64url")}`;
    },
  };
}

/** Lease claims for tenant `acme`, product `myapp`, machine `machine-1`, valid for a week from `now`. */
export function claims(now, overrides = {}) {
  return {
    iss: "acme",
    sub: "lic_test",
    product_id: "myapp",
    machine_id: "machine-1",
    status: "active",
    entitlements: ["pro"],
    license_expires_at: null,
    iat: now - 60,
    exp: now + 7 * 86_400,
    ...overrides,
  };
}

/** A fresh temporary directory, removed by the returned function. */
export async function tempDir() {
  const dir = await mkdtemp(join(tmpdir(), "keystead-kit-"));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

export const unixNow = () => Math.floor(Date.now() / 1000);

/**
 * A fake keystead license API for tenant `acme`, product `myapp`, in the service's shapes: licenses by key with a
 * status and seats, leases signed with `key` that echo the request's nonce. `answer` overrides what a call answers.
 */
export async function fakeLicenseApi({ limit = 2 } = {}) {
  const fake = {
    key: tenantKey("k1"),
    licenses: new Map([["KEY-1", { status: "active", seats: new Set() }]]),
    limit,
    /** When set, `(action, request) => [status, body] | undefined` answers first. */
    answer: undefined,
    now: unixNow,
  };
  const server = await startServer((req, res, raw) => {
    const url = new URL(req.url, "http://x");
    if (req.method === "GET" && url.pathname === "/v1/acme/jwks.json") {
      return json(res, 200, fake.key.jwks, { "cache-control": "public, max-age=60" });
    }
    const match = /^\/v1\/acme\/licenses\/(activate|validate|deactivate)$/.exec(url.pathname);
    if (req.method !== "POST" || !match) return json(res, 404, { error: "Not found" });
    const action = match[1];
    const request = JSON.parse(raw);
    const override = fake.answer?.(action, request);
    if (override) return json(res, override[0], override[1]);
    const license = fake.licenses.get(request.key);
    if (!license || request.product_id !== "myapp") return json(res, 404, { error: "License not found" });
    const active = license.status === "active";
    const view = (activated, lease) => ({
      valid: active,
      status: license.status,
      product_id: "myapp",
      expires_at: null,
      activation_limit: fake.limit,
      activations: license.seats.size,
      activated,
      entitlements: ["pro"],
      ...(lease ? { lease } : {}),
    });
    const lease = () => {
      const now = fake.now();
      return fake.key.lease(
        claims(now, { machine_id: request.machine_id, iat: now, ...(request.nonce ? { nonce: request.nonce } : {}) }),
      );
    };
    if (action === "activate") {
      if (!active) return json(res, 403, { error: `License ${license.status}` });
      if (!license.seats.has(request.machine_id) && license.seats.size >= fake.limit) {
        return json(res, 409, { error: "Activation limit reached" });
      }
      license.seats.add(request.machine_id);
      return json(res, 200, view(true, lease()));
    }
    if (action === "validate") {
      const held = license.seats.has(request.machine_id);
      return json(res, 200, view(held, held && active ? lease() : undefined));
    }
    const deactivated = license.seats.delete(request.machine_id);
    return json(res, 200, { deactivated, activations: license.seats.size });
  });
  return Object.assign(fake, server);
}

/** A base URL where nothing listens: the service is down. */
export async function deadUrl() {
  const server = await startServer(() => {});
  await server.close();
  return server.url;
}
