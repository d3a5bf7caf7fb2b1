/**
 * Where this member stands in each assigned partition: loaded from the group's stored offset and
 * checked against the log (past its end: stop; below its start: a LOST marker; the message before
 * it: one this group stored), then moved by queueing offset ranges to the writer, and dropped
 * when another consumer fences it.
 * @module
 */
import type { KafkaMessage } from "kafkajs";
import { AppError } from "../errors.ts";
import { log } from "../log.ts";
import { type Batch, LOST_REASON, storedOffsets } from "./sink.ts";
import { type OffsetStore, pastTheEnd } from "./offsets.ts";
import type { BatchWriter } from "./writer.ts";

/**
 * Where this member is in one partition. `next` is the offset stored once the queued writes land
 * (the compare-and-set guard of the next write); `fetchFrom` is where the next fetch must start:
 * the same, except right after a load, when the fetch starts one message earlier so that message
 * can be checked against what this group stored (`check`).
 */
export interface PartitionState {
  next: bigint;
  fetchFrom: bigint;
  /** Offset of the message to compare with what is stored, before going on. */
  check?: bigint;
  /** Another consumer moved the stored offset: queued writes are dropped, the state reloaded. */
  fenced: boolean;
  /** An offset is stored, or a queued write creates it (see `Batch.offsetStored`). */
  offsetStored: boolean;
  /** A check of the log's bounds that the partition's next batch waits for. */
  pending?: Promise<void>;
}

const keyDecoder = new TextDecoder();

/** The positions of the partitions assigned to this member; see the module doc. */
export class Positions {
  readonly #o: {
    store: OffsetStore;
    writer: BatchWriter;
    onLoad?: (partition: number) => (next: bigint) => void;
  };
  readonly #positions = new Map<number, PartitionState>();
  /** Loads in progress, so that a partition is loaded once however many ask. */
  readonly #loading = new Map<number, Promise<PartitionState>>();
  /** Counts assignments: a load begun before the last one must not set a position. */
  #assignment = 0;

  /**
   * `onLoad` hears each load of a position begin its read of the stored offset; the function it
   * returns gets what the read found (the stored offset, or the log start without one) once the
   * position is set from it.
   */
  constructor(
    store: OffsetStore,
    writer: BatchWriter,
    onLoad?: (partition: number) => (next: bigint) => void,
  ) {
    this.#o = { store, writer, onLoad };
  }

  /** Forgets every position (a new assignment). */
  clear(): void {
    this.#positions.clear();
    this.#loading.clear();
    this.#assignment++;
  }

  /** The position in hand, if any. */
  get(partition: number): PartitionState | undefined {
    return this.#positions.get(partition);
  }

  /** True while `state` is the partition's position in hand (not replaced, not fenced away). */
  isCurrent(partition: number, state: PartitionState): boolean {
    return this.#positions.get(partition) === state;
  }

  /** The partition's log start and high watermark. */
  async bounds(partition: number): Promise<{ low: bigint; high: bigint }> {
    const { admin, topic } = this.#o.store;
    const o = (await admin.fetchTopicOffsets(topic)).find((x) => x.partition === partition);
    if (!o) throw new AppError("KAFKA", `topic "${topic}" has no partition ${partition}`);
    return { low: BigInt(o.low), high: BigInt(o.high) };
  }

  /** The partition's position: the one in hand, or loaded from the database and the log. */
  ensure(partition: number, heartbeat: () => Promise<void>): Promise<PartitionState> {
    const state = this.#positions.get(partition);
    if (state && !state.fenced) return Promise.resolve(state);
    let load = this.#loading.get(partition);
    if (!load) {
      load = this.#load(partition, heartbeat).finally(() => {
        if (this.#loading.get(partition) === load) this.#loading.delete(partition);
      });
      this.#loading.set(partition, load);
    }
    return load;
  }

  async #load(partition: number, heartbeat: () => Promise<void>): Promise<PartitionState> {
    const { store, writer } = this.#o;
    const assignment = this.#assignment;
    // Writes still queued from before a rebalance land (or are fenced) before we read the offset.
    await writer.settled(partition);
    const loaded = this.#o.onLoad?.(partition);
    const stored = (await writer.withRetry(
      "reading stored offsets",
      (client) => storedOffsets(client, store.q, store.groupId, store.topic),
      heartbeat,
    )).get(partition);
    const { low, high } = await this.bounds(partition);
    const state: PartitionState = {
      next: stored ?? low,
      fetchFrom: stored ?? low,
      // an assignment came meanwhile: the partition may be another member's now
      fenced: assignment !== this.#assignment,
      offsetStored: stored !== undefined,
    };
    if (state.fenced) return state;
    if (stored !== undefined && stored > high) throw pastTheEnd(store, partition, stored, high);
    if (stored !== undefined && stored < low) this.markLost(state, partition, low, heartbeat);
    else if (stored !== undefined && stored > low) state.check = state.fetchFrom = stored - 1n;
    this.#positions.set(partition, state);
    // what is stored, not `next`: markLost moves that before its write lands
    loaded?.(stored ?? low);
    return state;
  }

  /**
   * Queues the write of the offset range from `state.next` to `nextOffset` with the given rows,
   * cancellations and dead letters (none: the range holds no message), and moves `state.next`.
   */
  write(
    state: PartitionState,
    partition: number,
    nextOffset: bigint,
    heartbeat: () => Promise<void>,
    content: Pick<Batch, "rows" | "cancels" | "deadLetters"> = { rows: [], deadLetters: [] },
    lost = 0,
  ): void {
    const { store } = this.#o;
    const batch: Batch = {
      groupId: store.groupId,
      table: store.table,
      topic: store.topic,
      partition,
      expectedOffset: state.next,
      nextOffset,
      offsetStored: state.offsetStored,
      ...content,
    };
    this.#o.writer.enqueue(batch, {
      heartbeat,
      lost,
      isFenced: () => state.fenced,
      fence: () => this.#fence(partition, state),
    });
    state.next = nextOffset;
    state.offsetStored = true;
  }

  #fence(partition: number, state: PartitionState): void {
    state.fenced = true;
    if (this.isCurrent(partition, state)) this.#positions.delete(partition);
    log(
      "warn",
      `partition ${partition}: the stored offset is not where this member left it ` +
        `(another consumer moved it, or the database lost its last commits); re-reading it`,
    );
  }

  /**
   * Fences the positions whose stored offset is behind where this member's landed writes left
   * it (or gone), and returns their partitions. Only a database that lost its last commits (a
   * crash, a failover to a standby behind) moves an offset back; the next claim would find out,
   * but on a quiet partition no claim comes. An offset ahead was moved by the member the
   * partition is moving to: the rebalance deals with it. Partitions with writes queued or made
   * meanwhile are left to their claims.
   */
  async lostCommits(): Promise<number[]> {
    const { store, writer } = this.#o;
    const quiet = () =>
      [...this.#positions].filter(([partition, state]) =>
        !state.fenced && state.offsetStored && writer.idle(partition)
      );
    const seen = new Map(quiet().map(([partition, state]) => [partition, state.next]));
    if (seen.size === 0) return [];
    const stored = await writer.withRetry(
      "checking stored offsets",
      (client) => storedOffsets(client, store.q, store.groupId, store.topic),
      () => Promise.resolve(),
    );
    const lost: number[] = [];
    for (const [partition, state] of quiet()) {
      const at = stored.get(partition);
      if (seen.get(partition) !== state.next || (at !== undefined && at >= state.next)) continue;
      this.#fence(partition, state);
      lost.push(partition);
    }
    return lost;
  }

  /**
   * Retention deleted messages this group had not read (its stored offset is below the log's
   * start): says so, and queues a write that records the gap (a LOST marker dead letter) and
   * moves the stored offset to the log's start.
   */
  markLost(state: PartitionState, partition: number, low: bigint, heartbeat: () => Promise<void>) {
    const { topic, groupId } = this.#o.store;
    if (low <= state.next) {
      // only the message before the stored offset went (it was to be checked): nothing unread
      state.check = undefined;
      state.fetchFrom = state.next;
      return;
    }
    const count = low - state.next;
    const detail = `offsets ${state.next}..${low - 1n} (${count} messages) were deleted from ` +
      `the log (retention) before group ${groupId} read them`;
    log("warn", `topic "${topic}" partition ${partition}: ${detail}; going on at ${low}`);
    const marker = {
      offset: String(state.next),
      key: null,
      value: null,
      reason: LOST_REASON,
      detail,
    };
    this.write(
      state,
      partition,
      low,
      heartbeat,
      { rows: [], deadLetters: [marker] },
      Number(count),
    );
    state.fetchFrom = low;
    state.check = undefined;
  }

  /**
   * The message just before the stored offset must be one this group stored: a ticket whose id
   * is in the table, or a dead letter or conflict at that offset. Otherwise the offsets now name
   * other messages (the topic was recreated and refilled past the stored offset): stop loudly.
   */
  async checkStored(partition: number, m: KafkaMessage, heartbeat: () => Promise<void>) {
    const { q, topic, groupId, table } = this.#o.store;
    const key = m.key ? keyDecoder.decode(m.key) : "";
    const found = await this.#o.writer.withRetry(
      "checking the stored position",
      async (client) =>
        (await client.query(
          `SELECT 1 FROM ${q.tickets} WHERE ticket_id = $1
           UNION ALL SELECT 1 FROM ${q.deadLetters}
             WHERE group_id = $2 AND topic = $3 AND partition = $4 AND "offset" = $5
           UNION ALL SELECT 1 FROM ${q.conflicts}
             WHERE target_table = $6 AND topic = $3 AND partition = $4 AND "offset" = $5
           LIMIT 1`,
          [key.includes("\0") ? "" : key, groupId, topic, partition, m.offset, table],
        )).rowCount,
      heartbeat,
    );
    if (found) return;
    throw new AppError(
      "KAFKA",
      `topic "${topic}" partition ${partition}: the message at offset ${m.offset} is not one ` +
        `group ${groupId} stored (no such ticket, dead letter or conflict): the topic was ` +
        `probably deleted and recreated, so its offsets now name other messages. Nothing was ` +
        `stored. To read it from the start run the consumer once with --reset-offsets earliest ` +
        `(or latest for new messages only)`,
    );
  }
}
