/**
 * The consumer's Kafka side: where this member stands in each assigned partition (loaded from the
 * stored offsets and checked against the log), seeks when a fetch did not start there, fencing
 * reloads, and the cut of fetched messages into chunks, each covering an offset range, handed to
 * the writer. Offsets that hold no message (compaction, transaction markers, aborted messages)
 * are covered by the chunk that spans them.
 * @module
 */
import type { EachBatchPayload, KafkaMessage } from "kafkajs";
import { AppError } from "../errors.ts";
import type { Consumer } from "../kafka/kafka.ts";
import { log } from "../observe/log.ts";
import { type Batch, LOST_REASON, storedOffsets } from "./sink.ts";
import { type OffsetStore, pastTheEnd } from "./offsets.ts";
import { toRowsAndLetters } from "./transform.ts";
import type { BatchWriter } from "./writer.ts";

/** Options of {@linkcode KafkaSource}. */
export interface SourceOptions {
  store: OffsetStore;
  consumer: Consumer;
  writer: BatchWriter;
  /** Largest number of messages in one chunk (one transaction). */
  batchSize: number;
  /** Largest message accepted as a ticket, in bytes. */
  maxMessageBytes: number;
  /** Stop queueing once this many messages are queued or written. */
  maxMessages?: number;
  /** Aborted when the run ends: nothing new is queued. */
  stopping: AbortSignal;
  /** A check that runs apart from a batch failed: the run must end. */
  onError(error: unknown): void;
}

/**
 * Where this member is in one partition. `next` is the offset stored once the queued writes land
 * (the compare-and-set guard of the next write); `fetchFrom` is where the next fetch must start:
 * the same, except right after a load, when the fetch starts one message earlier so that message
 * can be checked against what this group stored (`check`).
 */
interface PartitionState {
  next: bigint;
  fetchFrom: bigint;
  /** Offset of the message to compare with what is stored, before going on. */
  check?: bigint;
  /** Another consumer moved the stored offset: queued writes are dropped, the state reloaded. */
  fenced: boolean;
  /** A check of the log's bounds that the partition's next batch waits for. */
  pending?: Promise<void>;
}

/** What KafkaJS reports after each fetched batch (END_BATCH_PROCESS). */
export interface BatchEndEvent {
  topic: string;
  partition: number;
  batchSize: number;
  firstOffset: string | null;
  lastOffset: string;
}

const keyDecoder = new TextDecoder();
const noHeartbeat = () => Promise.resolve();

/**
 * The offset a batch was fetched from. KafkaJS's Batch has it (it drops messages before it) but
 * its type declarations do not say so.
 */
function fetchedOffset(batch: EachBatchPayload["batch"]): bigint {
  return BigInt((batch as unknown as { fetchedOffset: string }).fetchedOffset);
}

/** The Kafka side of the consumer; see the module doc. */
export class KafkaSource {
  readonly #o: SourceOptions;
  readonly #positions = new Map<number, PartitionState>();
  /** Loads in progress, so that a partition is loaded once however many ask. */
  readonly #loading = new Map<number, Promise<PartitionState>>();

  constructor(options: SourceOptions) {
    this.#o = options;
  }

  /** A rebalance gave this member `partitions`: load their positions and seek there now. */
  assigned(partitions: number[]): void {
    this.#positions.clear();
    this.#loading.clear();
    // a recreated topic stops the run even when its partitions are empty, and a partition that
    // holds only markers still gets its offset moved
    for (const partition of partitions) {
      this.#ensure(partition, noHeartbeat).then((state) => {
        if (this.#positions.get(partition) !== state) return;
        try {
          // saves a fetch from the wrong place; the first batch seeks anyway if this fails
          // (KafkaJS refuses while it rebuilds its consumer group after a restart)
          this.#seek(partition, state.fetchFrom);
        } catch (error) {
          log("debug", `partition ${partition}: no early seek (${String(error)})`);
        }
      }).catch(this.#o.onError);
    }
  }

  /** Cuts a fetched batch into chunks for the writer (KafkaJS's eachBatch). */
  async handle(payload: EachBatchPayload): Promise<void> {
    const { batch, heartbeat, isRunning, isStale } = payload;
    if (batch.messages.length === 0 || this.#o.stopping.aborted) return;
    const partition = batch.partition;
    let state = this.#positions.get(partition);
    if (state?.pending) await state.pending;
    if (!state || state.fenced) state = await this.#ensure(partition, heartbeat);
    const fetched = fetchedOffset(batch);
    if (fetched !== state.fetchFrom) {
      // Fetched from elsewhere: KafkaJS's own start after an assignment, its reset after an
      // out-of-range fetch, or a fetch made before our last seek. Where is the log now?
      const { low, high } = await this.#bounds(partition);
      if (state.fetchFrom > high) throw pastTheEnd(this.#o.store, partition, state.next, high);
      if (state.fetchFrom < low) this.#markLost(state, partition, low, heartbeat);
      if (fetched !== state.fetchFrom) {
        log(
          "debug",
          `partition ${partition}: fetched from ${fetched}, at ${state.fetchFrom}: seeking`,
        );
        this.#seek(partition, state.fetchFrom);
        return;
      }
    }
    let messages = batch.messages;
    if (state.check !== undefined) {
      const first = messages[0]!;
      if (BigInt(first.offset) === state.check) {
        await this.#checkStored(partition, first, heartbeat);
      }
      state.check = undefined;
    }
    const from = state.next;
    messages = messages.filter((m) => BigInt(m.offset) >= from);
    const end = BigInt(batch.lastOffset()) + 1n; // past trailing markers too
    const { writer, batchSize, maxMessages } = this.#o;
    for (let start = 0; start < messages.length;) {
      if (!isRunning() || isStale() || state.fenced || this.#o.stopping.aborted) return;
      // --max-messages counts what every partition queued so far, fenced chunks given back
      const room = maxMessages === undefined
        ? batchSize
        : Math.min(batchSize, maxMessages - writer.enqueued);
      if (room <= 0) break;
      const slice = messages.slice(start, start + room);
      start += slice.length;
      const nextOffset = start >= messages.length
        ? end
        : BigInt(slice[slice.length - 1]!.offset) + 1n;
      this.#write(state, partition, nextOffset, heartbeat, {
        ...toRowsAndLetters(slice, this.#o.maxMessageBytes),
      });
      state.fetchFrom = state.next;
      payload.resolveOffset((nextOffset - 1n).toString());
      // Back-pressure: fetching runs ahead of the database by a few chunks at most.
      await writer.waitForRoom(heartbeat);
    }
    if (messages.length === 0 && end > state.next) this.#write(state, partition, end, heartbeat);
    if (state.fetchFrom < state.next) {
      state.fetchFrom = state.next;
      payload.resolveOffset((state.next - 1n).toString());
    }
  }

  /**
   * KafkaJS does not hand over a fetch that held only transaction markers or aborted messages;
   * it moves past it by itself (END_BATCH_PROCESS tells). The stored offset must follow, or the
   * partition never counts as drained. Such a fetch starting after our position either followed
   * our seek over offsets that hold nothing, or KafkaJS's reset after the log lost our position:
   * the log's start tells which, before the partition's next batch is handled.
   */
  filtered(event: BatchEndEvent): void {
    const { partition, batchSize, firstOffset, lastOffset } = event;
    if (batchSize !== 0 || event.topic !== this.#o.store.topic) return;
    const state = this.#positions.get(partition);
    if (!state || state.fenced) return;
    const first = firstOffset === null ? BigInt(lastOffset) : BigInt(firstOffset);
    if (first < state.fetchFrom) return; // from before our position: we seek back to it
    const end = BigInt(lastOffset) + 1n;
    const skip = () => {
      if (state.fenced || this.#positions.get(partition) !== state) return;
      state.check = undefined; // the offset before the stored one holds no message to check
      if (end > state.next) this.#write(state, partition, end, noHeartbeat);
      state.fetchFrom = state.next;
    };
    if (first === state.fetchFrom) return skip();
    state.pending = this.#bounds(partition).then(({ low }) => {
      if (!state.fenced && state.fetchFrom < low) {
        this.#markLost(state, partition, low, noHeartbeat);
      }
      skip();
    }).catch(this.#o.onError);
  }

  #seek(partition: number, offset: bigint): void {
    this.#o.consumer.seek({ topic: this.#o.store.topic, partition, offset: offset.toString() });
  }

  /** The partition's log start and high watermark. */
  async #bounds(partition: number): Promise<{ low: bigint; high: bigint }> {
    const { admin, topic } = this.#o.store;
    const o = (await admin.fetchTopicOffsets(topic)).find((x) => x.partition === partition);
    if (!o) throw new AppError("KAFKA", `topic "${topic}" has no partition ${partition}`);
    return { low: BigInt(o.low), high: BigInt(o.high) };
  }

  /** The partition's position: the one in hand, or loaded from the database and the log. */
  #ensure(partition: number, heartbeat: () => Promise<void>): Promise<PartitionState> {
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
    // Writes still queued from before a rebalance land (or are fenced) before we read the offset.
    await writer.settled(partition);
    const stored = (await writer.withRetry(
      "reading stored offsets",
      (client) => storedOffsets(client, store.q, store.groupId, store.topic),
      heartbeat,
    )).get(partition);
    const { low, high } = await this.#bounds(partition);
    const state: PartitionState = { next: stored ?? low, fetchFrom: stored ?? low, fenced: false };
    if (stored !== undefined && stored > high) throw pastTheEnd(store, partition, stored, high);
    if (stored !== undefined && stored < low) this.#markLost(state, partition, low, heartbeat);
    else if (stored !== undefined && stored > low) state.check = state.fetchFrom = stored - 1n;
    this.#positions.set(partition, state);
    return state;
  }

  /**
   * Queues the write of the offset range from `state.next` to `nextOffset` with the given rows
   * and dead letters (none: the range holds no message), and moves `state.next`.
   */
  #write(
    state: PartitionState,
    partition: number,
    nextOffset: bigint,
    heartbeat: () => Promise<void>,
    content: Pick<Batch, "rows" | "deadLetters"> = { rows: [], deadLetters: [] },
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
      ...content,
    };
    this.#o.writer.enqueue(batch, {
      heartbeat,
      lost,
      isFenced: () => state.fenced,
      fence: () => {
        state.fenced = true;
        if (this.#positions.get(partition) === state) this.#positions.delete(partition);
        log(
          "warn",
          `partition ${partition}: stored offset moved by another consumer; re-reading it`,
        );
      },
    });
    state.next = nextOffset;
  }

  /**
   * Retention deleted messages this group had not read (its stored offset is below the log's
   * start): says so, and queues a write that records the gap (a LOST marker dead letter) and
   * moves the stored offset to the log's start.
   */
  #markLost(state: PartitionState, partition: number, low: bigint, heartbeat: () => Promise<void>) {
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
    this.#write(
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
  async #checkStored(partition: number, m: KafkaMessage, heartbeat: () => Promise<void>) {
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
