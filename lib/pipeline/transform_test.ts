import assert from "node:assert/strict";
import type { KafkaMessage } from "kafkajs";
import { checkKey, publishTime, toRowsAndLetters } from "./transform.ts";
import { TicketGenerator } from "../model/generator.ts";
import { encodeTicket, parseTicket } from "../model/ticket.ts";
import { encodeCancel } from "../model/message.ts";

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

Deno.test("toRowsAndLetters() puts cancellations apart, in offset order, keyed by their ticket_id", () => {
  const t = new TicketGenerator({ seed: 5 }).next();
  const cancel = { ticket_id: t.ticket_id, cancelled_at: "2026-05-01T10:00:00Z", reason: "ill" };
  const message = (offset: number, key: string, value: Uint8Array) =>
    ({
      offset: String(offset),
      key: new TextEncoder().encode(key),
      value,
      timestamp: "1767225600000",
    }) as unknown as KafkaMessage;
  const { rows, cancels, deadLetters } = toRowsAndLetters([
    message(0, t.ticket_id, encodeTicket(t)),
    message(1, t.ticket_id, encodeCancel(cancel)),
    message(2, "other", encodeCancel(cancel)),
    message(3, t.ticket_id, new TextEncoder().encode(JSON.stringify({ ...cancel, type: "x" }))),
    message(4, t.ticket_id, encodeCancel({ ...cancel, cancelled_at: "soon" })),
  ], 65536);
  assert.deepEqual(rows.map((r) => r.offset), ["0"]);
  assert.deepEqual(cancels.map((c) => [c.offset, c.cancel]), [["1", {
    type: "cancel",
    ...cancel,
  }]]);
  assert.deepEqual(deadLetters.map((d) => [d.offset, d.reason]), [
    ["2", "BAD_KEY"],
    ["3", "UNKNOWN_TYPE"],
    ["4", "BAD_VALUE"],
  ]);
  assert.match(deadLetters[2]!.detail, /^cancelled_at must be an ISO 8601 time/);
});
