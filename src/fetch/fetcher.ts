// Fetching assets into the CAS for the Remote Asset API: a URI plus qualifiers resolves to a blob
// that is already known (fetched or pushed before, or any blob with the same checksum.sri), or is
// downloaded from origin over HTTP(S) with the headers the qualifiers give, checked against the
// checksum while it arrives, and taken into the store. What goes wrong at the origin is a
// FetchFailure (it belongs in the response's status); a request actiond cannot serve is a
// StatusError (an RPC error).
import { rmSync, mkdirSync } from "node:fs";
import { open } from "node:fs/promises";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { BadRequestSchema } from "../gen/google/rpc/error_details_pb";
import { Code, StatusError, missingBlobsError, newHasher, removeTree, type Clock, type Logger } from "../core";
import { formatDigest, missingSubject, type BlobDigest, type DigestFunctionName, type LocalBlobFiles } from "../cas";
import { AssetIndex, type AssetRecord } from "./asset-index";
import { endedByTimeout, type Download } from "./downloads";
import { parseSri, sriOf, type Sri } from "./sri";

/** An origin's refusal or failure: the code and message FetchBlobResponse.status carries. */
export class FetchFailure extends Error {
  constructor(
    readonly code: Code,
    message: string,
    readonly uri: string,
  ) {
    super(message);
  }
}

export interface Qualifier {
  name: string;
  value: string;
}

export interface FetchRequest {
  uris: readonly string[];
  qualifiers: readonly Qualifier[];
  fn: DigestFunctionName;
  /** For a download from origin. */
  timeoutMs: number;
  /** Content fetched or pushed before this is not accepted (oldest_content_accepted), ms since the epoch. */
  oldestAcceptedMs?: number;
}

export interface Fetched {
  uri: string;
  digest: BlobDigest;
  /** Where it came from: known before, or downloaded now. */
  from: "known" | "origin";
}

export interface PushRequest {
  uris: readonly string[];
  qualifiers: readonly Qualifier[];
  digest: BlobDigest;
  expireAtMs?: number;
}

/** The most a FetchBlob request waits for an origin. */
export const MAX_FETCH_TIMEOUT_MS = 10 * 60_000;

interface Parsed {
  sri?: Sri;
  canonicalId: string;
  /** Headers for each URI (by index), from http_header:, http_header_url: and bazel.auth_headers. */
  headers: Record<string, string>[];
}

export class Fetcher {
  private readonly index: AssetIndex;
  private readonly tmpDir: string;
  /** Downloads in progress by their first key, so identical requests share one. */
  private readonly inFlight = new Map<string, Promise<Fetched>>();

  constructor(
    private readonly files: LocalBlobFiles,
    root: string,
    private readonly log: Logger,
    private readonly clock: Clock,
    /** How to reach an origin (directly, or through serve-vm's host for its guest); undefined: downloads are off. */
    private readonly origin: Download | undefined,
  ) {
    this.index = new AssetIndex(root, log);
    this.tmpDir = join(root, "fetch");
    removeTree(this.tmpDir, log);
    mkdirSync(this.tmpDir, { recursive: true, mode: 0o700 });
  }

  async fetch(req: FetchRequest): Promise<Fetched> {
    if (req.uris.length === 0) throw new StatusError(Code.INVALID_ARGUMENT, "uris is empty: FetchBlob needs at least one");
    const q = parseQualifiers(req.qualifiers, req.uris);
    const keys = lookupKeys(req.fn, req.uris, q);
    for (const key of keys) {
      const known = await this.usable(this.index.get(key), req.oldestAcceptedMs);
      if (known) return { uri: known.uri, digest: known.digest, from: "known" };
    }
    const shared = this.inFlight.get(keys[0]!);
    if (shared) return shared;
    const download = this.downloadAny(req, q).finally(() => this.inFlight.delete(keys[0]!));
    this.inFlight.set(keys[0]!, download);
    return download;
  }

  /** Remembers that these URIs (with these qualifiers) are the blob, which must be in the CAS. */
  async push(req: PushRequest): Promise<void> {
    if (req.uris.length === 0) throw new StatusError(Code.INVALID_ARGUMENT, "uris is empty: PushBlob needs at least one");
    if ((await this.files.findMissing([req.digest])).length > 0) {
      throw missingBlobsError(`blob ${formatDigest(req.digest)} must be in the CAS before it is pushed`, [missingSubject(req.digest)]);
    }
    const q = parseQualifiers(req.qualifiers, req.uris);
    const record = (uri: string): AssetRecord => ({ digest: req.digest, uri, atMs: this.clock.now(), expireAtMs: req.expireAtMs });
    for (const uri of req.uris) this.index.put(uriKey(req.digest.fn, uri, q), record(uri));
    // A pushed checksum is trusted, as the API allows: any later fetch with it may use this blob.
    for (const key of sriKeys(req.digest.fn, q.sri)) this.index.put(key, record(req.uris[0]!));
  }

  /** A record's blob, if it may be served: not expired, not older than asked, still in the CAS. */
  private async usable(r: AssetRecord | undefined, oldestAcceptedMs?: number): Promise<AssetRecord | undefined> {
    if (!r) return undefined;
    if (r.expireAtMs !== undefined && r.expireAtMs <= this.clock.now()) return undefined;
    if (oldestAcceptedMs !== undefined && r.atMs < oldestAcceptedMs) return undefined;
    return (await this.files.findMissing([r.digest])).length === 0 ? r : undefined;
  }

  /** Tries each URI in turn; the first that gives matching content wins. */
  private async downloadAny(req: FetchRequest, q: Parsed): Promise<Fetched> {
    const failures: FetchFailure[] = [];
    for (const [i, uri] of req.uris.entries()) {
      try {
        const digest = await this.downloadOne(uri, q.headers[i] ?? {}, q.sri, req);
        const record: AssetRecord = { digest, uri, atMs: this.clock.now() };
        this.index.put(uriKey(req.fn, uri, q), record);
        for (const key of sriKeys(req.fn, q.sri)) this.index.put(key, record);
        this.log.info(`fetched ${uri} into the CAS as ${formatDigest(digest)}`);
        return { uri, digest, from: "origin" };
      } catch (err) {
        if (!(err instanceof FetchFailure)) throw err;
        this.log.info(`fetching ${uri}: ${err.message}`);
        failures.push(err);
      }
    }
    const last = failures.at(-1)!;
    const message = failures.length === 1 ? last.message : failures.map((f) => f.message).join("; ");
    throw new FetchFailure(last.code, message, last.uri);
  }

  private async downloadOne(uri: string, headers: Record<string, string>, sri: Sri | undefined, req: FetchRequest): Promise<BlobDigest> {
    if (!/^https?:\/\//i.test(uri)) throw new FetchFailure(Code.NOT_FOUND, `${uri}: not known here, and actiond downloads only http and https URLs`, uri);
    if (!this.origin) throw new FetchFailure(Code.UNAVAILABLE, `${uri}: not known here, and downloads from origin are off (--asset-downloads off)`, uri);
    const timeoutMs = Math.min(req.timeoutMs, MAX_FETCH_TIMEOUT_MS);
    let response: Response;
    try {
      response = await this.origin(uri, { headers, signal: AbortSignal.timeout(timeoutMs) });
    } catch (err) {
      throw this.transportFailure(uri, err, timeoutMs);
    }
    if (!response.ok) {
      const code = response.status === 404 || response.status === 410 ? Code.NOT_FOUND : response.status === 401 || response.status === 403 ? Code.PERMISSION_DENIED : Code.UNAVAILABLE;
      await response.body?.cancel().catch(() => {});
      throw new FetchFailure(code, `${uri}: the server answered HTTP ${response.status} ${response.statusText}`.trim(), uri);
    }
    const declared = Number(response.headers.get("content-length") ?? NaN);
    if (declared > this.files.capacityBytes) {
      await response.body?.cancel().catch(() => {});
      throw new FetchFailure(Code.RESOURCE_EXHAUSTED, `${uri}: ${declared} bytes is more than the whole CAS holds (--max-cas-size ${this.files.capacityBytes})`, uri);
    }
    const tmp = join(this.tmpDir, randomUUID());
    const hasher = await newHasher(req.fn);
    const check = sri && !(sri.algorithm === "sha256" && req.fn === "sha256") ? new Bun.CryptoHasher(sri.algorithm) : undefined;
    let size = 0;
    try {
      const fh = await open(tmp, "wx", 0o600);
      try {
        for await (const chunk of response.body ?? []) {
          size += chunk.length;
          if (size > this.files.capacityBytes) throw new FetchFailure(Code.RESOURCE_EXHAUSTED, `${uri}: more than the whole CAS holds (--max-cas-size ${this.files.capacityBytes})`, uri);
          hasher.update(chunk);
          check?.update(chunk);
          await fh.write(chunk);
        }
      } catch (err) {
        throw err instanceof FetchFailure ? err : this.transportFailure(uri, err, timeoutMs);
      } finally {
        await fh.close();
      }
      const digest: BlobDigest = { fn: req.fn, hash: hasher.digestHex(), size };
      if (sri) {
        const got = check ? check.digest("hex") : digest.hash;
        if (!sri.hex.includes(got)) {
          throw new FetchFailure(Code.ABORTED, `${uri}: the content's checksum is ${sriOf(sri.algorithm, got)}, not the expected ${sri.text}`, uri);
        }
      }
      await this.files.adopt(digest, tmp, 1);
      return digest;
    } finally {
      rmSync(tmp, { force: true });
    }
  }

  private transportFailure(uri: string, err: unknown, timeoutMs: number): FetchFailure {
    if (endedByTimeout(err)) return new FetchFailure(Code.DEADLINE_EXCEEDED, `${uri}: no complete answer within ${timeoutMs / 1000} s`, uri);
    return new FetchFailure(Code.UNAVAILABLE, `${uri}: ${(err as Error)?.message ?? String(err)}`, uri);
  }
}

/** The qualifiers actiond knows; any other is INVALID_ARGUMENT with a BadRequest detail, as the API asks. */
function parseQualifiers(qualifiers: readonly Qualifier[], uris: readonly string[]): Parsed {
  const parsed: Parsed = { canonicalId: "", headers: uris.map(() => ({})) };
  const seen = new Set<string>();
  const unsupported: string[] = [];
  for (const { name, value } of qualifiers) {
    if (seen.has(name)) throw new StatusError(Code.INVALID_ARGUMENT, `qualifier "${name}" is given twice`);
    seen.add(name);
    const urlHeader = /^http_header_url:(\d+):(.+)$/.exec(name);
    if (name === "checksum.sri") {
      parsed.sri = parseSri(value);
      if (!parsed.sri) throw new StatusError(Code.INVALID_ARGUMENT, `checksum.sri "${value}" has no sha256, sha384 or sha512 value`);
    } else if (name === "bazel.canonical_id") {
      parsed.canonicalId = value;
    } else if (name === "bazel.auth_headers") {
      let byUri: Record<string, Record<string, string>>;
      try {
        byUri = JSON.parse(value);
      } catch {
        throw new StatusError(Code.INVALID_ARGUMENT, "bazel.auth_headers is not JSON");
      }
      uris.forEach((uri, i) => Object.assign(parsed.headers[i]!, byUri[uri] ?? {}));
    } else if (name.startsWith("http_header:")) {
      for (const h of parsed.headers) h[name.slice("http_header:".length)] = value;
    } else if (urlHeader) {
      const h = parsed.headers[Number(urlHeader[1])];
      if (!h) throw new StatusError(Code.INVALID_ARGUMENT, `qualifier "${name}" names URI ${urlHeader[1]}, and there are ${uris.length}`);
      h[urlHeader[2]!] = value;
    } else unsupported.push(name);
  }
  if (unsupported.length > 0) {
    const detail = create(BadRequestSchema, { fieldViolations: unsupported.map((n) => ({ field: "qualifiers.name", description: `"${n}" not supported` })) });
    throw new StatusError(Code.INVALID_ARGUMENT, `qualifiers not supported: ${unsupported.join(", ")}`, { details: [{ schema: BadRequestSchema, value: detail }] });
  }
  return parsed;
}

/** Keys naming the same content: by checksum first (any URI with that content), then by each URI. */
function lookupKeys(fn: DigestFunctionName, uris: readonly string[], q: Parsed): string[] {
  return [...sriKeys(fn, q.sri), ...uris.map((uri) => uriKey(fn, uri, q))];
}

function sriKeys(fn: DigestFunctionName, sri: Sri | undefined): string[] {
  return sri ? sri.hex.map((hex) => `sri\n${fn}\n${sri.algorithm}\n${hex}`) : [];
}

/** A URI with the qualifiers that say what content it is (not the headers, which only reach it). */
function uriKey(fn: DigestFunctionName, uri: string, q: Parsed): string {
  return `uri\n${fn}\n${uri}\n${q.canonicalId}\n${q.sri?.text ?? ""}`;
}
