/**
 * CRC-32C (Castagnoli), the checksum of a Kafka record batch, eight bytes a step ("slicing by 8"):
 * the same values as KafkaJS's byte-at-a-time table, ~4x fewer table lookups per byte.
 * @module
 */

const POLY = 0x82f63b78; // reflected Castagnoli polynomial

let tables: Int32Array | undefined;

/** Eight tables of 256 entries: table k maps a byte to its CRC after k more zero bytes. */
function crcTables(): Int32Array {
  if (tables) return tables;
  const t = new Int32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n]!;
    for (let k = 1; k < 8; k++) {
      c = t[c & 0xff]! ^ (c >>> 8);
      t[k * 256 + n] = c;
    }
  }
  tables = t;
  return t;
}

/** CRC-32C of `bytes[start, end)` as an unsigned 32-bit number. */
export function crc32c(bytes: Uint8Array, start = 0, end = bytes.length): number {
  const t = crcTables();
  let crc = -1;
  let i = start;
  for (const last = end - 8; i <= last; i += 8) {
    const a = crc ^
      (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24));
    crc = t[1792 + (a & 0xff)]! ^ t[1536 + ((a >>> 8) & 0xff)]! ^
      t[1280 + ((a >>> 16) & 0xff)]! ^ t[1024 + (a >>> 24)]! ^
      t[768 + bytes[i + 4]!]! ^ t[512 + bytes[i + 5]!]! ^ t[256 + bytes[i + 6]!]! ^
      t[bytes[i + 7]!]!;
  }
  for (; i < end; i++) crc = t[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}
