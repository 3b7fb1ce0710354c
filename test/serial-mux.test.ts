// The serial multiplexer serve-vm uses with QEMU when there is no vhost-vsock: the host end
// (src/vmhost/serial-mux.ts) and the guest end (actiond-vsock-relay --serial), joined here by a Unix
// socket standing in for the virtio-serial port. Streams must carry bytes both ways, intact and
// concurrently, pass half-closes on, and a real gRPC client must reach a real server through them.
// The guest opens streams too (--dial): a connection to its dial socket reaches the host's service.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createServer, connect, type Server, type Socket } from "node:net";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { SerialMux } from "../src/vmhost/serial-mux";
import { ReapiClient, sha256 } from "./support/client";
import { randomBytes } from "./support/helpers";
import { MAIN, REPO, tempDir } from "./support/server";
import { GetCapabilitiesRequestSchema } from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb";

const RELAY = join(REPO, "build/shim/actiond-vsock-relay");
const dir = tempDir("actiond-mux-");
const listenOn = (server: Server, path: string) => new Promise<void>((resolve) => server.listen(path, () => resolve()));

let relay: Subprocess;
const earlyReceived: number[] = [];
let actiond: Subprocess;
let mux: SerialMux;
const fronts: Server[] = [];

/** A TCP listener whose every connection becomes a stream to `guestPort`. */
async function front(guestPort: number): Promise<number> {
  const server = createServer({ allowHalfOpen: true }, (client) => mux.join(client, guestPort));
  fronts.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return (server.address() as { port: number }).port;
}

beforeAll(async () => {
  // Guest side: an echo server (answers after the client's half-close too) and a real actiond.
  const echo = createServer({ allowHalfOpen: true }, (s) => {
    s.pipe(s);
  });
  await listenOn(echo, join(dir, "echo.sock"));
  // A server that answers at once and half-closes, then reads on: whatever the host sent must still
  // arrive whole, though the stream is half-closed from this side and the host closes its end soon.
  const early = createServer({ allowHalfOpen: true }, (s) => {
    s.end("ok");
    let n = 0;
    s.on("data", (d: Buffer) => (n += d.length));
    s.on("end", () => earlyReceived.push(n));
  });
  await listenOn(early, join(dir, "early.sock"));
  actiond = Bun.spawn([process.execPath, MAIN, "serve", "--listen", `unix:${join(dir, "actiond.sock")}`, "--root", join(dir, "root")], { stdout: "ignore", stderr: "pipe" });

  // The "serial port": the relay connects to it, and the host end of the mux speaks over it.
  const port = createServer();
  const relayConnected = new Promise<Socket>((resolve) => port.once("connection", resolve));
  await listenOn(port, join(dir, "port.sock"));
  // Host side: a service the guest dials (it answers in upper case, after the guest's half-close).
  const service = createServer({ allowHalfOpen: true }, (s) => {
    const got: Buffer[] = [];
    s.on("data", (d: Buffer) => got.push(d));
    s.on("end", () => s.end(Buffer.concat(got).toString().toUpperCase()));
  });
  await listenOn(service, join(dir, "host-service.sock"));
  relay = Bun.spawn(
    [RELAY, "--serial", join(dir, "port.sock"), "--map", `7000=${join(dir, "echo.sock")}`, "--map", `7002=${join(dir, "actiond.sock")}`, "--map", `7003=${join(dir, "early.sock")}`,
      "--dial", `${join(dir, "dial.sock")}=8990`, "--dial", `${join(dir, "dial-nothing.sock")}=8991`],
    { stdout: "ignore", stderr: "inherit" },
  );
  mux = new SerialMux(await relayConnected, [{ port: 8990, path: join(dir, "host-service.sock") }]);
  for (let i = 0; i < 100 && !(await Bun.file(join(dir, "actiond.sock")).exists()); i++) await Bun.sleep(100);
});

afterAll(async () => {
  relay?.kill();
  actiond?.kill("SIGTERM");
  await actiond?.exited;
  for (const f of fronts) f.close();
});

/** Sends `data`, half-closes, and collects everything that comes back until the stream ends. */
function roundTrip(to: number | string, data: Uint8Array): Promise<{ back: Buffer; closedEarly: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const where = typeof to === "number" ? { port: to, host: "127.0.0.1" } : { path: to };
    const s = connect({ ...where, allowHalfOpen: true }, () => s.end(data));
    s.on("data", (d: Buffer) => chunks.push(d));
    s.on("end", () => resolve({ back: Buffer.concat(chunks), closedEarly: false }));
    s.on("close", () => resolve({ back: Buffer.concat(chunks), closedEarly: true }));
    s.on("error", () => resolve({ back: Buffer.concat(chunks), closedEarly: true }));
  });
}

describe("serial multiplexer", () => {
  test("16 streams at once carry 2 MiB each way, intact, and half-closes pass through", async () => {
    const port = await front(7000);
    const payloads = Array.from({ length: 16 }, () => randomBytes(2 * 1024 * 1024));
    const results = await Promise.all(payloads.map((p) => roundTrip(port, p)));
    for (const [i, r] of results.entries()) expect({ i, size: r.back.length, hash: sha256(r.back).hash }).toEqual({ i, size: payloads[i]!.length, hash: sha256(payloads[i]!).hash });
  }, 60_000);

  test("a side that half-closes first still gets everything the other side sends after", async () => {
    const port = await front(7003);
    const results = await Promise.all(Array.from({ length: 4 }, () => roundTrip(port, randomBytes(4 * 1024 * 1024))));
    for (const r of results) expect(r.back.toString()).toBe("ok");
    for (let i = 0; i < 100 && earlyReceived.length < 4; i++) await Bun.sleep(50);
    expect(earlyReceived).toEqual([4, 4, 4, 4].map((m) => m * 1024 * 1024));
  }, 60_000);

  test("a stream to a port with nothing behind it is closed, and the others go on", async () => {
    const nothing = await front(7001);
    const r = await roundTrip(nothing, new TextEncoder().encode("hello?"));
    expect(r.back.length).toBe(0); // and it ended (or was reset): roundTrip resolved
    const echo = await front(7000);
    expect((await roundTrip(echo, new TextEncoder().encode("still here"))).back.toString()).toBe("still here");
    expect(relay.exitCode).toBeNull();
  });

  test("a gRPC client reaches actiond through it: capabilities, and a 8 MiB blob up and down", async () => {
    const port = await front(7002);
    const client = new ReapiClient(`127.0.0.1:${port}`);
    const caps = await client.unary(client.caps, "getCapabilities", GetCapabilitiesRequestSchema, {});
    expect(caps.executionCapabilities?.execEnabled).toBe(true);
    const blob = randomBytes(8 * 1024 * 1024);
    const hash = sha256(blob).hash;
    await client.upload(`uploads/${crypto.randomUUID()}/blobs/${hash}/${blob.length}`, blob);
    const back = await client.read(`blobs/${hash}/${blob.length}`);
    expect(sha256(back.data).hash).toBe(hash);
    client.close();
    // Every stream the client opened is gone once it hung up.
    for (let i = 0; i < 50 && mux.openStreams > 0; i++) await Bun.sleep(50);
    expect(mux.openStreams).toBe(0);
  }, 60_000);

  test("a connection the guest makes to its dial socket reaches the host's service for that port; one to a port nothing serves is closed", async () => {
    const answers = await Promise.all(["first", "second", "third"].map((w) => roundTrip(join(dir, "dial.sock"), new TextEncoder().encode(w))));
    expect(answers.map((a) => a.back.toString())).toEqual(["FIRST", "SECOND", "THIRD"]);
    const big = randomBytes(3 * 1024 * 1024).map((b) => 97 + (b % 26));
    const back = await roundTrip(join(dir, "dial.sock"), big);
    expect(back.back.toString()).toBe(Buffer.from(big).toString().toUpperCase());
    expect((await roundTrip(join(dir, "dial-nothing.sock"), new TextEncoder().encode("anyone?"))).back.length).toBe(0);
    // And the host's own streams still work.
    expect((await roundTrip(await front(7000), new TextEncoder().encode("still here"))).back.toString()).toBe("still here");
    for (let i = 0; i < 50 && mux.openStreams > 0; i++) await Bun.sleep(50);
    expect(mux.openStreams).toBe(0);
  }, 60_000);
});
