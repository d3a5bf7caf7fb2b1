import assert from "node:assert/strict";
import type { KafkaMessage } from "kafkajs";
import { checkKey, publishTime, toRowsAndLetters } from "./transform.ts";
import { TicketGenerator } from "../model/generator.ts";
import { encodeTicket, parseTicket } from "../model/ticket.ts";

Deno.test("publishTime() keeps a Kafka timestamp PostgreSQL can store and drops the others", () => {
  assert.equal(publishTime("1767225600000")?.toISOString(), "2026-01-01T00:00:00.000Z");
  assert.equal(publishTime("0")?.getTime(), 0);
  assert.equal(publishTime("253402300799999")?.toISOString(), "9999-12-31T23:59:59.999Z");
  for (const bad of ["-1", "-5", "253402300800000", "8640000000000000", "1e400", "abc", "1.5"]) {
    assert.equal(publishTime(bad), undefined, bad);
  }
});

Deno.test("toRowsAndLetters() turns every message into exactly one row or one dead letter", () => {
  const gen = new TicketGenerator({ seed: 3 });
  const t = gen.next();
  const message = (offset: number, key: string | null, value: Uint8Array | null) =>
    ({
      offset: String(offset),
      key: key === null ? null : new TextEncoder().encode(key),
      value,
      timestamp: offset === 2 ? "-1" : "1767225600000",
    }) as unknown as KafkaMessage;
  const { rows, deadLetters } = toRowsAndLetters([
    message(0, t.ticket_id, encodeTicket(t)),
    message(1, "other", encodeTicket(gen.next())),
    message(2, null, new Uint8Array([0])),
  ], 65536);
  assert.deepEqual(rows.map((r) => [r.offset, r.ticket.ticket_id]), [["0", t.ticket_id]]);
  assert.equal(rows[0]!.publishedAt?.getTime(), 1767225600000);
  assert.deepEqual(deadLetters.map((d) => [d.offset, d.reason]), [["1", "BAD_KEY"], [
    "2",
    "BAD_JSON",
  ]]);
});

Deno.test("checkKey() refuses a ticket keyed by something else than its ticket_id", () => {
  const t = new TicketGenerator({ seed: 4 }).next();
  const parsed = parseTicket(encodeTicket(t));
  assert.equal(checkKey(parsed, new TextEncoder().encode(t.ticket_id)).ok, true);
  assert.equal(checkKey(parsed, null).ok, false);
  assert.equal(checkKey(parsed, new TextEncoder().encode("x")).ok, false);
});
