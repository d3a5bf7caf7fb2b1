/**
 * The consumer: reads tickets from Kafka and stores them exactly once in PostgreSQL. The database
 * holds the consumed offsets; Kafka's group offsets are only a copy for Kafka's tools
 * (pipeline/group_offsets.ts), never read back. This module wires the parts
 * (pipeline/source.ts: the Kafka side; pipeline/transform.ts: messages to rows; sink.ts and
 * pipeline/writer.ts: the PostgreSQL side) and observes them: counts, metrics, progress, the
 * drain and the stop.
 * @module
 */
import type { Connection, KafkaSettings } from "../config/config.ts";
import { AppError, messageOf } from "../errors.ts";
import {
  type Admin,
  type Consumer,
  createKafka,
  describeKafkaError,
  isCoordinatorNotFound,
  probeKafka,
  withDeadline,
} from "../kafka/kafka.ts";
import { log, ProgressReporter } from "../log.ts";
import { LatencySample, MetricsLog, SNAPSHOT_SECONDS } from "../observe/metrics.ts";
import {
  ConsumerMetrics,
  type MetricsEndpoint,
  type MetricsServer,
  serveMetrics,
  type WrittenChunk,
} from "../observe/prometheus.ts";
import { MAX_TICKET_BYTES } from "../model/ticket.ts";
import { UNKNOWN_TICKET } from "../model/message.ts";
import { md5Hex } from "../model/md5.ts";
import {
  createPool,
  type Database,
  describePgError,
  NAME_BYTES,
  sqlStateOf,
  storedApplicationName,
} from "../postgres/postgres.ts";
import { qualify } from "../postgres/schema.ts";
import { checkTables } from "../postgres/setup.ts";
import {
  addWriteCounts,
  type Batch,
  type BatchResult,
  DB_REJECTED,
  noWriteCounts,
  sinkStatements,
  storedOffsets,
  type WriteCounts,
} from "./sink.ts";
import { GroupOffsetMirror } from "./group_offsets.ts";
import { startPruning } from "./prune.ts";
import {
  lagOf,
  type OffsetStore,
  resetStoredOffsets,
  topicProgress,
  undrained,
} from "./offsets.ts";
import { type BatchEndEvent, KafkaSource } from "./source.ts";
import { BatchWriter } from "./writer.ts";

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
  /** Where to serve `/metrics` for Prometheus while the run lasts; undefined for nowhere. */
  prometheus?: MetricsEndpoint;
  /** Aborts the run (SIGINT, SIGTERM): the batch in flight is finished and committed first. */
  signal?: AbortSignal;
}

/** Counts of a consumer run: its committed batches' counts added up, and the run's own. */
export interface ConsumerSummary extends WriteCounts {
  /** Messages written (as rows, duplicates, conflicts or dead letters) in committed batches. */
  received: number;
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

/** How old the consumer's view of the topic's partitions may get, in milliseconds. */
const METADATA_MAX_AGE_MS = 15_000;

/**
 * Defaults of {@linkcode ConsumerOptions}, the one place they are set: the consumer command's
 * flags show and apply these values.
 */
export const CONSUMER_DEFAULTS = {
  batchSize: 5000,
  maxMessageBytes: MAX_TICKET_BYTES,
  maxBytesPerPartition: 1024 * 1024,
  maxWaitTimeMs: 100,
  dbRetrySeconds: 300,
  /** A dead member's partitions move within about this long. */
  sessionTimeoutSeconds: 10,
} as const satisfies Partial<ConsumerOptions>;

/**
 * The application_name of a consumer group's database sessions, as PostgreSQL shows it: the
 * group's id, or for an id too long for PostgreSQL's 63 bytes its start and a digest of the
 * whole, so that two groups never share a name (ending a frozen session looks for this name).
 */
export function consumerApplicationName(groupId: string): string {
  const name = `tickets-consumer ${groupId}`;
  if (storedApplicationName(name) === name) return name;
  const digest = `~${md5Hex(groupId).slice(0, 12)}`;
  return storedApplicationName(name, NAME_BYTES - digest.length) + digest;
}

/** Default consumer group of a table. */
export function defaultGroupId(schema: string, table: string): string {
  return `tickets-sink-${schema}-${table}`;
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

/** Resolves with `work`, or with undefined after `ms`. */
function within<T>(work: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    work.finally(() => clearTimeout(timer)),
    new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms))),
  ]);
}

/** A new summary, all counts zero. */
function emptySummary(): ConsumerSummary {
  return { received: 0, ...noWriteCounts(), lost: 0, fenced: 0, seconds: 0, activeSeconds: 0 };
}

/** Adds a written chunk's result to the summary. */
function count(summary: ConsumerSummary, result: BatchResult, lost: number): void {
  if (lost > 0) {
    if (result.committed) summary.lost += lost;
  } else {
    summary.received += result.messages ?? 0;
    addWriteCounts(summary, result);
  }
  if (!result.committed) summary.fenced++;
}

/**
 * The dead letters a written chunk added, by reason (they sum to `result.deadLetters`); added to
 * `into` when given. A chunk of lost messages adds none (its marker is not a message's fate).
 */
function deadLettersOf(
  batch: Batch,
  result: BatchResult,
  lost: number,
  into: Record<string, number> = {},
): Record<string, number> {
  const add = (reason: string, n: number) => {
    if (n > 0) into[reason] = (into[reason] ?? 0) + n;
  };
  if (lost > 0) return into;
  add("SEAT_TAKEN", result.seatTaken);
  add(UNKNOWN_TICKET, result.unknownTicket);
  add(DB_REJECTED, result.rejected ?? 0);
  // the batch's own dead letters by offset: a bisect that met the fence committed a prefix
  let own = result.deadLetters - result.seatTaken - result.unknownTicket - result.rejected;
  if (own <= 0) return into;
  const letters = [...batch.deadLetters].sort((a, b) =>
    Number(BigInt(a.offset) - BigInt(b.offset))
  );
  for (const letter of letters) if (own-- > 0) add(letter.reason, 1);
  return into;
}

/** A written chunk as the Prometheus metrics count it: the summary's counts, by reason. */
function chunkOf(batch: Batch, result: BatchResult, lost: number, seconds: number): WrittenChunk {
  const now = Date.now();
  return {
    committed: result.committed,
    messages: lost > 0 ? 0 : result.messages ?? 0,
    stored: result.stored,
    duplicates: result.duplicates,
    conflicts: result.conflicts,
    cancelled: lost > 0 ? 0 : result.cancelled,
    deadLetters: deadLettersOf(batch, result, lost),
    lost: lost > 0 && result.committed ? lost : 0,
    writeSeconds: seconds,
    latencySeconds: result.committed
      ? batch.rows.flatMap((r) => r.publishedAt ? [(now - r.publishedAt.getTime()) / 1000] : [])
      : [],
  };
}

/** The Kafka consumer's settings for a session timeout. */
function groupSettings(sessionMs: number) {
  return {
    // A dead member (kill -9, lost machine) keeps its partitions until its session expires; the
    // group then rebalances at once, as live members learn of it at their next heartbeat (1 s).
    sessionTimeout: sessionMs,
    heartbeatInterval: Math.max(500, Math.min(1_000, sessionMs / 10)),
    // how long the coordinator waits for live members to rejoin during a rebalance: they rejoin
    // after the chunk in flight, well under a second
    rebalanceTimeout: Math.max(20_000, sessionMs * 2),
  };
}

/** The database pool and Kafka clients of a consumer run. */
async function createClients(options: ConsumerOptions, groupId: string, sessionMs: number) {
  const settings = options.connection.kafka;
  const db = await createPool({
    uri: options.connection.postgresUri,
    certPath: settings.certPath,
    connectTimeoutMs: options.connection.connectTimeoutMs,
    max: 4,
    applicationName: consumerApplicationName(groupId),
    // a consumer frozen mid-transaction loses its locks when it loses its partitions
    idleInTransactionTimeoutMs: sessionMs,
    // ... and one frozen mid-COPY (which that timeout does not cover) is ended by the next owner
    lockTimeoutMs: sessionMs,
  });
  const kafka = createKafka(settings, { clientId: `tickets-consumer-${groupId}` });
  const consumer = kafka.consumer({
    groupId,
    ...groupSettings(sessionMs),
    maxBytesPerPartition: options.maxBytesPerPartition ?? CONSUMER_DEFAULTS.maxBytesPerPartition,
    maxBytes: 8 * 1024 * 1024,
    maxWaitTimeInMs: options.maxWaitTimeMs ?? CONSUMER_DEFAULTS.maxWaitTimeMs,
    allowAutoTopicCreation: false,
    retry: { retries: 10, initialRetryTime: 300, maxRetryTime: 5_000 },
    // partitions added to the topic (scaling out) are found by this refresh, and the group then
    // rebalances to take them: KafkaJS's default of 5 minutes left them unread that long, and
    // `--idle-timeout` gave up waiting for them
    metadataMaxAge: METADATA_MAX_AGE_MS,
  });
  return { db, admin: kafka.admin(), consumer };
}

/**
 * What a run reports: the summary's counts, the metrics history (start, a snapshot every 5 s with
 * the lag, end), publish-to-row latency and the progress line; it also ends the run when
 * `--max-messages` is reached.
 */
class RunObserver {
  readonly summary = emptySummary();
  readonly started = performance.now();
  firstMessageAt: number | undefined;
  /** When a chunk was last committed (or the group last joined). */
  lastActivity = performance.now();
  readonly #metrics: MetricsLog;
  readonly #latency = new LatencySample();
  readonly #reporter: ProgressReporter;
  /** The run's Prometheus metrics, when they are served. */
  readonly prometheus: ConsumerMetrics | undefined;
  /** Dead letters of the run by reason, as the metrics records carry them. */
  readonly deadLettersByReason: Record<string, number> = {};
  #lastLag: Record<string, number> | undefined;
  #snapshots: ReturnType<typeof setInterval> | undefined;

  constructor(
    readonly options: ConsumerOptions,
    readonly store: OffsetStore,
    readonly maxReached: () => void,
  ) {
    this.#metrics = new MetricsLog(options.metricsLog, {
      role: "consumer",
      topic: store.topic,
      table: `${options.schema ?? "public"}.${options.table}`,
      group: store.groupId,
    });
    this.#reporter = new ProgressReporter("consumer: stored", options.maxMessages);
    if (options.prometheus) {
      this.prometheus = new ConsumerMetrics({
        topic: store.topic,
        group: store.groupId,
        table: `${options.schema ?? "public"}.${options.table}`,
      });
    }
  }

  /** The counts of the metrics records. */
  #counts() {
    const { seconds: _s, activeSeconds: _a, seatTaken: _t, unknownTicket: _u, ...rest } =
      this.summary;
    return rest;
  }

  /** Writes the start record (with what --reset-offsets did) and starts the snapshots. */
  start(reset?: Record<string, { from: string | null; to: string }>): void {
    this.#metrics.write("start", this.#counts(), 0, {
      deadLettersByReason: {},
      ...(reset ? { reset } : {}),
    });
    this.#snapshots = setInterval(() => void this.#snapshot("snapshot"), SNAPSHOT_SECONDS * 1000);
  }

  /** A written chunk: counts, latency, progress, --max-messages. */
  written(batch: Batch, result: BatchResult, lost: number, seconds: number): void {
    const summary = this.summary;
    count(summary, result, lost);
    deadLettersOf(batch, result, lost, this.deadLettersByReason);
    this.prometheus?.written(chunkOf(batch, result, lost, seconds));
    if (!result.committed) return;
    this.lastActivity = performance.now();
    const now = Date.now();
    for (const row of batch.rows) {
      if (row.publishedAt) this.#latency.add(now - row.publishedAt.getTime());
    }
    const secs = Math.max(
      0.001,
      (performance.now() - (this.firstMessageAt ?? this.started)) / 1000,
    );
    const lag = this.#lastLag ? Object.values(this.#lastLag).reduce((a, b) => a + b, 0) : undefined;
    this.#reporter.update(
      summary.received,
      summary.received / secs,
      lag === undefined ? "" : `lag ${lag}`,
    );
    const max = this.options.maxMessages;
    if (max !== undefined && summary.received >= max) this.maxReached();
  }

  async #snapshot(event: "snapshot" | "end", outcome?: string): Promise<void> {
    const lag = await topicProgress(this.store).then(lagOf, () => undefined);
    if (lag) this.#lastLag = lag;
    if (lag) this.prometheus?.setLag(lag);
    const latency = this.#latency.take();
    this.#metrics.write(event, this.#counts(), this.summary.received, {
      deadLettersByReason: { ...this.deadLettersByReason },
      ...(lag ? { lag } : {}),
      ...(latency ? { latencyMs: latency } : {}),
      ...(outcome ? { outcome } : {}),
    });
  }

  /** Ends the run's records: times, the end record with its outcome. */
  async end(outcome: string): Promise<void> {
    clearInterval(this.#snapshots);
    this.#reporter.done();
    this.summary.seconds = (performance.now() - this.started) / 1000;
    if (this.firstMessageAt !== undefined) {
      this.summary.activeSeconds = Math.max(0, (this.lastActivity - this.firstMessageAt) / 1000);
    }
    await within(this.#snapshot("end", outcome).catch(() => {}), 2_000);
    this.#metrics.close();
  }
}

/** How a run ends: the first error, and the signal at which every wait stops early. */
class RunEnd {
  /** Aborted when the run is to end (signal, idle, max messages, failure). */
  readonly stopping = new AbortController();
  /** The first error: it decides the exit, even one that comes after a stop began. */
  failure: unknown;
  /** Resolves when the run is to end. */
  readonly finished: Promise<void>;
  #resolve: () => void = () => {};

  constructor() {
    this.finished = new Promise<void>((resolve) => this.#resolve = resolve);
  }

  /** Ends the run, with `error` if it failed. */
  readonly finish = (error?: unknown): void => {
    if (error !== undefined && this.failure === undefined) this.failure = error;
    this.stopping.abort();
    this.#resolve();
  };

  #signal?: AbortSignal;
  readonly #onAbort = () => this.finish();

  /** Ends the run when `signal` aborts (the caller's stop: SIGTERM, Ctrl-C). */
  watch(signal: AbortSignal | undefined): void {
    if (!signal) return;
    this.#signal = signal;
    signal.addEventListener("abort", this.#onAbort, { once: true });
    if (signal.aborted) this.finish();
  }

  /** Stops watching the caller's signal. */
  unwatch(): void {
    this.#signal?.removeEventListener("abort", this.#onAbort);
  }
}

/** The consumer's parts, wired: Kafka source -> writer (transform, sink) -> observer, mirror. */
interface ConsumerParts {
  store: OffsetStore;
  consumer: Consumer;
  admin: Admin;
  db: Database;
  run: RunObserver;
  mirror: GroupOffsetMirror;
  writer: BatchWriter;
  source: KafkaSource;
  /** When the broker last answered a fetch. */
  lastFetch: number;
  /** A start of KafkaJS's consumer after a crash, while it joins (see {@linkcode Rejoin}). */
  joining?: Promise<unknown>;
}

/** Makes the clients and wires the parts; nothing is connected yet. */
async function wireParts(options: ConsumerOptions, end: RunEnd): Promise<ConsumerParts> {
  const schema = options.schema ?? "public";
  const q = qualify({ schema, table: options.table });
  const { topic } = options;
  const groupId = options.groupId ?? defaultGroupId(schema, options.table);
  const { db, admin, consumer } = await createClients(options, groupId, sessionMsOf(options));
  const store: OffsetStore = { db, q, admin, topic, groupId, table: options.table };
  const run = new RunObserver(options, store, () => end.finish());
  // Kafka's group offsets follow PostgreSQL's (for Kafka's lag tools), never ahead of them
  const mirror = new GroupOffsetMirror({
    topic,
    commit: (offsets) => consumer.commitOffsets(offsets),
    readStored: () => storedOffsets(db.pool, q, groupId, topic),
  });
  const writer = new BatchWriter({
    db,
    sql: sinkStatements(q, db),
    table: q.tickets,
    retryMs: (options.dbRetrySeconds ?? CONSUMER_DEFAULTS.dbRetrySeconds) * 1000,
    stopping: end.stopping.signal,
    maxQueued: MAX_QUEUED_CHUNKS,
    onWritten: (batch, result, lost, seconds) => {
      if (result.committed) mirror.stored(batch.partition, batch.nextOffset);
      run.written(batch, result, lost, seconds);
    },
    onError: end.finish,
  });
  const source = new KafkaSource({
    store,
    consumer,
    writer,
    batchSize: options.batchSize ?? CONSUMER_DEFAULTS.batchSize,
    maxMessageBytes: options.maxMessageBytes ?? CONSUMER_DEFAULTS.maxMessageBytes,
    maxMessages: options.maxMessages,
    stopping: end.stopping.signal,
    onError: end.finish,
    onLoad: (partition) => mirror.reloading(partition),
  });
  return { store, consumer, admin, db, run, mirror, writer, source, lastFetch: 0 };
}

/** The session timeout in milliseconds. */
function sessionMsOf(options: ConsumerOptions): number {
  return (options.sessionTimeoutSeconds ?? CONSUMER_DEFAULTS.sessionTimeoutSeconds) * 1000;
}

/**
 * Connects, checks the topic, applies `--reset-offsets`, joins the group and starts fetching;
 * returns what the reset did. The run's end is watched from here on (`options.signal`).
 */
async function startConsuming(options: ConsumerOptions, p: ConsumerParts, end: RunEnd) {
  const { consumer, admin, source, mirror, run, store } = p;
  const settings = options.connection.kafka;
  const { topic } = options;
  const topics = await probeKafka(settings);
  await withDeadline(admin.connect(), settings.connectTimeoutMs + 2_000, "connecting to Kafka");
  if (!topics.includes(topic)) {
    throw new AppError(
      "KAFKA",
      `topic "${topic}" does not exist; run producer.ts first or create it`,
    );
  }
  // tables of an older version fail here with the way forward, not at the first write
  await checkTables(store.db.pool, { schema: options.schema ?? "public", table: options.table });
  const reset = options.resetOffsets
    ? await resetStoredOffsets(store, options.resetOffsets)
    : undefined;
  await withDeadline(consumer.connect(), settings.connectTimeoutMs + 2_000, "connecting to Kafka");
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const config: Parameters<Consumer["run"]>[0] = {
    // must stay off: KafkaJS would commit the offsets the source resolves as it queues chunks,
    // ahead of what PostgreSQL stores; the mirror commits only what PostgreSQL stored
    autoCommit: false,
    eachBatchAutoResolve: false,
    partitionsConsumedConcurrently: 3,
    eachBatch: async (payload) => {
      run.firstMessageAt ??= performance.now();
      try {
        await source.handle(payload);
      } catch (error) {
        end.finish(error);
        throw error;
      }
    },
  };
  const rejoin = new Rejoin(() => p.joining = consumer.run(config).catch(end.finish), end);
  consumer.on(consumer.events.GROUP_JOIN, (event) => {
    rejoin.joined();
    run.lastActivity = performance.now();
    const partitions = event.payload.memberAssignment[topic] ?? [];
    mirror.assigned(partitions);
    source.assigned(partitions);
  });
  consumer.on(consumer.events.FETCH, () => {
    p.lastFetch = performance.now();
  });
  consumer.on(consumer.events.END_BATCH_PROCESS, (event: { payload: BatchEndEvent }) => {
    source.filtered(event.payload);
  });
  consumer.on(consumer.events.CRASH, (event) => {
    if (!event.payload.restart) rejoin.crashed(event.payload.error);
  });
  end.watch(options.signal);
  // run() resolves once the group is joined, which can take a session timeout when a dead
  // member is still in it: a stop must not wait for that
  consumer.run(config).catch(end.finish);
  return reset;
}

/** How long a member keeps rejoining its group while no broker answers as its coordinator. */
const REJOIN_BUDGET_MS = 300_000;
/** The pause before each rejoin. */
const REJOIN_PAUSE_MS = 2_000;

/**
 * Starts KafkaJS's consumer again after a crash it does not restart from itself: finding no group
 * coordinator while every broker restarts ({@linkcode isCoordinatorNotFound}). Any other such
 * crash, or no join within {@linkcode REJOIN_BUDGET_MS}, ends the run.
 */
class Rejoin {
  #since: number | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;

  readonly #start: () => unknown;
  readonly #end: RunEnd;

  constructor(start: () => unknown, end: RunEnd) {
    this.#start = start;
    this.#end = end;
    end.stopping.signal.addEventListener("abort", () => clearTimeout(this.#timer), { once: true });
  }

  /** The group was joined: a later loss of the coordinator has the whole budget again. */
  joined(): void {
    this.#since = undefined;
  }

  crashed(error: unknown): void {
    const now = performance.now();
    this.#since ??= now;
    const coordinator = isCoordinatorNotFound(error);
    if (coordinator && this.#end.stopping.signal.aborted) return; // a join the stop cut short
    if (!coordinator || now - this.#since > REJOIN_BUDGET_MS) return this.#end.finish(error);
    log(
      "warn",
      `no broker answers as the group's coordinator (brokers restarting, or an ACL denies the ` +
        `group); joining again in ${REJOIN_PAUSE_MS / 1000} s`,
    );
    this.#timer = setTimeout(this.#start, REJOIN_PAUSE_MS);
  }
}

/**
 * Leaves the group (its partitions move at once) and lets the writes in flight commit or roll
 * back, within a budget: a stop never hangs on a broker or a database that does not answer.
 */
async function stopParts(options: ConsumerOptions, p: ConsumerParts, end: RunEnd) {
  const stopBy = performance.now() + STOP_BUDGET_MS;
  const left = () => Math.max(0, stopBy - performance.now());
  await within(p.mirror.flush(), Math.min(2_000, left()));
  // a rejoin still joining would go on after disconnect() (KafkaJS stops only a running runner)
  await within(p.joining ?? Promise.resolve(), Math.min(2_000, left()));
  await within(p.consumer.disconnect().catch(() => {}), left());
  const settled = await within(p.writer.settledAll().then(() => true), left());
  if (!settled && end.failure === undefined) {
    end.failure = new AppError(
      "TIMEOUT",
      `stopped with a write still waiting for PostgreSQL after ${STOP_BUDGET_MS / 1000} s; ` +
        `it is rolled back and will be read again by the next run`,
    );
  }
  const settings = options.connection.kafka;
  const outcome = end.failure === undefined
    ? "ok"
    : messageOf(describeFailure(end.failure, p.db, settings));
  await p.run.end(outcome);
}

/** Runs the consumer until drained (idle), max messages, or the abort signal. */
export async function runConsumer(options: ConsumerOptions): Promise<ConsumerSummary> {
  const end = new RunEnd();
  const parts = await wireParts(options, end);
  const { run, db, admin } = parts;
  let idleTimer: ReturnType<typeof setInterval> | undefined;
  let recheckTimer: ReturnType<typeof setInterval> | undefined;
  let server: MetricsServer | undefined;
  let stopPruning = () => {};
  try {
    if (run.prometheus) server = serveMetrics(run.prometheus, options.prometheus!);
    run.start(await startConsuming(options, parts, end));
    stopPruning = startPruning(parts.store);
    recheckTimer = recheckEvery(parts.source, RECHECK_MS);
    if (options.idleTimeoutSeconds !== undefined) {
      idleTimer = watchDrain({
        store: parts.store,
        idleMs: options.idleTimeoutSeconds * 1000,
        sessionMs: sessionMsOf(options),
        busy: () => parts.writer.queued > 0,
        lastActivity: () => run.lastActivity,
        lastFetch: () => parts.lastFetch,
        finish: end.finish,
      });
    }
    await end.finished;
  } catch (error) {
    end.finish(error);
  } finally {
    clearInterval(idleTimer);
    clearInterval(recheckTimer);
    stopPruning();
    end.unwatch();
    await stopParts(options, parts, end);
    await within(server?.close().catch(() => {}) ?? Promise.resolve(), 1_000);
    await within(admin.disconnect().catch(() => {}), 1_000);
    await within(db.pool.end().catch(() => {}), 1_000);
  }
  if (end.failure !== undefined) throw describeFailure(end.failure, db, options.connection.kafka);
  return run.summary;
}

/** How often a member checks that the stored offsets are where its writes left them. */
const RECHECK_MS = 10_000;

/** Runs `source.recheck()` every `ms`, one at a time; a failed check is tried again next time. */
function recheckEvery(source: KafkaSource, ms: number): ReturnType<typeof setInterval> {
  let checking = false;
  return setInterval(() => {
    if (checking) return;
    checking = true;
    source.recheck().catch((error) => {
      log("warn", `could not check the stored offsets (tried again later): ${messageOf(error)}`);
    }).finally(() => checking = false);
  }, ms);
}

/** The run's error as one line for the user: PostgreSQL's errors named as such. */
function describeFailure(error: unknown, db: Database, settings: KafkaSettings): AppError {
  if (error instanceof AppError) return error;
  const name = (error as { name?: string } | null)?.name ?? "";
  if (name === "error" || name === "DatabaseError" || sqlStateOf(error)) {
    return describePgError(error, db.target);
  }
  return name.startsWith("KafkaJS")
    ? describeKafkaError(error, settings)
    : new AppError("DB", messageOf(error), { cause: error });
}

/** What {@linkcode watchDrain} looks at. */
interface DrainWatch {
  store: OffsetStore;
  idleMs: number;
  sessionMs: number;
  /** True while chunks wait for the database. */
  busy(): boolean;
  /** When a chunk was last committed (or the group last joined). */
  lastActivity(): number;
  /** When the broker last answered a fetch. */
  lastFetch(): number;
  finish(error?: unknown): void;
}

/**
 * `--idle-timeout`: ends the run once nothing arrived for that long and the whole topic is
 * drained (every partition's stored offset at its high watermark, whichever member stored it).
 * While other members still hold undrained partitions it waits; when nothing moves for long
 * enough that a dead member would have lost its partitions twice over, it gives up.
 */
function watchDrain(w: DrainWatch): ReturnType<typeof setInterval> {
  const giveUpMs = w.idleMs + 3 * w.sessionMs + 10_000;
  let checking = false;
  let waitingSince: number | undefined;
  let waitingFor = "";
  return setInterval(async () => {
    // Idle: the broker answers fetches, yet nothing new arrives and nothing waits for the
    // database. An outage of either is not idleness.
    const now = performance.now();
    const quiet = now - w.lastActivity() > w.idleMs;
    if (!quiet) waitingSince = undefined;
    if (checking || w.busy() || !quiet || now - w.lastFetch() > 3_000) return;
    checking = true;
    try {
      const behind = undrained(w.store, await topicProgress(w.store));
      if (behind.length === 0) return w.finish();
      const what = behind.join(", ");
      if (waitingSince === undefined || what !== waitingFor) {
        if (waitingSince === undefined) {
          log("info", `idle, but the topic is not drained: partition ${what}; waiting`);
        }
        waitingSince = performance.now();
        waitingFor = what;
      } else if (performance.now() - waitingSince > giveUpMs) {
        w.finish(
          new AppError(
            "TIMEOUT",
            `gave up waiting for the topic to drain: partition ${what} did not move for ` +
              `${Math.round(giveUpMs / 1000)} s (held by a member that does not consume?)`,
          ),
        );
      }
    } catch (error) {
      // a stored offset past the log's end stops the run; no answer now, the next tick asks
      if (error instanceof AppError) w.finish(error);
    } finally {
      checking = false;
    }
  }, 250);
}

/** One line describing a consumer run. */
export function formatConsumerSummary(s: ConsumerSummary): string {
  const rate = s.activeSeconds > 0 ? Math.round(s.received / s.activeSeconds) : s.received;
  const refused = [
    s.seatTaken ? `${s.seatTaken} SEAT_TAKEN` : "",
    s.unknownTicket ? `${s.unknownTicket} ${UNKNOWN_TICKET}` : "",
    s.rejected ? `${s.rejected} DB_REJECTED` : "",
  ].filter(Boolean).join(", ");
  return `consumed ${s.received} messages in ${
    s.activeSeconds.toFixed(2)
  } s of work (${rate} tickets/s): stored ${s.stored}${
    s.cancelled ? `, cancelled ${s.cancelled}` : ""
  }, duplicates ${s.duplicates}, conflicts ${s.conflicts}, dead letters ${s.deadLetters}${
    refused ? ` (${refused})` : ""
  }, fenced ${s.fenced}${s.lost ? `, lost before read ${s.lost}` : ""}`;
}
