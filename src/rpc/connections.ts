// The server's client connections, bounded, so that no client can hold what others need: how many
// connections at once (each is a descriptor), how many streams each (Bun closes a connection that
// opens more than the server announced), and how long one may sit with no call in it (the server
// sends GOAWAY; a gRPC client reconnects on its next call).
import type { Socket } from "node:net";
import { isLoopback, readFirstBytes, speaks, type Logger } from "../core";
import { ErrorCode, goAwayFrame, settingsFrame } from "../transport";

export interface ConnectionLimits {
  /** Connections at once; past it an idle one is closed to make room, or the new one is refused. */
  maxConnections: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS: calls at once on one connection (clients queue the rest). */
  streamsPerConnection: number;
  /** A connection with no call in it for this long is closed. */
  idleMs: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  // Bazel opens at most --remote_max_connections (100) per client; this leaves room for several
  // clients and stays far below the descriptor limit, which actions need too.
  maxConnections: 512,
  // Bazel multiplexes up to 100 calls per connection, and gRPC clients queue beyond what we
  // announce. An open call costs the server about 8 KiB: at most ~0.5 GiB for all of them.
  streamsPerConnection: 128,
  idleMs: 10 * 60_000,
};

/** The server's side of a connection turned away: empty SETTINGS (its preface), then GOAWAY saying why. */
const goAway = (why: string) => Buffer.concat([settingsFrame([]), goAwayFrame(0, ErrorCode.ENHANCE_YOUR_CALM, why)]);

/** An HTTP/2 connection being served: what the limits need to know of it, and how to end it. */
export interface ServedConnection {
  openStreams: number;
  madeCalls: number;
  /** No new calls; closes once those in progress are done. */
  drain(): void;
  destroy(): void;
}

interface Connection {
  /** Set once the connection is known to be HTTP/2. */
  h2?: ServedConnection;
  /** When the client last sent anything. */
  lastHeardMs: number;
}

/** Where a connection goes once its first bytes say what it speaks. */
export interface ConnectionHandlers {
  /** HTTP/2 (gRPC): the socket, paused, and the bytes already read from it. */
  h2(socket: Socket, first: Buffer): ServedConnection;
  /** HTTP/1.1 from this machine (the status page), with the bytes already read; absent: closed. */
  http?(socket: Socket, first: Buffer): void;
}

export class Connections {
  private readonly open = new Map<Socket, Connection>();
  private lastRefusalLogMs = -Infinity;

  constructor(
    private readonly limits: ConnectionLimits,
    private readonly log: Logger,
  ) {}

  sockets(): Iterable<Socket> {
    return this.open.keys();
  }

  /** The HTTP/2 connections open now. */
  *served(): Iterable<ServedConnection> {
    for (const c of this.open.values()) if (c.h2) yield c.h2;
  }

  /**
   * Takes a new client socket: counted (and closable to make room) at once; handed on once its
   * first bytes say what it speaks: the HTTP/2 preface to the gRPC server, an HTTP/1.1 request
   * from this machine to the status page; anything else is closed.
   */
  accept(socket: Socket, handlers: ConnectionHandlers): void {
    if (this.open.size >= this.limits.maxConnections && !this.closeIdlest()) {
      const why = `actiond: ${this.open.size} connections are open and each has calls in progress (the limit is --max-connections ${this.limits.maxConnections})`;
      this.logRefusal(why);
      socket.on("error", () => {});
      socket.end(goAway(why));
      // A client that does not read its GOAWAY should not keep the descriptor.
      setTimeout(() => socket.destroy(), 1000).unref();
      return;
    }
    const entry: Connection = { lastHeardMs: Date.now() };
    this.open.set(socket, entry);
    socket.once("close", () => this.open.delete(socket));
    socket.on("error", () => {});
    readFirstBytes(socket, (first) => {
      const kind = speaks(first);
      if (kind === "h2") {
        socket.on("data", () => (entry.lastHeardMs = Date.now()));
        entry.h2 = handlers.h2(socket, first);
      } else if (handlers.http && kind === "http1" && isLoopback(socket.remoteAddress)) {
        // Not a gRPC client: it no longer counts against --max-connections.
        this.open.delete(socket);
        handlers.http(socket, first);
      } else socket.destroy();
    });
  }

  /**
   * Closes an idle connection: first one that never made a call (a client opening connections in
   * a loop would otherwise push out real clients between their calls), the longest silent first.
   * False if every one has a call in progress.
   */
  private closeIdlest(): boolean {
    let idlest: Socket | undefined;
    let rank = Infinity;
    for (const [socket, c] of this.open) {
      if (c.h2 && c.h2.openStreams > 0) continue;
      const r = c.lastHeardMs + (c.h2?.madeCalls ? 1e15 : 0);
      if (r < rank) {
        idlest = socket;
        rank = r;
      }
    }
    if (!idlest) return false;
    this.open.delete(idlest);
    idlest.destroy();
    return true;
  }

  /** At most one line a minute: a client opening connections in a loop should not flood the log. */
  private logRefusal(why: string): void {
    const now = Date.now();
    if (now - this.lastRefusalLogMs < 60_000) return;
    this.lastRefusalLogMs = now;
    this.log.warn(`refused a connection: ${why.replace(/^actiond: /, "")}`);
  }
}
