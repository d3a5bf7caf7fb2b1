/**
 * MD5 of a string's UTF-8 bytes, in JavaScript: the sink computes one per ticket (the show key
 * of its seats, {@linkcode showId} in columns.ts), where `node:crypto`'s `createHash` costs
 * ~2 µs a call in Deno (a hash object and several runtime calls for ~60 bytes) and this ~0.3 µs.
 * Used for its 128 bits, never as a security measure.
 * @module
 */

/** Left rotations of the 64 steps. */
const ROTATE = Array.from(
  { length: 64 },
  (_, i) => [[7, 12, 17, 22], [5, 9, 14, 20], [4, 11, 16, 23], [6, 10, 15, 21]][i >> 4]![i & 3]!,
);
/** The 64 constants: floor(|sin(i + 1)| · 2^32). */
const K = Int32Array.from(
  { length: 64 },
  (_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32),
);
/** The message word each step reads. */
const WORD = Array.from(
  { length: 64 },
  (_, i) => i < 16 ? i : i < 32 ? (5 * i + 1) & 15 : i < 48 ? (3 * i + 5) & 15 : (7 * i) & 15,
);
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

const encoder = new TextEncoder();
let scratch = new Uint8Array(256);
const words = new Int32Array(16);

/** The MD5 digest of `text`'s UTF-8 bytes as 32 lowercase hex digits. */
export function md5Hex(text: string): string {
  digest(text);
  return hexLe(state[0]!) + hexLe(state[1]!) + hexLe(state[2]!) + hexLe(state[3]!);
}

/** The MD5 digest of `text`'s UTF-8 bytes as a UUID's text: its 32 hex digits, 8-4-4-4-12. */
export function md5Uuid(text: string): string {
  digest(text);
  const b = state[1]!, c = state[2]!;
  return hexLe(state[0]!) + "-" + HEX[b & 0xff]! + HEX[(b >>> 8) & 0xff]! + "-" +
    HEX[(b >>> 16) & 0xff]! + HEX[b >>> 24]! + "-" + HEX[c & 0xff]! + HEX[(c >>> 8) & 0xff]! +
    "-" + HEX[(c >>> 16) & 0xff]! + HEX[c >>> 24]! + hexLe(state[3]!);
}

/** The four words of the last digest (no allocation a call). */
const state = new Int32Array(4);

/** Computes the MD5 of `text`'s UTF-8 bytes into {@linkcode state}. */
function digest(text: string): void {
  const room = text.length * 3 + 72; // UTF-8 bytes at most, plus padding and length
  if (scratch.length < room) scratch = new Uint8Array(room * 2);
  const bytes = scratch;
  const n = encoder.encodeInto(text, bytes).written;
  const total = (((n + 8) >> 6) + 1) << 6; // a multiple of 64 with room for 0x80 and 8 bytes
  bytes[n] = 0x80;
  bytes.fill(0, n + 1, total - 8);
  // the length in bits, 64 bits little-endian: low word n·8 mod 2^32, high word n div 2^29
  const low = (n * 8) % 2 ** 32, high = Math.floor(n / 2 ** 29);
  for (let k = 0; k < 4; k++) {
    bytes[total - 8 + k] = (low >>> (8 * k)) & 0xff;
    bytes[total - 4 + k] = (high >>> (8 * k)) & 0xff;
  }
  let a0 = 0x67452301, b0 = 0xefcdab89 | 0, c0 = 0x98badcfe | 0, d0 = 0x10325476;
  for (let at = 0; at < total; at += 64) {
    for (let w = 0, p = at; w < 16; w++, p += 4) {
      words[w] = bytes[p]! | (bytes[p + 1]! << 8) | (bytes[p + 2]! << 16) | (bytes[p + 3]! << 24);
    }
    let a = a0, b = b0, c = c0, d = d0;
    for (let i = 0; i < 64; i++) {
      const f = i < 16
        ? (b & c) | (~b & d)
        : i < 32
        ? (d & b) | (~d & c)
        : i < 48
        ? b ^ c ^ d
        : c ^ (b | ~d);
      const sum = (f + a + K[i]! + words[WORD[i]!]!) | 0;
      a = d;
      d = c;
      c = b;
      b = (b + ((sum << ROTATE[i]!) | (sum >>> (32 - ROTATE[i]!)))) | 0;
    }
    a0 = (a0 + a) | 0;
    b0 = (b0 + b) | 0;
    c0 = (c0 + c) | 0;
    d0 = (d0 + d) | 0;
  }
  state[0] = a0;
  state[1] = b0;
  state[2] = c0;
  state[3] = d0;
}

/** A 32-bit word's bytes, least significant first, in hex. */
function hexLe(word: number): string {
  return HEX[word & 0xff]! + HEX[(word >>> 8) & 0xff]! + HEX[(word >>> 16) & 0xff]! +
    HEX[word >>> 24]!;
}
