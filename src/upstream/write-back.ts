// Pushes results and blobs to the upstream in the background. A push is written to a journal
// before the call that caused it returns, so a process that stops (even with SIGKILL) picks up
// where it was; the journal is compacted on start and when it has grown mostly done. A result goes
// up after every blob it names (the upstream checks, and a client that gets the entry must find
// them). A push that fails for want of the upstream waits for it; one the upstream refuses is tried
// a few times, then dropped and counted. The queue is bounded: past its length a push is dropped.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { ActionSchema } from "../gen/build/bazel/remote/execution/v2/remote_execution_pb";
import { Code, StatusError, type Logger } from "../core";
import {
  blobDigest,
  DIGEST_FUNCTIONS,
  formatDigest,
  fromWire,
  forEachTreeFile,
  type ActionCache,
  type BlobDigest,
  type DigestFunctionName,
  type LocalBlobFiles,
} from "../cas";
import type { UpstreamHealth } from "./health";
import type { Remote } from "./remote";
import type { BlobPushes } from "./tiered-blobs";
import type { ResultPushes } from "./tiered-results";
import { BATCH_BLOB_BYTES, batches } from "./puller";

type Item = { kind: "result" | "blob"; digest: BlobDigest };

const REFUSALS_BEFORE_DROP = 3;
const PARALLEL_PUSHES = 4;
const STREAM_CHUNK_BYTES = 1024 * 1024;

export interface WriteBackOptions {
  /** Where the journal lives (ROOT/upstream). */
  dir: string;
  /** The longest the queue may grow. */
  maxItems: number;
  remote: Remote;
  health: UpstreamHealth;
  /** The local store (not a tiered view: nothing here may ask the upstream). */
  blobs: LocalBlobFiles;
  results: ActionCache;
  maxBatchBytes: () => number;
  /** Whether the upstream takes action results (its capabilities say so); the blobs go either way. */
  acceptsResults: () => boolean;
  log: Logger;
}

export class WriteBack implements BlobPushes, ResultPushes {
  private readonly queue = new Map<string, Item>();
  private readonly refusals = new Map<string, number>();
  private readonly journalPath: string;
  private fd: number;
  private journalLines = 0;
  private running = 0;
  /** Pushes in flight (running counts pushers, which may be waiting for the upstream). */
  private busy = 0;
  private closed = false;
  private fullLogged = false;
  private resultsRefusedLogged = false;
  private readonly idleWaiters: (() => void)[] = [];

  constructor(private readonly o: WriteBackOptions) {
    mkdirSync(o.dir, { recursive: true });
    this.journalPath = join(o.dir, "push-queue.journal");
    for (const [key, item] of readJournal(this.journalPath)) this.queue.set(key, item);
    this.fd = this.compact();
    if (this.queue.size > 0) o.log.info(`upstream push queue: ${this.queue.size} pushes left from the last run`);
    this.kick();
  }

  get length(): number {
    return this.queue.size;
  }

  result(action: BlobDigest): void {
    this.add({ kind: "result", digest: action });
  }

  blob(d: BlobDigest): void {
    this.add({ kind: "blob", digest: d });
  }

  /** Resolves when nothing is queued or being pushed. */
  idle(): Promise<void> {
    if (this.queue.size === 0 && this.running === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Stops pushing and waits (at most waitMs) for pushes in flight; what is queued stays in the
   * journal for the next start.
   */
  async close(waitMs: number): Promise<void> {
    this.closed = true;
    const deadline = Date.now() + waitMs;
    while (this.busy > 0 && Date.now() < deadline) await Bun.sleep(20);
    closeSync(this.fd);
  }

  private add(item: Item): void {
    const key = keyOf(item);
    if (this.queue.has(key) || this.closed) return;
    if (this.queue.size >= this.o.maxItems) {
      this.o.health.count("droppedPushes");
      if (!this.fullLogged) this.o.log.warn(`upstream push queue is full (${this.o.maxItems}): newer pushes are dropped until it drains (logged once)`);
      this.fullLogged = true;
      return;
    }
    this.queue.set(key, item);
    this.append(`+${key}\n`);
    this.kick();
  }

  private done(key: string): void {
    this.queue.delete(key);
    this.refusals.delete(key);
    this.append(`-${key}\n`);
    if (this.queue.size < this.o.maxItems / 2) this.fullLogged = false;
    if (this.queue.size === 0) {
      const c = this.o.health.counts;
      this.o.log.debug(`upstream push queue is empty: ${c.resultsPushed} results and ${c.blobsPushed} blobs pushed since start`);
    }
    if (!this.closed && this.journalLines > 10_000 && this.journalLines > 4 * this.queue.size) {
      closeSync(this.fd);
      this.fd = this.compact();
    }
  }

  private append(line: string): void {
    if (this.closed) return;
    writeSync(this.fd, line);
    this.journalLines++;
  }

  /** Rewrites the journal as the queue stands (written aside, then renamed over); returns its descriptor. */
  private compact(): number {
    const tmp = `${this.journalPath}.tmp`;
    writeFileSync(tmp, [...this.queue.keys()].map((k) => `+${k}\n`).join(""));
    renameSync(tmp, this.journalPath);
    this.journalLines = this.queue.size;
    return openSync(this.journalPath, "a");
  }

  /** Starts pushers up to the limit while there is work nobody has taken. */
  private kick(): void {
    while (!this.closed && this.running < PARALLEL_PUSHES && this.taken.size < this.queue.size) {
      this.running++;
      this.pusher().finally(() => {
        this.running--;
        if (this.running === 0 && (this.queue.size === 0 || this.closed)) this.idleWaiters.splice(0).forEach((w) => w());
      });
    }
  }

  private readonly taken = new Set<string>();

  private async pusher(): Promise<void> {
    while (!this.closed) {
      await this.o.health.untilUsable();
      if (this.closed) return;
      const entry = this.untaken();
      if (!entry) return;
      const [key, item] = entry;
      this.taken.add(key);
      this.busy++;
      try {
        await (item.kind === "blob" ? this.pushBlobs([item.digest]) : this.pushResult(item.digest));
        this.o.health.answered();
        this.done(key);
      } catch (err) {
        this.o.health.failed(item.kind === "blob" ? "a blob upload" : "a result upload", err);
        const refused = !(err instanceof StatusError) || isRefusal(err.code);
        if (refused) {
          const n = (this.refusals.get(key) ?? 0) + 1;
          this.refusals.set(key, n);
          if (n >= REFUSALS_BEFORE_DROP) {
            this.o.health.count("droppedPushes");
            this.o.log.info(`dropping the push of ${item.kind} ${formatDigest(item.digest)}: refused ${n} times`);
            this.done(key);
          }
        }
      } finally {
        this.busy--;
        this.taken.delete(key);
      }
    }
  }

  /** The oldest queued push no pusher has taken (a few at most are taken, so this looks at a few). */
  private untaken(): [string, Item] | undefined {
    for (const entry of this.queue) if (!this.taken.has(entry[0])) return entry;
    return undefined;
  }

  private async pushResult(action: BlobDigest): Promise<void> {
    const result = await this.o.results.get(action);
    if (!result) return; // evicted here since: nothing left to push
    const fn = action.fn;
    // The Action and its Command go too, when here: tools that show a result (remotetool, a
    // Buildbarn browser) start from them. Its inputs do not (--upstream-write all sends those).
    const blobs: BlobDigest[] = [];
    const actionBytes = await this.o.blobs.get(action);
    const command = actionBytes && commandOf(actionBytes);
    if (command) blobs.push(action, fromWire(fn, command, "command_digest"));
    for (const f of result.outputFiles) blobs.push(fromWire(fn, f.digest, "output file"));
    if (result.stdoutDigest) blobs.push(fromWire(fn, result.stdoutDigest, "stdout"));
    if (result.stderrDigest) blobs.push(fromWire(fn, result.stderrDigest, "stderr"));
    for (const dir of result.outputDirectories) {
      if (!dir.treeDigest) continue;
      const tree = fromWire(fn, dir.treeDigest, "output directory");
      blobs.push(tree);
      // The Tree's files go first, a chunk at a time (a Tree may name a million).
      const here = await forEachTreeFile(this.o.blobs, tree, (files) => this.pushBlobs(files));
      if (!here) return; // the tree was evicted: the result cannot be pushed whole
    }
    await this.pushBlobs(blobs);
    if (!this.o.acceptsResults()) {
      if (!this.resultsRefusedLogged) this.o.log.info(`upstream ${this.o.remote.address} does not take action results (its capabilities say so): pushing their blobs only`);
      this.resultsRefusedLogged = true;
      return;
    }
    await this.o.remote.updateActionResult(action, result);
    this.o.health.count("resultsPushed");
    this.o.log.debug(`pushed the result of ${formatDigest(action)} upstream`);
  }

  /** Uploads those of `digests` the upstream lacks, from the local store. */
  private async pushBlobs(digests: BlobDigest[]): Promise<void> {
    const unique = [...new Map(digests.map((d) => [formatDigest(d), d])).values()];
    const missing = await this.o.remote.findMissing(unique);
    const small = missing.filter((d) => d.size <= BATCH_BLOB_BYTES);
    for (const batch of batches(small, this.o.maxBatchBytes())) {
      const blobs: { digest: BlobDigest; data: Uint8Array }[] = [];
      for (const d of batch) {
        const data = await this.o.blobs.get(d);
        if (!data) throw new StatusError(Code.FAILED_PRECONDITION, `blob ${formatDigest(d)} is no longer here to push`);
        blobs.push({ digest: d, data });
      }
      await this.o.remote.batchUpdate(blobs);
      this.pushed(batch);
    }
    for (const d of missing.filter((d) => d.size > BATCH_BLOB_BYTES)) {
      const reader = await this.o.blobs.read(d, { offset: 0, limit: 0, chunkBytes: STREAM_CHUNK_BYTES });
      if (!reader) throw new StatusError(Code.FAILED_PRECONDITION, `blob ${formatDigest(d)} is no longer here to push`);
      try {
        await this.o.remote.write(d, reader);
      } finally {
        await reader.close();
      }
      this.pushed([d]);
    }
  }

  private pushed(ds: BlobDigest[]): void {
    this.o.health.count("blobsPushed", ds.length);
    this.o.health.count("bytesPushed", ds.reduce((n, d) => n + d.size, 0));
  }
}

/** The command_digest of an Action's bytes; undefined when they are not an Action (a client's UpdateActionResult may name anything). */
function commandOf(bytes: Uint8Array) {
  try {
    return fromBinary(ActionSchema, bytes).commandDigest;
  } catch {
    return undefined;
  }
}

/** Codes that mean the upstream answered and said no (as opposed to not answering). */
function isRefusal(code: Code): boolean {
  return ![Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.RESOURCE_EXHAUSTED, Code.CANCELLED, Code.ABORTED].includes(code);
}

function keyOf(item: Item): string {
  return `${item.kind} ${item.digest.fn} ${item.digest.hash} ${item.digest.size}`;
}

/** The pushes a journal left queued: each "+key" not followed by its "-key". A damaged line is skipped. */
function readJournal(path: string): Map<string, Item> {
  const items = new Map<string, Item>();
  if (!existsSync(path)) return items;
  for (const line of readFileSync(path, "utf8").split("\n")) {
    const key = line.slice(1);
    if (line.startsWith("-")) {
      items.delete(key);
      continue;
    }
    const [kind, fn, hash, size] = key.split(" ");
    if (!line.startsWith("+") || (kind !== "result" && kind !== "blob") || !DIGEST_FUNCTIONS.includes(fn as DigestFunctionName)) continue;
    try {
      items.set(key, { kind, digest: blobDigest(fn as DigestFunctionName, hash ?? "", Number(size)) });
    } catch {
      // A line cut short by a stop mid-write: nothing was acknowledged for it.
    }
  }
  return items;
}
