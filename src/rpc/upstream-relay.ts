// The upstream connection's way around Bun's HTTP/2 window bug (see h2-window-shim.ts): a gRPC
// server (Go's, bazel-remote's and Buildbarn's among them) raises INITIAL_WINDOW_SIZE mid-upload,
// and Bun's client then stalls any upload of more than a few MiB for good. grpc-js offers no hook
// for the socket under its HTTP/2 session, so it connects to a private Unix socket here instead
// (in a folder only this user can enter), and each connection is relayed to the upstream (over TLS
// for grpcs://) with the shim on it, in the client role.
import { createServer, connect as tcpConnect, type Server, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Logger } from "../core";
import { WindowSettingsShim } from "./h2-window-shim";

export interface RelayTarget {
  host: string;
  port: number;
  tls: boolean;
  caFile?: string;
}

export interface Relay {
  /** The grpc-js target that reaches the upstream through the relay (unix:PATH). */
  readonly target: string;
  close(): void;
}

export async function startRelay(to: RelayTarget, log: Logger): Promise<Relay> {
  const dir = mkdtempSync(join(tmpdir(), "actiond-upstream-"));
  const path = join(dir, "relay.sock");
  const ca = to.caFile ? readFileSync(to.caFile) : undefined;
  const server: Server = createServer((local) => {
    const remote: Socket = to.tls
      ? tlsConnect({ host: to.host, port: to.port, servername: to.host, ALPNProtocols: ["h2"], ca })
      : tcpConnect({ host: to.host, port: to.port });
    relay(local, remote);
    remote.on("error", (err) => {
      log.debug(`upstream connection to ${to.host}:${to.port}: ${err.message}`);
      local.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
  return {
    target: `unix:${path}`,
    close() {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Pipes both ways with the shim between; a WINDOW_UPDATE for Bun waits for a frame boundary. */
function relay(local: Socket, remote: Socket): void {
  const shim = new WindowSettingsShim("client");
  let credits: Buffer[] = [];
  const flushCredits = () => {
    if (credits.length === 0 || !shim.peerAtFrameBoundary) return;
    local.write(Buffer.concat(credits));
    credits = [];
  };
  local.on("data", (chunk: Buffer) => {
    credits.push(...shim.fromBun(chunk));
    flushCredits();
    if (!remote.write(chunk)) local.pause();
  });
  remote.on("drain", () => local.resume());
  remote.on("data", (chunk: Buffer) => {
    let pieces: Buffer[];
    try {
      pieces = shim.fromPeer(chunk);
    } catch {
      // A frame over HTTP/2's limit from the upstream: not a connection to go on with.
      remote.destroy();
      return;
    }
    let more = true;
    for (const piece of pieces) more = local.write(piece) && more;
    flushCredits();
    if (!more) remote.pause();
  });
  local.on("drain", () => remote.resume());
  local.on("end", () => remote.end());
  remote.on("end", () => local.end());
  local.on("error", () => remote.destroy());
  local.on("close", () => remote.destroy());
  remote.on("close", () => local.destroy());
}
