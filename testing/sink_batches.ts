/**
 * Batches of purchases and cancellations for the sink's tests, and their writing in order, as
 * one partition of one consumer group would write them.
 * @module
 */
import assert from "node:assert/strict";
import type pg from "pg";
import type { QualifiedNames } from "../lib/postgres/schema.ts";
import {
  addWriteCounts,
  type Batch,
  type BatchResult,
  noWriteCounts,
  sinkStatements,
  writeBatch,
  type WriteCounts,
} from "../lib/pipeline/sink.ts";
import type { Ticket } from "../lib/model/columns.ts";
import { TicketGenerator } from "../lib/model/generator.ts";
import { type Cancel, encodeCancel } from "../lib/model/message.ts";
import { encodeTicket } from "../lib/model/ticket.ts";

/** A message of a test batch: a ticket (purchase) or a cancellation. */
export type Msg = Ticket | Cancel;

/** True for a cancellation. */
export const isCancel = (m: Msg): m is Cancel => (m as Cancel).type === "cancel";

/** A cancellation of ticket `id`, at second 0.5 of minute `minute` of 2026-04-01 10:00 UTC. */
export function cancelOf(id: string, minute = 0, reason = "changed plans"): Cancel {
  return {
    type: "cancel",
    ticket_id: id,
    cancelled_at: `2026-04-01T10:${String(minute).padStart(2, "0")}:00.5Z`,
    reason,
  };
}

/** The messages from offset `from` on as one batch of partition 0 of topic "t", for `group`. */
export function batchOf(table: string, group: string, from: bigint, msgs: Msg[]): Batch {
  const batch: Batch = {
    groupId: group,
    table,
    topic: "t",
    partition: 0,
    expectedOffset: from,
    nextOffset: from + BigInt(msgs.length),
    rows: [],
    cancels: [],
    deadLetters: [],
  };
  msgs.forEach((m, i) => {
    const offset = String(from + BigInt(i));
    if (isCancel(m)) batch.cancels!.push({ cancel: m, offset, value: encodeCancel(m) });
    else batch.rows.push({ ticket: m, offset, value: encodeTicket(m) });
  });
  return batch;
}

/**
 * Writes `msgs` in batches of `size` for `group`, each of which must commit; their results. Each
 * batch is then written again under the same write id, as a try whose reply was lost would be:
 * it must find the commit and read back the same counts (and, its claim failing, write nothing).
 */
export async function writeBatches(
  client: pg.PoolClient,
  q: QualifiedNames,
  table: string,
  group: string,
  msgs: Msg[],
  size: number,
): Promise<BatchResult[]> {
  const sql = sinkStatements(q);
  const results: BatchResult[] = [];
  for (let from = 0; from < msgs.length; from += size) {
    const batch = {
      ...batchOf(table, group, BigInt(from), msgs.slice(from, from + size)),
      writeId: crypto.randomUUID(),
    };
    const result = await writeBatch(client, sql, batch);
    assert.equal(result.committed, true);
    assert.deepEqual(await writeBatch(client, sql, batch), result, `the retry of ${from}`);
    results.push(result);
  }
  return results;
}

/** {@linkcode writeBatches}, its batches' counts added up. */
export async function writeCounted(
  ...args: Parameters<typeof writeBatches>
): Promise<WriteCounts> {
  const total = noWriteCounts();
  for (const result of await writeBatches(...args)) addWriteCounts(total, result);
  return total;
}

/** Tickets of one show (generated from `seed`), one per entry of `seats`, with those seats. */
export function showTickets(seed: number, seats: string[][]): Ticket[] {
  const gen = new TicketGenerator({ seed });
  const first = gen.next();
  return seats.map((s, i) => ({
    ...(i === 0 ? first : gen.next()),
    theater: first.theater,
    movie: first.movie,
    showtime: first.showtime,
    seats: s,
  }));
}
