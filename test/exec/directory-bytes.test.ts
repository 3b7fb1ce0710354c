// Directories and Trees written by hand are the bytes protobuf-es writes for the same messages, so
// their digests are what any client computes from them.
import { describe, expect, test } from "bun:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { DirectorySchema, TreeSchema } from "../../src/gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { DirectoryBytes, treePieces } from "../../src/exec/directory-bytes";

const treeBytes = (root: DirectoryBytes, children: Iterable<Uint8Array>) => Buffer.concat(treePieces(root, children));

const d = (hash: string, size: number) => ({ fn: "sha256" as const, hash, size });

describe("DirectoryBytes", () => {
  test("files, directories and symlinks encode as protobuf-es encodes them", () => {
    const h = (c: string) => c.repeat(64);
    const files = [
      { name: "a", digest: d(h("1"), 0), executable: false },
      { name: "b.sh", digest: d(h("2"), 300), executable: true },
      { name: "é-ünï", digest: d(h("3"), 2 ** 40), executable: false },
    ];
    const dirs = [{ name: "sub", digest: d(h("4"), 77) }];
    const links = [{ name: "l", target: "../x/y" }, { name: "abs", target: "/usr/bin" }];
    const mine = new DirectoryBytes();
    // Interleaved, as a listing by name would add them.
    mine.file(files[0]!.name, files[0]!.digest, files[0]!.executable);
    mine.symlink(links[0]!.name, links[0]!.target);
    mine.directory(dirs[0]!.name, dirs[0]!.digest);
    mine.file(files[1]!.name, files[1]!.digest, files[1]!.executable);
    mine.symlink(links[1]!.name, links[1]!.target);
    mine.file(files[2]!.name, files[2]!.digest, files[2]!.executable);
    const wire = (x: { hash: string; size: number }) => ({ hash: x.hash, sizeBytes: BigInt(x.size) });
    const theirs = create(DirectorySchema, {
      files: files.map((f) => ({ name: f.name, digest: wire(f.digest), isExecutable: f.executable })),
      directories: dirs.map((x) => ({ name: x.name, digest: wire(x.digest) })),
      symlinks: links,
    });
    const bytes = mine.done();
    expect(Buffer.from(bytes).equals(Buffer.from(toBinary(DirectorySchema, theirs)))).toBe(true);
    const empty = new DirectoryBytes().done();
    expect(empty.length).toBe(0);
    const tree = treeBytes(mine, [empty, bytes]);
    const theirTree = create(TreeSchema, { root: theirs, children: [create(DirectorySchema), theirs] });
    expect(Buffer.from(tree).equals(Buffer.from(toBinary(TreeSchema, theirTree)))).toBe(true);
    expect(Buffer.from(treeBytes(new DirectoryBytes(), [])).equals(Buffer.from(toBinary(TreeSchema, create(TreeSchema, { root: create(DirectorySchema) }))))).toBe(true);
  });

  test("a directory too big for one buffer, and a Tree of children given as the iterator output collection passes", () => {
    // 50,000 files outgrow the writer's first buffers many times over: the pieces must join in order.
    const files = Array.from({ length: 50_000 }, (_, i) => ({ name: `f${String(i).padStart(6, "0")}`, digest: d((i % 10).toString().repeat(64), i), executable: i % 7 === 0 }));
    const mine = new DirectoryBytes();
    for (const f of files) mine.file(f.name, f.digest, f.executable);
    const theirs = create(DirectorySchema, { files: files.map((f) => ({ name: f.name, digest: { hash: f.digest.hash, sizeBytes: BigInt(f.digest.size) }, isExecutable: f.executable })) });
    const bytes = mine.done();
    expect(Buffer.from(bytes).equals(Buffer.from(toBinary(DirectorySchema, theirs)))).toBe(true);
    const children = new Map([["x", bytes], ["y", new DirectoryBytes().done()]]);
    const tree = treeBytes(mine, children.values());
    const theirTree = create(TreeSchema, { root: theirs, children: [theirs, create(DirectorySchema)] });
    expect(Buffer.from(tree).equals(Buffer.from(toBinary(TreeSchema, theirTree)))).toBe(true);
  });
});
