/**
 * UUID version 7 (RFC 9562): a 48-bit Unix time in milliseconds, then 74 random bits. Ids made
 * one after another sort after each other, so a B-tree index on them grows at its right edge
 * instead of touching a random page per insert (the payments table's primary key: ~25% of its
 * insert time with random version-4 ids; the generator's ticket ids: PostgreSQL's CPU a ticket
 * from 27-31 to 19-27 µs; both measured in bench/README.md).
 * @module
 */

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** Makes `count` version-7 UUIDs (one clock read and one random draw for all of them). */
export function uuidv7s(count: number, now = Date.now()): string[] {
  const random = new Uint8Array(count * 10);
  for (let at = 0; at < random.length; at += 65_536) {
    crypto.getRandomValues(random.subarray(at, at + 65_536)); // the API's limit per call
  }
  const time = [
    Math.floor(now / 2 ** 40) & 0xff,
    Math.floor(now / 2 ** 32) & 0xff,
    (now >>> 24) & 0xff,
    (now >>> 16) & 0xff,
    (now >>> 8) & 0xff,
    now & 0xff,
  ].map((b) => HEX[b]);
  const prefix = `${time[0]}${time[1]}${time[2]}${time[3]}-${time[4]}${time[5]}-`;
  const ids = new Array<string>(count);
  for (let i = 0, r = 0; i < count; i++, r += 10) {
    ids[i] = prefix + HEX[0x70 | (random[r]! & 0x0f)] + HEX[random[r + 1]!] + "-" +
      HEX[0x80 | (random[r + 2]! & 0x3f)] + HEX[random[r + 3]!] + "-" + HEX[random[r + 4]!] +
      HEX[random[r + 5]!] + HEX[random[r + 6]!] + HEX[random[r + 7]!] + HEX[random[r + 8]!] +
      HEX[random[r + 9]!];
  }
  return ids;
}

/**
 * One version-7 UUID: the time `ms`, and three random 32-bit words for its random bits (a
 * seeded generator's, so the same seed gives the same ids). The time field holds `ms` modulo
 * 2^48 (two's complement before 1970): outside 1970 to the year 10889 the id is still a valid
 * UUID and ticket id, but no longer sorts by time.
 */
export function uuidv7Of(ms: number, a: number, b: number, c: number): string {
  return HEX[Math.floor(ms / 2 ** 40) & 0xff]! + HEX[Math.floor(ms / 2 ** 32) & 0xff] +
    HEX[(ms >>> 24) & 0xff] + HEX[(ms >>> 16) & 0xff] + "-" + HEX[(ms >>> 8) & 0xff] +
    HEX[ms & 0xff] + "-" + HEX[0x70 | ((a >>> 8) & 0x0f)] + HEX[a & 0xff] + "-" +
    HEX[0x80 | ((b >>> 24) & 0x3f)] + HEX[(b >>> 16) & 0xff] + "-" + HEX[(b >>> 8) & 0xff] +
    HEX[b & 0xff] + HEX[c >>> 24] + HEX[(c >>> 16) & 0xff] + HEX[(c >>> 8) & 0xff] + HEX[c & 0xff];
}
