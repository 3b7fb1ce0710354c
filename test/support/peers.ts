// Real peers for the upstream tests, built by test/tools/build-tools.sh: bazel-remote (a disk cache
// that keeps its data across restarts) and Buildbarn's bb_storage (in memory), on 127.0.0.1.
import * as grpc from "@grpc/grpc-js";
import { existsSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { Capabilities } from "../../src/gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { grpcServiceDefinition } from "../../src/rpc";
import { REPO, tempDir } from "./server";

export const TOOLS = join(REPO, ".tools/bin");
export const BAZEL_REMOTE = join(TOOLS, "bazel-remote");
export const BB_STORAGE = join(TOOLS, "bb_storage");
export const REMOTETOOL = join(TOOLS, "remotetool");

/** True when the peers are not built and the suite may skip (ACTIOND_REQUIRE_E2E=1 makes it fail instead). */
export function skipWithoutPeers(suite: string): boolean {
  const missing = [BAZEL_REMOTE, BB_STORAGE, REMOTETOOL].filter((p) => !existsSync(p));
  if (missing.length === 0) return false;
  if (process.env.ACTIOND_REQUIRE_E2E === "1") throw new Error(`${suite}: ${missing.join(", ")} missing: run bash test/tools/build-tools.sh`);
  console.warn(`SKIP ${suite}: ${missing.join(", ")} missing (bash test/tools/build-tools.sh)`);
  return true;
}

export interface Peer {
  readonly name: string;
  /** HOST:PORT of its gRPC server. */
  readonly address: string;
  readonly url: string;
  /** Its process id while it runs (to read its CPU time). */
  readonly pid: number;
  log(): string;
  /** SIGKILL, and wait for it to be gone. */
  kill(): Promise<void>;
  /** Starts it again on the same port (and, for bazel-remote, the same data). */
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** A port nothing listens on right now (the peer takes it a moment later). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Resolves once a gRPC server answers on address (grpc-js's own wait for a ready channel). */
export async function waitForGrpc(address: string, timeoutMs = 20_000, creds = grpc.credentials.createInsecure()): Promise<void> {
  const Ctor = grpc.makeGenericClientConstructor(grpcServiceDefinition(Capabilities), "Capabilities");
  const client = new Ctor(address, creds);
  try {
    await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(new Error(`nothing answers gRPC on ${address}: ${err.message}`)) : resolve())));
  } finally {
    client.close();
  }
}

class PeerProcess implements Peer {
  private proc: Subprocess<"ignore", "pipe", "pipe"> | undefined;
  private output = "";

  constructor(
    readonly name: string,
    private readonly port: number,
    private readonly command: () => string[],
    /** How to reach it when checking it is up (TLS for a TLS server). */
    private readonly creds = grpc.credentials.createInsecure(),
    private readonly host = "127.0.0.1",
  ) {}

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get url(): string {
    return `grpc://${this.address}`;
  }

  get pid(): number {
    return this.proc?.pid ?? 0;
  }

  log(): string {
    return this.output;
  }

  async start(): Promise<void> {
    const proc = Bun.spawn(this.command(), { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    this.proc = proc;
    for (const stream of [proc.stdout, proc.stderr]) {
      (async () => {
        const decoder = new TextDecoder();
        for await (const chunk of stream) this.output += decoder.decode(chunk);
      })();
    }
    const exited = proc.exited.then((code) => {
      throw new Error(`${this.name} exited with ${code} while starting:\n${this.output}`);
    });
    await Promise.race([waitForGrpc(`${this.host}:${this.port}`, 20_000, this.creds), exited]);
  }

  async kill(): Promise<void> {
    this.proc?.kill("SIGKILL");
    await this.proc?.exited;
  }

  async stop(): Promise<void> {
    this.proc?.kill("SIGTERM");
    await this.proc?.exited;
  }
}

/**
 * bazel-remote with its disk cache in dir (a fresh one unless given), on a port of its own; not
 * started yet. With TLS flags in `extra`, `creds` must trust its certificate (for localhost).
 */
export async function bazelRemote(dir = tempDir("bazel-remote-"), extra: string[] = [], creds?: grpc.ChannelCredentials): Promise<Peer> {
  const [grpcPort, httpPort] = [await freePort(), await freePort()];
  const command = () => [BAZEL_REMOTE, "--dir", dir, "--max_size", "2", "--host", "127.0.0.1", "--port", String(httpPort), "--grpc_port", String(grpcPort), ...extra];
  return new PeerProcess("bazel-remote", grpcPort, command, creds, creds ? "localhost" : "127.0.0.1");
}

export async function startBazelRemote(dir?: string): Promise<Peer> {
  const peer = await bazelRemote(dir);
  await peer.start();
  return peer;
}

/**
 * bb_storage with an in-memory CAS and AC that any client it lets in may read and write; by default
 * it lets in everyone (another authentication policy of its configuration can say otherwise).
 */
export async function startBbStorage(authenticationPolicy: object = { allow: {} }): Promise<Peer> {
  const port = await freePort();
  const local = (entries: number, blockBytes: number, newBlocks: number) => ({
    local: {
      keyLocationMapInMemory: { entries },
      keyLocationMapMaximumGetAttempts: 8,
      keyLocationMapMaximumPutAttempts: 32,
      oldBlocks: 2,
      currentBlocks: 3,
      newBlocks,
      blocksInMemory: { blockSizeBytes: blockBytes },
    },
  });
  const allow = { allow: {} };
  const config = {
    grpcServers: [{ listenAddresses: [`127.0.0.1:${port}`], authenticationPolicy }],
    maximumMessageSizeBytes: 64 * 2 ** 20,
    contentAddressableStorage: { backend: local(100_000, 48 * 2 ** 20, 1), getAuthorizer: allow, putAuthorizer: allow, findMissingAuthorizer: allow },
    // An entry can be replaced, which needs a single "new" block.
    actionCache: { backend: local(10_000, 2 ** 20, 1), getAuthorizer: allow, putAuthorizer: allow },
  };
  const file = join(tempDir("bb-storage-"), "bb_storage.jsonnet");
  writeFileSync(file, JSON.stringify(config));
  const peer = new PeerProcess("bb_storage", port, () => [BB_STORAGE, file]);
  await peer.start();
  return peer;
}

/** remotetool against a peer: download_action_result of one action into dir; throws with its stderr. */
export async function remotetoolDownloadResult(address: string, action: { hash: string; size: number }, dir: string): Promise<void> {
  const proc = Bun.spawn(
    [REMOTETOOL, `--service=${address}`, "--service_no_security", "--instance=", "--logtostderr", "--operation=download_action_result", `--digest=${action.hash}/${action.size}`, `--path=${dir}`],
    { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
  );
  const [err, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`remotetool download_action_result ${action.hash}/${action.size} exited with ${code}:\n${err}`);
}
