// File-system chores shared by the layers: removing a tree that an action may have made read-only.
import { chmodSync, lstatSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "./log";

/** rm -rf that also gets through directories an action made read-only; says so when it cannot. */
export function removeTree(path: string, log: Logger): void {
  try {
    rmSync(path, { recursive: true, force: true });
  } catch {
    try {
      makeWritable(path);
      rmSync(path, { recursive: true, force: true });
    } catch (err) {
      log.warn(`cannot remove ${path}: ${(err as Error).message}`);
    }
  }
}

/** removeTree in the I/O thread pool; falls back to the synchronous one for read-only leftovers. */
export async function removeTreeAsync(path: string, log: Logger): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true });
  } catch {
    removeTree(path, log);
  }
}

function makeWritable(path: string): void {
  const st = lstatSync(path, { throwIfNoEntry: false });
  if (!st?.isDirectory()) return;
  chmodSync(path, 0o700);
  for (const name of readdirSync(path)) makeWritable(join(path, name));
}

/** Writes a whole file under a temporary name and renames it into place: readers see the old file or the new one, never half of one. */
export function writeFileAtomically(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** True while a process with this pid exists (ours or not). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
