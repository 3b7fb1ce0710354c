// How the Remote Asset API reaches an origin: directly (serve), or through another process that
// downloads for it (serve-vm's guest has no network: the host downloads and streams the bytes in).
// The service is plain HTTP on a Unix socket: the request names the origin URI in a header and carries
// the origin's own headers; the answer is the origin's status and body, or 502/504 with why. The
// checksum is checked where the bytes are stored (the guest), never trusted from the service.
import { chmodSync, rmSync } from "node:fs";
import type { Logger } from "../core";

/** Fetches one origin URI (redirects followed); rejects on a transport failure, with name "TimeoutError" for a timeout. */
export type Download = (uri: string, init: { headers: Record<string, string>; signal: AbortSignal }) => Promise<Response>;

/** Whether a download's rejection is its time running out (or its caller giving up). */
export const endedByTimeout = (err: unknown) => (err as Error)?.name === "TimeoutError" || (err as Error)?.name === "AbortError";

export const directDownload: Download = (uri, init) => fetch(uri, { headers: init.headers, redirect: "follow", signal: init.signal });

/** The header naming the origin URI, and the one carrying the service's own failure. */
const URI_HEADER = "actiond-download-uri";
const FAILURE_HEADER = "actiond-download-failure";
/** Downloads the service runs at once; more wait for none and are told so. */
export const MAX_SERVICE_DOWNLOADS = 64;

/** Downloads through the service listening on `socketPath` (the guest's end). */
export function downloadThrough(socketPath: string, whoServes: string): Download {
  return async (uri, init) => {
    let response: Response;
    try {
      response = await fetch("http://actiond-downloads/", { unix: socketPath, headers: { ...init.headers, [URI_HEADER]: uri }, signal: init.signal });
    } catch (err) {
      if (endedByTimeout(err)) throw err;
      throw new Error(`${whoServes} did not answer (${(err as Error)?.message ?? String(err)})`);
    }
    const failure = response.headers.get(FAILURE_HEADER);
    if (failure === null) return response;
    await response.body?.cancel().catch(() => {});
    const err = new Error(decodeURIComponent(failure));
    if (response.status === 504) err.name = "TimeoutError";
    throw err;
  };
}

export interface DownloadService {
  readonly path: string;
  stop(): void;
}

/**
 * Serves downloads on the Unix socket `path` (the host's end), each through `download`, or refuses
 * every one with `refusal` (downloads are off). The socket is the caller's: a 0700 folder keeps
 * others out.
 */
export function serveDownloads(path: string, log: Logger, download: Download | undefined, refusal: string): DownloadService {
  rmSync(path, { force: true });
  let running = 0;
  const fail = (status: number, why: string) => new Response(null, { status, headers: { [FAILURE_HEADER]: encodeURIComponent(why) } });
  const server = Bun.serve({
    unix: path,
    async fetch(req, self) {
      // A download may take as long as its request's timeout allows; the client's signal ends it.
      self.timeout(req, 0);
      const uri = req.headers.get(URI_HEADER) ?? "";
      if (!/^https?:\/\//i.test(uri)) return fail(502, `not an http or https URL: ${uri.slice(0, 200)}`);
      if (!download) return fail(502, refusal);
      if (running >= MAX_SERVICE_DOWNLOADS) return fail(502, `${MAX_SERVICE_DOWNLOADS} downloads are already running here; try again shortly`);
      const headers: Record<string, string> = {};
      req.headers.forEach((value, name) => {
        if (name !== URI_HEADER && name !== "host" && name !== "connection" && name !== "content-length") headers[name] = value;
      });
      running++;
      let released = false;
      const release = () => {
        if (!released) running--;
        released = true;
      };
      req.signal.addEventListener("abort", release, { once: true });
      let origin: Response;
      try {
        origin = await download(uri, { headers, signal: req.signal });
      } catch (err) {
        release();
        return fail(endedByTimeout(err) ? 504 : 502, (err as Error)?.message ?? String(err));
      }
      log.debug(`downloading ${uri} for the guest: HTTP ${origin.status}`);
      const passOn = new Headers();
      for (const name of ["content-length", "content-type"]) {
        const v = origin.headers.get(name);
        if (v !== null) passOn.set(name, v);
      }
      // Counted until its body has gone through, or the guest went away (which ends the origin's too).
      const body = origin.body?.pipeThrough(new TransformStream({ flush: release }));
      if (!body) release();
      req.signal.addEventListener("abort", () => origin.body?.cancel().catch(() => {}), { once: true });
      return new Response(body ?? null, { status: origin.status, statusText: origin.statusText, headers: passOn });
    },
  });
  chmodSync(path, 0o600);
  return {
    path,
    stop: () => {
      void server.stop(true);
      rmSync(path, { force: true });
    },
  };
}
