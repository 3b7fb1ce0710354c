// A guest's vsock ports through one Unix socket, as vhost-device-vsock's --uds-path offers them (the
// protocol Firecracker's vsock device uses): connect, send "CONNECT <port>\n", read "OK <n>\n", and
// from then on the socket is that vsock stream. The same shape as Virtualization.framework's
// per-port connections, so the guest's AF_VSOCK relay carries exactly what it will carry on a Mac.
import { connect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { GuestLink } from "./driver";

/** The longest answer line accepted before the stream: "OK 1073741824\n" and a little room. */
const MAX_ANSWER = 64;

function openPort(udsPath: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ path: udsPath, allowHalfOpen: true });
    let got: Buffer = Buffer.alloc(0);
    const fail = (why: string) => {
      s.destroy();
      reject(new Error(`vsock port ${port} through ${udsPath}: ${why}`));
    };
    const onData = (d: Buffer) => {
      got = got.length === 0 ? d : Buffer.concat([got, d]);
      const nl = got.indexOf(10);
      if (nl < 0) return void (got.length > MAX_ANSWER && fail("no answer line"));
      s.off("data", onData);
      s.pause();
      const line = got.subarray(0, nl).toString("latin1");
      if (!/^OK \d+$/.test(line)) return fail(`answered "${line.slice(0, MAX_ANSWER)}"`);
      // Bytes the guest sent right after the answer belong to the stream.
      if (got.length > nl + 1) s.unshift(got.subarray(nl + 1));
      s.removeAllListeners("close");
      resolve(s);
    };
    s.on("data", onData);
    s.once("error", (err) => fail(err.message));
    s.once("close", () => fail("closed before answering"));
    s.once("connect", () => s.write(`CONNECT ${port}\n`));
  });
}

export function hybridVsockLink(udsPath: string): GuestLink {
  return {
    join(client: Duplex, port: number) {
      // Nothing it sends may be lost while the vsock stream is being opened (the caller may resume
      // it at once): kept here, then written first.
      const early: Buffer[] = [];
      const hold = (d: Buffer) => early.push(d);
      client.on("data", hold);
      client.on("error", () => client.destroy());
      openPort(udsPath, port).then(
        (guest) => {
          client.off("data", hold);
          if (client.destroyed) return void guest.destroy();
          for (const b of early) guest.write(b);
          client.pipe(guest);
          guest.pipe(client);
          guest.resume();
          guest.on("error", () => client.destroy());
          client.on("close", () => guest.destroy());
          guest.on("close", () => client.destroy());
        },
        () => client.destroy(),
      );
    },
    async request(port: number, text: string) {
      const s = await openPort(udsPath, port);
      return new Promise<string>((resolve, reject) => {
        const chunks: Buffer[] = [];
        s.on("data", (d: Buffer) => chunks.push(d));
        // The answer ends when the guest closes. Not half-closed first: a vsock stream through
        // vhost-device-vsock does not carry a shutdown(SHUT_WR) across, and the guest answers a
        // whole line without waiting for the end.
        s.on("end", () => resolve(Buffer.concat(chunks).toString()));
        s.on("close", () => resolve(Buffer.concat(chunks).toString()));
        s.on("error", reject);
        s.resume();
        s.write(text);
      });
    },
  };
}
