// The Remote Asset API (FetchBlob, PushBlob) against a real server, with a small HTTP server of the
// test's own on 127.0.0.1 as the origin: downloads checked against checksum.sri, served again
// without the origin (also after a restart), headers passed on, failures named in the status.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { Fetch, FetchBlobRequestSchema, Push, PushBlobRequestSchema } from "../src/gen/build/bazel/remote/asset/v1/remote_asset_pb";
import { BadRequestSchema } from "../src/gen/google/rpc/error_details_pb";
import { ReapiClient, grpc, serviceClient, sha256 } from "./support/client";
import { randomBytes, rejects } from "./support/helpers";
import { startServer, tempDir, type ServerProcess } from "./support/server";
import { join } from "node:path";
import { createLogger } from "../src/core";
import { directDownload, serveDownloads } from "../src/fetch";

const sri = (data: Uint8Array) => `sha256-${new Bun.CryptoHasher("sha256").update(data).digest("base64")}`;

const payload = randomBytes(300_000);
const requests: { path: string; auth: string | null }[] = [];
let origin: ReturnType<typeof Bun.serve>;
let base = "";
let server: ServerProcess;
let root = "";

function startOrigin() {
  origin = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const path = new URL(req.url).pathname;
      requests.push({ path, auth: req.headers.get("authorization") });
      if (path === "/archive.tar.gz" || path === "/mirror/archive.tar.gz") return new Response(payload);
      if (path === "/private" && req.headers.get("authorization") === "Bearer sesame") return new Response("secret\n");
      if (path === "/private") return new Response("no", { status: 401 });
      return new Response("not here", { status: 404 });
    },
  });
  base = `http://127.0.0.1:${origin.port}`;
}

beforeAll(async () => {
  startOrigin();
  root = tempDir();
  server = await startServer({ root });
});

afterAll(async () => {
  origin.stop(true);
  expect(await server.stop()).toBe(0);
});

describe("FetchBlob", () => {
  test("downloads from origin once, checked against checksum.sri; then serves it without the origin, by URI or by checksum", async () => {
    const fetch = serviceClient(Fetch, server.address);
    const cas = new ReapiClient(server.address);
    try {
      const uri = `${base}/archive.tar.gz`;
      const qualifiers = [{ name: "checksum.sri", value: sri(payload) }, { name: "bazel.canonical_id", value: "archive-1" }];
      const first = await fetch.call("fetchBlob", FetchBlobRequestSchema, { uris: [uri], qualifiers });
      expect(first.status.code).toBe(0);
      expect(first.uri).toBe(uri);
      expect(first.blobDigest).toMatchObject({ hash: sha256(payload).hash, sizeBytes: BigInt(payload.length) });
      expect(Buffer.compare((await cas.read(`blobs/${first.blobDigest.hash}/${first.blobDigest.sizeBytes}`)).data, payload)).toBe(0);
      expect(requests.filter((r) => r.path === "/archive.tar.gz")).toHaveLength(1);

      origin.stop(true);
      try {
        const again = await fetch.call("fetchBlob", FetchBlobRequestSchema, { uris: [uri], qualifiers });
        expect(again.status.code).toBe(0);
        expect(again.blobDigest.hash).toBe(first.blobDigest.hash);
        // The same checksum from another URL is the same content: no download needed.
        const mirror = await fetch.call("fetchBlob", FetchBlobRequestSchema, { uris: [`http://127.0.0.1:9/elsewhere.tgz`], qualifiers: [qualifiers[0]!] });
        expect(mirror.blobDigest.hash).toBe(first.blobDigest.hash);
        // Content older than asked for is fetched again: here the origin is gone, so that fails.
        const fresh = await fetch.call("fetchBlob", FetchBlobRequestSchema, { uris: [uri], qualifiers, oldestContentAccepted: { seconds: BigInt(Math.ceil(Date.now() / 1000) + 60) } });
        expect(fresh.status.code).toBe(grpc.status.UNAVAILABLE);
        expect(fresh.status.message).toContain(uri);
      } finally {
        startOrigin();
      }
    } finally {
      fetch.close();
      cas.close();
    }
  });

  test("a checksum that does not match is ABORTED naming both; a missing file NOT_FOUND; a refusal PERMISSION_DENIED; mirrors are tried in turn", async () => {
    const fetch = serviceClient(Fetch, server.address);
    try {
      const wrong = sri(new TextEncoder().encode("something else"));
      const bad = await fetch.call("fetchBlob", FetchBlobRequestSchema, { uris: [`${base}/mirror/archive.tar.gz`], qualifiers: [{ name: "checksum.sri", value: wrong }] });
      expect(bad.status.code).toBe(grpc.status.ABORTED);
      expect(bad.status.message).toContain(wrong);
      expect(bad.status.message).toContain(sri(payload));
      expect(bad.blobDigest).toBeUndefined();
      const missing = await fetch.call("fetchBlob", FetchBlobRequestSchema, { uris: [`${base}/nothing`] });
      expect(missing.status.code).toBe(grpc.status.NOT_FOUND);
      expect(missing.status.message).toContain("HTTP 404");
      const refused = await fetch.call("fetchBlob", FetchBlobRequestSchema, { uris: [`${base}/private`] });
      expect(refused.status.code).toBe(grpc.status.PERMISSION_DENIED);
      // The first URL fails, the second (a mirror) has it.
      const mirrored = await fetch.call("fetchBlob", FetchBlobRequestSchema, { uris: [`${base}/nothing`, `${base}/mirror/archive.tar.gz`], qualifiers: [{ name: "checksum.sri", value: sri(payload) }] });
      expect(mirrored.status.code).toBe(0);
    } finally {
      fetch.close();
    }
  });

  test("headers from qualifiers reach the origin: Bazel's bazel.auth_headers and http_header:", async () => {
    const fetch = serviceClient(Fetch, server.address);
    try {
      const uri = `${base}/private`;
      const viaBazel = await fetch.call("fetchBlob", FetchBlobRequestSchema, { uris: [uri], qualifiers: [{ name: "bazel.auth_headers", value: JSON.stringify({ [uri]: { Authorization: "Bearer sesame" } }) }] });
      expect(viaBazel.status.code).toBe(0);
      expect(requests.at(-1)).toEqual({ path: "/private", auth: "Bearer sesame" });
      const viaHeader = await fetch.call("fetchBlob", FetchBlobRequestSchema, { uris: [uri], qualifiers: [{ name: "http_header:Authorization", value: "Bearer sesame" }, { name: "bazel.canonical_id", value: "again" }] });
      expect(viaHeader.status.code).toBe(0);
    } finally {
      fetch.close();
    }
  });

  test("a qualifier it does not know is INVALID_ARGUMENT with a BadRequest naming it", async () => {
    const fetch = serviceClient(Fetch, server.address);
    try {
      const err = await rejects(fetch.call("fetchBlob", FetchBlobRequestSchema, { uris: [`${base}/archive.tar.gz`], qualifiers: [{ name: "vcs.commit", value: "abc" }] }));
      expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
      const details = err.status!.details.map((d) => anyUnpack(d, BadRequestSchema));
      expect(details[0]?.fieldViolations.map((v) => [v.field, v.description])).toEqual([["qualifiers.name", '"vcs.commit" not supported']]);
    } finally {
      fetch.close();
    }
  });
});

describe("PushBlob", () => {
  test("associates a URN with a blob in the CAS, served by FetchBlob; a blob not in the CAS is FAILED_PRECONDITION", async () => {
    const fetch = serviceClient(Fetch, server.address);
    const push = serviceClient(Push, server.address);
    const cas = new ReapiClient(server.address);
    try {
      const data = randomBytes(5000);
      const d = sha256(data);
      await cas.upload(`uploads/${crypto.randomUUID()}/blobs/${d.hash}/${d.sizeBytes}`, data);
      const urn = `urn:uuid:${crypto.randomUUID()}`;
      await push.call("pushBlob", PushBlobRequestSchema, { uris: [urn], blobDigest: d });
      const got = await fetch.call("fetchBlob", FetchBlobRequestSchema, { uris: [urn] });
      expect(got.status.code).toBe(0);
      expect(got.blobDigest.hash).toBe(d.hash);
      // Expired: no longer served.
      await push.call("pushBlob", PushBlobRequestSchema, { uris: [urn], blobDigest: d, expireAt: { seconds: 1n } });
      expect((await fetch.call("fetchBlob", FetchBlobRequestSchema, { uris: [urn] })).status.code).toBe(grpc.status.NOT_FOUND);
      const err = await push.call("pushBlob", PushBlobRequestSchema, { uris: [urn], blobDigest: sha256("never uploaded") }).catch((e) => e);
      expect(err.code).toBe(grpc.status.FAILED_PRECONDITION);
    } finally {
      fetch.close();
      push.close();
      cas.close();
    }
  });
});

describe("--asset-downloads off", () => {
  test("what is not known is UNAVAILABLE saying why, and the origin never hears of it", async () => {
    const own = await startServer({ args: ["--asset-downloads", "off"] });
    const fetch = serviceClient(Fetch, own.address);
    try {
      const before = requests.length;
      const got = await fetch.call("fetchBlob", FetchBlobRequestSchema, { uris: [`${base}/archive.tar.gz`] });
      expect(got.status.code).toBe(grpc.status.UNAVAILABLE);
      expect(got.status.message).toContain("downloads from origin are off");
      expect(requests.length).toBe(before);
    } finally {
      fetch.close();
      expect(await own.stop()).toBe(0);
    }
  });
});

describe("--asset-downloads unix:PATH (serve-vm's guest: the host's download service fetches, the guest checks and stores)", () => {
  test("downloads go through the service with their headers; the checksum is still checked by the server; failures say whose they are", async () => {
    const dir = tempDir("actiond-downloads-");
    const socket = join(dir, "downloads.sock");
    let service = serveDownloads(socket, createLogger("warn"), directDownload, "downloads are off on this host");
    const own = await startServer({ args: ["--asset-downloads", `unix:${socket}`] });
    const fetch = serviceClient(Fetch, own.address);
    const call = (uris: string[], qualifiers: { name: string; value: string }[] = []) => fetch.call("fetchBlob", FetchBlobRequestSchema, { uris, qualifiers });
    try {
      const before = requests.length;
      const got = await call([`${base}/archive.tar.gz`], [{ name: "checksum.sri", value: sri(payload) }, { name: "bazel.canonical_id", value: "through-the-host" }]);
      expect(got.status.code).toBe(0);
      expect(got.blobDigest).toMatchObject({ hash: sha256(payload).hash, sizeBytes: BigInt(payload.length) });
      expect(requests.slice(before).map((r) => r.path)).toEqual(["/archive.tar.gz"]);
      const uri = `${base}/private`;
      const auth = await call([uri], [{ name: "bazel.auth_headers", value: JSON.stringify({ [uri]: { Authorization: "Bearer sesame" } }) }]);
      expect(auth.status.code).toBe(0);
      expect(requests.at(-1)).toEqual({ path: "/private", auth: "Bearer sesame" });
      // The service passes bytes on; the server checks them.
      const wrong = sri(new TextEncoder().encode("something else"));
      const bad = await call([`${base}/mirror/archive.tar.gz`], [{ name: "checksum.sri", value: wrong }]);
      expect(bad.status.code).toBe(grpc.status.ABORTED);
      expect(bad.status.message).toContain(wrong);
      const missing = await call([`${base}/nothing`]);
      expect(missing.status.code).toBe(grpc.status.NOT_FOUND);
      expect(missing.status.message).toContain("HTTP 404");
      // The host could not reach the origin: its reason, under the URI.
      const unreachable = await call(["http://127.0.0.1:9/gone.tgz"]);
      expect(unreachable.status.code).toBe(grpc.status.UNAVAILABLE);
      expect(unreachable.status.message).toStartWith("http://127.0.0.1:9/gone.tgz: ");
      // The host downloads nothing (serve-vm --asset-downloads off), or is not there at all.
      service.stop();
      service = serveDownloads(socket, createLogger("warn"), undefined, "downloads are off on this host");
      const refused = await call([`${base}/archive.tar.gz?off`]);
      expect(refused.status.code).toBe(grpc.status.UNAVAILABLE);
      expect(refused.status.message).toContain("downloads are off on this host");
      service.stop();
      const gone = await call([`${base}/archive.tar.gz?gone`]);
      expect(gone.status.code).toBe(grpc.status.UNAVAILABLE);
      expect(gone.status.message).toContain("the VM host's download service did not answer");
      expect(requests.filter((r) => r.path === "/archive.tar.gz").length).toBe(requests.slice(0, before).filter((r) => r.path === "/archive.tar.gz").length + 1);
    } finally {
      service.stop();
      fetch.close();
      expect(await own.stop()).toBe(0);
    }
  });
});

describe("after a restart", () => {
  test("what was fetched is still served without the origin", async () => {
    expect(await server.stop()).toBe(0);
    origin.stop(true);
    server = await startServer({ root });
    const fetch = serviceClient(Fetch, server.address);
    try {
      const got = await fetch.call("fetchBlob", FetchBlobRequestSchema, { uris: [`${base}/archive.tar.gz`], qualifiers: [{ name: "checksum.sri", value: sri(payload) }] });
      expect(got.status.code).toBe(0);
      expect(got.blobDigest.hash).toBe(sha256(payload).hash);
    } finally {
      fetch.close();
      startOrigin();
    }
  });
});
