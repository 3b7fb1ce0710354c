// Small helpers shared by the suites.
import { afterAll, beforeAll, expect } from "bun:test";
import { readFileSync } from "node:fs";
import { ReapiClient, RpcError } from "./client";
import { startServer, type ServerProcess } from "./server";

/** Waits, up to ms, for something an event on the server makes true (a file gone, a log line); its last answer. */
export async function waitUntil(check: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await Bun.sleep(20)) if (await check()) return true;
  return check();
}

/** A process's resident memory, in MiB. */
export function rssMiB(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]) / 1024;
}

/** Awaits a call that must fail with a gRPC status, and returns that failure. */
export async function rejects(p: Promise<unknown>): Promise<RpcError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof RpcError) return err;
    throw err;
  }
  throw new Error("expected the call to fail");
}

let seed = Math.floor(Math.random() * 1e9);
/** Fast pseudo-random bytes, different on every call, so no test sees another's blob. */
export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = (seed++ * 2654435761) | 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** One server and one client for a whole suite; the server must stop cleanly (exit 0) at the end. */
export function suiteServer(): { readonly server: ServerProcess; readonly client: ReapiClient } {
  const state = {} as { server: ServerProcess; client: ReapiClient };
  beforeAll(async () => {
    state.server = await startServer();
    state.client = new ReapiClient(state.server.address);
  });
  afterAll(async () => {
    state.client.close();
    expect(await state.server.stop()).toBe(0);
  });
  return state;
}
