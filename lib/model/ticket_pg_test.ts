/**
 * The parser against the real PostgreSQL: every value `parseTicket()` accepts is stored by the
 * columns' types as it is and reads back equal; tricky values are made by hand and by a seeded
 * generator (the seed is in every failure message).
 */
import assert from "node:assert/strict";
import { createPool } from "../postgres/postgres.ts";
import { type Batch, sinkStatements, writeBatch } from "../pipeline/sink.ts";
import { sql, stackInfo, ticketBatch, withPipeline } from "../../testing/testing.ts";
import {
  sameTicket,
  type StoredTicket,
  type Ticket,
  TICKET_COLUMN_NAMES,
  ticketTexts,
} from "./columns.ts";
import { TicketGenerator } from "./generator.ts";
import { encodeTicket, parseTicket } from "./ticket.ts";
import { moneyCents, printable, sameMoney, timeMicros } from "./values.ts";

const SEED = 20260512;

/** mulberry32: a small seeded PRNG, so a failure can be replayed. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const base = new TicketGenerator({ seed: 7 }).next();
function parsePatched(patch: Record<string, unknown>) {
  return parseTicket(new TextEncoder().encode(JSON.stringify({ ...base, ...patch })));
}

/**
 * Runs one statement over `values` (one row per value, in order). When PostgreSQL refuses the
 * statement, finds the first value it refuses alone and fails naming it.
 */
async function each<T>(statement: string, values: string[], what: string): Promise<T[]> {
  try {
    return await sql<T>(statement, [values]);
  } catch (error) {
    for (const value of values) {
      await sql(statement, [[value]]).catch((e) => {
        assert.fail(
          `${what} ${JSON.stringify(value)} (seed ${SEED}) is accepted by the parser but ` +
            `PostgreSQL refuses it: ${(e as Error).message}`,
        );
      });
    }
    throw error;
  }
}

const HAND_TIMES = [
  "2024-02-29T20:00:00Z",
  "2000-02-29T20:00:00Z",
  "0001-01-01T00:00:00Z",
  "0001-01-01T00:00:00+15:59",
  "0099-12-31T23:59:59Z",
  "0100-03-01T00:00:00-15:59",
  "1582-10-10T12:00:00Z", // inside the Julian-to-Gregorian gap: both use proleptic Gregorian
  "9999-12-31T23:59:59.999999Z",
  "9999-12-31T23:59:59.999999-15:59",
  "2026-05-01T20:00+05:30",
  "2026-05-01T20:00:00-0930",
  "2026-05-01T20:00:00-00:00",
  "2026-05-01T20:00:00.5Z",
  "2026-05-01T20:00:00.000001Z",
  "1969-12-31T23:59:59.999999Z",
  "2026-03-29T02:30:00+01:00", // a local time that does not exist in Europe: the offset decides
];

/** Times built from fields near and past every limit. */
function fuzzTimes(count: number): string[] {
  const random = prng(SEED);
  const pick = <T>(list: readonly T[]) => list[Math.floor(random() * list.length)]!;
  const two = (n: number) => String(n).padStart(2, "0");
  const years = ["0000", "0001", "0004", "0099", "0100", "1900", "1970", "2000", "2024", "2026"]
    .concat(["2100", "2400", "9999"]);
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    let text = `${pick(years)}-${two(Math.floor(random() * 14))}-${two(Math.floor(random() * 33))}`;
    text += `T${two(pick([0, 1, 12, 23, 23, 24, 25]))}:${two(pick([0, 30, 59, 59, 60]))}`;
    const seconds = pick([undefined, 0, 30, 59, 59, 60]);
    if (seconds !== undefined) {
      text += `:${two(seconds)}`;
      const digits = pick([0, 0, 1, 3, 5, 6, 6, 7, 9]);
      if (digits > 0) {
        text += "." + Array.from({ length: digits }, () => Math.floor(random() * 10)).join("");
      }
    }
    const zone = pick(["Z", "+", "-"]);
    text += zone === "Z"
      ? "Z"
      : `${zone}${two(pick([0, 1, 14, 15, 15, 16, 23]))}${pick([":", ""])}${
        two(pick([0, 30, 59, 60]))
      }`;
    out.push(text);
  }
  return out;
}

Deno.test("parseTicket() accepts only times PostgreSQL stores, and they read back to the microsecond", async () => {
  const candidates = [...HAND_TIMES, ...fuzzTimes(4000)];
  const accepted = candidates.filter((v) => parsePatched({ showtime: v }).ok);
  for (const v of HAND_TIMES) assert.ok(accepted.includes(v), v);
  // the generator reaches both sides of the line
  assert.ok(accepted.length > 500 && accepted.length < candidates.length - 500, `seed ${SEED}`);
  const rows = await each<{ micros: string; t: Date }>(
    `SELECT (extract(epoch FROM v::timestamptz) * 1000000)::bigint::text AS micros,
       v::timestamptz AS t
     FROM unnest($1::text[]) WITH ORDINALITY AS u(v, i) ORDER BY i`,
    accepted,
    "time",
  );
  accepted.forEach((v, i) => {
    assert.equal(rows[i]!.micros, String(timeMicros(v)), `${v} (seed ${SEED})`);
    // what the driver reads back is what the sink and verify compare with Date.parse
    assert.equal(rows[i]!.t.getTime(), Date.parse(v), `${v} (seed ${SEED})`);
  });
});

Deno.test("the times the parser refuses are ones PostgreSQL refuses or would store as another text", async () => {
  for (const v of ["2026-02-30T20:00:00Z", "2026-06-31T20:00:00Z", "0000-01-01T00:00:00Z"]) {
    assert.ok(!parsePatched({ showtime: v }).ok, v);
    await assert.rejects(sql("SELECT $1::timestamptz", [v]), /out of range/, v);
  }
  assert.ok(!parsePatched({ showtime: "2026-05-01T20:00:00+16:00" }).ok);
  await assert.rejects(sql("SELECT $1::timestamptz", ["2026-05-01T20:00:00+16:00"]), /range/);
  // PostgreSQL rounds a 7th digit that Date.parse drops: the same message, two instants
  const [row] = await sql<{ micros: string }>(
    "SELECT (extract(epoch FROM $1::timestamptz) * 1000000)::bigint::text AS micros",
    ["1970-01-01T00:00:00.9999995Z"],
  );
  assert.equal(row!.micros, "1000000");
  assert.equal(Date.parse("1970-01-01T00:00:00.9999995Z"), 999);
  assert.ok(!parsePatched({ showtime: "1970-01-01T00:00:00.9999995Z" }).ok);
});

/** Amounts near whole cents, float noise, and ones a cent column would round. */
function fuzzAmounts(count: number): number[] {
  const random = prng(SEED + 1);
  const out: number[] = [0, 0.01, 0.1 + 0.2, 1.1 * 3, 9999999999.99, 1e-9, 5e-324, -0];
  out.push(0.005, 1.005, 12.345, 1e-7, 9999999999.995, 1e10, 99999999999.99);
  for (let i = 0; i < count; i++) {
    const magnitude = 10 ** Math.floor(random() * 13); // cents from 1 to 1e12
    const cents = Math.floor(random() * magnitude);
    let amount = Number((cents / 100).toFixed(2));
    const kind = random();
    if (kind < 0.2) amount = amount * 3 / 3 + 0.1 + 0.2 - 0.3; // float noise
    else if (kind < 0.4) amount += (Math.floor(random() * 9) + 1) / 1000; // a third decimal
    else if (kind < 0.5) amount += random() / 100; // anything
    out.push(amount);
  }
  return out;
}

Deno.test("parseTicket() accepts only amounts numeric(12,2) stores without changing their cents", async () => {
  const candidates = fuzzAmounts(4000);
  const accepted = candidates.filter((amount) =>
    parsePatched({ price: { amount, currency: "USD" } }).ok
  );
  assert.ok(accepted.length > 500 && accepted.length < candidates.length - 500, `seed ${SEED}`);
  // node-postgres and the COPY encoder both send a number as String(number)
  const rows = await each<{ stored: string; rounding: string; back: number }>(
    `SELECT v::numeric(12,2)::text AS stored, abs(v::numeric - v::numeric(12,2))::text AS rounding,
       v::numeric(12,2)::float8 AS back
     FROM unnest($1::text[]) WITH ORDINALITY AS u(v, i) ORDER BY i`,
    accepted.map(String),
    "amount",
  );
  accepted.forEach((amount, i) => {
    const row = rows[i]!, what = `${amount} (seed ${SEED})`;
    const cents = moneyCents(amount);
    assert.equal(row.stored, `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, "0")}`);
    // float noise only: a real third decimal is at least 0.001
    assert.ok(Number(row.rounding) <= 1e-5, `${what} is rounded by ${row.rounding}`);
    assert.ok(sameMoney(row.back, amount), what);
  });
});

/** Strings of pieces PostgreSQL and UTF-16 treat specially. */
function fuzzTexts(count: number): string[] {
  const random = prng(SEED + 2);
  const pieces = ["a", "Z", " ", "é", "€", "\u{1F3AC}", "\u0000", "\ud800", "\udc00", "\t"]
    .concat(["\n", "\r", "\\", "\u007f", "\u0001", "\uffff", "\ufeff", "\u0301", "'", '"', ","]);
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const length = Math.floor(random() * (random() < 0.1 ? 700 : 40));
    let text = "";
    for (let j = 0; j < length; j++) {
      // mostly letters, so a fair share of the strings has no forbidden piece
      text += random() < 0.9 ? "abcdef"[Math.floor(random() * 6)] : pieces[
        Math.floor(random() * pieces.length)
      ];
    }
    out.push(text);
  }
  return out;
}

Deno.test("parseTicket() accepts only text PostgreSQL stores unchanged", async () => {
  const candidates = fuzzTexts(3000);
  const accepted: string[] = [];
  for (const [i, text] of candidates.entries()) {
    const field = ["theater", "movie", "name"][i % 3]!;
    const asText = parsePatched({ [field]: text }).ok;
    const asEmail = parsePatched({ email: `${text.replaceAll(/[\s@]/g, "")}@example.com` }).ok;
    if (asText) accepted.push(text);
    if (asEmail) accepted.push(`${text.replaceAll(/[\s@]/g, "")}@example.com`);
  }
  assert.ok(accepted.length > 500 && accepted.length < candidates.length * 2 - 500);
  const rows = await each<{ back: string }>(
    "SELECT v::text AS back FROM unnest($1::text[]) WITH ORDINALITY AS u(v, i) ORDER BY i",
    accepted,
    "text",
  );
  accepted.forEach((text, i) => assert.equal(rows[i]!.back, text, `seed ${SEED}`));
});

/** `count` random characters from `range` code points at `first`: text PostgreSQL cannot compress. */
function randomText(first: number, range: number, count: number, seed: number): string {
  const random = prng(seed);
  return Array.from(
    { length: count },
    () => String.fromCodePoint(first + Math.floor(random() * range)),
  ).join("");
}

/** Tickets with edge values in every column, each accepted by the parser. */
function edgeTickets(): Ticket[] {
  const patches: Record<string, unknown>[] = [
    ...HAND_TIMES.map((showtime) => ({ showtime })),
    ...HAND_TIMES.map((purchased_at) => ({ purchased_at })),
    ...[0, 0.01, 0.1 + 0.2, 1.1 * 3, 9999999999.99, 1e-9].map((amount) => ({
      price: { amount, currency: "EUR" },
    })),
    // the largest seat key: 600 + 600 bytes that do not compress (CJK, emoji)
    {
      theater: randomText(0x4e00, 0x5000, 200, SEED),
      movie: randomText(0x1f300, 0x300, 150, SEED),
    },
    { name: "Tab\there, new\nline, CR\r, back\\slash, bell\u0007, DEL\u007f, \\N" },
    { theater: "\\.", movie: "\uFEFFBOM \uFFFF e\u0301 \u{10FFFF}" },
    { email: `${"a".repeat(64)}@${"b".repeat(185)}.com` },
    ...fuzzTimes(200).filter((showtime) => parsePatched({ showtime }).ok).slice(0, 40)
      .map((showtime) => ({ showtime })),
    ...fuzzTexts(400).filter((name) => parsePatched({ name }).ok).slice(0, 40)
      .map((name) => ({ name, theater: name })),
  ];
  const generator = new TicketGenerator();
  return patches.map((patch, i) => {
    // seats of their own, so no two tickets share a seat whatever the patch did to the show
    const ticket = { ...generator.next(), ...patch, seats: [`Y${i + 1}`, `Z${i + 1}`] };
    const parsed = parseTicket(encodeTicket(ticket as Ticket));
    assert.ok(parsed.ok, `${JSON.stringify(patch)}: ${parsed.ok ? "" : parsed.detail}`);
    return parsed.ticket;
  });
}

const batchOf = (table: string, from: bigint, tickets: Ticket[]) =>
  ticketBatch(table, from, tickets, table);

Deno.test("writeBatch() stores tickets with edge values that read back equal: a second delivery is a duplicate", async () => {
  await withPipeline("tickets_pg", async ({ table, q }) => {
    const db = await createPool({ uri: stackInfo().postgresUri, certPath: stackInfo().certPath });
    const client = await db.pool.connect();
    try {
      const tickets = edgeTickets();
      const half = Math.floor(tickets.length / 2);
      const fast = sinkStatements(q);
      const careful = sinkStatements(q);
      careful.copy.supported = false; // the INSERT path stores the other half
      const first = await writeBatch(client, fast, batchOf(table, 0n, tickets.slice(0, half)));
      const second = await writeBatch(
        client,
        careful,
        batchOf(table, BigInt(half), tickets.slice(half)),
      );
      assert.deepEqual([first.stored, second.stored], [half, tickets.length - half]);
      const stored = await client.query<StoredTicket & { ticket_id: string }>(fast.selectExisting, [
        tickets.map((t) => t.ticket_id),
      ]);
      const byId = new Map(stored.rows.map((r) => [r.ticket_id, r]));
      for (const t of tickets) {
        const row = byId.get(t.ticket_id);
        assert.ok(
          row && sameTicket(row, t),
          `${printable(JSON.stringify(t), 300)} reads back as
          ${printable(JSON.stringify(row), 300)}`,
        );
      }
      const seats = await client.query(`SELECT count(*)::int AS n FROM ${q.seats}`);
      assert.equal(seats.rows[0].n, tickets.length * 2);
      // delivered again: every ticket is recognised as the same content
      const again = await writeBatch(
        client,
        fast,
        batchOf(table, BigInt(tickets.length), tickets),
      );
      assert.deepEqual(
        [again.stored, again.duplicates, again.conflicts],
        [0, tickets.length, 0],
      );
    } finally {
      client.release();
      await db.pool.end();
    }
  });
});

Deno.test("writeBatch() stores a dead letter whose detail quotes a NUL or a lone surrogate", async () => {
  await withPipeline("tickets_pg", async ({ table, q }) => {
    const db = await createPool({ uri: stackInfo().postgresUri, certPath: stackInfo().certPath });
    const client = await db.pool.connect();
    try {
      const nul = parseTicket(new Uint8Array([0]));
      assert.ok(!nul.ok && nul.reason === "BAD_JSON");
      const batch: Batch = {
        ...batchOf(table, 0n, []),
        nextOffset: 2n,
        deadLetters: [
          { offset: "0", key: null, value: new Uint8Array([0]), ...nul },
          // a detail made elsewhere that quotes a message as it is
          { offset: "1", key: null, value: null, reason: "X", detail: "a\u0000b \ud800 c" },
        ],
      };
      const result = await writeBatch(client, sinkStatements(q), batch);
      assert.deepEqual([result.committed, result.deadLetters], [true, 2]);
      const rows = await client.query<{ detail: string; value: Uint8Array }>(
        `SELECT detail, message_value AS value FROM ${q.deadLetters}
         WHERE target_table = $1 ORDER BY "offset"`,
        [table],
      );
      assert.match(rows.rows[0]!.detail, /^not JSON: .*\\u0000/);
      assert.deepEqual([...rows.rows[0]!.value], [0]); // the raw bytes as they came
      assert.equal(rows.rows[1]!.detail, "a\\u0000b \\ud800 c");
    } finally {
      client.release();
      await db.pool.end();
    }
  });
});

Deno.test("parseTicket() bounds show names (200 characters, 600 UTF-8 bytes), so a btree index on them fits", async () => {
  const longest = { theater: randomText(0x4e00, 0x5000, 200, SEED + 3), movie: "x" };
  const tooLong = {
    theater: randomText(0x4e00, 0x5000, 600, SEED + 4),
    movie: randomText(0x4e00, 0x5000, 600, SEED + 5),
  };
  assert.ok(parsePatched(longest).ok);
  assert.ok(!parsePatched(tooLong).ok);
  assert.ok(!parsePatched({ theater: tooLong.theater }).ok);
  await withPipeline("tickets_pg", async ({ q }) => {
    // the seats table keys shows by a UUID now; an index a user adds on the names must still fit
    await sql(`CREATE INDEX ON ${q.tickets} (theater, movie)`);
    const insert = `INSERT INTO ${q.tickets}
      (${TICKET_COLUMN_NAMES.join(", ")}, kafka_topic, kafka_partition, kafka_offset)
      SELECT ${TICKET_COLUMN_NAMES.map((_, i) => `$${i + 1}`).join(", ")}, 't', 0, 0`;
    const row = (theater: string, movie: string, id: string) =>
      ticketTexts({ ...new TicketGenerator({ seed: SEED }).next(), ticket_id: id, theater, movie });
    // 1800 + 1800 bytes in one btree entry: program_limit_exceeded (54000)
    await assert.rejects(sql(insert, row(tooLong.theater, tooLong.movie, "a")), { code: "54000" });
    await sql(insert, row(longest.theater, randomText(0x4e00, 0x5000, 200, SEED + 6), "b"));
  });
});
