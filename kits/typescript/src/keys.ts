/**
 * The tenant's public signing keys: reading a JWKS (RFC 7517, OKP/Ed25519 keys per RFC 8037) into WebCrypto keys,
 * refusing unusable and weak keys, and base64url as JWS uses it (no padding, nothing else tolerated).
 */

import { webcrypto } from "node:crypto";

import { LeaseError } from "./errors.js";

/** One public key of a JWKS, as `GET {api}/v1/{tenant}/jwks.json` publishes it. */
export interface Jwk {
  kty: string;
  crv: string;
  /** The 32-byte public key, base64url without padding. */
  x: string;
  kid: string;
  use?: string;
  alg?: string;
}

/** A JWK set, `{"keys": [...]}`. */
export interface Jwks {
  keys: Jwk[];
}

/**
 * Decodes base64url without padding (RFC 7515 §2), or null. Node's own decoder skips characters it does not know
 * and ignores stray trailing bits, so only the canonical encoding is taken (as Rust's `base64` does): a token has
 * one spelling, and one with stray characters is malformed rather than silently repaired.
 */
export function base64urlDecode(text: string): Uint8Array | null {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) {
    return null;
  }
  const bytes = Buffer.from(text, "base64url");
  return bytes.toString("base64url") === text ? new Uint8Array(bytes) : null;
}

export function base64urlEncode(bytes: Uint8Array | string): string {
  return Buffer.from(bytes).toString("base64url");
}

/**
 * Encodings of the Ed25519 points of small order (libsodium's list, compared without the sign bit). A key or a
 * signature's R among them lets one signature verify for many messages; ed25519-dalek's `verify_strict`, which the
 * Rust verifier uses, refuses them, and OpenSSL (under WebCrypto) does not, so they are refused here.
 */
const SMALL_ORDER = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
];

/** Whether 32 bytes encode a point of small order (the sign bit ignored). */
export function isSmallOrder(point: Uint8Array): boolean {
  if (point.length !== 32) {
    return false;
  }
  const masked = Buffer.from(point);
  masked[31] = (masked[31] ?? 0) & 0x7f;
  const hex = masked.toString("hex");
  return SMALL_ORDER.includes(hex);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The verifying keys an app trusts, by `kid`. Build with `PublicKeys.fromJwks`. */
export class PublicKeys {
  private constructor(
    /** The usable keys as a JWKS: what the client persists beside the lease. */
    readonly jwks: Jwks,
    private readonly byKid: ReadonlyMap<string, webcrypto.CryptoKey>,
  ) {}

  /**
   * Reads a JWKS (an object or its JSON text). Keys that are not OKP/Ed25519 signing keys (`alg` absent or `EdDSA`,
   * `use` absent or `sig`) are skipped, as a set may publish others. The Ed25519 keys must each have a unique `kid`
   * and an `x` of 32 bytes that is not a weak point, and there must be at least one; otherwise a `LeaseError` of
   * kind `invalid_jwks`.
   */
  static async fromJwks(document: Jwks | string | unknown): Promise<PublicKeys> {
    let parsed: unknown = document;
    if (typeof document === "string") {
      try {
        parsed = JSON.parse(document);
      } catch (error) {
        throw new LeaseError("invalid_jwks", "invalid JWKS: not JSON", { cause: error });
      }
    }
    if (!isRecord(parsed) || !Array.isArray(parsed.keys)) {
      throw new LeaseError("invalid_jwks", "invalid JWKS: expected an object with a keys array");
    }
    const kept: Jwk[] = [];
    const byKid = new Map<string, webcrypto.CryptoKey>();
    for (const raw of parsed.keys) {
      if (!isRecord(raw) || raw.kty !== "OKP" || raw.crv !== "Ed25519") {
        continue;
      }
      if (("alg" in raw && raw.alg !== "EdDSA") || ("use" in raw && raw.use !== "sig")) {
        continue;
      }
      const { kid, x } = raw;
      if (typeof kid !== "string" || typeof x !== "string") {
        throw new LeaseError("invalid_jwks", "invalid JWKS: an Ed25519 key without a kid or x");
      }
      const bytes = base64urlDecode(x);
      if (bytes === null || bytes.length !== 32) {
        throw new LeaseError("invalid_jwks", `invalid JWKS: key ${JSON.stringify(kid)}: x is not 32 base64url bytes`);
      }
      if (byKid.has(kid)) {
        throw new LeaseError("invalid_jwks", `invalid JWKS: duplicate kid ${JSON.stringify(kid)}`);
      }
      if (isSmallOrder(bytes)) {
        throw new LeaseError("invalid_jwks", `invalid JWKS: key ${JSON.stringify(kid)} is a weak Ed25519 key`);
      }
      let key: webcrypto.CryptoKey;
      try {
        key = await webcrypto.subtle.importKey("jwk", { kty: "OKP", crv: "Ed25519", x }, { name: "Ed25519" }, false, [
          "verify",
        ]);
      } catch (error) {
        throw new LeaseError("invalid_jwks", `invalid JWKS: key ${JSON.stringify(kid)} is not an Ed25519 key`, {
          cause: error,
        });
      }
      byKid.set(kid, key);
      kept.push({ kty: "OKP", crv: "Ed25519", kid, x, use: "sig", alg: "EdDSA" });
    }
    if (byKid.size === 0) {
      throw new LeaseError("invalid_jwks", "invalid JWKS: no Ed25519 signing key");
    }
    return new PublicKeys({ keys: kept }, byKid);
  }

  /** The key with this `kid`, if trusted. */
  get(kid: string): webcrypto.CryptoKey | undefined {
    return this.byKid.get(kid);
  }

  has(kid: string): boolean {
    return this.byKid.has(kid);
  }

  /** The trusted key ids. */
  get kids(): string[] {
    return [...this.byKid.keys()];
  }
}
