// The host's download service (what serve-vm's guest downloads through) is bounded: at most
// MAX_SERVICE_DOWNLOADS at once, the next one told so at once, and a finished or abandoned
// download gives its place back.
import { afterAll, expect, test } from "bun:test";
import { join } from "node:path";
import { createLogger } from "../src/core";
import { MAX_SERVICE_DOWNLOADS, directDownload, downloadThrough, serveDownloads } from "../src/fetch";
import { tempDir } from "./support/server";

const held: (() => void)[] = [];
const origin = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  // Each answer waits until the test lets it go.
  fetch: () => new Promise<Response>((resolve) => held.push(() => resolve(new Response("bytes")))),
});
const socket = join(tempDir("actiond-downloads-bound-"), "downloads.sock");
const service = serveDownloads(socket, createLogger("error"), directDownload, "off");
const download = downloadThrough(socket, "the test's download service");
afterAll(() => {
  service.stop();
  origin.stop(true);
});

test(`at most ${MAX_SERVICE_DOWNLOADS} downloads run at once; the next is refused at once, and places come back`, async () => {
  const uri = `http://127.0.0.1:${origin.port}/slow`;
  const aborts = Array.from({ length: MAX_SERVICE_DOWNLOADS }, () => new AbortController());
  const running = aborts.map((a) => download(uri, { headers: {}, signal: a.signal }).catch((e: Error) => e));
  while (held.length < MAX_SERVICE_DOWNLOADS) await Bun.sleep(10);
  const t0 = performance.now();
  const refused = await download(uri, { headers: {}, signal: AbortSignal.timeout(5000) }).catch((e: Error) => e);
  expect(refused).toBeInstanceOf(Error);
  expect((refused as Error).message).toBe(`${MAX_SERVICE_DOWNLOADS} downloads are already running here; try again shortly`);
  expect(performance.now() - t0).toBeLessThan(1000);
  // One finishes, one is abandoned by its caller: two places free again.
  held.shift()!();
  expect(await ((await running[0]) as Response).text()).toBe("bytes");
  aborts[1]!.abort();
  await running[1];
  // The next two are taken (they reach the origin), and a third is refused again.
  const before = held.length;
  const more = [0, 1].map(() => download(uri, { headers: {}, signal: AbortSignal.timeout(5000) }).catch((e: Error) => e));
  while (held.length < before + 2) await Bun.sleep(10);
  expect((await download(uri, { headers: {}, signal: AbortSignal.timeout(5000) }).catch((e: Error) => e)) as Error).toBeInstanceOf(Error);
  running.push(...more);
  for (const release of held.splice(0)) release();
  await Promise.all(running);
});
