// serve-vm's status page, host side. The guest serves the page, /api/status, /metrics and the rest
// (its worker is the one that knows); the host answers /api/vm (the guest's state: booting, ready,
// restarts, its console's last lines) and the page itself, so the page works while the guest boots
// and shows why it does not come up. Everything else is passed on to the guest once it answers.
import type { Socket } from "node:net";
import type { Logger, VmState } from "../core";
import { pageResponse } from "./page";
import { privateHttp } from "./private-http";

export interface VmFrontSource {
  state(): VmState;
  /** An address on this machine that reaches the guest's port directly. */
  guestAddress: string;
  ready(): boolean;
}

export function startVmFront(vm: VmFrontSource, root: string, log: Logger): { take(socket: Socket, first: Buffer): void; close(): void } {
  const fetch = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    if (req.method !== "GET" && req.method !== "HEAD") return new Response("only GET\n", { status: 405 });
    if (url.pathname === "/api/vm") return Response.json(vm.state(), { headers: { "cache-control": "no-store" } });
    if (url.pathname === "/" && !vm.ready()) return pageResponse();
    if (!vm.ready()) {
      const s = vm.state();
      return Response.json({ error: `the VM guest is ${s.state} (since ${s.since}); /api/vm says how it goes` }, { status: 503, headers: { "cache-control": "no-store", "retry-after": "1" } });
    }
    try {
      // Streamed through: `actiond logs -f` follows a running action in the guest this way.
      const res = await globalThis.fetch(`http://${vm.guestAddress}${url.pathname}${url.search}`, { method: req.method, signal: req.signal, redirect: "manual" });
      return new Response(res.body, { status: res.status, headers: res.headers });
    } catch (err) {
      return Response.json({ error: `the VM guest did not answer: ${(err as Error).message}` }, { status: 502 });
    }
  };
  return privateHttp(fetch, root, log);
}
