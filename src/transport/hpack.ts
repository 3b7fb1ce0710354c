// HPACK (RFC 7541), the header compression of HTTP/2: a decoder for what clients send (static and
// dynamic table, Huffman strings) and an encoder for what the server sends. The server's own
// headers are few and fixed, so it encodes literals that are never added to the client's table:
// nothing to keep in step, and a response costs a few bytes more at most.
import { HUFFMAN_CODES, HUFFMAN_LENGTHS } from "./huffman-table";

/** A header block's fields in order; names are lower case, values latin1 (bytes as they came). */
export type HeaderList = [name: string, value: string][];

/** The peer broke HPACK: a connection error (COMPRESSION_ERROR), the decoder's state is lost. */
export class CompressionError extends Error {}

// prettier-ignore
const STATIC_TABLE: [string, string][] = [
  [":authority", ""], [":method", "GET"], [":method", "POST"], [":path", "/"], [":path", "/index.html"],
  [":scheme", "http"], [":scheme", "https"], [":status", "200"], [":status", "204"], [":status", "206"],
  [":status", "304"], [":status", "400"], [":status", "404"], [":status", "500"], ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"], ["accept-language", ""], ["accept-ranges", ""], ["accept", ""],
  ["access-control-allow-origin", ""], ["age", ""], ["allow", ""], ["authorization", ""],
  ["cache-control", ""], ["content-disposition", ""], ["content-encoding", ""], ["content-language", ""],
  ["content-length", ""], ["content-location", ""], ["content-range", ""], ["content-type", ""],
  ["cookie", ""], ["date", ""], ["etag", ""], ["expect", ""], ["expires", ""], ["from", ""], ["host", ""],
  ["if-match", ""], ["if-modified-since", ""], ["if-none-match", ""], ["if-range", ""],
  ["if-unmodified-since", ""], ["last-modified", ""], ["link", ""], ["location", ""], ["max-forwards", ""],
  ["proxy-authenticate", ""], ["proxy-authorization", ""], ["range", ""], ["referer", ""], ["refresh", ""],
  ["retry-after", ""], ["server", ""], ["set-cookie", ""], ["strict-transport-security", ""],
  ["transfer-encoding", ""], ["user-agent", ""], ["vary", ""], ["via", ""], ["www-authenticate", ""],
];

/** Each name's first index in the static table (1-based), for the encoder. */
const STATIC_NAME_INDEX = new Map<string, number>();
STATIC_TABLE.forEach(([name], i) => STATIC_NAME_INDEX.has(name) || STATIC_NAME_INDEX.set(name, i + 1));

/** An entry's size as the table counts it (RFC 7541, 4.1). */
const entrySize = (name: string, value: string) => name.length + value.length + 32;

/**
 * The Huffman code as a binary tree in one array: node n's children are at 2n and 2n+1; a
 * positive entry is the next node, a negative one the symbol -(entry + 1), 0 a code never assigned.
 */
const HUFFMAN_TREE = (() => {
  const tree = new Int32Array(2 * 512);
  let nodes = 1;
  for (let sym = 0; sym <= 256; sym++) {
    const code = HUFFMAN_CODES[sym]!;
    const len = HUFFMAN_LENGTHS[sym]!;
    let node = 0;
    for (let bit = len - 1; bit > 0; bit--) {
      const slot = 2 * node + ((code >>> bit) & 1);
      if (tree[slot] === 0) tree[slot] = nodes++;
      node = tree[slot]!;
    }
    tree[2 * node + (code & 1)] = -(sym + 1);
  }
  return tree;
})();
const EOS = 256;

/** Decodes a Huffman string; its padding must be the EOS code's first bits (all ones), at most 7. */
export function huffmanDecode(buf: Uint8Array, start: number, end: number): string {
  let out = "";
  let node = 0;
  let depth = 0; // bits read since the last symbol
  let ones = true; // whether they were all ones (valid padding)
  for (let i = start; i < end; i++) {
    const byte = buf[i]!;
    for (let bit = 7; bit >= 0; bit--) {
      const b = (byte >>> bit) & 1;
      const next = HUFFMAN_TREE[2 * node + b]!;
      depth++;
      ones &&= b === 1;
      if (next > 0) {
        node = next;
        continue;
      }
      if (next === 0 || -next - 1 === EOS) throw new CompressionError("a Huffman string holds EOS or an unassigned code");
      out += String.fromCharCode(-next - 1);
      node = 0;
      depth = 0;
      ones = true;
    }
  }
  if (depth > 7 || !ones) throw new CompressionError("a Huffman string ends in padding that is not EOS's prefix");
  return out;
}

export class HpackDecoder {
  /** Newest first. */
  private dynamic: [string, string][] = [];
  private size = 0;
  /** The size the client last chose, at most maxTableSize. */
  private limit: number;

  /** maxTableSize: the SETTINGS_HEADER_TABLE_SIZE the server announced (the most the client may use). */
  constructor(private readonly maxTableSize = 4096) {
    this.limit = maxTableSize;
  }

  /**
   * Decodes one header block. Every field is decoded (the table must stay in step with the
   * client's), but fields past maxListBytes are not kept: `over` says the list was too long.
   */
  decode(block: Uint8Array, maxListBytes: number): { headers: HeaderList; over: boolean } {
    const headers: HeaderList = [];
    let listBytes = 0;
    let over = false;
    let pos = 0;
    const int = (prefixBits: number): number => {
      const mask = (1 << prefixBits) - 1;
      let value = block[pos++]! & mask;
      if (value < mask) return value;
      for (let shift = 0; ; shift += 7) {
        if (pos >= block.length || shift > 28) throw new CompressionError("an integer runs past the block or over 2^35");
        const b = block[pos++]!;
        value += (b & 0x7f) * 2 ** shift;
        if ((b & 0x80) === 0) return value;
      }
    };
    const str = (): string => {
      if (pos >= block.length) throw new CompressionError("a string runs past the block");
      const huffman = (block[pos]! & 0x80) !== 0;
      const len = int(7);
      if (pos + len > block.length) throw new CompressionError("a string runs past the block");
      const s = huffman ? huffmanDecode(block, pos, pos + len) : Buffer.from(block.buffer, block.byteOffset + pos, len).toString("latin1");
      pos += len;
      return s;
    };
    const entry = (index: number): [string, string] => {
      const e = index >= 1 && index <= STATIC_TABLE.length ? STATIC_TABLE[index - 1] : this.dynamic[index - STATIC_TABLE.length - 1];
      if (!e) throw new CompressionError(`index ${index} is not in the table`);
      return e;
    };
    let first = true;
    while (pos < block.length) {
      const b = block[pos]!;
      let field: [string, string];
      if (b & 0x80) {
        field = entry(int(7));
      } else if (b & 0x40) {
        const index = int(6);
        const name = index === 0 ? str() : entry(index)[0];
        field = [name, str()];
        this.add(field);
      } else if (b & 0x20) {
        // A table size update: only at the start of a block, and within what the server allowed.
        if (!first) throw new CompressionError("a table size update after the first field");
        const size = int(5);
        if (size > this.maxTableSize) throw new CompressionError(`a table size of ${size}, over the ${this.maxTableSize} allowed`);
        this.limit = size;
        this.evict(0);
        continue;
      } else {
        // Literal without indexing (0000) or never indexed (0001).
        const index = int(4);
        const name = index === 0 ? str() : entry(index)[0];
        field = [name, str()];
      }
      first = false;
      listBytes += entrySize(field[0], field[1]);
      if (listBytes > maxListBytes) over = true;
      else headers.push(field);
    }
    return { headers, over };
  }

  private add(field: [string, string]): void {
    const size = entrySize(field[0], field[1]);
    this.evict(size);
    // An entry bigger than the whole table empties it and is not added (RFC 7541, 4.4).
    if (size > this.limit) return;
    this.dynamic.unshift(field);
    this.size += size;
  }

  private evict(room: number): void {
    while (this.dynamic.length > 0 && this.size + room > this.limit) {
      const [n, v] = this.dynamic.pop()!;
      this.size -= entrySize(n, v);
    }
  }
}

/** HPACK's integer: the prefix bits of the first byte, then 7 bits a byte. */
function encodeInt(out: number[], value: number, prefixBits: number, firstByte: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(firstByte | value);
    return;
  }
  out.push(firstByte | max);
  value -= max;
  while (value >= 0x80) {
    out.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
}

/** Fields as "literal without indexing" (name from the static table when it is there), no Huffman. */
export function encodeHeaders(fields: HeaderList): Buffer {
  const out: number[] = [];
  for (const [name, value] of fields) {
    const index = STATIC_NAME_INDEX.get(name) ?? 0;
    encodeInt(out, index, 4, 0x00);
    if (index === 0) {
      encodeInt(out, name.length, 7, 0x00);
      for (let i = 0; i < name.length; i++) out.push(name.charCodeAt(i) & 0xff);
    }
    encodeInt(out, value.length, 7, 0x00);
    for (let i = 0; i < value.length; i++) out.push(value.charCodeAt(i) & 0xff);
  }
  return Buffer.from(out);
}
