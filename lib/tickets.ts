/**
 * Movie tickets: the type, a fast seeded generator (faker fills the pools of names, e-mails and
 * phone numbers), and a strict parser from Kafka bytes to a ticket or a precise reason.
 * @module
 */
import { en, Faker } from "@faker-js/faker";

/** A sold movie ticket, as published to Kafka (JSON). */
export interface Ticket {
  /** Unique id: a UUID for generated tickets; any 1-64 letters, digits, `-` or `_`. */
  ticket_id: string;
  theater: string;
  movie: string;
  name: string;
  email: string;
  phone_number: string;
  /** Distinct seat labels such as `G8`, 1 to 8 of them. */
  seats: string[];
  /** ISO 8601 start of the show. */
  showtime: string;
  price: { amount: number; currency: string };
  /** ISO 8601 time of purchase. */
  purchased_at: string;
}

/** Why bytes are not a ticket. */
export type RejectReason =
  | "EMPTY"
  | "TOO_LARGE"
  | "BAD_UTF8"
  | "BAD_JSON"
  | "NOT_OBJECT"
  | "MISSING_FIELD"
  | "WRONG_TYPE"
  | "BAD_VALUE"
  | "BAD_EMAIL"
  | "BAD_SEAT";

/** Result of {@linkcode parseTicket}. */
export type ParseResult =
  | { ok: true; ticket: Ticket }
  | { ok: false; reason: RejectReason; detail: string };

/** Largest accepted message, in bytes. @default {65536} */
export const MAX_TICKET_BYTES = 64 * 1024;
/** Most seats on one ticket. */
export const MAX_SEATS = 8;

const fixturesDir = new URL("../fixtures/", import.meta.url);

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

const TICKET_ID = /^[A-Za-z0-9_-]{1,64}$/;
const EMAIL = /^[^\s@]{1,64}@[^\s@]+\.[^\s@]{2,}$/;
const PHONE = /^[0-9+().\-x ]{3,40}$/;
const SEAT = /^[A-Z]{1,2}[1-9][0-9]{0,2}$/;
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/;
const CURRENCY = /^[A-Z]{3}$/;
const TEXT_FIELDS = ["theater", "movie", "name"] as const;
const decoder = new TextDecoder("utf-8", { fatal: true });

function fail(reason: RejectReason, detail: string): ParseResult {
  return { ok: false, reason, detail };
}

function kind(value: unknown): string {
  return value === null ? "null" : Array.isArray(value) ? "array" : typeof value;
}

/**
 * Parses one Kafka message value into a ticket, or gives the reason it is not one. Unknown extra
 * fields are ignored (a newer producer may add some); known fields are checked strictly.
 */
export function parseTicket(
  bytes: Uint8Array | null | undefined,
  maxBytes = MAX_TICKET_BYTES,
): ParseResult {
  if (!bytes || bytes.length === 0) return fail("EMPTY", "message has no value");
  if (bytes.length > maxBytes) {
    return fail("TOO_LARGE", `message is ${bytes.length} bytes; the limit is ${maxBytes}`);
  }
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch {
    return fail("BAD_UTF8", "message is not valid UTF-8");
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    return fail("BAD_JSON", `not JSON: ${(error as Error).message}`);
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    return fail("NOT_OBJECT", `expected a JSON object, got ${kind(data)}`);
  }
  return validateTicket(data as Record<string, unknown>);
}

/** Checks a decoded JSON object field by field. */
export function validateTicket(o: Record<string, unknown>): ParseResult {
  for (
    const field of [
      "ticket_id",
      ...TEXT_FIELDS,
      "email",
      "phone_number",
      "seats",
      "showtime",
      "price",
      "purchased_at",
    ]
  ) {
    if (!(field in o) || o[field] === undefined) {
      return fail("MISSING_FIELD", `missing field ${field}`);
    }
  }
  const strings = [
    "ticket_id",
    ...TEXT_FIELDS,
    "email",
    "phone_number",
    "showtime",
    "purchased_at",
  ];
  for (const field of strings) {
    if (typeof o[field] !== "string") {
      return fail("WRONG_TYPE", `${field} must be a string, got ${kind(o[field])}`);
    }
  }
  const id = o.ticket_id as string;
  if (!TICKET_ID.test(id)) {
    return fail("BAD_VALUE", "ticket_id must be 1-64 letters, digits, - or _");
  }
  for (const field of TEXT_FIELDS) {
    const value = (o[field] as string).trim();
    if (value.length === 0 || value.length > 200) {
      return fail("BAD_VALUE", `${field} must have 1-200 characters`);
    }
  }
  const email = o.email as string;
  if (email.length > 254 || !EMAIL.test(email)) {
    return fail("BAD_EMAIL", `email "${email.slice(0, 80)}" is not an e-mail address`);
  }
  if (!PHONE.test(o.phone_number as string)) {
    return fail("BAD_VALUE", "phone_number must be 3-40 digits, spaces or + ( ) . - x");
  }
  for (const field of ["showtime", "purchased_at"]) {
    const value = o[field] as string;
    if (!ISO_TIME.test(value) || Number.isNaN(Date.parse(value))) {
      return fail(
        "BAD_VALUE",
        `${field} must be an ISO 8601 time with a zone, not "${value.slice(0, 40)}"`,
      );
    }
  }
  const seats = o.seats;
  if (!Array.isArray(seats)) {
    return fail("WRONG_TYPE", `seats must be an array, got ${kind(seats)}`);
  }
  if (seats.length < 1 || seats.length > MAX_SEATS) {
    return fail("BAD_SEAT", `a ticket has 1 to ${MAX_SEATS} seats, not ${seats.length}`);
  }
  const seen = new Set<string>();
  for (const seat of seats) {
    if (typeof seat !== "string" || !SEAT.test(seat)) {
      return fail(
        "BAD_SEAT",
        `seat ${JSON.stringify(seat)?.slice(0, 20)} is not a label such as G8`,
      );
    }
    if (seen.has(seat)) return fail("BAD_SEAT", `seat ${seat} appears twice`);
    seen.add(seat);
  }
  const price = o.price as Record<string, unknown>;
  if (typeof price !== "object" || price === null || Array.isArray(price)) {
    return fail("WRONG_TYPE", `price must be an object, got ${kind(price)}`);
  }
  if (typeof price.amount !== "number") {
    return fail("WRONG_TYPE", `price.amount must be a number, got ${kind(price.amount)}`);
  }
  if (!Number.isFinite(price.amount) || price.amount < 0 || price.amount >= 1e8) {
    return fail("BAD_VALUE", "price.amount must be from 0 to 99999999.99");
  }
  if (typeof price.currency !== "string" || !CURRENCY.test(price.currency)) {
    return fail("BAD_VALUE", "price.currency must be a 3-letter code such as USD");
  }
  return {
    ok: true,
    ticket: {
      ticket_id: id,
      theater: o.theater as string,
      movie: o.movie as string,
      name: o.name as string,
      email,
      phone_number: o.phone_number as string,
      seats: seats as string[],
      showtime: o.showtime as string,
      price: { amount: price.amount, currency: price.currency },
      purchased_at: o.purchased_at as string,
    },
  };
}

const encoder = new TextEncoder();
/** The JSON bytes of a ticket, as published. */
export function encodeTicket(ticket: Ticket): Uint8Array {
  return encoder.encode(JSON.stringify(ticket));
}
