/**
 * The pure middle of the consumer: fetched messages become ticket rows, cancellations and dead
 * letters, with no I/O, so it is tested without a broker or a database.
 * @module
 */
import type { KafkaMessage } from "kafkajs";
import type { DeadLetter, IncomingCancel, IncomingRow } from "./sink.ts";
import type { ParseResult } from "../model/ticket.ts";
import { type MessageParseResult, messageTicketId, parseMessage } from "../model/message.ts";

const keyDecoder = new TextDecoder();

/** A message refused for its key. */
type BadKey = { ok: false; reason: "BAD_KEY"; detail: string };

/**
 * Tickets are keyed by their ticket_id (so one ticket always lands in one partition, its
 * cancellation after its purchase): a purchase or cancellation whose key is missing or different
 * is refused as BAD_KEY.
 */
export function checkKey<P extends ParseResult | MessageParseResult>(
  parsed: P,
  key: Uint8Array | null | undefined,
): P | BadKey {
  if (!parsed.ok) return parsed;
  if (!key || key.length === 0) {
    return {
      ok: false,
      reason: "BAD_KEY",
      detail: "message key is null; producers must key tickets by ticket_id",
    };
  }
  const text = keyDecoder.decode(key);
  const id = "ticket" in parsed ? parsed.ticket.ticket_id : messageTicketId(parsed.message);
  if (text !== id) {
    return {
      ok: false,
      reason: "BAD_KEY",
      detail: `message key ${JSON.stringify(text.slice(0, 64))} is not the ticket_id`,
    };
  }
  return parsed;
}

/**
 * The latest publish time kept: 9999-12-31T23:59:59.999Z. Later ones are written by
 * `toISOString` with a six-digit year (`+010000-...`), which PostgreSQL does not read.
 */
const MAX_TIME_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/**
 * The publish time of a message from its Kafka timestamp, or undefined when it has none (-1) or
 * an impossible one: a producer sets it, and a bad one must not stop the pipeline.
 */
export function publishTime(timestamp: string): Date | undefined {
  const ms = Number(timestamp);
  return Number.isSafeInteger(ms) && ms >= 0 && ms <= MAX_TIME_MS ? new Date(ms) : undefined;
}

/**
 * Splits fetched messages into parsed purchases (rows), cancellations and dead letters, each list
 * in offset order (pure: no I/O).
 */
export function toRowsAndLetters(
  messages: KafkaMessage[],
  maxBytes: number,
): { rows: IncomingRow[]; cancels: IncomingCancel[]; deadLetters: DeadLetter[] } {
  const rows: IncomingRow[] = [];
  const cancels: IncomingCancel[] = [];
  const deadLetters: DeadLetter[] = [];
  for (const m of messages) {
    const parsed = checkKey(parseMessage(m.value, maxBytes), m.key);
    if (!parsed.ok) {
      deadLetters.push({
        offset: m.offset,
        key: m.key ?? null,
        value: m.value ?? null,
        reason: parsed.reason,
        detail: parsed.detail,
      });
    } else if (parsed.message.type === "cancel") {
      cancels.push({
        cancel: parsed.message,
        offset: m.offset,
        value: m.value!,
        key: m.key ?? null,
      });
    } else {
      rows.push({
        ticket: parsed.message.ticket,
        offset: m.offset,
        value: m.value!,
        key: m.key ?? null,
        publishedAt: publishTime(m.timestamp),
      });
    }
  }
  return { rows, cancels, deadLetters };
}
