/**
 * The messages of a ticket topic: a purchase (the ticket of ticket.ts, with `"type": "purchase"`
 * or no `type` at all, so topics written before cancellations still read the same) or a
 * cancellation of a purchased ticket. Both are keyed by `ticket_id`, so a cancellation follows its
 * purchase in the same partition. A cancellation's fields are checked by the same value rules as
 * the ticket's (see {@linkcode CANCEL_COLUMNS}).
 * @module
 */
import {
  columnIndex,
  kindOf,
  type RejectReason,
  shownText,
  type Ticket,
  TICKET_COLUMNS,
  type TicketColumn,
  timeColumn,
} from "./columns.ts";
import { decodeObject, MAX_TICKET_BYTES, validateTicket } from "./ticket.ts";
import { printable } from "./values.ts";

/** What a message does: sell a ticket, or cancel one sold before. */
export type MessageType = "purchase" | "cancel";

/** Every message type, as the `type` field names it. */
export const MESSAGE_TYPES: readonly MessageType[] = ["purchase", "cancel"];

/** A purchase: the ticket sold. */
export interface Purchase {
  type: "purchase";
  ticket: Ticket;
}

/** A cancellation of a purchased ticket, as published to Kafka (JSON). */
export interface Cancel {
  type: "cancel";
  /** The ticket cancelled (and the message key): the ticket_id rule of the column spec. */
  ticket_id: string;
  /** ISO 8601 time of the cancellation, with a zone (the rule of the ticket's times). */
  cancelled_at: string;
  /** Why: 1-200 characters (at most 600 UTF-8 bytes), not blank, no NUL. */
  reason: string;
}

/** A message of a ticket topic. */
export type Message = Purchase | Cancel;

/** Where a stored ticket stands: sold, or cancelled (its seats free, its payment refunded). */
export type TicketStatus = "purchased" | "cancelled";

/** Every ticket status, as the ticket table's `status` column holds it. */
export const TICKET_STATUSES: readonly TicketStatus[] = ["purchased", "cancelled"];

/**
 * Dead-letter reason of a cancellation whose ticket was never stored (the sink decides it, in
 * offset order: a cancellation before its purchase is one too).
 */
export const UNKNOWN_TICKET = "UNKNOWN_TICKET";

/**
 * The fields of a cancellation and the ticket-table columns that keep them: the ticket_id column
 * of the ticket itself (the row cancelled), then `cancelled_at` and `reason` (column
 * `cancel_reason`), which a purchased ticket leaves NULL. The checks are the ticket's own rules.
 */
export const CANCEL_COLUMNS: readonly TicketColumn[] = [
  TICKET_COLUMNS[columnIndex("ticket_id")]!,
  { ...timeColumn("cancelled_at"), pg: "timestamptz" },
  { ...shownText("cancel_reason"), field: "reason", pg: "text" },
];

/** The columns a cancellation adds to the ticket table (the DDL's lines; NULL until cancelled). */
export function cancelColumnsDdl(): string[] {
  return CANCEL_COLUMNS.slice(1).map((c) => `${c.column} ${c.pg}`);
}

/** Result of {@linkcode parseMessage}. */
export type MessageParseResult =
  | { ok: true; message: Message }
  | { ok: false; reason: RejectReason; detail: string };

/** Result of {@linkcode validateCancel}. */
export type CancelParseResult =
  | { ok: true; cancel: Cancel }
  | { ok: false; reason: RejectReason; detail: string };

/**
 * Parses one Kafka message value into a purchase or a cancellation, or gives the reason it is
 * neither: the reasons of `parseTicket`, plus WRONG_TYPE for a `type` that is not a string and
 * UNKNOWN_TYPE for one that names no message type.
 */
export function parseMessage(
  bytes: Uint8Array | null | undefined,
  maxBytes = MAX_TICKET_BYTES,
): MessageParseResult {
  const decoded = decodeObject(bytes, maxBytes);
  if (!decoded.ok) return decoded;
  const o = decoded.object;
  const type = o.type;
  if (type === undefined || type === "purchase") {
    const parsed = validateTicket(o);
    return parsed.ok ? { ok: true, message: { type: "purchase", ticket: parsed.ticket } } : parsed;
  }
  if (type === "cancel") {
    const parsed = validateCancel(o);
    return parsed.ok ? { ok: true, message: parsed.cancel } : parsed;
  }
  if (typeof type !== "string") {
    return {
      ok: false,
      reason: "WRONG_TYPE",
      detail: `type must be a string, got ${kindOf(type)}`,
    };
  }
  return {
    ok: false,
    reason: "UNKNOWN_TYPE",
    detail: `type "${printable(type, 40)}" is not one of ${MESSAGE_TYPES.join(", ")}`,
  };
}

/**
 * Checks a decoded JSON object as a cancellation, field by field: every field present, a string,
 * and passing its column's check. Extra fields are ignored, as a ticket's are.
 */
export function validateCancel(o: Record<string, unknown>): CancelParseResult {
  for (const column of CANCEL_COLUMNS) {
    if (o[column.field] === undefined) {
      return { ok: false, reason: "MISSING_FIELD", detail: `missing field ${column.field}` };
    }
  }
  for (const column of CANCEL_COLUMNS) {
    const value = o[column.field];
    if (typeof value !== "string") {
      return {
        ok: false,
        reason: "WRONG_TYPE",
        detail: `${column.field} must be a string, got ${kindOf(value)}`,
      };
    }
    const refusal = column.check(value as never);
    if (refusal !== undefined) {
      return typeof refusal === "string"
        ? { ok: false, reason: "BAD_VALUE", detail: refusal }
        : { ok: false, ...refusal };
    }
  }
  return {
    ok: true,
    cancel: {
      type: "cancel",
      ticket_id: o.ticket_id as string,
      cancelled_at: o.cancelled_at as string,
      reason: o.reason as string,
    },
  };
}

/** The ticket a message is about (and its key). */
export function messageTicketId(message: Message): string {
  return message.type === "cancel" ? message.ticket_id : message.ticket.ticket_id;
}

const encoder = new TextEncoder();

/** The JSON bytes of a cancellation, as published (keyed by its ticket_id). */
export function encodeCancel(cancel: Omit<Cancel, "type">): Uint8Array {
  const { ticket_id, cancelled_at, reason } = cancel;
  return encoder.encode(JSON.stringify({ type: "cancel", ticket_id, cancelled_at, reason }));
}

/**
 * The JSON bytes of a message: a purchase is its ticket as `encodeTicket` writes it (no `type`
 * field, the bytes of topics written before cancellations), a cancellation as `encodeCancel`.
 */
export function encodeMessage(message: Message): Uint8Array {
  return message.type === "cancel"
    ? encodeCancel(message)
    : encoder.encode(JSON.stringify(message.ticket));
}
