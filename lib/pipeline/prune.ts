/**
 * Keeps `<table>_freed_seats` from growing without end. A freed seat (a seat a cancelled ticket
 * held) is read only when a purchase is replayed from before that cancellation (the careful path
 * judges it as of its position): by a batch starting below the cancellation's offset. No batch
 * starts below the log's start (nothing can be read there) nor below a group's stored offset
 * (its compare-and-set would fail), so the freed seats of cancellations at or below both bounds
 * can go.
 * @module
 */
import { log } from "../log.ts";
import { messageOf } from "../errors.ts";
import { showIdSql } from "../model/columns.ts";
import type { QualifiedNames } from "../postgres/schema.ts";
import type { OffsetStore } from "./offsets.ts";

/**
 * Deletes the freed seats of the topic's cancellations in a partition at offsets above the
 * partition's `$4` and at most its bound: the least of the log's start (`$3`) and every stored
 * offset of the partition in the offsets table (whatever group or table: a group left behind
 * holds pruning back). Returns the count and each partition's bound.
 */
function pruneSql(q: QualifiedNames): string {
  return `WITH bound AS (
      SELECT l.partition, l.after, LEAST(l.low, (SELECT min(o.next_offset) FROM ${q.offsets} o
          WHERE o.topic = $1 AND o.partition = l.partition)) AS upto
      FROM unnest($2::int[], $3::bigint[], $4::bigint[]) AS l(partition, low, after)
    ), gone AS (
      SELECT ${showIdSql("t.theater", "t.movie", "t.showtime")} AS show_id, x.seat, t.ticket_id
      FROM bound b
      JOIN ${q.tickets} t ON t.cancel_topic = $1 AND t.cancel_partition = b.partition
        AND t.cancel_offset > b.after AND t.cancel_offset <= b.upto
      CROSS JOIN LATERAL unnest(string_to_array(t.seats, ',')) AS x(seat)
    ), pruned AS (
      DELETE FROM ${q.freedSeats} f USING gone g
      WHERE (f.show_id, f.seat, f.ticket_id) = (g.show_id, g.seat, g.ticket_id)
      RETURNING 1
    )
    SELECT (SELECT count(*) FROM pruned)::int AS pruned,
      array_agg(b.partition) AS partitions, array_agg(b.upto::text) AS bounds FROM bound b`;
}

/** Prunes freed seats no replay can read (see the module doc), a pass at a time. */
export class FreedSeatsPruner {
  readonly #store: OffsetStore;
  readonly #sql: string;
  /** Per partition, the bound of the last pass: cancellations up to it are pruned already. */
  readonly #done = new Map<number, bigint>();

  constructor(store: OffsetStore) {
    this.#store = store;
    this.#sql = pruneSql(store.q);
  }

  /** One pass over the topic's partitions; returns how many freed seats it deleted. */
  async prune(): Promise<number> {
    const { admin, db, topic } = this.#store;
    const logs = await admin.fetchTopicOffsets(topic);
    const { rows } = await db.pool.query<
      { pruned: number; partitions: number[] | null; bounds: string[] | null }
    >(this.#sql, [
      topic,
      logs.map((o) => o.partition),
      logs.map((o) => o.low),
      logs.map((o) => (this.#done.get(o.partition) ?? -1n).toString()),
    ]);
    const { pruned, partitions, bounds } = rows[0]!;
    (partitions ?? []).forEach((partition, i) => {
      const bound = BigInt(bounds![i]!);
      const done = this.#done.get(partition);
      // a bound that went down (the topic recreated, a group reset) pruned nothing this pass;
      // the next covers the partition from its start
      this.#done.set(partition, done !== undefined && bound < done ? -1n : bound);
    });
    return pruned;
  }
}

/** Seconds between prune passes: the log's start moves a segment at a time. */
export const PRUNE_SECONDS = 300;

/**
 * Runs a prune pass now and every {@linkcode PRUNE_SECONDS} until stopped; a pass that fails is
 * logged and tried again at the next (pruning is housekeeping: it never stops the run).
 */
export function startPruning(store: OffsetStore, everyMs = PRUNE_SECONDS * 1000): () => void {
  const pruner = new FreedSeatsPruner(store);
  let running = false, stopped = false;
  const pass = async () => {
    if (running || stopped) return;
    running = true;
    try {
      const pruned = await pruner.prune();
      if (pruned > 0) {
        log("info", `pruned ${pruned} freed seat(s) of cancellations no replay can reach`);
      }
    } catch (error) {
      // a pass cut short by the run's end (its pool closed) is not worth a warning
      if (!stopped) {
        log("warn", `could not prune freed seats (tried again later): ${messageOf(error)}`);
      }
    } finally {
      running = false;
    }
  };
  const first = setTimeout(pass, Math.min(everyMs, 30_000));
  const timer = setInterval(pass, everyMs);
  return () => {
    stopped = true;
    clearTimeout(first);
    clearInterval(timer);
  };
}
