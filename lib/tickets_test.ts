import assert from "node:assert/strict";
import {
  encodeTicket,
  MAX_SEATS,
  parseTicket,
  type RejectReason,
  TicketGenerator,
} from "./tickets.ts";

interface BadCase {
  name: string;
  text?: string;
  base64?: string;
  omit?: string;
  patch?: Record<string, unknown>;
  pad?: number;
  reason: RejectReason;
}

const fixture = JSON.parse(
  Deno.readTextFileSync(new URL("../fixtures/bad_messages.json", import.meta.url)),
) as { cases: BadCase[] };

function bytesOf(c: BadCase): Uint8Array {
  if (c.text !== undefined) return new TextEncoder().encode(c.text);
  if (c.base64 !== undefined) return Uint8Array.from(atob(c.base64), (ch) => ch.charCodeAt(0));
  const ticket: Record<string, unknown> = { ...new TicketGenerator({ seed: 1 }).next() };
  if (c.omit) delete ticket[c.omit];
  Object.assign(ticket, c.patch ?? {});
  if (c.pad) ticket.padding = "x".repeat(c.pad);
  return new TextEncoder().encode(JSON.stringify(ticket));
}

for (const c of fixture.cases) {
  Deno.test(`parseTicket() rejects ${c.name} with ${c.reason}`, () => {
    const result = parseTicket(bytesOf(c));
    assert.equal(result.ok, false);
    if (!result.ok) {
      assert.equal(result.reason, c.reason, result.detail);
      assert.ok(result.detail.length > 0);
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
  const movies = Deno.readTextFileSync(new URL("../fixtures/movies.txt", import.meta.url));
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
