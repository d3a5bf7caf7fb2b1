import assert from "node:assert/strict";
import { MAX_SEATS, type RejectReason, timeColumn } from "./columns.ts";
import { TicketGenerator } from "./generator.ts";
import { encodeTicket, parseTicket } from "./ticket.ts";
import { moneyCents, printable, sameMoney, timeMicros } from "./values.ts";

interface BadCase {
  name: string;
  text?: string;
  base64?: string;
  omit?: string;
  patch?: Record<string, unknown>;
  pad?: number;
  /** Fields set to strings given with JSON escapes (`\\ud800`): a lone surrogate, say. */
  escapedPatch?: Record<string, string>;
  /** Sets a field to `text` repeated, after its value with `append`. */
  repeat?: { field: string; text: string; times: number; append?: boolean };
  reason: RejectReason;
}

const fixture = JSON.parse(
  Deno.readTextFileSync(new URL("../../fixtures/bad_messages.json", import.meta.url)),
) as { cases: BadCase[] };

function bytesOf(c: BadCase): Uint8Array {
  if (c.text !== undefined) return new TextEncoder().encode(c.text);
  if (c.base64 !== undefined) return Uint8Array.from(atob(c.base64), (ch) => ch.charCodeAt(0));
  const ticket: Record<string, unknown> = { ...new TicketGenerator({ seed: 1 }).next() };
  if (c.omit) delete ticket[c.omit];
  Object.assign(ticket, c.patch ?? {});
  for (const [field, escaped] of Object.entries(c.escapedPatch ?? {})) {
    ticket[field] = JSON.parse(`"${escaped}"`);
  }
  if (c.pad) ticket.padding = "x".repeat(c.pad);
  if (c.repeat) {
    const { field, text, times, append } = c.repeat;
    ticket[field] = (append ? ticket[field] : "") + text.repeat(times);
  }
  return new TextEncoder().encode(JSON.stringify(ticket));
}

for (const c of fixture.cases) {
  Deno.test(`parseTicket() rejects ${c.name} with ${c.reason}`, () => {
    const result = parseTicket(bytesOf(c));
    assert.equal(result.ok, false);
    if (!result.ok) {
      assert.equal(result.reason, c.reason, result.detail);
      assert.ok(result.detail.length > 0);
      // the detail is stored in a text column: nothing printable() would have to escape
      assert.equal(printable(result.detail, Infinity), result.detail);
    }
  });
}

Deno.test("parseTicket() rejects a null value as EMPTY", () => {
  const result = parseTicket(null);
  assert.equal(result.ok ? "ok" : result.reason, "EMPTY");
});

Deno.test("parseTicket() accepts every generated ticket and returns it unchanged", () => {
  const generator = new TicketGenerator();
  for (let i = 0; i < 2000; i++) {
    const ticket = generator.next();
    const result = parseTicket(encodeTicket(ticket));
    assert.ok(result.ok, result.ok ? "" : `${result.reason}: ${result.detail}`);
    assert.deepEqual(result.ticket, ticket);
  }
});

Deno.test("parseTicket() honours a smaller size cap", () => {
  const bytes = encodeTicket(new TicketGenerator({ seed: 3 }).next());
  const result = parseTicket(bytes, 100);
  assert.equal(result.ok ? "ok" : result.reason, "TOO_LARGE");
});

Deno.test("TicketGenerator() with the same seed gives the same tickets", () => {
  const a = new TicketGenerator({ seed: 42 });
  const b = new TicketGenerator({ seed: 42 });
  for (let i = 0; i < 100; i++) assert.deepEqual(a.next(), b.next());
});

Deno.test("TicketGenerator() without a seed gives new ticket ids each run", () => {
  const ids = new Set<string>();
  for (let run = 0; run < 5; run++) {
    const generator = new TicketGenerator();
    for (let i = 0; i < 1000; i++) ids.add(generator.next().ticket_id);
  }
  assert.equal(ids.size, 5000);
});

Deno.test("TicketGenerator() makes 1 to 8 distinct seats and fixture titles", () => {
  const movies = Deno.readTextFileSync(new URL("../../fixtures/movies.txt", import.meta.url));
  const generator = new TicketGenerator({ seed: 9 });
  const counts = new Set<number>();
  for (let i = 0; i < 1000; i++) {
    const t = generator.next();
    assert.ok(t.seats.length >= 1 && t.seats.length <= MAX_SEATS);
    assert.equal(new Set(t.seats).size, t.seats.length);
    assert.ok(movies.includes(t.movie));
    counts.add(t.seats.length);
  }
  assert.equal(counts.size, MAX_SEATS);
});

Deno.test("TicketGenerator() never sells a seat twice in a run, unless asked to clash", () => {
  const key = (t: ReturnType<TicketGenerator["next"]>, seat: string) =>
    `${t.theater}|${t.movie}|${t.showtime}|${seat}`;
  const sold = new Set<string>();
  const generator = new TicketGenerator({ seed: 5 });
  for (let i = 0; i < 20_000; i++) {
    const t = generator.next();
    for (const seat of t.seats) {
      assert.ok(!sold.has(key(t, seat)), `seat ${seat} sold twice`);
      sold.add(key(t, seat));
    }
  }
  const clashing = new TicketGenerator({ seed: 5, seatClashRate: 0.05 });
  const seen = new Set<string>();
  let clashes = 0;
  for (let i = 0; i < 20_000; i++) {
    const t = clashing.next();
    if (t.seats.some((seat) => seen.has(key(t, seat)))) clashes++;
    for (const seat of t.seats) seen.add(key(t, seat));
  }
  assert.ok(clashes > 700 && clashes < 1300, `${clashes} clashes for a 5% rate`);
});

const base = new TicketGenerator({ seed: 7 }).next();
function parsePatched(patch: Record<string, unknown>) {
  return parseTicket(new TextEncoder().encode(JSON.stringify({ ...base, ...patch })));
}
const verdict = (result: ReturnType<typeof parseTicket>) =>
  result.ok ? "ok" : `${result.reason}: ${result.detail}`;

/** Values at the edges of what the columns store: each must be accepted as it is. */
const TRICKY_VALID: Record<string, unknown>[] = [
  { showtime: "2024-02-29T20:00:00Z" },
  { showtime: "2000-02-29T20:00:00Z" },
  { showtime: "0001-01-01T00:00:00Z" },
  { showtime: "0001-01-01T00:00:00+15:59" },
  { showtime: "0099-12-31T23:59:59Z" },
  { showtime: "9999-12-31T23:59:59.999999Z" },
  { showtime: "9999-12-31T23:59:59.999999-15:59" },
  { showtime: "2026-05-01T20:00+05:30" },
  { showtime: "2026-05-01T20:00:00-0930" },
  { showtime: "2026-05-01T20:00:00-00:00" },
  { showtime: "2026-05-01T20:00:00.5Z" },
  { purchased_at: "2026-05-01T20:00:00.123456+01:00" },
  { purchased_at: "1969-12-31T23:59:59.999999Z" },
  { name: "€".repeat(200) },
  { name: "\u{1F3AC}".repeat(150) },
  { name: "  Ada  " },
  { theater: "Tab\there, new\nline, CR\r, back\\slash, bell\u0007, DEL\u007f" },
  { movie: "\uFEFFBOM, \uFFFF, e\u0301, \u{10FFFF}" },
  { email: `${"a".repeat(64)}@${"b".repeat(185)}.com` },
  { email: "jürgen@exämple.de" },
  { price: { amount: 0, currency: "USD" } },
  { price: { amount: 0.01, currency: "USD" } },
  { price: { amount: 0.1 + 0.2, currency: "USD" } },
  { price: { amount: 1.1 * 3, currency: "USD" } },
  { price: { amount: 9999999999.99, currency: "USD" } },
];

/** Values PostgreSQL refuses or would store altered: each must be refused. */
const TRICKY_INVALID: Record<string, unknown>[] = [
  { showtime: "2026-02-30T20:00:00Z" },
  { showtime: "2026-04-31T20:00:00Z" },
  { showtime: "2026-06-31T20:00:00Z" },
  { showtime: "2026-09-31T20:00:00Z" },
  { showtime: "2026-11-31T20:00:00Z" },
  { showtime: "1900-02-29T20:00:00Z" },
  { showtime: "2026-00-10T20:00:00Z" },
  { showtime: "2026-13-10T20:00:00Z" },
  { showtime: "2026-05-00T20:00:00Z" },
  { showtime: "0000-01-01T00:00:00Z" },
  { showtime: "2026-05-01T24:00:00Z" },
  { showtime: "2026-05-01T23:60:00Z" },
  { showtime: "2026-05-01T23:59:60Z" },
  { showtime: "2026-05-01T20:00:00+16:00" },
  { showtime: "2026-05-01T20:00:00-15:60" },
  { showtime: "2026-05-01T20:00:00.1234567Z" },
  { showtime: "2026-05-01T20:00:00.Z" },
  { showtime: "2026-05-01T20:00:00" },
  { showtime: "2026-05-01 20:00:00Z" },
  { showtime: "+002026-05-01T20:00:00Z" },
  { showtime: "2026-05-01T20:00:00+05" },
  { name: "a\u0000b" },
  { theater: "\u0000" },
  { movie: "lone \ud800 high" },
  { movie: "lone \udc00 low" },
  { movie: "reversed \udc00\ud800 pair" },
  { email: "ada\u0000@example.com" },
  { email: "ada\ud800@example.com" },
  { theater: "Cinema" + " ".repeat(60_000) },
  { name: "x".repeat(201) },
  { name: "\u{1F3AC}".repeat(151) },
  { name: "€".repeat(199) + "\u{1F3AC}" }, // 200 characters, 601 bytes
  { email: `${"a".repeat(64)}@${"b".repeat(186)}.com` },
  { price: { amount: 12.345, currency: "USD" } },
  { price: { amount: 0.005, currency: "USD" } },
  { price: { amount: 1.005, currency: "USD" } },
  { price: { amount: 1e-7, currency: "USD" } },
  { price: { amount: 10_000_000_000, currency: "USD" } },
  { price: { amount: 9999999999.995, currency: "USD" } },
  { price: { amount: -0.01, currency: "USD" } },
];

Deno.test("parseTicket() accepts values at the edges of the columns and returns them unchanged", () => {
  for (const patch of TRICKY_VALID) {
    const result = parsePatched(patch);
    assert.ok(result.ok, `${JSON.stringify(patch).slice(0, 80)}: ${verdict(result)}`);
    assert.deepEqual(result.ticket, { ...base, ...patch });
  }
});

Deno.test("parseTicket() refuses what PostgreSQL refuses or would store altered, naming the field", () => {
  for (const patch of TRICKY_INVALID) {
    const result = parsePatched(patch);
    const what = JSON.stringify(patch).slice(0, 80);
    assert.ok(!result.ok, `${what} was accepted`);
    const field = Object.keys(patch)[0]!;
    assert.equal(result.reason, field === "email" ? "BAD_EMAIL" : "BAD_VALUE", what);
    assert.ok(result.detail.includes(field), `${what}: ${result.detail}`);
    assert.equal(printable(result.detail, Infinity), result.detail);
  }
});

Deno.test("parseTicket() takes February 29 only in leap years and every month's last day, not the next", () => {
  for (let year = 1; year <= 2400; year += 1) {
    const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
    const y = String(year).padStart(4, "0");
    const result = parsePatched({ showtime: `${y}-02-29T12:00:00Z` });
    assert.equal(result.ok, leap, `${y}-02-29: ${verdict(result)}`);
  }
  const last = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
  last.forEach((days, i) => {
    const month = String(i + 1).padStart(2, "0");
    assert.ok(parsePatched({ showtime: `2026-${month}-${days}T12:00:00Z` }).ok, month);
    assert.ok(!parsePatched({ showtime: `2026-${month}-${days + 1}T12:00:00Z` }).ok, month);
  });
});

Deno.test("timeMicros() gives the instant Date.parse gives, to the microsecond", () => {
  const random = new TicketGenerator({ seed: 11 }); // a seeded source of numbers: its ids
  const first = Date.parse("0001-01-01T00:00:00Z"), span = Date.parse("9999-12-31T23:59:59Z");
  for (let i = 0; i < 5000; i++) {
    const word = parseInt(random.next().ticket_id.replaceAll("-", "").slice(0, 13), 16);
    const ms = first + (word % (span - first));
    const micros = word % 1000;
    const text = new Date(ms).toISOString().replace("Z", `${String(micros).padStart(3, "0")}Z`);
    assert.equal(timeMicros(text), BigInt(ms) * 1000n + BigInt(micros), text);
    const shifted = text.replace("Z", "+07:30");
    assert.equal(timeMicros(shifted), BigInt(Date.parse(shifted)) * 1000n + BigInt(micros));
  }
  assert.equal(timeMicros("1970-01-01T00:00:00.000001Z"), 1n);
  assert.equal(timeMicros("1969-12-31T23:59:59.999999Z"), -1n);
  assert.equal(timeMicros("2026-02-30T00:00:00Z"), undefined);
});

Deno.test("a time column's stored text is timeMicros() in decimal, before 1970 and past 2^53 µs too", () => {
  const stored = timeColumn("showtime").stored as (value: string) => string;
  for (
    const text of [
      "0001-01-01T00:00:00Z",
      "1969-12-31T23:59:59.999999Z",
      "1970-01-01T00:00:00.000001Z",
      "2026-05-01T19:30:00.123456+02:00",
      "2255-06-05T23:47:34.740991Z", // 2^53 µs is 2255-06-05T23:47:34.740992Z
      "2255-06-05T23:47:34.740993Z",
      "9999-12-31T23:59:59.999999Z",
      "2026-02-30T00:00:00Z", // refused: "undefined", as String(undefined)
    ]
  ) assert.equal(stored(text), String(timeMicros(text)), text);
});

Deno.test("printable() escapes NUL, controls and lone surrogates, keeps pairs and cuts without splitting one", () => {
  assert.equal(printable("a\u0000b\u001f\u007fc"), "a\\u0000b\\u001f\\u007fc");
  assert.equal(printable("x\ud800y\udc00z"), "x\\ud800y\\udc00z");
  assert.equal(printable("pair \u{1F3AC} ok"), "pair \u{1F3AC} ok");
  assert.equal(printable("\u{1F3AC}\u{1F3AC}", 3), "\u{1F3AC}…");
  assert.equal(printable("abcdef", 3), "abc…");
  assert.equal(printable("\u0000\u0000", 8), "\\u0000…");
  for (const text of ["a\u0000b", "\ud800".repeat(50), "é\u{1F3AC}\n".repeat(100)]) {
    const once = printable(text, 120);
    assert.ok(once.isWellFormed() && !once.includes("\u0000"), once);
    assert.ok(once.length <= 121);
    assert.equal(printable(once, 120), once);
  }
});

Deno.test("moneyCents() and sameMoney() compare whole cents, float noise aside", () => {
  assert.equal(moneyCents(0.1 + 0.2), 30);
  assert.ok(sameMoney(0.1 + 0.2, 0.3));
  assert.ok(sameMoney(12.5, 12.50));
  assert.ok(!sameMoney(12.5, 12.51));
  assert.ok(!sameMoney(0.3, 0.31));
  assert.equal(moneyCents(9999999999.99), 999_999_999_999);
  // every amount of whole cents is its own number of cents (checked around 0 and the top)
  for (const start of [0, 999_999_000_000]) {
    for (let cents = start; cents < start + 20_000; cents++) {
      const amount = Number((cents / 100).toFixed(2));
      assert.equal(moneyCents(amount), cents);
      assert.ok(parsePatched({ price: { amount, currency: "EUR" } }).ok || cents > 1e12);
    }
  }
});
