/**
 * Where the client keeps what it needs offline: the license key, the last good lease, the tenant's public keys and
 * the license status last reported. `FileLeaseStore` writes one JSON file in the app's data directory; any object
 * with `load`, `save` and `clear` will do (an Electron app may encrypt it with `safeStorage`, for example).
 */

import { randomBytes } from "node:crypto";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";

import type { Jwks } from "./keys.js";

/** What a lease store keeps. Every member may be null: a store that only cached the keys has no license yet. */
export interface StoredState {
  /** The license key `activate` was given (a secret: the store should be readable by this user only). */
  key: string | null;
  /** The last lease that verified (a JWS compact token), or null. */
  lease: string | null;
  /** The tenant's JWKS as last fetched, so leases verify offline. */
  jwks: Jwks | null;
  /** The license status the service last reported (`active`, `revoked`, `suspended`, `expired`, `invalid`). */
  status: string | null;
}

/** A lease store: the client loads and saves the whole state; `clear` forgets everything. */
export interface LeaseStore {
  load(): Promise<StoredState | null>;
  save(state: StoredState): Promise<void>;
  clear(): Promise<void>;
}

/** An empty state. */
export function emptyState(): StoredState {
  return { key: null, lease: null, jwks: null, status: null };
}

/**
 * The directory apps keep per-user data in: `$XDG_DATA_HOME` (or `~/.local/share`) on Linux and other Unixes,
 * `~/Library/Application Support` on macOS, `%APPDATA%` on Windows.
 */
export function dataHome(): string {
  switch (process.platform) {
    case "darwin":
      return join(homedir(), "Library", "Application Support");
    case "win32":
      return process.env.APPDATA || join(homedir(), "AppData", "Roaming");
    default: {
      const xdg = process.env.XDG_DATA_HOME;
      // The XDG spec says a relative path is invalid and must be ignored.
      return xdg && xdg.startsWith("/") ? xdg : join(homedir(), ".local", "share");
    }
  }
}

/** A tenant or product id used as a directory name: refused if it could name another place. */
function pathSegment(id: string, what: string): string {
  if (id === "" || id === "." || id === ".." || /[/\\:\0]/.test(id)) {
    throw new TypeError(`${what} ${JSON.stringify(id)} cannot be used as a directory name`);
  }
  return id;
}

/** The default store directory: `<dataHome()>/<tenantId>/<productId>`. */
export function defaultStoreDir(tenantId: string, productId: string): string {
  return join(dataHome(), pathSegment(tenantId, "tenant id"), pathSegment(productId, "product id"));
}

function readState(value: unknown): StoredState | null {
  if (typeof value !== "object" || value === null) {
    return null;
  }
  const raw = value as Record<string, unknown>;
  const text = (name: string): string | null => (typeof raw[name] === "string" ? (raw[name] as string) : null);
  const jwks = raw.jwks;
  return {
    key: text("key"),
    lease: text("lease"),
    jwks:
      typeof jwks === "object" && jwks !== null && Array.isArray((jwks as Record<string, unknown>).keys)
        ? (jwks as Jwks)
        : null,
    status: text("status"),
  };
}

/**
 * Keeps the state in `<dir>/lease.json`, readable by this user only (mode 0600 where the OS has modes), written to a
 * temporary file and renamed so a crash never leaves half a file. Without `dir`, the per-user data directory of
 * the tenant and product (`defaultStoreDir`); an Electron app may pass `app.getPath("userData")`.
 */
export class FileLeaseStore implements LeaseStore {
  readonly dir: string;
  readonly path: string;

  constructor(dir: string) {
    this.dir = dir;
    this.path = join(dir, "lease.json");
  }

  /** The store in the default directory of a tenant's product. */
  static forProduct(tenantId: string, productId: string): FileLeaseStore {
    return new FileLeaseStore(defaultStoreDir(tenantId, productId));
  }

  async load(): Promise<StoredState | null> {
    let text: string;
    try {
      text = await readFile(this.path, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") {
        return null;
      }
      throw error;
    }
    try {
      return readState(JSON.parse(text));
    } catch {
      // A damaged file is as good as none: the app activates again rather than failing to start.
      return null;
    }
  }

  async save(state: StoredState): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const temporary = `${this.path}.${randomBytes(6).toString("hex")}.tmp`;
    const document = { format: "keystead-lease-store/1", ...state };
    try {
      await writeFile(temporary, `${JSON.stringify(document, null, 2)}\n`, { mode: 0o600, flush: true });
      await rename(temporary, this.path);
    } catch (error) {
      await rm(temporary, { force: true });
      throw error;
    }
  }

  async clear(): Promise<void> {
    await rm(this.path, { force: true });
  }
}

/** Keeps the state in memory only: for tests, and apps that persist it themselves. */
export class MemoryLeaseStore implements LeaseStore {
  private state: StoredState | null;

  constructor(initial: StoredState | null = null) {
    this.state = initial === null ? null : structuredClone(initial);
  }

  async load(): Promise<StoredState | null> {
    return this.state === null ? null : structuredClone(this.state);
  }

  async save(state: StoredState): Promise<void> {
    this.state = structuredClone(state);
  }

  async clear(): Promise<void> {
    this.state = null;
  }
}
