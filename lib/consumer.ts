/**
 * The consumer: reads tickets from Kafka and stores them exactly once in PostgreSQL. The database
 * holds the consumed offsets; Kafka's own group offsets are not used.
 * @module
 */
import type { KafkaMessage } from "kafkajs";
import type { Connection } from "./config.ts";
import { AppError, messageOf } from "./errors.ts";
import { isDataError, writeIsolating } from "./isolate.ts";
import {
  createKafka,
  describeKafkaError,
  type EachBatchPayload,
  probeKafka,
  withDeadline,
} from "./kafka.ts";
import { log, ProgressReporter } from "./log.ts";
import { LatencySample, MetricsLog, SNAPSHOT_SECONDS } from "./metrics.ts";
import { createPool, type Database, describePgError, type PoolClient } from "./postgres.ts";
import { qualify } from "./schema.ts";
import {
  type Batch,
  type DeadLetter,
  type IncomingRow,
  sinkStatements,
  storedOffsets,
  writeBatch,
} from "./sink.ts";
import { MAX_TICKET_BYTES, type ParseResult, parseTicket } from "./model/ticket.ts";

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
  /**
   * Stop (successfully) once the topic is drained: every partition's stored offset at its high
   * watermark, and nothing new for this many seconds. @default {undefined: run until stopped}
   */
  idleTimeoutSeconds?: number;
  /** Stop after exactly this many messages. */
  maxMessages?: number;
  /** Largest message accepted as a ticket, in bytes. @default {65536} */
  maxMessageBytes?: number;
  /** Bytes fetched per partition per request. @default {1048576} */
  maxBytesPerPartition?: number;
  /** How long the broker may hold a fetch waiting for data, in ms. @default {100} */
  maxWaitTimeMs?: number;
  /** Seconds to keep retrying a failing database before giving up. @default {300} */
  dbRetrySeconds?: number;
  /** Seconds without a heartbeat before the group reassigns our partitions. @default {10} */
  sessionTimeoutSeconds?: number;
  /**
   * Before consuming, move this group's stored offsets of the topic to the log's start
   * (`earliest`) or end (`latest`): after a topic was recreated, or to skip a backlog.
   */
  resetOffsets?: (typeof RESET_TO)[number];
  /** Metrics history file (JSON lines); undefined for none. */
  metricsLog?: string;
  /** Aborts the run (SIGINT, SIGTERM): the batch in flight is finished and committed first. */
  signal?: AbortSignal;
}

/** Counts of a consumer run. */
export interface ConsumerSummary {
  /** Messages written (as rows, duplicates, conflicts or dead letters) in committed batches. */
  received: number;
  stored: number;
  duplicates: number;
  conflicts: number;
  deadLetters: number;
  /** Tickets refused because a seat was already sold (also counted in deadLetters). */
  seatTaken: number;
  /** Tickets PostgreSQL refused, isolated by splitting their batch (also in deadLetters). */
  rejected: number;
  /** Messages deleted from the log (retention) before this group read them. */
  lost: number;
  /** Batches dropped because another group member had moved the stored offset. */
  fenced: number;
  /** Wall time of the run, waits included. */
  seconds: number;
  /** From the first message received to the last batch committed. */
  activeSeconds: number;
}

/** Where `--reset-offsets` moves the stored offsets: the log's start or its end. */
export const RESET_TO = ["earliest", "latest"] as const;

/** Default session timeout: a dead member's partitions move within about this long. */
export const DEFAULT_SESSION_TIMEOUT_SECONDS = 10;

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

/**
 * The latest publish time kept: 9999-12-31T23:59:59.999Z. Later ones are written by
 * `toISOString` with a six-digit year (`+010000-...`), which PostgreSQL does not read.
 */
const MAX_TIME_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/**
 * The publish time of a message from its Kafka timestamp, or undefined when it has none (-1) or
 * an impossible one: a producer sets it, and a bad one must not stop the pipeline.
 */
export function publishTime(timestamp: string): Date | undefined {
  const ms = Number(timestamp);
  return Number.isSafeInteger(ms) && ms >= 0 && ms <= MAX_TIME_MS ? new Date(ms) : undefined;
}

/** Splits fetched messages into parsed tickets and dead letters (pure: no I/O). */
export function toRowsAndLetters(
  messages: KafkaMessage[],
  maxBytes: number,
): { rows: IncomingRow[]; deadLetters: DeadLetter[] } {
  const rows: IncomingRow[] = [];
  const deadLetters: DeadLetter[] = [];
  for (const m of messages) {
    const parsed = checkKey(parseTicket(m.value, maxBytes), m.key);
    if (parsed.ok) {
      rows.push({
        ticket: parsed.ticket,
        offset: m.offset,
        value: m.value!,
        key: m.key ?? null,
        publishedAt: publishTime(m.timestamp),
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
  return { rows, deadLetters };
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

/**
 * The V8 heap cap the `consumer` task runs with: it makes the collector run before memory grows
 * (peak RSS ~230 MB instead of ~350 MB draining 200k tickets, at the same speed).
 */
export const CONSUMER_V8_FLAGS = "--v8-flags=--max-old-space-size=160";

/** Chunks parsed and waiting for the database, across partitions. */
const MAX_QUEUED_CHUNKS = 4;
/** Longest wait for the work in flight once a stop was asked for, so SIGTERM ends in < 10 s. */
const STOP_BUDGET_MS = 7_000;
/** Reason of the marker dead letter recording offsets deleted before they were read. */
export const LOST_REASON = "LOST";
/** Reason of the marker dead letter recording offsets skipped by `--reset-offsets latest`. */
export const SKIPPED_REASON = "SKIPPED";
/** Dead letters that mark offset ranges rather than hold a message: never replayed. */
export const MARKER_REASONS: readonly string[] = [LOST_REASON, SKIPPED_REASON];

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });

/** Resolves with `work`, or with undefined after `ms`. */
function within<T>(work: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    work.finally(() => clearTimeout(timer)),
    new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms))),
  ]);
}

/** Runs the consumer until drained (idle), max messages, or the abort signal. */
export async function runConsumer(options: ConsumerOptions): Promise<ConsumerSummary> {
  const schema = options.schema ?? "public";
  const q = qualify({ schema, table: options.table });
  const sql = sinkStatements(q);
  const topic = options.topic;
  const groupId = options.groupId ?? defaultGroupId(schema, options.table);
  const batchSize = options.batchSize ?? 5000;
  const maxBytes = options.maxMessageBytes ?? MAX_TICKET_BYTES;
  const retryMs = (options.dbRetrySeconds ?? 300) * 1000;
  const sessionMs = (options.sessionTimeoutSeconds ?? DEFAULT_SESSION_TIMEOUT_SECONDS) * 1000;
  const settings = options.connection.kafka;
  const summary: ConsumerSummary = {
    received: 0,
    stored: 0,
    duplicates: 0,
    conflicts: 0,
    deadLetters: 0,
    seatTaken: 0,
    rejected: 0,
    lost: 0,
    fenced: 0,
    seconds: 0,
    activeSeconds: 0,
  };
  let firstMessageAt: number | undefined;
  const started = performance.now();
  /** Aborted when the run is to end (signal, idle, max messages, failure): waits stop early. */
  const stopping = new AbortController();

  const db: Database = await createPool({
    uri: options.connection.postgresUri,
    certPath: settings.certPath,
    connectTimeoutMs: options.connection.connectTimeoutMs,
    max: 4,
    applicationName: `tickets-consumer ${groupId}`,
    // a consumer frozen mid-transaction loses its locks when it loses its partitions
    idleInTransactionTimeoutMs: sessionMs,
    // ... and one frozen mid-COPY (which that timeout does not cover) is ended by the next owner
    lockTimeoutMs: sessionMs,
  });
  const kafka = createKafka(settings, { clientId: `tickets-consumer-${groupId}` });
  const admin = kafka.admin();
  const consumer = kafka.consumer({
    groupId,
    // A dead member (kill -9, lost machine) keeps its partitions until its session expires; the
    // group then rebalances at once, as live members learn of it at their next heartbeat (1 s).
    sessionTimeout: sessionMs,
    heartbeatInterval: Math.max(500, Math.min(1_000, sessionMs / 10)),
    // how long the coordinator waits for live members to rejoin during a rebalance: they rejoin
    // after the chunk in flight, well under a second
    rebalanceTimeout: Math.max(20_000, sessionMs * 2),
    maxBytesPerPartition: options.maxBytesPerPartition ?? 1024 * 1024,
    maxBytes: 8 * 1024 * 1024,
    maxWaitTimeInMs: options.maxWaitTimeMs ?? 100,
    allowAutoTopicCreation: false,
    retry: { retries: 10, initialRetryTime: 300, maxRetryTime: 5_000 },
  });

  const positions = new Map<number, PartitionState>();
  let failure: unknown;
  let finish: (error?: unknown) => void = () => {};
  const finished = new Promise<void>((resolve) => {
    finish = (error?: unknown) => {
      // the first error wins, even one that comes after a stop began: it decides the exit
      if (error !== undefined && failure === undefined) failure = error;
      stopping.abort();
      resolve();
    };
  });
  let lastActivity = performance.now();
  /** When the broker last answered a fetch. */
  let lastFetch = 0;

  const metrics = new MetricsLog(options.metricsLog, {
    role: "consumer",
    topic,
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
    rejected: summary.rejected,
    lost: summary.lost,
    fenced: summary.fenced,
  });

  /** The partition's log start and high watermark. */
  async function bounds(partition: number): Promise<{ low: bigint; high: bigint }> {
    const offsets = await admin.fetchTopicOffsets(topic);
    const o = offsets.find((x) => x.partition === partition);
    if (!o) throw new AppError("KAFKA", `topic "${topic}" has no partition ${partition}`);
    return { low: BigInt(o.low), high: BigInt(o.high) };
  }

  /** Messages in the topic not yet stored for this group, per partition. */
  async function measureLag(): Promise<Record<string, number> | undefined> {
    try {
      const [stored, offsets] = await Promise.all([
        storedOffsets(db.pool, q, groupId, topic),
        admin.fetchTopicOffsets(topic),
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
  /** Messages queued or written and not fenced: what --max-messages counts. */
  let enqueued = 0;

  /** Stored offset above the log's end: the topic was recreated or truncated. */
  function pastTheEnd(partition: number, stored: bigint, high: bigint): AppError {
    return new AppError(
      "KAFKA",
      `topic "${topic}" partition ${partition}: group ${groupId} stored offset ${stored}, but the ` +
        `log ends at ${high}: the topic was deleted and recreated, or truncated. Nothing was ` +
        `stored. To read it from the start run the consumer once with --reset-offsets earliest ` +
        `(or latest for new messages only)`,
    );
  }

  /** Loads in progress, so that a partition is loaded once however many ask. */
  const loading = new Map<number, Promise<PartitionState>>();

  /** The partition's position: the one in hand, or loaded from the database and the log. */
  function ensurePosition(
    partition: number,
    heartbeat: () => Promise<void>,
  ): Promise<PartitionState> {
    const state = positions.get(partition);
    if (state && !state.fenced) return Promise.resolve(state);
    let load = loading.get(partition);
    if (!load) {
      const started = loadPosition(partition, heartbeat);
      load = started.finally(() => {
        if (loading.get(partition) === load) loading.delete(partition);
      });
      loading.set(partition, load);
    }
    return load;
  }

  async function loadPosition(
    partition: number,
    heartbeat: () => Promise<void>,
  ): Promise<PartitionState> {
    // Writes still queued from before a rebalance land (or are fenced) before we read the offset.
    await chains.get(partition)?.catch(() => {});
    const stored = (await withDbRetry(
      "reading stored offsets",
      (client) => storedOffsets(client, q, groupId, topic),
      heartbeat,
    )).get(partition);
    const { low, high } = await bounds(partition);
    const state: PartitionState = { next: stored ?? low, fetchFrom: stored ?? low, fenced: false };
    if (stored !== undefined && stored > high) throw pastTheEnd(partition, stored, high);
    if (stored !== undefined && stored < low) markLost(state, partition, low, heartbeat);
    else if (stored !== undefined && stored > low) {
      state.check = state.fetchFrom = stored - 1n;
    }
    positions.set(partition, state);
    return state;
  }

  /**
   * Retention deleted messages this group had not read (its stored offset is below the log's
   * start): says so, and queues a write that records the gap (a LOST marker dead letter) and
   * moves the stored offset to the log's start.
   */
  function markLost(
    state: PartitionState,
    partition: number,
    low: bigint,
    heartbeat: () => Promise<void>,
  ) {
    const count = low - state.next;
    const detail = `offsets ${state.next}..${low - 1n} (${count} messages) were deleted from ` +
      `the log (retention) before group ${groupId} read them`;
    log("warn", `topic "${topic}" partition ${partition}: ${detail}; going on at ${low}`);
    queueWrite(
      state,
      {
        groupId,
        table: options.table,
        topic,
        partition,
        expectedOffset: state.next,
        nextOffset: low,
        rows: [],
        deadLetters: [{
          offset: String(state.next),
          key: null,
          value: null,
          reason: LOST_REASON,
          detail,
        }],
      },
      heartbeat,
      Number(count),
    );
    state.next = state.fetchFrom = low;
    state.check = undefined;
  }

  /**
   * The message just before the stored offset must be one this group stored: a ticket whose id
   * is in the table, or a dead letter or conflict at that offset. Otherwise the offsets now name
   * other messages (the topic was recreated and refilled past the stored offset): stop loudly.
   */
  async function checkStored(partition: number, m: KafkaMessage, heartbeat: () => Promise<void>) {
    const key = m.key ? keyDecoder.decode(m.key) : "";
    const found = await withDbRetry(
      "checking the stored position",
      async (client) =>
        (await client.query(
          `SELECT 1 FROM ${q.tickets} WHERE ticket_id = $1
         UNION ALL SELECT 1 FROM ${q.deadLetters}
           WHERE group_id = $2 AND topic = $3 AND partition = $4 AND "offset" = $5
         UNION ALL SELECT 1 FROM ${q.conflicts}
           WHERE target_table = $6 AND topic = $3 AND partition = $4 AND "offset" = $5
         LIMIT 1`,
          [key.includes("\0") ? "" : key, groupId, topic, partition, m.offset, options.table],
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

  /**
   * Runs `work` on a pooled connection, retrying with capped backoff (one log line per attempt)
   * while the database is unreachable, restarting or killed our connection, until --db-retry or
   * a stop. Errors of the data are thrown at once (the caller isolates the message); errors of
   * the schema or permissions stop the run.
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
        if (isDataError(error)) throw error;
        const code = (error as { code?: string }).code ?? "";
        // Errors of the schema or of permissions will not heal by waiting.
        if (/^42/.test(code)) {
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
        if (stopping.signal.aborted) {
          throw new AppError(
            "DB_UNREACHABLE",
            `stopped while PostgreSQL was failing (${messageOf(error)}); what was not ` +
              `committed will be read again by the next run`,
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
        await sleep(wait, stopping.signal);
        await heartbeat().catch(() => {});
      }
    }
  }

  /**
   * Writes one chunk after the partition's earlier chunks; drops it if the partition was fenced.
   * `lost` > 0 marks the write that records messages deleted before they were read.
   */
  function queueWrite(
    state: PartitionState,
    batch: Batch,
    heartbeat: () => Promise<void>,
    lost = 0,
  ) {
    const count = batch.rows.length + batch.deadLetters.length - (lost > 0 ? 1 : 0);
    queuedChunks++;
    enqueued += count;
    const previous = chains.get(batch.partition) ?? Promise.resolve();
    const next = previous.then(async () => {
      if (state.fenced) {
        enqueued -= count;
        return;
      }
      const result = await writeIsolating(
        batch,
        (part) => withDbRetry("write", (client) => writeBatch(client, sql, part), heartbeat),
      );
      const written = result.messages ?? 0;
      enqueued -= count - written;
      if (lost > 0) {
        if (result.committed) summary.lost += lost;
      } else {
        summary.received += written;
        summary.stored += result.stored;
        summary.duplicates += result.duplicates;
        summary.conflicts += result.conflicts;
        summary.deadLetters += result.deadLetters;
        summary.seatTaken += result.seatTaken;
        summary.rejected += result.rejected ?? 0;
      }
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
      lastActivity = performance.now();
      const now = Date.now();
      for (const row of batch.rows) {
        if (row.publishedAt) latency.add(now - row.publishedAt.getTime());
      }
      const secs = Math.max(0.001, (performance.now() - (firstMessageAt ?? started)) / 1000);
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

  /** A write moving the stored offset over offsets that hold no message (markers, compaction). */
  function queueSkip(
    state: PartitionState,
    partition: number,
    to: bigint,
    heartbeat: () => Promise<void>,
  ) {
    queueWrite(state, {
      groupId,
      table: options.table,
      topic,
      partition,
      expectedOffset: state.next,
      nextOffset: to,
      rows: [],
      deadLetters: [],
    }, heartbeat);
    state.next = to;
  }

  async function handleBatch(payload: EachBatchPayload) {
    const { batch, heartbeat, isRunning, isStale } = payload;
    if (batch.messages.length === 0 || stopping.signal.aborted) return;
    firstMessageAt ??= performance.now();
    const partition = batch.partition;
    let state = positions.get(partition);
    if (state?.pending) await state.pending;
    if (!state || state.fenced) state = await ensurePosition(partition, heartbeat);
    const fetched = fetchedOffset(batch);
    if (fetched !== state.fetchFrom) {
      // Fetched from elsewhere: KafkaJS's own start after an assignment, its reset after an
      // out-of-range fetch, or a fetch made before our last seek. Where is the log now?
      const { low, high } = await bounds(partition);
      if (state.fetchFrom > high) throw pastTheEnd(partition, state.next, high);
      if (state.fetchFrom < low) markLost(state, partition, low, heartbeat);
      if (fetched !== state.fetchFrom) {
        log(
          "debug",
          `partition ${partition}: fetched from ${fetched}, position is ${state.fetchFrom}: seeking`,
        );
        consumer.seek({ topic, partition, offset: state.fetchFrom.toString() });
        return;
      }
    }
    // The fetch started at our position, so offsets missing before a message hold none
    // (compaction, transaction markers, aborted transactions): a chunk's range covers them.
    let messages = batch.messages;
    if (state.check !== undefined) {
      const first = messages[0]!;
      if (BigInt(first.offset) === state.check) await checkStored(partition, first, heartbeat);
      state.check = undefined;
    }
    const from = state.next;
    messages = messages.filter((m) => BigInt(m.offset) >= from);
    const end = BigInt(batch.lastOffset()) + 1n; // past trailing markers too
    for (let start = 0; start < messages.length;) {
      if (!isRunning() || isStale() || state.fenced || stopping.signal.aborted) return;
      // --max-messages counts what every partition queued so far, fenced chunks given back
      const room = options.maxMessages === undefined
        ? batchSize
        : Math.min(batchSize, options.maxMessages - enqueued);
      if (room <= 0) break;
      const slice = messages.slice(start, start + room);
      start += slice.length;
      const nextOffset = start >= messages.length
        ? end
        : BigInt(slice[slice.length - 1]!.offset) + 1n;
      queueWrite(state, {
        groupId,
        table: options.table,
        topic,
        partition,
        expectedOffset: state.next,
        nextOffset,
        ...toRowsAndLetters(slice, maxBytes),
      }, heartbeat);
      state.next = state.fetchFrom = nextOffset;
      payload.resolveOffset((nextOffset - 1n).toString());
      // Back-pressure: fetching runs ahead of the database by a few chunks at most.
      while (queuedChunks > MAX_QUEUED_CHUNKS && !stopping.signal.aborted) {
        await new Promise<void>((resolve) => chunkDone.push(resolve));
        await heartbeat().catch(() => {});
      }
    }
    if (messages.length === 0 && end > state.next) queueSkip(state, partition, end, heartbeat);
    if (state.fetchFrom < state.next) {
      state.fetchFrom = state.next;
      payload.resolveOffset((state.next - 1n).toString());
    }
  }

  /**
   * KafkaJS does not hand over a fetch that held only transaction markers or aborted messages;
   * it moves past it by itself. The stored offset must follow, or the partition never counts
   * as drained. Such a fetch starting after our position either followed our seek over offsets
   * that hold nothing, or KafkaJS's reset after the log lost our position: the log's start
   * tells which, before the partition's next batch is handled.
   */
  function onFilteredBatch(event: { payload: FilteredBatchEvent }) {
    const { partition, batchSize: size, firstOffset, lastOffset } = event.payload;
    if (size !== 0 || event.payload.topic !== topic) return;
    const state = positions.get(partition);
    if (!state || state.fenced) return;
    const first = firstOffset === null ? BigInt(lastOffset) : BigInt(firstOffset);
    if (first < state.fetchFrom) return; // from before our position: we seek back to it
    const end = BigInt(lastOffset) + 1n;
    const noHeartbeat = () => Promise.resolve();
    const skip = () => {
      if (state.fenced || positions.get(partition) !== state) return;
      state.check = undefined; // the offset before the stored one holds no message to check
      if (end > state.next) queueSkip(state, partition, end, noHeartbeat);
      state.fetchFrom = state.next;
    };
    if (first === state.fetchFrom) return skip();
    state.pending = bounds(partition).then(({ low }) => {
      if (!state.fenced && state.fetchFrom < low) markLost(state, partition, low, noHeartbeat);
      skip();
    }).catch(finish);
  }

  /** Stored offsets of the topic's partitions that are below their high watermark. */
  async function undrained(): Promise<string[]> {
    const [stored, offsets] = await Promise.all([
      storedOffsets(db.pool, q, groupId, topic),
      admin.fetchTopicOffsets(topic),
    ]);
    for (const o of offsets) {
      const at = stored.get(o.partition);
      if (at !== undefined && at > BigInt(o.high)) {
        throw pastTheEnd(o.partition, at, BigInt(o.high));
      }
    }
    return offsets.filter((o) => (stored.get(o.partition) ?? BigInt(o.low)) < BigInt(o.high))
      .map((o) => `${o.partition} (at ${stored.get(o.partition) ?? o.low} of ${o.high})`);
  }

  /**
   * `--reset-offsets`: moves the stored offsets, in one transaction, and says what it did. A
   * skip (`latest`) is recorded as a SKIPPED marker dead letter on the last skipped offset, which
   * is also what the position check finds there later.
   */
  async function resetStoredOffsets(to: (typeof RESET_TO)[number]) {
    const offsets = await admin.fetchTopicOffsets(topic);
    const done: Record<string, { from: string | null; to: string }> = {};
    const client = await db.pool.connect();
    try {
      await client.query("BEGIN");
      const stored = await storedOffsets(client, q, groupId, topic);
      for (const o of offsets) {
        const [low, high] = [BigInt(o.low), BigInt(o.high)];
        const from = stored.get(o.partition);
        const target = to === "earliest" ? low : high;
        await client.query(
          `INSERT INTO ${q.offsets} (group_id, topic, partition, next_offset)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (group_id, topic, partition)
           DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()`,
          [groupId, topic, o.partition, target.toString()],
        );
        const start = from !== undefined && from >= low && from <= high ? from : low;
        if (to === "latest" && high > start) {
          await client.query(
            `INSERT INTO ${q.deadLetters} (group_id, target_table, topic, partition, "offset",
               reason, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
            [
              groupId,
              options.table,
              topic,
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
          `--reset-offsets ${to}: topic "${topic}" partition ${o.partition} of group ` +
            `${groupId}: stored offset ${from ?? "(none)"} -> ${target}`,
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

  let snapshots: ReturnType<typeof setInterval> | undefined;
  let idleTimer: ReturnType<typeof setInterval> | undefined;
  const onAbort = () => finish();
  try {
    const topics = await probeKafka(settings);
    await withDeadline(admin.connect(), settings.connectTimeoutMs + 2_000, "connecting to Kafka");
    if (!topics.includes(topic)) {
      throw new AppError(
        "KAFKA",
        `topic "${topic}" does not exist; run producer.ts first or create it`,
      );
    }
    const reset = options.resetOffsets ? await resetStoredOffsets(options.resetOffsets) : undefined;
    await withDeadline(
      consumer.connect(),
      settings.connectTimeoutMs + 2_000,
      "connecting to Kafka",
    );
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    consumer.on(consumer.events.GROUP_JOIN, (event) => {
      positions.clear();
      loading.clear();
      lastActivity = performance.now();
      // Load the new partitions' positions now: a recreated topic stops the run even when its
      // partitions are empty, and a partition that only holds markers still gets its offset moved
      for (const partition of event.payload.memberAssignment[topic] ?? []) {
        ensurePosition(partition, () => Promise.resolve()).then((state) => {
          if (positions.get(partition) !== state) return;
          try {
            // saves a fetch from the wrong place; the first batch seeks anyway if this fails
            consumer.seek({ topic, partition, offset: state.fetchFrom.toString() });
          } catch (error) {
            log("debug", `partition ${partition}: no early seek (${messageOf(error)})`);
          }
        }).catch(finish);
      }
    });
    consumer.on(consumer.events.FETCH, () => {
      lastFetch = performance.now();
    });
    consumer.on(consumer.events.END_BATCH_PROCESS, onFilteredBatch);
    consumer.on(consumer.events.CRASH, (event) => {
      if (!event.payload.restart) finish(event.payload.error);
    });
    options.signal?.addEventListener("abort", onAbort, { once: true });
    if (options.signal?.aborted) finish();
    // run() resolves once the group is joined, which can take a session timeout when a dead
    // member is still in it: a stop must not wait for that
    const running = consumer.run({
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
    running.catch(finish);
    metrics.write("start", counts(), 0, reset ? { reset } : {});
    snapshots = setInterval(() => void snapshot("snapshot"), SNAPSHOT_SECONDS * 1000);
    if (options.idleTimeoutSeconds !== undefined) {
      idleTimer = watchDrain(options.idleTimeoutSeconds);
    }
    await finished;
  } catch (error) {
    finish(error);
  } finally {
    clearInterval(idleTimer);
    clearInterval(snapshots);
    options.signal?.removeEventListener("abort", onAbort);
    reporter.done();
    // Leave the group (its partitions move at once) and let the writes in flight commit or roll
    // back, within a budget: a stop never hangs on a broker or a database that does not answer.
    const stopBy = performance.now() + STOP_BUDGET_MS;
    const left = () => Math.max(0, stopBy - performance.now());
    await within(consumer.disconnect().catch(() => {}), left());
    const settled = await within(Promise.allSettled([...chains.values()]), left());
    if (!settled && failure === undefined) {
      failure = new AppError(
        "TIMEOUT",
        `stopped with a write still waiting for PostgreSQL after ${STOP_BUDGET_MS / 1000} s; ` +
          `it is rolled back and will be read again by the next run`,
      );
    }
    summary.seconds = (performance.now() - started) / 1000;
    if (firstMessageAt !== undefined) {
      summary.activeSeconds = Math.max(0, (lastActivity - firstMessageAt) / 1000);
    }
    const outcome = failure === undefined ? "ok" : messageOf(describeFailure(failure));
    await within(snapshot("end", outcome).catch(() => {}), 2_000);
    metrics.close();
    await within(admin.disconnect().catch(() => {}), 1_000);
    await within(db.pool.end().catch(() => {}), 1_000);
  }
  if (failure !== undefined) {
    throw describeFailure(failure);
  }
  return summary;

  /** The run's error as one line for the user: PostgreSQL's errors named as such. */
  function describeFailure(error: unknown): AppError {
    if (error instanceof AppError) return error;
    const name = (error as { name?: string } | null)?.name ?? "";
    const code = (error as { code?: unknown } | null)?.code;
    if (
      name === "error" || name === "DatabaseError" ||
      (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code))
    ) {
      return describePgError(error, db.target);
    }
    return name.startsWith("KafkaJS") ? describeKafkaError(error, settings) : new AppError(
      "DB",
      messageOf(error),
      { cause: error },
    );
  }

  /**
   * `--idle-timeout`: ends the run once nothing arrived for that long and the whole topic is
   * drained (every partition's stored offset at its high watermark, whichever member stored
   * it). While other members still hold undrained partitions it waits; when nothing moves for
   * long enough that a dead member would have lost its partitions twice over, it gives up.
   */
  function watchDrain(idleSeconds: number) {
    const idleMs = idleSeconds * 1000;
    const giveUpMs = idleMs + 3 * sessionMs + 10_000;
    let checking = false;
    let waitingSince: number | undefined;
    let waitingFor = "";
    return setInterval(async () => {
      // Idle: the broker answers fetches, yet nothing new arrives and nothing waits for the
      // database. An outage of either is not idleness.
      const now = performance.now();
      if (checking || queuedChunks > 0 || now - lastActivity <= idleMs || now - lastFetch > 3_000) {
        if (now - lastActivity <= idleMs) waitingSince = undefined;
        return;
      }
      checking = true;
      try {
        const behind = await undrained();
        if (behind.length === 0) return finish();
        const what = behind.join(", ");
        if (waitingSince === undefined || what !== waitingFor) {
          if (waitingSince === undefined) {
            log("info", `idle, but the topic is not drained: partition ${what}; waiting`);
          }
          waitingSince = performance.now();
          waitingFor = what;
        } else if (performance.now() - waitingSince > giveUpMs) {
          finish(
            new AppError(
              "TIMEOUT",
              `gave up waiting for the topic to drain: partition ${what} did not move for ` +
                `${Math.round(giveUpMs / 1000)} s (held by a member that does not consume?)`,
            ),
          );
        }
      } catch {
        // no answer now; the next tick asks again
      } finally {
        checking = false;
      }
    }, 250);
  }
}

/**
 * The offset a batch was fetched from. KafkaJS's Batch has it (it drops messages before it) but
 * its type declarations do not say so.
 */
function fetchedOffset(batch: EachBatchPayload["batch"]): bigint {
  return BigInt((batch as unknown as { fetchedOffset: string }).fetchedOffset);
}

/** What KafkaJS reports after each fetched batch (END_BATCH_PROCESS). */
interface FilteredBatchEvent {
  topic: string;
  partition: number;
  batchSize: number;
  firstOffset: string | null;
  lastOffset: string;
}

/** One line describing a consumer run. */
export function formatConsumerSummary(s: ConsumerSummary): string {
  const rate = s.activeSeconds > 0 ? Math.round(s.received / s.activeSeconds) : s.received;
  const refused = [
    s.seatTaken ? `${s.seatTaken} SEAT_TAKEN` : "",
    s.rejected ? `${s.rejected} DB_REJECTED` : "",
  ].filter(Boolean).join(", ");
  return `consumed ${s.received} messages in ${
    s.activeSeconds.toFixed(2)
  } s of work (${rate} tickets/s): stored ${s.stored}, duplicates ${s.duplicates}, conflicts ${s.conflicts}, dead letters ${s.deadLetters}${
    refused ? ` (${refused})` : ""
  }, fenced ${s.fenced}${s.lost ? `, lost before read ${s.lost}` : ""}`;
}
