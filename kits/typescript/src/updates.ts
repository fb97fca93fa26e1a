/**
 * Updates through the license-gated JSON feed: the release records it answers, and downloading an installer (the
 * service's 303 to a short-lived presigned URL, resumed with `Range`, verified before anyone sees the file).
 */

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, rename, rm, stat } from "node:fs/promises";

import { DownloadError, ServiceError } from "./errors.js";
import { Unreachable, answerError, send } from "./http.js";

/** One file of a release. `kind` is `installer`, `blockmap` or `sparkle_delta`. */
export interface ReleaseFile {
  name: string;
  /** The service's download URL: it answers 303 to the file in the seller's bucket. */
  url: string;
  size: number;
  /** Hex. */
  sha256: string;
  /** Base64 (electron-builder's form). */
  sha512: string;
  kind: string;
  sparkleSignature?: string;
  tauriSignature?: string;
  /** For a Sparkle delta: the build it patches from. */
  deltaFrom?: string;
}

/** A binary patch to this release's installer from an earlier one (zstd with the old file as reference prefix). */
export interface ReleasePatch {
  name: string;
  url: string;
  size: number;
  sha256: string;
  sha512: string;
  fromVersion: string;
  /** The SHA-256 of the installed file the patch applies to. */
  fromSha256: string;
  /** The name of the installer the patch gives. */
  target: string;
  format: string;
}

/** A release as the JSON feed lists it. */
export interface Release {
  version: string;
  build: string;
  channel: string;
  platform: string;
  arch: string;
  notes: string | null;
  minOs: string | null;
  critical: boolean;
  entitlements: string[];
  createdAt: string;
  publishedAt: string | null;
  files: ReleaseFile[];
  patches: ReleasePatch[];
}

/** The JSON feed's answer. */
export interface ReleaseFeed {
  productId: string;
  channel: string;
  releases: Release[];
  update: Release | null;
}

type Json = Record<string, unknown>;

function isRecord(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function field<T>(raw: Json, name: string, check: (v: unknown) => v is T, what: string): T {
  const value = raw[name];
  if (!check(value)) {
    throw new ServiceError(`the release feed's ${what} has no valid ${JSON.stringify(name)}`);
  }
  return value;
}

const isString = (v: unknown): v is string => typeof v === "string";
const isSize = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const optionalString = (raw: Json, name: string): string | null =>
  typeof raw[name] === "string" ? (raw[name] as string) : null;

function readFile(raw: unknown): ReleaseFile {
  if (!isRecord(raw)) {
    throw new ServiceError("the release feed lists a file that is not an object");
  }
  const file: ReleaseFile = {
    name: field(raw, "name", isString, "file"),
    url: field(raw, "url", isString, "file"),
    size: field(raw, "size", isSize, "file"),
    sha256: field(raw, "sha256", isString, "file").toLowerCase(),
    sha512: optionalString(raw, "sha512") ?? "",
    kind: optionalString(raw, "kind") ?? "",
  };
  const sparkle = optionalString(raw, "sparkle_signature");
  const tauri = optionalString(raw, "tauri_signature");
  const deltaFrom = optionalString(raw, "delta_from");
  return {
    ...file,
    ...(sparkle === null ? {} : { sparkleSignature: sparkle }),
    ...(tauri === null ? {} : { tauriSignature: tauri }),
    ...(deltaFrom === null ? {} : { deltaFrom }),
  };
}

function readPatch(raw: unknown): ReleasePatch {
  const file = readFile(raw);
  const record = raw as Json;
  return {
    name: file.name,
    url: file.url,
    size: file.size,
    sha256: file.sha256,
    sha512: file.sha512,
    fromVersion: field(record, "from_version", isString, "patch"),
    fromSha256: field(record, "from_sha256", isString, "patch").toLowerCase(),
    target: field(record, "target", isString, "patch"),
    format: field(record, "format", isString, "patch"),
  };
}

/** A release from the feed's JSON (snake_case) into the kit's shape; `UnexpectedAnswer` if it is not one. */
export function readRelease(raw: unknown): Release {
  if (!isRecord(raw)) {
    throw new ServiceError("the release feed lists a release that is not an object");
  }
  const version = field(raw, "version", isString, "release");
  const list = (name: string): unknown[] => (Array.isArray(raw[name]) ? (raw[name] as unknown[]) : []);
  return {
    version,
    build: optionalString(raw, "build") ?? version,
    channel: optionalString(raw, "channel") ?? "stable",
    platform: field(raw, "platform", isString, "release"),
    arch: field(raw, "arch", isString, "release"),
    notes: optionalString(raw, "notes"),
    minOs: optionalString(raw, "min_os"),
    critical: raw.critical === true,
    entitlements: list("entitlements").filter(isString),
    createdAt: optionalString(raw, "created_at") ?? "",
    publishedAt: optionalString(raw, "published_at"),
    files: list("files").map(readFile),
    patches: list("patches").map(readPatch),
  };
}

/** The feed's whole answer. */
export function readFeed(raw: unknown): ReleaseFeed {
  if (!isRecord(raw) || !Array.isArray(raw.releases)) {
    throw new ServiceError("the release feed's answer has no releases");
  }
  return {
    productId: optionalString(raw, "product_id") ?? "",
    channel: optionalString(raw, "channel") ?? "",
    releases: raw.releases.map(readRelease),
    update: raw.update === null || raw.update === undefined ? null : readRelease(raw.update),
  };
}

/** The file `download` fetches: the release's installer. */
export function installerOf(release: Release): ReleaseFile {
  const installer = release.files.find((file) => file.kind === "installer");
  if (installer === undefined) {
    throw new DownloadError(`release ${release.version} has no installer`);
  }
  return installer;
}

export interface DownloadOptions {
  /** Stops the download; the partial file stays (`dest + ".part"`) and the next `download` resumes it. */
  signal?: AbortSignal;
  /** Called after each chunk is written, with the bytes on disk and the file's size. */
  onProgress?: (received: number, total: number) => void;
}

export interface DownloadResult {
  /** `dest`: the verified file. */
  path: string;
  size: number;
  sha256: string;
  /** How many bytes were already on disk (a partial file from an earlier attempt) when this download began. */
  resumedFrom: number;
}

/** What a download needs of the client: the file's URL resolved, the key, the request timeout. */
export interface DownloadContext {
  url: URL;
  licenseKey: string;
  timeoutMs: number;
}

/** Asks the service for the file: it answers 303 to a presigned URL, fetched without the license key. */
async function presignedUrl(context: DownloadContext, signal: AbortSignal | undefined): Promise<URL> {
  const response = await send(
    context.url,
    { headers: { "X-License-Key": context.licenseKey }, redirect: "manual", ...(signal ? { signal } : {}) },
    context.timeoutMs,
  );
  if (response.status >= 300 && response.status < 400) {
    await response.body?.cancel();
    const location = response.headers.get("location");
    if (location === null) {
      throw new ServiceError(`the download answer ${response.status} has no Location`, { statusCode: response.status });
    }
    return new URL(location, context.url);
  }
  if (response.ok) {
    await response.body?.cancel();
    throw new ServiceError(`the download answered ${response.status} where a redirect was expected`, {
      statusCode: response.status,
    });
  }
  throw await answerError(response);
}

async function sizeOnDisk(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      return 0;
    }
    throw error;
  }
}

async function sha256Of(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) {
    hash.update(chunk as Buffer);
  }
  return hash.digest("hex");
}

/** The first byte of a 206's `Content-Range: bytes <first>-<last>/<size>`, or null. */
function rangeStart(response: Response): number | null {
  const match = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(response.headers.get("content-range") ?? "");
  return match ? Number(match[1]) : null;
}

/** Aborts when no byte has arrived for `ms`: a stalled transfer, however long the whole file takes. */
class Watchdog {
  private readonly controller = new AbortController();
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(readonly ms: number) {}

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  kick(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.controller.abort(), this.ms);
  }

  stop(): void {
    clearTimeout(this.timer);
  }
}

/**
 * Writes the body to the partial file (appending, or from its start). Returns when the body ended; throws the
 * caller's abort reason, a file-system error as it is, or `Unreachable` for a broken or stalled transfer.
 */
async function writeBody(
  body: ReadableStream<Uint8Array>,
  part: string,
  fromStart: boolean,
  total: number,
  watchdog: Watchdog,
  options: DownloadOptions,
): Promise<void> {
  const handle = await open(part, fromStart ? "w" : "a", 0o644);
  const reader = body.getReader();
  try {
    let received = (await handle.stat()).size;
    for (;;) {
      let chunk: Awaited<ReturnType<typeof reader.read>>;
      try {
        chunk = await reader.read();
      } catch (error) {
        options.signal?.throwIfAborted();
        const why = watchdog.signal.aborted
          ? `the download stalled for ${watchdog.ms} ms`
          : "the download was interrupted";
        throw new Unreachable(why, null, { cause: error });
      }
      if (chunk.done) {
        return;
      }
      watchdog.kick();
      await handle.write(chunk.value);
      received += chunk.value.byteLength;
      options.onProgress?.(received, total);
      options.signal?.throwIfAborted();
    }
  } finally {
    await reader.cancel().catch(() => undefined);
    await handle.close();
  }
}

/** How many times a download asks the service again, or resumes after an interruption, before giving up. */
const ATTEMPTS = 6;

/**
 * Downloads `file` to `dest`: into `dest + ".part"` (resuming what an earlier attempt left there with
 * `Range: bytes=<len>-`), asking the service again when the presigned URL has expired (S3 answers 403), then checks
 * the size and SHA-256 and only then renames the file to `dest`. A file that does not match is deleted.
 */
export async function downloadFile(
  file: ReleaseFile,
  dest: string,
  context: DownloadContext,
  options: DownloadOptions = {},
): Promise<DownloadResult> {
  const part = `${dest}.part`;
  let have = await sizeOnDisk(part);
  if (have > file.size) {
    await rm(part, { force: true });
    have = 0;
  }
  const resumedFrom = have;
  let location: URL | null = null;
  let lastError: unknown = null;

  for (let attempt = 0; attempt < ATTEMPTS && have < file.size; attempt += 1) {
    options.signal?.throwIfAborted();
    location ??= await presignedUrl(context, options.signal);
    const watchdog = new Watchdog(context.timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, watchdog.signal]) : watchdog.signal;
    try {
      watchdog.kick();
      // A request of its own: the license key never goes to the bucket.
      let response: Response;
      try {
        response = await fetch(location, { headers: have > 0 ? { Range: `bytes=${have}-` } : {}, signal });
      } catch (error) {
        options.signal?.throwIfAborted();
        lastError = new Unreachable("the file could not be fetched", null, { cause: error });
        location = null;
        continue;
      }
      if (response.status === 403 || response.status === 401) {
        // The presigned URL expired (they last minutes): ask the service for a fresh one.
        await response.body?.cancel();
        lastError = new ServiceError(`the file's URL was refused (${response.status})`, {
          statusCode: response.status,
        });
        location = null;
        continue;
      }
      const resumes = response.status === 206 && rangeStart(response) === have;
      if (!resumes && response.status !== 200) {
        if (response.status === 416 || response.status === 206) {
          // The bucket has fewer bytes than the partial file, or answered another range: start over.
          await response.body?.cancel();
          await rm(part, { force: true });
          have = 0;
          continue;
        }
        lastError = await answerError(response);
        if (!(lastError instanceof Unreachable)) {
          throw lastError;
        }
        continue;
      }
      if (response.body !== null) {
        // A 200 is the whole file (the server ignored the range): it replaces the partial one.
        await writeBody(response.body, part, !resumes, file.size, watchdog, options);
      }
    } catch (error) {
      if (!(error instanceof Unreachable)) {
        throw error;
      }
      lastError = error;
    } finally {
      watchdog.stop();
    }
    have = await sizeOnDisk(part);
    if (have > file.size) {
      break;
    }
  }
  options.signal?.throwIfAborted();

  if (have < file.size) {
    throw lastError instanceof Error
      ? lastError
      : new Unreachable(`the download stopped at ${have} of ${file.size} bytes`);
  }
  await (await open(part, "a")).close(); // an empty file has nothing to fetch, but is verified all the same
  const sha256 = await sha256Of(part);
  if (have !== file.size || sha256 !== file.sha256) {
    await rm(part, { force: true });
    throw new DownloadError(
      have !== file.size
        ? `${file.name}: ${have} bytes where the release says ${file.size}; the file was deleted`
        : `${file.name}: SHA-256 ${sha256} where the release says ${file.sha256}; the file was deleted`,
    );
  }
  await rename(part, dest);
  return { path: dest, size: have, sha256, resumedFrom };
}
