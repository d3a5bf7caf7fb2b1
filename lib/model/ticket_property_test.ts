/**
 * Property tests of parseTicket(): it never throws, accepts every valid ticket unchanged, and
 * accepts of a mutated ticket only what PostgreSQL can store as given (an oracle written apart from
 * the parser: no NUL, no lone surrogate, dates that exist in PostgreSQL's range, offsets within
 * ±15:59, whole cents, index-sized show keys). Seed: PROPERTY_SEED (env FC_SEED replays one).
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  junkMessageArb,
  messageArb,
  mutatedMessageArb,
  preview,
  PROPERTY_SEED,
  validTicketArb,
} from "../../testing/ticket_arbitraries.ts";
import { MAX_SEATS, type Ticket } from "./columns.ts";
import { TicketGenerator } from "./generator.ts";
import { encodeTicket, parseTicket } from "./ticket.ts";

const encoder = new TextEncoder();
const options = (numRuns: number) => ({ seed: PROPERTY_SEED, numRuns });

/** Throws unless `result` is a well-formed answer: a ticket, or a reason with a detail. */
function checkAnswer(result: ReturnType<typeof parseTicket>): void {
  if (result.ok) {
    assert.equal(typeof result.ticket, "object");
    return;
  }
  assert.match(result.reason, /^[A-Z][A-Z0-9_]*$/);
  assert.equal(typeof result.detail, "string");
  assert.ok(result.detail.length > 0, `reason ${result.reason} without a detail`);
}

const ISO_TIME =
  /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(?:Z|([+-])(\d{2}):?(\d{2}))$/;

function daysIn(year: number, month: number): number {
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  return [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]!;
}

/** Why PostgreSQL's timestamptz would refuse an accepted time, or store another instant. */
function timeProblems(field: string, value: string): string[] {
  const m = ISO_TIME.exec(value);
  if (!m) return [`${field} ${JSON.stringify(value)} is not an ISO 8601 time with a zone`];
  const [year, month, day, hour, minute] = m.slice(1, 6).map(Number) as number[];
  const second = m[6] === undefined ? 0 : Number(m[6]);
  const fraction = m[7] ?? "";
  const offsetHours = m[9] === undefined ? 0 : Number(m[9]);
  const offsetMinutes = m[10] === undefined ? 0 : Number(m[10]);
  const problems: string[] = [];
  const at = `${field} ${JSON.stringify(value)}`;
  if (year! < 1) problems.push(`${at}: year 0000 does not exist`);
  if (month! < 1 || month! > 12) problems.push(`${at}: no month ${month}`);
  else if (day! < 1 || day! > daysIn(year!, month!)) problems.push(`${at}: no such day`);
  const midnight = hour === 24 && minute === 0 && second === 0 && /^0*$/.test(fraction);
  if ((hour! > 23 && !midnight) || minute! > 59 || second! > 59) {
    problems.push(`${at}: no such time of day`);
  }
  if (offsetHours > 15 || offsetMinutes > 59) problems.push(`${at}: offset beyond ±15:59`);
  if (fraction.length > 6) {
    // PostgreSQL keeps microseconds, rounding; JavaScript (and so verify) reads milliseconds
    const micros = Number(fraction.slice(0, 6));
    const rest = fraction.slice(6);
    const up = rest > "5" && !/^50*$/.test(rest);
    if (up && micros % 1000 === 999) {
      problems.push(`${at}: PostgreSQL rounds it into the next millisecond`);
    }
  }
  if (problems.length === 0) {
    const date = new Date(0);
    date.setUTCFullYear(year!, month! - 1, day!);
    date.setUTCHours(hour!, minute!, second, Number(fraction.slice(0, 3).padEnd(3, "0")));
    const sign = m[8] === "-" ? -1 : 1;
    const instant = date.getTime() - sign * (offsetHours * 60 + offsetMinutes) * 60_000;
    if (Date.parse(value) !== instant) {
      problems.push(`${at}: Date.parse reads ${Date.parse(value)}, the calendar says ${instant}`);
    }
  }
  return problems;
}

/**
 * True when numeric(12,2) stores `amount` as it is, up to float noise: within a ten-thousandth of
 * a cent of whole cents (0.1 + 0.2 is 30 cents; 12.345 or 0.0001 are not whole cents).
 */
function isWholeCents(amount: number): boolean {
  return Math.abs(amount * 100 - Math.round(amount * 100)) <= 1e-4;
}

/**
 * Why PostgreSQL would refuse an accepted ticket or store something else: the oracle the parser is
 * held to, written from PostgreSQL's rules rather than from the parser.
 */
function storableProblems(t: Ticket): string[] {
  const problems: string[] = [];
  const strings: [string, unknown][] = [
    ["ticket_id", t.ticket_id],
    ["theater", t.theater],
    ["movie", t.movie],
    ["name", t.name],
    ["email", t.email],
    ["phone_number", t.phone_number],
    ["showtime", t.showtime],
    ["purchased_at", t.purchased_at],
    ["price.currency", t.price?.currency],
    ...(Array.isArray(t.seats) ? t.seats : []).map((s, i): [string, unknown] => [`seats.${i}`, s]),
  ];
  for (const [field, value] of strings) {
    if (typeof value !== "string") {
      problems.push(`${field} is ${typeof value}, not a string`);
      continue;
    }
    if (value.includes("\u0000")) problems.push(`${field} holds NUL (PostgreSQL 22021)`);
    if (/\p{Cs}/u.test(value)) {
      problems.push(`${field} holds a lone surrogate (stored as U+FFFD, not as given)`);
    }
  }
  if (typeof t.showtime === "string") problems.push(...timeProblems("showtime", t.showtime));
  if (typeof t.purchased_at === "string") {
    problems.push(...timeProblems("purchased_at", t.purchased_at));
  }
  const amount = t.price?.amount;
  if (typeof amount !== "number" || !Number.isFinite(amount) || amount < 0) {
    problems.push(`price.amount ${amount} is not a non-negative number`);
  } else if (!isWholeCents(amount)) {
    problems.push(`price.amount ${amount} is not in whole cents (numeric(12,2) rounds it)`);
  } else if (amount > 9_999_999_999.99) problems.push(`price.amount ${amount} overflows`);
  if (!Array.isArray(t.seats) || t.seats.length < 1 || t.seats.length > MAX_SEATS) {
    problems.push("seats is not a list of 1 to 8 seats");
  } else if (new Set(t.seats).size !== t.seats.length) problems.push("a seat appears twice");
  if (typeof t.theater === "string" && typeof t.movie === "string") {
    // the seats table's key (showtime, seat, theater, movie): PostgreSQL refuses a btree entry
    // over 2704 bytes unless it happens to compress; the 8 bytes are the showtime
    const bytes = 8 + encoder.encode(t.theater).length + encoder.encode(t.movie).length +
      Math.max(0, ...(Array.isArray(t.seats) ? t.seats : []).map((s) => String(s).length));
    if (bytes > 2_704) problems.push(`the seats key takes ${bytes} bytes: over PostgreSQL's 2704`);
  }
  return problems;
}

Deno.test("parseTicket() never throws on arbitrary bytes and answers a ticket or a reason", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2_000 }), (bytes) => {
      checkAnswer(parseTicket(bytes));
    }),
    options(3_000),
  );
});

Deno.test("parseTicket() never throws on arbitrary JSON values and junk", () => {
  fc.assert(
    fc.property(fc.jsonValue(), (value) => {
      checkAnswer(parseTicket(encoder.encode(JSON.stringify(value))));
    }),
    options(2_000),
  );
  fc.assert(
    fc.property(junkMessageArb, (m) => {
      const result = parseTicket(m.value);
      checkAnswer(result);
      if (result.ok) assert.deepEqual(storableProblems(result.ticket), [], preview(m.value));
    }),
    options(2_000),
  );
});

Deno.test("parseTicket() accepts every ticket built from the field rules and returns it unchanged", () => {
  fc.assert(
    fc.property(validTicketArb, (ticket) => {
      const result = parseTicket(encodeTicket(ticket));
      assert.ok(result.ok, result.ok ? "" : `${result.reason}: ${result.detail}`);
      assert.deepEqual(result.ticket, ticket);
      assert.deepEqual(encodeTicket(result.ticket), encodeTicket(ticket));
      assert.deepEqual(storableProblems(ticket), []); // the oracle agrees these are storable
    }),
    options(2_000),
  );
});

Deno.test("parseTicket() accepts every TicketGenerator ticket, whatever the seed", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 40 }), fc.integer({ min: 1, max: 40 }), (s, n) => {
      const generator = new TicketGenerator({ seed: s, seatClashRate: 0.1 });
      for (let i = 0; i < n; i++) {
        const ticket = generator.next();
        const result = parseTicket(encodeTicket(ticket));
        assert.ok(result.ok, result.ok ? "" : `${result.reason}: ${result.detail}`);
        assert.deepEqual(result.ticket, ticket);
      }
    }),
    options(50),
  );
});

Deno.test("parseTicket() never throws on mutated tickets, and accepts only what PostgreSQL stores as given", () => {
  fc.assert(
    fc.property(fc.oneof(mutatedMessageArb, messageArb), (m) => {
      const result = parseTicket(m.value);
      checkAnswer(result);
      if (!result.ok) return;
      assert.deepEqual(storableProblems(result.ticket), [], `accepted ${preview(m.value)}`);
      // what it accepted, encoded again, is accepted again as the same ticket
      const again = parseTicket(encodeTicket(result.ticket));
      assert.ok(again.ok, again.ok ? "" : `${again.reason}: ${again.detail}`);
      assert.deepEqual(encodeTicket(again.ticket), encodeTicket(result.ticket)); // -0 is 0
    }),
    options(4_000),
  );
});

Deno.test("parseTicket() refuses anything over the size cap as TOO_LARGE", () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 600 }),
        messageArb.map((m) => m.value ?? new Uint8Array()),
      ),
      fc.integer({ min: 1, max: 500 }),
      (bytes, cap) => {
        const result = parseTicket(bytes, cap);
        checkAnswer(result);
        if (bytes.length > cap) assert.equal(result.ok ? "ok" : result.reason, "TOO_LARGE");
      },
    ),
    options(1_000),
  );
});
