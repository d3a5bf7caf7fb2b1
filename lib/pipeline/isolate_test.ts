import assert from "node:assert/strict";
import { isDataError, writeIsolating } from "./isolate.ts";
import {
  type Batch,
  type BatchResult,
  DB_REJECTED,
  sinkStatements,
  storedOffsets,
  writeBatch,
} from "./sink.ts";
import { sql, withPipeline } from "../../testing/testing.ts";
import { TicketGenerator } from "../model/generator.ts";
import { encodeTicket } from "../model/ticket.ts";
import { createPool } from "../postgres/postgres.ts";

Deno.test("isDataError() is true for data, integrity and size errors only", () => {
  for (const code of ["22008", "22021", "23514", "23502", "54000"]) {
    assert.equal(isDataError({ code }), true, code);
  }
  for (
    const code of ["08006", "28P01", "42P01", "42501", "40001", "55P03", "57P01", "ECONNRESET"]
  ) {
    assert.equal(isDataError({ code }), false, code);
  }
  assert.equal(isDataError(new Error("x")), false);
  assert.equal(isDataError(null), false);
});

/**
 * The database, not the parser, refuses a value: a CHECK constraint added to the table forbids
 * one movie, so tickets that parse fine fail inside PostgreSQL (23514).
 */
Deno.test("writeIsolating() stores every ticket but the ones PostgreSQL refuses, which become DB_REJECTED dead letters", async () => {
  await withPipeline("isolate", async ({ table, q, connection }) => {
    await sql(
      `ALTER TABLE ${q.tickets} ADD CONSTRAINT no_forbidden CHECK (movie <> 'Forbidden Movie')`,
    );
    const gen = new TicketGenerator({ seed: 11 });
    const tickets = Array.from({ length: 50 }, () => gen.next());
    const bad = new Set([3, 4, 31, 49]);
    for (const i of bad) tickets[i] = { ...tickets[i]!, movie: "Forbidden Movie" };
    const batch: Batch = {
      groupId: `g_${table}`,
      table,
      topic: table,
      partition: 0,
      expectedOffset: 100n,
      nextOffset: 160n, // offsets 150..159 hold no message (say, compacted away)
      rows: tickets.map((ticket, i) => ({
        ticket,
        offset: String(100 + i),
        value: encodeTicket(ticket),
      })),
      deadLetters: [],
    };
    const db = await createPool({
      uri: connection.postgresUri,
      certPath: connection.kafka.certPath,
      max: 1,
    });
    const sinkSql = sinkStatements(q);
    let writes = 0;
    const parts: { offsetStored: boolean; committed: boolean }[] = [];
    try {
      await sql(
        `INSERT INTO ${q.offsets} (group_id, topic, partition, next_offset) VALUES ($1, $2, 0, 100)`,
        [`g_${table}`, table],
      );
      const result: BatchResult = await writeIsolating(batch, async (part) => {
        writes++;
        const client = await db.pool.connect();
        try {
          const written = await writeBatch(client, sinkSql, part);
          parts.push({ offsetStored: part.offsetStored === true, committed: written.committed });
          return written;
        } finally {
          client.release();
        }
      });
      assert.equal(result.committed, true);
      assert.deepEqual(
        [result.stored, result.rejected, result.deadLetters, result.messages],
        [46, 4, 4, 50],
      );
      // bisection, not one write per message
      assert.ok(writes < 50, `${writes} writes`);
      // once a part has stored the offset, the later parts only move it (Batch.offsetStored)
      const first = parts.findIndex((part) => part.committed);
      assert.deepEqual(parts.slice(first + 1).filter((part) => !part.offsetStored), []);
      const letters = await sql<{ offset: string; reason: string; detail: string }>(
        `SELECT "offset", reason, detail FROM ${q.deadLetters} WHERE target_table = $1
         ORDER BY "offset"`,
        [table],
      );
      assert.deepEqual(letters.map((l) => [Number(l.offset), l.reason]), [
        [103, DB_REJECTED],
        [104, DB_REJECTED],
        [131, DB_REJECTED],
        [149, DB_REJECTED],
      ]);
      assert.match(letters[0]!.detail, /23514 .*no_forbidden/);
      const rows = await sql<{ n: number }>(`SELECT count(*)::int AS n FROM ${q.tickets}`);
      assert.equal(rows[0]!.n, 46);
      // the refused tickets hold no seat and no payment
      const seats = await sql<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${q.seats} s WHERE NOT EXISTS
           (SELECT 1 FROM ${q.tickets} t WHERE t.ticket_id = s.ticket_id)`,
      );
      assert.equal(seats[0]!.n, 0);
      const stored = await storedOffsets(db.pool, q, `g_${table}`, table);
      assert.equal(stored.get(0), 160n, "the offset moved over the whole batch, gap included");
    } finally {
      await db.pool.end();
    }
  });
});

Deno.test("writeIsolating() throws errors that are not about the data, without splitting", async () => {
  let writes = 0;
  const gen = new TicketGenerator({ seed: 1 });
  const batch: Batch = {
    groupId: "g",
    table: "t",
    topic: "t",
    partition: 0,
    expectedOffset: 0n,
    nextOffset: 2n,
    rows: [0, 1].map((i) => {
      const ticket = gen.next();
      return { ticket, offset: String(i), value: encodeTicket(ticket) };
    }),
    deadLetters: [],
  };
  await assert.rejects(
    writeIsolating(batch, () => {
      writes++;
      return Promise.reject(Object.assign(new Error("relation does not exist"), { code: "42P01" }));
    }),
    /relation does not exist/,
  );
  assert.equal(writes, 1);
});
