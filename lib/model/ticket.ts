/**
 * From Kafka bytes to a ticket, or the precise reason they are not one; and back. The checks are
 * the columns' own (see columns.ts), so the parser accepts exactly what the table stores as it
 * is.
 * @module
 */
import {
  kindOf,
  type RejectReason,
  type Ticket,
  TICKET_COLUMNS,
  type TicketColumn,
} from "./columns.ts";
import { printable } from "./values.ts";

export type { RejectReason, Ticket } from "./columns.ts";

/** Result of {@linkcode parseTicket}. */
export type ParseResult =
  | { ok: true; ticket: Ticket }
  | { ok: false; reason: RejectReason; detail: string };

/** Largest accepted message, in bytes. @default {65536} */
export const MAX_TICKET_BYTES = 64 * 1024;

const decoder = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

function fail(
  reason: RejectReason,
  detail: string,
): { ok: false; reason: RejectReason; detail: string } {
  return { ok: false, reason, detail };
}

/**
 * Parses one Kafka message value into a ticket, or gives the reason it is not one. Unknown extra
 * fields are ignored (a newer producer may add some); known fields are checked strictly.
 */
export function parseTicket(
  bytes: Uint8Array | null | undefined,
  maxBytes = MAX_TICKET_BYTES,
): ParseResult {
  const decoded = decodeObject(bytes, maxBytes);
  return decoded.ok ? validateTicket(decoded.object) : decoded;
}

/** Result of {@linkcode decodeObject}. */
export type DecodeResult =
  | { ok: true; object: Record<string, unknown> }
  | { ok: false; reason: RejectReason; detail: string };

/**
 * Decodes a message value into a JSON object, or gives the reason it is not one: no value
 * (EMPTY), over `maxBytes` (TOO_LARGE), not UTF-8, not JSON, or not an object.
 */
export function decodeObject(
  bytes: Uint8Array | null | undefined,
  maxBytes = MAX_TICKET_BYTES,
): DecodeResult {
  if (!bytes || bytes.length === 0) return fail("EMPTY", "message has no value");
  if (bytes.length > maxBytes) {
    return fail("TOO_LARGE", `message is ${bytes.length} bytes; the limit is ${maxBytes}`);
  }
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch {
    return fail("BAD_UTF8", "message is not valid UTF-8");
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    // the error quotes the text, which may hold a NUL
    return fail("BAD_JSON", `not JSON: ${printable((error as Error).message)}`);
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    return fail("NOT_OBJECT", `expected a JSON object, got ${kindOf(data)}`);
  }
  return { ok: true, object: data as Record<string, unknown> };
}

/** The top-level fields of a ticket, each checked for presence before any value. */
const TOP_FIELDS = [...new Set(TICKET_COLUMNS.map((c) => c.field.split(".")[0]!))];

/** True when `value` has the JSON type a column wants. */
function hasType(column: TicketColumn, value: unknown): boolean {
  switch (column.json) {
    case "string[]":
      return Array.isArray(value);
    case "string":
      return typeof value === "string";
    case "number":
      return typeof value === "number";
  }
}

/** Each column with its field's path split once (this runs for every message). */
const FIELDS = TICKET_COLUMNS.map((column) => {
  const [outer, inner] = column.field.split(".") as [string, string | undefined];
  return { column, outer, inner };
});

/**
 * Checks a decoded JSON object column by column: every field present, of its JSON type, and
 * passing its column's check, which accepts only what PostgreSQL stores as it is.
 */
export function validateTicket(o: Record<string, unknown>): ParseResult {
  for (const field of TOP_FIELDS) {
    if (o[field] === undefined) return fail("MISSING_FIELD", `missing field ${field}`);
  }
  for (const { column, outer, inner } of FIELDS) {
    let value = o[outer];
    if (inner !== undefined) {
      if (typeof value !== "object" || value === null || Array.isArray(value)) {
        return fail("WRONG_TYPE", `${outer} must be an object, got ${kindOf(value)}`);
      }
      value = (value as Record<string, unknown>)[inner];
    }
    if (!hasType(column, value)) {
      const want = column.json === "string[]" ? "an array" : `a ${column.json}`;
      return fail("WRONG_TYPE", `${column.field} must be ${want}, got ${kindOf(value)}`);
    }
    const refusal = column.check(value as never);
    if (refusal !== undefined) {
      return typeof refusal === "string"
        ? fail("BAD_VALUE", refusal)
        : fail(refusal.reason, refusal.detail);
    }
  }
  // a copy of the known fields only, in the columns' order (extra fields are dropped)
  const ticket: Record<string, unknown> = {};
  for (const { outer, inner } of FIELDS) {
    if (inner === undefined) ticket[outer] = o[outer];
    else {
      ((ticket[outer] ??= {}) as Record<string, unknown>)[inner] =
        (o[outer] as Record<string, unknown>)[inner];
    }
  }
  return { ok: true, ticket: ticket as unknown as Ticket };
}

/** The JSON bytes of a ticket, as published. */
export function encodeTicket(ticket: Ticket): Uint8Array {
  return encoder.encode(JSON.stringify(ticket));
}
