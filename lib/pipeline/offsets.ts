/**
 * The group's stored offsets against the topic's log: where each partition stands, whether the
 * topic is drained, the lag, `--reset-offsets`, and the error for an offset past the log's end.
 * @module
 */
import { AppError } from "../errors.ts";
import type { Admin } from "../kafka/kafka.ts";
import { log } from "../log.ts";
import type { Database } from "../postgres/postgres.ts";
import type { QualifiedNames } from "../postgres/schema.ts";
import { SKIPPED_REASON, storedOffsets } from "./sink.ts";

/** Where the pipeline's offsets live and whose they are. */
export interface OffsetStore {
  db: Database;
  q: QualifiedNames;
  admin: Admin;
  topic: string;
  groupId: string;
  /** Unquoted ticket table, recorded with marker dead letters. */
  table: string;
}

/** One partition: the group's stored offset (undefined if none) and the log's bounds. */
export interface PartitionProgress {
  partition: number;
  stored: bigint | undefined;
  low: bigint;
  high: bigint;
}

/** The stored offsets of every partition of the topic, beside the log's bounds. */
export async function topicProgress(s: OffsetStore): Promise<PartitionProgress[]> {
  const [stored, offsets] = await Promise.all([
    storedOffsets(s.db.pool, s.q, s.groupId, s.topic),
    s.admin.fetchTopicOffsets(s.topic),
  ]);
  return offsets.map((o) => ({
    partition: o.partition,
    stored: stored.get(o.partition),
    low: BigInt(o.low),
    high: BigInt(o.high),
  }));
}

/** Messages not yet stored, per partition (a new group starts at the log's start). */
export function lagOf(progress: PartitionProgress[]): Record<string, number> {
  return Object.fromEntries(
    progress.map((p) => [p.partition, Math.max(0, Number(p.high - (p.stored ?? p.low)))]),
  );
}

/**
 * The partitions whose stored offset is below the high watermark, as `2 (at 10 of 50)`; throws
 * {@linkcode pastTheEnd} for a stored offset above it.
 */
export function undrained(s: OffsetStore, progress: PartitionProgress[]): string[] {
  for (const p of progress) {
    if (p.stored !== undefined && p.stored > p.high) {
      throw pastTheEnd(s, p.partition, p.stored, p.high);
    }
  }
  return progress.filter((p) => (p.stored ?? p.low) < p.high)
    .map((p) => `${p.partition} (at ${p.stored ?? p.low} of ${p.high})`);
}

/** The error for a stored offset above the log's end: the topic was recreated or truncated. */
export function pastTheEnd(
  s: Pick<OffsetStore, "topic" | "groupId">,
  partition: number,
  stored: bigint,
  high: bigint,
): AppError {
  return new AppError(
    "KAFKA",
    `topic "${s.topic}" partition ${partition}: group ${s.groupId} stored offset ${stored}, but ` +
      `the log ends at ${high}: the topic was deleted and recreated, or truncated. Nothing was ` +
      `stored. To read it from the start run the consumer once with --reset-offsets earliest ` +
      `(or latest for new messages only)`,
  );
}

/**
 * `--reset-offsets`: moves the stored offsets to the log's start or end, in one transaction, and
 * says what it did. A skip (`latest`) is recorded as a SKIPPED marker dead letter on the last
 * skipped offset, which is also what the position check finds there later.
 */
export async function resetStoredOffsets(
  s: OffsetStore,
  to: "earliest" | "latest",
): Promise<Record<string, { from: string | null; to: string }>> {
  const offsets = await s.admin.fetchTopicOffsets(s.topic);
  const done: Record<string, { from: string | null; to: string }> = {};
  const client = await s.db.pool.connect();
  try {
    await client.query(s.db.begin);
    const stored = await storedOffsets(client, s.q, s.groupId, s.topic);
    for (const o of offsets) {
      const [low, high] = [BigInt(o.low), BigInt(o.high)];
      const from = stored.get(o.partition);
      const target = to === "earliest" ? low : high;
      await client.query(
        `INSERT INTO ${s.q.offsets} (group_id, topic, partition, next_offset)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (group_id, topic, partition)
         DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now(),
           write_id = NULL, write_counts = NULL`,
        [s.groupId, s.topic, o.partition, target.toString()],
      );
      const start = from !== undefined && from >= low && from <= high ? from : low;
      if (to === "latest" && high > start) {
        await client.query(
          `INSERT INTO ${s.q.deadLetters} (group_id, target_table, topic, partition, "offset",
             reason, detail)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
          [
            s.groupId,
            s.table,
            s.topic,
            o.partition,
            (high - 1n).toString(),
            SKIPPED_REASON,
            `offsets ${start}..${high - 1n} (${high - start} messages) skipped by ` +
            `--reset-offsets latest`,
          ],
        );
      }
      done[o.partition] = { from: from?.toString() ?? null, to: target.toString() };
      log(
        "info",
        `--reset-offsets ${to}: topic "${s.topic}" partition ${o.partition} of group ` +
          `${s.groupId}: stored offset ${from ?? "(none)"} -> ${target}`,
      );
    }
    await client.query("COMMIT");
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  } finally {
    client.release();
  }
  return done;
}
