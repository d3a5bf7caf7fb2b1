/**
 * The parser against the real PostgreSQL: whatever parseTicket() accepts, the sink's real write
 * path (writeBatch, COPY fast path and careful path) stores and reads back equal; whatever it
 * refuses becomes exactly one dead letter holding the raw bytes. A value the parser accepts and
 * PostgreSQL refuses (or stores as something else) is a counterexample. Seed: PROPERTY_SEED.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { createPool } from "../postgres/postgres.ts";
import { type Batch, sinkStatements, writeBatch } from "../pipeline/sink.ts";
import { withPipeline } from "../../testing/testing.ts";
import {
  type Message,
  messageArb,
  preview,
  PROPERTY_SEED,
} from "../../testing/ticket_arbitraries.ts";
import { showId, showIdSql, type Ticket } from "./columns.ts";
import { parseTicket } from "./ticket.ts";

interface Row {
  ticket_id: string;
  theater: string;
  movie: string;
  name: string;
  email: string;
  phone_number: string;
  seats: string;
  showtime: Date;
  amount: string;
  currency: string;
  purchased_at: Date;
  offset: string;
  seat_list: string | null;
  seat_shows: string | null;
  row_show: string;
  payment: string | null;
  paid_at: Date | null;
}

interface Letter {
  offset: string;
  reason: string;
  detail: string;
  key: Uint8Array | null;
  value: Uint8Array | null;
}

const sameBytes = (a: Uint8Array | null, b: Uint8Array | null) =>
  (a === null || b === null) ? a === b : a.length === b.length && a.every((x, i) => x === b[i]);

/** Differences between a stored row (with its seats and payment) and the ticket it came from. */
function rowProblems(row: Row, t: Ticket): string[] {
  const problems: string[] = [];
  for (const field of ["ticket_id", "theater", "movie", "name", "email", "phone_number"] as const) {
    if (row[field] !== t[field]) {
      problems.push(
        `${field} stored as ${JSON.stringify(row[field])}, sent ${JSON.stringify(t[field])}`,
      );
    }
  }
  if (row.seats !== t.seats.join(",")) problems.push(`seats stored as ${row.seats}`);
  if (row.seat_list !== [...t.seats].sort().join(",")) {
    problems.push(`seats table holds ${row.seat_list} for seats ${t.seats.join(",")}`);
  }
  for (
    const [field, stored] of [["showtime", row.showtime], [
      "purchased_at",
      row.purchased_at,
    ]] as const
  ) {
    if (stored.getTime() !== Date.parse(t[field])) {
      problems.push(`${field} stored as ${stored.toISOString()}, sent ${JSON.stringify(t[field])}`);
    }
  }
  // the client's show key, PostgreSQL's from the stored row, and the seats' must be one
  if (row.seat_shows !== showId(t) || row.row_show !== showId(t)) {
    problems.push(`seats of show ${row.seat_shows}, row's ${row.row_show}, ${showId(t)} sent`);
  }
  // equal up to float noise: within a ten-thousandth of a cent (0.1 + 0.2 is stored as 0.30)
  if (Math.abs(Number(row.amount) - t.price.amount) * 100 > 1e-4) {
    problems.push(`price.amount stored as ${row.amount}, sent ${t.price.amount}`);
  }
  if (row.payment !== row.amount) problems.push(`payment of ${row.payment}, price ${row.amount}`);
  if (row.paid_at?.getTime() !== Date.parse(t.purchased_at)) {
    problems.push(`payment made at ${row.paid_at?.toISOString()}`);
  }
  if (row.currency !== t.price.currency) problems.push(`currency stored as ${row.currency}`);
  return problems;
}

/** True when `t` wants a seat of the same show as a ticket stored before it. */
function clashes(t: Ticket, stored: Ticket[]): boolean {
  return stored.some((s) =>
    s.theater === t.theater && s.movie === t.movie &&
    Date.parse(s.showtime) === Date.parse(t.showtime) && s.seats.some((x) => t.seats.includes(x))
  );
}

Deno.test("writeBatch() stores every ticket parseTicket() accepts as sent, and each refused message as one dead letter", async () => {
  await withPipeline("pg_property", async ({ connection, table, q }) => {
    const db = await createPool({
      uri: connection.postgresUri,
      certPath: connection.kafka.certPath,
      max: 1,
    });
    const client = await db.pool.connect();
    const fast = sinkStatements(q);
    const careful = { ...fast, copy: { ...fast.copy, supported: false } };
    const groupId = `g_${table}`;
    const topic = table;
    const publishedAt = new Date("2026-01-01T00:00:00Z");
    let partition = 0;
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.array(messageArb, { minLength: 1, maxLength: 8 }),
          fc.boolean(),
          async (messages: Message[], viaCopy) => {
            const p = partition++; // each run writes a partition of its own
            await client.query(
              `DELETE FROM ${q.seats}; DELETE FROM ${q.transactions}; DELETE FROM ${q.tickets}`,
            );
            const parsed = messages.map((m) => parseTicket(m.value));
            const batch: Batch = {
              groupId,
              table,
              topic,
              partition: p,
              expectedOffset: 0n,
              nextOffset: BigInt(messages.length),
              rows: [],
              deadLetters: [],
            };
            parsed.forEach((r, i) => {
              const m = messages[i]!;
              if (r.ok) {
                batch.rows.push({
                  ticket: r.ticket,
                  offset: String(i),
                  value: m.value!,
                  key: m.key,
                  publishedAt,
                });
              } else {
                batch.deadLetters.push({
                  offset: String(i),
                  key: m.key,
                  value: m.value,
                  reason: r.reason,
                  detail: r.detail,
                });
              }
            });
            const describe = (i: number) =>
              `offset ${i} (${messages[i]!.label}): ${preview(messages[i]!.value)}`;
            try {
              const result = await writeBatch(client, viaCopy ? fast : careful, batch);
              assert.ok(result.committed, "the batch was fenced");
            } catch (error) {
              const { code, message } = error as { code?: string; message?: string };
              throw new Error(
                `PostgreSQL refused the batch (${
                  viaCopy ? "COPY" : "careful"
                } path): ${code} ${message}\n` +
                  messages.map((_, i) =>
                    `  ${parsed[i]!.ok ? "accepted" : "refused"} ${describe(i)}`
                  ).join("\n"),
              );
            }
            const rows = (await client.query<Row>(
              `SELECT t.ticket_id, t.theater, t.movie, t.name, t.email, t.phone_number, t.seats,
                 t.showtime, t.price_amount::text AS amount, t.price_currency AS currency,
                 t.purchased_at, t.kafka_offset::text AS "offset",
                 (SELECT string_agg(s.seat, ',' ORDER BY s.seat) FROM ${q.seats} s
                   WHERE s.ticket_id = t.ticket_id) AS seat_list,
                 (SELECT string_agg(DISTINCT s.show_id::text, ',')
                   FROM ${q.seats} s WHERE s.ticket_id = t.ticket_id) AS seat_shows,
                 ${showIdSql("t.theater", "t.movie", "t.showtime")}::text AS row_show,
                 x.amount::text AS payment, x.created_at AS paid_at
               FROM ${q.tickets} t LEFT JOIN ${q.transactions} x USING (ticket_id)
               WHERE t.kafka_partition = $1`,
              [p],
            )).rows;
            const letters = (await client.query<Letter>(
              `SELECT "offset"::text AS "offset", reason, detail, message_key AS key,
                 message_value AS value
               FROM ${q.deadLetters} WHERE group_id = $1 AND topic = $2 AND partition = $3`,
              [groupId, topic, p],
            )).rows;
            const rowAt = new Map(rows.map((r) => [Number(r.offset), r]));
            const letterAt = new Map(letters.map((l) => [Number(l.offset), l]));
            assert.equal(rows.length, rowAt.size, "two rows for one offset");
            assert.equal(letters.length, letterAt.size, "two dead letters for one offset");
            const problems: string[] = [];
            const stored: Ticket[] = [];
            parsed.forEach((r, i) => {
              const row = rowAt.get(i);
              const letter = letterAt.get(i);
              const m = messages[i]!;
              if (row && letter) problems.push(`both a row and a dead letter for ${describe(i)}`);
              if (!r.ok) {
                if (row) problems.push(`a row for a message the parser refused: ${describe(i)}`);
                else if (!letter) problems.push(`no dead letter for ${describe(i)}`);
                else {
                  if (letter.reason !== r.reason) {
                    problems.push(
                      `dead letter ${letter.reason}, parser said ${r.reason}: ${describe(i)}`,
                    );
                  }
                  if (!sameBytes(letter.value, m.value) || !sameBytes(letter.key, m.key)) {
                    problems.push(`dead letter's bytes differ from the message's: ${describe(i)}`);
                  }
                }
                return;
              }
              const t = r.ticket;
              const known = stored.some((s) => s.ticket_id === t.ticket_id);
              if (known) {
                // a duplicate or a conflict: recorded elsewhere, neither a row nor a dead letter
                if (row || letter) problems.push(`a known ticket_id stored again: ${describe(i)}`);
                return;
              }
              if (!row) {
                const seatTaken = letter?.reason === "SEAT_TAKEN" && clashes(t, stored);
                if (!seatTaken) {
                  problems.push(
                    `parser accepted, not stored${
                      letter ? ` (dead letter ${letter.reason}: ${letter.detail})` : ""
                    }: ${describe(i)}`,
                  );
                }
                return;
              }
              stored.push(t);
              for (const problem of rowProblems(row, t)) {
                problems.push(`${problem}: ${describe(i)}`);
              }
            });
            assert.deepEqual(problems, []);
          },
        ),
        { seed: PROPERTY_SEED, numRuns: 200 },
      );
    } finally {
      client.release();
      await db.pool.end();
    }
  });
});
