// Reading protobuf wire bytes by hand, for the few messages that may be huge (a FindMissingBlobs of
// 200,000 digests, a Tree of a million files): their fields are visited where they lie, without
// making an object per entry. `what` names the message in errors.
import { Code, StatusError } from "./errors";

export const WIRE_VARINT = 0;
export const WIRE_LEN = 2;

/** A growing WireWriter adds pieces of about what it holds, up to this. */
const PIECE_MAX = 4 * 1024 * 1024;

export class WireReader {
  at: number;
  constructor(
    readonly bytes: Buffer,
    readonly what: string,
    start = 0,
    readonly end = bytes.length,
  ) {
    this.at = start;
  }

  get done(): boolean {
    return this.at >= this.end;
  }

  private invalid(why: string): StatusError {
    return new StatusError(Code.INVALID_ARGUMENT, `${this.what} is not a valid protobuf message (${why})`);
  }

  varint(): number {
    let value = 0;
    for (let shift = 0; shift < 70; shift += 7) {
      if (this.at >= this.end) break;
      const b = this.bytes[this.at++]!;
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return value;
    }
    throw this.invalid("a cut or overlong varint");
  }

  /** The last tag read: its field number and wire type. */
  field = 0;
  type = 0;

  /** Reads a field's tag into `field` and `type` (no object per field: a Tree may have millions). */
  tag(): this {
    const tag = this.varint();
    this.field = Math.floor(tag / 8);
    this.type = tag % 8;
    return this;
  }

  /** A length-delimited field's [start, end). */
  span(): [number, number] {
    const length = this.varint();
    const start = this.at;
    if (start + length > this.end) throw this.invalid("a field runs past its end");
    this.at = start + length;
    return [start, this.at];
  }

  /** A reader over a length-delimited field (an embedded message). */
  message(what = this.what): WireReader {
    const [start, end] = this.span();
    return new WireReader(this.bytes, what, start, end);
  }

  skip(wireType: number): void {
    if (wireType === WIRE_VARINT) this.varint();
    else if (wireType === WIRE_LEN) this.span();
    else if (wireType === 1) this.at += 8;
    else if (wireType === 5) this.at += 4;
    else throw this.invalid(`wire type ${wireType}`);
    if (this.at > this.end) throw this.invalid("a field runs past its end");
  }
}

/**
 * Protobuf wire bytes written by hand. Without a known size it grows in pieces joined once at the
 * end: doubling one buffer copied a 100 MB Tree several times over, garbage freed only later.
 */
export class WireWriter {
  private buf: Buffer;
  private at = 0;
  /** Filled pieces before `buf`, when it grew. */
  private readonly pieces: Buffer[] = [];
  private piecesBytes = 0;

  /** `capacity`: the bytes expected, when known, so the buffer never grows. */
  constructor(capacity = 256) {
    this.buf = Buffer.allocUnsafe(capacity);
  }

  /** Bytes written so far. */
  get length(): number {
    return this.piecesBytes + this.at;
  }

  private room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    this.pieces.push(this.buf.subarray(0, this.at));
    this.piecesBytes += this.at;
    this.buf = Buffer.allocUnsafe(Math.max(n, Math.min(PIECE_MAX, this.length)));
    this.at = 0;
  }

  varint(n: number): void {
    this.room(10);
    for (; n >= 0x80; n = Math.floor(n / 128)) this.buf[this.at++] = (n & 0x7f) | 0x80;
    this.buf[this.at++] = n;
  }

  raw(bytes: Uint8Array): void {
    this.room(bytes.length);
    this.buf.set(bytes, this.at);
    this.at += bytes.length;
  }

  /** A length-delimited field: a string, bytes, or an encoded message. */
  field(number: number, bytes: Uint8Array): void {
    this.lengthPrefix(number, bytes.length);
    this.raw(bytes);
  }

  /** A length-delimited field's tag and length: its `length` bytes are to be written next. */
  lengthPrefix(number: number, length: number): void {
    this.varint((number << 3) | WIRE_LEN);
    this.varint(length);
  }

  /** A string field, encoded straight into the buffer; `bytes` is its UTF-8 length when known. */
  string(number: number, s: string, bytes = Buffer.byteLength(s)): void {
    this.lengthPrefix(number, bytes);
    this.room(bytes);
    this.at += this.buf.write(s, this.at, bytes, "utf8");
  }

  /** The bytes written as pieces in order, not joined (for one that is written or hashed piece by piece). */
  pieceList(): Buffer[] {
    return this.pieces.concat(this.buf.subarray(0, this.at));
  }

  /** The bytes written: a view when they fit in one piece, else the pieces joined. */
  done(): Buffer {
    const last = this.buf.subarray(0, this.at);
    return this.pieces.length === 0 ? last : Buffer.concat(this.pieces.concat(last), this.length);
  }
}

/** The bytes a varint of n takes. */
export function varintSize(n: number): number {
  let size = 1;
  for (; n >= 0x80; n = Math.floor(n / 128)) size++;
  return size;
}

/** The bytes a length-delimited field of `length` bytes takes, tag included (field numbers under 16). */
export const lengthFieldSize = (length: number) => 1 + varintSize(length) + length;

/** int64 as it travels: a negative one is ten bytes of two's complement. */
export const asInt64 = (n: number) => (n >= 2 ** 63 ? n - 2 ** 64 : n);
