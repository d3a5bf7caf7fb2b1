/**
 * The consumer's Kafka side, KafkaJS's handlers: on assignment the partitions' positions are
 * loaded (positions.ts) and sought; a fetch that did not start at the position is checked against
 * the log and sought again; fetched messages are cut into chunks, each covering an offset range,
 * handed to the writer. Offsets that hold no message (compaction, transaction markers, aborted messages)
 * are covered by the chunk that spans them.
 * @module
 */
import type { EachBatchPayload } from "kafkajs";
import type { Consumer } from "../kafka/kafka.ts";
import { log } from "../log.ts";
import { type OffsetStore, pastTheEnd } from "./offsets.ts";
import { Positions } from "./positions.ts";
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
  /** A partition's position load begins; the function it returns gets the offset it found. */
  onLoad?(partition: number): (next: bigint) => void;
}

/** What KafkaJS reports after each fetched batch (END_BATCH_PROCESS). */
export interface BatchEndEvent {
  topic: string;
  partition: number;
  batchSize: number;
  firstOffset: string | null;
  lastOffset: string;
}

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
  readonly #p: Positions;

  constructor(options: SourceOptions) {
    this.#o = options;
    this.#p = new Positions(options.store, options.writer, options.onLoad?.bind(options));
  }

  /** A rebalance gave this member `partitions`: load their positions and seek there now. */
  assigned(partitions: number[]): void {
    this.#p.clear();
    // a recreated topic stops the run even when its partitions are empty, and a partition that
    // holds only markers still gets its offset moved
    for (const partition of partitions) this.#load(partition);
  }

  /**
   * Reloads and seeks the partitions whose stored offset the database lost (see
   * `Positions.lostCommits`): on a quiet partition no batch comes to do it.
   */
  async recheck(): Promise<void> {
    for (const partition of await this.#p.lostCommits()) this.#load(partition);
  }

  /** Loads the partition's position and seeks there now. */
  #load(partition: number): void {
    this.#p.ensure(partition, noHeartbeat).then((state) => {
      if (!this.#p.isCurrent(partition, state)) return;
      try {
        // saves a fetch from the wrong place; the first batch seeks anyway if this fails
        // (KafkaJS refuses while it rebuilds its consumer group after a restart)
        this.#seek(partition, state.fetchFrom);
      } catch (error) {
        log("debug", `partition ${partition}: no early seek (${String(error)})`);
      }
    }).catch((error) => {
      // once the run stops, its Kafka and database clients close under loads still running
      if (!this.#o.stopping.aborted) this.#o.onError(error);
    });
  }

  /** Cuts a fetched batch into chunks for the writer (KafkaJS's eachBatch). */
  async handle(payload: EachBatchPayload): Promise<void> {
    const { batch, heartbeat, isRunning, isStale } = payload;
    if (batch.messages.length === 0 || this.#o.stopping.aborted) return;
    const partition = batch.partition;
    let state = this.#p.get(partition);
    if (state?.pending) await state.pending;
    if (!state || state.fenced) state = await this.#p.ensure(partition, heartbeat);
    const fetched = fetchedOffset(batch);
    if (fetched !== state.fetchFrom) {
      // Fetched from elsewhere: KafkaJS's own start after an assignment, its reset after an
      // out-of-range fetch, or a fetch made before our last seek. Where is the log now?
      const { low, high } = await this.#p.bounds(partition);
      if (state.fetchFrom > high) throw pastTheEnd(this.#o.store, partition, state.next, high);
      if (state.fetchFrom < low) this.#p.markLost(state, partition, low, heartbeat);
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
        await this.#p.checkStored(partition, first, heartbeat);
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
      this.#p.write(
        state,
        partition,
        nextOffset,
        heartbeat,
        toRowsAndLetters(slice, this.#o.maxMessageBytes),
      );
      state.fetchFrom = state.next;
      payload.resolveOffset((nextOffset - 1n).toString());
      // Back-pressure: fetching runs ahead of the database by a few chunks at most.
      await writer.waitForRoom(heartbeat);
    }
    if (messages.length === 0 && end > state.next) this.#p.write(state, partition, end, heartbeat);
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
    const state = this.#p.get(partition);
    if (!state || state.fenced) return;
    const first = firstOffset === null ? BigInt(lastOffset) : BigInt(firstOffset);
    if (first < state.fetchFrom) return; // from before our position: we seek back to it
    const end = BigInt(lastOffset) + 1n;
    const skip = () => {
      if (state.fenced || !this.#p.isCurrent(partition, state)) return;
      state.check = undefined; // the offset before the stored one holds no message to check
      if (end > state.next) this.#p.write(state, partition, end, noHeartbeat);
      state.fetchFrom = state.next;
    };
    if (first === state.fetchFrom) return skip();
    state.pending = this.#p.bounds(partition).then(({ low }) => {
      if (!state.fenced && state.fetchFrom < low) {
        this.#p.markLost(state, partition, low, noHeartbeat);
      }
      skip();
    }).catch(this.#o.onError);
  }

  #seek(partition: number, offset: bigint): void {
    this.#o.consumer.seek({ topic: this.#o.store.topic, partition, offset: offset.toString() });
  }
}
