/**
 * The consumer's PostgreSQL side around the batch transaction (sink.ts): database calls retried
 * through outages, one ordered chain of writes per partition (partitions in parallel), a bound on
 * the chunks waiting (back-pressure), fenced chunks dropped, and the bisect of refused batches.
 * @module
 */
import { AppError, messageOf } from "../errors.ts";
import { writeIsolating } from "./isolate.ts";
import { log } from "../log.ts";
import {
  classifyDbError,
  type Database,
  type PoolClient,
  sqlStateOf,
} from "../postgres/postgres.ts";
import { type Batch, type BatchResult, type SinkStatements, writeBatch } from "./sink.ts";

/** Options of {@linkcode BatchWriter}. */
export interface WriterOptions {
  db: Database;
  sql: SinkStatements;
  /** The ticket table, quoted, for messages. */
  table: string;
  /** Milliseconds to keep retrying a failing database. */
  retryMs: number;
  /** Aborted when the run ends: retries stop waiting. */
  stopping: AbortSignal;
  /** Chunks waiting for the database, across partitions, before `waitForRoom` waits. */
  maxQueued: number;
  /**
   * A committed (or fenced) chunk's result; `lost` as given to `enqueue`; `seconds` from the
   * start of its write to its commit, retries included.
   */
  onWritten(batch: Batch, result: BatchResult, lost: number, seconds: number): void;
  /** A write failed for good: the run must end. */
  onError(error: unknown): void;
}

/** What the source hands over with a chunk. */
export interface ChunkContext {
  /** Keeps the group membership alive during long waits. */
  heartbeat: () => Promise<void>;
  /** True once another member moved the partition's stored offset: the chunk is dropped. */
  isFenced: () => boolean;
  /** Called when this chunk met the fence. */
  fence: () => void;
  /** > 0 for the write that records messages deleted before they were read. */
  lost?: number;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });

/** Writes chunks in order per partition; see the module doc. */
export class BatchWriter {
  readonly #o: WriterOptions;
  /** Last write queued per partition. */
  readonly #chains = new Map<number, Promise<void>>();
  /** Waiters woken each time a queued chunk is written. */
  readonly #wakers: (() => void)[] = [];
  #queued = 0;
  #enqueued = 0;
  /** Chunks queued and not yet written, per partition. */
  readonly #pending = new Map<number, number>();

  constructor(options: WriterOptions) {
    this.#o = options;
  }

  /** Chunks queued and not yet written. */
  get queued(): number {
    return this.#queued;
  }

  /** True when no chunk of the partition waits to be written. */
  idle(partition: number): boolean {
    return !this.#pending.get(partition);
  }

  /** Messages queued or written and not fenced: what `--max-messages` counts. */
  get enqueued(): number {
    return this.#enqueued;
  }

  /**
   * Runs `work` on a pooled connection, retrying with capped backoff (one log line per attempt)
   * while the database is unreachable, restarting or killed our connection, until the retry
   * time is up or the run stops. Errors of the data are thrown at once (the caller isolates the
   * message); errors of the schema or permissions end the run.
   */
  async withRetry<T>(
    what: string,
    work: (client: PoolClient) => Promise<T>,
    heartbeat: () => Promise<void>,
  ): Promise<T> {
    const { db, retryMs, stopping } = this.#o;
    const deadline = performance.now() + retryMs;
    for (let attempt = 1;; attempt++) {
      try {
        const client = await db.pool.connect();
        try {
          const result = await work(client);
          client.release();
          return result;
        } catch (error) {
          client.release(error as Error); // a broken connection must not go back to the pool
          throw error;
        }
      } catch (error) {
        const kind = classifyDbError(error);
        if (kind === "data") throw error; // the caller isolates the message
        const sqlState = sqlStateOf(error);
        // Errors of the schema or of permissions will not heal by waiting.
        if (kind === "schema") {
          throw new AppError(
            "DB",
            `${what} in ${this.#o.table}: ${messageOf(error)}; did you run db_setup.ts?`,
            { cause: error, sqlState },
          );
        }
        if (performance.now() > deadline) {
          throw new AppError(
            "DB_UNREACHABLE",
            `PostgreSQL still failing after ${Math.round(retryMs / 1000)} s: ${messageOf(error)}`,
            { cause: error, sqlState, retriable: true },
          );
        }
        if (stopping.aborted) {
          throw new AppError(
            "DB_UNREACHABLE",
            `stopped while PostgreSQL was failing (${messageOf(error)}); what was not ` +
              `committed will be read again by the next run`,
            { cause: error, sqlState, retriable: true },
          );
        }
        const wait = Math.min(8_000, 250 * 2 ** Math.min(attempt, 5));
        log(
          "warn",
          `database ${what} failed (attempt ${attempt}): ${
            messageOf(error)
          }; retrying in ${wait} ms`,
        );
        await sleep(wait, stopping);
        await heartbeat().catch(() => {});
      }
    }
  }

  /** Queues one chunk after the partition's earlier ones. */
  enqueue(batch: Batch, context: ChunkContext): void {
    const lost = context.lost ?? 0;
    const count = batch.rows.length + (batch.cancels?.length ?? 0) + batch.deadLetters.length -
      (lost > 0 ? 1 : 0);
    this.#queued++;
    this.#enqueued += count;
    const { partition } = batch;
    this.#pending.set(partition, (this.#pending.get(partition) ?? 0) + 1);
    const previous = this.#chains.get(batch.partition) ?? Promise.resolve();
    const next = previous.then(async () => {
      if (context.isFenced()) {
        this.#enqueued -= count;
        return;
      }
      const started = performance.now();
      const result = await writeIsolating(batch, (part) => {
        // one id for every try of this part: a try finds an earlier one's lost commit by it
        const write = { ...part, writeId: crypto.randomUUID() };
        return this.withRetry(
          "write",
          (client) => writeBatch(client, this.#o.sql, write),
          context.heartbeat,
        );
      });
      // a LOST write holds no message: its marker is not one of the run's messages
      this.#enqueued -= count - (lost > 0 ? 0 : result.messages ?? 0);
      if (!result.committed) context.fence();
      this.#o.onWritten(batch, result, lost, (performance.now() - started) / 1000);
    }).catch((error) => {
      this.#o.onError(error);
      throw error;
    }).finally(() => {
      this.#queued--;
      this.#pending.set(partition, this.#pending.get(partition)! - 1);
      for (const wake of this.#wakers.splice(0)) wake();
    });
    this.#chains.set(batch.partition, next);
    next.catch(() => {});
  }

  /** Resolves when the partition's queued writes have landed or failed. */
  settled(partition: number): Promise<void> {
    return (this.#chains.get(partition) ?? Promise.resolve()).catch(() => {});
  }

  /** Resolves when every queued write has landed or failed. */
  async settledAll(): Promise<void> {
    await Promise.allSettled([...this.#chains.values()]);
  }

  /** Waits while more than `maxQueued` chunks wait for the database (back-pressure). */
  async waitForRoom(heartbeat: () => Promise<void>): Promise<void> {
    while (this.#queued > this.#o.maxQueued && !this.#o.stopping.aborted) {
      await new Promise<void>((resolve) => this.#wakers.push(resolve));
      await heartbeat().catch(() => {});
    }
  }
}
