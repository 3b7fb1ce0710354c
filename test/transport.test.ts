// The server's HTTP/2 and gRPC transport (src/transport): HPACK against RFC 7541's own examples, and
// a real `actiond serve` given what well-behaved clients never send: calls past their deadline,
// messages over the limit, headers that do not decode, methods it does not serve, a client that
// stops reading a download. Bazel, remotetool and our client cover the well-behaved paths.
import { describe, expect, test } from "bun:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { GetCapabilitiesRequestSchema } from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { ReadRequestSchema } from "../src/gen/google/bytestream/bytestream_pb";
import { CompressionError, HpackDecoder, huffmanDecode } from "../src/transport/hpack";
import { sha256 } from "./support/client";
import { randomBytes, rssMiB, suiteServer, waitUntil } from "./support/helpers";
import { frame, message, openCall, rawConnect, settingsFrame, statusTrailer, within } from "./support/raw-h2";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");

describe("HPACK", () => {
  test("decodes RFC 7541's requests with Huffman strings (C.4), the dynamic table carried across them", () => {
    const d = new HpackDecoder();
    const decode = (h: string) => d.decode(hex(h), 65536).headers;
    expect(decode("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff")).toEqual([[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"]]);
    expect(decode("8286 84be 5886 a8eb 1064 9cbf")).toEqual([[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"], ["cache-control", "no-cache"]]);
    expect(decode("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf")).toEqual([
      [":method", "GET"],
      [":scheme", "https"],
      [":path", "/index.html"],
      [":authority", "www.example.com"],
      ["custom-key", "custom-value"],
    ]);
  });

  test("evicts the oldest entries when the table is full (C.5, a 256-byte table)", () => {
    const d = new HpackDecoder(256);
    const date = "Mon, 21 Oct 2013 20:13:21 GMT";
    const first = hex(
      "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
    );
    expect(d.decode(first, 65536).headers).toEqual([[":status", "302"], ["cache-control", "private"], ["date", date], ["location", "https://www.example.com"]]);
    // ":status: 307" pushes ":status: 302" out; the indices of the others shift by one.
    expect(d.decode(hex("4803 3330 37c1 c0bf"), 65536).headers).toEqual([[":status", "307"], ["cache-control", "private"], ["date", date], ["location", "https://www.example.com"]]);
  });

  test("refuses what a broken or hostile encoder sends", () => {
    // Padding that is not EOS's prefix, and an index past the tables.
    expect(() => huffmanDecode(Buffer.from([0x00]), 0, 1)).toThrow(CompressionError);
    expect(() => new HpackDecoder().decode(Buffer.from([0xff, 0x80, 0x01]), 65536)).toThrow(CompressionError);
    // A table size over what the server allowed, and a string longer than its block.
    expect(() => new HpackDecoder(4096).decode(Buffer.from([0x3f, 0xe2, 0x1f]), 65536)).toThrow(CompressionError);
    expect(() => new HpackDecoder().decode(Buffer.from([0x00, 0x05, 0x61]), 65536)).toThrow(CompressionError);
  });

  test("a header list over the limit is decoded (the table stays in step) but reported, not kept", () => {
    const d = new HpackDecoder();
    // "custom-key: custom-value", added to the table, in a list allowed 40 bytes (the entry counts 54).
    const r = d.decode(hex("400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65"), 40);
    expect(r).toEqual({ headers: [], over: true });
    expect(d.decode(Buffer.from([0xbe]), 65536).headers).toEqual([["custom-key", "custom-value"]]);
  });
});

describe("the server's transport", () => {
  const suite = suiteServer();
  const capabilities = () => suite.client.unary(suite.client.caps, "getCapabilities", GetCapabilitiesRequestSchema, {});
  const GET_CAPABILITIES = toBinary(GetCapabilitiesRequestSchema, create(GetCapabilitiesRequestSchema, {}));

  test("a call whose deadline (grpc-timeout) passes before its request is complete ends DEADLINE_EXCEEDED", async () => {
    const conn = await rawConnect(suite.server.port, openCall(1, undefined, [["grpc-timeout", "200m"]]));
    expect(await waitUntil(() => conn.received().includes(statusTrailer(4)), 5000)).toBe(true);
    conn.socket.destroy();
  });

  test("a request message declared over 16 MiB is RESOURCE_EXHAUSTED before any of it is held", async () => {
    const conn = await rawConnect(suite.server.port, openCall(1), message(1, new Uint8Array(10), false, 17 * 1024 * 1024));
    expect(await waitUntil(() => conn.received().includes(statusTrailer(8)), 5000)).toBe(true);
    expect(conn.received().toString("latin1")).toContain("a request message of 17825792 bytes, over the 16777216 allowed");
    conn.socket.destroy();
  });

  test("a method actiond does not serve is UNIMPLEMENTED, naming it", async () => {
    const conn = await rawConnect(suite.server.port, openCall(1, "/no.Such/Method"), message(1, GET_CAPABILITIES, true));
    expect(await waitUntil(() => conn.received().includes(statusTrailer(12)), 5000)).toBe(true);
    expect(conn.received().toString("latin1")).toContain("actiond does not serve the method /no.Such/Method");
    conn.socket.destroy();
  });

  test("headers that do not decode close that connection (COMPRESSION_ERROR), and the server serves others", async () => {
    const conn = await rawConnect(suite.server.port, frame(0x1, 0x4, 1, Buffer.from([0xff, 0x80, 0x01])));
    expect(await within(conn.closed, 5000)).toBe(true);
    expect(suite.server.log()).toContain("its headers do not decode: index");
    expect((await capabilities()).cacheCapabilities).toBeDefined();
  });

  test("a client that stops reading a download holds about its windows' worth of the server's memory, and others go on", async () => {
    const blob = randomBytes(48 * 1024 * 1024);
    const { hash: digest } = sha256(blob);
    await suite.client.upload(`uploads/${crypto.randomUUID()}/blobs/${digest}/${blob.length}`, blob, 1024 * 1024);
    const before = rssMiB(suite.server.proc.pid);
    // Windows as large as the protocol allows, then never a byte read.
    const huge = Buffer.alloc(6);
    huge.writeUInt16BE(0x4, 0);
    huge.writeUInt32BE(2 ** 31 - 1, 2);
    const grant = Buffer.alloc(4);
    grant.writeUInt32BE(2 ** 31 - 1 - 65535, 0);
    const read = toBinary(ReadRequestSchema, create(ReadRequestSchema, { resourceName: `blobs/${digest}/${blob.length}` }));
    const stuck = await rawConnect(suite.server.port, settingsFrame(huge), frame(0x8, 0, 0, grant), openCall(1, "/google.bytestream.ByteStream/Read"), message(1, read, true));
    stuck.socket.pause();
    // Long enough for the server to have sent all it could; other calls are answered meanwhile.
    for (let i = 0; i < 20; i++) expect((await capabilities()).cacheCapabilities).toBeDefined();
    expect(await waitUntil(() => rssMiB(suite.server.proc.pid) - before >= 40, 2000)).toBe(false);
    stuck.socket.destroy();
  });
});
