import assert from "node:assert/strict";
import fc from "fast-check";
import { consumerApplicationName, formatConsumerSummary } from "./consumer.ts";
import { storedApplicationName } from "../postgres/postgres.ts";

Deno.test("formatConsumerSummary() names cancellations, fenced batches, refusals by reason and lost messages", () => {
  const line = formatConsumerSummary({
    received: 10,
    stored: 6,
    duplicates: 1,
    conflicts: 0,
    deadLetters: 4,
    seatTaken: 1,
    cancelled: 4,
    unknownTicket: 1,
    rejected: 2,
    lost: 5,
    fenced: 1,
    seconds: 2,
    activeSeconds: 1,
  });
  assert.equal(
    line,
    "consumed 10 messages in 1.00 s of work (10 tickets/s): stored 6, cancelled 4, duplicates 1, " +
      "conflicts 0, dead letters 4 (1 SEAT_TAKEN, 1 UNKNOWN_TICKET, 2 DB_REJECTED), fenced 1, " +
      "lost before read 5",
  );
});

Deno.test("formatConsumerSummary() leaves out cancelled when no cancellation was applied", () => {
  const line = formatConsumerSummary({
    received: 2,
    stored: 2,
    duplicates: 0,
    conflicts: 0,
    deadLetters: 0,
    seatTaken: 0,
    cancelled: 0,
    unknownTicket: 0,
    rejected: 0,
    lost: 0,
    fenced: 0,
    seconds: 1,
    activeSeconds: 1,
  });
  assert.match(line, /: stored 2, duplicates 0, conflicts 0, dead letters 0, fenced 0$/);
});

Deno.test("consumerApplicationName(): a name PostgreSQL keeps whole, the group's id when it fits, and never the same for two groups", () => {
  assert.equal(
    consumerApplicationName("tickets-sink-public-t"),
    "tickets-consumer tickets-sink-public-t",
  );
  const shared = "g".repeat(60);
  assert.notEqual(consumerApplicationName(`${shared}a`), consumerApplicationName(`${shared}b`));
  fc.assert(
    fc.property(
      fc.string({ unit: "binary", minLength: 1, maxLength: 200 }),
      fc.string({ unit: "binary", minLength: 1, maxLength: 200 }),
      (a, b) => {
        const [na, nb] = [consumerApplicationName(a), consumerApplicationName(b)];
        assert.equal(storedApplicationName(na), na, "PostgreSQL would cut it");
        if (a !== b) assert.notEqual(na, nb);
      },
    ),
    { numRuns: 2000 },
  );
});
