import assert from "node:assert/strict";
import { setupDatabase } from "./db_setup.ts";
import { createPool } from "./postgres.ts";
import { qualify } from "./schema.ts";
import { type Batch, sinkStatements, storedOffsets, writeBatch } from "./sink.ts";
import { stackConnection, stackInfo, uniqueSuffix } from "./testing.ts";
import { encodeTicket, TicketGenerator } from "./tickets.ts";

async function withTable(
  fn: (table: string, q: ReturnType<typeof qualify>, pool: import("pg").Pool) => Promise<void>,
) {
  const connection = await stackConnection();
  const table = `sink_${uniqueSuffix()}`;
  await setupDatabase(connection, { schema: "public", table });
  const q = qualify({ schema: "public", table });
  const db = await createPool({
    uri: stackInfo().postgresUri,
    certPath: stackInfo().certPath,
    max: 2,
  });
  try {
    await fn(table, q, db.pool);
  } finally {
    await db.pool.query(`DROP TABLE ${q.tickets}`);
    await db.pool.query(`DELETE FROM ${q.offsets} WHERE group_id = $1`, [`g_${table}`]);
    await db.pool.query(`DELETE FROM ${q.conflicts} WHERE target_table = $1`, [table]);
    await db.pool.end();
  }
}

function batchOf(
  table: string,
  from: bigint,
  tickets: ReturnType<TicketGenerator["next"]>[],
): Batch {
  return {
    groupId: `g_${table}`,
    table,
    topic: "t",
    partition: 0,
    expectedOffset: from,
    nextOffset: from + BigInt(tickets.length),
    rows: tickets.map((ticket, i) => ({
      ticket,
      offset: String(from + BigInt(i)),
      value: encodeTicket(ticket),
    })),
    deadLetters: [],
  };
}

Deno.test("writeBatch() with a stale offset writes no row and no offset (zombie fence)", async () => {
  await withTable(async (table, q, pool) => {
    const sql = sinkStatements(q);
    const gen = new TicketGenerator();
    const client = await pool.connect();
    try {
      const first = await writeBatch(client, sql, batchOf(table, 0n, [gen.next(), gen.next()]));
      assert.equal(first.committed, true);
      // the new owner moves on from 2; a zombie still believes the partition is at 0
      assert.equal(
        (await writeBatch(client, sql, batchOf(table, 2n, [gen.next()]))).committed,
        true,
      );
      const zombie = await writeBatch(client, sql, batchOf(table, 0n, [gen.next(), gen.next()]));
      assert.equal(zombie.committed, false);
      const { rows } = await client.query(`SELECT count(*)::int AS n FROM ${q.tickets}`);
      assert.equal(rows[0].n, 3);
      assert.equal((await storedOffsets(client, q, `g_${table}`, "t")).get(0), 3n);
    } finally {
      client.release();
    }
  });
});

Deno.test("writeBatch() keeps the first of a ticket_id: same content is a duplicate, other content a recorded conflict", async () => {
  await withTable(async (table, q, pool) => {
    const sql = sinkStatements(q);
    const t = new TicketGenerator().next();
    const client = await pool.connect();
    try {
      await writeBatch(client, sql, batchOf(table, 0n, [t]));
      const again = await writeBatch(
        client,
        sql,
        batchOf(table, 1n, [t, { ...t, movie: "Changed" }]),
      );
      assert.deepEqual([again.stored, again.duplicates, again.conflicts], [0, 1, 1]);
      const { rows } = await client.query(`SELECT movie FROM ${q.tickets}`);
      assert.deepEqual(rows.map((r) => r.movie), [t.movie]);
      const conflicts = await client.query(
        `SELECT ticket_id, "offset" FROM ${q.conflicts} WHERE target_table = $1`,
        [table],
      );
      assert.deepEqual(conflicts.rows, [{ ticket_id: t.ticket_id, offset: "2" }]);
    } finally {
      client.release();
    }
  });
});
