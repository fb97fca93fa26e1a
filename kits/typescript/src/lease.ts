/**
 * Verifying a lease offline: the JWS compact token (a JWT) the license API signs with the tenant's Ed25519 key.
 * The checks and their order are keystead-verify's (the Rust crate), so every kit refuses the same leases with
 * the same kind.
 */

import { webcrypto } from "node:crypto";

import { LeaseError } from "./errors.js";
import { base64urlDecode, isSmallOrder, type PublicKeys } from "./keys.js";

/** The only JWS algorithm accepted: compared with the header, never taken from it. */
export const LEASE_ALG = "EdDSA";
/** The JWS `typ` of a lease. */
export const LEASE_TYP = "keystead-lease+jwt";
/** How far the app's clock may be off the service's, in seconds, unless the client is told otherwise. */
export const DEFAULT_SKEW_SECONDS = 60;

/** The claims of a lease as signed (wire names). */
export interface LeaseClaims {
  iss: string;
  sub: string;
  product_id: string;
  machine_id: string;
  status: string;
  entitlements: string[];
  license_expires_at: string | null;
  iat: number;
  exp: number;
  nonce?: string;
}

/** A lease that verified. Times are unix seconds. */
export interface Lease {
  /** The compact token itself, as stored. */
  token: string;
  /** The kid of the key that signed it. */
  kid: string;
  /** `iss`: the seller's tenant id. */
  tenantId: string;
  /** `sub`: the license id (never the key). */
  licenseId: string;
  productId: string;
  machineId: string;
  /** Always `"active"` for a lease that verified. */
  status: string;
  /** What the license unlocks (feature names the seller chose); may be empty. */
  entitlements: string[];
  /** When the license itself ends (RFC 3339), or null for a perpetual license. Informational: `expiresAt` counts. */
  licenseExpiresAt: string | null;
  /** `iat`. */
  issuedAt: number;
  /** `exp`: the app may rely on the lease offline until then (plus the clock-skew allowance). */
  expiresAt: number;
  /** The nonce the app sent with the request that returned the lease; null when none was sent. */
  nonce: string | null;
}

/** What the app expects of a lease. */
export interface Expected {
  tenantId: string;
  productId: string;
  machineId: string;
  /** Other products this app accepts too (tiers the seller set up as products of their own). */
  otherProducts?: readonly string[];
  /** The nonce just sent to `activate`/`validate`; leave it out for a stored lease checked at start-up. */
  nonce?: string;
}

/** The system clock in unix seconds. */
export function unixNow(): number {
  return Math.floor(Date.now() / 1000);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function decodeJson(segment: string): unknown {
  const bytes = base64urlDecode(segment);
  if (bytes === null) {
    return undefined;
  }
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    return undefined;
  }
}

function optionalString(header: Record<string, unknown>, name: string): string | undefined {
  const value = header[name];
  if (value === undefined || value === null) {
    return undefined;
  }
  if (typeof value !== "string") {
    throw new LeaseError("malformed", "malformed lease: the header is not a JSON object of strings");
  }
  return value;
}

/** The claims as signed, or null when a member is missing or of the wrong type (what serde would refuse). */
function readClaims(value: unknown): LeaseClaims | null {
  if (!isRecord(value)) {
    return null;
  }
  const { iss, sub, product_id, machine_id, status, entitlements, license_expires_at, iat, exp, nonce } = value;
  const strings = [iss, sub, product_id, machine_id, status];
  if (!strings.every((s) => typeof s === "string")) {
    return null;
  }
  if (!Array.isArray(entitlements) || !entitlements.every((e) => typeof e === "string")) {
    return null;
  }
  if (!(license_expires_at === undefined || license_expires_at === null || typeof license_expires_at === "string")) {
    return null;
  }
  if (!Number.isSafeInteger(iat) || !Number.isSafeInteger(exp)) {
    return null;
  }
  if (!(nonce === undefined || nonce === null || typeof nonce === "string")) {
    return null;
  }
  return {
    iss: iss as string,
    sub: sub as string,
    product_id: product_id as string,
    machine_id: machine_id as string,
    status: status as string,
    entitlements: entitlements as string[],
    license_expires_at: (license_expires_at as string | null | undefined) ?? null,
    iat: iat as number,
    exp: exp as number,
    ...(typeof nonce === "string" ? { nonce } : {}),
  };
}

/** Ed25519's group order L, little-endian: a signature's S must be below it (no malleable twin signatures). */
const GROUP_ORDER = 2n ** 252n + 27742317777372353535851937790883648493n;

function littleEndian(bytes: Uint8Array): bigint {
  let value = 0n;
  for (let i = bytes.length - 1; i >= 0; i -= 1) {
    value = (value << 8n) | BigInt(bytes[i] ?? 0);
  }
  return value;
}

/** The token's header fields the checks need, or why it is refused. Nothing in it picks a key or an algorithm. */
function readHeader(segment: string): { kid: string } {
  const header = decodeJson(segment);
  if (!isRecord(header)) {
    throw new LeaseError("malformed", "malformed lease: the header is not a base64url JSON object");
  }
  const alg = optionalString(header, "alg");
  const typ = optionalString(header, "typ");
  const kid = optionalString(header, "kid");
  if (alg === undefined) {
    throw new LeaseError("malformed", "malformed lease: the header has no alg");
  }
  if (alg !== LEASE_ALG) {
    throw new LeaseError("bad_algorithm", `unsupported algorithm ${JSON.stringify(alg)}: only EdDSA is accepted`);
  }
  if (typ !== LEASE_TYP) {
    throw new LeaseError("wrong_type", `not a keystead lease (typ is not ${LEASE_TYP})`);
  }
  if (header.crit !== undefined) {
    // RFC 7515 §4.1.11: extensions we do not understand must be refused; keystead uses none.
    throw new LeaseError("malformed", "malformed lease: the header has crit");
  }
  if (kid === undefined) {
    throw new LeaseError("malformed", "malformed lease: the header has no kid");
  }
  return { kid };
}

/**
 * Verifies a lease at `now` (unix seconds) and returns it. Checks, in order, the first failure being the error:
 * three segments and a header that decodes (`malformed`); `alg` exactly EdDSA (`bad_algorithm`: `none` and `HS256`
 * are refused before any key is used); `typ` (`wrong_type`); `kid` among `keys` (`unknown_kid`: refresh the JWKS);
 * the Ed25519 signature over `header.claims`, strictly (`bad_signature`); the claims decode (`malformed`); `iss`
 * (`wrong_tenant`), `product_id` (`wrong_product`), `machine_id` (`wrong_machine`), `nonce` when expected
 * (`wrong_nonce`); `iat <= now + skew` (`not_yet_valid`); `now < exp + skew` (`expired`); `status` is active
 * (`not_active`).
 */
export async function verifyLease(
  token: string,
  keys: PublicKeys,
  expected: Expected,
  now: number = unixNow(),
  skewSeconds: number = DEFAULT_SKEW_SECONDS,
): Promise<Lease> {
  const parts = token.split(".");
  if (parts.length !== 3) {
    throw new LeaseError("malformed", "malformed lease: a lease has three dot-separated segments");
  }
  const [headerPart, claimsPart, signaturePart] = parts as [string, string, string];
  const { kid } = readHeader(headerPart);
  const key = keys.get(kid);
  if (key === undefined) {
    throw new LeaseError("unknown_kid", `unknown signing key ${JSON.stringify(kid)}: refresh the JWKS`);
  }

  const signature = base64urlDecode(signaturePart);
  if (signature === null || signature.length !== 64) {
    throw new LeaseError("bad_signature", "bad signature");
  }
  // What `verify_strict` refuses beyond the equation: a small-order R, and an S that is not reduced.
  if (isSmallOrder(signature.subarray(0, 32)) || littleEndian(signature.subarray(32)) >= GROUP_ORDER) {
    throw new LeaseError("bad_signature", "bad signature");
  }
  const signed = new TextEncoder().encode(`${headerPart}.${claimsPart}`);
  if (!(await webcrypto.subtle.verify("Ed25519", key, signature, signed))) {
    throw new LeaseError("bad_signature", "bad signature");
  }

  const claims = readClaims(decodeJson(claimsPart));
  if (claims === null) {
    throw new LeaseError("malformed", "malformed lease: the claims do not decode");
  }
  if (claims.iss !== expected.tenantId) {
    throw new LeaseError("wrong_tenant", "lease issued by another tenant");
  }
  if (claims.product_id !== expected.productId && !(expected.otherProducts ?? []).includes(claims.product_id)) {
    throw new LeaseError("wrong_product", "lease is for another product");
  }
  if (claims.machine_id !== expected.machineId) {
    throw new LeaseError("wrong_machine", "lease is for another machine");
  }
  if (expected.nonce !== undefined && claims.nonce !== expected.nonce) {
    throw new LeaseError("wrong_nonce", "lease does not answer this request (nonce mismatch)");
  }
  if (claims.iat > now + skewSeconds) {
    throw new LeaseError("not_yet_valid", "lease issued in the future (check the system clock)");
  }
  if (claims.exp + skewSeconds <= now) {
    throw new LeaseError("expired", "lease expired");
  }
  if (claims.status !== "active") {
    throw new LeaseError("not_active", `license is not active (status ${JSON.stringify(claims.status)})`);
  }
  return {
    token,
    kid,
    tenantId: claims.iss,
    licenseId: claims.sub,
    productId: claims.product_id,
    machineId: claims.machine_id,
    status: claims.status,
    entitlements: claims.entitlements,
    licenseExpiresAt: claims.license_expires_at,
    issuedAt: claims.iat,
    expiresAt: claims.exp,
    nonce: claims.nonce ?? null,
  };
}
