// One build at a time per output directory (they share the .deb cache and the image paths).
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { processAlive } from "../../src/core";

/** Runs `fn` holding `path` (a file holding the holder's pid); waits for a live holder, takes over from a dead one. */
export async function withLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
  let waiting = false;
  for (;;) {
    try {
      writeFileSync(path, String(process.pid), { flag: "wx" });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const holder = Number(readFileSync(path, "utf8").trim() || "0");
    if (!holder || !processAlive(holder)) {
      rmSync(path, { force: true }); // left by a build that died
      continue;
    }
    if (!waiting) console.log(`runtime: waiting for the build in process ${holder} (${path})`);
    waiting = true;
    await Bun.sleep(500);
  }
  try {
    return await fn();
  } finally {
    rmSync(path, { force: true });
  }
}
