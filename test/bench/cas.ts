// Benchmark of the CAS and action-cache paths of a real `actiond serve`. Each figure stands next to
// the raw limits of this machine, measured in the same run on the same bytes: in-process hashing
// and a plain loopback TCP copy to another process; and next to bazel-remote (Go) answering the same
// calls from the same client, when it is built (bash test/tools/build-tools.sh). These machines are
// noisy, so every figure is the median of several repetitions, and actiond, bazel-remote and the raw
// measurements are interleaved (which server goes first alternates).
//
//   bun test/bench/cas.ts     prints a table, then a JSON summary on the last line
//
// Not a `bun test` file: it only checks that every call did what it should.
import { randomBytes, randomUUID } from "node:crypto";
import { once } from "node:events";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { cpus } from "node:os";
import { connect, createServer, type Server } from "node:net";
import { create, toBinary } from "@bufbuild/protobuf";
import { createBLAKE3 } from "hash-wasm";
import {
  ActionResultSchema,
  BatchUpdateBlobsRequestSchema,
  FindMissingBlobsRequestSchema,
  FindMissingBlobsResponseSchema,
  GetActionResultRequestSchema,
  GetCapabilitiesRequestSchema,
  UpdateActionResultRequestSchema,
  type ActionResult,
  type Digest,
} from "../../src/gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { ReapiClient, digestOf } from "../support/client";
import { BAZEL_REMOTE, bazelRemote, type Peer } from "../support/peers";
import { startServer } from "../support/server";

const KiB = 1024;
const MiB = 1024 * KiB;
/** ByteStream Write chunk: the test client's default (64 KiB); one extra row shows 1 MiB. */
const WRITE_CHUNK = 64 * KiB;

// ---------- what is measured ----------

interface Row {
  name: string;
  unit: "MiB/s" | "blobs/s" | "ms";
  /** Work done per repetition, to turn a duration into a rate: bytes (MiB/s) or blobs (blobs/s). */
  work: number;
  hashFn: string;
  /** Durations per repetition, in ms: through the server, hashing in-process, copying over TCP. */
  ms: number[];
  hashMs: number[];
  tcpMs: number[];
  /** CPU both processes spent during the counted server calls, to tell which side is the bottleneck. */
  cpu: Cpu;
  /** The same calls answered by bazel-remote, when it ran. */
  peerMs: number[];
  peerCpu: Cpu;
}

function newRow(name: string, unit: Row["unit"], work: number, hashFn: string): Row {
  return { name, unit, work, hashFn, ms: [], hashMs: [], tcpMs: [], cpu: { wallMs: 0, serverMs: 0, clientMs: 0 }, peerMs: [], peerCpu: { wallMs: 0, serverMs: 0, clientMs: 0 } };
}

/** A server under test: actiond, or bazel-remote beside it. */
interface Target {
  name: string;
  c: ReapiClient;
  /** Its process, to read its CPU time. */
  pid: number;
  peer: boolean;
}

/** Both servers, in the order of this repetition: which goes first alternates. */
const inTurn = (targets: Target[], rep: number) => (rep % 2 === 0 ? targets : [...targets].reverse());

async function main() {
  const started = performance.now();
  const server = await startServer();
  const peer = await startTcpPeer();
  const c = new ReapiClient(server.address);
  const targets: Target[] = [{ name: "actiond", c, pid: server.proc.pid, peer: false }];
  let remote: Peer | undefined;
  if (existsSync(BAZEL_REMOTE)) {
    // Its disk cache on the same disk as actiond's; its 2 GiB hold every blob of the run.
    remote = await bazelRemote();
    await remote.start();
    targets.push({ name: "bazel-remote", c: new ReapiClient(remote.address), pid: remote.pid, peer: true });
  } else console.error(`[bench] no bazel-remote column: ${BAZEL_REMOTE} is not built (bash test/tools/build-tools.sh)`);
  const rows: Row[] = [];
  try {
    // Batches that fit every server's limit.
    let maxBatch = Infinity;
    for (const t of targets) {
      const caps = await t.c.unary(t.c.caps, "getCapabilities", GetCapabilitiesRequestSchema, {});
      maxBatch = Math.min(maxBatch, Number(caps.cacheCapabilities.maxBatchTotalSizeBytes) || Infinity);
    }

    rows.push(...(await byteStream(targets, peer, { size: MiB, reps: 25, warmup: 3, chunk: WRITE_CHUNK, fn: "sha256" })));
    rows.push(...(await byteStream(targets, peer, { size: 64 * MiB, reps: 9, chunk: WRITE_CHUNK, fn: "sha256" })));
    rows.push(...(await byteStream(targets, peer, { size: 64 * MiB, reps: 7, chunk: MiB, fn: "sha256", writeOnly: true })));
    rows.push(...(await byteStream(targets.slice(0, 1), peer, { size: 64 * MiB, reps: 7, chunk: WRITE_CHUNK, fn: "blake3", writeOnly: true })));
    const batch = await batchUpdate(targets, peer, maxBatch, 7);
    rows.push(batch.row);
    rows.push(await findMissing(targets, peer, batch.stored, 11));
    rows.push(...(await getActionResult(targets, peer, batch.stored, 5)));
  } finally {
    for (const t of targets) t.c.close();
    await remote?.stop();
    peer.proc.kill();
    const code = await server.stop();
    rmSync(server.root, { recursive: true, force: true });
    // A fast server that logged warnings is not a result.
    const complaints = server.log().split("\n").filter((l) => / (WARN|ERROR) /.test(l));
    if (code !== 0 || complaints.length > 0) console.error(`server exited with ${code}; warnings:\n${complaints.join("\n")}`);
  }
  printTable(rows);
  console.log("JSON summary:");
  console.log(JSON.stringify(summary(rows, (performance.now() - started) / 1000)));
}

/** ByteStream Write then Read of fresh random blobs; each repetition is one blob of `size`. */
async function byteStream(
  targets: Target[],
  peer: TcpPeer,
  o: { size: number; reps: number; warmup?: number; chunk: number; fn: "sha256" | "blake3"; writeOnly?: boolean },
): Promise<Row[]> {
  const label = `${fmtSize(o.size)}${o.fn === "blake3" ? " blake3" : ""} (${fmtSize(o.chunk)} chunks)`;
  progress(`ByteStream ${label}`);
  const write = newRow(`Write ${label}`, "MiB/s", o.size, o.fn);
  const read = newRow(`Read ${fmtSize(o.size)}`, "MiB/s", o.size, o.fn);
  const hash = await hasher(o.fn);
  // The first repetitions warm up the JIT, the connection and the disk paths, and are not counted.
  const warmup = o.warmup ?? 1;
  for (let rep = 0; rep < warmup + o.reps; rep++) {
    const blob = randomBytes(o.size); // distinct every time, so no write is an early-finish hit
    const [hashMs, hex] = timed(() => hash(blob));
    const tcpMs = await peer.copy(blob);
    const blobName = `blobs/${o.fn === "blake3" ? "blake3/" : ""}${hex}/${o.size}`;
    for (const t of inTurn(targets, rep)) {
      const resource = `uploads/${randomUUID()}/${blobName}`;
      const [writeCpu, committed] = await metered(t, () => t.c.upload(resource, blob, o.chunk));
      check(committed === BigInt(o.size), `${t.name}: Write committed ${committed} of ${o.size}`);
      if (rep >= warmup) push(write, t, writeCpu, hashMs, tcpMs);
    }
    if (o.writeOnly) continue;

    const readTcpMs = await peer.copy(blob);
    for (const t of inTurn(targets, rep)) {
      const [readCpu, got] = await metered(t, () => t.c.read(blobName));
      // Hashing what came back both checks it and times the hash a verifying client would pay.
      const [readHashMs, back] = timed(() => hash(got.data));
      check(back === hex, `${t.name}: Read returned different bytes for ${hex}`);
      if (rep >= warmup) push(read, t, readCpu, readHashMs, readTcpMs);
    }
  }
  return o.writeOnly ? [write] : [write, read];
}

/** BatchUpdateBlobs of fresh 1 KiB blobs, in sequential batches that fit max_batch_total_size_bytes. */
async function batchUpdate(targets: Target[], peer: TcpPeer, maxBatch: number, reps: number) {
  const count = 10_000;
  const size = KiB;
  progress(`BatchUpdateBlobs ${count} x ${fmtSize(size)}`);
  const row = newRow(`BatchUpdateBlobs ${count / 1000}k x 1 KiB`, "blobs/s", count, "sha256");
  const stored: Digest[] = [];
  for (let rep = 0; rep <= reps; rep++) {
    const bytes = randomBytes(count * size);
    const blobs = Array.from({ length: count }, (_, i) => bytes.subarray(i * size, (i + 1) * size));
    // One hasher per blob, as the server does.
    const [hashMs, hexes] = timed(() => blobs.map((b) => new Bun.CryptoHasher("sha256").update(b).digest("hex")));
    const tcpMs = await peer.copy(bytes);
    const requests = blobs.map((data, i) => ({ digest: digestOf(hexes[i]!, size), data }));
    for (const t of inTurn(targets, rep)) {
      const [cpu] = await metered(t, async () => {
        for (const batch of batches(requests, maxBatch)) {
          const res = await t.c.unary(t.c.cas, "batchUpdateBlobs", BatchUpdateBlobsRequestSchema, { requests: batch });
          const failed = res.responses.filter((r: any) => r.status?.code !== 0);
          check(res.responses.length === batch.length && failed.length === 0, `${t.name}: BatchUpdateBlobs: ${failed.length} failed, e.g. ${failed[0]?.status?.message}`);
        }
      });
      if (rep > 0) push(row, t, cpu, hashMs, tcpMs);
    }
    stored.push(...requests.map((r) => r.digest));
  }
  return { row, stored };
}

/** Splits requests so blob bytes plus a per-digest allowance stay under the advertised limit. */
function batches<T extends { digest: Digest; data: Uint8Array }>(requests: T[], maxBatch: number): T[][] {
  const out: T[][] = [];
  let cur: T[] = [];
  let bytes = 0;
  for (const r of requests) {
    const n = r.data.length + r.digest.hash.length + 16;
    if (bytes + n > maxBatch && cur.length > 0) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(r);
    bytes += n;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/** One FindMissingBlobs of 15,000 digests, half stored and half not, interleaved. */
async function findMissing(targets: Target[], peer: TcpPeer, stored: Digest[], reps: number): Promise<Row> {
  const half = 7_500;
  progress(`FindMissingBlobs ${2 * half} digests`);
  const absent = Array.from({ length: half }, () => digestOf(randomBytes(32).toString("hex"), KiB));
  const digests = absent.flatMap((a, i) => [stored[i]!, a]);
  // The raw limits get the same bytes as the call: request and response as serialized on the wire.
  const wire = Buffer.concat([
    toBinary(FindMissingBlobsRequestSchema, create(FindMissingBlobsRequestSchema, { blobDigests: digests })),
    toBinary(FindMissingBlobsResponseSchema, create(FindMissingBlobsResponseSchema, { missingBlobDigests: absent })),
  ]);
  const row = newRow(`FindMissingBlobs ${(2 * half) / 1000}k digests`, "ms", 1, "sha256");
  for (let rep = 0; rep <= reps; rep++) {
    const [hashMs] = timed(() => new Bun.CryptoHasher("sha256").update(wire).digest("hex"));
    const tcpMs = await peer.copy(wire);
    for (const t of inTurn(targets, rep)) {
      const [cpu, res] = await metered(t, () => t.c.unary(t.c.cas, "findMissingBlobs", FindMissingBlobsRequestSchema, { blobDigests: digests }));
      check(res.missingBlobDigests.length === half, `${t.name}: FindMissingBlobs reported ${res.missingBlobDigests.length} missing, not ${half}`);
      if (rep > 0) push(row, t, cpu, hashMs, tcpMs);
    }
  }
  return row;
}

/** p50 and p99 of sequential GetActionResult hits, against TCP round trips of the response's size. */
async function getActionResult(targets: Target[], peer: TcpPeer, stored: Digest[], reps: number): Promise<Row[]> {
  const calls = 2_000;
  progress(`GetActionResult ${calls} sequential calls x ${reps}`);
  const actionDigest = digestOf(new Bun.CryptoHasher("sha256").update(randomBytes(200)).digest("hex"), 200);
  const result: Partial<ActionResult> = {
    exitCode: 0,
    outputFiles: ["a.o", "b.o", "lib.a"].map((name, i) => ({ path: `bazel-out/k8-fastbuild/bin/pkg/${name}`, digest: stored[i] })) as any,
    stdoutDigest: stored[3],
  };
  for (const t of targets) await t.c.unary(t.c.ac, "updateActionResult", UpdateActionResultRequestSchema, { actionDigest, actionResult: result as any });
  const response = toBinary(ActionResultSchema, create(ActionResultSchema, result as any));
  const call = (t: Target) => t.c.unary(t.c.ac, "getActionResult", GetActionResultRequestSchema, { actionDigest });

  const p50 = newRow("GetActionResult p50", "ms", 1, "sha256");
  const p99 = newRow("GetActionResult p99", "ms", 1, "sha256");
  for (const t of targets) for (let i = 0; i < 200; i++) await call(t); // warm-up
  for (let rep = 0; rep < reps; rep++) {
    const tcp = await peer.roundTrips(response, calls);
    const hash = Array.from({ length: calls }, () => timed(() => new Bun.CryptoHasher("sha256").update(response).digest("hex"))[0]);
    for (const t of inTurn(targets, rep)) {
      const lat: number[] = [];
      const [cpu] = await metered(t, async () => {
        for (let i = 0; i < calls; i++) {
          const t0 = performance.now();
          const res = await call(t);
          lat.push(performance.now() - t0);
          if (i === 0) check(res.outputFiles.length === 3, `${t.name}: GetActionResult lost output files`);
        }
      });
      push(p50, t, cpu, quantile(hash, 0.5), quantile(tcp, 0.5), quantile(lat, 0.5));
      push(p99, t, cpu, quantile(hash, 0.99), quantile(tcp, 0.99), quantile(lat, 0.99));
    }
  }
  return [p50, p99];
}

// ---------- raw limits ----------

async function hasher(fn: "sha256" | "blake3"): Promise<(data: Uint8Array) => string> {
  if (fn === "sha256") return (data) => new Bun.CryptoHasher("sha256").update(data).digest("hex");
  // hash-wasm, as the server uses: one compiled instance, reset per blob.
  const h = await createBLAKE3();
  return (data) => h.init().update(data).digest("hex");
}

interface TcpPeer {
  proc: ReturnType<typeof Bun.spawn>;
  /** ms from the first byte sent until the peer confirms it received all of them. */
  copy(data: Uint8Array): Promise<number>;
  /** ms of each of n sequential round trips of msg through the peer's echo. */
  roundTrips(msg: Uint8Array, n: number): Promise<number[]>;
}

/** The receiving end runs in its own process, like the server, so both sides cost what they would. */
async function startTcpPeer(): Promise<TcpPeer> {
  const proc = Bun.spawn([process.execPath, import.meta.path, "--tcp-peer"], { stdout: "pipe", stderr: "inherit" });
  const { value } = await proc.stdout.getReader().read();
  const ports = JSON.parse(new TextDecoder().decode(value)) as { sink: number; echo: number };
  const open = async (port: number) => {
    const s = connect(port, "127.0.0.1");
    await once(s, "connect");
    s.setNoDelay(true);
    return s;
  };
  return {
    proc,
    async copy(data) {
      const s = await open(ports.sink);
      const reply = new Promise<string>((res, rej) => {
        let text = "";
        s.on("data", (b: Buffer) => (text += b));
        s.on("end", () => res(text));
        s.on("error", rej);
      });
      const t0 = performance.now();
      for (let off = 0; off < data.length; off += MiB) {
        if (!s.write(data.subarray(off, off + MiB))) await once(s, "drain");
      }
      s.end();
      const n = Number(await reply);
      const ms = performance.now() - t0;
      s.destroy();
      check(n === data.length, `TCP peer received ${n} of ${data.length} bytes`);
      return ms;
    },
    async roundTrips(msg, n) {
      const s = await open(ports.echo);
      let pending = msg.length;
      let wake = () => {};
      s.on("data", (b: Buffer) => {
        pending -= b.length;
        if (pending <= 0) wake();
      });
      const out: number[] = [];
      for (let i = 0; i < n; i++) {
        pending = msg.length;
        const back = new Promise<void>((r) => (wake = r));
        const t0 = performance.now();
        s.write(msg);
        await back;
        out.push(performance.now() - t0);
      }
      s.destroy();
      return out;
    },
  };
}

/** Child process: a sink that counts bytes until the sender ends, and an echo for round trips. */
async function tcpPeer() {
  const sink = createServer((s) => {
    let n = 0;
    s.on("data", (b: Buffer) => (n += b.length));
    s.on("end", () => s.end(String(n)));
  });
  const echo = createServer((s) => {
    s.setNoDelay(true);
    s.on("data", (b: Buffer) => s.write(b));
  });
  for (const srv of [sink, echo]) srv.listen(0, "127.0.0.1");
  await Promise.all([once(sink, "listening"), once(echo, "listening")]);
  const port = (srv: Server) => (srv.address() as { port: number }).port;
  console.log(JSON.stringify({ sink: port(sink), echo: port(echo) }));
}

// ---------- small helpers ----------

function timed<T>(fn: () => T): [number, T] {
  const t0 = performance.now();
  const out = fn();
  return [performance.now() - t0, out];
}

interface Cpu {
  wallMs: number;
  serverMs: number;
  clientMs: number;
}

/** Runs a call through a server: its wall time, and the CPU time each process spent meanwhile. */
async function metered<T>(t: Target, fn: () => Promise<T>): Promise<[Cpu, T]> {
  const [s0, c0, t0] = [serverCpuMs(t.pid), clientCpuMs(), performance.now()];
  const out = await fn();
  return [{ wallMs: performance.now() - t0, serverMs: serverCpuMs(t.pid) - s0, clientMs: clientCpuMs() - c0 }, out];
}

/** All threads of a server, from /proc: utime + stime, in ticks of 10 ms (USER_HZ is 100). */
function serverCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

function clientCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** Records one counted repetition of one server; ms defaults to the call's wall time. */
function push(row: Row, t: Target, cpu: Cpu, hashMs: number, tcpMs: number, ms = cpu.wallMs) {
  const total = t.peer ? row.peerCpu : row.cpu;
  if (t.peer) row.peerMs.push(ms);
  else {
    row.ms.push(ms);
    row.hashMs.push(hashMs);
    row.tcpMs.push(tcpMs);
  }
  total.wallMs += cpu.wallMs;
  total.serverMs += cpu.serverMs;
  total.clientMs += cpu.clientMs;
}

/** CPU time as a share of one core during the calls: near 100% means that side is the bottleneck. */
const busy = (cpu: Cpu, side: "serverMs" | "clientMs") => Math.round((100 * cpu[side]) / cpu.wallMs);

/** How actiond compares with bazel-remote: above 1 is better (a higher rate, a shorter time). */
const vsPeer = (row: Row) => (row.unit === "ms" ? median(row.peerMs) / median(row.ms) : inUnit(row, median(row.ms)) / inUnit(row, median(row.peerMs)));

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

const median = (xs: number[]) => quantile(xs, 0.5);

/** A duration as the row's unit: a rate for MiB/s and blobs/s, itself for ms. */
function inUnit(row: Row, ms: number): number {
  if (row.unit === "MiB/s") return row.work / MiB / (ms / 1000);
  if (row.unit === "blobs/s") return row.work / (ms / 1000);
  return ms;
}

/** Fraction of the TCP copy's speed the server reaches: 1 would be as fast as a plain socket. */
const ratio = (row: Row) => median(row.tcpMs) / median(row.ms);

function check(ok: boolean, what: string): asserts ok {
  if (!ok) throw new Error(`sanity check failed: ${what}`);
}

function progress(what: string) {
  console.error(`[bench] ${what}...`);
}

function fmtSize(n: number): string {
  return n >= MiB ? `${n / MiB} MiB` : `${n / KiB} KiB`;
}

function fmt(x: number): string {
  if (x >= 100) return Math.round(x).toLocaleString("en-US");
  return x >= 1 ? x.toFixed(1) : x.toPrecision(2);
}

function printTable(rows: Row[]) {
  console.log(`\nactiond CAS benchmark: bun ${Bun.version}, ${cpus().length} CPUs, medians of the repetitions shown`);
  const name = Math.max(...rows.map((r) => r.name.length));
  for (const r of rows) {
    const cell = (ms: number[]) => `${fmt(inUnit(r, median(ms)))} ${r.unit}`;
    console.log(
      [
        `${r.name.padEnd(name)}  ${cell(r.ms).padStart(14)}`,
        `${r.hashFn} ${cell(r.hashMs)}`.padEnd(22),
        `tcp ${cell(r.tcpMs)}`.padEnd(20),
        `ratio to tcp ${ratio(r).toFixed(2)}`,
        `cpu server ${busy(r.cpu, "serverMs")}% client ${busy(r.cpu, "clientMs")}%`,
        r.peerMs.length === 0 ? "bazel-remote -".padEnd(50) : `bazel-remote ${cell(r.peerMs)} (cpu ${busy(r.peerCpu, "serverMs")}%), actiond ${vsPeer(r).toFixed(2)}×`.padEnd(50),
        `(n=${r.ms.length})`,
      ].join(" | "),
    );
  }
  console.log(
    "ratio to tcp: tcp copy time / server time for the same bytes (1 = as fast as a plain socket);\n" +
      "cpu: share of one core during the server calls (server: all its threads; client: this process);\n" +
      "bazel-remote: the same calls from the same client; actiond N×: above 1, actiond is faster.",
  );
}

function summary(rows: Row[], seconds: number) {
  const round = (x: number) => Number(x.toPrecision(4));
  return {
    bun: Bun.version,
    cpus: cpus().length,
    writeChunkBytes: WRITE_CHUNK,
    seconds: round(seconds),
    rows: rows.map((r) => ({
      name: r.name,
      unit: r.unit,
      value: round(inUnit(r, median(r.ms))),
      hash: { fn: r.hashFn, value: round(inUnit(r, median(r.hashMs))) },
      tcp: round(inUnit(r, median(r.tcpMs))),
      ratioToTcp: round(ratio(r)),
      cpuPercent: { server: busy(r.cpu, "serverMs"), client: busy(r.cpu, "clientMs") },
      samplesMs: r.ms.map(round),
      ...(r.peerMs.length > 0 ? { bazelRemote: { value: round(inUnit(r, median(r.peerMs))), serverCpuPercent: busy(r.peerCpu, "serverMs"), actiondVs: round(vsPeer(r)), samplesMs: r.peerMs.map(round) } } : {}),
    })),
  };
}

// Last, so every module-level constant above is initialized before it runs.
if (process.argv[2] === "--tcp-peer") await tcpPeer();
else await main();
