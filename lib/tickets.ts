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
  /** Theater, movie and name: 1-200 characters (at most 600 UTF-8 bytes), not blank, no NUL. */
  theater: string;
  movie: string;
  name: string;
  /** At most 254 UTF-8 bytes, no NUL. */
  email: string;
  phone_number: string;
  /** Distinct seat labels such as `G8`, 1 to 8 of them. */
  seats: string[];
  /** ISO 8601 start of the show with a zone: a real date of 0001-9999, to the microsecond. */
  showtime: string;
  /** Whole cents (float noise aside) from 0 to 9999999999.99, as numeric(12,2) stores them. */
  price: { amount: number; currency: string };
  /** ISO 8601 time of purchase, as `showtime`. */
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
const CURRENCY = /^[A-Z]{3}$/;
const TEXT_FIELDS = ["theater", "movie", "name"] as const;
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Most characters (code points) of a theater, movie or name. */
export const MAX_TEXT_CHARS = 200;
/**
 * Most UTF-8 bytes of a theater, movie or name: a seat's key (showtime, seat, theater, movie)
 * stays far below PostgreSQL's btree entry limit (~2700 bytes), whatever the script.
 */
export const MAX_TEXT_BYTES = 600;
/** Most UTF-8 bytes of an e-mail address (RFC 5321's 254). */
export const MAX_EMAIL_BYTES = 254;
/** Most digits after the second: PostgreSQL keeps microseconds and rounds the rest. */
export const MAX_FRACTION_DIGITS = 6;
/** Largest price, in cents, that a numeric(12,2) column holds (9999999999.99). */
export const MAX_PRICE_CENTS = 999_999_999_999;

function fail(reason: RejectReason, detail: string): ParseResult {
  return { ok: false, reason, detail };
}

function kind(value: unknown): string {
  return value === null ? "null" : Array.isArray(value) ? "array" : typeof value;
}

// the control characters are what this pattern is for
// deno-lint-ignore no-control-regex
const UNPRINTABLE = /[\u0000-\u001f\u007f\ud800-\udfff]/;

function escapeUnit(code: number): string {
  return `\\u${code.toString(16).padStart(4, "0")}`;
}

/**
 * Message text made safe to quote in a reject detail, which is stored in a text column and
 * printed: NUL and the other C0 controls, DEL and lone surrogates become JSON-style `\u0000`, and
 * the text is cut at `max` characters (ending in `…`), never inside a surrogate pair. Printable
 * text comes back unchanged, so applying it twice with the same `max` changes nothing.
 */
export function printable(text: string, max = 200): string {
  if (text.length <= max && !UNPRINTABLE.test(text)) return text;
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    let piece: string;
    if (code < 0x20 || code === 0x7f) piece = escapeUnit(code);
    else if (code >= 0xd800 && code <= 0xdbff) {
      const next = text.charCodeAt(i + 1); // NaN past the end
      if (next >= 0xdc00 && next <= 0xdfff) piece = text.slice(i, ++i + 1);
      else piece = escapeUnit(code);
    } else if (code >= 0xdc00 && code <= 0xdfff) piece = escapeUnit(code);
    else piece = text[i]!;
    if (out.length + piece.length > max) return `${out}…`;
    out += piece;
  }
  return out;
}

/** Why PostgreSQL could not store `value` faithfully in a text column, if it could not. */
function textProblem(value: string): string | undefined {
  if (value.includes("\u0000")) {
    return "contains a NUL character (\\u0000), which PostgreSQL text cannot hold";
  }
  if (!value.isWellFormed()) {
    return "contains a lone UTF-16 surrogate (such as \\ud800), which is not Unicode text";
  }
  return undefined;
}

/** Code points and UTF-8 bytes of well-formed text. */
function measure(value: string): { chars: number; bytes: number } {
  let chars = 0, bytes = 0;
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    chars++;
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code <= 0xdbff) bytes += 4, i++; // a pair: the text is well formed
    else bytes += 3;
  }
  return { chars, bytes };
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function isLeapYear(year: number): boolean {
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
}

/** Days from 1970-01-01 to a date of the proleptic Gregorian calendar (as PostgreSQL and JS). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * ((month + 9) % 12) + 2) / 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) +
    dayOfYear;
  return era * 146097 + dayOfEra - 719468;
}

/** The number written by `count` ASCII digits of `text` at `at`, or -1 if one is not a digit. */
function digitsAt(text: string, at: number, count: number): number {
  let n = 0;
  for (let i = at; i < at + count; i++) {
    const digit = text.charCodeAt(i) - 48; // NaN past the end
    if (!(digit >= 0 && digit <= 9)) return -1;
    n = n * 10 + digit;
  }
  return n;
}

const TIME_SHAPE = "must be an ISO 8601 time with a zone such as 2026-05-01T19:30:00Z";
const two = (n: number) => String(n).padStart(2, "0");

/**
 * Reads an ISO 8601 time with a zone (`YYYY-MM-DDTHH:MM[:SS[.fraction]]` then `Z`, `±HH:MM` or
 * `±HHMM`), checking each field against the calendar and the ranges PostgreSQL and JavaScript
 * both read the same way: years 0001-9999, days that exist, hours 00-23, minutes and seconds
 * 00-59, at most 6 fraction digits, offsets within ±15:59. Gives the instant (milliseconds, plus
 * the microseconds below them) or what is wrong. Reads by character codes: it runs twice for
 * every message.
 */
function readIsoTime(value: string): { ms: number; micros: number } | string {
  const at = (i: number) => value.charCodeAt(i);
  // "-" 45, ":" 58, "T" 84, "." 46, "Z" 90, "+" 43
  if (at(4) !== 45 || at(7) !== 45 || at(10) !== 84 || at(13) !== 58) return TIME_SHAPE;
  const year = digitsAt(value, 0, 4), month = digitsAt(value, 5, 2), day = digitsAt(value, 8, 2);
  const hour = digitsAt(value, 11, 2), minute = digitsAt(value, 14, 2);
  if (year < 0 || month < 0 || day < 0 || hour < 0 || minute < 0) return TIME_SHAPE;
  let i = 16, second = 0, micros = 0, fractionDigits = 0;
  if (at(i) === 58) {
    second = digitsAt(value, i + 1, 2);
    if (second < 0) return TIME_SHAPE;
    i += 3;
    if (at(i) === 46) {
      i++;
      for (; at(i) >= 48 && at(i) <= 57; i++, fractionDigits++) {
        if (fractionDigits < 6) micros = micros * 10 + at(i) - 48;
      }
      if (fractionDigits === 0) return TIME_SHAPE;
      for (let k = fractionDigits; k < 6; k++) micros *= 10;
    }
  }
  let offset = 0, zone = "";
  if (at(i) === 90) i++;
  else if (at(i) === 43 || at(i) === 45) {
    const zoneHours = digitsAt(value, i + 1, 2);
    const colon = at(i + 3) === 58 ? 1 : 0;
    const zoneMinutes = digitsAt(value, i + 3 + colon, 2);
    if (zoneHours < 0 || zoneMinutes < 0) return TIME_SHAPE;
    zone = `${value[i]}${two(zoneHours)}:${two(zoneMinutes)}`;
    offset = (at(i) === 45 ? -1 : 1) * (zoneHours * 60 + zoneMinutes);
    if (zoneHours > 15 || zoneMinutes > 59) {
      return `has zone offset ${zone}; PostgreSQL takes -15:59 to +15:59`;
    }
    i += 5 + colon;
  } else return TIME_SHAPE;
  if (i !== value.length) return TIME_SHAPE;
  if (fractionDigits > MAX_FRACTION_DIGITS) {
    return `has ${fractionDigits} digits after the second; at most ${MAX_FRACTION_DIGITS} ` +
      "(PostgreSQL keeps microseconds)";
  }
  if (year < 1) return "has year 0000, which does not exist (1 BC is followed by AD 1)";
  if (month < 1 || month > 12) return `has month ${two(month)}; months are 01-12`;
  const days = month === 2 && isLeapYear(year) ? 29 : DAYS_IN_MONTH[month - 1]!;
  if (day < 1 || day > days) {
    return `has day ${two(day)}, but ${value.slice(0, 7)} has ${days} days`;
  }
  if (hour > 23) return `has hour ${two(hour)}; hours are 00-23`;
  if (minute > 59) return `has minute ${two(minute)}; minutes are 00-59`;
  if (second > 59) return `has second ${two(second)}; seconds are 00-59`;
  const ms = (daysFromCivil(year, month, day) * 1440 + hour * 60 + minute - offset) * 60_000 +
    second * 1000 + Math.floor(micros / 1000);
  // a safety net: every reader of a ticket's time (sink, verify) uses Date.parse
  if (Date.parse(value) !== ms) return "is read differently by JavaScript's Date.parse";
  return { ms, micros: micros % 1000 };
}

/**
 * Microseconds since 1970-01-01T00:00:00Z of a time the parser accepts (what a timestamptz column
 * stores for it), or undefined when the parser refuses the time.
 */
export function timeMicros(value: string): bigint | undefined {
  const time = readIsoTime(value);
  return typeof time === "string" ? undefined : BigInt(time.ms) * 1000n + BigInt(time.micros);
}

/**
 * An amount in whole cents, the unit a numeric(12,2) column stores: the one rule by which the
 * pipeline compares money (a message's float with a stored row's).
 */
export function moneyCents(amount: number): number {
  return Math.round(amount * 100);
}

/** True when two amounts are the same number of cents (see {@linkcode moneyCents}). */
export function sameMoney(a: number, b: number): boolean {
  return moneyCents(a) === moneyCents(b);
}

/**
 * True when `amount` is a whole number of cents up to float noise (0.1 + 0.2 is 30 cents), so
 * numeric(12,2) stores what the message means instead of rounding it to another amount.
 */
function isWholeCents(amount: number): boolean {
  const cents = amount * 100;
  const whole = Math.round(cents);
  // the noise of a float grows with its size: about 1e-4 cents near the column's largest value
  return Math.abs(cents - whole) <= 1e-6 + Math.abs(whole) * 1e-15;
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
    // the error quotes the text, which may hold a NUL
    return fail("BAD_JSON", `not JSON: ${printable((error as Error).message)}`);
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    return fail("NOT_OBJECT", `expected a JSON object, got ${kind(data)}`);
  }
  return validateTicket(data as Record<string, unknown>);
}

/**
 * Checks a decoded JSON object field by field. It accepts only what PostgreSQL stores as it is,
 * so that a stored row reads back equal to the message: times that exist (see readIsoTime), text
 * without NUL or lone surrogates and within the index limits, prices in whole cents that fit
 * numeric(12,2).
 */
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
    const value = o[field] as string;
    const problem = textProblem(value);
    if (problem) return fail("BAD_VALUE", `${field} ${problem}`);
    if (value.trim().length === 0) return fail("BAD_VALUE", `${field} must not be empty or blank`);
    const { chars, bytes } = measure(value);
    if (chars > MAX_TEXT_CHARS || bytes > MAX_TEXT_BYTES) {
      return fail(
        "BAD_VALUE",
        `${field} has ${chars} characters (${bytes} bytes in UTF-8); the limit is ` +
          `${MAX_TEXT_CHARS} characters and ${MAX_TEXT_BYTES} bytes`,
      );
    }
  }
  const email = o.email as string;
  const emailProblem = textProblem(email);
  if (emailProblem) return fail("BAD_EMAIL", `email ${emailProblem}`);
  const emailBytes = measure(email).bytes;
  if (emailBytes > MAX_EMAIL_BYTES) {
    return fail("BAD_EMAIL", `email has ${emailBytes} bytes; the limit is ${MAX_EMAIL_BYTES}`);
  }
  if (!EMAIL.test(email)) {
    return fail("BAD_EMAIL", `email "${printable(email, 80)}" is not an e-mail address`);
  }
  if (!PHONE.test(o.phone_number as string)) {
    return fail("BAD_VALUE", "phone_number must be 3-40 digits, spaces or + ( ) . - x");
  }
  for (const field of ["showtime", "purchased_at"]) {
    const value = o[field] as string;
    const time = readIsoTime(value);
    if (typeof time === "string") {
      return fail("BAD_VALUE", `${field} ${time}, not "${printable(value, 40)}"`);
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
        `seat ${printable(JSON.stringify(seat) ?? kind(seat), 20)} is not a label such as G8`,
      );
    }
    if (seen.has(seat)) return fail("BAD_SEAT", `seat ${seat} appears twice`);
    seen.add(seat);
  }
  const price = o.price as Record<string, unknown>;
  if (typeof price !== "object" || price === null || Array.isArray(price)) {
    return fail("WRONG_TYPE", `price must be an object, got ${kind(price)}`);
  }
  const amount = price.amount;
  if (typeof amount !== "number") {
    return fail("WRONG_TYPE", `price.amount must be a number, got ${kind(amount)}`);
  }
  if (!Number.isFinite(amount) || amount < 0 || moneyCents(amount) > MAX_PRICE_CENTS) {
    return fail("BAD_VALUE", "price.amount must be from 0 to 9999999999.99");
  }
  if (!isWholeCents(amount)) {
    return fail(
      "BAD_VALUE",
      `price.amount ${amount} has more than 2 decimal places; numeric(12,2) would round it`,
    );
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
      price: { amount, currency: price.currency },
      purchased_at: o.purchased_at as string,
    },
  };
}

const encoder = new TextEncoder();
/** The JSON bytes of a ticket, as published. */
export function encodeTicket(ticket: Ticket): Uint8Array {
  return encoder.encode(JSON.stringify(ticket));
}
