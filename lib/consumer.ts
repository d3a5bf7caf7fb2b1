/**
 * The consumer: reads tickets from Kafka and stores them exactly once in PostgreSQL. The database
 * holds the consumed offsets; Kafka's own group offsets are not used.
 * @module
 */
import type { Connection } from "./config.ts";
import { AppError, messageOf } from "./errors.ts";
import {
  createKafka,
  describeKafkaError,
  type EachBatchPayload,
  probeKafka,
  withDeadline,
} from "./kafka.ts";
import { log, ProgressReporter } from "./log.ts";
import { LatencySample, MetricsLog, SNAPSHOT_SECONDS } from "./metrics.ts";
import { createPool, type Database, type PoolClient } from "./postgres.ts";
import { qualify } from "./schema.ts";
import {
  type Batch,
  type DeadLetter,
  type IncomingRow,
  sinkStatements,
  storedOffsets,
  writeBatch,
} from "./sink.ts";
import { MAX_TICKET_BYTES, type ParseResult, parseTicket } from "./tickets.ts";

/** Options of {@linkcode runConsumer}. */
export interface ConsumerOptions {
  connection: Connection;
  topic: string;
  table: string;
  /** @default {"public"} */
  schema?: string;
  /** @default {"tickets-sink-<schema>-<table>"} */
  groupId?: string;
  /** Largest number of messages written in one transaction. @default {5000} */
  batchSize?: number;
  /** Stop (successfully) after this many seconds without a new message. @default {undefined: run until stopped} */
  idleTimeoutSeconds?: number;
  /** Stop after this many messages. */
  maxMessages?: number;
  /** Largest message accepted as a ticket, in bytes. @default {65536} */
  maxMessageBytes?: number;
  /** Bytes fetched per partition per request. @default {1048576} */
  maxBytesPerPartition?: number;
  /** How long the broker may hold a fetch waiting for data, in ms. @default {100} */
  maxWaitTimeMs?: number;
  /** Seconds to keep retrying a failing database before giving up. @default {300} */
  dbRetrySeconds?: number;
  /** Seconds without a heartbeat before the group reassigns our partitions. @default {30} */
  sessionTimeoutSeconds?: number;
  /** Metrics history file (JSON lines); undefined for none. */
  metricsLog?: string;
  /** Aborts the run (SIGINT, SIGTERM): the batch in flight is finished and committed first. */
  signal?: AbortSignal;
}

/** Counts of a consumer run. */
export interface ConsumerSummary {
  received: number;
  stored: number;
  duplicates: number;
  conflicts: number;
  deadLetters: number;
  /** Tickets refused because a seat was already sold (also counted in deadLetters). */
  seatTaken: number;
  /** Batches dropped because another group member had moved the stored offset. */
  fenced: number;
  /** Wall time of the run, waits included. */
  seconds: number;
  /** From the first message received to the last batch committed. */
  activeSeconds: number;
}

const keyDecoder = new TextDecoder();

/**
 * Tickets are keyed by their ticket_id (so one ticket always lands in one partition): a ticket
 * whose key is missing or different is refused as BAD_KEY.
 */
export function checkKey(
  parsed: ParseResult,
  key: Uint8Array | null | undefined,
): ParseResult | { ok: false; reason: "BAD_KEY"; detail: string } {
  if (!parsed.ok) return parsed;
  if (!key || key.length === 0) {
    return {
      ok: false,
      reason: "BAD_KEY",
      detail: "message key is null; producers must key tickets by ticket_id",
    };
  }
  const text = keyDecoder.decode(key);
  if (text !== parsed.ticket.ticket_id) {
    return {
      ok: false,
      reason: "BAD_KEY",
      detail: `message key ${JSON.stringify(text.slice(0, 64))} is not the ticket_id`,
    };
  }
  return parsed;
}

/** Default consumer group of a table. */
export function defaultGroupId(schema: string, table: string): string {
  return `tickets-sink-${schema}-${table}`;
}

interface PartitionState {
  /** Next offset to queue: the stored offset plus what is queued for writing. */
  next: bigint;
  /** Seeks made to `next` that still got a batch starting after it. */
  seeks: number;
  /** Another consumer moved the stored offset: queued writes are dropped, the state reloaded. */
  fenced: boolean;
}

/**
 * The V8 heap cap the `consumer` task runs with: it makes the collector run before memory grows
 * (peak RSS ~230 MB instead of ~350 MB draining 200k tickets, at the same speed).
 */
export const CONSUMER_V8_FLAGS = "--v8-flags=--max-old-space-size=160";

/** Chunks parsed and waiting for the database, across partitions. */
const MAX_QUEUED_CHUNKS = 4;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs the consumer until idle, max messages, or the abort signal. */
export async function runConsumer(options: ConsumerOptions): Promise<ConsumerSummary> {
  const schema = options.schema ?? "public";
  const q = qualify({ schema, table: options.table });
  const sql = sinkStatements(q);
  const groupId = options.groupId ?? defaultGroupId(schema, options.table);
  const batchSize = options.batchSize ?? 5000;
  const maxBytes = options.maxMessageBytes ?? MAX_TICKET_BYTES;
  const retryMs = (options.dbRetrySeconds ?? 300) * 1000;
  const settings = options.connection.kafka;
  const summary: ConsumerSummary = {
    received: 0,
    stored: 0,
    duplicates: 0,
    conflicts: 0,
    deadLetters: 0,
    seatTaken: 0,
    fenced: 0,
    seconds: 0,
    activeSeconds: 0,
  };
  let firstMessageAt: number | undefined;
  const started = performance.now();

  const db: Database = await createPool({
    uri: options.connection.postgresUri,
    certPath: settings.certPath,
    connectTimeoutMs: options.connection.connectTimeoutMs,
    max: 4,
    applicationName: `tickets-consumer ${groupId}`,
    // a consumer frozen mid-transaction loses its locks when it loses its partitions
    idleInTransactionTimeoutMs: (options.sessionTimeoutSeconds ?? 30) * 1000,
    // ... and one frozen mid-COPY (which that timeout does not cover) is ended by the next owner
    lockTimeoutMs: (options.sessionTimeoutSeconds ?? 30) * 1000,
  });
  const kafka = createKafka(settings, { clientId: `tickets-consumer-${groupId}` });
  const admin = kafka.admin();
  const consumer = kafka.consumer({
    groupId,
    sessionTimeout: (options.sessionTimeoutSeconds ?? 30) * 1000,
    heartbeatInterval: Math.max(500, ((options.sessionTimeoutSeconds ?? 30) * 1000) / 10),
    rebalanceTimeout: Math.max(60_000, (options.sessionTimeoutSeconds ?? 30) * 2000),
    maxBytesPerPartition: options.maxBytesPerPartition ?? 1024 * 1024,
    maxBytes: 8 * 1024 * 1024,
    maxWaitTimeInMs: options.maxWaitTimeMs ?? 100,
    allowAutoTopicCreation: false,
    retry: { retries: 10, initialRetryTime: 300, maxRetryTime: 5_000 },
  });

  const positions = new Map<number, PartitionState>();
  let finish: (error?: unknown) => void = () => {};
  const finished = new Promise<void>((resolve, reject) => {
    finish = (error?: unknown) => (error ? reject(error) : resolve());
  });
  let lastActivity = performance.now();
  /** When the broker last answered a fetch. */
  let lastFetch = 0;

  const metrics = new MetricsLog(options.metricsLog, {
    role: "consumer",
    topic: options.topic,
    table: `${schema}.${options.table}`,
    group: groupId,
  });
  const latency = new LatencySample();
  const reporter = new ProgressReporter("consumer: stored", options.maxMessages);
  let lastLag: Record<string, number> | undefined;
  const counts = () => ({
    received: summary.received,
    stored: summary.stored,
    duplicates: summary.duplicates,
    conflicts: summary.conflicts,
    deadLetters: summary.deadLetters,
  });

  /** Messages in the topic not yet stored for this group, per partition. */
  async function measureLag(): Promise<Record<string, number> | undefined> {
    try {
      const [stored, offsets] = await Promise.all([
        storedOffsets(db.pool, q, groupId, options.topic),
        admin.fetchTopicOffsets(options.topic),
      ]);
      const lag: Record<string, number> = {};
      for (const o of offsets) {
        const next = stored.get(o.partition) ?? BigInt(o.low);
        lag[o.partition] = Math.max(0, Number(BigInt(o.high) - next));
      }
      return (lastLag = lag);
    } catch {
      return undefined; // a snapshot without lag beats no snapshot
    }
  }

  async function snapshot(event: "snapshot" | "end", outcome?: string) {
    const lag = await measureLag();
    metrics.write(event, counts(), summary.received, {
      ...(lag ? { lag } : {}),
      ...(((l) => (l ? { latencyMs: l } : {}))(latency.take())),
      ...(outcome ? { outcome } : {}),
    });
  }

  /** Last write queued per partition; writes of one partition run in order, partitions in parallel. */
  const chains = new Map<number, Promise<void>>();
  let queuedChunks = 0;
  /** Waiters woken each time a queued chunk is written. */
  const chunkDone: (() => void)[] = [];
  let enqueued = 0;

  async function loadPosition(
    partition: number,
    heartbeat: () => Promise<void>,
  ): Promise<PartitionState> {
    // Writes still queued from before a rebalance land (or are fenced) before we read the offset.
    await chains.get(partition)?.catch(() => {});
    const stored = await withDbRetry(
      "reading stored offsets",
      (client) => storedOffsets(client, q, groupId, options.topic),
      heartbeat,
    );
    let next = stored.get(partition);
    if (next === undefined) {
      const offsets = await admin.fetchTopicOffsets(options.topic);
      const low = offsets.find((o) => o.partition === partition)?.low ?? "0";
      next = BigInt(low);
    }
    const state: PartitionState = { next, seeks: 0, fenced: false };
    positions.set(partition, state);
    return state;
  }

  /**
   * Runs `work` on a pooled connection, retrying with capped backoff (one log line per attempt)
   * while the database is unreachable, restarting or killed our connection, until --db-retry.
   */
  async function withDbRetry<T>(
    what: string,
    work: (client: PoolClient) => Promise<T>,
    heartbeat: () => Promise<void>,
  ): Promise<T> {
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
        const code = (error as { code?: string }).code ?? "";
        // Errors of the data or the schema will not heal by waiting.
        if (/^(22|23|42)/.test(code)) {
          throw new AppError(
            "DB",
            `${what} in ${q.tickets}: ${messageOf(error)}; did you run db_setup.ts?`,
            { cause: error },
          );
        }
        if (performance.now() > deadline) {
          throw new AppError(
            "DB_UNREACHABLE",
            `PostgreSQL still failing after ${Math.round(retryMs / 1000)} s: ${messageOf(error)}`,
            { cause: error },
          );
        }
        const wait = Math.min(8_000, 250 * 2 ** Math.min(attempt, 5));
        log(
          "warn",
          `database ${what} failed (attempt ${attempt}): ${
            messageOf(error)
          }; retrying in ${wait} ms`,
        );
        await sleep(wait);
        await heartbeat().catch(() => {});
      }
    }
  }

  /** Writes one chunk after the partition's earlier chunks; drops it if the partition was fenced. */
  function queueWrite(
    state: PartitionState,
    batch: Batch,
    count: number,
    heartbeat: () => Promise<void>,
  ) {
    queuedChunks++;
    const previous = chains.get(batch.partition) ?? Promise.resolve();
    const next = previous.then(async () => {
      if (state.fenced) return;
      const result = await withDbRetry(
        "write",
        (client) => writeBatch(client, sql, batch),
        heartbeat,
      );
      if (!result.committed) {
        state.fenced = true;
        summary.fenced++;
        if (positions.get(batch.partition) === state) positions.delete(batch.partition);
        log(
          "warn",
          `partition ${batch.partition}: stored offset moved by another consumer; re-reading it`,
        );
        return;
      }
      summary.received += count;
      summary.stored += result.stored;
      summary.duplicates += result.duplicates;
      summary.conflicts += result.conflicts;
      summary.deadLetters += result.deadLetters;
      summary.seatTaken += result.seatTaken;
      lastActivity = performance.now();
      const now = Date.now();
      for (const row of batch.rows) {
        if (row.publishedAt) latency.add(now - row.publishedAt.getTime());
      }
      const secs = Math.max(0.001, (performance.now() - firstMessageAt!) / 1000);
      const lagTotal = lastLag ? Object.values(lastLag).reduce((a, b) => a + b, 0) : undefined;
      reporter.update(
        summary.received,
        summary.received / secs,
        lagTotal === undefined ? "" : `lag ${lagTotal}`,
      );
      if (options.maxMessages !== undefined && summary.received >= options.maxMessages) finish();
    }).catch((error) => {
      finish(error);
      throw error;
    }).finally(() => {
      queuedChunks--;
      for (const wake of chunkDone.splice(0)) wake();
    });
    chains.set(batch.partition, next);
    next.catch(() => {});
  }

  async function handleBatch(payload: EachBatchPayload) {
    const { batch, heartbeat, isRunning, isStale } = payload;
    if (batch.messages.length === 0) return;
    firstMessageAt ??= performance.now();
    const partition = batch.partition;
    let state = positions.get(partition);
    if (!state || state.fenced) state = await loadPosition(partition, heartbeat);
    const first = BigInt(batch.messages[0]!.offset);
    if (first !== state.next) {
      // Behind: already stored. Ahead: a gap, unless the log really has one (seen 3 times).
      if (first < state.next || state.seeks < 3) {
        if (first > state.next) state.seeks++;
        log(
          "debug",
          `partition ${partition}: batch starts at ${first}, stored position is ${state.next}: seeking`,
        );
        consumer.seek({ topic: batch.topic, partition, offset: state.next.toString() });
        return;
      }
      log(
        "warn",
        `partition ${partition}: offsets ${state.next}..${
          first - 1n
        } are absent from the log; continuing at ${first}`,
      );
      state.next = first;
    }
    let messages = batch.messages;
    if (options.maxMessages !== undefined) {
      messages = messages.slice(0, Math.max(0, options.maxMessages - enqueued));
    }
    for (let start = 0; start < messages.length; start += batchSize) {
      if (!isRunning() || isStale() || state.fenced) return;
      const slice = messages.slice(start, start + batchSize);
      const rows: IncomingRow[] = [];
      const deadLetters: DeadLetter[] = [];
      for (const m of slice) {
        const parsed = checkKey(parseTicket(m.value, maxBytes), m.key);
        if (parsed.ok) {
          rows.push({
            ticket: parsed.ticket,
            offset: m.offset,
            value: m.value!,
            key: m.key ?? null,
            publishedAt: new Date(Number(m.timestamp)),
          });
        } else {
          deadLetters.push({
            offset: m.offset,
            key: m.key ?? null,
            value: m.value ?? null,
            reason: parsed.reason,
            detail: parsed.detail,
          });
        }
      }
      const last = slice[slice.length - 1]!.offset;
      const nextOffset = BigInt(last) + 1n;
      queueWrite(
        state,
        {
          groupId,
          table: options.table,
          topic: batch.topic,
          partition,
          expectedOffset: state.next,
          nextOffset,
          rows,
          deadLetters,
        },
        slice.length,
        heartbeat,
      );
      state.next = nextOffset;
      enqueued += slice.length;
      payload.resolveOffset(last);
      // Back-pressure: fetching runs ahead of the database by a few chunks at most.
      while (queuedChunks > MAX_QUEUED_CHUNKS) {
        await new Promise<void>((resolve) => chunkDone.push(resolve));
        await heartbeat().catch(() => {});
      }
    }
  }

  let snapshots: ReturnType<typeof setInterval> | undefined;
  let failure: unknown;
  try {
    const topics = await probeKafka(settings);
    await withDeadline(admin.connect(), settings.connectTimeoutMs + 2_000, "connecting to Kafka");
    if (!topics.includes(options.topic)) {
      throw new AppError(
        "KAFKA",
        `topic "${options.topic}" does not exist; run producer.ts first or create it`,
      );
    }
    await withDeadline(
      consumer.connect(),
      settings.connectTimeoutMs + 2_000,
      "connecting to Kafka",
    );
    await consumer.subscribe({ topics: [options.topic], fromBeginning: true });
    consumer.on(consumer.events.GROUP_JOIN, () => {
      positions.clear();
      lastActivity = performance.now();
    });
    consumer.on(consumer.events.FETCH, () => {
      lastFetch = performance.now();
    });
    consumer.on(consumer.events.CRASH, (event) => {
      if (!event.payload.restart) finish(event.payload.error);
    });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 3,
      eachBatch: async (payload) => {
        try {
          await handleBatch(payload);
        } catch (error) {
          finish(error);
          throw error;
        }
      },
    });
    metrics.write("start", counts(), 0);
    snapshots = setInterval(() => void snapshot("snapshot"), SNAPSHOT_SECONDS * 1000);
    const onAbort = () => finish();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    if (options.signal?.aborted) finish();
    let idleTimer: ReturnType<typeof setInterval> | undefined;
    if (options.idleTimeoutSeconds !== undefined) {
      const idleMs = options.idleTimeoutSeconds * 1000;
      idleTimer = setInterval(() => {
        // Idle: the broker answers fetches, yet nothing new arrives and nothing waits for the
        // database. An outage of either is not idleness.
        const now = performance.now();
        if (queuedChunks === 0 && now - lastActivity > idleMs && now - lastFetch < 3_000) finish();
      }, 100);
    }
    try {
      await finished;
    } finally {
      clearInterval(idleTimer);
      options.signal?.removeEventListener("abort", onAbort);
    }
  } catch (error) {
    failure = error instanceof AppError ? error : describeKafkaError(error, settings);
    throw failure;
  } finally {
    clearInterval(snapshots);
    reporter.done();
    await consumer.disconnect().catch(() => {});
    await Promise.allSettled([...chains.values()]);
    summary.seconds = (performance.now() - started) / 1000;
    if (firstMessageAt !== undefined) {
      summary.activeSeconds = Math.max(0, (lastActivity - firstMessageAt) / 1000);
    }
    await snapshot("end", failure ? messageOf(failure) : "ok").catch(() => {});
    metrics.close();
    await admin.disconnect().catch(() => {});
    await db.pool.end().catch(() => {});
  }
  return summary;
}

/** One line describing a consumer run. */
export function formatConsumerSummary(s: ConsumerSummary): string {
  const rate = s.activeSeconds > 0 ? Math.round(s.received / s.activeSeconds) : s.received;
  return `consumed ${s.received} messages in ${
    s.activeSeconds.toFixed(2)
  } s of work (${rate} tickets/s): stored ${s.stored}, duplicates ${s.duplicates}, conflicts ${s.conflicts}, dead letters ${s.deadLetters}${
    s.seatTaken ? ` (${s.seatTaken} SEAT_TAKEN)` : ""
  }`;
}
