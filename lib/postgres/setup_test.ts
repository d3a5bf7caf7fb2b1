import assert from "node:assert/strict";
import { showId } from "../model/columns.ts";
import { sinkStatements, writeBatch } from "../pipeline/sink.ts";
import { createPool } from "./postgres.ts";
import { checkTables, setupDatabase } from "./setup.ts";
import { qualify, quoteIdent } from "./schema.ts";
import { AppError } from "../errors.ts";
import { stackConnection, ticketBatch, uniqueSuffix, withPipeline } from "../../testing/testing.ts";
import { TicketGenerator } from "../model/generator.ts";

Deno.test("db_setup moves a seats table of the old layout (theater, movie, showtime, seat) to the show key, keeping every sale", async () => {
  await withPipeline("setup_migrate", async ({ connection, table, q }) => {
    const db = await createPool({
      uri: connection.postgresUri,
      certPath: connection.kafka.certPath,
      max: 1,
    });
    try {
      const generator = new TicketGenerator({ seed: 7 });
      const [a, b] = [generator.next(), generator.next()];
      // the layout db_setup made before the show key, with two sales in it
      await db.pool.query(`DROP TABLE ${q.seats}`);
      await db.pool.query(`CREATE TABLE ${q.seats} (
        theater text COLLATE "C" NOT NULL, movie text COLLATE "C" NOT NULL,
        showtime timestamptz NOT NULL, seat text COLLATE "C" NOT NULL, ticket_id text NOT NULL,
        PRIMARY KEY (showtime, seat, theater, movie))`);
      // one show written with an offset: the same instant must give the same key
      const shifted = a!.showtime.replace(/Z$|[+-]\d\d:\d\d$/, "") + "+00:00";
      await db.pool.query(
        `INSERT INTO ${q.seats} VALUES ($1, $2, $3, 'A1', $4), ($5, $6, $7, 'A1', $8)`,
        [
          a!.theater,
          a!.movie,
          shifted,
          a!.ticket_id,
          b!.theater,
          b!.movie,
          b!.showtime,
          b!.ticket_id,
        ],
      );
      await setupDatabase(connection, { schema: "public", table });
      await setupDatabase(connection, { schema: "public", table }); // idempotent
      const columns = await db.pool.query(
        `SELECT column_name FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position`,
        [`${table}_seats`],
      );
      assert.deepEqual(columns.rows.map((r) => r.column_name), ["seat", "ticket_id", "show_id"]);
      const rows = await db.pool.query(
        `SELECT show_id::text, seat, ticket_id FROM ${q.seats} ORDER BY ticket_id`,
      );
      const expected = [a!, b!].map((t) => ({
        show_id: showId(t),
        seat: "A1",
        ticket_id: t.ticket_id,
      }))
        .sort((x, y) => x.ticket_id < y.ticket_id ? -1 : 1);
      assert.deepEqual(rows.rows, expected);
      // the migrated sale still holds its seat against a new ticket for the same show
      const rival = {
        ...new TicketGenerator({ seed: 8 }).next(),
        theater: a!.theater,
        movie: a!.movie,
      };
      rival.showtime = a!.showtime;
      rival.seats = ["A1"];
      const client = await db.pool.connect();
      try {
        const result = await writeBatch(client, sinkStatements(q), ticketBatch(table, 0n, [rival]));
        assert.deepEqual([result.stored, result.seatTaken], [0, 1]);
      } finally {
        client.release();
      }
    } finally {
      await db.pool.end();
    }
  });
});

Deno.test("checkTables() refuses missing tables and the tables of an older version with the way forward; db_setup brings them up to date", async () => {
  const connection = await stackConnection();
  const names = { schema: `probe_${uniqueSuffix()}`, table: "tickets" };
  const q = qualify(names);
  const db = await createPool({
    uri: connection.postgresUri,
    certPath: connection.kafka.certPath,
    max: 1,
  });
  const refusal = (error: unknown) => {
    assert.ok(error instanceof AppError, String(error));
    assert.match(
      error.message,
      new RegExp(`run db_setup\\.ts --table-name tickets --schema ${names.schema} to create`),
    );
    return true;
  };
  try {
    await assert.rejects(() => checkTables(db.pool, names), refusal);
    await setupDatabase(connection, names);
    await checkTables(db.pool, names);
    // what an older version made: no write id and counts with the offsets, no refund time
    for (const [table, column] of [[q.offsets, "write_counts"], [q.transactions, "refunded_at"]]) {
      await db.pool.query(`ALTER TABLE ${table} DROP COLUMN ${column}`);
      await assert.rejects(() => checkTables(db.pool, names), refusal);
      await setupDatabase(connection, names);
      await checkTables(db.pool, names);
    }
  } finally {
    await db.pool.query(`DROP SCHEMA IF EXISTS ${quoteIdent(names.schema)} CASCADE`);
    await db.pool.end();
  }
});
