/**
 * A fast seeded generator of realistic tickets: faker fills pools of names, e-mails and phone
 * numbers once, and a small PRNG picks from them, so the same seed gives the same tickets. Only
 * the producer and the tests load it (and faker with it); the consumer does not.
 * @module
 */
import { en, Faker } from "@faker-js/faker";
import { MAX_SEATS, type Ticket } from "./columns.ts";

const fixturesDir = new URL("../../fixtures/", import.meta.url);

function readList(name: string): string[] {
  return Deno.readTextFileSync(new URL(name, fixturesDir)).split("\n").map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
}

let lists: { movies: string[]; theaters: string[] } | undefined;
function fixtureLists() {
  lists ??= { movies: readList("movies.txt"), theaters: readList("theaters.txt") };
  return lists;
}

/** sfc32: a small, fast, seedable PRNG (32-bit state words). */
function sfc32(a: number, b: number, c: number, d: number): () => number {
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

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
const ROWS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const SHOW_HOURS = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21];
const SHOW_DAYS = 30;
const SEATS_PER_ROW = 30;
const PRICES = [8.5, 9.5, 11, 12.5, 14, 16.5];
const POOL_SIZE = 2048;

/** Options of {@linkcode TicketGenerator}. */
export interface GeneratorOptions {
  /** Same seed, same tickets. @default {a random seed: unique tickets} */
  seed?: number;
  /** Start of the generated purchase times. @default {now; a fixed date when seeded} */
  startTime?: Date;
  /**
   * Share of tickets (0-1) that re-sell a seat this run already sold, to show the SEAT_TAKEN
   * rule at work. Otherwise a run never sells a seat twice. @default {0}
   */
  seatClashRate?: number;
}

/** Generates realistic tickets quickly; reproducible with a seed. */
export class TicketGenerator {
  readonly #next: () => number;
  readonly #names: string[] = [];
  readonly #emails: string[] = [];
  readonly #phones: string[] = [];
  readonly #base: number;
  readonly #clashRate: number;
  /** Sale state per show (see #allocate). */
  readonly #sold = new Map<number, number>();
  readonly #recent: { theater: string; movie: string; showtime: string; seat: string }[] = [];
  #count = 0;

  constructor(options: GeneratorOptions = {}) {
    const words = options.seed === undefined
      ? Array.from(crypto.getRandomValues(new Uint32Array(4)))
      : [options.seed >>> 0, Math.floor(options.seed / 2 ** 32) >>> 0, 0x9e3779b9, 0x85ebca6b];
    this.#next = sfc32(words[0]!, words[1]!, words[2]!, words[3]!);
    for (let i = 0; i < 12; i++) this.#next(); // mix the seed
    const faker = new Faker({ locale: [en] });
    faker.seed(words);
    for (let i = 0; i < POOL_SIZE; i++) {
      const first = faker.person.firstName();
      const last = faker.person.lastName();
      this.#names.push(`${first} ${last}`);
      this.#emails.push(faker.internet.email({ firstName: first, lastName: last }).toLowerCase());
      this.#phones.push(faker.phone.number({ style: "international" }));
    }
    this.#clashRate = options.seatClashRate ?? 0;
    this.#base = (options.startTime ??
      (options.seed === undefined ? new Date() : new Date("2026-01-01T00:00:00Z"))).getTime();
  }

  #pick<T>(list: readonly T[]): T {
    return list[this.#next() % list.length]!;
  }

  #uuid(): string {
    const w = [this.#next(), this.#next(), this.#next(), this.#next()];
    const b = new Uint8Array(new Uint32Array(w).buffer);
    b[6] = (b[6]! & 0x0f) | 0x40;
    b[8] = (b[8]! & 0x3f) | 0x80;
    let s = "";
    for (let i = 0; i < 16; i++) {
      s += HEX[b[i]!];
      if (i === 3 || i === 5 || i === 7 || i === 9) s += "-";
    }
    return s;
  }

  /**
   * Sells `count` adjacent seats of a show, or undefined when it has no room. Each show starts at
   * a random row (so separate runs rarely sell the same seat) and fills rows in order, wrapping
   * round once. The state of a show is packed in one number: `used * 1024 + next`.
   */
  #allocate(show: number, count: number): string[] | undefined {
    const capacity = ROWS.length * SEATS_PER_ROW;
    const state = this.#sold.get(show) ?? (this.#next() % ROWS.length) * SEATS_PER_ROW;
    let index = state % 1024;
    let used = Math.floor(state / 1024);
    const inRow = index % SEATS_PER_ROW;
    if (inRow + count > SEATS_PER_ROW) {
      used += SEATS_PER_ROW - inRow;
      index = (index + SEATS_PER_ROW - inRow) % capacity;
    }
    if (used + count > capacity) return undefined;
    const seats: string[] = [];
    for (let i = index; i < index + count; i++) {
      seats.push(`${ROWS[Math.floor(i / SEATS_PER_ROW)]}${(i % SEATS_PER_ROW) + 1}`);
    }
    this.#sold.set(show, (used + count) * 1024 + ((index + count) % capacity));
    return seats;
  }

  /** The next ticket. */
  next(): Ticket {
    const { movies, theaters } = fixtureLists();
    const person = this.#next() % POOL_SIZE;
    let count = 1 + (this.#next() % MAX_SEATS);
    const purchased = this.#base + this.#count * 7;
    this.#count++;
    let theater: string, movie: string, showtime: string, seats: string[] | undefined;
    const clash = this.#clashRate > 0 && this.#recent.length > 0 &&
      this.#next() / 2 ** 32 < this.#clashRate;
    if (clash) {
      // on purpose: one seat that an earlier ticket of this run already bought
      const sold = this.#recent[this.#next() % this.#recent.length]!;
      ({ theater, movie, showtime } = sold);
      seats = [sold.seat];
      count = 1;
    } else {
      do {
        const t = this.#next() % theaters.length, m = this.#next() % movies.length;
        theater = theaters[t]!;
        movie = movies[m]!;
        const day = new Date(purchased + (1 + (this.#next() % SHOW_DAYS)) * 86_400_000);
        const at = day.setUTCHours(this.#pick(SHOW_HOURS), (this.#next() % 4) * 15, 0, 0);
        showtime = day.toISOString();
        // a number names the show (minute of the showtime, theater, movie): hashing a string key
        // per ticket was a tenth of the producer's CPU
        const show = (at / 60_000) * theaters.length * movies.length + t * movies.length + m;
        seats = this.#allocate(show, count);
      } while (!seats);
      if (this.#clashRate > 0) {
        const memory = { theater, movie, showtime, seat: seats[0]! };
        if (this.#recent.length < 1000) this.#recent.push(memory);
        else this.#recent[this.#next() % 1000] = memory;
      }
    }
    return {
      ticket_id: this.#uuid(),
      theater: theater!,
      movie: movie!,
      name: this.#names[person]!,
      email: this.#emails[person]!,
      phone_number: this.#phones[person]!,
      seats: seats!,
      showtime: showtime!,
      price: { amount: Math.round(this.#pick(PRICES) * count * 100) / 100, currency: "USD" },
      purchased_at: new Date(purchased).toISOString(),
    };
  }
}
