/**
 * Adversarial checks of the cancellations and the show key against the stack's PostgreSQL: each
 * test states a promise of README's "How exactly-once works" and tries to break it.
 */
import assert from "node:assert/strict";
import type pg from "pg";
import { createPool } from "../postgres/postgres.ts";
import type { QualifiedNames } from "../postgres/schema.ts";
import { sinkStatements, writeBatch } from "./sink.ts";
import {
  batchOf,
  cancelOf,
  type Msg,
  showTickets,
  writeBatches,
} from "../../testing/sink_batches.ts";
import { sql as sqlRows, withPipeline } from "../../testing/testing.ts";
import { setupDatabase } from "../postgres/setup.ts";
import { showId, showIdSql, type Ticket } from "../model/columns.ts";
import { parseMessage } from "../model/message.ts";
import { encodeTicket } from "../model/ticket.ts";

/** Tickets, seats and payments, in a form to compare. */
async function tables(client: pg.PoolClient, q: QualifiedNames) {
  const tickets = await client.query(
    `SELECT ticket_id, status FROM ${q.tickets} ORDER BY ticket_id`,
  );
  const seats = await client.query(
    `SELECT show_id::text, seat, ticket_id FROM ${q.seats} ORDER BY 1, 2`,
  );
  const payments = await client.query(
    `SELECT ticket_id, status FROM ${q.transactions} ORDER BY ticket_id`,
  );
  return { tickets: tickets.rows, seats: seats.rows, payments: payments.rows };
}

async function withClient(
  prefix: string,
  fn: (table: string, q: QualifiedNames, client: pg.PoolClient) => Promise<void>,
) {
  await withPipeline(prefix, async ({ connection, table, q }) => {
    const db = await createPool({
      uri: connection.postgresUri,
      certPath: connection.kafka.certPath,
      max: 1,
    });
    const client = await db.pool.connect();
    try {
      await fn(table, q, client);
    } finally {
      client.release();
      await db.pool.end();
    }
  });
}

Deno.test("show key: two different shows never share a key, whatever their theater and movie texts (U+001F included)", async () => {
  const [base] = showTickets(31, [["A1"]]);
  // theater + movie split at different places around the key's separator, U+001F
  const one: Ticket = { ...base!, ticket_id: "show-one", theater: "Odeon\u001fOne", movie: "Film" };
  const two: Ticket = { ...base!, ticket_id: "show-two", theater: "Odeon", movie: "One\u001fFilm" };
  for (const t of [one, two]) {
    const parsed = parseMessage(encodeTicket(t));
    assert.equal(parsed.ok, true, "the parser accepts the ticket");
  }
  assert.notEqual(showId(one), showId(two), "two shows, two keys");
  await withClient("review_showkey", async (table, q, client) => {
    const results = await writeBatches(client, q, table, `g_${table}`, [one, two], 1);
    assert.deepEqual(results.map((r) => [r.stored, r.seatTaken]), [[1, 0], [1, 0]]);
    // the stored seats carry the key PostgreSQL computes from each stored ticket
    const mismatched = await client.query(
      `SELECT s.ticket_id FROM ${q.seats} s JOIN ${q.tickets} t USING (ticket_id)
       WHERE s.show_id <> ${showIdSql("t.theater", "t.movie", "t.showtime")}`,
    );
    assert.deepEqual(mismatched.rows, []);
    // and a cancellation, which finds the seats by PostgreSQL's key, frees them
    const sql = sinkStatements(q);
    await writeBatch(client, sql, batchOf(table, `g_${table}`, 2n, [cancelOf(one.ticket_id)]));
    const left = await client.query(`SELECT ticket_id FROM ${q.seats}`);
    assert.deepEqual(left.rows, [{ ticket_id: two.ticket_id }]);
  });
});

Deno.test("show key: the client's key equals PostgreSQL's for theater and movie texts around U+001F and multi-byte text", async () => {
  const [base] = showTickets(33, [["A1"]]);
  const texts = [
    "\u001f",
    "a\u001f",
    "\u001fb",
    "é\u001f\u001f",
    "𝄞\u001fx",
    "plain",
    "ü",
    "1\u001f2",
  ];
  const tickets = texts.flatMap((theater) => texts.map((movie) => ({ ...base!, theater, movie })));
  const keys = new Set(tickets.map(showId));
  assert.equal(keys.size, tickets.length, "every pair its own key");
  await withClient("review_showkey_sql", async (_table, _q, client) => {
    const res = await client.query<{ id: string }>(
      `SELECT ${showIdSql("u.t", "u.m", "$3::timestamptz")}::text AS id
       FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(t, m, n) ORDER BY n`,
      [tickets.map((t) => t.theater), tickets.map((t) => t.movie), base!.showtime],
    );
    assert.deepEqual(res.rows.map((r) => r.id), tickets.map(showId));
  });
});

Deno.test({
  name:
    "replay under a new group: a purchase refused SEAT_TAKEN whose blocker was cancelled later stays refused",
  // the replay judges the refused purchase as of its position, where the blocker still held the
  // seat (its cancellation comes later in the partition), not against today's seats
  fn: async () => {
    await withClient("review_replay", async (table, q, client) => {
      const [a, b] = showTickets(32, [["G7"], ["G7"]]);
      const msgs: Msg[] = [a!, b!, cancelOf(a!.ticket_id)];
      for (const size of [1, 3, 5000]) {
        await client.query(
          `DELETE FROM ${q.tickets}; DELETE FROM ${q.seats}; DELETE FROM ${q.transactions};
           DELETE FROM ${q.freedSeats}`,
        );
        const first = await writeBatches(client, q, table, `g1_${size}_${table}`, msgs, size);
        assert.equal(first.reduce((n, r) => n + r.seatTaken, 0), 1, "b is refused at first");
        const before = await tables(client, q);
        const replay = await writeBatches(client, q, table, `g2_${size}_${table}`, msgs, size);
        const after = await tables(client, q);
        assert.deepEqual(
          { after, stored: replay.reduce((n, r) => n + r.stored, 0) },
          { after: before, stored: 0 },
          `batch size ${size}: the replay changed the tables`,
        );
      }
    });
  },
});

Deno.test("db_setup run again (and twice at once) leaves one status check and one key per table", async () => {
  await withPipeline("review_setup_twice", async ({ connection, table, q }) => {
    await Promise.all([
      setupDatabase(connection, { schema: "public", table }),
      setupDatabase(connection, { schema: "public", table }),
    ]);
    await setupDatabase(connection, { schema: "public", table });
    const constraints = await sqlRows<{ contype: string; n: number }>(
      `SELECT contype, count(*)::int AS n FROM pg_constraint
       WHERE conrelid IN ($1::regclass, $2::regclass, $3::regclass) GROUP BY contype ORDER BY 1`,
      [q.tickets, q.seats, q.transactions],
    );
    // tickets: primary key and the status check; seats: its key; transactions: key and unique
    assert.deepEqual(constraints, [{ contype: "c", n: 1 }, { contype: "p", n: 3 }, {
      contype: "u",
      n: 1,
    }]);
  });
});
