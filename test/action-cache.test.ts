// ActionCache over real gRPC against a real `actiond serve`.
import { beforeAll, describe, expect, test } from "bun:test";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  BatchUpdateBlobsRequestSchema,
  DirectorySchema,
  GetActionResultRequestSchema,
  TreeSchema,
  UpdateActionResultRequestSchema,
  type ActionResult,
  type Digest,
} from "../src/gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { PreconditionFailureSchema } from "../src/gen/google/rpc/error_details_pb";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { ReapiClient, grpc, sha256 } from "./support/client";
import { rejects, suiteServer } from "./support/helpers";

const enc = (s: string) => new TextEncoder().encode(s);
const suite = suiteServer();
let c: ReapiClient;
beforeAll(() => void (c = suite.client));

async function put(...blobs: Uint8Array[]): Promise<Digest[]> {
  const digests = blobs.map((b) => sha256(b));
  const res = await c.unary(c.cas, "batchUpdateBlobs", BatchUpdateBlobsRequestSchema, { requests: blobs.map((data, i) => ({ digest: digests[i], data })) });
  for (const r of res.responses) expect(r.status.code).toBe(0);
  return digests;
}

const getResult = (actionDigest: Digest, extra: object = {}) =>
  c.unary<typeof GetActionResultRequestSchema, ActionResult>(c.ac, "getActionResult", GetActionResultRequestSchema, { instanceName: "ci", actionDigest, ...extra });
const update = (actionDigest: Digest, actionResult: object) =>
  c.unary(c.ac, "updateActionResult", UpdateActionResultRequestSchema, { actionDigest, actionResult: actionResult as any });

describe("ActionCache", () => {
  test("a miss is NOT_FOUND", async () => {
    const e = await rejects(getResult(sha256("an action never run")));
    expect(e.code).toBe(grpc.status.NOT_FOUND);
  });

  test("a stored result comes back, with an output directory's Tree and stdout", async () => {
    const [out, stdout, file] = await put(enc("output file"), enc("hello on stdout\n"), enc("file in tree"));
    const child = create(DirectorySchema, { files: [{ name: "inner.txt", digest: file }] });
    const tree = toBinary(TreeSchema, create(TreeSchema, {
      root: { directories: [{ name: "sub", digest: sha256(toBinary(DirectorySchema, child)) }] },
      children: [child],
    }));
    const [treeDigest] = await put(tree);
    const action = sha256("action with outputs");
    const result = {
      outputFiles: [{ path: "out/a.txt", digest: out, isExecutable: true }],
      outputDirectories: [{ path: "out/dir", treeDigest }],
      exitCode: 0,
      stdoutDigest: stdout,
      executionMetadata: { worker: "test" },
    };
    await update(action, result);
    const got = await getResult(action, { instanceName: "another/instance" });
    expect(got.outputFiles[0]).toMatchObject({ path: "out/a.txt", isExecutable: true });
    expect(got.outputFiles[0]!.digest!.hash).toBe(out!.hash);
    expect(got.outputDirectories[0]!.treeDigest!.hash).toBe(treeDigest!.hash);
    expect(got.stdoutRaw).toHaveLength(0);
    // Inlining on request.
    const inlined = await getResult(action, { inlineStdout: true, inlineOutputFiles: ["out/a.txt"] });
    expect(new TextDecoder().decode(inlined.stdoutRaw)).toBe("hello on stdout\n");
    expect(new TextDecoder().decode(inlined.outputFiles[0]!.contents)).toBe("output file");
  });

  test("a result referencing blobs not in the CAS is refused with FAILED_PRECONDITION naming each", async () => {
    const [present] = await put(enc("present output"));
    const absent = sha256("absent output");
    const absentTree = sha256("absent tree");
    const action = sha256("action with missing outputs");
    const e = await rejects(update(action, {
      outputFiles: [{ path: "a", digest: present }, { path: "b", digest: absent }],
      outputDirectories: [{ path: "d", treeDigest: absentTree }],
    }));
    expect(e.code).toBe(grpc.status.FAILED_PRECONDITION);
    const failure = anyUnpack(e.status!.details[0]!, PreconditionFailureSchema)!;
    expect(failure.violations.map((v) => `${v.type} ${v.subject}`).sort()).toEqual(
      [`MISSING blobs/${absent.hash}/${absent.sizeBytes}`, `MISSING blobs/${absentTree.hash}/${absentTree.sizeBytes}`].sort(),
    );
    expect((await rejects(getResult(action))).code).toBe(grpc.status.NOT_FOUND);
  });

  test("a file missing inside an output directory's Tree is refused too", async () => {
    const ghost = sha256("file that was never uploaded");
    const [treeDigest] = await put(toBinary(TreeSchema, create(TreeSchema, { root: { files: [{ name: "ghost", digest: ghost }] } })));
    const e = await rejects(update(sha256("tree with ghost"), { outputDirectories: [{ path: "d", treeDigest }] }));
    expect(e.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(e.details).toContain("not in the CAS");
  });

  test("malformed digests are INVALID_ARGUMENT", async () => {
    const e = await rejects(getResult({ hash: "nope", sizeBytes: 1n } as any));
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
    const e2 = await rejects(update(sha256("x"), { outputFiles: [{ path: "a", digest: { hash: "zz", sizeBytes: 2n } }] }));
    expect(e2.code).toBe(grpc.status.INVALID_ARGUMENT);
  });
});
