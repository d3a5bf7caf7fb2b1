/**
 * A small seedable random source (sfc32) and what the producer's lifecycle draws from it: numbers
 * in [0, 1), picks, UUIDs. Same seed, same sequence; without a seed, a random one.
 * @module
 */

/** A source of 32-bit unsigned random numbers. */
export type Random = () => number;

/**
 * sfc32 seeded from `seed` and a `stream` number (two streams of one seed are independent), or
 * from the system's random numbers when `seed` is undefined.
 */
export function seededRandom(seed: number | undefined, stream = 0): Random {
  const w = seed === undefined
    ? Array.from(crypto.getRandomValues(new Uint32Array(4)))
    : [seed >>> 0, Math.floor(seed / 2 ** 32) >>> 0, 0x2545f491 ^ stream, 0x6c8e9cf5 + stream];
  const next = sfc32(w[0]!, w[1]!, w[2]!, w[3]!);
  for (let i = 0; i < 15; i++) next(); // mix the seed
  return next;
}

/** sfc32: a small, fast, seedable PRNG (32-bit state words). */
export function sfc32(a: number, b: number, c: number, d: number): Random {
  return () => {
    a |= 0, b |= 0, c |= 0, d |= 0;
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return t >>> 0;
  };
}

/** A number in [0, 1) from `random`. */
export function fraction(random: Random): number {
  return random() / 2 ** 32;
}

/** One element of a non-empty list, picked by `random`. */
export function pick<T>(random: Random, list: readonly T[]): T {
  return list[random() % list.length]!;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** A version-4 UUID drawn from `random`. */
export function randomUuid(random: Random): string {
  const b = new Uint8Array(new Uint32Array([random(), random(), random(), random()]).buffer);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  let s = "";
  for (let i = 0; i < 16; i++) {
    s += HEX[b[i]!];
    if (i === 3 || i === 5 || i === 7 || i === 9) s += "-";
  }
  return s;
}
