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
 * partition's `$4` and at most its bound, the first `$5` of them in offset order: the bound is
 * the least of the log's start (`$3`) and every stored offset of the partition in the offsets
 * table (whatever group or table: a group left behind holds pruning back). Returns the count
 * and, per partition, its bound, the cancellations it looked at and the last one's offset.
 */
function pruneSql(q: QualifiedNames): string {
  return `WITH bound AS (
      SELECT l.partition, l.after, LEAST(l.low, (SELECT min(o.next_offset) FROM ${q.offsets} o
          WHERE o.topic = $1 AND o.partition = l.partition)) AS upto
      FROM unnest($2::int[], $3::bigint[], $4::bigint[]) AS l(partition, low, after)
    ), picked AS (
      SELECT b.partition, t.*
      FROM bound b CROSS JOIN LATERAL (
        SELECT t.ticket_id, t.theater, t.movie, t.showtime, t.seats, t.cancel_offset
        FROM ${q.tickets} t
        WHERE t.cancel_topic = $1 AND t.cancel_partition = b.partition
          AND t.cancel_offset > b.after AND t.cancel_offset <= b.upto
        ORDER BY t.cancel_offset LIMIT $5
      ) t
    ), gone AS (
      SELECT ${showIdSql("p.theater", "p.movie", "p.showtime")} AS show_id, x.seat, p.ticket_id
      FROM picked p CROSS JOIN LATERAL unnest(string_to_array(p.seats, ',')) AS x(seat)
    ), pruned AS (
      DELETE FROM ${q.freedSeats} f USING gone g
      WHERE (f.show_id, f.seat, f.ticket_id) = (g.show_id, g.seat, g.ticket_id)
      RETURNING 1
    )
    SELECT (SELECT count(*) FROM pruned)::int AS pruned, b.partition, b.upto::text AS upto,
      count(p.cancel_offset)::int AS looked, max(p.cancel_offset)::text AS last
    FROM bound b LEFT JOIN picked p USING (partition)
    GROUP BY b.partition, b.upto`;
}

/** Cancellations a pass looks at per partition, at most: each statement stays short. */
export const PRUNE_BATCH = 10_000;

/** What a prune pass did. */
export interface PrunePass {
  /** Freed seats deleted. */
  pruned: number;
  /** True when a partition has more to look at below its bound: pass again soon. */
  more: boolean;
}

/** Prunes freed seats no replay can read (see the module doc), a pass at a time. */
export class FreedSeatsPruner {
  readonly #store: OffsetStore;
  readonly #sql: string;
  readonly #batch: number;
  /** Per partition, how far the passes got: cancellations up to it are pruned already. */
  readonly #done = new Map<number, bigint>();

  constructor(store: OffsetStore, batch = PRUNE_BATCH) {
    this.#store = store;
    this.#sql = pruneSql(store.q);
    this.#batch = batch;
  }

  /** One pass over the topic's partitions. */
  async prune(): Promise<PrunePass> {
    const { admin, db, topic } = this.#store;
    const logs = await admin.fetchTopicOffsets(topic);
    const { rows } = await db.pool.query<
      { pruned: number; partition: number; upto: string; looked: number; last: string | null }
    >(this.#sql, [
      topic,
      logs.map((o) => o.partition),
      logs.map((o) => o.low),
      logs.map((o) => (this.#done.get(o.partition) ?? -1n).toString()),
      this.#batch,
    ]);
    let more = false;
    for (const row of rows) {
      const upto = BigInt(row.upto);
      const done = this.#done.get(row.partition);
      if (done !== undefined && upto < done) {
        // the bound went down (the topic recreated, a group reset): nothing was looked at;
        // the next pass covers the partition from its start
        this.#done.set(row.partition, -1n);
        more = true;
      } else if (row.looked >= this.#batch) {
        this.#done.set(row.partition, BigInt(row.last!)); // more below the bound: go on from here
        more = true;
      } else {
        this.#done.set(row.partition, upto);
      }
    }
    return { pruned: rows[0]?.pruned ?? 0, more };
  }
}

/** Seconds between prune passes: the log's start moves a segment at a time. */
export const PRUNE_SECONDS = 300;

/** Seconds between the passes of a pruner catching up (a partition had more to look at). */
const CATCH_UP_SECONDS = 1;

/**
 * Runs prune passes until stopped: the first 30 s after the start, then every
 * {@linkcode PRUNE_SECONDS}, or every {@linkcode CATCH_UP_SECONDS} while a pass left more to
 * look at. A pass that fails is logged and tried again at the next (pruning is housekeeping: it
 * never stops the run).
 */
export function startPruning(store: OffsetStore, everyMs = PRUNE_SECONDS * 1000): () => void {
  const pruner = new FreedSeatsPruner(store);
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  const pass = async () => {
    let next = everyMs;
    try {
      const { pruned, more } = await pruner.prune();
      if (pruned > 0) {
        log("info", `pruned ${pruned} freed seat(s) of cancellations no replay can reach`);
      }
      if (more) next = CATCH_UP_SECONDS * 1000;
    } catch (error) {
      // a pass cut short by the run's end (its pool closed) is not worth a warning
      if (!stopped) {
        log("warn", `could not prune freed seats (tried again later): ${messageOf(error)}`);
      }
    }
    if (!stopped) timer = setTimeout(pass, next);
  };
  timer = setTimeout(pass, Math.min(everyMs, 30_000));
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
