/** Cancellations end to end: produced with kcat, applied by consumer.ts once, checked by verify. */
import assert from "node:assert/strict";
import { createKafka, ensureTopic } from "../lib/kafka/kafka.ts";
import { verifyPipeline } from "../lib/commands/verify.ts";
import { showId, type Ticket } from "../lib/model/columns.ts";
import { TicketGenerator } from "../lib/model/generator.ts";
import { encodeCancel } from "../lib/model/message.ts";
import { setupDatabase } from "../lib/postgres/setup.ts";
import type { QualifiedNames } from "../lib/postgres/schema.ts";
import { sinkStatements, writeBatch } from "../lib/pipeline/sink.ts";
import { createPool } from "../lib/postgres/postgres.ts";
import {
  consumerArgs,
  kcatProduce,
  runScript,
  sql,
  ticketBatch,
  withPipeline,
  writeStackCreds,
} from "../testing/testing.ts";

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const cancel = (id: string, minute: number, reason = "plans changed") =>
  text(encodeCancel({ ticket_id: id, cancelled_at: `2026-04-01T10:0${minute}:00Z`, reason }));

/** Tickets a-f of one show with the given seats. */
function tickets(seed: number): Record<"a" | "b" | "c" | "d" | "e" | "f", Ticket> {
  const gen = new TicketGenerator({ seed });
  const first = gen.next();
  const seats = { a: ["A1", "A2"], b: ["B1"], c: ["A2"], d: ["B1"], e: ["B1"], f: ["C1"] };
  return Object.fromEntries(
    Object.entries(seats).map(([name, s], i) => [name, {
      ...(i === 0 ? first : gen.next()),
      theater: first.theater,
      movie: first.movie,
      showtime: first.showtime,
      seats: s,
    }]),
  ) as Record<"a" | "b" | "c" | "d" | "e" | "f", Ticket>;
}

/** Tickets, seats and payments of a pipeline, in a form to compare. */
async function tablesOf(q: QualifiedNames) {
  return {
    tickets: await sql(
      `SELECT ticket_id, status, cancelled_at::text, cancel_reason FROM ${q.tickets} ORDER BY 1`,
    ),
    seats: await sql(`SELECT show_id::text, seat, ticket_id FROM ${q.seats} ORDER BY 1, 2`),
    payments: await sql(
      `SELECT ticket_id, status, refunded_at::text, transaction_id::text FROM ${q.transactions}
       ORDER BY 1`,
    ),
  };
}

for (const batchSize of ["1", "5000"]) {
  Deno.test(`consumer.ts applies cancellations once at --batch-size ${batchSize}: seats freed and resold, refunds, UNKNOWN_TICKET, bad cancels; a replay changes nothing; verify checks it`, async () => {
    await withPipeline("e2e_cancel", async ({ connection, topic, table, q }) => {
      await ensureTopic(createKafka(connection.kafka), topic, 1);
      const t = tickets(21);
      const buy = (x: Ticket): [string, string] => [x.ticket_id, JSON.stringify(x)];
      const messages: [string, string][] = [
        buy(t.a), // 0
        buy(t.b), // 1
        [t.a.ticket_id, cancel(t.a.ticket_id, 1)], // 2: a's seats A1, A2 free
        buy(t.c), // 3: A2 resold
        [t.a.ticket_id, cancel(t.a.ticket_id, 2, "again")], // 4: a duplicate
        ["ghost", cancel("ghost", 1)], // 5: UNKNOWN_TICKET
        [t.b.ticket_id, cancel(t.b.ticket_id, 1).replace("10:01:00Z", "10:61:00Z")], // 6
        [t.b.ticket_id, JSON.stringify({ type: "cancel", ticket_id: t.b.ticket_id })], // 7
        ["someone-else", cancel(t.b.ticket_id, 1)], // 8: BAD_KEY
        buy(t.d), // 9: B1 still b's: SEAT_TAKEN
        [t.b.ticket_id, cancel(t.b.ticket_id, 3)], // 10
        buy(t.e), // 11: B1 resold
        [t.f.ticket_id, JSON.stringify({ type: "purchase", ...t.f })], // 12
        [t.f.ticket_id, cancel(t.f.ticket_id, 4)], // 13
        buy(t.f), // 14: the cancelled ticket again: a duplicate, C1 stays free
      ];
      await kcatProduce(topic, messages);
      const creds = await writeStackCreds();
      const run = await runScript(
        "consumer.ts",
        consumerArgs({ creds, topic, table }, "--batch-size", batchSize, "--idle-timeout", "2"),
      );
      assert.equal(run.code, 0, run.stderr);
      assert.match(
        run.stdout,
        /consumed 15 messages .* stored 5, cancelled 3, duplicates 2, conflicts 0, dead letters 5 \(1 SEAT_TAKEN, 1 UNKNOWN_TICKET\)/,
      );
      const letters = await sql<{ offset: string; reason: string; detail: string }>(
        `SELECT "offset", reason, detail FROM ${q.deadLetters} WHERE target_table = $1
         ORDER BY "offset"`,
        [table],
      );
      assert.deepEqual(letters.map((l) => [Number(l.offset), l.reason]), [
        [5, "UNKNOWN_TICKET"],
        [6, "BAD_VALUE"],
        [7, "MISSING_FIELD"],
        [8, "BAD_KEY"],
        [9, "SEAT_TAKEN"],
      ]);
      assert.match(letters[0]!.detail, /ticket ghost is not stored/);
      assert.match(letters[1]!.detail, /^cancelled_at has minute 61; minutes are 00-59/);
      assert.equal(letters[2]!.detail, "missing field cancelled_at");
      const state = await tablesOf(q);
      const status = Object.fromEntries(state.tickets.map((r) => [r.ticket_id, r.status]));
      assert.deepEqual(status, {
        [t.a.ticket_id]: "cancelled",
        [t.b.ticket_id]: "cancelled",
        [t.c.ticket_id]: "purchased",
        [t.e.ticket_id]: "purchased",
        [t.f.ticket_id]: "cancelled",
      });
      const a = state.tickets.find((r) => r.ticket_id === t.a.ticket_id)!;
      assert.deepEqual([a.cancelled_at, a.cancel_reason], [
        "2026-04-01 10:01:00+00",
        "plans changed",
      ]);
      const show = showId(t.a);
      assert.deepEqual(state.seats, [
        { show_id: show, seat: "A2", ticket_id: t.c.ticket_id },
        { show_id: show, seat: "B1", ticket_id: t.e.ticket_id },
      ]);
      const paid = Object.fromEntries(state.payments.map((p) => [p.ticket_id, p.status]));
      assert.deepEqual(paid, {
        [t.a.ticket_id]: "REFUNDED",
        [t.b.ticket_id]: "REFUNDED",
        [t.c.ticket_id]: "PAID",
        [t.e.ticket_id]: "PAID",
        [t.f.ticket_id]: "REFUNDED",
      });

      const report = await verifyPipeline({ connection, topic, table });
      assert.ok(report.ok, JSON.stringify(report));
      assert.deepEqual([report.cancels, report.cancelled, report.notTickets], [6, 3, 2]);

      // a replay under a new group changes no ticket, seat or payment
      const replay = await runScript(
        "consumer.ts",
        consumerArgs(
          { creds, topic, table },
          "--batch-size",
          batchSize,
          "--idle-timeout",
          "2",
          "--group-id",
          `replay_${table}`,
        ),
      );
      assert.equal(replay.code, 0, replay.stderr);
      assert.match(
        replay.stdout,
        /stored 0, duplicates 10, conflicts 0, dead letters 5/,
      );
      assert.deepEqual(await tablesOf(q), state);

      // verify names a cancelled ticket that holds a seat, lacks its refund, or has no cancel
      await sql(`INSERT INTO ${q.seats} VALUES ($1, 'A1', $2)`, [show, t.a.ticket_id]);
      await sql(`UPDATE ${q.transactions} SET status = 'PAID' WHERE ticket_id = $1`, [
        t.f.ticket_id,
      ]);
      await sql(`UPDATE ${q.tickets} SET status = 'cancelled' WHERE ticket_id = $1`, [
        t.c.ticket_id,
      ]);
      await sql(`UPDATE ${q.tickets} SET status = 'purchased' WHERE ticket_id = $1`, [
        t.b.ticket_id,
      ]);
      const broken = await verifyPipeline({ connection, topic, table });
      assert.equal(broken.ok, false);
      assert.deepEqual(
        broken.cancelMismatches.sort(),
        [
          `${t.a.ticket_id} (cancelled but holds 1 seats)`,
          `${t.b.ticket_id} (not cancelled)`,
          `${t.c.ticket_id} (cancelled but holds 1 seats)`,
          `${t.c.ticket_id} (cancelled without a cancellation)`,
          `${t.c.ticket_id} (cancelled without a refund)`,
          `${t.f.ticket_id} (cancelled without a refund)`,
        ].sort(),
      );
    });
  });
}

Deno.test("db_setup adds status, cancelled_at, cancel_reason and refunded_at to tables made before cancellations; their tickets can be cancelled", async () => {
  await withPipeline("e2e_cancel_migrate", async ({ connection, table, q }) => {
    await sql(`ALTER TABLE ${q.tickets} DROP COLUMN status, DROP COLUMN cancelled_at,
      DROP COLUMN cancel_reason`);
    await sql(`ALTER TABLE ${q.transactions} DROP COLUMN refunded_at`);
    const [old] = Object.values(tickets(22));
    const db = await createPool({
      uri: connection.postgresUri,
      certPath: connection.kafka.certPath,
    });
    const client = await db.pool.connect();
    try {
      const sink = sinkStatements(q);
      // the COPY path names no state column: a table of the old layout takes it
      const stored = await writeBatch(client, sink, ticketBatch(table, 0n, [old!]));
      assert.equal(stored.stored, 1);
      await setupDatabase(connection, { schema: "public", table });
      await setupDatabase(connection, { schema: "public", table }); // idempotent
      assert.deepEqual(await sql(`SELECT status, cancelled_at FROM ${q.tickets}`), [
        { status: "purchased", cancelled_at: null },
      ]);
      const batch = {
        ...ticketBatch(table, 1n, []),
        nextOffset: 2n,
        cancels: [{
          offset: "1",
          cancel: {
            type: "cancel" as const,
            ticket_id: old!.ticket_id,
            cancelled_at: "2026-01-01T00:00:00Z",
            reason: "migrated",
          },
          value: new Uint8Array([1]),
        }],
      };
      const result = await writeBatch(client, sink, batch);
      assert.equal(result.cancelled, 1);
      const [row] = await sql<{ status: string; seats: number; refund: string }>(
        `SELECT t.status, (SELECT count(*)::int FROM ${q.seats}) AS seats, p.status AS refund
         FROM ${q.tickets} t JOIN ${q.transactions} p USING (ticket_id)`,
      );
      assert.deepEqual(row, { status: "cancelled", seats: 0, refund: "REFUNDED" });
    } finally {
      client.release();
      await db.pool.end();
    }
  });
});
