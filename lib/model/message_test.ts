import assert from "node:assert/strict";
import { TicketGenerator } from "./generator.ts";
import {
  type Cancel,
  cancelColumnsDdl,
  encodeCancel,
  encodeMessage,
  messageTicketId,
  parseMessage,
  validateCancel,
} from "./message.ts";
import { encodeTicket } from "./ticket.ts";
import { printable } from "./values.ts";

const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
const cancel: Cancel = {
  type: "cancel",
  ticket_id: "t-1",
  cancelled_at: "2026-05-01T18:00:00.123456+02:00",
  reason: "customer asked",
};

Deno.test("parseMessage() reads a ticket without type, or with type purchase, as a purchase", () => {
  const t = new TicketGenerator({ seed: 1 }).next();
  for (const bytes of [encodeTicket(t), encode({ type: "purchase", ...t })]) {
    const parsed = parseMessage(bytes);
    assert.ok(parsed.ok);
    assert.deepEqual(parsed.message, { type: "purchase", ticket: t });
    assert.equal(messageTicketId(parsed.message), t.ticket_id);
  }
});

Deno.test("parseMessage() reads a cancellation and encodeCancel() round-trips it", () => {
  const parsed = parseMessage(encodeCancel(cancel));
  assert.deepEqual(parsed, { ok: true, message: cancel });
  assert.deepEqual(parseMessage(encodeMessage(cancel)), parsed);
  if (parsed.ok) assert.equal(messageTicketId(parsed.message), "t-1");
  // extra fields are ignored, as a ticket's are
  assert.deepEqual(parseMessage(encode({ ...cancel, note: 1 })), parsed);
});

Deno.test("encodeMessage() writes a purchase as the bytes of encodeTicket()", () => {
  const t = new TicketGenerator({ seed: 2 }).next();
  assert.deepEqual(encodeMessage({ type: "purchase", ticket: t }), encodeTicket(t));
});

Deno.test("parseMessage() refuses a bad cancellation with the reason and a clear detail", () => {
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [{ ...cancel, ticket_id: undefined }, "MISSING_FIELD", /missing field ticket_id/],
    [{ ...cancel, cancelled_at: undefined }, "MISSING_FIELD", /missing field cancelled_at/],
    [{ ...cancel, reason: undefined }, "MISSING_FIELD", /missing field reason/],
    [{ ...cancel, ticket_id: 7 }, "WRONG_TYPE", /ticket_id must be a string, got number/],
    [{ ...cancel, reason: null }, "WRONG_TYPE", /reason must be a string, got null/],
    [{ ...cancel, reason: ["x"] }, "WRONG_TYPE", /reason must be a string, got array/],
    [{ ...cancel, ticket_id: "a b" }, "BAD_VALUE", /ticket_id must be 1-64 letters/],
    [{ ...cancel, cancelled_at: "2026-02-30T10:00:00Z" }, "BAD_VALUE", /cancelled_at has day 30/],
    [{ ...cancel, cancelled_at: "yesterday" }, "BAD_VALUE", /cancelled_at must be an ISO 8601/],
    [{ ...cancel, reason: "  " }, "BAD_VALUE", /cancel_reason must not be empty or blank/],
    [{ ...cancel, reason: "a\u0000b" }, "BAD_VALUE", /NUL/],
    [{ ...cancel, reason: "x".repeat(201) }, "BAD_VALUE", /201 characters/],
    [{ ...cancel, type: "refund" }, "UNKNOWN_TYPE", /type "refund" is not one of purchase, cancel/],
    [{ ...cancel, type: 1 }, "WRONG_TYPE", /type must be a string, got number/],
  ];
  for (const [value, reason, detail] of cases) {
    const parsed = parseMessage(encode(value));
    assert.equal(parsed.ok, false, JSON.stringify(value));
    if (parsed.ok) continue;
    assert.equal(parsed.reason, reason, parsed.detail);
    assert.match(parsed.detail, detail);
    assert.equal(printable(parsed.detail, Infinity), parsed.detail);
  }
  // the ticket's decoding reasons come first
  assert.equal((parseMessage(new Uint8Array([0xff])) as { reason: string }).reason, "BAD_UTF8");
  assert.equal((parseMessage(null) as { reason: string }).reason, "EMPTY");
  assert.equal((parseMessage(encode([cancel])) as { reason: string }).reason, "NOT_OBJECT");
});

Deno.test("parseMessage() checks a purchase with an explicit type as strictly as a ticket", () => {
  const t = new TicketGenerator({ seed: 3 }).next();
  const parsed = parseMessage(encode({ type: "purchase", ...t, seats: [] }));
  assert.equal(parsed.ok ? "ok" : parsed.reason, "BAD_SEAT");
});

Deno.test("validateCancel() keeps only the cancellation's fields", () => {
  const result = validateCancel({ ...cancel, extra: true });
  assert.deepEqual(result, { ok: true, cancel });
});

Deno.test("cancelColumnsDdl() gives nullable columns for the ticket table", () => {
  assert.deepEqual(cancelColumnsDdl(), ["cancelled_at timestamptz", "cancel_reason text"]);
});
