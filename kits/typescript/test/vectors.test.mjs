// Every lease of the shared test vectors (kits/vectors/leases.json, made by keystead's own signing code) gives the
// same verdict here as in every other kit.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { LeaseError, PublicKeys, verifyLease } from "../dist/index.js";

const vectors = JSON.parse(readFileSync(new URL("../../vectors/leases.json", import.meta.url), "utf8"));
const expected = {
  tenantId: vectors.expected.tenant_id,
  productId: vectors.expected.product_id,
  machineId: vectors.expected.machine_id,
};

test("the vectors hold cases of every kind", () => {
  const kinds = new Set(vectors.cases.map((c) => c.error));
  for (const kind of [
    null,
    "",
    "expired",
    "not_yet_valid",
    "wrong_machine",
    "wrong_product",
    "wrong_tenant",
    "not_active",
    "unknown_kid",
    "bad_algorithm",
    "bad_signature",
    "malformed",
  ]) {
    assert.ok(kinds.has(kind), `no case of ${JSON.stringify(kind)}`);
  }
});

for (const vector of vectors.cases) {
  test(`lease vector ${vector.name}`, async () => {
    const keys = await PublicKeys.fromJwks(vectors.jwks);
    const verdict = verifyLease(vector.lease, keys, expected, vectors.now, vectors.skew_seconds);
    if (vector.error === null || vector.error === "") {
      const lease = await verdict;
      assert.equal(lease.tenantId, vectors.claims.iss);
      assert.equal(lease.licenseId, vectors.claims.sub);
      assert.equal(lease.machineId, vectors.expected.machine_id);
      assert.deepEqual(lease.entitlements, vectors.claims.entitlements);
      assert.equal(lease.status, "active");
      if (vector.error === "") {
        // It verifies only thanks to the allowance: without it, the same lease is refused.
        await assert.rejects(verifyLease(vector.lease, keys, expected, vectors.now, 0), LeaseError);
      } else {
        assert.deepEqual(
          {
            iss: lease.tenantId,
            sub: lease.licenseId,
            product_id: lease.productId,
            machine_id: lease.machineId,
            status: lease.status,
            entitlements: lease.entitlements,
            license_expires_at: lease.licenseExpiresAt,
            iat: lease.issuedAt,
            exp: lease.expiresAt,
          },
          vectors.claims,
        );
      }
    } else {
      await assert.rejects(verdict, (error) => {
        assert.ok(error instanceof LeaseError, `${error}`);
        assert.equal(error.kind, vector.error);
        return true;
      });
    }
  });
}
