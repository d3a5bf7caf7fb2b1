/** Cancellations in the sink: applied once, in offset order with the purchases, whatever the batch. */
import assert from "node:assert/strict";
import fc from "fast-check";
import type pg from "pg";
import { setupDatabase } from "../postgres/setup.ts";
import { createPool } from "../postgres/postgres.ts";
import { type QualifiedNames, qualify } from "../postgres/schema.ts";
import { sinkStatements, writeBatch } from "./sink.ts";
import {
  batchOf,
  cancelOf,
  isCancel,
  type Msg,
  showTickets,
  writeCounted,
} from "../../testing/sink_batches.ts";
import { stackConnection, stackInfo, uniqueSuffix } from "../../testing/testing.ts";
import { showId } from "../model/columns.ts";

/** What the tables hold for one pipeline, in a form to compare. */
async function stateOf(client: pg.PoolClient, q: QualifiedNames, group: string) {
  const tickets = await client.query(
    `SELECT ticket_id, status, to_char(cancelled_at AT TIME ZONE 'UTC', 'HH24:MI:SS.MS') AS at,
       cancel_reason FROM ${q.tickets} ORDER BY ticket_id`,
  );
  const seats = await client.query(
    `SELECT show_id::text || '/' || seat AS seat, ticket_id FROM ${q.seats} ORDER BY 1`,
  );
  const payments = await client.query(
    `SELECT ticket_id, status, refunded_at IS NOT NULL AS refunded FROM ${q.transactions}
     ORDER BY ticket_id`,
  );
  const letters = await client.query(
    `SELECT "offset"::int AS offset, reason FROM ${q.deadLetters} WHERE group_id = $1
     ORDER BY "offset"`,
    [group],
  );
  return {
    tickets: tickets.rows,
    seats: seats.rows,
    payments: payments.rows,
    letters: letters.rows,
  };
}

async function withTable(
  fn: (table: string, q: QualifiedNames, client: pg.PoolClient) => Promise<void>,
) {
  const connection = await stackConnection();
  const table = `cancel_${uniqueSuffix()}`;
  await setupDatabase(connection, { schema: "public", table });
  const q = qualify({ schema: "public", table });
  const db = await createPool({ uri: stackInfo().postgresUri, certPath: stackInfo().certPath });
  const client = await db.pool.connect();
  try {
    await fn(table, q, client);
  } finally {
    client.release();
    await db.pool.query(
      `DROP TABLE ${q.tickets}, ${q.seats}, ${q.freedSeats}, ${q.transactions}`,
    );
    await db.pool.query(`DELETE FROM ${q.offsets} WHERE group_id LIKE $1`, [`%${table}%`]);
    await db.pool.query(`DELETE FROM ${q.conflicts} WHERE target_table = $1`, [table]);
    await db.pool.query(`DELETE FROM ${q.deadLetters} WHERE target_table = $1`, [table]);
    await db.pool.end();
  }
}

for (const size of [1, 2, 5000]) {
  Deno.test(`writeBatch() cancels a ticket once: seats freed, payment refunded, at batch size ${size}`, async () => {
    await withTable(async (table, q, client) => {
      const [a, b, c] = showTickets(11, [["A1", "A2"], ["B1"], ["A2", "C1"]]);
      // c wants A2 before a's cancellation (refused) and again after it (a resale)
      const c2 = { ...c!, ticket_id: `${c!.ticket_id}x` };
      const msgs: Msg[] = [
        a!,
        b!,
        c!,
        cancelOf(a!.ticket_id, 1),
        cancelOf(a!.ticket_id, 2, "again"),
        cancelOf("nobody"),
        c2,
        cancelOf(b!.ticket_id, 3),
        a!, // the cancelled ticket's purchase again: no seat back
      ];
      const counts = await writeCounted(client, q, table, `g_${table}`, msgs, size);
      assert.deepEqual(counts, {
        stored: 3,
        duplicates: 2,
        conflicts: 0,
        deadLetters: 2,
        seatTaken: 1,
        cancelled: 2,
        unknownTicket: 1,
        rejected: 0,
      });
      const state = await stateOf(client, q, `g_${table}`);
      const show = showId(a!);
      assert.deepEqual(
        state.tickets.map((t) => [t.ticket_id, t.status, t.at, t.cancel_reason]),
        [
          [a!.ticket_id, "cancelled", "10:01:00.500", "changed plans"],
          [b!.ticket_id, "cancelled", "10:03:00.500", "changed plans"],
          [c2.ticket_id, "purchased", null, null],
        ].sort((x, y) => x[0]! < y[0]! ? -1 : 1),
      );
      assert.deepEqual(state.seats, [
        { seat: `${show}/A2`, ticket_id: c2.ticket_id },
        { seat: `${show}/C1`, ticket_id: c2.ticket_id },
      ]);
      assert.deepEqual(
        state.payments.map((p) => [p.ticket_id, p.status, p.refunded]),
        [
          [a!.ticket_id, "REFUNDED", true],
          [b!.ticket_id, "REFUNDED", true],
          [c2.ticket_id, "PAID", false],
        ].sort((x, y) => x[0]! < y[0]! ? -1 : 1),
      );
      assert.deepEqual(state.letters, [{ offset: 2, reason: "SEAT_TAKEN" }, {
        offset: 5,
        reason: "UNKNOWN_TICKET",
      }]);
      // a replay under a new group changes no ticket, seat or payment
      const again = await writeCounted(client, q, table, `g2_${table}`, msgs, size);
      assert.equal(again.stored + again.cancelled, 0);
      const replayed = await stateOf(client, q, `g2_${table}`);
      assert.deepEqual(
        [replayed.tickets, replayed.seats, replayed.payments],
        [state.tickets, state.seats, state.payments],
      );
    });
  });
}

Deno.test("writeBatch() refuses a cancellation before its purchase (UNKNOWN_TICKET) and stores the purchase", async () => {
  await withTable(async (table, q, client) => {
    const [a] = showTickets(12, [["D4"]]);
    const counts = await writeCounted(
      client,
      q,
      table,
      `g_${table}`,
      [cancelOf(a!.ticket_id), a!],
      10,
    );
    assert.deepEqual([counts.stored, counts.cancelled, counts.unknownTicket], [1, 0, 1]);
    const state = await stateOf(client, q, `g_${table}`);
    assert.deepEqual(state.tickets.map((t) => t.status), ["purchased"]);
    assert.equal(state.seats.length, 1);
  });
});

Deno.test("writeBatch() cancels a ticket stored before the cancellation's batch, freeing seats the batch does not name", async () => {
  await withTable(async (table, q, client) => {
    const [a, b] = showTickets(13, [["E1", "E2", "E3"], ["E2"]]);
    await writeCounted(client, q, table, `g_${table}`, [a!], 1);
    const sql = sinkStatements(q);
    const batch = batchOf(table, `g_${table}`, 1n, [cancelOf(a!.ticket_id), b!]);
    const result = await writeBatch(client, sql, batch);
    assert.deepEqual([result.cancelled, result.stored, result.seatTaken], [1, 1, 0]);
    const state = await stateOf(client, q, `g_${table}`);
    assert.deepEqual(state.seats.map((s) => s.ticket_id), [b!.ticket_id]);
  });
});

/** The tables as the reference model gives them. */
function comparable(state: Awaited<ReturnType<typeof stateOf>>) {
  return {
    tickets: state.tickets.map((t) => [t.ticket_id, t.status]),
    seats: state.seats,
    payments: state.payments.map((p) => [p.ticket_id, p.status]),
    letters: state.letters,
  };
}

/** One step of a random run: a purchase of ticket `i` (version `v`), or a cancellation of `i`. */
type Step = { buy: true; i: number; v: number } | { buy: false; i: number };

/** What the reference model keeps between runs: the database's side of the pipeline. */
interface ModelState {
  /** Stored tickets: the offset of the purchase stored and of the cancellation applied. */
  stored: Map<string, { bought: number; cancelled?: number }>;
  /** Seats held now, `show/seat` -> ticket_id. */
  seats: Map<string, string>;
  /** Seats cancelled tickets held, `show/seat` -> [ticket_id, bought, cancelled]. */
  freed: Map<string, [string, number, number][]>;
}

/**
 * The state a run of one partition (offsets from 0) must end in, message by message as the sink
 * promises, each judged as of its own offset: a purchase whose ticket is cancelled takes nothing;
 * one wanting a seat another ticket holds now, or a free seat a cancelled ticket held at its
 * offset (bought before it, cancelled after it), is SEAT_TAKEN; one of a stored ticket is a
 * duplicate or conflict; any other is stored with its seats. A cancellation of a ticket not
 * stored as of its offset (never, or from a later purchase) is UNKNOWN_TICKET, of a cancelled one
 * a duplicate; otherwise the ticket is cancelled, its seats freed and its payment refunded.
 * `state` carries a first run's tables into a replay under a new group.
 */
function reference(msgs: Msg[], state: ModelState = emptyModel()) {
  const { stored, seats, freed } = state;
  const letters: { offset: number; reason: string }[] = [];
  msgs.forEach((m, offset) => {
    const s = stored.get(m.ticket_id);
    if (isCancel(m)) {
      if (!s || s.bought > offset) letters.push({ offset, reason: "UNKNOWN_TICKET" });
      else if (s.cancelled === undefined) {
        s.cancelled = offset;
        for (const [seat, id] of seats) {
          if (id !== m.ticket_id) continue;
          seats.delete(seat);
          freed.set(seat, [...freed.get(seat) ?? [], [id, s.bought, offset]]);
        }
      }
      return;
    }
    if (s?.cancelled !== undefined) return;
    const key = (seat: string) => `${showId(m)}/${seat}`;
    const holder = (seat: string) =>
      seats.get(key(seat)) ??
        freed.get(key(seat))?.find(([, from, until]) => from < offset && offset < until)?.[0];
    if (m.seats.some((seat) => (holder(seat) ?? m.ticket_id) !== m.ticket_id)) {
      letters.push({ offset, reason: "SEAT_TAKEN" });
    } else if (!s) {
      stored.set(m.ticket_id, { bought: offset });
      for (const seat of m.seats) seats.set(key(seat), m.ticket_id);
    }
  });
  const ids = [...stored.keys()].sort();
  const cancelled = (id: string) => stored.get(id)!.cancelled !== undefined;
  return {
    tickets: ids.map((id) => [id, cancelled(id) ? "cancelled" : "purchased"]),
    seats: [...seats].map(([seat, ticket_id]) => ({ seat, ticket_id })).sort((x, y) =>
      x.seat < y.seat ? -1 : 1
    ),
    payments: ids.map((id) => [id, cancelled(id) ? "REFUNDED" : "PAID"]),
    letters,
  };
}

function emptyModel(): ModelState {
  return { stored: new Map(), seats: new Map(), freed: new Map() };
}

Deno.test("writeBatch() ends random interleavings of purchases and cancellations in the reference model's state, at batch sizes 1, 5000 and one between", async () => {
  await withTable(async (table, q, client) => {
    // six tickets of one show in two versions each (different seats), from four seats
    const labels = ["A1", "A2", "A3", "A4"];
    const base = showTickets(14, [[], [], [], [], [], []]);
    const seatSets = fc.uniqueArray(fc.constantFrom(...labels), { minLength: 1, maxLength: 2 });
    const step: fc.Arbitrary<Step> = fc.oneof(
      fc.record({ buy: fc.constant(true as const), i: fc.nat(5), v: fc.nat(1) }),
      fc.record({ buy: fc.constant(false as const), i: fc.nat(6) }),
    );
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(seatSets, seatSets), { minLength: 6, maxLength: 6 }),
        fc.array(step, { minLength: 1, maxLength: 25 }),
        fc.integer({ min: 2, max: 6 }),
        async (versions, steps, between) => {
          const msgs: Msg[] = steps.map((s) =>
            s.buy
              ? { ...base[s.i]!, seats: versions[s.i]![s.v]! }
              : cancelOf(s.i === 6 ? "never-bought" : base[s.i]!.ticket_id, s.i)
          );
          const model = emptyModel();
          const expected = reference(msgs, model);
          // the replay, from the first run's tables, must end in the same ones
          const replayed = reference(msgs, model);
          assert.deepEqual({ ...replayed, letters: [] }, { ...expected, letters: [] });
          // a batch boundary between a purchase and its cancellation, or within a resale
          const sizes = [1, 5000, between];
          for (const [k, size] of sizes.entries()) {
            await client.query(
              `DELETE FROM ${q.tickets}; DELETE FROM ${q.seats}; DELETE FROM ${q.transactions};
               DELETE FROM ${q.freedSeats}`,
            );
            const group = `g${run++}_${table}`;
            await writeCounted(client, q, table, group, msgs, size);
            const state = await stateOf(client, q, group);
            assert.deepEqual(comparable(state), expected, `batch size ${size}`);
            // a replay under a new group, at another batch size, changes no ticket, seat or
            // payment: it decides each message as the first run did
            const again = sizes[(k + 1) % sizes.length]!;
            const replay = `g${run++}_${table}`;
            await writeCounted(client, q, table, replay, msgs, again);
            assert.deepEqual(
              comparable(await stateOf(client, q, replay)),
              replayed,
              `batch size ${size}, replayed at ${again}`,
            );
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});
