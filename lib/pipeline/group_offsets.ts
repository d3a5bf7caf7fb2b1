/**
 * Kafka's view of the consumer's progress. PostgreSQL holds the stored offsets and is the only
 * source of positions; this module copies them to the Kafka consumer group after the fact, so
 * that Kafka's own tools (`kafka-consumer-groups --describe`, consoles, lag exporters) see the
 * group's lag. Best effort and asynchronous: a failed commit is logged at debug level and covered
 * by the next one; nothing here is ever read back.
 *
 * What is committed is only ever an offset PostgreSQL has stored (a committed batch's next offset,
 * or the stored offset read when partitions are assigned or a position is loaded) or, where it
 * stores none, the log start the member reads from; so Kafka's offset never runs ahead of
 * PostgreSQL's once this member knows PostgreSQL's. Where the database lost its last commits, a
 * load finds less than was mirrored, and Kafka's offset follows it back. Commits go one request
 * at a time, in order, newest offset per partition, and only for partitions this member holds.
 * @module
 */
import { log } from "../log.ts";
import { messageOf } from "../errors.ts";

/** One offset commit, as KafkaJS's `consumer.commitOffsets` takes it. */
export interface GroupOffset {
  topic: string;
  partition: number;
  /** The next offset to read (what PostgreSQL stores as `next_offset`). */
  offset: string;
}

/** Options of {@linkcode GroupOffsetMirror}. */
export interface GroupOffsetMirrorOptions {
  topic: string;
  /** Commits offsets to the Kafka group (KafkaJS's `consumer.commitOffsets`). */
  commit(offsets: GroupOffset[]): Promise<void>;
  /** Reads the offsets PostgreSQL stores for the group, by partition. */
  readStored(): Promise<Map<number, bigint>>;
}

/** Copies PostgreSQL's stored offsets to the Kafka consumer group; see the module doc. */
export class GroupOffsetMirror {
  readonly #o: GroupOffsetMirrorOptions;
  /** Offsets to commit, by partition. */
  readonly #pending = new Map<number, bigint>();
  /** The newest offset queued per partition since the assignment. */
  #latest = new Map<number, bigint>();
  /** Counts `stored` calls per partition: a load's read older than one of them must not win. */
  readonly #stores = new Map<number, number>();
  /** Partitions this member holds now. */
  #assigned = new Set<number>();
  /** Bumped by each assignment: a read of stored offsets made before it is dropped. */
  #generation = 0;
  /** The commit requests in flight, if any. */
  #sending: Promise<void> | undefined;
  /** The read of stored offsets after the last assignment, until it is queued. */
  #reading: Promise<void> | undefined;

  constructor(options: GroupOffsetMirrorOptions) {
    this.#o = options;
  }

  /**
   * A rebalance gave this member `partitions`: offsets queued for others are dropped, and the
   * offsets PostgreSQL stores for these are read and committed (which also moves Kafka's offsets
   * back after a `--reset-offsets earliest`, and covers writes that landed after a previous run
   * had left the group).
   */
  assigned(partitions: number[]): void {
    const generation = ++this.#generation;
    this.#assigned = new Set(partitions);
    this.#latest = new Map();
    for (const partition of [...this.#pending.keys()]) {
      if (!this.#assigned.has(partition)) this.#pending.delete(partition);
    }
    if (partitions.length === 0) return;
    this.#reading = this.#o.readStored().then((stored) => {
      if (generation !== this.#generation) return;
      for (const [partition, offset] of stored) this.stored(partition, offset);
    }, (error) => log("debug", `reading stored offsets for the Kafka group: ${messageOf(error)}`));
  }

  /** PostgreSQL now stores `next` as the partition's next offset: commit it to Kafka too. */
  stored(partition: number, next: bigint): void {
    if (!this.#assigned.has(partition)) return;
    this.#stores.set(partition, (this.#stores.get(partition) ?? 0) + 1);
    // stored offsets only move forward while this member holds the partition: an older value
    // (a read that raced a batch) would only make Kafka's lag look larger
    const latest = this.#latest.get(partition);
    if (latest !== undefined && next <= latest) return;
    this.#queue(partition, next);
  }

  /**
   * A position load of `partition` begins its read of PostgreSQL's stored offset; the returned
   * function takes what it found (the stored offset, or where the member starts without one).
   * Kafka's offset follows it, also backwards (a database that lost its last commits stores less
   * than this member mirrored: the messages in between are read again), unless an offset was
   * stored meanwhile: that one is newer than the read, and the found offset may only move forward.
   */
  reloading(partition: number): (next: bigint) => void {
    const stores = this.#stores.get(partition) ?? 0;
    return (next) => {
      if (!this.#assigned.has(partition)) return;
      const latest = this.#latest.get(partition);
      if (latest === undefined || next >= latest || this.#stores.get(partition) !== stores) {
        return this.stored(partition, next);
      }
      this.#queue(partition, next);
    };
  }

  /** Queues `next` as the partition's offset to commit, and starts sending if idle. */
  #queue(partition: number, next: bigint): void {
    this.#latest.set(partition, next);
    this.#pending.set(partition, next);
    this.#sending ??= this.#send();
  }

  /** Resolves once what is queued now has been committed (or has failed). */
  async flush(): Promise<void> {
    await this.#reading;
    while (this.#sending) await this.#sending;
  }

  /** Sends the queued offsets, one request at a time, until none is left. */
  async #send(): Promise<void> {
    await Promise.resolve(); // #sending is set before this can end; offsets of one tick go together
    try {
      while (this.#pending.size > 0) {
        const offsets = [...this.#pending].map(([partition, offset]) => ({
          topic: this.#o.topic,
          partition,
          offset: offset.toString(),
        }));
        this.#pending.clear();
        try {
          await this.#o.commit(offsets);
        } catch (error) {
          log(
            "debug",
            `committing offsets to the Kafka group failed (the next batch commits again): ${
              messageOf(error)
            }`,
          );
        }
      }
    } finally {
      this.#sending = undefined;
    }
  }
}
