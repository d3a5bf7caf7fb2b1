/**
 * A fast seeded generator of realistic tickets: faker fills pools of names, e-mails and phone
 * numbers once, and a small PRNG picks from them, so the same seed gives the same tickets. Only
 * the producer and the tests load it (and faker with it); the consumer does not.
 * @module
 */
import { en, Faker } from "@faker-js/faker";
import { MAX_SEATS, type Ticket } from "./columns.ts";
import { sfc32 } from "./random.ts";
import { uuidv7Of } from "./uuid.ts";

const fixturesDir = new URL("../../fixtures/", import.meta.url);

function readList(name: string): string[] {
  return Deno.readTextFileSync(new URL(name, fixturesDir)).split("\n").map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
}

let lists:
  | { movies: string[]; theaters: string[]; movieJson: string[]; theaterJson: string[] }
  | undefined;
function fixtureLists() {
  if (!lists) {
    const movies = readList("movies.txt"), theaters = readList("theaters.txt");
    const json = (list: string[]) => list.map((s) => JSON.stringify(s));
    lists = { movies, theaters, movieJson: json(movies), theaterJson: json(theaters) };
  }
  return lists;
}

const ROWS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const SHOW_HOURS = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21];
const SHOW_DAYS = 30;
const SEATS_PER_ROW = 30;
const CAPACITY = ROWS.length * SEATS_PER_ROW;
const PRICES = [8.5, 9.5, 11, 12.5, 14, 16.5];
const POOL_SIZE = 2048;
const DAY_MS = 86_400_000;
const QUARTER_MS = 900_000;
/** Seat labels by index in a show (row by row), and their JSON. */
const SEAT_LABELS = Array.from(
  { length: CAPACITY },
  (_, i) => `${ROWS[Math.floor(i / SEATS_PER_ROW)]}${(i % SEATS_PER_ROW) + 1}`,
);
const SEAT_JSON = SEAT_LABELS.map((label) => JSON.stringify(label));
/** ".000Z" to ".999Z": the end of an ISO time by its milliseconds. */
const MILLIS = Array.from({ length: 1000 }, (_, i) => `${String(i).padStart(3, "0")}Z`);

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

/** `Date#toISOString` of times made over and over: show times kept, purchase seconds reused. */
class IsoTimes {
  readonly #showtimes = new Map<number, string>();
  #second = NaN;
  #secondText = "";

  showtime(at: number): string {
    let text = this.#showtimes.get(at);
    if (text === undefined) {
      if (this.#showtimes.size >= 10_000) this.#showtimes.clear();
      text = new Date(at).toISOString();
      this.#showtimes.set(at, text);
    }
    return text;
  }

  iso(ms: number): string {
    const second = Math.floor(ms / 1000);
    if (second !== this.#second) {
      this.#second = second;
      this.#secondText = new Date(second * 1000).toISOString().slice(0, -4); // "…:ss."
    }
    return this.#secondText + MILLIS[ms - second * 1000];
  }
}

/** A generated ticket and its JSON text (exactly `JSON.stringify(ticket)`). */
export interface GeneratedTicket {
  ticket: Ticket;
  json: string;
}

/** A show: indexes of its theater and movie in the fixture lists, and its start (ms). */
interface Show {
  theater: number;
  movie: number;
  at: number;
}

/** Generates realistic tickets quickly; reproducible with a seed. */
export class TicketGenerator {
  readonly #next: () => number;
  readonly #names: string[] = [];
  readonly #emails: string[] = [];
  readonly #phones: string[] = [];
  /** `"name":…,"email":…,"phone_number":…` of each pooled person. */
  readonly #personJson: string[] = [];
  readonly #lists = fixtureLists();
  readonly #base: number;
  /** Quarter hour of the first purchase: shows are numbered from it (small numbers). */
  readonly #firstQuarter: number;
  readonly #clashRate: number;
  /** Sale state per show (see #allocate). */
  readonly #sold = new Map<number, number>();
  readonly #recent: { show: Show; seat: number }[] = [];
  readonly #times = new IsoTimes();
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
      const name = `${first} ${last}`;
      const email = faker.internet.email({ firstName: first, lastName: last }).toLowerCase();
      const phone = faker.phone.number({ style: "international" });
      this.#names.push(name);
      this.#emails.push(email);
      this.#phones.push(phone);
      this.#personJson.push(
        `"name":${JSON.stringify(name)},"email":${JSON.stringify(email)},"phone_number":${
          JSON.stringify(phone)
        }`,
      );
    }
    this.#clashRate = options.seatClashRate ?? 0;
    this.#base = (options.startTime ??
      (options.seed === undefined ? new Date() : new Date("2026-01-01T00:00:00Z"))).getTime();
    this.#firstQuarter = Math.floor(this.#base / QUARTER_MS);
  }

  #pick<T>(list: readonly T[]): T {
    return list[this.#next() % list.length]!;
  }

  /** A version-7 UUID of the purchase time: ids sort by purchase, as a B-tree likes them. */
  #uuid(purchased: number): string {
    return uuidv7Of(purchased, this.#next(), this.#next(), this.#next());
  }

  /**
   * Sells `count` adjacent seats of a show: the index of the first (seats are numbered row by
   * row), or -1 when it has no room. Each show starts at a random row (so separate runs rarely
   * sell the same seat) and fills rows in order, wrapping round once. The state of a show is
   * packed in one number: `used * 1024 + next`.
   */
  #allocate(show: number, count: number): number {
    const state = this.#sold.get(show) ?? (this.#next() % ROWS.length) * SEATS_PER_ROW;
    let index = state % 1024;
    let used = Math.floor(state / 1024);
    const inRow = index % SEATS_PER_ROW;
    if (inRow + count > SEATS_PER_ROW) {
      used += SEATS_PER_ROW - inRow;
      index = (index + SEATS_PER_ROW - inRow) % CAPACITY;
    }
    if (used + count > CAPACITY) return -1;
    this.#sold.set(show, (used + count) * 1024 + ((index + count) % CAPACITY));
    return index;
  }

  /** A show with `count` free adjacent seats, and the first of them. */
  #sell(purchased: number, count: number): { show: Show; first: number } {
    const { theaters, movies } = this.#lists;
    for (;;) {
      const theater = this.#next() % theaters.length, movie = this.#next() % movies.length;
      const day = purchased + (1 + (this.#next() % SHOW_DAYS)) * DAY_MS;
      const at = Math.floor(day / DAY_MS) * DAY_MS + this.#pick(SHOW_HOURS) * 3_600_000 +
        (this.#next() % 4) * QUARTER_MS;
      // a small number names the show (quarter hour, theater, movie): hashing a string key per
      // ticket was a tenth of the producer's CPU
      const key = ((at / QUARTER_MS - this.#firstQuarter) * theaters.length + theater) *
          movies.length + movie;
      const first = this.#allocate(key, count);
      if (first >= 0) return { show: { theater, movie, at }, first };
    }
  }

  /** The next ticket. */
  next(): Ticket {
    return this.#generate(false).ticket;
  }

  /** The next ticket and its JSON, made without `JSON.stringify` (the same text). */
  nextWithJson(): GeneratedTicket {
    return this.#generate(true);
  }

  #generate(withJson: boolean): GeneratedTicket {
    const person = this.#next() % POOL_SIZE;
    let count = 1 + (this.#next() % MAX_SEATS);
    const purchased = this.#base + this.#count * 7;
    this.#count++;
    let show: Show, first: number;
    if (
      this.#clashRate > 0 && this.#recent.length > 0 && this.#next() / 2 ** 32 < this.#clashRate
    ) {
      // on purpose: one seat that an earlier ticket of this run already bought
      ({ show, seat: first } = this.#recent[this.#next() % this.#recent.length]!);
      count = 1;
    } else {
      ({ show, first } = this.#sell(purchased, count));
      if (this.#clashRate > 0) {
        const memory = { show, seat: first };
        if (this.#recent.length < 1000) this.#recent.push(memory);
        else this.#recent[this.#next() % 1000] = memory;
      }
    }
    const { theaters, movies } = this.#lists;
    const ticket: Ticket = {
      ticket_id: this.#uuid(purchased),
      theater: theaters[show.theater]!,
      movie: movies[show.movie]!,
      name: this.#names[person]!,
      email: this.#emails[person]!,
      phone_number: this.#phones[person]!,
      seats: SEAT_LABELS.slice(first, first + count),
      showtime: this.#times.showtime(show.at),
      price: { amount: Math.round(this.#pick(PRICES) * count * 100) / 100, currency: "USD" },
      purchased_at: this.#times.iso(purchased),
    };
    if (!withJson) return { ticket, json: "" };
    let seats = SEAT_JSON[first]!;
    for (let i = first + 1; i < first + count; i++) seats += "," + SEAT_JSON[i];
    // one join makes one flat string; a template or `+` makes a rope of ~25 pieces, which costs
    // more to flatten when it is encoded than JSON.stringify did (~2 us a ticket)
    const json = [
      '{"ticket_id":"',
      ticket.ticket_id,
      '","theater":',
      this.#lists.theaterJson[show.theater],
      ',"movie":',
      this.#lists.movieJson[show.movie],
      ",",
      this.#personJson[person],
      ',"seats":[',
      seats,
      '],"showtime":"',
      ticket.showtime,
      '","price":{"amount":',
      ticket.price.amount,
      ',"currency":"USD"},"purchased_at":"',
      ticket.purchased_at,
      '"}',
    ].join("");
    return { ticket, json };
  }
}
