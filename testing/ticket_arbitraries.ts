/**
 * fast-check arbitraries for the property tests of the parser, the sink and the consumer: valid
 * tickets built from the field rules, mutated tickets (a field replaced by strings with NUL and lone
 * surrogates, huge strings, whitespace padding, impossible and extreme dates, odd numbers, wrong
 * nesting, raw JSON number tokens, broken UTF-8), arbitrary JSON values and arbitrary bytes.
 * @module
 */
import fc from "fast-check";
import type { Ticket } from "../lib/model/columns.ts";

/** One Kafka message as produced: raw key and value (null for none), and what it is. */
export interface Message {
  key: Uint8Array | null;
  value: Uint8Array | null;
  /** How the message was made, e.g. `mutated showtime: set`. */
  label: string;
}

/**
 * The seed of every property run: `FC_SEED` when set (to replay a failure), else a fixed one so CI
 * time and cases are the same on every run. fast-check prints the seed and path of a failure.
 */
export const PROPERTY_SEED = Number(Deno.env.get("FC_SEED") ?? 1_212_2026);

const encoder = new TextEncoder();
const LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const ID_CHARS = `${LETTERS}${LETTERS.toLowerCase()}0123456789_-`;
const ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789";

const charsOf = (chars: string) => fc.constantFrom(...chars.split(""));
const pad2 = (n: number) => String(n).padStart(2, "0");

/** A ticket_id by the rules: 1-64 letters, digits, `-` or `_`. */
export const ticketIdArb: fc.Arbitrary<string> = fc.string({
  unit: charsOf(ID_CHARS),
  minLength: 1,
  maxLength: 64,
});

/** Printable text without control characters or outer whitespace, 1-60 UTF-16 units. */
export const textArb: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 40 }),
  fc.string({ unit: "grapheme", minLength: 1, maxLength: 12 }),
).filter((s) => s.length <= 60 && s.trim() === s && s.length > 0 && !/\p{Cc}/u.test(s));

const wordArb = (min: number, max: number) =>
  fc.string({ unit: charsOf(ALNUM), minLength: min, maxLength: max });

/** A plain e-mail address (`a.b@c.d.ef`). */
export const emailArb: fc.Arbitrary<string> = fc.tuple(
  fc.array(wordArb(1, 10), { minLength: 1, maxLength: 3 }),
  fc.array(wordArb(1, 12), { minLength: 1, maxLength: 3 }),
  fc.string({ unit: charsOf("abcdefghijklmnopqrstuvwxyz"), minLength: 2, maxLength: 6 }),
).map(([local, domain, tld]) => `${local.join(".")}@${domain.join(".")}.${tld}`);

/** A phone number such as `+1 555-123 4567`. */
export const phoneArb: fc.Arbitrary<string> = fc.tuple(
  fc.boolean(),
  fc.array(fc.string({ unit: charsOf("0123456789"), minLength: 1, maxLength: 4 }), {
    minLength: 1,
    maxLength: 6,
  }),
  fc.constantFrom(" ", "-", "."),
).map(([plus, groups, sep]) => `${plus ? "+" : ""}${groups.join(sep)}`)
  .filter((p) => p.replace(/\D/g, "").length >= 3 && p.length <= 40);

/** A seat label such as `G8` or `AB123`. */
export const seatArb: fc.Arbitrary<string> = fc.tuple(
  fc.string({ unit: charsOf(LETTERS), minLength: 1, maxLength: 2 }),
  fc.integer({ min: 1, max: 999 }),
).map(([row, n]) => `${row}${n}`);

/** 1-8 distinct seats. */
export const seatsArb: fc.Arbitrary<string[]> = fc.uniqueArray(seatArb, {
  minLength: 1,
  maxLength: 8,
});

/**
 * An ISO 8601 time with a zone, of an instant from 1971 to 2099: `Z` or an offset from -12:00 to
 * +14:00 (with or without a colon), to the minute, second, millisecond or microsecond.
 */
export const isoTimeArb: fc.Arbitrary<string> = fc.record({
  ms: fc.integer({ min: Date.UTC(1971, 0, 1), max: Date.UTC(2099, 11, 31) }),
  offset: fc.oneof(fc.constant(0), fc.integer({ min: -48, max: 56 }).map((q) => q * 15)),
  colon: fc.boolean(),
  precision: fc.constantFrom("minute", "second", "milli", "micro"),
  micros: fc.integer({ min: 0, max: 999 }),
}, { noNullPrototype: true }).map(({ ms, offset, colon, precision, micros }) => {
  const local = new Date(ms + offset * 60_000).toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  let text = local.slice(0, 16);
  if (precision !== "minute") text += local.slice(16, 19);
  if (precision === "milli" || precision === "micro") text += local.slice(19, 23);
  if (precision === "micro") text += String(micros).padStart(3, "0");
  if (offset === 0 && !colon) return `${text}Z`;
  const sign = offset < 0 ? "-" : "+";
  const abs = Math.abs(offset);
  return `${text}${sign}${pad2(Math.floor(abs / 60))}${colon ? ":" : ""}${pad2(abs % 60)}`;
});

/** An amount in whole cents, 0 to 99,999,999.99. */
export const amountArb: fc.Arbitrary<number> = fc.oneof(
  fc.integer({ min: 0, max: 100_000 }),
  fc.integer({ min: 0, max: 9_999_999_999 }),
).map((cents) => cents / 100);

/** A valid ticket, built from the field rules of `parseTicket`. */
export const validTicketArb: fc.Arbitrary<Ticket> = fc.record({
  ticket_id: ticketIdArb,
  theater: textArb,
  movie: textArb,
  name: textArb,
  email: emailArb,
  phone_number: phoneArb,
  seats: seatsArb,
  showtime: isoTimeArb,
  price: fc.record({
    amount: amountArb,
    currency: fc.string({ unit: charsOf(LETTERS), minLength: 3, maxLength: 3 }),
  }, { noNullPrototype: true }),
  purchased_at: isoTimeArb,
}, { noNullPrototype: true });

/** Characters that PostgreSQL, UTF-8 encoders, JSON, COPY or regular expressions treat specially. */
const NASTY_PIECES = [
  "\u0000",
  "\u0000\u0000",
  "\ud800",
  "\udfff",
  "\udc00\ud800",
  "\ud83d",
  "\ufffd",
  "\ufeff",
  "\u200b",
  "\u2028",
  "\u0085",
  "\u00a0",
  "\t",
  "\n",
  "\r\n",
  "\\",
  "\\N",
  '"',
  "'",
  "%",
  "\u{1F600}",
  "\u{10FFFF}",
  "\uffff",
  "\u0007",
];

/** Whitespace that `String.prototype.trim` removes, and one it does not (U+200B). */
const SPACES = [" ", "\t", "\n", "\r", "\u00a0", "\u2003", "\u3000", "\ufeff", "\u2028", "\u200b"];

/** Text of `length` characters drawn from `alphabet` by a small PRNG (cheap, incompressible). */
export function noise(length: number, seed: number, alphabet: readonly string[]): string {
  let state = seed >>> 0 || 1;
  let text = "";
  for (let i = 0; i < length; i++) {
    state ^= state << 13, state >>>= 0, state ^= state >>> 17, state ^= state << 5, state >>>= 0;
    text += alphabet[state % alphabet.length];
  }
  return text;
}

const NOISE_ALPHABET = [...`${LETTERS}${ALNUM}`.split(""), "é", "ß", "漢", "字", "😀", "€"];

/** Huge strings: one character repeated, or incompressible noise, up to past the 64 KiB cap. */
export const hugeStringArb: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(
    fc.integer({ min: 200, max: 70_000 }),
    fc.constantFrom("x", "é", "漢", "😀", " ", "\u0000", "\u3000"),
  ).map(([n, c]) => c.repeat(n)),
  fc.tuple(fc.integer({ min: 200, max: 40_000 }), fc.integer()).map(([n, seed]) =>
    noise(n, seed, NOISE_ALPHABET)
  ),
);

/** Strings with NUL, lone surrogates and any code point. */
export const nastyStringArb: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: "binary", maxLength: 30 }),
  fc.string({
    unit: fc.oneof(fc.constantFrom(...NASTY_PIECES), fc.string({ unit: "binary", maxLength: 2 })),
    maxLength: 12,
  }),
  fc.constantFrom("", " ", "null", "NaN", "Infinity", "-0", "1e21", "0x1A", "undefined", "[]"),
);

/** Extreme, impossible and odd times that look like ISO 8601. */
export const EXTREME_TIMES = [
  "2026-02-30T20:00:00Z",
  "2026-06-31T20:00:00Z",
  "2026-04-31T20:00:00Z",
  "2023-02-29T12:00:00Z",
  "2024-02-29T12:00:00Z",
  "2100-02-29T12:00:00Z",
  "2000-02-29T12:00:00Z",
  "0000-01-01T00:00:00Z",
  "0001-01-01T00:00:00Z",
  "0000-12-31T23:59:59+15:59",
  "9999-12-31T23:59:59Z",
  "9999-12-31T23:59:59.9999999Z",
  "9999-12-31T23:59:59.999999999-15:59",
  "2026-01-01T20:00:00.0009996Z",
  "2026-01-01T20:00:00.9999999Z",
  "2026-01-01T20:00:00.123456789Z",
  "2026-01-01T24:00:00Z",
  "2026-01-01T24:00:00.001Z",
  "2026-01-01T23:59:60Z",
  "2026-01-01T23:60:00Z",
  "2026-01-01T20:00:00+15:59",
  "2026-01-01T20:00:00+16:00",
  "2026-01-01T20:00:00-23:59",
  "2026-01-01T20:00:00+99:00",
  "2026-01-01T20:00:00+00:60",
  "2026-01-01T20:00:00+2359",
  "2026-01-01T20:00+0530",
  "2026-13-01T00:00:00Z",
  "2026-00-10T00:00:00Z",
  "2026-01-00T00:00:00Z",
  "2026-01-32T00:00:00Z",
  "1969-12-31T23:59:59.999Z",
  "1970-01-01T00:00:00Z",
  "2026-01-01T20:00:00z",
  "2026-01-01 20:00:00Z",
  "2026-01-01T20:00:00",
  "+275760-09-13T00:00:00Z",
  "-271821-04-20T00:00:00Z",
  "2026-01-01T20:00:00Z\u0000",
  "2026-01-01T20:00:00\u0000Z",
];

/** Times from arbitrary components, in and out of their ranges. */
export const oddTimeArb: fc.Arbitrary<string> = fc.record({
  year: fc.oneof(
    fc.integer({ min: 0, max: 9999 }),
    fc.constantFrom(0, 1, 1582, 1900, 1969, 1970, 2000, 2024, 2100, 4713, 9999),
  ),
  month: fc.integer({ min: 0, max: 13 }),
  day: fc.oneof(fc.integer({ min: 0, max: 32 }), fc.constantFrom(28, 29, 30, 31)),
  hour: fc.integer({ min: 0, max: 25 }),
  minute: fc.oneof(fc.integer({ min: 0, max: 60 }), fc.constant(0)),
  second: fc.option(fc.integer({ min: 0, max: 61 })),
  fraction: fc.option(fc.string({ unit: charsOf("0123456789"), minLength: 1, maxLength: 9 })),
  zone: fc.oneof(
    fc.constant("Z"),
    fc.tuple(
      fc.constantFrom("+", "-"),
      fc.integer({ min: 0, max: 99 }),
      fc.integer({ min: 0, max: 99 }),
      fc.boolean(),
    ).map(([s, h, m, colon]) => `${s}${pad2(h)}${colon ? ":" : ""}${pad2(m)}`),
  ),
}, { noNullPrototype: true }).map((t) =>
  `${String(t.year).padStart(4, "0")}-${pad2(t.month)}-${pad2(t.day)}T${pad2(t.hour)}:${
    pad2(t.minute)
  }${
    t.second === null ? "" : `:${pad2(t.second)}${t.fraction === null ? "" : `.${t.fraction}`}`
  }${t.zone}`
);

/** Numbers at and past the edges of `numeric(12,2)` and of JSON. */
export const oddNumberArb: fc.Arbitrary<number> = fc.oneof(
  fc.constantFrom(
    -0,
    0,
    1e-7,
    5e-324,
    0.005,
    0.015,
    1.005,
    12.345,
    0.1 + 0.2,
    99_999_999.99,
    99_999_999.995,
    99_999_999.999,
    1e8,
    9_999_999_999.99,
    1e21,
    2 ** 53,
    Number.MAX_VALUE,
    -1,
    -0.001,
  ),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.integer({ min: 0, max: 100_000_000 }).map((n) => n / 1000),
);

/** JSON number tokens that `JSON.stringify` would never write. */
export const RAW_NUMBERS = [
  "-0",
  "-0.0",
  "0e0",
  "1e-7",
  "1E+2",
  "12.30",
  "12.345",
  "12.3450",
  "0.1e1",
  "1e400",
  "-1e-400",
  "99999999.995",
  "99999999.994999999",
  "99999999.99",
  "100000000",
  "9999999999.99",
  "0.000000000000000000001",
  "1.00000000000000000000001",
];

/** A value of the wrong shape: any JSON, or the field's value nested once more. */
const wrongShapeArb = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom("array", "object", "deep").map((kind) => ({ wrap: kind })),
);

/** What a mutation puts in place of a field. */
export type Mutation =
  | { path: string; kind: "delete" }
  | { path: string; kind: "set"; value: unknown }
  | { path: string; kind: "wrap"; how: string }
  | { path: string; kind: "raw"; token: string }
  | { path: string; kind: "insert"; piece: string; at: number }
  | { path: string; kind: "pad"; left: string; right: string };

/** Paths of the fields a mutation may change. */
export const FIELD_PATHS = [
  "ticket_id",
  "theater",
  "movie",
  "name",
  "email",
  "phone_number",
  "seats",
  "seats.0",
  "seats.1",
  "showtime",
  "purchased_at",
  "price",
  "price.amount",
  "price.currency",
] as const;

const TEXT_PATHS = ["theater", "movie", "name"] as const;
const TIME_PATHS = ["showtime", "purchased_at"] as const;

const paddingArb = fc.oneof(
  fc.string({ unit: fc.constantFrom(...SPACES), maxLength: 8 }),
  fc.tuple(fc.integer({ min: 100, max: 30_000 }), fc.integer()).map(([n, seed]) =>
    noise(n, seed, SPACES.slice(0, 9))
  ),
);

/** A piece inserted into a string: NUL and lone surrogates first. */
const pieceArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...NASTY_PIECES.slice(0, 6)) },
  { weight: 2, arbitrary: fc.constantFrom(...NASTY_PIECES.slice(6)) },
  { weight: 1, arbitrary: nastyStringArb },
);

/** One mutation of a field of a ticket. */
export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  // text fields: what the parser's trim() and regular expressions may let through
  {
    weight: 6,
    arbitrary: fc.tuple(fc.constantFrom(...TEXT_PATHS), pieceArb, fc.double({ min: 0, max: 1 }))
      .map(([path, piece, at]): Mutation => ({ path, kind: "insert", piece, at })),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(
      fc.constantFrom("email", "phone_number", "seats.0", "ticket_id", ...TIME_PATHS),
      pieceArb,
      fc.double({ min: 0, max: 1 }),
    ).map(([path, piece, at]): Mutation => ({ path, kind: "insert", piece, at })),
  },
  {
    weight: 3,
    arbitrary: fc.tuple(fc.constantFrom(...TEXT_PATHS), paddingArb, paddingArb).map((
      [path, left, right],
    ): Mutation => ({ path, kind: "pad", left, right })),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.constantFrom(...FIELD_PATHS), paddingArb, paddingArb).map((
      [path, left, right],
    ): Mutation => ({ path, kind: "pad", left, right })),
  },
  {
    weight: 5,
    arbitrary: fc.tuple(
      fc.constantFrom(...TIME_PATHS),
      fc.oneof(fc.constantFrom(...EXTREME_TIMES), oddTimeArb),
    ).map(([path, value]): Mutation => ({ path, kind: "set", value })),
  },
  {
    weight: 3,
    arbitrary: oddNumberArb.map((value): Mutation => ({
      path: "price.amount",
      kind: "set",
      value,
    })),
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom(...RAW_NUMBERS).map((token): Mutation => ({
      path: "price.amount",
      kind: "raw",
      token,
    })),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.constantFrom(...FIELD_PATHS), fc.constantFrom(...RAW_NUMBERS)).map((
      [path, token],
    ): Mutation => ({ path, kind: "raw", token })),
  },
  {
    weight: 2,
    arbitrary: fc.tuple(fc.constantFrom(...FIELD_PATHS), fc.oneof(nastyStringArb, hugeStringArb))
      .map(([path, value]): Mutation => ({ path, kind: "set", value })),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.constantFrom(...FIELD_PATHS), wrongShapeArb).map((
      [path, shape],
    ): Mutation =>
      typeof shape === "object" && shape !== null && "wrap" in shape
        ? { path, kind: "wrap", how: String(shape.wrap) }
        : { path, kind: "set", value: shape }
    ),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(...FIELD_PATHS).map((path): Mutation => ({ path, kind: "delete" })),
  },
);

/** A raw token spliced into the JSON text where this placeholder string stands. */
const RAW_MARK = "\u0001raw\u0001";

/** Applies mutations to a copy of a ticket; returns the JSON-ready object and raw tokens. */
export function mutate(ticket: Ticket, mutations: readonly Mutation[]): {
  object: Record<string, unknown>;
  raw: string[];
} {
  const object = structuredClone(ticket) as unknown as Record<string, unknown>;
  const raw: string[] = [];
  for (const m of mutations) {
    const parts = m.path.split(".");
    const field = parts.pop()!;
    let container: unknown = object;
    for (const part of parts) {
      container = typeof container === "object" && container !== null
        ? (container as Record<string, unknown>)[part]
        : undefined;
    }
    // an earlier mutation may have removed or replaced the container: nothing to change then
    if (typeof container !== "object" || container === null) continue;
    const holder = container as Record<string, unknown>;
    const current = holder[field];
    switch (m.kind) {
      case "delete":
        if (Array.isArray(holder)) holder.splice(Number(field), 1);
        else delete holder[field];
        break;
      case "set":
        holder[field] = m.value;
        break;
      case "wrap":
        holder[field] = m.how === "array"
          ? [current]
          : m.how === "object"
          ? { value: current }
          : [[{ value: current }]];
        break;
      case "raw":
        holder[field] = `${RAW_MARK}${raw.length}${RAW_MARK}`;
        raw.push(m.token);
        break;
      case "insert": {
        const text = typeof current === "string" ? current : String(current ?? "");
        const at = Math.floor(m.at * (text.length + 1));
        holder[field] = text.slice(0, at) + m.piece + text.slice(at);
        break;
      }
      case "pad":
        holder[field] = typeof current === "string" ? m.left + current + m.right : current;
        break;
    }
  }
  return { object, raw };
}

/** JSON text of a mutated ticket, raw number tokens spliced in. */
export function mutatedJson(ticket: Ticket, mutations: readonly Mutation[]): string {
  const { object, raw } = mutate(ticket, mutations);
  let text = JSON.stringify(object);
  raw.forEach((token, i) => {
    text = text.replace(JSON.stringify(`${RAW_MARK}${i}${RAW_MARK}`), token);
  });
  return text;
}

/** Changes to the bytes of a JSON text: broken UTF-8, truncation, a BOM, outer whitespace. */
export type ByteMutation =
  | { kind: "none" }
  | { kind: "splice"; bytes: readonly number[]; at: number }
  | { kind: "truncate"; at: number }
  | { kind: "bom" }
  | { kind: "whitespace"; text: string };

const byteMutationArb: fc.Arbitrary<ByteMutation> = fc.oneof(
  { weight: 40, arbitrary: fc.constant({ kind: "none" as const }) },
  {
    weight: 1,
    arbitrary: fc.tuple(
      fc.constantFrom(
        [0xff],
        [0xc0, 0x80],
        [0xed, 0xa0, 0x80],
        [0xf4, 0x90, 0x80, 0x80],
        [0xe2, 0x82],
        [0x00],
      ),
      fc.double({ min: 0, max: 1, noNaN: true }),
    ).map(([bytes, at]) => ({ kind: "splice" as const, bytes, at })),
  },
  {
    weight: 1,
    arbitrary: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }).map((at) => ({
      kind: "truncate" as const,
      at,
    })),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "bom" as const }) },
  {
    weight: 1,
    arbitrary: fc.string({ unit: fc.constantFrom(" ", "\t", "\n", "\r"), maxLength: 4 }).map((
      text,
    ) => ({ kind: "whitespace" as const, text })),
  },
);

/** Applies a byte mutation. */
export function mutateBytes(bytes: Uint8Array, m: ByteMutation): Uint8Array {
  switch (m.kind) {
    case "none":
      return bytes;
    case "splice": {
      const at = Math.floor(m.at * (bytes.length + 1));
      return concat(bytes.subarray(0, at), Uint8Array.from(m.bytes), bytes.subarray(at));
    }
    case "truncate":
      return bytes.subarray(0, Math.floor(m.at * bytes.length));
    case "bom":
      return concat(Uint8Array.from([0xef, 0xbb, 0xbf]), bytes);
    case "whitespace":
      return concat(encoder.encode(m.text), bytes, encoder.encode(m.text));
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) out.set(p, offset), offset += p.length;
  return out;
}

/** Short, escaped text of bytes for failure reports (NUL, surrogates and huge values stay legible). */
export function preview(bytes: Uint8Array | null, max = 240): string {
  if (bytes === null) return "null";
  const text = new TextDecoder().decode(bytes.subarray(0, max * 4));
  const shown = JSON.stringify(text.length > max ? text.slice(0, max) : text);
  return bytes.length > max ? `${shown}... (${bytes.length} bytes)` : shown;
}

/** Gives a message a short form in fast-check's counterexample reports. */
function reported(message: Message): Message {
  return Object.assign(message, {
    [fc.toStringMethod]: () =>
      `{${message.label}; key ${preview(message.key, 80)}; value ${preview(message.value)}}`,
  });
}

/** The key a producer that follows the rules gives this JSON value: its ticket_id. */
function idKey(object: unknown): Uint8Array | null {
  const id = (object as { ticket_id?: unknown } | null)?.ticket_id;
  return typeof id === "string" ? encoder.encode(id) : null;
}

/** How a message's key is chosen. */
export type KeyChoice = "id" | "null" | "empty" | "other" | "padded";

const keyChoiceArb: fc.Arbitrary<KeyChoice> = fc.oneof(
  { weight: 16, arbitrary: fc.constant("id" as const) },
  { weight: 1, arbitrary: fc.constantFrom("null" as const, "empty" as const) },
  { weight: 1, arbitrary: fc.constantFrom("other" as const, "padded" as const) },
);

function chooseKey(choice: KeyChoice, object: unknown): Uint8Array | null {
  const id = idKey(object);
  switch (choice) {
    case "id":
      return id;
    case "null":
      return null;
    case "empty":
      return new Uint8Array(0);
    case "other":
      return encoder.encode(`${new TextDecoder().decode(id ?? new Uint8Array())}-other`);
    case "padded":
      return id ? concat(id, encoder.encode(" ")) : encoder.encode(" ");
  }
}

/** A valid ticket, keyed by its id (or, now and then, by a wrong key). */
export const validMessageArb: fc.Arbitrary<Message> = fc.tuple(validTicketArb, keyChoiceArb).map((
  [ticket, key],
) =>
  reported({
    key: chooseKey(key, ticket),
    value: encoder.encode(JSON.stringify(ticket)),
    label: `valid ticket, key ${key}`,
  })
);

/** A ticket with 1-2 mutated fields and maybe mutated bytes, keyed by its (mutated) id. */
export const mutatedMessageArb: fc.Arbitrary<Message> = fc.tuple(
  validTicketArb,
  fc.array(mutationArb, { minLength: 1, maxLength: 2 }),
  byteMutationArb,
  keyChoiceArb,
).map(([ticket, mutations, bytes, key]) => {
  const { object } = mutate(ticket, mutations);
  return reported({
    key: chooseKey(key, object),
    value: mutateBytes(encoder.encode(mutatedJson(ticket, mutations)), bytes),
    label: `mutated ${mutations.map((m) => `${m.path}: ${m.kind}`).join(", ")}${
      bytes.kind === "none" ? "" : `; bytes ${bytes.kind}`
    }; key ${key}`,
  });
});

/** Arbitrary JSON values (objects shaped like a ticket now and then), and arbitrary bytes. */
export const junkMessageArb: fc.Arbitrary<Message> = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }).map((value) =>
    reported({ key: idKey(value), value: encoder.encode(JSON.stringify(value)), label: "json" })
  ),
  fc.tuple(validTicketArb, fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 2 }))).map((
    [ticket, extra],
  ) => {
    // extra fields first: a ticket's own fields still win, unknown ones are ignored
    const value = { ...extra, ...ticket };
    return reported({
      key: idKey(value),
      value: encoder.encode(JSON.stringify(value)),
      label: "ticket with extra fields",
    });
  }),
  fc.tuple(validTicketArb, fc.constantFrom("array", "nested", "twice")).map(([ticket, how]) => {
    const json = JSON.stringify(ticket);
    const text = how === "array"
      ? `[${json}]`
      : how === "nested"
      ? `{"ticket":${json}}`
      : `${json.slice(0, -1)},"ticket_id":"${ticket.ticket_id}x"}`; // a duplicate key: last wins
    return reported({
      key: encoder.encode(how === "twice" ? `${ticket.ticket_id}x` : ticket.ticket_id),
      value: encoder.encode(text),
      label: `ticket ${how}`,
    });
  }),
  fc.uint8Array({ maxLength: 300 }).map((value) =>
    reported({ key: null, value, label: "random bytes" })
  ),
  fc.constantFrom(
    [0x00],
    [0x22, 0x00, 0x22],
    [0x7b, 0x00, 0x7d],
    [0xef, 0xbb, 0xbf],
    [0x22, 0x5c, 0x75, 0x30, 0x30, 0x30, 0x30, 0x22], // "\u0000" as JSON text
    [0xff, 0xfe],
  ).map((bytes) => reported({ key: null, value: Uint8Array.from(bytes), label: "odd bytes" })),
  fc.string({ unit: "binary", maxLength: 40 }).map((text) =>
    reported({ key: null, value: encoder.encode(text), label: "random text" })
  ),
);

/** Any message: mostly valid and mutated tickets, some junk. */
export const messageArb: fc.Arbitrary<Message> = fc.oneof(
  { weight: 3, arbitrary: validMessageArb },
  { weight: 6, arbitrary: mutatedMessageArb },
  { weight: 2, arbitrary: junkMessageArb },
);
