/**
 * A stable id for this machine, per product: the SHA-256 of the product id and the OS's own machine id, so the
 * service never sees a hardware serial and two products of one machine cannot be linked. A convenience, not a
 * defence: anyone who controls the machine can make it report any id.
 */

import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";

import { dataHome } from "./store.js";

export interface MachineIdOptions {
  /** Where the random fallback id is kept when the OS has no machine id; default `<data home>/keystead`. */
  dataDir?: string;
}

function run(command: string, args: string[]): Promise<string | null> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: 5000, windowsHide: true }, (error, stdout) => {
      resolve(error ? null : String(stdout));
    });
  });
}

async function firstLine(path: string): Promise<string | null> {
  try {
    const text = (await readFile(path, "utf8")).trim();
    return text === "" ? null : text;
  } catch {
    return null;
  }
}

/**
 * The OS's machine id, or null: `/etc/machine-id` (or D-Bus's copy) on Linux, `IOPlatformUUID` on macOS,
 * `MachineGuid` on Windows. Not to be sent anywhere as it is: `machineId` hashes it.
 */
export async function osMachineId(): Promise<string | null> {
  switch (process.platform) {
    case "darwin": {
      const out = await run("ioreg", ["-rd1", "-c", "IOPlatformExpertDevice"]);
      return out?.match(/"IOPlatformUUID"\s*=\s*"([^"]+)"/)?.[1] ?? null;
    }
    case "win32": {
      // /reg:64: a 32-bit Node would otherwise read the WOW64 view, which has no MachineGuid.
      const out = await run("reg", [
        "query",
        "HKLM\\SOFTWARE\\Microsoft\\Cryptography",
        "/v",
        "MachineGuid",
        "/reg:64",
      ]);
      return out?.match(/MachineGuid\s+REG_SZ\s+(\S+)/)?.[1] ?? null;
    }
    default:
      return (await firstLine("/etc/machine-id")) ?? (await firstLine("/var/lib/dbus/machine-id"));
  }
}

/** A random id kept in `dir/machine-id`, made once (the first writer wins if two processes race). */
export async function fallbackMachineId(dir: string): Promise<string> {
  const path = join(dir, "machine-id");
  const existing = await firstLine(path);
  if (existing !== null) {
    return existing;
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  try {
    await writeFile(path, `${randomBytes(16).toString("hex")}\n`, { flag: "wx", mode: 0o600 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") {
      throw error;
    }
  }
  const made = await firstLine(path);
  if (made === null) {
    throw new Error(`could not read the machine id kept in ${path}`);
  }
  return made;
}

/** The id `productId` uses for a machine whose OS id is `raw`: sha256 hex of `productId + ":" + raw`. */
export function hashMachineId(productId: string, raw: string): string {
  return createHash("sha256").update(`${productId}:${raw}`).digest("hex");
}

/**
 * This machine's id for a product: sha256 hex of `productId:<the OS machine id>`, or of a random id kept in the
 * data directory when the OS has none. Stable across runs and reinstalls of the app; different for each product.
 */
export async function machineId(productId: string, options: MachineIdOptions = {}): Promise<string> {
  const raw = (await osMachineId()) ?? (await fallbackMachineId(options.dataDir ?? join(dataHome(), "keystead")));
  return hashMachineId(productId, raw);
}
