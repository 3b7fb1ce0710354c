// What each attack of the hardening review (issue 16) costs everyone else: an `actiond serve` (a
// fresh one for each attack, so what one leaves behind is not the next one's baseline), a second
// client in its own process (test/bench/attack-probe.ts) asking GetCapabilities every 20 ms and
// running trivial actions one after another, and the attacks one at a time. For each: the second
// client's GetCapabilities p50/p99 and trivial-action max during the attack, and the server's RSS
// before, at its peak and after. After each attack an offline check of the store (every CAS file
// hashes to its name; every AC entry decodes and names only blobs that are there), and at the end
// the same after kill -9 in the middle of collecting outputs.
//
//   bun test/bench/attacks.ts [--only SUBSTRING] [--cpu-prof DIR (the server's profile, as markdown)]
//
// Targets (the issue's): GetCapabilities p99 under 100 ms, a trivial action under 1 s, RSS no
// more than 64 MiB above what the attack was allowed to store. Not a `bun test` file.
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { zstdCompressSync } from "node:zlib";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  ActionResultSchema,
  ActionSchema,
  BatchUpdateBlobsRequestSchema,
  CommandSchema,
  Compressor_Value as Compressor,
  DirectorySchema,
  FindMissingBlobsRequestSchema,
  TreeSchema,
  type Digest,
} from "../../src/gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { WriteRequestSchema } from "../../src/gen/google/bytestream/bytestream_pb";
import { execute, executionClient, run } from "../support/actions";
import { ReapiClient, digestOf, sha256 } from "../support/client";
import { rssMiB } from "../support/helpers";
import { openCall, rawConnect, settingsFrame } from "../support/raw-h2";
import { MAIN, startServer, type ServerProcess } from "../support/server";

const MiB = 1024 * 1024;
const { values: args } = parseArgs({ options: { only: { type: "string" }, "cpu-prof": { type: "string" } } });

interface Attack {
  name: string;
  /** Bytes the attack may legitimately make the server hold (0 for most). */
  acceptedBytes?: number;
  /** Work done before the clock starts (building and uploading what the attack sends); returns the attack. */
  prepare(s: Session): Promise<() => Promise<string>>;
}

interface Session {
  server: ServerProcess;
  client: ReapiClient;
  exec: ReturnType<typeof executionClient>;
}

const uploadName = (d: Digest) => `uploads/${crypto.randomUUID()}/blobs/${d.hash}/${d.sizeBytes}`;

/** Stores blobs by ByteStream (any size), returning their digests. */
async function store(c: ReapiClient, blobs: Uint8Array[]): Promise<Digest[]> {
  const out: Digest[] = [];
  for (const b of blobs) {
    const d = sha256(b);
    await c.upload(uploadName(d), b, MiB);
    out.push(d);
  }
  return out;
}

/** An action running `true` over the given input root. */
async function actionOver(c: ReapiClient, inputRoot: Digest): Promise<Digest> {
  const cmd = toBinary(CommandSchema, create(CommandSchema, { arguments: ["true"] }));
  const [cd] = await store(c, [cmd]);
  const act = toBinary(ActionSchema, create(ActionSchema, { commandDigest: cd, inputRootDigest: inputRoot, salt: new TextEncoder().encode(crypto.randomUUID()) }));
  const [ad] = await store(c, [act]);
  return ad!;
}

async function executeStatus(s: Session, action: Digest): Promise<string> {
  const ops = await execute(s.exec, { actionDigest: action, skipCacheLookup: true });
  const r = ops.at(-1)?.response;
  return `status ${r?.status?.code ?? 0}${r?.status?.message ? ` (${r.status.message.slice(0, 80)})` : ""}, exit ${r?.result?.exitCode ?? "-"}`;
}

async function runShell(s: Session, script: string, outputPaths: string[] = []): Promise<string> {
  const { response } = await run(s.client, s.exec, { args: ["bash", "-c", script], outputPaths, salt: crypto.randomUUID(), timeoutSeconds: 600 }, { skipCacheLookup: true });
  return `status ${response.status?.code ?? 0}${response.status?.message ? ` (${response.status.message.slice(0, 80)})` : ""}, exit ${response.result?.exitCode ?? "-"}`;
}

const deepChain = (levels: number) => `p=$(printf 'd/%.0s' $(seq 1000)); for i in $(seq ${levels / 1000}); do mkdir -p $p && cd $p; done`;

const ATTACKS: Attack[] = [
  {
    name: "40 connections × a 16 MiB SETTINGS frame",
    async prepare(s) {
      return async () => {
        const conns = await Promise.all(Array.from({ length: 40 }, () => rawConnect(s.server.port)));
        for (const c of conns) c.socket.write(settingsFrame(Buffer.alloc(16 * MiB - 1)));
        await Promise.all(conns.map((c) => c.closed));
        return "all 40 closed by the server";
      };
    },
  },
  {
    name: "2,000 idle connections, held 3 s",
    async prepare(s) {
      return async () => {
        const conns = [];
        for (let i = 0; i < 2000; i++) conns.push(await rawConnect(s.server.port));
        await Bun.sleep(3000);
        const closed = (await Promise.all(conns.map((c) => Promise.race([c.closed.then(() => 1), Bun.sleep(0).then(() => 0)])))).reduce((a: number, b) => a + b, 0);
        for (const c of conns) c.socket.destroy();
        return `${closed} of 2000 closed by the server`;
      };
    },
  },
  {
    name: "20,000 unfinished calls on one connection",
    async prepare(s) {
      return async () => {
        const conn = await rawConnect(s.server.port, ...Array.from({ length: 20_000 }, (_, i) => openCall(1 + 2 * i)));
        const closed = await Promise.race([conn.closed.then(() => true), Bun.sleep(5000).then(() => false)]);
        conn.socket.destroy();
        return closed ? "connection closed by the server" : "connection still open after 5 s";
      };
    },
  },
  {
    name: "ByteStream Write declaring 20 GiB, 1 byte sent, held 3 s",
    async prepare(s) {
      return async () => {
        const call = s.client.bs.write(() => {});
        call.on("error", () => {});
        call.write(create(WriteRequestSchema, { resourceName: `uploads/${crypto.randomUUID()}/blobs/${"ab".repeat(32)}/${20 * 1024 * MiB}`, writeOffset: 0n, data: new Uint8Array(1) }));
        await Bun.sleep(3000);
        call.cancel();
        return "cancelled";
      };
    },
  },
  {
    name: "zstd bomb: a 32 KiB batch item inflating to 1 GiB",
    async prepare(s) {
      const zeros = new Uint8Array(64 * MiB);
      const frame = zstdCompressSync(Buffer.concat(Array.from({ length: 16 }, () => zeros)));
      return async () => {
        const res = await s.client.unary(s.client.cas, "batchUpdateBlobs", BatchUpdateBlobsRequestSchema, { requests: [{ digest: sha256(new Uint8Array(1024)), data: frame, compressor: Compressor.ZSTD }] });
        return `item status ${res.responses[0].status.code}`;
      };
    },
  },
  {
    name: "40 connections × a 16 MiB BatchUpdateBlobs",
    async prepare(s) {
      const clients = Array.from({ length: 40 }, () => new ReapiClient(s.server.address, { ownConnection: true }));
      const requests = clients.map((_, i) => {
        const data = new Uint8Array(16 * MiB - 1024).fill(i + 1);
        return [{ digest: sha256(data), data }];
      });
      return async () => {
        const res = await Promise.allSettled(clients.map((c, i) => c.unary(c.cas, "batchUpdateBlobs", BatchUpdateBlobsRequestSchema, { requests: requests[i] })));
        clients.forEach((c) => c.close());
        const refused = res.filter((r) => r.status === "rejected").map((r) => (r as PromiseRejectedResult).reason.code);
        return `${refused.length} of 40 refused (codes ${[...new Set(refused)].join(", ")})`;
      };
    },
  },
  {
    name: "FindMissingBlobs: 5 calls × 200,000 digests",
    async prepare(s) {
      const digests = Array.from({ length: 200_000 }, (_, i) => digestOf(new Bun.CryptoHasher("sha256").update(`m${i}`).digest("hex"), i + 1));
      return async () => {
        const res = await Promise.all(Array.from({ length: 5 }, () => s.client.unary(s.client.cas, "findMissingBlobs", FindMissingBlobsRequestSchema, { blobDigests: digests })));
        return `${res.map((r: any) => r.missingBlobDigests.length).join(", ")} missing`;
      };
    },
  },
  {
    name: "a Directory of 1.5 M entries (119 MB) as an input root",
    acceptedBytes: 130 * MiB,
    async prepare(s) {
      const empty = sha256(new Uint8Array(0));
      const dir = create(DirectorySchema, { files: Array.from({ length: 1_500_000 }, (_, i) => ({ name: `f${String(i).padStart(7, "0")}`, digest: empty })) });
      const [root] = await store(s.client, [toBinary(DirectorySchema, dir)]);
      const action = await actionOver(s.client, root!);
      return () => executeStatus(s, action);
    },
  },
  {
    name: "an exponential DAG: 40 levels, 2 links each (2^40 paths)",
    async prepare(s) {
      const blobs: Uint8Array[] = [toBinary(DirectorySchema, create(DirectorySchema))];
      for (let i = 0; i < 40; i++) {
        const below = sha256(blobs.at(-1)!);
        blobs.push(toBinary(DirectorySchema, create(DirectorySchema, { directories: [{ name: "a", digest: below }, { name: "b", digest: below }] })));
      }
      const ds = await store(s.client, blobs);
      const action = await actionOver(s.client, ds.at(-1)!);
      return () => executeStatus(s, action);
    },
  },
  {
    name: "a 999 × 300 input tree (300,699 directories)",
    async prepare(s) {
      const leaf = toBinary(DirectorySchema, create(DirectorySchema));
      const mid = toBinary(DirectorySchema, create(DirectorySchema, { directories: Array.from({ length: 300 }, (_, i) => ({ name: `s${String(i).padStart(3, "0")}`, digest: sha256(leaf) })) }));
      const root = toBinary(DirectorySchema, create(DirectorySchema, { directories: Array.from({ length: 999 }, (_, i) => ({ name: `d${String(i).padStart(3, "0")}`, digest: sha256(mid) })) }));
      const ds = await store(s.client, [leaf, mid, root]);
      const action = await actionOver(s.client, ds[2]!);
      return () => executeStatus(s, action);
    },
  },
  {
    name: "a 4 GiB sparse output",
    async prepare(s) {
      return () => runShell(s, "truncate -s 4G big", ["big"]);
    },
  },
  {
    name: "an action leaving a 20,000-deep directory chain",
    async prepare(s) {
      return () => runShell(s, deepChain(20_000));
    },
  },
  {
    name: "1 M small output files",
    acceptedBytes: 200 * MiB,
    async prepare(s) {
      return () => runShell(s, "mkdir out && cd out && seq -f 'f%07g' 1000000 | xargs touch", ["out"]);
    },
  },
];

// ---------- the second client ----------

interface Sample {
  kind: "caps" | "exec";
  at: number;
  ms: number;
  ok: boolean;
  error?: string;
}

function startProbe(address: string) {
  const proc = Bun.spawn([process.execPath, join(import.meta.dir, "attack-probe.ts"), address], { stdout: "pipe", stderr: "inherit" });
  const samples: Sample[] = [];
  (async () => {
    let rest = "";
    for await (const chunk of proc.stdout) {
      const lines = (rest + new TextDecoder().decode(chunk)).split("\n");
      rest = lines.pop()!;
      for (const l of lines) if (l.startsWith("{")) samples.push(JSON.parse(l));
    }
  })();
  return {
    samples,
    /** Samples of calls that ended in [from, to], plus any still running at `to`, counted as lasting until then. */
    between(from: number, to: number, kind: Sample["kind"]): number[] {
      const ended = samples.filter((s) => s.kind === kind && s.at >= from && s.at <= to).map((s) => s.ms);
      const last = samples.filter((s) => s.kind === kind).at(-1);
      const pending = last && last.at < to ? [to - last.at] : [];
      return [...ended, ...pending];
    },
    failures: (from: number, to: number) => samples.filter((s) => s.at >= from && s.at <= to && !s.ok).length,
    errors: (from: number, to: number) => [...new Set(samples.filter((s) => s.at >= from && s.at <= to && s.error).map((s) => `${s.kind}: ${s.error}`))],
    stop: () => proc.kill(),
  };
}

const quantile = (xs: number[], q: number) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};

// ---------- the offline store check ----------

async function hashFile(fn: string, path: string): Promise<string> {
  const h = new Bun.CryptoHasher(fn === "sha256" ? "sha256" : "blake2b256");
  for await (const chunk of Bun.file(path).stream()) h.update(chunk);
  return h.digest("hex");
}

/** Problems found in ROOT's store: CAS files that do not hash to their names, AC entries that are damaged or name missing blobs. */
async function checkStore(root: string): Promise<string[]> {
  const problems: string[] = [];
  const present = new Set<string>();
  const casRoot = join(root, "cas", "sha256");
  for (const shard of readdirSync(casRoot, { withFileTypes: true })) {
    if (!shard.isDirectory()) continue;
    for (const name of readdirSync(join(casRoot, shard.name))) {
      const m = /^([0-9a-f]{64})-(\d+)(\.x)?$/.exec(name);
      if (!m) {
        problems.push(`cas: unexpected file ${shard.name}/${name}`);
        continue;
      }
      const path = join(casRoot, shard.name, name);
      if ((await hashFile("sha256", path)) !== m[1]) problems.push(`cas: ${name} does not hash to its name`);
      present.add(`${m[1]}-${m[2]}`);
    }
  }
  const has = (d: Digest | undefined) => !d || d.sizeBytes === 0n || present.has(`${d.hash}-${d.sizeBytes}`);
  const acRoot = join(root, "ac", "sha256");
  for (const shard of readdirSync(acRoot, { withFileTypes: true })) {
    if (!shard.isDirectory()) continue;
    for (const name of readdirSync(join(acRoot, shard.name))) {
      const bytes = readFileSync(join(acRoot, shard.name, name));
      const body = bytes.subarray(32);
      if (new Bun.CryptoHasher("sha256").update(body).digest("hex") !== bytes.subarray(0, 32).toString("hex")) {
        problems.push(`ac: ${name} fails its checksum`);
        continue;
      }
      const r = fromBinary(ActionResultSchema, body);
      const named = [r.stdoutDigest, r.stderrDigest, ...r.outputFiles.map((f) => f.digest), ...r.outputDirectories.map((d) => d.treeDigest)];
      for (const d of named) if (!has(d)) problems.push(`ac: ${name} names ${d!.hash}-${d!.sizeBytes}, which is not there`);
      for (const d of r.outputDirectories) {
        if (!d.treeDigest || !has(d.treeDigest)) continue;
        const tree = fromBinary(TreeSchema, readFileSync(join(casRoot, d.treeDigest.hash.slice(0, 2), `${d.treeDigest.hash}-${d.treeDigest.sizeBytes}`)));
        for (const dir of [tree.root!, ...tree.children]) for (const f of dir.files) if (!has(f.digest)) problems.push(`ac: ${name}'s tree names a missing ${f.digest!.hash}`);
      }
    }
  }
  return problems;
}

// ---------- the run ----------

const profile = args["cpu-prof"] ? [`--cpu-prof-md`, `--cpu-prof-dir=${args["cpu-prof"]}`] : [];

/** A fresh server and second client for each attack: what one leaves behind (freed memory not yet given back) is not the next one's baseline. */
async function freshSession(): Promise<{ session: Session; probe: ReturnType<typeof startProbe> }> {
  const server = await startServer({ args: ["--max-cas-size", "20G", "--max-output-size", "8G"], command: [process.execPath, ...profile, MAIN] });
  const session: Session = { server, client: new ReapiClient(server.address), exec: executionClient(server.address) };
  const probe = startProbe(server.address);
  while (probe.samples.filter((s) => s.kind === "exec").length < 3) await Bun.sleep(100);
  return { session, probe };
}

async function endSession({ session, probe }: { session: Session; probe: ReturnType<typeof startProbe> }): Promise<void> {
  probe.stop();
  session.client.close();
  await session.server.stop();
  rmSync(session.server.root, { recursive: true, force: true });
}

const rows: string[][] = [["attack", "outcome", "caps p50", "caps p99", "caps max", "exec max", "RSS before", "peak", "after", "store"]];
const fmt = (ms: number) => (Number.isNaN(ms) ? "-" : ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`);
let pass = true;
for (const attack of ATTACKS.filter((a) => !args.only || a.name.includes(args.only))) {
  const fresh = await freshSession();
  const { session, probe } = fresh;
  const server = session.server;
  const strike = await attack.prepare(session);
  await Bun.sleep(1000);
  const before = rssMiB(server.proc.pid);
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(server.proc.pid))), 25);
  const from = Date.now();
  let outcome = await strike().catch((err) => `failed: ${(err as Error).message.slice(0, 80)}`);
  await Bun.sleep(500);
  const to = Date.now();
  clearInterval(sampler);
  await Bun.sleep(2000);
  const after = rssMiB(server.proc.pid);
  const caps = probe.between(from, to, "caps");
  const execs = probe.between(from, to, "exec");
  const problems = await checkStore(server.root);
  const failed = probe.failures(from, to);
  if (failed > 0) outcome += `; ${failed} of the second client's calls failed: ${probe.errors(from, to).join("; ")}`;
  const ok = quantile(caps, 0.99) < 100 && Math.max(...execs) < 1000 && peak - before < 64 + (attack.acceptedBytes ?? 0) / MiB && problems.length === 0 && failed === 0;
  pass &&= ok;
  rows.push([
    `${ok ? " " : "✗"} ${attack.name}`,
    outcome,
    fmt(quantile(caps, 0.5)),
    fmt(quantile(caps, 0.99)),
    fmt(Math.max(...caps)),
    fmt(Math.max(...execs)),
    `${Math.round(before)} MiB`,
    `${Math.round(peak)} MiB`,
    `${Math.round(after)} MiB`,
    problems.length === 0 ? "ok" : `${problems.length} problems: ${problems[0]}`,
  ]);
  console.error(rows.at(-1)!.join(" | "));
  await endSession(fresh);
}

// kill -9 while an action's outputs are being taken in, then the same check, offline.
const { session, probe } = await freshSession();
const server = session.server;
const collecting = runShell(session, "mkdir out && for i in $(seq 2000); do head -c 100000 /dev/urandom > out/f$i; done", ["out"]).catch(() => "");
await Bun.sleep(4000);
probe.stop();
if (profile.length > 0) await server.stop();
else await server.kill();
await collecting;
const afterKill = await checkStore(server.root);
pass &&= afterKill.length === 0;
rmSync(server.root, { recursive: true, force: true });

const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
console.log(rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join("  ")).join("\n"));
console.log(`\nafter kill -9 while collecting outputs: store check ${afterKill.length === 0 ? "ok" : afterKill.slice(0, 3).join("; ")}`);
console.log("targets: GetCapabilities p99 < 100 ms, trivial action < 1 s, RSS peak < 64 MiB above what the attack may store, store check ok, no failed calls");
console.log(JSON.stringify({ pass, rows: rows.slice(1) }));
process.exit(pass ? 0 : 1);
