import assert from "node:assert/strict";
import { TicketGenerator } from "./generator.ts";
import { parseMessage } from "./message.ts";
import {
  applyVariant,
  fixtureKinds,
  makeFixturePoison,
  poisonKindNames,
  RUN_KINDS,
  seatClashTicket,
} from "./poison.ts";
import { seededRandom } from "./random.ts";
import { MAX_TICKET_BYTES, parseTicket } from "./ticket.ts";

Deno.test("the kinds cover every kind of bad data the producer promises", () => {
  assert.deepEqual(poisonKindNames(), [
    "bad-json",
    "bad-utf8",
    "empty",
    "wrong-type",
    "missing-field",
    "bad-email",
    "bad-seat",
    "impossible-date",
    "nul-in-text",
    "oversized",
    "wrong-key",
    "seat-clash",
    "unknown-cancel",
    "double-cancel",
  ]);
  for (const kind of fixtureKinds()) assert.ok(kind.variants.length > 0, kind.name);
});

Deno.test("each variant gives its kind's reason when parsed (wrong key aside: the key decides)", () => {
  const gen = new TicketGenerator({ seed: 3 });
  for (const kind of fixtureKinds()) {
    for (const variant of kind.variants) {
      for (let i = 0; i < 20; i++) {
        const ticket = gen.next();
        const m = applyVariant(variant, ticket);
        const bytes = typeof m.value === "string" ? new TextEncoder().encode(m.value) : m.value;
        const parsed = parseMessage(bytes);
        if (kind.reason === "BAD_KEY") {
          assert.ok(parsed.ok, `${kind.name}: the value is a valid ticket`);
          assert.notEqual(m.key, ticket.ticket_id);
        } else {
          assert.equal(parsed.ok ? "ok" : parsed.reason, kind.reason, JSON.stringify(variant));
        }
      }
    }
  }
});

Deno.test("oversized messages are over the consumer's default limit, and only just", () => {
  const gen = new TicketGenerator({ seed: 4 });
  const kind = fixtureKinds().find((k) => k.name === "oversized")!;
  const m = makeFixturePoison(kind, gen.next(), seededRandom(1));
  const size = new TextEncoder().encode(m.value as string).length;
  assert.ok(size > MAX_TICKET_BYTES && size < 2 * MAX_TICKET_BYTES, String(size));
});

Deno.test("same random source, same poison", () => {
  const make = () => {
    const gen = new TicketGenerator({ seed: 9 });
    const random = seededRandom(9, 1);
    return fixtureKinds().map((k) => JSON.stringify(makeFixturePoison(k, gen.next(), random)));
  };
  assert.deepEqual(make(), make());
});

Deno.test("a seat clash is a valid ticket for the sold seat, under a new id", () => {
  const gen = new TicketGenerator({ seed: 5 });
  const sold = gen.next();
  const clash = seatClashTicket(
    { ...sold, seat: sold.seats[0]!, partition: 0 },
    gen.next(),
    "another-id",
  );
  const parsed = parseTicket(new TextEncoder().encode(JSON.stringify(clash)));
  assert.ok(parsed.ok);
  assert.deepEqual(
    [clash.theater, clash.movie, clash.showtime, clash.seats],
    [sold.theater, sold.movie, sold.showtime, [sold.seats[0]]],
  );
  assert.equal(clash.ticket_id, "another-id");
  assert.equal(RUN_KINDS.seatClash.expect.reason, "SEAT_TAKEN");
});
