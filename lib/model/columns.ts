/**
 * The ticket, declared once. Each entry of {@linkcode TICKET_COLUMNS} names a field of the JSON
 * message and the column that stores it, with its PostgreSQL type, the rule a value must pass to
 * be stored as it is, its text for COPY and query parameters, the SQL that reads it back and the
 * equality of a stored value with a message's. The parser, the DDL, the COPY line, the insert's
 * parameters, the SELECT of stored tickets and the one equality rule are all derived from it:
 * a new column is one entry here (plus, for existing tables, a line in the schema's migrations).
 * @module
 */
import { Buffer } from "node:buffer";
import {
  isWholeCents,
  MAX_EMAIL_BYTES,
  MAX_PRICE_CENTS,
  MAX_TEXT_BYTES,
  MAX_TEXT_CHARS,
  measure,
  moneyCents,
  printable,
  readIsoTime,
  textProblem,
} from "./values.ts";
import { md5Uuid } from "./md5.ts";

/** A sold movie ticket, as published to Kafka (JSON). */
export interface Ticket {
  /** Unique id: a UUID for generated tickets; any 1-64 letters, digits, `-` or `_`. */
  ticket_id: string;
  /** Theater, movie and name: 1-200 characters (at most 600 UTF-8 bytes), not blank, no NUL. */
  theater: string;
  movie: string;
  name: string;
  /** At most 254 UTF-8 bytes, no NUL. */
  email: string;
  phone_number: string;
  /** Distinct seat labels such as `G8`, 1 to 8 of them. */
  seats: string[];
  /** ISO 8601 start of the show with a zone: a real date of 0001-9999, to the microsecond. */
  showtime: string;
  /** Whole cents (float noise aside) from 0 to 9999999999.99, as numeric(12,2) stores them. */
  price: { amount: number; currency: string };
  /** ISO 8601 time of purchase, as `showtime`. */
  purchased_at: string;
}

/** Why bytes are not a ticket. */
export type RejectReason =
  | "EMPTY"
  | "TOO_LARGE"
  | "BAD_UTF8"
  | "BAD_JSON"
  | "NOT_OBJECT"
  | "MISSING_FIELD"
  | "WRONG_TYPE"
  | "BAD_VALUE"
  | "BAD_EMAIL"
  | "BAD_SEAT"
  | "UNKNOWN_TYPE";

/** A value a column refuses: why (BAD_VALUE unless said) and what to tell the producer. */
export type Refusal = string | { reason: RejectReason; detail: string };

/** Most seats on one ticket. */
export const MAX_SEATS = 8;

/** The JSON type of a field. */
export type JsonType = "string" | "number" | "string[]";

/** One field of the message and the column that stores it. */
export interface TicketColumn {
  /** Column of the ticket table. */
  column: string;
  /** The field in the message, a dotted path for nested ones (`price.amount`). */
  field: string;
  /** The column's type in the DDL, constraints included. */
  pg: string;
  /** Element type of the column's query-parameter arrays (`unnest($1::text[])`). */
  array: string;
  /** The JSON type the field must have (WRONG_TYPE otherwise). */
  json: JsonType;
  /** Why a value of the right JSON type cannot be stored as it is; undefined when it can. */
  check(value: never): Refusal | undefined;
  /** The value as PostgreSQL reads it (COPY text before escaping, or a query parameter). */
  text(value: never): string;
  /** SQL that reads the stored value back as text (named as the column), exactly. */
  select: string;
  /** The text `select` gives for a stored message value: the one equality rule compares these. */
  stored(value: never): string;
}

/** A column whose value is a plain string compared as it is. */
function textColumn(
  column: string,
  pg: string,
  check: (value: string) => Refusal | undefined,
): TicketColumn {
  return {
    column,
    field: column,
    pg,
    array: "text",
    json: "string",
    check,
    text: (value: string) => value,
    select: column,
    stored: (value: string) => value,
  };
}

/** A timestamptz column: read back in microseconds, the unit it stores. */
export function timeColumn(column: string): TicketColumn {
  return {
    column,
    field: column,
    pg: "timestamptz NOT NULL",
    array: "timestamptz",
    json: "string",
    check: (value: string) => {
      const time = readIsoTime(value);
      return typeof time === "string"
        ? `${column} ${time}, not "${printable(value, 40)}"`
        : undefined;
    },
    text: (value: string) => value,
    // exact: extract() gives numeric since PostgreSQL 14
    select: `(extract(epoch FROM ${column}) * 1000000)::int8::text AS ${column}`,
    stored: microsText,
  };
}

/** Theater, movie and name: shown text, bounded in bytes so that an index on them fits. */
export function shownText(column: string): TicketColumn {
  return textColumn(column, "text NOT NULL", (value) => {
    const problem = textProblem(value);
    if (problem) return `${column} ${problem}`;
    if (value.trim().length === 0) return `${column} must not be empty or blank`;
    const { chars, bytes } = measure(value);
    if (chars > MAX_TEXT_CHARS || bytes > MAX_TEXT_BYTES) {
      return `${column} has ${chars} characters (${bytes} bytes in UTF-8); the limit is ` +
        `${MAX_TEXT_CHARS} characters and ${MAX_TEXT_BYTES} bytes`;
    }
    return undefined;
  });
}

const TICKET_ID = /^[A-Za-z0-9_-]{1,64}$/;
const EMAIL = /^[^\s@]{1,64}@[^\s@]+\.[^\s@]{2,}$/;
const PHONE = /^[0-9+().\-x ]{3,40}$/;
const SEAT = /^[A-Z]{1,2}[1-9][0-9]{0,2}$/;
const CURRENCY = /^[A-Z]{3}$/;

const badEmail = (detail: string): Refusal => ({ reason: "BAD_EMAIL", detail });
const badSeat = (detail: string): Refusal => ({ reason: "BAD_SEAT", detail });

/** Money as numeric(12,2) text: whole cents, from the one rounding rule (`moneyCents`). */
function centsText(amount: number): string {
  const cents = moneyCents(amount);
  return `${Math.trunc(cents / 100)}.${String(cents % 100).padStart(2, "0")}`;
}

/** The ticket's columns, in the table's order. */
export const TICKET_COLUMNS: readonly TicketColumn[] = [
  textColumn(
    "ticket_id",
    'text COLLATE "C" PRIMARY KEY',
    (value) => TICKET_ID.test(value) ? undefined : "ticket_id must be 1-64 letters, digits, - or _",
  ),
  shownText("theater"),
  shownText("movie"),
  shownText("name"),
  textColumn("email", "text NOT NULL", (value) => {
    const problem = textProblem(value);
    if (problem) return badEmail(`email ${problem}`);
    const bytes = measure(value).bytes;
    if (bytes > MAX_EMAIL_BYTES) {
      return badEmail(`email has ${bytes} bytes; the limit is ${MAX_EMAIL_BYTES}`);
    }
    return EMAIL.test(value)
      ? undefined
      : badEmail(`email "${printable(value, 80)}" is not an e-mail address`);
  }),
  textColumn(
    "phone_number",
    "text NOT NULL",
    (value) =>
      PHONE.test(value) ? undefined : "phone_number must be 3-40 digits, spaces or + ( ) . - x",
  ),
  {
    column: "seats",
    field: "seats",
    pg: "text NOT NULL",
    array: "text",
    json: "string[]",
    check: (seats: unknown[]) => {
      if (seats.length < 1 || seats.length > MAX_SEATS) {
        return badSeat(`a ticket has 1 to ${MAX_SEATS} seats, not ${seats.length}`);
      }
      for (let i = 0; i < seats.length; i++) {
        const seat = seats[i];
        if (typeof seat !== "string" || !SEAT.test(seat)) {
          return badSeat(
            `seat ${printable(JSON.stringify(seat) ?? kindOf(seat), 20)} is not a label such as G8`,
          );
        }
        // at most MAX_SEATS (8): a scan costs less than a Set made for every ticket
        for (let j = 0; j < i; j++) {
          if (seats[j] === seat) return badSeat(`seat ${seat} appears twice`);
        }
      }
      return undefined;
    },
    text: (seats: string[]) => seats.join(","),
    select: "seats",
    stored: (seats: string[]) => seats.join(","),
  },
  timeColumn("showtime"),
  {
    column: "price_amount",
    field: "price.amount",
    pg: "numeric(12,2) NOT NULL",
    array: "numeric",
    json: "number",
    check: (amount: number) => {
      if (!Number.isFinite(amount) || amount < 0 || moneyCents(amount) > MAX_PRICE_CENTS) {
        return "price.amount must be from 0 to 9999999999.99";
      }
      return isWholeCents(amount)
        ? undefined
        : `price.amount ${amount} has more than 2 decimal places; numeric(12,2) would round it`;
    },
    text: centsText,
    select: "(price_amount * 100)::int8::text AS price_amount",
    stored: (amount: number) => String(moneyCents(amount)),
  },
  {
    ...textColumn(
      "price_currency",
      "char(3) NOT NULL",
      (value) =>
        CURRENCY.test(value) ? undefined : "price.currency must be a 3-letter code such as USD",
    ),
    field: "price.currency",
  },
  timeColumn("purchased_at"),
];

/** The JSON type name of a value, for messages. */
export function kindOf(value: unknown): string {
  return value === null ? "null" : Array.isArray(value) ? "array" : typeof value;
}

/** The value of a column's field in a ticket (or in a decoded message object). */
export function fieldOf(ticket: Ticket | Record<string, unknown>, column: TicketColumn): unknown {
  return GETTERS[TICKET_COLUMNS.indexOf(column)]!(ticket as Record<string, unknown>);
}

/** Per column, a function reading its field (made once: the sink reads every field of a batch). */
const GETTERS: ((o: Record<string, unknown>) => unknown)[] = TICKET_COLUMNS.map((c) => {
  const [outer, inner] = c.field.split(".") as [string, string | undefined];
  return inner === undefined
    ? (o) => o[outer]
    : (o) => (o[outer] as Record<string, unknown> | undefined)?.[inner];
});

/** Position of a column in {@linkcode TICKET_COLUMNS}; throws for a name that is not one. */
export function columnIndex(name: string): number {
  const i = TICKET_COLUMNS.findIndex((c) => c.column === name);
  if (i < 0) throw new Error(`no ticket column ${name}`);
  return i;
}

/** A function giving one column's text of a ticket (see `TicketColumn.text`), looked up once. */
export function columnTexter(column: string): (ticket: Ticket) => string {
  const i = columnIndex(column);
  const spec = TICKET_COLUMNS[i]!, get = GETTERS[i]!;
  return (ticket) => spec.text(get(ticket as never) as never);
}

/** The SQL list of the ticket columns as {@linkcode storedTicketSelect} names them. */
export const TICKET_COLUMN_NAMES: readonly string[] = TICKET_COLUMNS.map((c) => c.column);

/** The SELECT list reading stored tickets as text, in the form {@linkcode sameTicket} compares. */
export const STORED_TICKET_SELECT: string = TICKET_COLUMNS.map((c) => c.select).join(", ");

/** A stored ticket as {@linkcode STORED_TICKET_SELECT} reads it: column name to value. */
export type StoredTicket = Record<string, unknown>;

/**
 * A ticket as the table stores it: each column's `stored` text, joined. Two tickets (or a ticket
 * and a row, see {@linkcode rowKey}) hold the same data exactly when their keys are equal.
 */
export function ticketKey(ticket: Ticket): string {
  let key = "";
  for (let i = 0; i < TICKET_COLUMNS.length; i++) {
    key += TICKET_COLUMNS[i]!.stored(GETTERS[i]!(ticket as never) as never) + "\u0001";
  }
  return key;
}

/** A row read with {@linkcode STORED_TICKET_SELECT}, as {@linkcode ticketKey} writes a ticket. */
export function rowKey(row: StoredTicket): string {
  let key = "";
  for (const c of TICKET_COLUMNS) key += String(row[c.column]) + "\u0001";
  return key;
}

/** The one equality rule: true when a stored row holds exactly the message's ticket. */
export function sameTicket(stored: StoredTicket, ticket: Ticket): boolean {
  return rowKey(stored) === ticketKey(ticket);
}

/**
 * The show a ticket's seats belong to, as the seats table keys it: a UUID made of the MD5 of the
 * theater, the movie and the showtime's instant (microseconds since 1970, so two spellings of one
 * instant are one show), joined by U+001F. The parser lets U+001F through in a theater or a
 * movie, so such a pair gets the theater's length in UTF-8 bytes and U+001F in front: the text
 * hashed stays one-to-one (without the prefix it holds exactly two U+001F, with it at least four,
 * and the length says where the theater ends), and every other show keeps its key. One narrow key
 * instead of three columns makes the seats' unique index a third of the size and the seat inserts
 * ~40% cheaper (bench/README.md); MD5 is used for its 128 bits, not as a security measure.
 * PostgreSQL computes the same with {@linkcode showIdSql}.
 */
export function showId(ticket: Pick<Ticket, "theater" | "movie" | "showtime">): string {
  const { theater, movie } = ticket;
  const prefix = theater.includes("\u001f") || movie.includes("\u001f")
    ? `${Buffer.byteLength(theater)}\u001f`
    : "";
  return md5Uuid(prefix + theater + "\u001f" + movie + "\u001f" + microsText(ticket.showtime));
}

/**
 * `timeMicros` (values.ts) as decimal text ("undefined" for a time the parser refuses), without a
 * BigInt when the number is exact: what a time column's `stored` text is, and part of the show key.
 */
function microsText(value: string): string {
  const time = readIsoTime(value);
  if (typeof time === "string") return "undefined"; // as String(timeMicros(value)) writes it
  const micros = time.ms * 1000 + time.micros; // exact when it stays a safe integer
  return Math.abs(micros) <= Number.MAX_SAFE_INTEGER
    ? String(micros)
    : String(BigInt(time.ms) * 1000n + BigInt(time.micros));
}

/** SQL computing {@linkcode showId} from three SQL expressions (text, text, timestamptz). */
export function showIdSql(theater: string, movie: string, showtime: string): string {
  return `md5(CASE WHEN strpos(${theater} || ${movie}, chr(31)) > 0 ` +
    `THEN octet_length(${theater})::text || chr(31) ELSE '' END || ` +
    `${theater} || chr(31) || ${movie} || chr(31) || ` +
    `(extract(epoch FROM ${showtime}) * 1000000)::bigint::text)::uuid`;
}

/** The text of the ticket's column `i` (of {@linkcode TICKET_COLUMNS}); no array made. */
export function ticketText(ticket: Ticket, i: number): string {
  return TICKET_COLUMNS[i]!.text(GETTERS[i]!(ticket as never) as never);
}

/** The text of every column of a ticket, in {@linkcode TICKET_COLUMNS} order. */
export function ticketTexts(ticket: Ticket): string[] {
  const texts = new Array<string>(TICKET_COLUMNS.length);
  for (let i = 0; i < texts.length; i++) texts[i] = ticketText(ticket, i);
  return texts;
}

/** The DDL lines of the ticket columns, for CREATE TABLE. */
export function ticketColumnsDdl(): string[] {
  return TICKET_COLUMNS.map((c) => `${c.column} ${c.pg}`);
}
