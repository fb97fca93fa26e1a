// The lease checks beyond the shared vectors: the ones a hostile token or key set would try.

import assert from "node:assert/strict";
import { test } from "node:test";

import { LeaseError, PublicKeys, verifyLease } from "../dist/index.js";
import { claims, tenantKey } from "../test-support/helpers.mjs";

const NOW = 1_800_000_000;
const expected = { tenantId: "acme", productId: "myapp", machineId: "machine-1" };
const key = tenantKey("k1");
const keys = await PublicKeys.fromJwks(key.jwks);

async function refusedAs(kind, promise) {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof LeaseError, String(error));
    assert.equal(error.kind, kind, error.message);
    return true;
  });
}

const b64 = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");

test("a valid lease gives its claims in the kit's names", async () => {
  const lease = await verifyLease(key.lease(claims(NOW, { nonce: "n1" })), keys, { ...expected, nonce: "n1" }, NOW);
  assert.equal(lease.kid, "k1");
  assert.equal(lease.productId, "myapp");
  assert.equal(lease.nonce, "n1");
  assert.equal(lease.expiresAt, NOW + 7 * 86_400);
});

test("a lease answering another request is refused (nonce)", async () => {
  await refusedAs(
    "wrong_nonce",
    verifyLease(key.lease(claims(NOW, { nonce: "old" })), keys, { ...expected, nonce: "new" }, NOW),
  );
  await refusedAs("wrong_nonce", verifyLease(key.lease(claims(NOW)), keys, { ...expected, nonce: "new" }, NOW));
});

test("typ and crit are checked", async () => {
  await refusedAs(
    "wrong_type",
    verifyLease(key.lease(claims(NOW), { alg: "EdDSA", kid: "k1", typ: "JWT" }), keys, expected, NOW),
  );
  await refusedAs("wrong_type", verifyLease(key.lease(claims(NOW), { alg: "EdDSA", kid: "k1" }), keys, expected, NOW));
  await refusedAs(
    "malformed",
    verifyLease(
      key.lease(claims(NOW), { alg: "EdDSA", kid: "k1", typ: "keystead-lease+jwt", crit: ["exp"] }),
      keys,
      expected,
      NOW,
    ),
  );
});

test("the algorithm is never taken from the token", async () => {
  for (const alg of ["none", "HS256", "RS256", "ES256", "eddsa", "Ed25519"]) {
    await refusedAs(
      "bad_algorithm",
      verifyLease(key.lease(claims(NOW), { alg, kid: "k1", typ: "keystead-lease+jwt" }), keys, expected, NOW),
    );
  }
  await refusedAs(
    "malformed",
    verifyLease(key.lease(claims(NOW), { kid: "k1", typ: "keystead-lease+jwt" }), keys, expected, NOW),
  );
});

test("a malleated signature (S + L) is refused", async () => {
  const token = key.lease(claims(NOW));
  const [h, c, s] = token.split(".");
  const signature = Buffer.from(s, "base64url");
  let scalar = 0n;
  for (let i = 63; i >= 32; i -= 1) scalar = (scalar << 8n) | BigInt(signature[i]);
  scalar += 2n ** 252n + 27742317777372353535851937790883648493n;
  for (let i = 32; i < 64; i += 1) {
    signature[i] = Number(scalar & 0xffn);
    scalar >>= 8n;
  }
  await refusedAs("bad_signature", verifyLease(`${h}.${c}.${signature.toString("base64url")}`, keys, expected, NOW));
});

test("signatures of the wrong length or spelling are refused", async () => {
  const [h, c, s] = key.lease(claims(NOW)).split(".");
  await refusedAs("bad_signature", verifyLease(`${h}.${c}.`, keys, expected, NOW));
  await refusedAs("bad_signature", verifyLease(`${h}.${c}.${s.slice(0, -4)}`, keys, expected, NOW));
  await refusedAs("bad_signature", verifyLease(`${h}.${c}.${s}=`, keys, expected, NOW));
  // The same bytes with a stray low bit in the last character: one token, one spelling.
  const last = s.at(-1);
  const twin = "AQgw".includes(last) ? String.fromCharCode(last.charCodeAt(0) + 1) : null;
  if (twin) await refusedAs("bad_signature", verifyLease(`${h}.${c}.${s.slice(0, -1)}${twin}`, keys, expected, NOW));
});

test("another key's signature under a trusted kid is refused", async () => {
  const other = tenantKey("k1");
  await refusedAs("bad_signature", verifyLease(other.lease(claims(NOW)), keys, expected, NOW));
});

test("claims of the wrong shape are malformed, after the signature", async () => {
  const { exp, ...noExp } = claims(NOW);
  await refusedAs("malformed", verifyLease(key.lease(noExp), keys, expected, NOW));
  await refusedAs("malformed", verifyLease(key.lease(claims(NOW, { exp: String(exp) })), keys, expected, NOW));
  await refusedAs("malformed", verifyLease(key.lease(claims(NOW, { entitlements: "pro" })), keys, expected, NOW));
  await refusedAs(
    "malformed",
    verifyLease(`${b64({ alg: "EdDSA", kid: "k1", typ: "keystead-lease+jwt" })}.e30`, keys, expected, NOW),
  );
  await refusedAs("malformed", verifyLease("a.b.c.d", keys, expected, NOW));
  await refusedAs("malformed", verifyLease("!!!.e30.AA", keys, expected, NOW));
});

test("claims the server may add later are ignored", async () => {
  const lease = await verifyLease(key.lease(claims(NOW, { seat: 3, aud: "x" })), keys, expected, NOW);
  assert.equal(lease.status, "active");
});

test("the skew allowance is the caller's, both ways", async () => {
  const late = key.lease(claims(NOW, { exp: NOW - 100 }));
  await refusedAs("expired", verifyLease(late, keys, expected, NOW, 60));
  assert.equal((await verifyLease(late, keys, expected, NOW, 120)).expiresAt, NOW - 100);
  const early = key.lease(claims(NOW, { iat: NOW + 100 }));
  await refusedAs("not_yet_valid", verifyLease(early, keys, expected, NOW, 60));
  await verifyLease(early, keys, expected, NOW, 120);
  // At exactly exp + skew the lease has run out (as keystead-verify: now < exp + skew).
  await refusedAs("expired", verifyLease(key.lease(claims(NOW, { exp: NOW - 60 })), keys, expected, NOW, 60));
  await verifyLease(key.lease(claims(NOW, { exp: NOW - 59 })), keys, expected, NOW, 60);
});

test("tiers the app accepts are other products", async () => {
  const team = key.lease(claims(NOW, { product_id: "myapp-team" }));
  await refusedAs("wrong_product", verifyLease(team, keys, expected, NOW));
  const lease = await verifyLease(team, keys, { ...expected, otherProducts: ["myapp-team"] }, NOW);
  assert.equal(lease.productId, "myapp-team");
});

test("a JWKS keeps only Ed25519 signing keys and refuses unusable ones", async () => {
  const rsa = { kty: "RSA", kid: "r1", n: "xx", e: "AQAB" };
  const encryption = { ...key.jwk, kid: "enc", use: "enc" };
  const set = await PublicKeys.fromJwks(JSON.stringify({ keys: [rsa, encryption, key.jwk] }));
  assert.deepEqual(set.kids, ["k1"]);
  assert.deepEqual(
    set.jwks.keys.map((k) => k.kid),
    ["k1"],
  );

  const invalid = async (document) => refusedAs("invalid_jwks", PublicKeys.fromJwks(document));
  await invalid("not json");
  await invalid({ keys: [] });
  await invalid({ keys: [rsa] });
  await invalid({ nokeys: true });
  await invalid({ keys: [key.jwk, key.jwk] });
  await invalid({ keys: [{ ...key.jwk, x: "AAAA" }] });
  await invalid({ keys: [{ ...key.jwk, kid: undefined }] });
  // Weak keys: the identity point and a point of order 8 (with its sign bit set).
  await invalid({ keys: [{ ...key.jwk, x: Buffer.from("01" + "00".repeat(31), "hex").toString("base64url") }] });
  await invalid({
    keys: [
      {
        ...key.jwk,
        x: Buffer.from("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", "hex").toString("base64url"),
      },
    ],
  });
});
