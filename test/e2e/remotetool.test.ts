// Interop with a second real REAPI client: `remotetool` from github.com/bazelbuild/remote-apis-sdks.
// Build it with test/tools/build-tools.sh, or point $ACTIOND_REMOTETOOL at a binary.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes, randomUUID } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ReapiClient, sha256 } from "../support/client";
import { REPO, startServer, tempDir, type ServerProcess } from "../support/server";
import { FindMissingBlobsRequestSchema } from "../../src/gen/build/bazel/remote/execution/v2/remote_execution_pb";

const MiB = 1024 * 1024;
const INSTANCE = "remotetool-e2e";

function findRemotetool(): string | undefined {
  const fromEnv = process.env.ACTIOND_REMOTETOOL;
  if (fromEnv) return existsSync(fromEnv) ? fromEnv : undefined;
  const built = join(REPO, ".tools/bin/remotetool");
  if (existsSync(built)) return built;
  return Bun.which("remotetool") ?? undefined;
}

const TOOL = findRemotetool();
// Naming a binary explicitly counts as asking for the test: a wrong path must not turn into a skip.
const REQUIRED = process.env.ACTIOND_REQUIRE_E2E === "1" || !!process.env.ACTIOND_REMOTETOOL;

if (!TOOL && !REQUIRED) {
  console.warn(
    "SKIP remotetool e2e: remotetool not found ($ACTIOND_REMOTETOOL, .tools/bin/remotetool, PATH); " +
      "build it with test/tools/build-tools.sh",
  );
}

test.if(!TOOL && REQUIRED)("remotetool is available (required by ACTIOND_REQUIRE_E2E or ACTIOND_REMOTETOOL)", () => {
  const env = process.env.ACTIOND_REMOTETOOL;
  throw new Error(env ? `$ACTIOND_REMOTETOOL=${env} does not exist` : "remotetool not found: set $ACTIOND_REMOTETOOL or run test/tools/build-tools.sh");
});

describe.if(!!TOOL)("remotetool interop", () => {
  let server: ServerProcess;
  let client: ReapiClient;
  let work: string;

  beforeAll(async () => {
    server = await startServer({ args: ["--log-level", "debug"] });
    client = new ReapiClient(server.address);
    work = tempDir("actiond-remotetool-");
  });

  afterAll(async () => {
    client?.close();
    await server?.stop();
    // Both hold 100 MiB blobs; don't leave them in /tmp.
    for (const dir of [work, server?.root]) if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /**
   * Runs one remotetool operation; on failure the error carries its stderr and the server log.
   * A stalled transfer is killed after timeoutMs so it fails this test instead of the whole file
   * (bun's own test timeout also kills the server as a "dangling process").
   */
  async function remotetool(operation: string, flags: Record<string, string>, timeoutMs = 60_000): Promise<{ stdout: string; seconds: number }> {
    const args = [
      TOOL!,
      `--service=${server.address}`,
      "--service_no_security",
      `--instance=${INSTANCE}`,
      `--operation=${operation}`,
      // glog writes log files into $TMPDIR by default; keep them on stderr instead.
      "--logtostderr",
      ...Object.entries(flags).map(([k, v]) => `--${k}=${v}`),
    ];
    const started = performance.now();
    const proc = Bun.spawn(args, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      proc.kill("SIGTERM");
    }, timeoutMs);
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    clearTimeout(timer);
    const seconds = (performance.now() - started) / 1000;
    if (code !== 0) {
      const why = timedOut ? `did not finish within ${timeoutMs / 1000} s (killed)` : `exited ${code}`;
      throw new Error(`remotetool ${operation} ${why}\n--- stderr\n${stderr}\n--- server log (tail)\n${server.log().slice(-4000)}`);
    }
    return { stdout, seconds };
  }

  async function missing(hash: string, size: number): Promise<boolean> {
    const res = await client.unary(client.cas, "findMissingBlobs", FindMissingBlobsRequestSchema, {
      instanceName: INSTANCE,
      blobDigests: [{ hash, sizeBytes: BigInt(size) }],
    });
    return res.missingBlobDigests.length > 0;
  }

  function rate(bytes: number, seconds: number): string {
    return `${(bytes / MiB / seconds).toFixed(1)} MiB/s (${seconds.toFixed(2)} s)`;
  }

  test("upload_dir then download_dir reproduces the tree", async () => {
    const src = join(work, "tree");
    const files: Record<string, Uint8Array> = {
      "empty.txt": new Uint8Array(0),
      "small.txt": new TextEncoder().encode("hello remotetool\n"),
      "a/b/c/deep.bin": randomBytes(70_000),
      "a/mid.bin": randomBytes(1_000_000),
      // Below the 4 MiB batch limit, so the SDK moves it with Batch{Update,Read}Blobs, not ByteStream.
      "big/three-mib.bin": randomBytes(3 * MiB + 17),
      // Same content twice: the CAS stores it once, the tree must still have both.
      "dup/one.txt": new TextEncoder().encode("same bytes"),
      "dup/two.txt": new TextEncoder().encode("same bytes"),
    };
    for (const [rel, data] of Object.entries(files)) {
      mkdirSync(join(src, rel, ".."), { recursive: true });
      writeFileSync(join(src, rel), data);
    }
    writeFileSync(join(src, "a/run.sh"), "#!/bin/sh\necho hi\n");
    chmodSync(join(src, "a/run.sh"), 0o755);
    // remotetool keeps empty directories in the Merkle tree, so the snapshot must show it too.
    mkdirSync(join(src, "a/empty-dir"), { recursive: true });

    // --json=- prints UploadStats (including RootDigest) on stdout.
    const up = await remotetool("upload_dir", { path: src, json: "-" });
    const stats = JSON.parse(up.stdout);
    expect(stats.Error).toBe("");
    const root = `${stats.RootDigest.Hash}/${stats.RootDigest.Size}`;
    expect(root).toMatch(/^[0-9a-f]{64}\/\d+$/);

    const dst = join(work, "tree-out");
    await remotetool("download_dir", { digest: root, path: dst });
    expect(snapshot(dst)).toEqual(snapshot(src));
  }, 120_000);

  test("100 MiB: remotetool upload_blob, then download_blob and our own read", async () => {
    const data = randomBytes(100 * MiB);
    const d = sha256(data);
    const [hash, size] = [d.hash, Number(d.sizeBytes)];
    const file = join(work, "up.bin");
    writeFileSync(file, data);
    expect(await missing(hash, size)).toBe(true);

    const up = await remotetool("upload_blob", { path: file });
    console.log(`remotetool upload_blob 100 MiB: ${rate(size, up.seconds)}`);
    expect(await missing(hash, size)).toBe(false);

    // Independent check through our own ByteStream client.
    const t0 = performance.now();
    const read = await client.read(`${INSTANCE}/blobs/${hash}/${size}`);
    console.log(`our ByteStream read 100 MiB: ${rate(size, (performance.now() - t0) / 1000)}`);
    expect(Buffer.compare(read.data, data)).toBe(0);

    const out = join(work, "up-roundtrip.bin");
    const down = await remotetool("download_blob", { digest: `${hash}/${size}`, path: out });
    console.log(`remotetool download_blob 100 MiB (its own upload): ${rate(size, down.seconds)}`);
    expect(Buffer.compare(readFileSync(out), data)).toBe(0);
  }, 120_000);

  test("100 MiB: our ByteStream upload, then remotetool download_blob", async () => {
    const data = randomBytes(100 * MiB);
    const d = sha256(data);
    const [hash, size] = [d.hash, Number(d.sizeBytes)];
    // Fresh random data, so the download can only succeed if our upload really stored it.
    expect(await missing(hash, size)).toBe(true);
    const t0 = performance.now();
    expect(await client.upload(`${INSTANCE}/uploads/${randomUUID()}/blobs/${hash}/${size}`, data, MiB)).toBe(BigInt(size));
    console.log(`our ByteStream write 100 MiB: ${rate(size, (performance.now() - t0) / 1000)}`);
    expect(await missing(hash, size)).toBe(false);

    const out = join(work, "down.bin");
    const down = await remotetool("download_blob", { digest: `${hash}/${size}`, path: out });
    console.log(`remotetool download_blob 100 MiB (our upload): ${rate(size, down.seconds)}`);
    expect(Buffer.compare(readFileSync(out), data)).toBe(0);
  }, 120_000);
});

/** Every entry under dir: kind, owner-exec bit for files, and a content hash. */
function snapshot(dir: string, rel = ""): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(dir, rel)).sort()) {
    const path = join(rel, name);
    const st = statSync(join(dir, path));
    if (st.isDirectory()) {
      out.push(`dir  ${path}`, ...snapshot(dir, path));
    } else {
      const exec = st.mode & 0o100 ? "x" : "-";
      out.push(`file ${path} ${exec} ${st.size} ${sha256(readFileSync(join(dir, path))).hash}`);
    }
  }
  return out;
}
